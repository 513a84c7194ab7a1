"""Evaluation: BEIR/TREC readers, the metrics, and an index measured against sentence-transformers."""

import json

import pytest

from splade_os.common.errors import InputError
from splade_os.corpus.beir import load_beir, load_qrels, load_queries
from splade_os.evaluate import EvalResult, evaluate_exact, evaluate_index, exact_doc_vectors, retrieval_metrics
from splade_os.ingest import IngestOptions, ingest
from fakes import FakeCluster, splade_mapping

SUBSET_DOCS = 300
INDEX = "eval-subset"


# --- readers ---------------------------------------------------------------------------------


def test_load_beir_and_both_qrels_formats(tmp_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "wing"}\n')
    (folder / "queries.jsonl").write_text(
        json.dumps({"_id": 1, "text": "lift of a wing", "metadata": {}}) + "\n\n"
        + json.dumps({"_id": "q2", "text": "drag"}) + "\n"
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\t0\nq2\td 3\t1\n")
    queries, qrels, corpus_path = load_beir(folder)
    assert queries == {"1": "lift of a wing", "q2": "drag"}
    assert qrels == {"1": {"d1": 2, "d2": 0}, "q2": {"d 3": 1}}  # a tab-separated id may hold a space
    assert corpus_path == folder / "corpus.jsonl"

    trec = tmp_path / "qrels.trec"
    trec.write_text("1 0 d1 2\n1 0 d2 0\n\nq2\tQ0\td 3\t1.0\n")
    assert load_qrels(trec) == qrels

    tsv_queries = tmp_path / "queries.tsv"
    tsv_queries.write_text("1\tlift of a wing\nq2\tdrag\n")
    assert load_queries(tsv_queries) == queries

    with pytest.raises(InputError, match="splits found: test"):
        load_beir(folder, split="dev")
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\n1\td1\n")
    with pytest.raises(InputError, match=r"bad.tsv:2: .*got 2 fields"):
        load_qrels(bad)
    bad.write_text("1 0 d1 high\n")
    with pytest.raises(InputError, match="not an integer"):
        load_qrels(bad)


# --- metrics -----------------------------------------------------------------------------------


def test_graded_ndcg_differs_from_binary_only_when_grades_differ():
    queries = {"q1": "a", "q2": "b", "q3": "no judged relevant document"}
    run = {"q1": {"d1": 2.0, "d2": 1.0, "x": 0.5}, "q2": {"x": 2.0, "y": 1.0, "d3": 1.0}}
    graded = {"q1": {"d1": 1, "d2": 4}, "q2": {"d3": 3}, "q3": {"d4": 0}}
    binary = {q: {d: int(g > 0) for d, g in docs.items()} for q, docs in graded.items()}

    m_graded = retrieval_metrics(queries, graded, run)
    m_binary = retrieval_metrics(queries, binary, run)
    # Binary metrics only see grade > 0; q3 (nothing relevant) is left out, as in sentence-transformers.
    assert m_graded["ndcg@10"] == m_binary["ndcg@10"]
    assert m_graded["accuracy@1"] == 0.5 and m_graded["recall@3"] == 1.0
    # With binary grades, pytrec_eval's nDCG and sentence-transformers' agree, the tie of "y" and
    # "d3" included (ordered by ascending id for both); with grades 1 and 4 in the wrong order,
    # the graded one is lower.
    assert m_binary["ndcg@10_graded"] == pytest.approx(m_binary["ndcg@10"], abs=1e-12)
    assert m_graded["ndcg@10_graded"] < m_graded["ndcg@10"] - 0.05


def test_evaluate_index_requests_and_queries_without_hits(default_model):
    encoder = default_model.query_encoder
    queries = {"1": "wing", "2": "supersonic", "3": "unjudged"}
    qrels = {"1": {"a": 1}, "2": {"b": 1}}
    canned = {"splade.wing": [("a", 3.0), ("c", 1.0)]}

    def answer(method, path, body):
        if path.endswith("/_mapping"):
            return splade_mapping("idx")
        key = body["query"]["bool"]["should"][0]["rank_feature"]["field"] if "bool" in body["query"] else None
        return {"hits": {"hits": [{"_id": d, "_score": s} for d, s in canned.get(key, [])]}}

    cluster = FakeCluster(answer, max_clause_count=7)
    result = evaluate_index(cluster.index("idx"), queries, qrels, encoder, k=20)
    assert isinstance(result, EvalResult) and result.exact_metrics is None
    # A query that finds nothing still counts (as 0), one without judgments does not.
    assert result.queries == 2 and result.run == {"1": {"a": 3.0, "c": 1.0}, "2": {}}
    assert result.metrics["ndcg@10"] == pytest.approx(0.5) and result.metrics["mrr@10"] == pytest.approx(0.5)
    assert result.metrics["ndcg@10_graded"] == pytest.approx(0.5)
    searches = [body for method, path, body in cluster.calls if path == "/idx/_search"]
    assert len(searches) == 3  # one warm-up, then one per judged query
    assert searches[-1]["_source"] is False and searches[-1]["size"] == 20
    assert result.settings["max_clauses"] == 7 and result.settings["engine"] == "opensearch"
    assert set(result.latency) == {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "qps"}
    with pytest.raises(InputError, match="at least 10"):
        evaluate_index(cluster.index("idx"), queries, qrels, encoder, k=5)


# --- against sentence-transformers, on a real node ---------------------------------------------


@pytest.fixture(scope="module")
def subset(sample_dir, tmp_path_factory):
    """A BEIR folder with the first 300 Cranfield documents, qrels restricted to them.

    Queries with no relevant document left are dropped by the evaluators themselves.
    """
    folder = tmp_path_factory.mktemp("cranfield-subset")
    (folder / "qrels").mkdir()
    lines = (sample_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:SUBSET_DOCS]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    kept = {json.loads(line)["_id"] for line in lines}
    (folder / "queries.jsonl").write_bytes((sample_dir / "queries.jsonl").read_bytes())
    rows = (sample_dir / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    rows = rows[:1] + [r for r in rows[1:] if r.split("\t")[1] in kept]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def st_reference(subset, default_model):
    """sentence-transformers' own SparseInformationRetrievalEvaluator on the subset."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.evaluation import SparseInformationRetrievalEvaluator

    queries, qrels, corpus_path = load_beir(subset)
    corpus = {}
    for line in corpus_path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        corpus[record["_id"]] = f"{record['title']} {record['text']}" if record["title"] else record["text"]
    relevant = {q: {d for d, g in docs.items() if g > 0} for q, docs in qrels.items()}
    model = SparseEncoder(str(default_model.root), device="cpu")
    evaluator = SparseInformationRetrievalEvaluator(queries, corpus, relevant, write_csv=False, batch_size=64)
    results = evaluator(model)
    return {"ndcg@10": results[evaluator.primary_metric], "all": results, "queries": len(evaluator.queries_ids)}


@pytest.fixture(scope="module")
def subset_index(cluster, default_model, subset, tmp_path_factory):
    options = IngestOptions(dead_letter=tmp_path_factory.mktemp("dead") / "subset.rejected.jsonl")
    stats = ingest(cluster, subset / "corpus.jsonl", INDEX, default_model, options=options, show_progress=False)
    assert stats.indexed == SUBSET_DOCS and stats.rejected == 0
    yield cluster.index(INDEX)
    cluster.request("DELETE", f"/{INDEX}")


@pytest.mark.slow
def test_index_and_exact_reproduce_sentence_transformers(default_model, subset, subset_index, st_reference):
    queries, qrels, corpus_path = load_beir(subset)
    encoder = default_model.query_encoder
    result = evaluate_index(subset_index, queries, qrels, encoder, k=100)
    vectors = exact_doc_vectors(corpus_path, default_model, device="cpu")
    exact = evaluate_exact(vectors, queries, qrels, encoder, k=100)
    st = st_reference["all"]
    print(f"\nNDCG@10 over {result.queries} queries: index {result.metrics['ndcg@10']:.4f}, "
          f"exact {exact['ndcg@10']:.4f}, sentence-transformers {st_reference['ndcg@10']:.4f}; "
          f"graded {result.metrics['ndcg@10_graded']:.4f}; latency {result.latency}")

    assert result.queries == st_reference["queries"] > 50
    assert all(len(hits) <= 100 for hits in result.run.values())
    assert result.metrics["ndcg@10"] == pytest.approx(st_reference["ndcg@10"], abs=0.01)
    assert exact["ndcg@10"] == pytest.approx(st_reference["ndcg@10"], abs=0.001)
    # Every model-card metric of the exact reference matches, not only the headline one.
    for name in ("accuracy@1", "precision@5", "recall@10", "mrr@10", "map@100"):
        assert exact[name] == pytest.approx(st[f"dot_{name}"], abs=0.001), name
    assert result.metrics["query_active_dims"] == pytest.approx(st["query_active_dims"], rel=1e-6)
    assert exact["corpus_active_dims"] == pytest.approx(st["corpus_active_dims"], rel=1e-3)
    # Cranfield's grades run from 1 to 4, so the graded nDCG is a different number.
    assert abs(result.metrics["ndcg@10_graded"] - result.metrics["ndcg@10"]) > 1e-3
    assert result.latency["p50_ms"] > 0 and result.latency["qps"] > 0
