#!/usr/bin/env python
"""Benchmark 10: what `search --explain` costs beside a plain search.

Vaswani's abstracts ingested once per engine and per `source_features` ("map": the feature map
in `_source`, explained from one `_mget`; "none": no vector in `_source`, explained from the
engines' own explanation of the query restricted to the hits), on a throw-away local node of each
engine. Each of the 93 queries is searched (`SpladeIndex.search`, top 10, title and text in the
hits) plainly and with `explain=True`, interleaved query by query, for `--passes` passes after a
warm-up pass; client-side p50 and p99 in ms, and their ratio.

    python benchmarks/bench_explain.py --out benchmarks/results/explain-cpu.json
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import arguments, cluster, drop, machine, query_texts, save_results, table, working_dir  # noqa: E402
from splade_os.cluster.index import IndexSettings  # noqa: E402
from splade_os.documents.encoder import DocumentEncoder  # noqa: E402
from splade_os.ingest import IngestOptions, ingest  # noqa: E402
from splade_os.models.resolve import resolve_model  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "vaswani"


def measure(index, queries, passes: int) -> dict:
    times = {"plain": [], "explain": []}
    for run in range(passes + 1):  # the first pass warms caches and is not counted
        for text in queries:
            for name, explain in (("plain", False), ("explain", True)):
                started = time.perf_counter()
                index.search(text, k=10, explain=explain)
                if run:
                    times[name].append((time.perf_counter() - started) * 1000)
    p50 = {name: statistics.median(values) for name, values in times.items()}
    p99 = {name: statistics.quantiles(values, n=100)[98] for name, values in times.items()}
    return {"plain p50 ms": round(p50["plain"], 2), "explain p50 ms": round(p50["explain"], 2),
            "ratio p50": round(p50["explain"] / p50["plain"], 2), "plain p99 ms": round(p99["plain"], 2),
            "explain p99 ms": round(p99["explain"], 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="a BEIR folder")
    parser.add_argument("--docs", type=int, default=1_000_000, help="at most this many documents")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--engine", choices=["opensearch", "elasticsearch"], action="append")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    queries = query_texts(args.data / "queries.jsonl")
    model = resolve_model("default", show_progress=False)
    encoder = DocumentEncoder(model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-explain-") as folder:
        work = Path(folder)
        corpus = work / "corpus.jsonl"
        lines = (args.data / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:args.docs]
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for engine in args.engine or ["opensearch", "elasticsearch"]:
            with cluster(None, engine=engine) as target, working_dir(work):
                for source in ("map", "none"):
                    name = f"bench-explain-{source}"
                    drop(target, name)
                    ingest(target, corpus, name, model, encoder=encoder, show_progress=False,
                           options=IngestOptions(index=IndexSettings(source_features=source),
                                                 checkpoint=work / f"{engine}-{source}.json",
                                                 dead_letter=work / "dead.jsonl"))
                    row = {"engine": engine, "source_features": source, **measure(target.index(name), queries,
                                                                                   args.passes)}
                    rows.append(row)
                    print(row, flush=True)
                    drop(target, name)
    print(table(rows, list(rows[0])))
    save_results(args.out, {"machine": machine(), "arguments": arguments(args), "documents": len(lines),
                            "queries": len(queries), "rows": rows})


if __name__ == "__main__":
    main()
