#!/usr/bin/env python
"""Benchmark 4: search latency and index size, SPLADE against BM25 on the same index.

One index holds the corpus as the connector ingests it (`title`/`text` text fields and the
`splade` rank_features field; `sparse_vector` on Elasticsearch), force-merged to one segment so
that both query kinds see the same, stable index. Every query of the set is sent sequentially, one request at a time, as
  (a) SPLADE: the connector's body (`QueryEncoder.to_dsl`: a bool of linear rank_feature clauses),
  (b) BM25: `multi_match` of the query text over `title` and `text`,
both with size 10 and `track_total_hits: false`, each once returning `_source` title and text
(as `splade-os search` does) and once with `_source: false` (the query alone: filtering `_source`
means parsing each hit's whole stored source, which holds the feature map). Bodies are built
before the clock starts (the translation cost is benchmark 3's). After a warm-up pass, `--passes`
passes, the variants interleaved query by query; reports p50/p99 of the client-side latency
(request to parsed response) and of OpenSearch's `took`, and queries/s of one client sending
requests back to back.

Index size: `_stats/store` of the force-merged index. OpenSearch has no per-field disk usage
API (Elasticsearch's `_disk_usage` is tried and its bytes per field recorded), so the split is
measured by copying the index with `_reindex` into indexes that hold only the text fields or only
the sparse field, force-merged to one segment (where the cluster has `_reindex`); for each index the bytes are also split by
Lucene file kind (stored fields = `_source` + `_id`; terms dictionary + postings; the rest).

Without `--url` a throw-away OpenSearch node is started on loopback.

    python benchmarks/bench_search.py                     # all 1400 Cranfield docs and 225 queries
    python benchmarks/bench_search.py --passes 10 --out benchmarks/results/search-cpu.json
"""

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchlib import bench_model, cluster, drop, machine, query_texts, save_results, table, working_dir  # noqa: E402
from splade_os.query.engine import ELASTICSEARCH  # noqa: E402
from splade_os.common.errors import ClusterError  # noqa: E402
from splade_os.ingest import IngestOptions, ingest  # noqa: E402
from splade_os.query import bm25_body  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "connector" / "data" / "cranfield"
SOURCE = ["title", "text"]
SPLADE, BM25 = "SPLADE (rank_feature bool)", "BM25 (multi_match title+text)"
SPLADE_ES = "SPLADE (sparse_vector)"
WITH, WITHOUT = ", _source title+text", ", no _source"


def force_merge(cluster, index):
    """One segment, flushed: a stable index to time, and a store size without merge leftovers."""
    cluster.request("POST", f"/{index}/_refresh")
    cluster.request("POST", f"/{index}/_forcemerge", params={"max_num_segments": 1})
    cluster.request("POST", f"/{index}/_flush")
    cluster.request("POST", f"/{index}/_refresh")


# Lucene file extensions, grouped: where the bytes of a segment go.
STORED = ("fdt", "fdx", "fdm")  # stored fields: _source and _id
POSTINGS = ("tim", "tip", "tmd", "doc", "pos", "pay", "psm")  # terms dictionary and postings


def sizes_of(cluster, index) -> dict:
    """Store size, segment count and the bytes per kind of Lucene file of an index's primaries."""
    stats = cluster.request("GET", f"/{index}/_stats/store,segments", params={"include_segment_file_sizes": "true"})
    primaries = stats["indices"][index]["primaries"]
    files = {ext: f["size_in_bytes"] for ext, f in primaries["segments"].get("file_sizes", {}).items()}
    stored = sum(files.get(e, 0) for e in STORED)
    postings = sum(files.get(e, 0) for e in POSTINGS)
    return {"store_bytes": primaries["store"]["size_in_bytes"], "segments": primaries["segments"]["count"],
            "stored_fields_bytes": stored, "terms_postings_bytes": postings,
            "other_bytes": sum(files.values()) - stored - postings, "file_bytes": files,
            "docs": cluster.index(index).count()}


def bodies_for(queries, index, k: int):
    """The bodies of each variant: SPLADE as `SpladeIndex.body` builds it (the index's field,
    engine and clause cap), BM25 over the same text fields."""
    splade = [index.body(q, k, source=SOURCE) for q in queries]
    bm25 = [bm25_body(q, k, source=SOURCE) for q in queries]
    bodies = {}
    for name, batch in ((SPLADE_ES if index.cluster.engine is ELASTICSEARCH else SPLADE, splade), (BM25, bm25)):
        bodies[name + WITH] = batch
        bodies[name + WITHOUT] = [dict(b, _source=False) for b in batch]
    return bodies


