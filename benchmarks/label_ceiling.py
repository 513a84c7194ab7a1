#!/usr/bin/env python
"""How good are the teacher's labels? Each labelling function as a ranker of the test queries.

Distillation (`splade-os train --teacher`) teaches the student a mix of the teacher's and the
start's scores. This measures that mix, and its parts, as rankers of every judged test query
over the whole corpus: how far the labels are above the start is the most a student could
gain by learning them (on queries like the test ones; training sees only self-supervised ones).

Scores per query over every document: the start's exact sparse dot product (the default model
with an IDF table of the corpus, as `train --init-idf` builds it), the teacher's cosine
(all-MiniLM-L6-v2), and BM25 from the node (`multi_match`, top 100, the rest 0). Each is
min-max scaled per query over the corpus before mixing (the training labels scale over a row's
candidates instead).

    python benchmarks/label_ceiling.py --url http://127.0.0.1:9200 --collections cranfield \\
        --out benchmarks/results/label_ceiling.json
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import bm25_hit_lists, cluster as node, machine, save_results, table  # noqa: E402
from train_self_supervised import fill  # noqa: E402

import splade_os  # noqa: E402
from splade_os.corpus.beir import load_beir  # noqa: E402
from splade_os.corpus import Document, read_corpus  # noqa: E402
from splade_os.evaluate.run import _top_k, evaluated_queries, exact_doc_vectors, exact_run, retrieval_metrics  # noqa: E402
from splade_os.training.teacher import load_teacher  # noqa: E402
from splade_os.training.trainer import starting_model  # noqa: E402

# (teacher, start, BM25) shares; (0.7, 0.3, 0) is `--teacher-mix 0.7`, the measured default.
MIXES = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.7, 0.3, 0), (0.8, 0.2, 0), (0, 0.5, 0.5),
         (0.6, 0.2, 0.2), (0.5, 0.25, 0.25)]


def scaled(scores: np.ndarray) -> np.ndarray:
    low, high = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    return (scores - low) / np.maximum(high - low, 1e-9)


def measure(cluster, folder: Path, teacher) -> dict:
    queries, qrels, corpus = load_beir(folder)
    query_ids = evaluated_queries(queries, qrels)
    index = cluster.index(f"sst-{folder.name}-default")
    fill(index, corpus, splade_os.resolve_model("default", show_progress=False))
    with tempfile.TemporaryDirectory() as tmp:
        starting_model(init_idf=corpus).save(tmp)
        start = splade_os.resolve_model(tmp, show_progress=False)
        vectors = exact_doc_vectors(corpus, start)
        doc_ids = list(vectors)
        run = exact_run(vectors, queries, query_ids, start.query_encoder, k=len(doc_ids))
    where = {d: j for j, d in enumerate(doc_ids)}
    by_start = np.array([[run[q].get(d, 0.0) for d in doc_ids] for q in query_ids])
    texts = {d.id: d.content for d in read_corpus(corpus) if isinstance(d, Document)}
    docs = teacher.encode([texts[d] for d in doc_ids], batch_size=64, normalize_embeddings=True)
    asked = teacher.encode([queries[q] for q in query_ids], batch_size=64, normalize_embeddings=True)
    by_teacher = asked @ docs.T
    by_bm25 = np.zeros_like(by_start)
    for row, hits in enumerate(bm25_hit_lists(index, [queries[q] for q in query_ids], 100)):
        for hit in hits:
            if hit["_id"] in where:
                by_bm25[row, where[hit["_id"]]] = hit["_score"]
    parts = [scaled(by_teacher), scaled(by_start), scaled(by_bm25)]
    rows = []
    for mix in MIXES:
        scores = sum(share * part for share, part in zip(mix, parts))
        run = {q: _top_k(scores[row], doc_ids, 100) for row, q in enumerate(query_ids)}
        metrics = retrieval_metrics(queries, qrels, run)
        rows.append({"teacher": mix[0], "start": mix[1], "bm25": mix[2],
                     "ndcg@10": round(metrics["ndcg@10"], 4), "mrr@10": round(metrics["mrr@10"], 4)})
    return {"queries": len(query_ids), "documents": len(doc_ids), "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="the cluster (default: a throw-away local node)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--collections", nargs="+", default=["cranfield"])
    parser.add_argument("--out", type=Path)
    settings = parser.parse_args()
    summary = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "teacher": "all-MiniLM-L6-v2",
               "collections": {}}
    teacher = load_teacher()
    with node(settings.url, timeout=600) as cluster:
        for name in settings.collections:
            record = measure(cluster, settings.data / name, teacher)
            summary["collections"][name] = record
            print(f"{name}: {record['queries']} queries, {record['documents']} documents", flush=True)
            print(table(record["rows"], ["teacher", "start", "bm25", "ndcg@10", "mrr@10"]), flush=True)
            save_results(settings.out, summary)


if __name__ == "__main__":
    main()
