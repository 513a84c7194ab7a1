"""Expected retrieval scores, checked like tests (as Pyserini keeps its regressions).

benchmarks/regressions.json holds, per collection, the runs (SPLADE with the default model, BM25
on the same index, their default hybrid fusion) and their expected metrics with tolerances. This
script ingests each collection once (index `regress-<collection>`, reused when it holds the
corpus), evaluates every run and prints OK / FAIL per metric; it exits 1 when anything fails. tests/test_cluster.py checks
the bundled Cranfield entries on every test run, on both engines.

    python benchmarks/regressions.py --url http://127.0.0.1:9200
    python benchmarks/regressions.py --url ... --data ../shared/data     # also the collections found there
    python benchmarks/regressions.py --url ... --update                  # write the measured values
"""

import argparse
import json
import sys
from pathlib import Path

import splade_os
from splade_os.corpus.beir import load_beir
from splade_os.query.hybrid import Hybrid
from splade_os.ingest import IngestOptions
from splade_os.query import bm25_body

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "regressions.json"
BUNDLED = HERE.parent / "connector" / "data"
RUNS = {"splade-default": {}, "bm25": {"body": bm25_body}, "hybrid": {"hybrid": Hybrid()}}  # evaluate()'s arguments


def measure(cluster, folder: Path) -> dict:
    """{run: metrics} for the collection in `folder`, ingested once into regress-<name>."""
    index = cluster.index(f"regress-{folder.name}")
    queries, qrels, corpus = load_beir(folder)
    documents = sum(1 for line in open(corpus, encoding="utf-8") if line.strip())
    if not index.exists() or index.count() < documents - 10:  # a few lines of a corpus may be rejected
        splade_os.ingest(cluster, corpus, index.name, options=IngestOptions(dead_letter=Path(f"{index.name}.rejected.jsonl")))
    return {run: index.evaluate(queries, qrels, **arguments).metrics for run, arguments in RUNS.items()}


def check(measured: dict, expected: dict) -> list:
    """(run, metric, value, expected, tolerance, ok) for every expected metric."""
    rows = []
    for run, spec in expected.items():
        for metric, (value, tolerance) in spec["metrics"].items():
            got = measured[run][metric]
            rows.append((run, metric, got, value, tolerance, abs(got - value) <= tolerance))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the cluster (OpenSearch or Elasticsearch)")
    parser.add_argument("--data", type=Path, help="a folder of further BEIR collections (e.g. ../shared/data)")
    parser.add_argument("--update", action="store_true", help="write the measured values as the expected ones")
    args = parser.parse_args()
    cluster = splade_os.connect(args.url)
    expected = json.loads(EXPECTED.read_text())
    folders = {p.name: p for base in (BUNDLED, args.data) if base for p in sorted(base.iterdir())
               if (p / "corpus.jsonl").exists()}
    failed = False
    for name, spec in expected.items():
        if name not in folders:
            print(f"{name}: not found (give --data)")
            continue
        measured = measure(cluster, folders[name])
        for run, metric, got, value, tolerance, ok in check(measured, spec["runs"]):
            print(f"{'OK  ' if ok else 'FAIL'} {cluster.engine.name} {name} {run} {metric}: {got:.4f} "
                  f"(expected {value} +- {tolerance})")
            failed |= not ok
            if args.update:
                spec["runs"][run]["metrics"][metric][0] = round(got, 4)
    if args.update:
        EXPECTED.write_text(json.dumps(expected, indent=2) + "\n")
    return 1 if failed and not args.update else 0


if __name__ == "__main__":
    sys.exit(main())