def clauses_of(body: dict) -> int:
    """Weighted tokens a SPLADE body sends (bool clauses, or the sparse_vector's query vector)."""
    query = body["query"]
    if "bool" in query:
        return len(query["bool"]["should"])
    return len(query["sparse_vector"]["query_vector"]) if "sparse_vector" in query else 0


def latency(index, bodies: dict, passes: int) -> dict:
    """Client-side seconds and `took` ms per request, the variants interleaved query by query.

    Interleaving (in an order that rotates every query) keeps the comparison fair when something
    else on the machine slows a stretch of the run down: every variant gets its share of it.
    """
    names = list(bodies)
    n = len(next(iter(bodies.values())))
    for name in names:  # warm-up: JIT, caches, file pages
        for body in bodies[name]:
            index.request_search(body)
    samples = {name: {"client_s": [], "took_ms": []} for name in names}
    turn = 0
    for _ in range(passes):
        for i in range(n):
            turn += 1
            for name in names[turn % len(names):] + names[: turn % len(names)]:
                start = time.perf_counter()
                response = index.request_search(bodies[name][i])
                samples[name]["client_s"].append(time.perf_counter() - start)
                samples[name]["took_ms"].append(response["took"])
    out = {}
    for name, s in samples.items():
        ms = np.asarray(s["client_s"]) * 1e3
        took = np.asarray(s["took_ms"], dtype=np.float64)
        out[name] = {"client_p50_ms": float(np.median(ms)), "client_p99_ms": float(np.percentile(ms, 99)),
                     "client_mean_ms": float(ms.mean()), "took_p50_ms": float(np.median(took)),
                     "took_p99_ms": float(np.percentile(took, 99)), "took_mean_ms": float(took.mean()),
                     # one client sending requests back to back
                     "queries_per_s": 1e3 / float(ms.mean()), "queries": int(ms.size)}
    return out


def disk_usage_api(cluster, index):
    """What the cluster says to Elasticsearch's per-field `_disk_usage` API: bytes per field, or why not."""
    try:
        answer = cluster.request("POST", f"/{index}/_disk_usage", params={"run_expensive_tasks": "true"})
        return {"fields_total_bytes": {name: f.get("total_in_bytes") for name, f in
                                       answer.get(index, {}).get("fields", {}).items()}}
    except ClusterError as e:  # any answer but success means: not usable here
        return f"not available: HTTP {e.status} {(e.error_type or str(e))[:120]}"


