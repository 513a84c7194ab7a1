#!/usr/bin/env python
"""Training step of the document route: sentence-transformers' SPLADE pooling vs `fast_max_pooling`.

One forward and backward pass of the default model's document route (masked-LM + SPLADE max
pooling) over a batch of Cranfield documents, in training mode, with sentence-transformers' own
pooling and inside `splade_os.documents.pooling.fast_max_pooling` (the argmax-only backward that
`splade_os.training.trainer` uses in fp32), interleaved round by round so that load on the machine hits
both alike. Also checks that both give the same embeddings and gradients. Reports seconds per
pass (median of the rounds) and the ratio.

    python benchmarks/train_pooling.py --data ../shared/data/cranfield [--docs 32] [--length 128] \\
        [--rounds 5] --out benchmarks/results/train_pooling-cpu.json
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import splade_os
from splade_os.documents.pooling import fast_max_pooling

from benchlib import arguments


def step(model, features, fast: bool):
    """(seconds, embeddings, gradient of the decoder weight) of one forward and backward pass."""
    import contextlib

    model.zero_grad()
    started = time.perf_counter()
    with fast_max_pooling(model) if fast else contextlib.nullcontext():
        out = model(dict(features))["sentence_embedding"]
    out.sum().backward()
    seconds = time.perf_counter() - started
    decoder = next(p for n, p in model.named_parameters() if p.grad is not None and p.dim() == 2
                   and p.shape[0] == out.shape[1])
    return seconds, out.detach(), decoder.grad.detach().clone()


def main():
    from sentence_transformers import SparseEncoder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a BEIR folder (its corpus.jsonl)")
    parser.add_argument("--docs", type=int, default=32)
    parser.add_argument("--length", type=int, default=128, help="max_seq_length during the pass")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    a = parser.parse_args()
    torch.manual_seed(0)
    model = SparseEncoder(str(splade_os.resolve_model("default", show_progress=False).root), device="cpu")
    model.max_seq_length = a.length
    model.train()
    with open(a.data / "corpus.jsonl", encoding="utf-8") as lines:
        docs = [f"{d.get('title', '')} {d['text']}" for d in map(json.loads, lines)][:a.docs]
    features = model.preprocess(docs, task="document")
    # Dropout off for the equality check only (eval mode would switch pooling to in-place ops).
    dropouts = {m: m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    for module in dropouts:
        module.p = 0.0
    _, out_std, grad_std = step(model, features, False)
    _, out_fast, grad_fast = step(model, features, True)
    for module, p in dropouts.items():
        module.p = p
    same = {"embeddings_max_abs_diff": float((out_std - out_fast).abs().max()),
            "decoder_grad_max_abs_diff": float((grad_std - grad_fast).abs().max()),
            "decoder_grad_max_abs": float(grad_std.abs().max())}
    times = {"sentence_transformers": [], "fast_max_pooling": []}
    for _ in range(a.rounds):
        times["sentence_transformers"].append(step(model, features, False)[0])
        times["fast_max_pooling"].append(step(model, features, True)[0])
    median = {k: round(statistics.median(v), 3) for k, v in times.items()}
    record = {"args": arguments(a),
              "threads": torch.get_num_threads(), "median_seconds_per_pass": median,
              "speedup": round(median["sentence_transformers"] / median["fast_max_pooling"], 2),
              "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()}, "same_result": same}
    print(json.dumps(record, indent=2))
    if a.out:
        a.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
