#!/usr/bin/env python
"""Benchmark 5: OpenSearch and Elasticsearch side by side: same model, same corpora, one run.

For each collection (Cranfield, bundled; Vaswani from `--data`), the corpus is encoded once by one
`DocumentEncoder` (timed: the share both engines have in common) and ingested into an index on
each engine by the library's `ingest()` with those vectors replayed, so the ingest rate is each
engine's own share with the client's: bulk requests, OpenSearch's ingest pipeline or the
client-side checks, indexing, the final refresh. (`--end-to-end`: each engine's ingest encodes
the corpus itself, as `splade-os ingest` does.) The engines take turns (the first engine changes
from one collection to the next). OpenSearch runs the index's ingest pipeline (the model checks
in painless); the minimal Elasticsearch has no ingest processors, so there the client makes the
same checks: one more OpenSearch ingest without the pipeline (`has_ingest_checks` off, into an
index used for nothing else) shows what the pipeline costs. The indexes are then force-merged to
one segment and reused for everything below:

- quality (`SpladeIndex.evaluate`, k=100): nDCG@10, MRR@10, recall@10, MAP@100 and graded
  nDCG@10 of SPLADE on each engine (both store 9 significant bits: expected equal within 0.002)
  and of BM25 (`multi_match` over title and text, `splade_os.query.bm25_body`) on each engine;
- on Elasticsearch also: (a) the bool of boosted `term` clauses that `feature_query` sends against
  the `sparse_vector` query with `prune: false` on the same field (both the exact dot product), the
  `sparse_vector` query with Elasticsearch's default pruning and no rescore (what a body without
  `"prune": false` gets from 8.19), and (b) `Pruning(...)` (a pruned first pass + a rescore of
  the pruned tokens over the top 100) at a few thresholds (`--pruning FREQ:WEIGHT ...`);
- latency of every variant above: one client, top 10, `_source: false` (ids and scores: the
  query itself, not the fetch of stored fields), bodies built before the clock; after a warm-up
  pass, `--passes` passes in which each query is sent once per variant, the variants (of both
  engines) interleaved query by query in a rotating order; client-side p50/p99 (request to
  parsed response) and the engine's `took`. One more variant per engine, an empty search
  (`match_none`, size 0), is the floor of a request on that engine and its client.

Without `--os-url` a throw-away OpenSearch node is started on loopback (`benchlib.cluster`). It
inherits this process's nice value: under `nice -n 10` on a busy machine it would run at a lower
priority than an Elasticsearch node started normally (the script warns); start the OpenSearch node
apart and pass `--os-url` then, so that both engines run at the same priority.
Indexes are named `bench-engines-<collection>` and deleted at the end unless `--keep`;
`--reuse` takes such indexes as they are when they hold the whole corpus (no ingest).

    python benchmarks/bench_engines.py --es-url http://127.0.0.1:9299 --out benchmarks/results/engines-cpu.json
    python benchmarks/bench_engines.py --docs 100 --passes 1                  # a quick check of the script
"""

import argparse
import contextlib
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchlib import bench_model, cluster, drop, machine, save_results, table, working_dir  # noqa: E402
from splade_os.corpus.beir import load_beir  # noqa: E402
from splade_os.corpus import Document, read_corpus  # noqa: E402
from splade_os.query.engine import ELASTICSEARCH, OPENSEARCH  # noqa: E402
from splade_os.ingest import IngestOptions, ingest  # noqa: E402
from splade_os.query import Pruning, bm25_body, sparse_vector_query, weighted_terms  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
COLLECTIONS = {"cranfield": REPO / "connector" / "data" / "cranfield", "vaswani": None}  # vaswani: under --data
METRICS = ("ndcg@10", "mrr@10", "recall@10", "map@100", "ndcg@10_graded")
EXPECTED_GAP = 0.002  # SPLADE nDCG@10, Elasticsearch vs OpenSearch: same 9-bit values


class ReplayEncoder:
    """Stands in for the `DocumentEncoder` in `ingest()`: hands out vectors encoded beforehand,
    so that each engine's ingest is timed without the encoding both share."""

    def __init__(self, vectors: dict, vocab_size: int):
        self.vectors, self.vocab_size = vectors, vocab_size

    def encode_stream(self, windows, on_batch=None):
        for tag, texts in windows:
            if on_batch:
                on_batch(len(texts))
            yield tag, [self.vectors[text] for text in texts]


def encode_once(encoder, corpus: Path) -> tuple:
    """{content: vector} of every indexable document of `corpus`, and the seconds it took."""
    texts = list(dict.fromkeys(d.content for d in read_corpus(corpus) if isinstance(d, Document)))
    began = time.perf_counter()
    vectors = encoder.encode(texts)
    return dict(zip(texts, vectors)), time.perf_counter() - began, len(texts)


