#!/usr/bin/env python
"""Benchmark 2: end-to-end ingest, side by side in one run on one node.

(a) the connector's `ingest()` (what `splade-os ingest` runs: streaming reader, length-sorted
token-budget batches, bulk requests sent while the next window is encoded, through the index's
ingest pipeline), and (b) the plain loop an app would write: read a chunk of documents, call
sentence-transformers `encode_document` (batch 32), turn the sparse rows into {token: weight}
dicts, send them with the engine client's `helpers.bulk` (opensearch-py's on OpenSearch), into
an index created directly with a `rank_features` (`sparse_vector` on Elasticsearch) mapping (no
pipeline). Same model, same node, same documents, same bulk size;
each into a fresh index. Both models are loaded and warmed up before the clock starts (load
times are reported apart); each timing covers index creation, encoding, indexing and the final
refresh. Each variant runs `--repeat` times, the order alternating, each time into a fresh index;
reports the median docs/s and wall time, and the ratio.

Without `--url` a throw-away OpenSearch node is started on loopback (and shares the CPU with
the encoders, as on a one-machine set-up).

    python benchmarks/bench_ingest.py                       # first 400 Cranfield docs, CPU
    python benchmarks/bench_ingest.py --docs 1400 --repeat 1 --url http://127.0.0.1:9200
    python benchmarks/bench_ingest.py --docs 1400 --device cuda --out benchmarks/results/ingest-gpu.json
"""

import argparse
import json
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
import sentence_transformers  # noqa: E402,F401  (imported here so that load times below are loads, not imports)
import torch  # noqa: E402
import transformers  # noqa: E402,F401

from benchlib import bench_model, cluster, drop, machine, save_results, table, working_dir  # noqa: E402
from splade_os.bulk import BulkOptions  # noqa: E402
from splade_os.documents.encoder import DocumentEncoder  # noqa: E402
from splade_os.query.engine import ELASTICSEARCH  # noqa: E402
from splade_os.ingest import IngestOptions, ingest  # noqa: E402
from splade_os.query.keys import escape_key  # noqa: E402

OURS = "connector ingest()"
PLAIN = "plain loop (ST encode_document + helpers.bulk)"
DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "connector" / "data" / "cranfield" / "corpus.jsonl"


def first_lines(corpus: Path, n: int, folder: Path) -> Path:
    """The first `n` lines of the corpus as a file of their own (both variants read it)."""
    path = folder / f"{corpus.stem}-{n}.jsonl"
    with open(corpus, encoding="utf-8") as source, open(path, "w", encoding="utf-8") as out:
        for i, line in enumerate(source):
            if i >= n:
                break
            out.write(line)
    return path


def sparse_rows_to_dicts(embeddings: torch.Tensor, keys):
    """{escaped token: weight} per row of a sparse COO [docs, vocab] tensor from encode_document."""
    embeddings = embeddings.coalesce()  # sorted by (row, column)
    rows, cols = embeddings.indices().cpu().numpy()
    values = embeddings.values().float().cpu().numpy()
    bounds = np.searchsorted(rows, np.arange(embeddings.shape[0] + 1))
    return [
        {keys[c]: float(v) for c, v in zip(cols[a:b].tolist(), values[a:b].tolist())}
        for a, b in zip(bounds[:-1], bounds[1:])
    ]


def plain_loop(cluster, index, path: Path, model, keys, batch_size: int, chunk: int) -> dict:
    """What an app without the connector does: encode a chunk, bulk it with its client, repeat."""
    if cluster.engine is ELASTICSEARCH:
        from elasticsearch import helpers
    else:
        from opensearchpy import helpers

    client = cluster.client
    started = time.perf_counter()
    cluster.request("PUT", f"/{index}", {
        "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"}},
        "mappings": {"dynamic": False, "properties": {
            "title": {"type": "text"}, "text": {"type": "text"}, "splade": {"type": cluster.engine.feature_type}}},
    })
    indexed, encode_seconds = 0, 0.0

    def send(records):
        nonlocal indexed, encode_seconds
        texts = [f"{r.get('title') or ''} {r['text']}".strip() for r in records]
        began = time.perf_counter()
        embeddings = model.encode_document(texts, batch_size=batch_size)
        maps = sparse_rows_to_dicts(embeddings, keys)
        encode_seconds += time.perf_counter() - began
        actions = [{"_index": index, "_id": r["_id"],
                    "_source": {"title": r.get("title", ""), "text": r["text"], "splade": m}}
                   for r, m in zip(records, maps) if m]
        ok, _ = helpers.bulk(client, actions, chunk_size=len(actions) or 1)
        indexed += ok

    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            records.append(json.loads(line))
            if len(records) == chunk:
                send(records)
                records = []
    if records:
        send(records)
    target = cluster.index(index)
    target.refresh()
    count = target.count()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "indexed": indexed, "count_after": count, "encode_seconds": encode_seconds}


