#!/usr/bin/env python
"""Retrieval quality and index cost of splade-os's options, on the bundled collections.

Parts (each writes benchmarks/results/quality-<part>.json and prints a table):

- `hybrid`: BM25, SPLADE, and their fusions (minmax at several weights, RRF, a single `bool`
  of both queries at several boosts), nDCG@10 on every judged query of Cranfield and Vaswani,
  and the latency of one `_msearch` against one search.
- `prune`: document-side pruning (top-k per document, a weight threshold) and the feature map
  kept out of `_source`: index size (force-merged), p50 latency, nDCG@10 against the full index.
- `idf`: the default model's query table (IDF of the bundled Cranfield sample) against the IDF
  of the collection itself (`ingest --idf-from-corpus`).
- `long`: long documents encoded window by window: cost per document against windows, and
  the quality of `truncate` vs `windows` on Cranfield.
- `reindex`: copying an index whose `_source` keeps the packed copy, against encoding again.

Every index is built by the library's `ingest` into one local node (started when `--url` is
not given); vectors are encoded once per collection and encoder setting (benchmarks/qualitylib.py).

    python benchmarks/bench_quality.py hybrid
    python benchmarks/bench_quality.py prune --collections cranfield
"""

import argparse
import functools
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from qualitylib import CachedEncoder, cached_vectors, collection, machine, settle, store_bytes  # noqa: E402
from splade_os.evaluate import evaluated_queries, retrieval_metrics  # noqa: E402
from splade_os.query.hybrid import Hybrid, fuse, hit_lists  # noqa: E402
from splade_os.query import bm25_body  # noqa: E402
from splade_os.cluster.index import IndexSettings  # noqa: E402
from splade_os.ingest import IngestOptions, ingest  # noqa: E402
from splade_os.models.resolve import resolve_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("ndcg@10", "ndcg@10_graded", "mrr@10", "map@100", "recall@10")


def build_index(cluster, name: str, coll: str, model, vectors, options=None, merge: bool = True):
    """An index of the collection's cached vectors through `ingest` (reused when complete)."""
    index = cluster.index(name)
    corpus = collection(coll)[2]
    if index.exists() and index.count() == len(vectors):
        return index
    if index.exists():
        cluster.request("DELETE", f"/{name}")
    options = options or IngestOptions()
    options.dead_letter = Path("/tmp") / f"{name}.rejected.jsonl"
    options.checkpoint = Path("/tmp") / f"{name}.checkpoint.json"
    ingest(cluster, corpus, name, model, options=options,
           encoder=CachedEncoder(vectors, len(model.query_encoder.keys)), show_progress=False)
    if merge:
        settle(cluster, name, model)
    return index


def scores(metrics: dict) -> dict:
    return {m: round(metrics[m], 4) for m in METRICS}


# -- hybrid ------------------------------------------------------------------------------------


def bool_body(text: str, encoder, index, boost: float, size: int) -> dict:
    """BM25 + boost * SPLADE in one bool query (raw scores added)."""
    splade = index.body(text, size, encoder, source=False)["query"]
    return {"size": size, "_source": False, "track_total_hits": False,
            "query": {"bool": {"should": [{"multi_match": {"query": text, "fields": ["title", "text"]}},
                                          {"bool": {"should": [splade], "boost": boost}}]}}}