def force_merge(target, index: str) -> None:
    """One segment on each engine: the same, stable shape for every query."""
    for method, path, params in (("POST", "_refresh", None), ("POST", "_forcemerge", {"max_num_segments": 1}),
                                 ("POST", "_flush", None), ("POST", "_refresh", None)):
        target.request(method, f"/{index}/{path}", params=params)


def store_of(target, index: str) -> dict:
    stats = target.request("GET", f"/{index}/_stats/store,segments")["indices"][index]["primaries"]
    return {"store_bytes": stats["store"]["size_in_bytes"], "segments": stats["segments"]["count"]}


def ingest_into(target, corpus: Path, name: str, model, encoder, tmp: Path, reuse: bool, documents: int) -> dict:
    """Ingest `corpus` into `name` on `target` (or reuse it); the timing and the index afterwards."""
    index = target.index(name)
    if reuse and index.exists() and index.count() >= documents:
        return {"reused": True, "count_after": index.count(), **store_of(target, name)}
    drop(target, name)
    options = IngestOptions(checkpoint=tmp / f"{target.engine.name}-{name}.checkpoint",
                            dead_letter=tmp / f"{target.engine.name}-{name}.rejected.jsonl")
    with working_dir(tmp):
        stats = ingest(target, corpus, name, model, options=options, encoder=encoder, show_progress=False)
    force_merge(target, name)
    return {"seconds": stats.seconds, "docs_per_s": stats.indexed / stats.seconds, "indexed": stats.indexed,
            "rejected": stats.rejected, "count_after": stats.count_after, **store_of(target, name)}


@contextlib.contextmanager
def without_pipeline(target):
    """`target` as a cluster without ingest processors: new indexes get no pipeline, the client checks."""
    saved = target.__dict__.get("has_ingest_checks")
    target.__dict__["has_ingest_checks"] = False
    try:
        yield target
    finally:
        target.__dict__.pop("has_ingest_checks")
        if saved is not None:
            target.__dict__["has_ingest_checks"] = saved


def floor_body(text: str, k: int) -> dict:
    """An empty search: what a request costs on an engine and its client, with no query work."""
    return {"size": 0, "query": {"match_none": {}}, "track_total_hits": False}


def sparse_vector_body(index, encoder, engine_default: bool = False):
    """Elasticsearch's `sparse_vector` query on the sparse field: exact (`prune: false`), or as the
    engine runs it when the body does not say (8.19 prunes by default, no rescore)."""
    def body(text: str, k: int) -> dict:
        terms = weighted_terms(encoder.weights(text), encoder.keys, index.cluster.max_clause_count)
        query = sparse_vector_query(terms, index.field) if terms else {"match_none": {}}
        if engine_default and terms:
            query["sparse_vector"].pop("prune")
        return {"size": k, "query": query, "track_total_hits": False}
    return body


def variants_for(index, encoder, prunings) -> dict:
    """{variant name: body(text, k)} for one engine's index."""
    label = index.cluster.engine.label
    splade = "SPLADE (rank_feature bool)" if index.cluster.engine is OPENSEARCH else "SPLADE (bool of term clauses)"
    out = {f"{label} {splade}": lambda text, k: index.body(text, k, encoder),
           f"{label} BM25 (multi_match title+text)": lambda text, k: bm25_body(text, k)}
    if index.cluster.engine is ELASTICSEARCH:
        out[f"{label} SPLADE (sparse_vector, prune false)"] = sparse_vector_body(index, encoder)
        out[f"{label} sparse_vector, engine's default pruning, no rescore"] = sparse_vector_body(index, encoder, True)
        for p in prunings:
            out[f"{label} Pruning({p.tokens_freq_ratio_threshold:g}, {p.tokens_weight_threshold:g}) + rescore"] = (
                lambda text, k, p=p: index.body(text, k, encoder, pruning=p))
    return out


def quality(indexes: dict, variants: dict, queries, qrels, encoder) -> dict:
    """`SpladeIndex.evaluate` of every variant: the model-card metrics (and evaluate's own latency)."""
    out = {}
    for name, body in variants.items():
        result = indexes[name].evaluate(queries, qrels, encoder=encoder, body=body)
        out[name] = {**{m: result.metrics[m] for m in METRICS}, "evaluate_p50_ms": result.latency["p50_ms"],
                     "queries": result.queries}
    return out