def serialization_cost(records, vectors, keys, index: str, repeat: int = 5) -> dict:
    """Client-side microseconds per document to turn (document, vector) into bulk request bytes,
    best of `repeat`: (a) what `helpers.bulk` does with a {token: weight} dict per document
    (opensearch-py's JSON serializer), (b) the connector's `BulkLines`. This work holds the GIL,
    so on a fast GPU it bounds the ingest rate of a single process."""
    from opensearchpy.serializer import JSONSerializer

    from splade_os.bulk import BulkLines

    serializer = JSONSerializer()
    lines = BulkLines(index, "splade", keys)

    def plain():
        return "\n".join(
            serializer.dumps(part) for r, v in zip(records, vectors)
            for part in ({"index": {"_index": index, "_id": r["_id"]}},
                         {"title": r.get("title", ""), "text": r["text"], "splade": v.to_dict(keys)}))

    def connector():
        return b"".join(lines.document(r["_id"], {"title": r.get("title", ""), "text": r["text"]}, v)
                        for r, v in zip(records, vectors))

    out = {}
    for name, fn in (("dict + json (helpers.bulk)", plain), ("BulkLines", connector)):
        best = min(_timed(fn) for _ in range(repeat))
        out[name] = {"us_per_doc": best / len(records) * 1e6, "docs_per_s_one_core": len(records) / best}
    return out


