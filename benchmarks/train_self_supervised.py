#!/usr/bin/env python
"""Does self-supervised training help? The recipe of docs/training.md, measured end to end.

For each collection (BEIR folders; no test query is ever used for training or for choosing the
checkpoint), through the library and a real node:

1. ingest the corpus with the untrained default model (index `sst-<name>-default`, reused when it
   already holds the corpus) and evaluate every test query: the default model, the start
   (the same document vectors with an IDF query table over this corpus: the query side is all
   that differs, so it is searched on the same index) and BM25 (`multi_match` on title and text);
2. train with `splade_os.training.trainer.run`: self-supervised pairs of the corpus, hard negatives mined
   from that index (or, with `--teacher`, candidates mined from it and scored by the teacher),
   held-out pairs as the validation gate, sparsity kept by target (or a fixed `--doc-reg`);
3. ingest with the trained model (`sst-<name>-trained`) and evaluate every test query again.

Document active dimensions are counted on the indexed documents (the features in `_source`).
Time per step excludes the validation evaluations. The gate's verdict is recorded beside the
test numbers (the run is forced so that a refused model is measured too).

    python benchmarks/train_self_supervised.py --url http://127.0.0.1:9200 --data ../shared/data \\
        [--collections cranfield vaswani] [--max-steps 80] [--out benchmarks/results/train_self_supervised.json]
    python benchmarks/train_self_supervised.py --url http://127.0.0.1:9200 --collections vaswani \\
        --teacher default --lr 1e-4 --doc-reg 1e-4 --max-seq-length 256 --max-steps 200 \\
        --out benchmarks/results/train_self_supervised-teacher-vaswani.json
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import cluster as node, machine, save_results, table, working_dir  # noqa: E402

import splade_os  # noqa: E402
from splade_os.corpus.beir import load_beir  # noqa: E402
from splade_os.ingest import IngestOptions  # noqa: E402
from splade_os.training.negatives import MiningOptions  # noqa: E402
from splade_os.query import bm25_body  # noqa: E402
from splade_os.training.teacher import TeacherOptions  # noqa: E402
from splade_os.training.trainer import Recipe, TrainArgs, run, starting_model  # noqa: E402

METRICS = ("ndcg@10", "mrr@10", "recall@10", "map@100")


def fill(index, corpus: Path, model) -> None:
    """Ingest `corpus` into `index` with `model` unless it already holds it."""
    documents = sum(1 for line in open(corpus, encoding="utf-8") if line.strip())
    if index.exists() and index.count() >= documents - 10:  # a few lines of a corpus may be rejected
        return
    splade_os.ingest(index.cluster, corpus, index.name, model, show_progress=False,
                     options=IngestOptions(dead_letter=Path(f"{index.name}.rejected.jsonl")))


def doc_active_dims(index, limit: int = 20000) -> float:
    """Mean number of features per indexed document (up to `limit` documents, in index order)."""
    answer = index.cluster.request("POST", f"/{index.name}/_search", {
        "size": min(limit, 10000), "_source": [index.field], "sort": ["_doc"], "query": {"match_all": {}}})
    counts = [len(hit["_source"].get(index.field) or {}) for hit in answer["hits"]["hits"]]
    return sum(counts) / max(1, len(counts))


def evaluate(index, queries, qrels, **kwargs) -> dict:
    metrics = index.evaluate(queries, qrels, **kwargs).metrics
    return {m: round(metrics[m], 4) for m in METRICS}


def train_once(folder: Path, index_name: str, cluster, settings, work: Path):
    """(TrainResult, gate verdict) of the recipe on one collection."""
    negatives = MiningOptions.named(settings.hard_negatives, settings.negatives, settings.negatives_skip)
    teacher = TeacherOptions.named(settings.teacher, settings.teacher_mix, settings.teacher_candidates,
                                   settings.teacher_pool, negatives)
    if teacher:
        negatives = None
    recipe = Recipe(beir=folder, pairs=settings.pairs, init_idf=folder / "corpus.jsonl", negatives=negatives,
                    index=index_name, validation_queries=settings.validation_queries, teacher=teacher)
    args = TrainArgs(output_dir=work / "run", max_steps=settings.max_steps, epochs=settings.epochs,
                     batch_size=settings.batch_size, document_regularizer_weight=settings.doc_reg,
                     max_seq_length=settings.max_seq_length, learning_rate=settings.lr,
                     static_learning_rate=settings.static_lr, save_steps=10**6, logging_steps=10, force=True,
                     distill_temperature=settings.teacher_temperature, seed=settings.seed,
                     interpolation=settings.interpolate)
    result = run(recipe, args, cluster, show_progress=False)
    return result, result.validation["passed"]


def measure(cluster, folder: Path, settings, work: Path) -> dict:
    """Before / after / BM25 rows and the training record of one collection."""
    name = folder.name
    queries, qrels, corpus = load_beir(folder)
    default = splade_os.resolve_model("default", show_progress=False)
    before = cluster.index(f"sst-{name}-default")
    fill(before, corpus, default)
    start_dir = work / "start"
    starting_model(init_idf=corpus).save(str(start_dir))
    start = splade_os.resolve_model(str(start_dir), show_progress=False)
    rows = {"default": evaluate(before, queries, qrels), "bm25": evaluate(before, queries, qrels, body=bm25_body),
            "start (IDF of this corpus)": evaluate(before, queries, qrels, encoder=start.query_encoder)}
    result, beat = train_once(folder, before.name, cluster, settings, work)
    trained = splade_os.resolve_model(str(result.model_dir), show_progress=False)
    after = cluster.index(f"sst-{name}-trained-{os.getpid()}")  # runs side by side must not share it
    if after.exists():
        cluster.request("DELETE", f"/{after.name}")
    fill(after, corpus, trained)
    rows["trained"] = evaluate(after, queries, qrels)
    eval_seconds = sum(h.get("seconds") or 0.0 for h in result.validation["history"])
    return {
        "rows": rows,
        "doc_active_dims": {"default": round(doc_active_dims(before), 1), "trained": round(doc_active_dims(after), 1)},
        "gain_over_default": round(rows["trained"]["ndcg@10"] - rows["default"]["ndcg@10"], 4),
        "gain_over_start": round(rows["trained"]["ndcg@10"] - rows["start (IDF of this corpus)"]["ndcg@10"], 4),
        "gate": {"beat_start": beat, "validation": {k: result.validation[k] for k in (
            "queries", "documents", "start", "best", "best_step", "gain", "z", "gate_z", "history", "min_doc_dims",
            "too_sparse_steps", "interpolation", "checkpoint")}},
        "steps": result.steps, "pairs": result.pairs, "mining": result.mining,
        "seconds_per_step": round((result.seconds - eval_seconds) / max(1, result.steps), 2),
        "validation_seconds": round(eval_seconds, 1),
        "sparsity": {k: v for k, v in result.sparsity.items() if k != "history"},
        "losses": result.losses,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="the cluster (default: a throw-away local node)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--collections", nargs="+", default=["cranfield", "vaswani"])
    parser.add_argument("--pairs", default="lead")
    parser.add_argument("--hard-negatives", default="bm25", help="bm25, splade or none (in-batch negatives only)")
    parser.add_argument("--negatives", type=int, default=1)
    parser.add_argument("--negatives-skip", type=int, default=MiningOptions.skip)
    parser.add_argument("--teacher", help="distil this teacher ('default': all-MiniLM-L6-v2) on candidates "
                                          "mined by --hard-negatives")
    parser.add_argument("--teacher-mix", type=float, default=TeacherOptions.mix)
    parser.add_argument("--teacher-candidates", type=int, default=TeacherOptions.candidates)
    parser.add_argument("--teacher-pool", type=int, default=TeacherOptions.pool)
    parser.add_argument("--teacher-temperature", type=float, default=TrainArgs.distill_temperature)
    parser.add_argument("--validation-queries", type=int, default=200)
    parser.add_argument("--max-steps", type=int, default=80, help="-1: --epochs decides")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--doc-reg", type=float, default=None, help="a fixed FLOPS weight (default: by target)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--static-lr", type=float, default=1e-3)
    parser.add_argument("--interpolate", type=float, default=TrainArgs.interpolation,
                        help="move the saved weights back toward the start (1: as trained)")
    parser.add_argument("--seed", type=int, default=TrainArgs.seed, help="pairs, validation split, pools, order")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work", type=Path, help="keep the working folder (start and trained models) here "
                        "instead of a temporary one")
    settings = parser.parse_args()
    summary = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
               "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(settings).items()},
               "collections": {}}
    with node(settings.url, timeout=600) as cluster, tempfile.TemporaryDirectory(prefix="sst-") as tmp:
        for name in settings.collections:
            work = (settings.work or Path(tmp)) / name
            work.mkdir(parents=True)
            with working_dir(work):
                started = time.perf_counter()
                record = measure(cluster, settings.data / name, settings, work)
            record["wall_seconds"] = round(time.perf_counter() - started)
            summary["collections"][name] = record
            print(f"{name}: {record['steps']} steps, {record['seconds_per_step']} s/step; gate "
                  f"{'passed' if record['gate']['beat_start'] else 'refused'}; document active dims "
                  f"{record['doc_active_dims']['default']} -> {record['doc_active_dims']['trained']}", flush=True)
            print(table([{"system": k, **v} for k, v in record["rows"].items()], ["system", *METRICS]), flush=True)
            save_results(settings.out, summary)  # after each collection: a later failure keeps it


if __name__ == "__main__":
    main()
