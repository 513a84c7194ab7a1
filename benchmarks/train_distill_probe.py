#!/usr/bin/env python
"""Probe: distil a lexical + SPLADE fusion into the model, on self-supervised pairs.

Why: hard negatives mined from BM25 include unjudged relevant documents (12.9% of Cranfield's
rank-6 hits, 22.6% of Vaswani's, results/negatives_false_rate.json) and training against them
lowered nDCG@10. A teacher that scores every candidate instead of calling it negative has no
false negatives to push down. The teacher fuses the two rankings whose fusion (by RRF) measured
+0.021 nDCG@10 on both collections (docs/quality.md), here as scores: min-max BM25 (the
cluster's `multi_match`) plus min-max SPLADE of the starting model, over the union of both top
lists, rescaled per query onto the start's own score range so that the untrained student is
already close to it.

For each self-supervised pair (`splade_os.training.pairs`, no test query used), the positive and N
candidates drawn from the teacher's top list are scored by the teacher, and the model trains on
SpladeLoss(SparseDistillKLDivLoss) with the FLOPS regularizer at a fixed weight, the static
table at its own rate and kept non-negative, fast max pooling; then every test query, exactly in
memory at the serving length. No gate: it measures the method, it is not the product path.

    python benchmarks/train_distill_probe.py NAME --url URL --index cranfield-default \\
        --data ../shared/data/cranfield --out benchmarks/results/train_distill_probe.json
"""

import random
import re
import time

import splade_os
from splade_os.corpus.beir import load_beir
from splade_os.corpus import Document, read_corpus
from splade_os.evaluate import evaluate_exact, exact_doc_vectors, exact_run
from splade_os.query.hybrid import minmax_scores
from splade_os.training.trainer import beir_pairs, starting_model, static_table_parameter

from benchlib import arguments, bm25_hit_lists, save_run, training_parser


def teacher_rows(rows, bm25, splade, texts_by_id, negatives, alpha, seed):
    """Training columns and teacher labels of each pair with enough candidates.

    `bm25` and `splade` are each pair's hit lists ({"_id", "_score"})."""
    rng = random.Random(seed)
    out = {"query": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(negatives)}, "label": []}
    for row, b, s in zip(rows, bm25, splade):
        bm, sp = minmax_scores(b), minmax_scores(s)
        candidates = set(bm) | set(sp) | {row["positive_id"]}
        fused = {c: alpha * bm.get(c, 0.0) + (1 - alpha) * sp.get(c, 0.0) for c in candidates}
        lo, hi = (min(h["_score"] for h in s), max(h["_score"] for h in s)) if s else (0.0, 1.0)
        scaled = {c: lo + (hi - lo) * v for c, v in fused.items()}
        order = [c for c in sorted(candidates, key=lambda c: -fused[c]) if c != row["positive_id"]][:20]
        if len(order) < negatives:
            continue
        picked = rng.sample(order, negatives)
        out["query"].append(row["query"])
        out["positive"].append(texts_by_id[row["positive_id"]])  # the text the teacher scored
        for i, c in enumerate(picked):
            out[f"negative_{i + 1}"].append(texts_by_id[c])
        out["label"].append([scaled[row["positive_id"]]] + [scaled[c] for c in picked])
    return out


def main():
    parser = training_parser(__doc__, max_seq_length=256, lr=1e-4, doc_reg=3e-4)
    parser.add_argument("--url", required=True)
    parser.add_argument("--index", required=True, help="an index holding the collection (its BM25 fields)")
    parser.add_argument("--negatives", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=0.5, help="BM25's share of the teacher")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--max-pairs", type=int, default=None)
    a = parser.parse_args()

    from datasets import Dataset
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer, SparseEncoderTrainingArguments
    from sentence_transformers.sparse_encoder.losses import SparseDistillKLDivLoss, SpladeLoss
    from splade_os.training.callbacks import NonNegativeQueryTable
    from splade_os.documents.pooling import fast_max_pooling

    started = time.perf_counter()
    queries, qrels, corpus = load_beir(a.data)
    model = starting_model(None, a.data / "corpus.jsonl", None)
    folder = a.work / a.name / "start"
    model.save(str(folder))
    start = splade_os.resolve_model(str(folder), show_progress=False)
    vectors = exact_doc_vectors(corpus, start, device="cpu")
    texts_by_id = {doc.id: doc.content for doc in read_corpus(corpus) if isinstance(doc, Document)}
    rows = beir_pairs(a.data, "train", a.pairs, 42, with_ids=True)
    if a.max_pairs:
        rows = rows.shuffle(seed=42).select(range(min(a.max_pairs, len(rows))))
    rows = [dict(r) for r in rows]
    index = splade_os.connect(a.url).index(a.index)
    texts = {str(i): r["query"] for i, r in enumerate(rows)}
    bm25 = bm25_hit_lists(index, list(texts.values()), 50)
    run = exact_run(vectors, texts, list(texts), start.query_encoder, k=50)
    splade = [[{"_id": doc, "_score": score} for doc, score in run[i].items()] for i in texts]  # as hit lists
    data = teacher_rows(rows, bm25, splade, texts_by_id, a.negatives, a.alpha, a.seed)
    prepared = time.perf_counter() - started
    dataset = Dataset.from_dict(data)

    table_name = static_table_parameter(model)
    table = dict(model.named_parameters())[table_name]
    serving = model.max_seq_length
    model.max_seq_length = a.max_seq_length
    loss = SpladeLoss(model, loss=SparseDistillKLDivLoss(model, temperature=a.temperature),
                      document_regularizer_weight=a.doc_reg, query_regularizer_weight=0.0)
    columns = [c for c in dataset.column_names if c != "label"]
    args = SparseEncoderTrainingArguments(
        output_dir=str(a.work / a.name), num_train_epochs=a.epochs, per_device_train_batch_size=a.batch_size,
        learning_rate=a.lr, warmup_steps=0.1, batch_sampler=BatchSamplers.NO_DUPLICATES,
        router_mapping={"query": "query", **{c: "document" for c in columns if c != "query"}},
        learning_rate_mapping={re.escape(table_name): a.static_lr}, seed=a.seed, save_strategy="no",
        logging_steps=10, disable_tqdm=True, report_to="none")
    trainer = SparseEncoderTrainer(model=model, loss=loss, train_dataset=dataset, args=args,
                                   callbacks=[NonNegativeQueryTable(table)])
    trained_at = time.perf_counter()
    with fast_max_pooling(model):
        trainer.train()
    train_seconds = time.perf_counter() - trained_at
    model.max_seq_length = serving
    final = a.work / a.name / "final"
    model.save(str(final))
    trained = splade_os.resolve_model(str(final), show_progress=False)
    record = {"args": arguments(a),
              "pairs": len(data["query"]), "steps": trainer.state.global_step, "prepare_seconds": round(prepared),
              "train_seconds": round(train_seconds),
              "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e]}
    for name, m in (("start", start), ("trained", trained)):
        metrics = evaluate_exact(vectors if name == "start" else exact_doc_vectors(corpus, m, device="cpu"),
                                 queries, qrels, m.query_encoder)
        record[name] = {k: round(metrics[k], 4) for k in ("ndcg@10", "mrr@10", "recall@10", "corpus_active_dims")}
    print(a.name, "start", record["start"], "trained", record["trained"], flush=True)
    save_run(a.out, a.name, record)


if __name__ == "__main__":
    main()
