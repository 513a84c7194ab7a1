#!/usr/bin/env python
"""One training variant through the library, then every test query, exactly in memory.

The experiments behind the defaults of docs/training.md (pair construction, static learning
rate, controller): `splade_os.training.trainer.run` with hard negatives mined from an index that already
holds the collection (ingested with the default model), then `exact_doc_vectors` /
`evaluate_exact` of the saved model over the whole corpus at its serving length. The run is
forced, so a model the gate refused is measured too. Each run appends to --out.

    python benchmarks/train_variants.py NAME --url URL --index cranfield-default \\
        --data ../shared/data/cranfield --pairs lead [--steps 60] [--static-lr 1e-3] \\
        --out benchmarks/results/train_variants.json
"""

import time

import splade_os
from splade_os.corpus.beir import load_beir
from splade_os.evaluate import evaluate_exact, exact_doc_vectors
from splade_os.training.negatives import MiningOptions
from splade_os.training.trainer import Recipe, TrainArgs, run

from benchlib import arguments, save_run, training_parser


def main():
    parser = training_parser(__doc__, max_seq_length=128, lr=2e-5, doc_reg=None)
    parser.add_argument("--url", help="the cluster negatives are mined from (not needed with --negatives none)")
    parser.add_argument("--index", help="the index negatives are mined from")
    parser.add_argument("--negatives", default="bm25", help="bm25, splade or none")
    parser.add_argument("--skip", type=int, default=MiningOptions.skip)
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps; -1: --epochs decides")
    parser.add_argument("--target-doc-dims", type=float, default=None)
    parser.add_argument("--validation-queries", type=int, default=100)
    parser.add_argument("--validation-distractors", type=int, default=100)
    a = parser.parse_args()
    mining = MiningOptions.named(a.negatives, 1, a.skip)
    recipe = Recipe(beir=a.data, pairs=a.pairs, init_idf=a.data / "corpus.jsonl", negatives=mining, index=a.index,
                    validation_queries=a.validation_queries, validation_distractors=a.validation_distractors)
    args = TrainArgs(output_dir=a.work / a.name, batch_size=a.batch_size, max_steps=a.steps, epochs=a.epochs, logging_steps=5,
                     max_seq_length=a.max_seq_length, evaluations=2, force=True, learning_rate=a.lr,
                     static_learning_rate=a.static_lr, document_regularizer_weight=a.doc_reg,
                     target_doc_dims=a.target_doc_dims, save_steps=10**6, seed=a.seed)
    started = time.perf_counter()
    result = run(recipe, args, splade_os.connect(a.url) if a.url else None, show_progress=False)
    record = {"args": arguments(a),
              "train_seconds": round(time.perf_counter() - started), "steps": result.steps,
              "validation": {k: result.validation[k] for k in ("start", "best", "best_step", "gain", "z", "passed")},
              "sparsity": {k: v for k, v in result.sparsity.items() if k != "history"}}
    queries, qrels, corpus = load_beir(a.data)
    model = splade_os.resolve_model(str(result.model_dir), show_progress=False)
    metrics = evaluate_exact(exact_doc_vectors(corpus, model, device="cpu"), queries, qrels, model.query_encoder)
    record["test"] = {k: round(metrics[k], 4) for k in ("ndcg@10", "mrr@10", "recall@10", "map@100",
                                                        "corpus_active_dims", "query_active_dims")}
    print(a.name, record["validation"]["start"]["ndcg@10"], "->", record["validation"]["best"]["ndcg@10"],
          "test", record["test"])
    save_run(a.out, a.name, record)


if __name__ == "__main__":
    main()
