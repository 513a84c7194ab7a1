#!/usr/bin/env python
"""Benchmark 3: the query side, warm and cold.

Warm, in this process, one query at a time as an app sends them (all queries of the set, a
warm-up pass, then `--reps` passes, the variants taking turns pass by pass):
  (a) the connector's translation `QueryEncoder.to_dsl` (tokenizer + static table -> search body),
  (b) sentence-transformers `SparseEncoder.encode_query` (a sparse torch tensor),
  (c) (b) plus turning the tensor into the same search body (what an app would have to add).
Reports median, p99 and mean microseconds per query and the ratio to (a); also checks that (a)
and (b) give the same weights for every query.

Cold, as new processes (`--runs` each after one untimed run, so the files are in the page cache):
  - `python -m splade_os -q search "..." --index I --url URL` end to end, against an index
    holding `--index-docs` documents ingested by the connector into a throw-away local node
    (or into `--url`);
  - the stages of the same search timed inside a fresh process (imports, connect, model load,
    clause cap, search), to show where the time goes;
  - `python -c "import splade_os.cli"` (import cost), `python -c pass` (interpreter), and for
    context `import torch` and a sentence-transformers `encode_query` from a fresh process;
  - which heavy modules (torch, transformers, sentence_transformers) the search process imported.

    python benchmarks/bench_query.py
    python benchmarks/bench_query.py --reps 20 --runs 9 --out benchmarks/results/query-cpu.json
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchlib import bench_model, cluster, drop, machine, query_texts, save_results, table, working_dir  # noqa: E402
from splade_os.query import QueryEncoder, query_body  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "connector" / "data" / "cranfield"
HEAVY = ("torch", "transformers", "sentence_transformers")
SAMPLE_QUERY = "what is the lift of a slender wing?"


def percentiles(samples_ns) -> dict:
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)), "mean_us": float(us.mean()),
            "samples": int(us.size)}


def sparse_to_weights(vector) -> dict:
    """{token id: weight} of one sparse query vector from encode_query."""
    vector = vector.coalesce()
    return dict(zip(vector.indices()[0].tolist(), vector.values().tolist()))


def warm_timings(queries, encoder: QueryEncoder, st_model, reps: int) -> dict:
    keys = encoder.keys

    def connector(q):
        return encoder.to_dsl(q, "opensearch")

    def st(q):
        return st_model.encode_query(q)

    def st_body(q):
        return query_body(sparse_to_weights(st_model.encode_query(q)), keys, "opensearch")

    variants = {"connector QueryEncoder.to_dsl": connector, "ST encode_query": st,
                "ST encode_query + search body": st_body}
    samples = {name: [] for name in variants}
    clock = time.perf_counter_ns
    for name, fn in variants.items():  # warm-up pass: first calls build caches and thread pools
        for q in queries:
            fn(q)
    # Whole passes, the variants taking turns pass by pass (in a rotating order). Not query by
    # query: right after an encode_query call (torch's large working set, its thread pool) the
    # connector's next call was measured 1.2-1.5x slower than in a run of its own, which would
    # charge part of torch's cost to the connector.
    names = list(variants)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            fn, times = variants[name], samples[name]
            for q in queries:
                began = clock()
                fn(q)
                times.append(clock() - began)
    return {name: percentiles(times) for name, times in samples.items()}


def same_weights(queries, encoder: QueryEncoder, st_model) -> int:
    """Number of queries whose connector weights differ from encode_query's (expected: 0)."""
    differ = 0
    for q in queries:
        ours = encoder.weights(q)
        theirs = {i: w for i, w in sparse_to_weights(st_model.encode_query(q)).items() if w != 0.0}
        if ours.keys() != theirs.keys() or any(abs(ours[i] - theirs[i]) > 1e-6 * max(1.0, abs(ours[i])) for i in ours):
            differ += 1
    return differ


def wall(argv, runs: int, env=None) -> dict:
    """Wall seconds of a fresh process, after one untimed run; median, min, max of `runs`."""
    def once():
        began = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
        seconds = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return seconds, done

    _, done = once()
    times = [once()[0] for _ in range(runs)]
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": times,
            "command": shlex.join(argv), "stdout_head": done.stdout[:300]}