def hybrid_part(cluster, collections, model, out: dict) -> None:
    k = 100
    for coll in collections:
        queries, qrels, _ = collection(coll)
        vectors, _ = cached_vectors(coll, model)
        index = build_index(cluster, f"quality-{coll}-base", coll, model, vectors)
        encoder = index.query_encoder()
        qids = evaluated_queries(queries, qrels)
        # The top d of a list is the first d of its top 100: one fetch serves every depth.
        lists = {q: hit_lists(index.request_msearch(
            index.hybrid_bodies(queries[q], k, encoder, hybrid=Hybrid(depth=k), source=False)), index.name) for q in qids}
        rows = {}

        def measure(label, run):
            rows[label] = scores(retrieval_metrics(queries, qrels, run))

        measure("BM25", {q: {h["_id"]: h["_score"] for h in lists[q][0]} for q in qids})
        measure("SPLADE", {q: {h["_id"]: h["_score"] for h in lists[q][1]} for q in qids})
        for depth in (20, 50, 100):
            for hybrid in [Hybrid("rrf", rrf_k=r, depth=depth) for r in (5, 10, 20, 60)] + \
                          [Hybrid("minmax", weight=w, depth=depth) for w in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)]:
                setting = f"k={hybrid.rrf_k}" if hybrid.method == "rrf" else f"w={hybrid.weight}"
                measure(f"{hybrid.method} {setting} depth {depth}",
                        {q: {h["_id"]: s for h, s in fuse(lists[q][0][:depth], lists[q][1][:depth], hybrid, depth)}
                         for q in qids})
        for boost in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0):
            run = {}
            for qid in qids:
                response = index.request_search(bool_body(queries[qid], encoder, index, boost, k))
                run[qid] = {h["_id"]: h["_score"] for h in response["hits"]["hits"]}
            measure(f"bool BM25 + {boost} x SPLADE", run)
        default = index.evaluate(queries, qrels, hybrid=Hybrid())
        packed = build_index(cluster, f"quality-{coll}-prune-1", coll, model, vectors,
                             IngestOptions(index=IndexSettings(source_features="packed")))
        out[coll] = {"queries": len(qids), "docs": len(vectors), "systems": rows,
                     "default": {"hybrid": asdict(Hybrid()), **scores(default.metrics)},
                     "latency_p50_ms": hybrid_latency({"map": index, "packed": packed}, queries, qids)}
        print_rows(coll, rows)
        print("default", out[coll]["default"])
        print("latency p50 ms", out[coll]["latency_p50_ms"])


def hybrid_latency(indexes: dict, queries, qids) -> dict:
    """p50 ms of `SpladeIndex.search` (top 10 with title and text): SPLADE alone, BM25 alone, hybrid.

    At depth 50 also both ways of getting the hits' text: in the `_msearch` itself (one round
    trip, `2 x depth` sources read) and ids first, then one `_mget` of the fused top 10.
    """
    sends = {}
    for label, index in indexes.items():
        encoder = index.query_encoder()
        sends[f"SPLADE, _source {label}"] = [functools.partial(index.search, queries[q], 10, encoder) for q in qids]
        sends[f"BM25, _source {label}"] = [functools.partial(index.request_search, bm25_body(
            queries[q], 10, source=["title", "text"])) for q in qids]
        for depth in (20, 50, 100):
            hybrid = Hybrid(depth=depth)
            sends[f"hybrid depth {depth}, _source {label}"] = [
                functools.partial(index.search, queries[q], 10, encoder, None, hybrid) for q in qids]
        for way, send in (("one _msearch with _source", _hybrid_one_trip), ("ids, then _mget", _hybrid_mget)):
            sends[f"hybrid depth 50, {way}, _source {label}"] = [
                functools.partial(send, index, queries[q], encoder) for q in qids]
    return interleaved_p50(sends, passes=2)


def _hybrid_one_trip(index, text, encoder, hybrid=Hybrid()):
    bodies = index.hybrid_bodies(text, 10, encoder, hybrid=hybrid)
    return fuse(*hit_lists(index.request_msearch(bodies), index.name), hybrid, 10)


def _hybrid_mget(index, text, encoder, hybrid=Hybrid()):
    fused = fuse(*hit_lists(index.request_msearch(index.hybrid_bodies(text, 10, encoder, hybrid=hybrid, source=False)),
                            index.name), hybrid, 10)
    return index.cluster.request("POST", f"/{index.name}/_mget", {"ids": [h["_id"] for h, _ in fused]},
                                 params={"_source": "title,text"})


def print_rows(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"{'system':<34}" + "".join(f"{m:>16}" for m in METRICS))
    for label, values in rows.items():
        print(f"{label:<34}" + "".join(f"{values[m]:>16.4f}" for m in METRICS))


# -- pruning and _source ---------------------------------------------------------------------

PRUNE_VARIANTS = {
    # name: (source_features, VectorOptions kwargs)
    "full (today)": ("map", {}),
    "_source: packed copy": ("packed", {}),
    "_source: no features": ("none", {}),
    "threshold 0.2": ("map", {"prune_threshold": 0.2}),
    "threshold 0.3": ("map", {"prune_threshold": 0.3}),
    "top-k 128": ("map", {"prune_top_k": 128}),
    "threshold 0.2 + packed": ("packed", {"prune_threshold": 0.2}),
    "threshold 0.3 + packed": ("packed", {"prune_threshold": 0.3}),
    "threshold 0.3 + no features": ("none", {"prune_threshold": 0.3}),
}