def latency(indexes: dict, variants: dict, queries: list, passes: int, k: int = 10) -> dict:
    """Client-side ms and `took` per request, the variants interleaved query by query (rotating)."""
    names = list(variants)
    bodies = {name: [{**variants[name](q, k), "_source": False} for q in queries] for name in names}
    for name in names:  # warm-up: JIT, caches, file pages
        for body in bodies[name]:
            indexes[name].request_search(body)
    samples = {name: ([], []) for name in names}
    turn = 0
    for _ in range(passes):
        for i in range(len(queries)):
            turn += 1
            for name in names[turn % len(names):] + names[: turn % len(names)]:
                began = time.perf_counter()
                response = indexes[name].request_search(bodies[name][i])
                samples[name][0].append(time.perf_counter() - began)
                samples[name][1].append(response["took"])
    out = {}
    for name, (seconds, took) in samples.items():
        ms, took = np.asarray(seconds) * 1e3, np.asarray(took, dtype=np.float64)
        out[name] = {"client_p50_ms": float(np.median(ms)), "client_p99_ms": float(np.percentile(ms, 99)),
                     "client_mean_ms": float(ms.mean()), "took_p50_ms": float(np.median(took)),
                     "took_p99_ms": float(np.percentile(took, 99)), "queries": int(ms.size)}
    return out


def run_collection(name: str, folder: Path, clusters: list, model, encoder, args, tmp: Path, turn: int) -> dict:
    """Encode, ingest on each engine, evaluate and time one collection."""
    queries, qrels, corpus = load_beir(folder)
    if args.docs:  # a quick check: the first documents only
        subset = tmp / f"{name}-{args.docs}.jsonl"
        with open(corpus, encoding="utf-8") as f:
            subset.write_text("".join(line for _, line in zip(range(args.docs), f)), encoding="utf-8")
        corpus = subset
    replay, encode_seconds, documents = None, None, sum(1 for d in read_corpus(corpus) if isinstance(d, Document))
    if not args.end_to_end:
        vectors, encode_seconds, _ = encode_once(encoder, corpus)
        replay = ReplayEncoder(vectors, encoder.vocab_size)
    index_name = f"bench-engines-{name}"
    ingests = {}
    for target in clusters[turn % 2:] + clusters[: turn % 2]:  # the engines take turns going first
        ingests[target.engine.name] = ingest_into(target, corpus, index_name, model, replay or encoder, tmp,
                                                  args.reuse, documents)
    if args.pipeline_cost and not args.reuse:
        with without_pipeline(clusters[0]) as target:
            ingests["opensearch, no ingest pipeline (client-side checks)"] = ingest_into(
                target, corpus, index_name + "-client-checks", model, replay or encoder, tmp, False, documents)
            drop(target, index_name + "-client-checks")
    indexes, variants = {}, {}
    for target in clusters:
        for variant, body in variants_for(target.index(index_name), model.query_encoder, args.pruning).items():
            indexes[variant], variants[variant] = target.index(index_name), body
    scores = quality(indexes, variants, queries, qrels, model.query_encoder)
    for target in clusters:  # the floor: timed, not evaluated
        variant = f"{target.engine.label} empty search (match_none, size 0)"
        indexes[variant], variants[variant] = target.index(index_name), floor_body
    timings = latency(indexes, variants, [queries[q] for q in queries], args.passes)
    os_splade, es_splade = (next(v for v in scores if v.startswith(e.label + " SPLADE"))
                            for e in (OPENSEARCH, ELASTICSEARCH))
    gap = scores[es_splade]["ndcg@10"] - scores[os_splade]["ndcg@10"]
    return {"documents": documents, "queries": len(queries), "corpus": str(corpus),
            "encode": None if encode_seconds is None else {
                "seconds": encode_seconds, "docs_per_s": documents / encode_seconds},
            "ingest": ingests, "quality": scores, "latency": timings,
            "splade_ndcg10_es_minus_os": gap, "splade_ndcg10_within_expected": abs(gap) <= EXPECTED_GAP}


def client_version(engine) -> str:
    from importlib.metadata import version

    if engine is OPENSEARCH:
        return f"opensearch-py {version('opensearch-py')}"
    return f"elasticsearch {version('elasticsearch')}, elastic-transport {version('elastic-transport')}"


def pruning_arg(text: str) -> Pruning:
    freq, _, weight = text.partition(":")
    return Pruning(tokens_freq_ratio_threshold=float(freq), tokens_weight_threshold=float(weight or 0.4))