# Run in a fresh process: the stages of `splade-os search`, timed one by one, and which heavy
# modules the process holds at the end.
STAGES = textwrap.dedent("""
    import json, sys, time
    t = [time.perf_counter()]
    import splade_os.cli  # the CLI's own imports, and those its search command makes on the way
    import opensearchpy, tokenizers, safetensors.numpy
    import splade_os.cluster, splade_os.cluster.index, splade_os.query, splade_os.models.registry, splade_os.query.hits
    from splade_os.cluster import connect
    t.append(time.perf_counter())
    url, name, text = sys.argv[1:4]
    cluster = connect(url)
    t.append(time.perf_counter())
    index = cluster.index(name)
    encoder = index.query_encoder()
    t.append(time.perf_counter())
    cap = cluster.max_clause_count
    t.append(time.perf_counter())
    hits = index.search(text, encoder=encoder)
    t.append(time.perf_counter())
    names = ["imports (CLI, opensearch-py, tokenizers, safetensors)", "connect (one request)",
             "model: index _meta + stored query side (tokenizer + table)", "clause cap (cluster settings)",
             "search (translation + request)"]
    print(json.dumps({"stages": dict(zip(names, [b - a for a, b in zip(t, t[1:])])), "hits": len(hits),
                      "heavy_modules": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,))

# The CLI itself, run in-process by a fresh interpreter, reporting the heavy modules it imported.
CLI_MODULES = textwrap.dedent("""
    import json, sys
    from splade_os.cli import cli
    try:
        cli.main(args=sys.argv[1:], standalone_mode=False)
    finally:
        print("HEAVY=" + json.dumps(sorted(m for m in %r if m in sys.modules)), file=sys.stderr)
""" % (HEAVY,))

ST_COLD = textwrap.dedent("""
    import sys
    from sentence_transformers import SparseEncoder
    SparseEncoder(sys.argv[1], device="cpu").encode_query(sys.argv[2])
""")


def stage_breakdown(url, index, runs: int) -> dict:
    out = []
    for i in range(runs + 1):
        done = subprocess.run([sys.executable, "-c", STAGES, url, index, SAMPLE_QUERY], capture_output=True,
                              text=True, cwd=REPO, check=True)
        if i:  # the first run only fills the page cache
            out.append(json.loads(done.stdout))
    stages = {name: statistics.median(r["stages"][name] for r in out) for name in out[0]["stages"]}
    return {"median_s": stages, "heavy_modules": out[0]["heavy_modules"], "hits": out[0]["hits"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="default, or a model folder")
    parser.add_argument("--queries", type=Path, default=DATA / "queries.jsonl", help="BEIR queries.jsonl")
    parser.add_argument("--corpus", type=Path, default=DATA / "corpus.jsonl", help="BEIR corpus.jsonl (cold start index)")
    parser.add_argument("--reps", type=int, default=10, help="timed passes over the queries per variant")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per cold-start command")
    parser.add_argument("--index-docs", type=int, default=200, help="documents in the cold-start index")
    parser.add_argument("--url", help="an existing cluster (default: start a throw-away local node)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    command = "python " + shlex.join(sys.argv)

    model = bench_model(args.model)
    queries = query_texts(args.queries)
    encoder = model.query_encoder
    from sentence_transformers import SparseEncoder

    st_model = SparseEncoder(str(model.root), device="cpu")  # queries run where the app runs: the CPU
    load_before = os.getloadavg()[0]
    warm = warm_timings(queries, encoder, st_model, args.reps)
    differ = same_weights(queries, encoder, st_model)
    tokens = [len(encoder.weights(q)) for q in queries]

    python = sys.executable
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp, cluster(args.url) as target:
        from splade_os.ingest import IngestOptions, ingest

        url = args.url or target.url  # the given URL keeps its credentials for the child processes
        index = f"bench-query-{time.strftime('%Y%m%d%H%M%S')}"
        subset = Path(tmp) / "corpus.jsonl"
        with open(args.corpus, encoding="utf-8") as f:
            subset.write_text("".join(line for _, line in zip(range(args.index_docs), f)), encoding="utf-8")
        try:
            with working_dir(tmp):
                ingest(target, subset, index, model, options=IngestOptions(checkpoint=Path(tmp) / "checkpoint"),
                       show_progress=False)
            cold = {
                "splade-os search (new process)": wall(
                    [python, "-m", "splade_os", "-q", "search", SAMPLE_QUERY, "--index", index, "--url", url],
                    args.runs, env),
                "import splade_os.cli": wall([python, "-c", "import splade_os.cli"], args.runs, env),
                "python -c pass": wall([python, "-c", "pass"], args.runs, env),
                "import torch (context)": wall([python, "-c", "import torch"], args.runs, env),
                "ST load + encode_query (context)": wall([python, "-c", ST_COLD, str(model.root), SAMPLE_QUERY],
                                                         args.runs, env),
            }
            stages = stage_breakdown(url, index, args.runs)
            done = subprocess.run([python, "-c", CLI_MODULES, "-q", "search", SAMPLE_QUERY, "--index", index,
                                   "--url", url], capture_output=True, text=True, cwd=REPO, env=env, check=True)
            cli_heavy = json.loads(done.stderr.split("HEAVY=", 1)[1].splitlines()[0])
        finally:
            drop(target, index)
    load_after = os.getloadavg()[0]

    base = warm["connector QueryEncoder.to_dsl"]["median_us"]
    rows = [{"variant": name, "median µs": f"{r['median_us']:,.1f}", "p99 µs": f"{r['p99_us']:,.1f}",
             "mean µs": f"{r['mean_us']:,.1f}", "vs connector (median)": f"{r['median_us'] / base:,.1f}x"}
            for name, r in warm.items()]
    cold_rows = [{"process": name, "median s": f"{r['median_s']:.3f}", "min s": f"{r['min_s']:.3f}",
                  "max s": f"{r['max_s']:.3f}"} for name, r in cold.items()]
    stage_rows = [{"stage of `search` in a fresh process": name, "median s": f"{s:.3f}"}
                  for name, s in stages["median_s"].items()]
    summary = {"benchmark": "query", "command": command, "machine": machine(), "model": args.model,
               "queries": len(queries), "reps": args.reps, "mean_weighted_tokens": statistics.mean(tokens),
               "max_weighted_tokens": max(tokens), "queries_whose_weights_differ_from_encode_query": differ,
               "warm": warm, "ratio_st_encode_query_over_to_dsl_median": warm["ST encode_query"]["median_us"] / base,
               "cold": cold, "cold_index_docs": args.index_docs, "search_stages": stages,
               "heavy_modules_imported_by_search": {"cli_in_process": cli_heavy, "stages_process": stages["heavy_modules"]},
               "torch_free_query_side": not cli_heavy and not stages["heavy_modules"],
               "node": "given --url" if args.url else "throw-away local node on this machine",
               "load_average_1min": {"before": load_before, "after": load_after}, "date": time.strftime("%Y-%m-%d")}
    print(f"{summary['machine']} | model {args.model} | {len(queries)} queries "
          f"({summary['mean_weighted_tokens']:.1f} weighted tokens on average), {args.reps} passes "
          f"| load avg {load_before:.1f} -> {load_after:.1f} | {summary['date']}")
    print(f"$ {command}")
    print(table(rows, ["variant", "median µs", "p99 µs", "mean µs", "vs connector (median)"]))
    print(f"weights differing from encode_query: {differ} of {len(queries)} queries")
    print()
    print(table(cold_rows, ["process", "median s", "min s", "max s"]))
    print()
    print(table(stage_rows, ["stage of `search` in a fresh process", "median s"]))
    print(f"heavy modules imported by `splade-os search`: {cli_heavy or 'none'} "
          f"(checked: {', '.join(HEAVY)})")
    save_results(args.out, summary)


if __name__ == "__main__":
    main()
