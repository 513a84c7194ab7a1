#!/usr/bin/env python
"""Benchmark 7: what a filter costs a search, on both engines.

Vaswani's 11,429 abstracts (with `--repeat R`, R times as many documents: the abstracts, then
documents each made of two abstracts, seeded pairs, all distinct, so that a larger index has no
copies whose tied scores fill a top k) are ingested with fields a catalogue has (`tenant`, `category`,
`price`, `published`, `in_stock`, `rating`; typed by a `--mapping`-style mapping, so `category` and
`tenant` are keywords), once per engine, on a throw-away local node of each (or `--url`). Each of
Vaswani's 93 queries is then sent as the SPLADE body of `SpladeIndex.body`, size 10, without a
filter and with each filter below, one request at a time, the variants interleaved query by query
for `--passes` passes after a warm-up pass; the client-side latency (request to parsed response)
and the engine's `took` are reported as p50/p99, and the hits each variant returned on average.
Each filter is sent as `SpladeIndex.body` sends it ("sent as": a filter matching 5% of the index
or more as `post_filter`, a narrower one as a conjunction), and in each shape side by side:
"(flat)", beside the SPLADE clauses with `minimum_should_match: 1` (what goes when the share is
unknown); "(conjunction)", the query and the filter as two `must` clauses, the filter a
`constant_score` of boost 0; "(post_filter)", the unfiltered query with the filter as the body's
`post_filter`. The hits and scores are the same.

Filters, from broad to narrow (the share of the index each matches is recorded):
in_stock=true (2/3), published>=2024-01-01 (1/2), tenant=t3 (1/7), category=books & price<20
(~1/13), tenant=t3 & rating<2 (1/21), category=books & tenant=t3 (1/35), the same & in_stock=true
(~1/50), category=books & rating=5 & tenant=t3 (~1/200), and one matching nothing.

    python benchmarks/bench_filter.py --out benchmarks/results/filter-cpu.json
    python benchmarks/bench_filter.py --repeat 5 --out benchmarks/results/filter-cpu-57k.json   # 57,145 documents
    python benchmarks/bench_filter.py --engine opensearch --docs 2000 --passes 1   # a quick check
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_scale import synthetic_text  # noqa: E402
from benchlib import arguments, cluster, drop, machine, query_texts, save_results, table, working_dir  # noqa: E402
from splade_os.cluster.index import IndexSettings  # noqa: E402
from splade_os.ingest import IngestOptions, ingest  # noqa: E402
from splade_os.models.resolve import resolve_model  # noqa: E402
from splade_os.query.filters import conjunction, filtered, restricted  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "vaswani"
INDEX = "bench-filter"
MAPPING = {"properties": {"tenant": {"type": "keyword"}, "category": {"type": "keyword"},
                          "price": {"type": "float"}, "published": {"type": "date"}}}
CATEGORIES = ("books", "music", "tools", "garden", "toys")
FILTERS = {
    "none": None,
    "in_stock=true": ["in_stock=true"],
    "published>=2024-01-01": ["published>=2024-01-01"],
    "tenant=t3": ["tenant=t3"],
    "category=books, price<20": ["category=books", "price<20"],
    "tenant=t3, rating<2": ["tenant=t3", "rating<2"],
    "category=books, tenant=t3": ["category=books", "tenant=t3"],
    "category=books, tenant=t3, in_stock=true": ["category=books", "tenant=t3", "in_stock=true"],
    "category=books, rating=5, tenant=t3": ["category=books", "rating=5", "tenant=t3"],
    "matches nothing": ["category=none"],
}


def catalogue(corpus: Path, out: Path, docs: int, repeat: int = 1) -> int:
    """The corpus, then (`repeat` > 1) documents each made of two of its texts (seeded pairs, ids
    `p<n>`) up to `repeat` times its size, with catalogue fields added to each line (deterministic
    in the line number)."""
    with open(corpus, encoding="utf-8") as source:
        originals = [json.loads(line) for line in source if line.strip()]
    pairs = random.Random(0)
    written = 0
    with open(out, "w", encoding="utf-8") as target:
        for i in range(min(docs, len(originals) * repeat)):
            if i < len(originals):
                record = dict(originals[i])
            else:  # two texts joined as bench_scale joins them
                fields = synthetic_text(originals[pairs.randrange(len(originals))],
                                        originals[pairs.randrange(len(originals))])
                record = {"_id": f"p{i}", "title": fields["title"], "text": fields["text"]}
            record.update(tenant=f"t{i % 7}", category=CATEGORIES[i % 5], price=round(5 + (i * 37 % 400) / 10, 2),
                          published=f"20{20 + i % 8}-{1 + i % 12:02d}-{1 + i % 28:02d}", in_stock=i % 3 != 0,
                          rating=i % 6)
            target.write(json.dumps(record) + "\n")
            written += 1
    return written


SHAPES = {
    # Where the filter goes; the hits and scores are the same.
    "flat": lambda plain, clauses: {**plain, "query": filtered(plain["query"], clauses)},
    "conjunction": lambda plain, clauses: {**plain, "query": conjunction(plain["query"], clauses)},
    "post_filter": lambda plain, clauses: restricted(plain, clauses, share=1.0),
}


def measure(index, queries, passes: int) -> dict:
    """p50/p99 of client latency and `took` per filter and body, the variants interleaved query by
    query: the body `SpladeIndex.body` sends (the filter where its share of the index puts it), and
    each shape in `SHAPES` built from the unfiltered body."""
    plain = [index.body(q, 10, source=False) for q in queries]
    bodies, chosen = {}, {}
    for name, f in FILTERS.items():
        bodies[name] = [index.body(q, 10, source=False, filter=f) for q in queries]
        if f is not None:
            clauses = index.filter_clauses(f)
            chosen[name] = "post_filter" if "post_filter" in bodies[name][0] else "conjunction"
            for shape, build in SHAPES.items():
                bodies[f"{name} ({shape})"] = [build(body, clauses) if "bool" in body["query"] else body
                                               for body in plain]
    client = {name: [] for name in bodies}
    took = {name: [] for name in bodies}
    hits = {name: [] for name in bodies}
    for run in range(passes + 1):  # the first pass warms caches and is not counted
        for position in range(len(queries)):
            for name in bodies:
                started = time.perf_counter()
                answer = index.request_search(bodies[name][position])
                elapsed = (time.perf_counter() - started) * 1000
                if run:
                    client[name].append(elapsed)
                    took[name].append(answer["took"])
                    hits[name].append(len(answer["hits"]["hits"]))
    total = index.count()
    rows = []
    for name in bodies:
        base = name.split(" (")[0]
        f = FILTERS[base]
        share = 1.0 if f is None else index.cluster.request("POST", f"/{index.name}/_count", {
            "query": {"bool": {"filter": index.filter_clauses(f)}}})["count"] / total
        rows.append({"filter": name if base == name else f"  {name[len(base) + 1:]}",
                     "share of index": round(share, 4), "sent as": chosen.get(name, ""),
                     "p50 ms": round(statistics.median(client[name]), 2),
                     "p99 ms": round(statistics.quantiles(client[name], n=100)[98], 2),
                     "took p50 ms": statistics.median(took[name]),
                     "p50 vs none": round(statistics.median(client[name]) / statistics.median(client["none"]), 3),
                     "hits (mean)": round(statistics.fmean(hits[name]), 2)})
    return {"rows": rows, "documents": total, "queries": len(queries), "passes": passes}


def run_engine(engine: str, url, corpus: Path, queries, passes: int, work: Path) -> dict:
    model = resolve_model("default", show_progress=False)
    with cluster(url, engine=engine) as target, working_dir(work):
        drop(target, INDEX)
        options = IngestOptions(index=IndexSettings(mapping=MAPPING), checkpoint=work / f"{engine}.checkpoint.json",
                                dead_letter=work / f"{engine}.dead.jsonl")
        stats = ingest(target, corpus, INDEX, model, options=options, show_progress=True)
        index = target.index(INDEX)
        target.request("POST", f"/{INDEX}/_forcemerge", params={"max_num_segments": 1})
        index.refresh()
        result = measure(index, queries, passes)
        result.update(engine=engine, version=target.version, ingest_seconds=round(stats.seconds, 1))
        drop(target, INDEX)
        return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="a BEIR folder")
    parser.add_argument("--docs", type=int, default=1_000_000, help="at most this many documents")
    parser.add_argument("--repeat", type=int, default=1, help="the corpus this many times (a larger index)")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--engine", choices=["opensearch", "elasticsearch"], action="append",
                        help="the engines (default: both)")
    parser.add_argument("--url", help="a cluster to use instead of a throw-away node (one engine)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    queries = query_texts(args.data / "queries.jsonl")
    summary = {"machine": machine(), "arguments": arguments(args), "engines": []}
    with tempfile.TemporaryDirectory(prefix="bench-filter-") as folder:
        work = Path(folder)
        corpus = work / "catalogue.jsonl"
        catalogue(args.data / "corpus.jsonl", corpus, args.docs, args.repeat)
        for engine in args.engine or ["opensearch", "elasticsearch"]:
            result = run_engine(engine, args.url, corpus, queries, args.passes, work)
            summary["engines"].append(result)
            print(f"\n{engine} {result['version']}: {result['documents']} documents, {result['queries']} queries "
                  f"x {result['passes']} passes")
            print(table(result["rows"], list(result["rows"][0])))
    save_results(args.out, summary)


if __name__ == "__main__":
    main()
