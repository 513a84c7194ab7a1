#!/usr/bin/env python
"""Benchmark 8: what `enrich` costs beside `ingest` of the same corpus, on both engines.

Vaswani's 11,429 abstracts, once per engine on a throw-away local node (or `--url`):

1. `ingest` of the JSONL into a new index (the pipeline every other benchmark measures);
2. the same documents written by "an app" (plain bulk requests, its own mapping, not timed),
   then `enrich` of that index: read shard by shard, encode, conditional partial updates;
3. `enrich` again with nothing changed: the cost of a pass that finds every document current
   (what a `--follow` pass costs on a quiet index, and a rerun after a kill);
4. 1% of the documents changed by the app (partial updates of the text), then `enrich`: the
   cost of catching up.

One `DocumentEncoder` serves every step (its load is not timed); docs/s counts encoded
documents. The two indexes' top-10 lists for Vaswani's 93 queries are compared after the first
enrich (same model, same texts: the same scores; documents with equal scores may swap places).

    python benchmarks/bench_enrich.py --out benchmarks/results/enrich-cpu.json
    python benchmarks/bench_enrich.py --engine opensearch --docs 2000    # a quick check
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import arguments, cluster, drop, machine, query_texts, save_results, table, working_dir  # noqa: E402
from splade_os.documents.encoder import DocumentEncoder  # noqa: E402
from splade_os.ingest import IngestOptions, ingest  # noqa: E402
from splade_os.ingest.enrich import EnrichOptions, enrich  # noqa: E402
from splade_os.models.resolve import resolve_model  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "vaswani"
INGESTED, APP = "bench-ingested", "bench-app"


def app_index(target, records: list) -> None:
    """What an app does: its own mapping, its own bulk writes."""
    target.request("PUT", f"/{APP}", {"mappings": {"properties": {"title": {"type": "text"},
                                                                  "text": {"type": "text"}}}})
    for start in range(0, len(records), 1000):
        body = b"".join(orjson.dumps({"index": {"_index": APP, "_id": r["_id"]}}) + b"\n"
                        + orjson.dumps({k: v for k, v in r.items() if k != "_id"}) + b"\n"
                        for r in records[start:start + 1000])
        assert not target.request("POST", "/_bulk", body, ndjson=True)["errors"]
    target.request("POST", f"/{APP}/_refresh")


def _agreement(target, queries: list) -> dict:
    """How many queries get the same top 10 from both indexes: ids in order, and scores in order
    (documents with equal scores may come in another order: Lucene breaks ties by its own doc ids)."""
    ids = scores = 0
    for text in queries:
        ingested = [(h.id, h.score) for h in target.index(INGESTED).search(text, k=10)]
        enriched = [(h.id, h.score) for h in target.index(APP).search(text, k=10)]
        ids += [i for i, _ in ingested] == [i for i, _ in enriched]
        scores += [s for _, s in ingested] == [s for _, s in enriched]
    return {"same top-10 ids": f"{ids}/{len(queries)}", "same top-10 scores": f"{scores}/{len(queries)}"}


def run_engine(engine: str, url, corpus: Path, records: list, queries: list, encoder, work: Path) -> dict:
    model = encoder.model
    with cluster(url, engine=engine) as target, working_dir(work):
        for name in (INGESTED, APP):
            drop(target, name)
        started = time.perf_counter()
        stats = ingest(target, corpus, INGESTED, model, encoder=encoder, show_progress=True,
                       options=IngestOptions(checkpoint=work / f"{engine}.i.json", dead_letter=work / "i.dead"))
        ingest_seconds = time.perf_counter() - started
        app_index(target, records)
        options = EnrichOptions(text_field="text", checkpoint=work / f"{engine}.e.json", dead_letter=work / "e.dead")
        first = enrich(target, APP, model, options=options, encoder=encoder, show_progress=True)
        same = _agreement(target, queries)
        quiet = enrich(target, APP, model, options=options, encoder=encoder, show_progress=False)
        changed = records[:: 100]
        body = b"".join(orjson.dumps({"update": {"_index": APP, "_id": r["_id"]}}) + b"\n"
                        + orjson.dumps({"doc": {"text": r["text"] + " (revised)"}}) + b"\n" for r in changed)
        assert not target.request("POST", "/_bulk", body, ndjson=True, params={"refresh": "true"})["errors"]
        catch_up = enrich(target, APP, model, options=options, encoder=encoder, show_progress=False)
        rows = [
            {"step": "ingest (JSONL -> new index)", "documents": stats.indexed, "encoded": stats.indexed,
             "seconds": round(ingest_seconds, 1), "docs/s": round(stats.indexed / ingest_seconds, 1)},
            {"step": "enrich (app's index, first run)", "documents": len(records), "encoded": first.encoded,
             "seconds": round(first.seconds, 1), "docs/s": round(first.encoded / first.seconds, 1)},
            {"step": "enrich again, nothing changed", "documents": len(records), "encoded": quiet.encoded,
             "seconds": round(quiet.seconds, 2), "docs/s": round(len(records) / quiet.seconds, 1)},
            {"step": f"enrich after {len(changed)} texts changed", "documents": len(records),
             "encoded": catch_up.encoded, "seconds": round(catch_up.seconds, 2),
             "docs/s": round(catch_up.encoded / catch_up.seconds, 1)},
        ]
        for name in (INGESTED, APP):
            drop(target, name)
        return {"engine": engine, "version": target.version, "rows": rows,
                "enrich vs ingest (docs/s)": round((first.encoded / first.seconds) / (stats.indexed / ingest_seconds), 3),
                **same, "passes of the first run": first.passes}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="a BEIR folder")
    parser.add_argument("--docs", type=int, default=1_000_000, help="at most this many documents")
    parser.add_argument("--engine", choices=["opensearch", "elasticsearch"], action="append",
                        help="the engines (default: both)")
    parser.add_argument("--url", help="a cluster to use instead of a throw-away node (one engine)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    queries = query_texts(args.data / "queries.jsonl")
    lines = (args.data / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:args.docs]
    records = [json.loads(line) for line in lines]
    encoder = DocumentEncoder(resolve_model("default", show_progress=False), device=args.device)
    summary = {"machine": machine(), "arguments": arguments(args), "device": str(encoder.device), "engines": []}
    with tempfile.TemporaryDirectory(prefix="bench-enrich-") as folder:
        work = Path(folder)
        corpus = work / "corpus.jsonl"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for engine in args.engine or ["opensearch", "elasticsearch"]:
            result = run_engine(engine, args.url, corpus, records, queries, encoder, work)
            summary["engines"].append(result)
            print(f"\n{engine} {result['version']}: enrich/ingest docs/s {result['enrich vs ingest (docs/s)']}, "
                  f"same top-10 ids {result['same top-10 ids']}, same top-10 scores {result['same top-10 scores']}")
            print(table(result["rows"], list(result["rows"][0])))
    save_results(args.out, summary)


if __name__ == "__main__":
    main()
