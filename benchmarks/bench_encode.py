#!/usr/bin/env python
"""Benchmark 1: document encoding, side by side in one run on one device.

(a) sentence-transformers `encode_document` as shipped (fp32), (b) the same in bf16 (GPU only),
(c) the connector's `DocumentEncoder`; same model, same inputs, same truncation. Reports docs/s,
tokens/s, peak memory, agreement with (a) (max abs diff, top-32 overlap) and, on GPU, achieved
TFLOP/s against a bf16 matrix product measured in the same run.

    python benchmarks/bench_encode.py --model default --device cpu --docs 512
    python benchmarks/bench_encode.py --model distilbert --device cuda --docs 20000 --out enc.json
"""

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchlib import bench_model, machine, passages, save_results, table  # noqa: E402
from splade_os.documents.encoder import DocumentEncoder  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "connector" / "data" / "cranfield" / "corpus.jsonl"


class PeakMemory:
    """Peak device memory (CUDA) or peak resident memory above the start (CPU), in MiB."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            import psutil

            self.process = psutil.Process()
            self.base = self.process.memory_info().rss
            self.peak = self.base
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.running = False
            self.thread.join()
            self.mib = (self.peak - self.base) / 2**20


def dense_rows(vectors, vocab):
    out = torch.zeros((len(vectors), vocab))
    for row, v in enumerate(vectors):
        out[row, torch.from_numpy(v.ids)] = torch.from_numpy(v.values)
    return out


def agreement(reference: torch.Tensor, other: torch.Tensor, k: int = 32) -> dict:
    diff = (reference - other).abs().max().item()
    top_r = reference.topk(k, dim=1).indices
    top_o = other.topk(k, dim=1).indices
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(top_r, top_o)) / (k * len(reference))
    return {"max_abs_diff": diff, f"top{k}_overlap": overlap}


def flops_per_token(config, width: float) -> float:
    """Useful FLOPs per real token: transformer body, attention over `width` positions, MLM head."""
    hidden = getattr(config, "hidden_size", None) or config.dim
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    inner = getattr(config, "intermediate_size", None) or config.hidden_dim
    body = layers * (8 * hidden * hidden + 4 * hidden * inner + 4 * width * hidden)
    head = 2 * hidden * hidden + 2 * hidden * config.vocab_size
    return body + head


def matmul_tflops(device) -> float:
    """The device's dense matrix rate, measured: bf16 8192^3 on GPU, fp32 2048^3 on CPU."""
    cuda = device.startswith("cuda")
    n, dtype, reps = (8192, torch.bfloat16, 10) if cuda else (2048, torch.float32, 5)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    return reps * 2 * n**3 / (time.perf_counter() - start) / 1e12