def _timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def mean_features(cluster, index) -> float:
    """Mean number of stored features per document, read back from the index (a sanity check)."""
    hits = cluster.index(index).request_search({"size": 200, "_source": ["splade"], "query": {"match_all": {}}})
    maps = [h["_source"].get("splade", {}) for h in hits["hits"]["hits"]]
    return sum(len(m) for m in maps) / max(len(maps), 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="default, distilbert, or a model folder")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="BEIR corpus.jsonl")
    parser.add_argument("--docs", type=int, default=400, help="first N documents of the corpus")
    parser.add_argument("--url", help="an existing cluster (default: start a throw-away local node)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers' batch size (its default)")
    parser.add_argument("--bulk-docs", type=int, default=500, help="documents per bulk request, both variants")
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant, order alternating; median")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    command = "python " + shlex.join(sys.argv)

    model = bench_model(args.model)
    folder = model.root

    # Load both models before any clock runs: loading is a one-off cost, reported apart.
    began = time.perf_counter()
    ours = DocumentEncoder(model, device=args.device)
    load_ours = time.perf_counter() - began
    began = time.perf_counter()
    st_model = sentence_transformers.SparseEncoder(str(folder), device=args.device)
    load_st = time.perf_counter() - began
    vocab = st_model.tokenizer.get_vocab()
    keys = [""] * len(vocab)
    for token, i in vocab.items():
        keys[i] = escape_key(token)

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp = Path(tmp)
        path = first_lines(args.corpus, args.docs, tmp)
        docs = sum(1 for _ in open(path, encoding="utf-8"))
        warm = [json.loads(line) for line in open(path, encoding="utf-8")][:64]
        warm_texts = [f"{r.get('title') or ''} {r['text']}" for r in warm]
        # First calls pay one-off costs (kernel selection, thread pools); keep them off the clock.
        ours.encode(warm_texts)
        st_model.encode_document(warm_texts, batch_size=args.st_batch_size)

        records = [json.loads(line) for line in open(path, encoding="utf-8")]
        serialization = serialization_cost(records, ours.encode(
            [f"{r.get('title') or ''} {r['text']}" for r in records]), keys, "bench-ingest")

        load_before = os.getloadavg()[0]
        with cluster(args.url) as target:
            engine = target.engine.name
            stamp = time.strftime("%Y%m%d%H%M%S")
            runs = {OURS: [], PLAIN: []}
            for repeat in range(args.repeat):
                # Alternate the order, so that neither variant always runs on a warmer node.
                order = [OURS, PLAIN] if repeat % 2 == 0 else [PLAIN, OURS]
                for name in order:
                    index = f"bench-ingest-{'connector' if name == OURS else 'plain'}-{stamp}-{repeat}"
                    try:
                        if name == OURS:
                            began = time.perf_counter()
                            options = IngestOptions(bulk=BulkOptions(docs=args.bulk_docs),
                                                    checkpoint=tmp / f"{index}.checkpoint")
                            with working_dir(tmp):
                                stats = ingest(target, path, index, model, options=options, encoder=ours,
                                               show_progress=False)
                            run = {"seconds": time.perf_counter() - began, "indexed": stats.indexed,
                                   "rejected": stats.rejected, "count_after": stats.count_after}
                        else:
                            run = plain_loop(target, index, path, st_model, keys, args.st_batch_size, args.bulk_docs)
                        run["stored_features_per_doc"] = mean_features(target, index)
                    finally:
                        drop(target, index)
                    runs[name].append(run)
        load_after = os.getloadavg()[0]

    results = {}
    for name, load in ((OURS, load_ours), (PLAIN, load_st)):
        seconds = statistics.median(r["seconds"] for r in runs[name])
        indexed = runs[name][0]["indexed"]
        results[name] = {"seconds": seconds, "docs_per_s": indexed / seconds, "indexed": indexed,
                         "count_after": runs[name][0]["count_after"], "model_load_seconds": load,
                         "stored_features_per_doc": runs[name][0]["stored_features_per_doc"], "runs": runs[name]}
        if name == PLAIN:
            results[name]["encode_seconds"] = statistics.median(r["encode_seconds"] for r in runs[name])
    base = results[PLAIN]["seconds"]
    rows = []
    for name, r in results.items():
        r["speed_up_vs_plain"] = base / r["seconds"]
        rows.append({"variant": name, "docs": r["count_after"], "seconds": f"{r['seconds']:.2f}",
                     "docs/s": f"{r['docs_per_s']:,.1f}", "speed-up": f"{r['speed_up_vs_plain']:.2f}x",
                     "of which encode s": f"{r['encode_seconds']:.2f}" if "encode_seconds" in r else "(overlapped)",
                     "features/doc": f"{r['stored_features_per_doc']:.0f}",
                     "model load s": f"{r['model_load_seconds']:.2f}"})
    summary = {"benchmark": "ingest", "command": command, "machine": machine(), "device": args.device,
               "model": args.model, "engine": engine, "docs": docs, "corpus": str(args.corpus), "bulk_docs": args.bulk_docs,
               "st_batch_size": args.st_batch_size, "repeat": args.repeat,
               "node": "given --url" if args.url else "throw-away local node on this machine",
               "load_average_1min": {"before": load_before, "after": load_after},
               "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "results": results,
               "ratio_connector_over_plain_docs_per_s": base / results[OURS]["seconds"],
               "client_serialization": serialization}
    print(f"{summary['machine']} | device {args.device} | model {args.model} | {docs} docs, median of {args.repeat} "
          f"| load avg {load_before:.1f} -> {load_after:.1f} | {summary['date']}")
    print(f"$ {command}")
    print(table(rows, ["variant", "docs", "seconds", "docs/s", "speed-up", "of which encode s", "features/doc",
                       "model load s"]))
    print()
    print(table([{"bulk request bytes from (document, vector)": name, "us/doc": f"{r['us_per_doc']:.0f}",
                  "docs/s on one core": f"{r['docs_per_s_one_core']:,.0f}"} for name, r in serialization.items()],
                ["bulk request bytes from (document, vector)", "us/doc", "docs/s on one core"]))
    save_results(args.out, summary)


if __name__ == "__main__":
    main()