def segment_bytes(cluster, index: str) -> dict:
    """Bytes of the index's primaries by kind of Lucene file (stored fields, postings, the rest)."""
    stats = cluster.request("GET", f"/{index}/_stats/segments", params={"include_segment_file_sizes": "true"})
    files = next(iter(stats["indices"].values()))["primaries"]["segments"].get("file_sizes", {})
    sizes = {ext: f["size_in_bytes"] for ext, f in files.items()}
    stored = sum(sizes.get(e, 0) for e in ("fdt", "fdx", "fdm"))
    postings = sum(sizes.get(e, 0) for e in ("tim", "tip", "tmd", "doc", "pos", "pay", "psm"))
    return {"stored_fields": stored, "postings": postings, "other": sum(sizes.values()) - stored - postings}


def interleaved_p50(sends: dict, passes: int = 3) -> dict:
    """p50 client-side ms of each variant's requests, taking turns request by request.

    `sends`: variant -> list of zero-argument callables (one per query). Taking turns spreads
    whatever else the shared machine is doing over every variant alike.
    """
    names = list(sends)
    for name in names:  # warm-up
        for send in sends[name][:20]:
            send()
    samples = {name: [] for name in names}
    for turn in range(passes * len(sends[names[0]])):
        i = turn % len(sends[names[0]])
        for name in names[turn % len(names):] + names[: turn % len(names)]:
            started = time.perf_counter()
            sends[name][i]()
            samples[name].append(time.perf_counter() - started)
    return {name: round(float(np.median(s)) * 1e3, 2) for name, s in samples.items()}


def prune_part(cluster, collections, model, out: dict) -> None:
    from splade_os.documents.vectors import VectorOptions

    for coll in collections:
        queries, qrels, _ = collection(coll)
        vectors, _ = cached_vectors(coll, model)
        qids = evaluated_queries(queries, qrels)
        rows, indexes = {}, {}
        for number, (label, (source, pruning)) in enumerate(PRUNE_VARIANTS.items()):
            settings = IndexSettings(source_features=source, vectors=VectorOptions(**pruning))
            name = f"quality-{coll}-prune-{number}" if number else f"quality-{coll}-base"
            index = indexes[label] = build_index(cluster, name, coll, model, vectors, IngestOptions(index=settings))
            result = index.evaluate(queries, qrels)
            rows[label] = {**scores(result.metrics), "store_bytes": store_bytes(cluster, name),
                           **segment_bytes(cluster, name), "features_per_doc": features_per_doc(vectors, pruning)}
        for key, source in (("p50_ms_top10_ids", False), ("p50_ms_top10_title_text", ["title", "text"])):
            sends = {label: [functools.partial(index.request_search, index.body(queries[q], 10, source=source))
                             for q in qids] for label, index in indexes.items()}
            for label, value in interleaved_p50(sends).items():
                rows[label][key] = value
        base = rows["full (today)"]
        for row in rows.values():
            row["size_ratio"] = round(row["store_bytes"] / base["store_bytes"], 3)
            row["ndcg_loss"] = round(base["ndcg@10"] - row["ndcg@10"], 4)
        out[coll] = {"docs": len(vectors), "queries": len(qids), "variants": rows}
        print(f"\n{coll}")
        columns = ("ndcg@10", "ndcg_loss", "store_bytes", "size_ratio", "features_per_doc", "p50_ms_top10_ids",
                   "p50_ms_top10_title_text")
        print(f"{'variant':<30}" + "".join(f"{c:>24}" for c in columns))
        for label, row in rows.items():
            print(f"{label:<30}" + "".join(f"{row[c]:>24}" for c in columns))


def features_per_doc(vectors, pruning: dict) -> float:
    from splade_os.documents.vectors import VectorOptions

    options = VectorOptions(**pruning)
    return round(float(np.mean([len(options.prune(v.ids, v.values)[0]) for v in vectors.values()])), 1)


# -- the corpus's own IDF -----------------------------------------------------------------------


