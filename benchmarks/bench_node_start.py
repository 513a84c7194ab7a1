"""How long a local node takes to start, per engine, with the default JIT and with `QUICK_START`.

Starts are interleaved (engine x JIT, `--rounds` times) so that the load of a shared machine
falls on every variant alike; the node's CPU seconds (its whole process tree, until healthy) say
more than the wall time there. Writes benchmarks/results/node-start-cpu.json.

    python benchmarks/bench_node_start.py --rounds 2
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import psutil

from splade_os.node import QUICK_START, LocalNode

RESULTS = Path(__file__).resolve().parent / "results" / "node-start-cpu.json"


def _tree_cpu(pid: int) -> float:
    process = psutil.Process(pid)
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        times = member.cpu_times()
        total += times.user + times.system
    return total


def start_once(engine: str, java_options) -> dict:
    began = time.monotonic()
    with LocalNode(engine, heap="512m", show_progress=False, java_options=java_options) as node:
        return {"engine": engine, "java_options": list(java_options), "wall_s": round(time.monotonic() - began, 1),
                "node_cpu_s": round(_tree_cpu(node.pid), 1), "load_1m": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs = []
    for _ in range(args.rounds):
        for engine in ("opensearch", "elasticsearch"):
            for options in ((), QUICK_START):
                runs.append(start_once(engine, options))
                print(json.dumps(runs[-1]), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
                                   "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
