#!/usr/bin/env python
"""Does training do real good? Self-supervised training on Cranfield, measured on its test queries.

Starts from the default model (the offline SPLADE masked-LM + an IDF query table over the
Cranfield corpus), trains on title -> text pairs of Cranfield's own corpus (its test queries are
never used for training), and compares nDCG@10 on the test queries before and after, each
through a real OpenSearch index, next to BM25 (`multi_match` on title and text) on the same node.

    python benchmarks/train_cranfield.py [--epochs 1] [--max-steps -1] [--out benchmarks/results/train-cranfield-cpu.json]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import cluster, machine, save_results, table  # noqa: E402
from splade_os.corpus.beir import load_beir  # noqa: E402
from splade_os.ingest import IngestOptions, ingest  # noqa: E402
from splade_os.models.resolve import resolve_model  # noqa: E402
from splade_os.models.builder import SAMPLE_DIR  # noqa: E402
from splade_os.query import bm25_body  # noqa: E402
from splade_os.training.trainer import TrainArgs, beir_pairs, starting_model, train  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="OpenSearch URL (default: start a local node)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--docs", type=int, default=None,
                        help="index only the first N documents (a quick check of the script; default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    with cluster(args.url) as target:
        queries, qrels, corpus = load_beir(SAMPLE_DIR)
        work = Path(tempfile.mkdtemp(prefix="train-cranfield-"))
        indexed = corpus  # what the indexes hold (the IDF table and the pairs always use the whole corpus)
        if args.docs:
            indexed = work / "corpus.jsonl"
            with open(corpus, encoding="utf-8") as f:
                indexed.write_text("".join(line for _, line in zip(range(args.docs), f)), encoding="utf-8")
        rows = []

        def measure(name, model, index):
            ingest(target, indexed, index, model, show_progress=False, options=IngestOptions(
                dead_letter=work / f"{index}.dead", checkpoint=work / f"{index}.ckpt"))
            result = target.index(index).evaluate(queries, qrels, encoder=model.query_encoder)
            rows.append({"system": name, **{m: round(result.metrics[m], 4) for m in
                                            ("ndcg@10", "ndcg@10_graded", "mrr@10", "map@100", "recall@10")},
                         "p50 ms": round(result.latency["p50_ms"], 1)})
            return result

        before = resolve_model("default", show_progress=False)
        measure("SPLADE before training (default model)", before, "bench-cran-before")

        pairs = beir_pairs(SAMPLE_DIR, split="train")  # no training qrels: title -> text
        model = starting_model(init_idf=corpus, max_seq_length=args.max_seq_length)
        train_args = TrainArgs(output_dir=work / "run", epochs=args.epochs, max_steps=args.max_steps,
                               learning_rate=args.lr, batch_size=args.batch_size, save_steps=10**6, logging_steps=10)
        started = time.perf_counter()
        trained = train(model, pairs, train_args, show_progress=False)
        seconds = time.perf_counter() - started
        measure("SPLADE after training", resolve_model(str(trained.model_dir), show_progress=False),
                "bench-cran-after")

        bm25 = target.index("bench-cran-after").evaluate(queries, qrels, body=bm25_body).metrics
        rows.append({"system": "BM25 (multi_match title+text, same node)",
                     **{m: round(bm25[m], 4) for m in ("ndcg@10", "ndcg@10_graded", "mrr@10", "map@100", "recall@10")}})
        summary = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "pairs": len(pairs),
                   "steps": trained.steps, "train_seconds": seconds, "losses": trained.losses,
                   "table_change": trained.table_change, "args": vars(args) | {"out": str(args.out)}, "rows": rows}
        print(f"{summary['machine']} | {summary['date']} | trained {trained.steps} steps on {len(pairs)} "
              f"title->text pairs in {seconds:.0f} s")
        print(table(rows, ["system", "ndcg@10", "ndcg@10_graded", "mrr@10", "map@100", "recall@10", "p50 ms"]))
        save_results(args.out, summary)


if __name__ == "__main__":
    main()