def idf_part(cluster, collections, model, out: dict) -> None:
    from splade_os.models.corpus_idf import corpus_idf_model

    for coll in collections:
        queries, qrels, corpus = collection(coll)
        vectors, _ = cached_vectors(coll, model)
        base = build_index(cluster, f"quality-{coll}-base", coll, model, vectors)
        idf_model = corpus_idf_model(cluster, corpus, f"quality-{coll}-idf", model, show_progress=False)
        same_documents = documents_match(model, idf_model, vectors, corpus)
        index = build_index(cluster, f"quality-{coll}-idf", coll, idf_model, vectors)
        rows = {}
        for label, target in (("default table (IDF of the bundled Cranfield sample)", base),
                              ("--idf-from-corpus", index)):
            rows[f"SPLADE, {label}"] = scores(target.evaluate(queries, qrels).metrics)
            rows[f"hybrid, {label}"] = scores(target.evaluate(queries, qrels, hybrid=Hybrid()).metrics)
        rows["BM25"] = scores(base.evaluate(queries, qrels, body=bm25_body).metrics)
        exact = unseen_token_rule(idf_model, vectors, queries, qrels, corpus)
        question = model.query_encoder.tokens.index("?")
        out[coll] = {"model": idf_model.source, "documents_identical_to_default_model": same_documents,
                     "weight_of_?": {"default": float(model.query_encoder.table[question]),
                                     "corpus": float(idf_model.query_encoder.table[question])},
                     "systems": rows, "exact_ndcg@10_by_unseen_token_weight": exact}
        print_rows(coll, rows)
        print("exact nDCG@10, unseen tokens weighing the largest IDF vs 0:", exact)