def field_split(cluster, index, field: str, suffix: str) -> dict:
    """Sizes of copies of the index holding only the text fields, or only the sparse field.

    `_source` stays on, as in the connector's index. (Turning it off would not shrink a fresh
    index: Lucene keeps a `_recovery_source` copy for peer recovery until the retention leases
    expire, which a force-merge right away does not wait for.)
    """
    variants = {
        "text fields only (title, text)": (["title", "text"], {"title": {"type": "text"}, "text": {"type": "text"}}),
        f"{field} ({cluster.engine.feature_type}) only": ([field], {field: {"type": cluster.engine.feature_type}}),
    }
    out = {}
    for i, (name, (fields, properties)) in enumerate(variants.items()):
        copy = f"bench-search-split-{suffix}-{i}"
        cluster.request("PUT", f"/{copy}", {
            "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"}},
            "mappings": {"dynamic": False, "properties": properties}})
        try:
            cluster.request("POST", "/_reindex", {"source": {"index": index, "_source": fields}, "dest": {"index": copy}},
                            params={"wait_for_completion": "true", "refresh": "true"})
            force_merge(cluster, copy)
            out[name] = sizes_of(cluster, copy)
        finally:
            drop(cluster, copy)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="default, or a model folder")
    parser.add_argument("--corpus", type=Path, default=DATA / "corpus.jsonl", help="BEIR corpus.jsonl")
    parser.add_argument("--queries", type=Path, default=DATA / "queries.jsonl", help="BEIR queries.jsonl")
    parser.add_argument("--docs", type=int, default=None, help="first N documents only (default: all)")
    parser.add_argument("--passes", type=int, default=5, help="timed passes over the queries per query kind")
    parser.add_argument("-k", type=int, default=10, help="hits per query")
    parser.add_argument("--url", help="an existing cluster (default: start a throw-away local node)")
    parser.add_argument("--index", help="an index already ingested by the connector (skips the ingest; kept)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    command = "python " + shlex.join(sys.argv)

    model = bench_model(args.model)
    queries = query_texts(args.queries)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp, cluster(args.url, timeout=600) as target:
        stamp = time.strftime("%Y%m%d%H%M%S")
        index = args.index or f"bench-search-{stamp}"
        ingest_seconds = None
        try:
            if not args.index:
                corpus = args.corpus.resolve()  # before the ingest changes the current folder
                if args.docs:
                    corpus = Path(tmp) / "corpus.jsonl"
                    with open(args.corpus, encoding="utf-8") as f:
                        corpus.write_text("".join(line for _, line in zip(range(args.docs), f)), encoding="utf-8")
                with working_dir(tmp):
                    stats = ingest(target, corpus, index, model, options=IngestOptions(
                        checkpoint=Path(tmp) / "checkpoint"), show_progress=False)
                ingest_seconds = stats.seconds
            handle = target.index(index)
            docs = handle.count()
            force_merge(target, index)
            field = handle.field
            bodies = bodies_for(queries, handle, args.k)
            timings = latency(handle, bodies, args.passes)
            sizes = {"whole index (as ingested)": sizes_of(target, index)}
            disk_usage = disk_usage_api(target, index)
            try:
                sizes.update(field_split(target, index, field, stamp))
                split = "by _reindex into copies"
            except ClusterError as e:  # a minimal Elasticsearch has no _reindex
                if e.status not in (400, 405):
                    raise
                split = f"not measured: _reindex not available (HTTP {e.status})"
        finally:
            if not args.index:
                drop(target, index)
        engine = target.engine
    load_after = os.getloadavg()[0]

    splade = SPLADE_ES if engine is ELASTICSEARCH else SPLADE
    clauses = [clauses_of(b) for b in bodies[splade + WITH]]
    rows = []
    for source in (WITH, WITHOUT):
        bm25 = timings[BM25 + source]["client_p50_ms"]  # compared with the same _source setting
        for kind in (splade, BM25):
            r = timings[kind + source]
            rows.append({"query": kind + source, "client p50 ms": f"{r['client_p50_ms']:.2f}",
                         "client p99 ms": f"{r['client_p99_ms']:.2f}", "took p50 ms": f"{r['took_p50_ms']:.0f}",
                         "took mean ms": f"{r['took_mean_ms']:.2f}", "took p99 ms": f"{r['took_p99_ms']:.0f}", "queries/s": f"{r['queries_per_s']:,.0f}",
                         "p50 vs BM25": f"{r['client_p50_ms'] / bm25:.2f}x"})
    size_rows = [{"index": name, "docs": s["docs"], "segments": s["segments"],
                  "store MiB": f"{s['store_bytes'] / 2**20:.2f}", "bytes/doc": f"{s['store_bytes'] / s['docs']:,.0f}",
                  "stored fields MiB": f"{s['stored_fields_bytes'] / 2**20:.2f}",
                  "terms+postings MiB": f"{s['terms_postings_bytes'] / 2**20:.2f}",
                  "other MiB": f"{s['other_bytes'] / 2**20:.2f}"}
                 for name, s in sizes.items()]
    summary = {"benchmark": "search", "command": command, "machine": machine(), "model": args.model,
               "engine": engine.name, "docs": docs, "queries": len(queries), "passes": args.passes, "k": args.k,
               "ingest_seconds": ingest_seconds, "mean_splade_clauses": statistics.mean(clauses),
               "max_splade_clauses": max(clauses), "latency": timings, "sizes": sizes,
               "disk_usage_api": disk_usage, "field_split": split,
               "node": "given --url" if args.url else "throw-away local node on this machine (512 MB heap)",
               "load_average_1min": {"before": load_before, "after": load_after}, "date": time.strftime("%Y-%m-%d")}
    print(f"{summary['machine']} | model {args.model} | {docs} docs, {len(queries)} queries "
          f"(SPLADE: {summary['mean_splade_clauses']:.1f} clauses on average, max {max(clauses)}), "
          f"{args.passes} passes, 1 segment | load avg {load_before:.1f} -> {load_after:.1f} | {summary['date']}")
    print(f"$ {command}")
    print(table(rows, ["query", "client p50 ms", "client p99 ms", "took p50 ms", "took mean ms", "took p99 ms", "queries/s",
                       "p50 vs BM25"]))
    print()
    print(table(size_rows, ["index", "docs", "segments", "store MiB", "bytes/doc", "stored fields MiB",
                            "terms+postings MiB", "other MiB"]))
    print(f"per-field _disk_usage API: {disk_usage}; per-field split {split}")
    save_results(args.out, summary)


if __name__ == "__main__":
    main()
