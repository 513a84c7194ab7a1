#!/usr/bin/env python
"""How often is a BM25 hit that is not 'the' positive relevant all the same? (the `--negatives-skip` default)

For every judged test query: the best-ranked relevant document stands for the training pair's
positive; the r-th BM25 hit after it is left out is a would-be hard negative, and the share of
those that are judged relevant is the false-negative rate at rank r. Hard negatives are taken
after the skipped ranks. Also: how the self-supervised queries of each pair construction rank
their own document under BM25, beside the real test queries (how easy each task is).

    python benchmarks/negatives_false_rate.py --url URL --data ../shared/data \\
        [--collections cranfield vaswani] --out benchmarks/results/negatives_false_rate.json
"""

import argparse
import json
from pathlib import Path

import splade_os
from splade_os.corpus.beir import load_beir, relevant
from splade_os.training.pairs import corpus_pairs

from benchlib import bm25_hit_lists

RANKS = 12


def searches(index, texts, size):
    return [[hit["_id"] for hit in hits] for hits in bm25_hit_lists(index, texts, size)]


def false_negative_rates(index, queries, judged):
    qids = [q for q in queries if judged.get(q)]
    totals, counted = [0.0] * RANKS, 0
    for qid, ids in zip(qids, searches(index, [queries[q] for q in qids], 30)):
        positive = next((i for i in ids if i in judged[qid]), None)
        others = [i for i in ids if i != positive][:RANKS]
        if len(others) == RANKS:
            totals = [t + (i in judged[qid]) for t, i in zip(totals, others)]
            counted += 1
    return [round(t / counted, 3) for t in totals]


def own_rank_mrr(index, texts, wanted):
    reciprocal = [next((1.0 / (r + 1) for r, i in enumerate(ids) if i in want), 0.0)
                  for ids, want in zip(searches(index, texts, 100), wanted)]
    return round(sum(reciprocal) / len(reciprocal), 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--collections", nargs="+", default=["cranfield", "vaswani"])
    parser.add_argument("--index-pattern", default="{}-default", help="the index holding each collection")
    parser.add_argument("--out", type=Path, required=True)
    a = parser.parse_args()
    cluster, out = splade_os.connect(a.url), {}
    for name in a.collections:
        index = cluster.index(a.index_pattern.format(name))
        queries, qrels, corpus = load_beir(a.data / name)
        judged = relevant(qrels)
        qids = [q for q in queries if judged.get(q)]
        record = {"false_negative_rate_by_rank": false_negative_rates(index, queries, judged),
                  "bm25_mrr_of_own_document": {"test queries": own_rank_mrr(index, [queries[q] for q in qids],
                                                                            [judged[q] for q in qids])}}
        for kind in ("lead", "ict", "title"):
            try:
                rows = corpus_pairs(corpus, kind).shuffle(seed=0)
            except splade_os.InputError:
                continue
            rows = rows.select(range(min(300, len(rows))))
            record["bm25_mrr_of_own_document"][kind] = own_rank_mrr(index, rows["query"],
                                                                     [{p} for p in rows["positive_id"]])
        out[name] = record
        print(name, json.dumps(record))
    a.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