def timed(device, fn):
    with PeakMemory(device) as memory:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return result, seconds, memory.mib


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="default, distilbert, or a model folder")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="BEIR corpus.jsonl for the passages")
    parser.add_argument("--join", type=int, default=1, help="join consecutive documents N at a time")
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers' batch size (its default)")
    parser.add_argument("--token-budget", type=int, default=None)
    parser.add_argument("--skip-st", action="store_true", help="time only the connector's encoder")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, variants taking turns; medians reported")
    parser.add_argument("--compile", action="store_true", help="add the connector with torch.compile as a variant")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    model = bench_model(args.model)
    folder = model.root
    texts = passages(args.corpus, join=args.join)
    texts = (texts * (args.docs // max(len(texts), 1) + 1))[: args.docs]
    device = args.device

    ours = DocumentEncoder(model, device=device, token_budget=args.token_budget)
    lengths = [len(x) for x in ours.tokenize(texts)]
    tokens = sum(lengths)
    config = ours.network.config
    rows, results = [], {}

    def row(name, seconds, mib, extra=None):
        entry = {"variant": name, "docs/s": f"{len(texts) / seconds:,.0f}", "tokens/s": f"{tokens / seconds:,.0f}",
                 "seconds": f"{seconds:.2f}", "peak MiB": f"{mib:,.0f}"}
        entry.update(extra or {})
        rows.append(entry)
        results[name] = {"seconds": seconds, "docs_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds,
                         "peak_mib": mib, **(extra or {})}

    # The variants take turns, `--repeat` rounds; each one's median time is reported, so a
    # slow spell of a shared machine hits every variant alike.
    variants, times, memory, outputs = {}, {}, {}, {}  # variants: name -> function of a list of texts
    if not args.skip_st:
        from sentence_transformers import SparseEncoder

        def st_run(model):
            return lambda batch: model.encode_document(
                batch, batch_size=args.st_batch_size, convert_to_tensor=True).to_dense().float().cpu()

        variants["sentence-transformers fp32"] = st_run(SparseEncoder(str(folder), device=device))
        if device.startswith("cuda"):
            variants["sentence-transformers bf16"] = st_run(
                SparseEncoder(str(folder), device=device).to(torch.bfloat16))
    name = f"connector {str(ours.dtype).replace('torch.', '')}"
    encoders = {name: ours}
    if ours.int8_screen:
        # The same encoder without the int8 screen: what the screen itself contributes.
        encoders[name + " (no int8 screen)"] = DocumentEncoder(model, device=device, token_budget=args.token_budget,
                                                               int8_screen=False)
    compile_seconds = None
    if args.compile:
        # The same encoder with the transformer under torch.compile (shapes vary by batch:
        # dynamic); the compile time is reported apart, as it is paid once per process.
        compiled = DocumentEncoder(model, device=device, token_budget=args.token_budget)
        compiled.network = torch.compile(compiled.network, dynamic=True)
        start = time.perf_counter()
        compiled.encode(texts)
        compile_seconds = time.perf_counter() - start
        encoders[name + " + torch.compile"] = compiled
    variants.update((variant, encoder.encode) for variant, encoder in encoders.items())
    for run in variants.values():  # warm-up: first-call costs are not throughput
        run(texts[:64])
    for _ in range(args.repeat):
        for variant, run in variants.items():
            out, seconds, mib = timed(device, lambda: run(texts))
            times.setdefault(variant, []).append(seconds)
            memory[variant] = max(memory.get(variant, 0.0), mib)
            outputs[variant] = out
            del out
    reference = outputs.get("sentence-transformers fp32")
    for variant in variants:
        extra = {}
        if variant.startswith("connector"):
            vectors = outputs[variant]
            if reference is not None:
                extra = agreement(reference, dense_rows(vectors, ours.vocab_size))
            extra["nnz/doc"] = round(sum(len(v.ids) for v in vectors) / len(vectors), 1)
            encoder = encoders[variant]
            if encoder.int8_screen:
                extra["exact columns"] = f"{encoder.exact_columns / (encoder.documents * encoder.vocab_size):.1%}"
        elif variant != "sentence-transformers fp32":
            extra = agreement(reference, outputs[variant])
        row(variant, statistics.median(times[variant]), memory[variant], extra)
        results[variant]["all_seconds"] = times[variant]
    del outputs
    if device.startswith("cuda"):
        torch.cuda.empty_cache()

    # Where the connector's time goes: tokenization alone (on its thread pool) and the device
    # work alone (pre-tokenized input). The pipeline overlaps the two.
    from concurrent.futures import ThreadPoolExecutor

    step = max(64, len(texts) // (4 * ours.tokenizer_threads))
    with ThreadPoolExecutor(ours.tokenizer_threads) as pool:
        _, seconds, mib = timed("cpu", lambda: [x for part in pool.map(ours.tokenize, [
            texts[i : i + step] for i in range(0, len(texts), step)]) for x in part])
    row(f"  tokenization only ({ours.tokenizer_threads} threads)", seconds, mib)
    ids = ours.tokenize(texts)
    runs = [timed(device, lambda: ours.encode_tokenized(ids)) for _ in range(args.repeat)]
    row("  device work only (pre-tokenized)", statistics.median(r[1] for r in runs), max(r[2] for r in runs))

    if compile_seconds is not None:
        results[name + " + torch.compile"]["first_call_seconds_with_compile"] = compile_seconds
    summary = {"device": device, "machine": machine(), "model": args.model, "docs": len(texts), "tokens": tokens,
               "mean_tokens": tokens / len(texts), "max_length": ours.max_length, "results": results,
               "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
    # Achieved arithmetic rate: the useful FLOPs (real tokens only) over the time, against the
    # device's own matrix rate measured in this run (bf16 on GPU, fp32 on CPU). With the int8
    # screen the connector skips most of the fp32 projection, so its rate is an fp32-equivalent
    # one and can pass 100%.
    useful = flops_per_token(config, width=sum(n * n for n in lengths) / tokens) * tokens
    peak = matmul_tflops(device)
    summary["bf16_matmul_tflops_measured" if device.startswith("cuda") else "fp32_matmul_tflops_measured"] = peak
    for name_, result in results.items():
        if name_.startswith("  tokenization"):
            continue
        achieved = useful / result["seconds"] / 1e12
        result["tflops"] = achieved
        result["fraction_of_measured_peak"] = achieved / peak
    for entry in rows:
        r = results[entry["variant"]]
        if "tflops" not in r:
            continue
        entry["TFLOP/s" if device.startswith("cuda") else "GFLOP/s"] = (
            f"{r['tflops']:.0f}" if device.startswith("cuda") else f"{r['tflops'] * 1000:.0f}")
        entry["of peak"] = f"{r['fraction_of_measured_peak']:.0%}"
    if "sentence-transformers fp32" in results:
        base = results["sentence-transformers fp32"]["seconds"]
        for entry in rows:
            entry["speed-up"] = f"{base / results[entry['variant']]['seconds']:.2f}x"
    columns = ["variant", "docs/s", "tokens/s", "seconds", "peak MiB", "speed-up", "max_abs_diff", "top32_overlap",
               "nnz/doc", "exact columns", "TFLOP/s", "GFLOP/s", "of peak"]
    print(f"{summary['machine']} | model {args.model} | {len(texts)} docs, {tokens} tokens "
          f"(mean {tokens / len(texts):.0f}, max_length {ours.max_length}) | {summary['date']}")
    print(table(rows, [c for c in columns if any(c in r for r in rows)]))
    save_results(args.out, summary)


if __name__ == "__main__":
    main()
