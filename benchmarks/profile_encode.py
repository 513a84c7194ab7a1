#!/usr/bin/env python
"""Where the document encoder's device time goes: a token-budget sweep and a torch.profiler table.

    python benchmarks/profile_encode.py --model default --device cuda --docs 20000 --corpus C --join 3
"""

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchlib import bench_model, passages  # noqa: E402
from splade_os.documents.encoder import DocumentEncoder  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default", help="default, distilbert, or a model folder")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--join", type=int, default=3)
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    texts = passages(args.corpus, join=args.join)
    texts = (texts * (args.docs // len(texts) + 1))[: args.docs]
    encoder = DocumentEncoder(bench_model(args.model), device=args.device)
    ids = encoder.tokenize(texts)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    for budget in (16384, 65536, 262144):
        encoder.token_budget = budget
        encoder.encode_tokenized(ids[:2000])
        sync()
        start = time.perf_counter()
        encoder.calls = 0
        encoder.encode_tokenized(ids)
        sync()
        print(f"token budget {budget:>7}: {time.perf_counter() - start:.3f} s, {encoder.calls} batches", flush=True)
    encoder.token_budget = 65536
    activities = [torch.profiler.ProfilerActivity.CPU]
    if args.device.startswith("cuda"):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        encoder.encode_tokenized(ids[:8000])
        sync()
    sort = "cuda_time_total" if args.device.startswith("cuda") else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=40))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))
    profiler = cProfile.Profile()
    profiler.enable()
    encoder.encode_tokenized(ids[:8000])
    sync()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
