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

Every index is built by the library's `ingest` into one local node (started when `--url` is
not given); vectors are encoded once per collection and encoder setting (benchmarks/qualitylib.py).

    python benchmarks/bench_quality.py hybrid
    python benchmarks/bench_quality.py prune --collections cranfield
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from qualitylib import (CachedEncoder, cached_vectors, collection, force_merge, machine,  # noqa: E402
                        store_bytes)
from splade_os.evaluate import evaluated_queries, retrieval_metrics  # noqa: E402
from splade_os.hybrid import Hybrid, fuse, hit_lists  # noqa: E402
from splade_os.query import bm25_body  # noqa: E402
from splade_os.ingest import IngestOptions, ingest  # noqa: E402
from splade_os.model import resolve_model  # noqa: E402

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
        force_merge(cluster, name)
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
    depth, k = 100, 100
    for coll in collections:
        queries, qrels, _ = collection(coll)
        vectors, _ = cached_vectors(coll, model)
        index = build_index(cluster, f"quality-{coll}-base", coll, model, vectors)
        encoder = index.query_encoder()
        qids = evaluated_queries(queries, qrels)
        lists = {}
        for qid in qids:
            lists[qid] = hit_lists(index.request_msearch(
                index.hybrid_bodies(queries[qid], k, encoder, Hybrid(depth=depth), source=False)), index.name)
        rows = {}

        def measure(label, run):
            rows[label] = scores(retrieval_metrics(queries, qrels, run))

        measure("BM25", {q: {h["_id"]: h["_score"] for h in lists[q][0]} for q in qids})
        measure("SPLADE", {q: {h["_id"]: h["_score"] for h in lists[q][1]} for q in qids})
        for weight in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
            hybrid = Hybrid("minmax", weight=weight, depth=depth)
            measure(f"minmax w={weight}", {q: {h["_id"]: s for h, s in fuse(*lists[q], hybrid, k)} for q in qids})
        for rrf_k in (10, 30, 60, 100):
            hybrid = Hybrid("rrf", rrf_k=rrf_k, depth=depth)
            measure(f"rrf k={rrf_k}", {q: {h["_id"]: s for h, s in fuse(*lists[q], hybrid, k)} for q in qids})
        for boost in (0.05, 0.1, 0.2, 0.5, 1.0):
            run = {}
            for qid in qids:
                response = index.request_search(bool_body(queries[qid], encoder, index, boost, k))
                run[qid] = {h["_id"]: h["_score"] for h in response["hits"]["hits"]}
            measure(f"bool BM25 + {boost} x SPLADE", run)
        out[coll] = {"queries": len(qids), "docs": len(vectors), "depth": depth, "systems": rows,
                     "latency": hybrid_latency(index, encoder, queries, qids)}
        print_rows(coll, rows)


def hybrid_latency(index, encoder, queries, qids, passes: int = 3) -> dict:
    """p50 client-side ms of SPLADE, BM25 and the hybrid `_msearch` (top 10 returned), interleaved."""
    hybrid = Hybrid()
    bodies = {
        "SPLADE": [index.body(queries[q], 10, encoder, source=False) for q in qids],
        "BM25": [bm25_body(queries[q], 10, source=False) for q in qids],
        "hybrid (_msearch, depth 100 each)": [index.hybrid_bodies(queries[q], 10, encoder, hybrid, source=False)
                                             for q in qids],
    }
    send = {"SPLADE": index.request_search, "BM25": index.request_search,
            "hybrid (_msearch, depth 100 each)": lambda b: fuse(*hit_lists(index.request_msearch(b), index.name),
                                                               hybrid, 10)}
    samples = {name: [] for name in bodies}
    for name in bodies:  # warm-up
        for body in bodies[name][:20]:
            send[name](body)
    for _ in range(passes):
        for i in range(len(qids)):
            for name in bodies:
                started = time.perf_counter()
                send[name](bodies[name][i])
                samples[name].append(time.perf_counter() - started)
    return {name: round(float(np.median(s)) * 1e3, 2) for name, s in samples.items()}


def print_rows(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"{'system':<34}" + "".join(f"{m:>16}" for m in METRICS))
    for label, values in rows.items():
        print(f"{label:<34}" + "".join(f"{values[m]:>16.4f}" for m in METRICS))


PARTS = {"hybrid": hybrid_part}


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