def unseen_token_rule(idf_model, vectors, queries, qrels, corpus) -> dict:
    """Exact in-memory nDCG@10 with the corpus table as built (a token no document holds weighs the
    largest IDF) and with those tokens at 0."""
    from splade_os.evaluate import evaluate_exact
    from splade_os.models.builder import sample_texts
    from splade_os.query import QueryEncoder

    from tokenizers import Tokenizer

    encoder = idf_model.query_encoder
    tokenizer = Tokenizer.from_file(str(idf_model.layout.tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    seen = np.zeros(len(encoder.table), dtype=bool)
    for ids in tokenizer.encode_batch(list(sample_texts(corpus)), add_special_tokens=False):
        seen[ids.ids] = True
    zero = np.where(seen, encoder.table, 0.0).astype(np.float32)
    other = QueryEncoder(encoder.tokenizer, zero, encoder.name, encoder.max_length)
    return {"largest (built)": round(evaluate_exact(vectors, queries, qrels, encoder)["ndcg@10"], 4),
            "zero": round(evaluate_exact(vectors, queries, qrels, other)["ndcg@10"], 4)}


def documents_match(model, other, vectors, corpus, n: int = 32) -> bool:
    """Whether the rebuilt model's document route gives the cached vectors (first n documents, within 1e-4)."""
    from splade_os.corpus import Document, read_corpus
    from splade_os.documents.encoder import DocumentEncoder

    docs = [d for d in read_corpus(corpus) if isinstance(d, Document)][:n]
    encoded = DocumentEncoder(other, device="cpu").encode([d.content for d in docs])
    return all(np.array_equal(v.ids, vectors[d.id].ids) and np.allclose(v.values, vectors[d.id].values, atol=1e-4)
               for d, v in zip(docs, encoded))


# -- long documents ----------------------------------------------------------------------------


def long_part(cluster, collections, model, out: dict) -> None:
    from splade_os.documents.vectors import VectorOptions

    out["cost"] = window_cost(model)
    print("cost per document by windows:", out["cost"])
    for coll in collections:
        queries, qrels, corpus = collection(coll)
        long_docs = count_long(model, corpus)
        out[coll] = {"documents_over_one_window": long_docs}
        if not long_docs:
            print(f"{coll}: no document is longer than one window; windows == truncate")
            continue
        truncated, _ = cached_vectors(coll, model)
        windowed, seconds = cached_vectors(coll, model, "windows", options=VectorOptions("windows"))
        rows = {"truncate": scores(build_index(cluster, f"quality-{coll}-base", coll, model, truncated)
                                   .evaluate(queries, qrels).metrics),
                "windows (max 8)": scores(build_index(
                    cluster, f"quality-{coll}-windows", coll, model, windowed,
                    IngestOptions(index=IndexSettings(vectors=VectorOptions("windows")))).evaluate(queries, qrels).metrics)}
        out[coll].update({"systems": rows, "encode_seconds_windows": round(seconds, 1)})
        print_rows(f"{coll} ({long_docs} documents over one window)", rows)


def count_long(model, corpus) -> int:
    from splade_os.documents.encoder import DocumentEncoder
    from splade_os.corpus import Document, read_corpus

    encoder = DocumentEncoder(model, device="cpu", long_docs="windows", max_windows=64)
    windows, _ = encoder.token_windows([d.content for d in read_corpus(corpus) if isinstance(d, Document)])
    return sum(len(w) > 1 for w in windows)


def window_cost(model, docs: int = 16, rounds: int = 7) -> dict:
    """Seconds per document of `windows` encoding for documents of 1, 2, 4 and 8 full windows.

    The sizes take turns round by round; the fastest round of each is reported, as wall time and
    as this process's CPU time (on a shared CPU the slower rounds measure the neighbours).
    """
    from splade_os.documents.encoder import DocumentEncoder

    encoder = DocumentEncoder(model, device="cpu", long_docs="windows", max_windows=8)
    text = " ".join(json.loads(line)["text"] for line in open(collection("cranfield")[2]) if line.strip())
    words = text.split()
    lengths = {}
    for n in (1, 2, 4, 8):
        # about 1.25 tokens per word: enough words for n full windows of 510 tokens, not n + 1
        texts = [" ".join(words[i * 3000: i * 3000 + int(n * 510 / 1.3)]) for i in range(docs)]
        counts = [len(w) for w in encoder.token_windows(texts)[0]]
        lengths[n] = (texts, float(np.mean(counts)))
    wall, cpu = {n: [] for n in lengths}, {n: [] for n in lengths}
    encoder.encode(lengths[1][0][:2])  # warm-up
    for _ in range(rounds):
        for n, (texts, _) in lengths.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            encoder.encode(texts)
            wall[n].append((time.perf_counter() - started) / docs)
            cpu[n].append((time.process_time() - started_cpu) / docs)
    best = {n: float(np.min(wall[n])) for n in wall}
    best_cpu = {n: float(np.min(cpu[n])) for n in cpu}
    return {str(n): {"windows_per_doc": w, "wall_s_per_doc": round(best[n], 4),
                     "wall_ratio_to_1": round(best[n] / best[1], 2), "cpu_s_per_doc": round(best_cpu[n], 4),
                     "cpu_ratio_to_1": round(best_cpu[n] / best_cpu[1], 2),
                     "cpu_s_per_window": round(best_cpu[n] / w, 4)} for n, (_, w) in lengths.items()}


# -- re-indexing -------------------------------------------------------------------------------


def reindex_part(cluster, collections, model, out: dict) -> None:
    """Time to copy an index whose `_source` holds the packed copy, against encoding it again."""
    from splade_os.cluster.reindex import reindex

    for coll in collections:
        vectors, encode_seconds = cached_vectors(coll, model)
        packed = build_index(cluster, f"quality-{coll}-prune-1", coll, model, vectors,
                             IngestOptions(index=IndexSettings(source_features="packed")))
        rows = {}
        for label, source, reencode in (("packed -> map (copied)", packed, False),
                                        ("none -> map (encoded again)", None, True)):
            if reencode and coll != "cranfield":
                continue  # encoding Vaswani again takes as long as its first ingest
            if source is None:
                source = build_index(cluster, f"quality-{coll}-prune-2", coll, model, vectors,
                                     IngestOptions(index=IndexSettings(source_features="none")))
            target = f"quality-{coll}-reindexed"
            cluster.request("DELETE", f"/{target}", params={"ignore_unavailable": "true"})
            stats = reindex(cluster, source.name, target, IndexSettings(source_features="map"), show_progress=False)
            rows[label] = {"method": stats.method, "documents": stats.documents, "seconds": round(stats.seconds, 1),
                           "docs_per_s": round(stats.documents / stats.seconds, 1)}
        out[coll] = {"reindex": rows, "first_encode_seconds": round(encode_seconds, 1)}
        print(coll, rows)


PARTS = {"hybrid": hybrid_part, "prune": prune_part, "idf": idf_part, "long": long_part, "reindex": reindex_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--collections", nargs="+", default=["cranfield", "vaswani"])
    parser.add_argument("--url", help="A running cluster (default: the local node, started when needed).")
    parser.add_argument("--out", type=Path, help="Result file (default benchmarks/results/quality-<part>.json).")
    args = parser.parse_args()
    from splade_os.cluster import connect
    from splade_os.local_node import start_background

    cluster = connect(args.url or start_background(show_progress=True))
    model = resolve_model("default", show_progress=False)
    out = {"part": args.part, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
           "engine": f"{cluster.engine.name} {cluster.version}", "model": model.name}
    PARTS[args.part](cluster, args.collections, model, out)
    path = args.out or RESULTS / f"quality-{args.part}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
