#!/usr/bin/env python
"""Probe: how far does training the query table alone go? (documents fixed, encoded once)

The inference-free query side is one weight per token. With the document vectors computed
once (the default model, exactly, at its serving length), the table can be trained on
self-supervised pairs for whole epochs in seconds: in-batch softmax over
score(q, d) = sum over q's distinct tokens of w[t] * d[t], the table clamped at 0 after each
step, as in `splade_os.training.trainer`. Every epoch is evaluated on the test queries (this probe looks at
test numbers each epoch: it measures a ceiling, it chooses nothing). The default model's own
table and the IDF table of the corpus (the `--init-idf` start, where the probe begins) are
measured beside it on the same document vectors. Each collection is a key of --out.

    python benchmarks/table_only_probe.py --data ../shared/data/cranfield --pairs lead --epochs 4 \\
        --out benchmarks/results/table_only_probe.json
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import splade_os
from splade_os.corpus.beir import load_beir
from splade_os.evaluate import evaluate_exact, exact_doc_vectors
from splade_os.models.builder import idf_weights, sample_texts
from splade_os.training.pairs import corpus_pairs

from benchlib import arguments, save_run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--pairs", default="lead")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, help="JSON file; this collection's record is added under its name")
    a = parser.parse_args()
    model = splade_os.resolve_model("default", show_progress=False)
    encoder = model.query_encoder
    queries, qrels, corpus = load_beir(a.data)
    started = time.perf_counter()
    vectors = exact_doc_vectors(corpus, model, device="cpu")
    record = {"args": arguments(a),
              "encode_seconds": round(time.perf_counter() - started),
              "default_table": round(evaluate_exact(vectors, queries, qrels, encoder)["ndcg@10"], 4)}
    ids = list(vectors)
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    vocab = len(encoder.tokens)
    docs = torch.zeros(len(ids), vocab)
    for i, doc_id in enumerate(ids):
        docs[i, torch.as_tensor(vectors[doc_id].ids, dtype=torch.long)] = torch.as_tensor(vectors[doc_id].values)
    weight = torch.nn.Parameter(torch.as_tensor(idf_weights(sample_texts(corpus), model.layout.tokenizer_file, vocab)))
    rows = corpus_pairs(corpus, a.pairs)
    pairs = [(sorted(set(encoder.token_ids(q))), position[p]) for q, p in zip(rows["query"], rows["positive_id"])
             if p in position]
    optimizer = torch.optim.Adam([weight], lr=a.lr)

    def test_ndcg():
        encoder.table = weight.detach().numpy().astype(np.float32)
        return evaluate_exact(vectors, queries, qrels, encoder)["ndcg@10"]

    record.update(pairs=len(pairs), idf_table=round(test_ndcg(), 4), epochs=[])
    print(f"default table: test nDCG@10 {record['default_table']:.4f}; IDF table: {record['idf_table']:.4f}")
    rng = np.random.default_rng(0)
    for epoch in range(a.epochs):
        started = time.perf_counter()
        order = rng.permutation(len(pairs))
        for start in range(0, len(order), a.batch_size):
            batch = [pairs[i] for i in order[start:start + a.batch_size]]
            present = torch.zeros(len(batch), vocab)
            for row, (tokens, _) in enumerate(batch):
                present[row, tokens] = 1.0
            scores = (present * weight) @ docs[[p for _, p in batch]].T
            loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                weight.clamp_(min=0.0)
        seconds = time.perf_counter() - started
        record["epochs"].append({"test_ndcg@10": round(test_ndcg(), 4), "seconds": round(seconds, 1)})
        print(f"epoch {epoch + 1}: test nDCG@10 {record['epochs'][-1]['test_ndcg@10']:.4f} ({seconds:.0f} s)")
    if a.out:
        save_run(a.out, a.data.name, record)


if __name__ == "__main__":
    main()
