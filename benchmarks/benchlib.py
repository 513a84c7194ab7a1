"""Shared pieces of the benchmark scripts: models and inputs (speed does not depend on the weights' values).

- "default": the bundled default model (real trained weights, 2-layer BERT).
- "distilbert": a model with the shape of distilbert-base-uncased (6 layers, hidden 768,
  vocabulary 30522) built from a config with random weights, plus the default model's tokenizer
  (same vocabulary). Random weights would switch on about half the vocabulary per document;
  the decoder bias is shifted so that a document gets a few hundred non-zeros, as a trained
  SPLADE model does, because that count drives the sparsification and transfer cost.
"""

import argparse
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import List, Optional

from splade_os.common.cache import cache_dir
from splade_os.cluster import connect
from splade_os.common.errors import ClusterError
from splade_os.models.builder import build_model, ensure_default_model


def distilbert_shaped_model(folder: Optional[Path] = None, seed: int = 0) -> Path:
    """Build (once) a distilbert-base-shaped inference-free model with random weights."""
    import torch
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    folder = Path(folder or cache_dir() / "models" / "bench-distilbert-random")
    if (folder / "modules.json").exists():
        return folder
    default = ensure_default_model(show_progress=False)
    torch.manual_seed(seed)
    model = DistilBertForMaskedLM(DistilBertConfig())
    with torch.no_grad():
        # Logits at the head are about N(0, s); a bias of -3.9 s leaves ~5e-5 of a position's
        # vocabulary positive: a few hundred non-zeros after the max over ~128 tokens.
        probe = torch.randint(1000, 30000, (4, 128))
        logits = model(input_ids=probe).logits
        model.vocab_projector.bias -= 3.9 * logits.std()
    mlm = folder.parent / (folder.name + "-mlm")
    model.save_pretrained(mlm)
    document_dir = default / "document_0_Transformer"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(document_dir / name, mlm / name)
    build_model(str(mlm), folder, max_seq_length=256)
    shutil.rmtree(mlm, ignore_errors=True)
    return folder


def passages(corpus: Path, join: int = 1) -> List[str]:
    """Texts of a BEIR corpus; consecutive documents are joined `join` at a time
    (three of Vaswani's ~40-token abstracts make a length mix around 120 tokens)."""
    texts = []
    for line in open(corpus, encoding="utf-8"):
        record = json.loads(line)
        text = f"{record.get('title') or ''} {record.get('text') or ''}".strip()
        if text:
            texts.append(text)
    if join > 1:
        texts = [" ".join(texts[i : i + join]) for i in range(0, len(texts), join)]
    return texts


def table(rows: List[dict], columns: List[str]) -> str:
    """A plain-text table (for the terminal and the README)."""
    def show(value):
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    cells = [[show(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def query_texts(path: Path) -> List[str]:
    """The query texts of a BEIR queries.jsonl, in file order."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines if line.strip()]


def bm25_hit_lists(index, texts: List[str], size: int, batch: int = 64) -> List[List[dict]]:
    """The BM25 (`multi_match`) hits of each text on a `SpladeIndex`, without `_source`,
    `batch` searches per `_msearch` request."""
    from splade_os.query.hybrid import hit_lists
    from splade_os.query import bm25_body

    lists: List[List[dict]] = []
    for start in range(0, len(texts), batch):
        bodies = [bm25_body(text, size, source=False) for text in texts[start:start + batch]]
        lists += hit_lists(index.request_msearch(bodies), index.name, len(bodies))
    return lists


def save_results(path: Optional[Path], summary: dict) -> None:
    """Write a benchmark's summary as JSON beside the script's other results (nothing when no path)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2, ensure_ascii=False))


def arguments(namespace: argparse.Namespace) -> dict:
    """A script's parsed arguments as JSON-ready values (paths as strings), for its results record."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(namespace).items()}


def save_run(path: Path, name: str, record: dict) -> None:
    """Add (or replace) one named run in a results file that collects runs by name."""
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[name] = record
    path.write_text(json.dumps(runs, indent=2) + "\n")


def training_parser(doc: str, *, max_seq_length: int, lr: float, doc_reg: Optional[float]) -> argparse.ArgumentParser:
    """The options the training benchmarks share (a run name, the collection, the trainer's
    settings, where runs and results go), with each script's own defaults."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--data", type=Path, required=True, help="the BEIR folder")
    parser.add_argument("--pairs", default="lead")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=max_seq_length)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--static-lr", type=float, default=1e-3)
    parser.add_argument("--doc-reg", type=float, default=doc_reg)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, required=True)
    return parser


def machine() -> str:
    """What ran the benchmark: the GPU's name, or the CPU's model and core count."""
    import os
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    model = platform.processor() or "cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


@contextlib.contextmanager
def throwaway_node(engine: Optional[str] = None):
    """A throw-away local node of `engine` (default OpenSearch) on loopback for the run; yields its URL.

    The one place the benchmarks start a node (it shares the machine's CPUs with the encoders,
    as on a one-machine set-up).
    """
    from splade_os.node import LocalNode

    with LocalNode(engine or "opensearch", show_progress=False) as node:
        yield node.url


@contextlib.contextmanager
def cluster(url: Optional[str] = None, timeout: float = 120, engine: Optional[str] = None):
    """A `Cluster` for `url`, or for a throw-away local node (`throwaway_node`) when `url` is None."""
    if url:
        yield connect(url, engine=engine, timeout=timeout)
        return
    with throwaway_node(engine) as node_url:
        yield connect(node_url, engine=engine, timeout=timeout)


def drop(cluster, index: str) -> None:
    """Delete a benchmark's index and its ingest pipeline (if any); missing ones are fine."""
    for path in (f"/{index}", f"/_ingest/pipeline/splade-os-{index}"):
        try:
            cluster.request("DELETE", path, action=f"deleting {path}")
        except ClusterError as e:
            if e.status not in (400, 404):  # 400: a cluster without ingest pipelines
                raise


@contextlib.contextmanager
def working_dir(path):
    """Run with `path` as the current folder: files an ingest writes beside it (checkpoint,
    dead letters) land in the run's temp folder, not in the caller's."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def bench_model(name: str):
    """The `Model` of `--model`: "default", "distilbert" (`distilbert_shaped_model`), a hub id, or
    a folder (taken by its absolute path, since the benchmarks ingest from inside a temp folder)."""
    from splade_os.models.resolve import resolve_model

    if name == "distilbert":
        return resolve_model(str(distilbert_shaped_model()), show_progress=False)
    model = str(Path(name).resolve()) if Path(name).is_dir() else name
    return resolve_model(model, show_progress=False)
