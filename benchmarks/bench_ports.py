#!/usr/bin/env python
"""Benchmark 9: what one query costs to translate in each language's query side.

Per query: the features and the OpenSearch body (`encode` + `to_dsl` in Python,
`features` + `body` in Java and JavaScript), over the texts of a conformance pack (the bundled
model's: Cranfield's queries and the hard cases; refused texts left out), warm: each side runs its
warm-up passes, then its measured passes, and reports p50 and p99 in microseconds. The three run
one after the other in this one script on this one machine. Java and JavaScript are run through
their own benchmark programs (`clients/java` `Bench`, `clients/js/bench.mjs`), built as
`scripts/query-port` builds them.

    python benchmarks/bench_ports.py --out benchmarks/results/ports-cpu.json
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import arguments, machine, save_results, table  # noqa: E402
from splade_os.models.resolve import resolve_model  # noqa: E402
from splade_os.query.pack import CONFORMANCE_FILE, default_texts, load_side, write_pack  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def python_side(pack: Path, warmup: int, passes: int) -> dict:
    encoder = load_side(pack)
    texts = [r["text"] for r in map(json.loads, (pack / CONFORMANCE_FILE).read_text().splitlines()) if "error" not in r]
    times = []
    for run in range(warmup + passes):
        for text in texts:
            started = time.perf_counter()
            encoder.encode(text)
            encoder.to_dsl(text, "opensearch")
            if run >= warmup:
                times.append((time.perf_counter() - started) * 1e6)
    return {"queries": len(texts), "p50_us": round(statistics.median(times), 1),
            "p99_us": round(statistics.quantiles(times, n=100)[98], 1), "runtime": sys.version.split()[0]}


def java_side(pack: Path) -> dict:
    # Build as scripts/query-port does (a no-op when the jar is current), then run the benchmark.
    subprocess.run(["bash", str(ROOT / "clients/java/query-port"), "--side", str(pack)], input="", check=True,
                   capture_output=True, text=True)
    done = subprocess.run(["java", "-cp", str(ROOT / "clients/java/target/splade-os-query.jar"),
                           "io.spladeos.query.Bench", "--side", str(pack)], check=True, capture_output=True, text=True)
    result = json.loads(done.stdout)
    return {"queries": result["queries"], "p50_us": result["translation"]["p50_us"],
            "p99_us": result["translation"]["p99_us"], "runtime": result["java"],
            "without the word cache p50_us": result["translation_without_word_cache"]["p50_us"]}


def js_side(pack: Path) -> dict:
    subprocess.run(["bash", str(ROOT / "clients/js/query-port"), "--side", str(pack)], input="", check=True,
                   capture_output=True, text=True)
    done = subprocess.run(["node", str(ROOT / "clients/js/bench.mjs"), str(pack)], check=True, capture_output=True,
                          text=True)
    result = json.loads(done.stdout)
    return {"queries": result["queries"], "p50_us": result["p50_us"], "p99_us": result["p99_us"],
            "runtime": f"Node {result['node']}", "first seen p50_us": result["first_seen"]["p50_us"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ports-") as folder:
        pack = write_pack(resolve_model("default", show_progress=False).query_encoder, Path(folder) / "pack",
                          default_texts())
        rows = [{"language": "Python", **python_side(pack, args.warmup, args.passes)},
                {"language": "Java", **java_side(pack)},
                {"language": "JavaScript", **js_side(pack)}]
    print(table(rows, ["language", "queries", "p50_us", "p99_us", "runtime"]))
    save_results(args.out, {"machine": machine(), "arguments": arguments(args), "rows": rows})


if __name__ == "__main__":
    main()