def print_collection(name: str, r: dict) -> None:
    encode = r["encode"]
    print(f"\n## {name}: {r['documents']} documents, {r['queries']} queries"
          + (f"; encoded once: {encode['docs_per_s']:,.1f} docs/s" if encode else ""))
    print(table([{"engine": e, "docs/s": f"{i['docs_per_s']:,.1f}" if "docs_per_s" in i else "(reused)",
                  "seconds": f"{i['seconds']:.1f}" if "seconds" in i else "", "docs": i["count_after"],
                  "store MiB": f"{i['store_bytes'] / 2**20:.2f}"} for e, i in r["ingest"].items()],
                ["engine", "docs/s", "seconds", "docs", "store MiB"]))
    rows = [{"variant": v, **{m: f"{r['quality'][v][m]:.4f}" for m in METRICS if v in r["quality"]},
             "p50 ms": f"{t['client_p50_ms']:.2f}", "p99 ms": f"{t['client_p99_ms']:.2f}",
             "took p50": f"{t['took_p50_ms']:.0f}"} for v, t in r["latency"].items()]
    print(table(rows, ["variant", *METRICS, "p50 ms", "p99 ms", "took p50"]))
    print(f"SPLADE nDCG@10 Elasticsearch - OpenSearch: {r['splade_ndcg10_es_minus_os']:+.4f} "
          f"({'within' if r['splade_ndcg10_within_expected'] else 'OUTSIDE'} {EXPECTED_GAP})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="default, or a model folder")
    parser.add_argument("--os-url", help="an OpenSearch cluster (default: start a throw-away local node)")
    parser.add_argument("--es-url", default="http://127.0.0.1:9299", help="an Elasticsearch cluster")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding further BEIR collections (vaswani/)")
    parser.add_argument("--collections", nargs="+", default=list(COLLECTIONS), choices=list(COLLECTIONS))
    parser.add_argument("--docs", type=int, default=None, help="first N documents of each corpus (a quick check)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the queries per variant")
    parser.add_argument("--pruning", nargs="+", type=pruning_arg, default=[Pruning(), Pruning(2, 0.4), Pruning(5, 0.8)],
                        metavar="FREQ:WEIGHT", help="Elasticsearch Pruning thresholds to try (default 5:0.4 2:0.4 5:0.8)")
    parser.add_argument("--device", default=None, help="the encoder's device (default: the best available)")
    parser.add_argument("--end-to-end", action="store_true", help="each engine's ingest encodes the corpus itself")
    parser.add_argument("--no-pipeline-cost", dest="pipeline_cost", action="store_false",
                        help="skip the OpenSearch ingest without the pipeline")
    parser.add_argument("--reuse", action="store_true", help="reuse bench-engines-* indexes that hold the corpus")
    parser.add_argument("--keep", action="store_true", help="keep the indexes afterwards")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    command = "python " + shlex.join(sys.argv)

    from splade_os.documents.encoder import DocumentEncoder

    model = bench_model(args.model)
    encoder = DocumentEncoder(model, device=args.device)
    folders = {name: COLLECTIONS[name] or args.data / name for name in args.collections}
    if not args.os_url and os.nice(0) != 0:
        print(f"warning: the throw-away OpenSearch node inherits nice {os.nice(0)}; the Elasticsearch node "
              "may run at another priority (start the OpenSearch node apart and pass --os-url)", file=sys.stderr)
    load_before = os.getloadavg()[0]
    results = {}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        clusters = [stack.enter_context(cluster(args.os_url, timeout=600, engine="opensearch")),
                    stack.enter_context(cluster(args.es_url, timeout=600, engine="elasticsearch"))]
        engines = {c.engine.name: {"version": c.version, "node": "given URL" if url else "throw-away local node",
                                   "client": client_version(c.engine)}
                   for c, url in zip(clusters, (args.os_url, args.es_url))}
        try:
            for turn, (name, folder) in enumerate(folders.items()):
                results[name] = run_collection(name, folder, clusters, model, encoder, args, Path(tmp), turn)
                print_collection(name, results[name])
        finally:
            if not args.keep:
                for target in clusters:
                    for name in folders:
                        drop(target, f"bench-engines-{name}")
    load_after = os.getloadavg()[0]
    summary = {"benchmark": "engines", "command": command, "machine": machine(), "model": args.model,
               "engines": engines, "encoder_device": str(encoder.device), "client_nice": os.nice(0), "end_to_end": args.end_to_end,
               "passes": args.passes, "pruning": [vars(p) for p in args.pruning], "collections": results,
               "load_average_1min": {"before": load_before, "after": load_after}, "date": time.strftime("%Y-%m-%d")}
    print(f"\n{summary['machine']} | {engines} | load avg {load_before:.1f} -> {load_after:.1f} | {summary['date']}")
    print(f"$ {command}")
    save_results(args.out, summary)


if __name__ == "__main__":
    main()
