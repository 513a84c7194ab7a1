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
        if path.endswith("/_count"):  # no query id is a document id: self-hits are not looked for
            return {"count": 0}
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
    # sentence-transformers' evaluator counts every hit (Cranfield's numeric query ids are also
    # document ids, which BEIR's self-hit rule would act on).
    result = evaluate_index(subset_index, queries, qrels, encoder, k=100, keep_self_hits=True)
    vectors = exact_doc_vectors(corpus_path, default_model, device="cpu")
    exact = evaluate_exact(vectors, queries, qrels, encoder, k=100, keep_self_hits=True)
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


# --- BEIR's rule on self-hits ------------------------------------------------------------------


def test_self_hits_rule_drops_only_the_query_itself_and_keeps_k():
    from splade_os.evaluate.run import self_hits

    rule = self_hits(["q1", "d7"], {"d7", "d8"})
    assert rule.drop and rule.queries_in_corpus == 1 and rule.fetch(10) == 11
    run = {"d7": {"d7": 9.0, "d8": 5.0, "d9": 5.0, "d1": 1.0}, "q1": {"d7": 3.0}}
    # The query's own hit goes; k=2 keeps the best two of the rest (ties by id, as evaluated).
    assert rule.apply(run, 2) == {"d7": {"d8": 5.0, "d9": 5.0}, "q1": {"d7": 3.0}}
    # A document judged relevant to the query is not a self-hit (numeric ids of different texts).
    assert rule.apply(run, 2, {"d7": {"d7": 1}}) == {"d7": {"d7": 9.0, "d8": 5.0}, "q1": {"d7": 3.0}}
    assert rule.apply(run, 2, {"d7": {"d7": 0}})["d7"] == {"d8": 5.0, "d9": 5.0}
    assert "dropped" in rule.describe() and "1 of 2" in rule.describe()
    kept = self_hits(["d7"], {"d7"}, keep=True)
    assert not kept.drop and kept.apply(run, 10) == run and kept.fetch(10) == 10
    none = self_hits(["q1"], {"d7"})
    assert not none.drop and "counted (0 of 1" in none.describe()


def self_hit_collection(subset):
    """Queries that are documents of the subset (as in argument retrieval): for each Cranfield
    query with two or more relevant documents in the subset, its first relevant document is the
    query (id and title), the others are its judgments, with their grades."""
    queries, qrels, corpus_path = load_beir(subset)
    titles = {}
    for line in corpus_path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        titles[record["_id"]] = record["title"] or record["text"][:200]
    doc_queries, doc_qrels = {}, {}
    for qid in sorted(qrels, key=int):
        relevant = [d for d, g in qrels[qid].items() if g > 0 and d in titles]
        if len(relevant) >= 2 and relevant[0] not in doc_queries:
            doc_queries[relevant[0]] = titles[relevant[0]]
            doc_qrels[relevant[0]] = {d: qrels[qid][d] for d in relevant[1:]}
    return doc_queries, doc_qrels


@pytest.mark.slow
def test_eval_drops_self_hits_as_beir_and_pytrec_eval_do(default_model, subset, subset_index):
    import pytrec_eval

    queries, qrels = self_hit_collection(subset)
    assert len(queries) >= 20
    encoder = default_model.query_encoder
    dropped = evaluate_index(subset_index, queries, qrels, encoder, k=100)
    kept = evaluate_index(subset_index, queries, qrels, encoder, k=100, keep_self_hits=True)
    assert dropped.settings["self_hits"]["drop"] and dropped.settings["self_hits"]["queries_in_corpus"] == len(queries)
    assert not kept.settings["self_hits"]["drop"]
    # The query's own document is the first hit of most queries (its title is the query)...
    assert sum(next(iter(sorted(hits, key=lambda d: -hits[d])), None) == qid for qid, hits in kept.run.items()) > 0.8 * len(queries)
    # ...and never a hit once dropped, every other hit kept with its score, one more fetched in its place.
    for qid, hits in dropped.run.items():
        others = {d: s for d, s in kept.run[qid].items() if d != qid}
        assert qid not in hits and others.items() <= hits.items()
        assert len(hits) == 100 or len(hits) == len(others)

    # BEIR's evaluation, as its EvaluateRetrieval.evaluate(ignore_identical_ids=True) does it:
    # the self-hit popped from the results, then pytrec_eval's ndcg_cut_10 averaged over queries.
    results = {qid: {d: s for d, s in hits.items() if d != qid} for qid, hits in kept.run.items()}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10"})
    scores = evaluator.evaluate(results)
    beir_ndcg = sum(s["ndcg_cut_10"] for s in scores.values()) / len(scores)
    beir_recall = sum(s["recall_10"] for s in scores.values()) / len(scores)
    assert len(scores) == len(queries)
    assert dropped.metrics["ndcg@10_graded"] == pytest.approx(beir_ndcg, abs=1e-4)
    # recall@10 is binary in both (every judged grade here is > 0).
    assert dropped.metrics["recall@10"] == pytest.approx(beir_recall, abs=1e-4)
    # Counting the self-hit costs the score BEIR's rule gives back.
    assert dropped.metrics["ndcg@10_graded"] - kept.metrics["ndcg@10_graded"] > 0.05


# --- BM25, SPLADE and hybrid side by side ------------------------------------------------------


def test_paired_differences_count_wins_and_test_significance():
    from splade_os.evaluate.compare import difference

    a = {str(i): 0.5 + 0.01 * (i % 3) for i in range(40)}
    b = {str(i): 0.5 for i in range(40)}
    d = difference("a", a, "b", b)
    assert (d.wins, d.ties, d.losses) == (26, 14, 0) and d.mean == pytest.approx(0.01 * 39 / 40)  # 13 queries +0.01, 13 +0.02
    assert d.p_value < 0.01  # a consistent gain
    noise = difference("a", {str(i): float(i % 2) for i in range(40)}, "b", {str(i): float((i + 1) % 2) for i in range(40)})
    assert noise.mean == 0 and noise.p_value > 0.5  # as many wins as losses
    assert difference("a", b, "b", b).p_value == 1.0


@pytest.mark.slow
def test_compare_reports_bm25_splade_and_hybrid_alike(default_model, subset, subset_index):
    from splade_os.evaluate.compare import compare_index

    queries, qrels, _ = load_beir(subset)
    comparison = compare_index(subset_index, queries, qrels, default_model.query_encoder, k=100)
    results = comparison.results
    assert list(results) == ["bm25", "splade", "hybrid"]
    assert {r.settings["query"] for r in results.values()} == {"bm25", "splade", "hybrid"}
    assert results["splade"].metrics == evaluate_index(subset_index, queries, qrels, default_model.query_encoder,
                                                       k=100).metrics
    for d in comparison.differences:
        a, b = results[d.a].metrics["ndcg@10_graded"], results[d.b].metrics["ndcg@10_graded"]
        assert d.mean == pytest.approx(a - b, abs=1e-9)  # the per-query values average to the metric
        assert d.wins + d.ties + d.losses == results[d.a].queries and 0 < d.p_value <= 1
    assert results["hybrid"].settings["hybrid"] == vars(subset_index.fusion())
    record = comparison.as_dict()
    assert set(record["systems"]) == {"bm25", "splade", "hybrid"} and len(record["differences"]) == 3


# --- the fusion measured on the index ----------------------------------------------------------


@pytest.mark.slow
def test_fusion_is_measured_at_ingest_lowered_for_a_weak_splade_and_used_by_hybrid(
        cluster, default_model, sample_dir, subset_index, tmp_path):
    from samples import ingest_first
    from splade_os.cluster.index import IndexSettings
    from splade_os.documents.vectors import VectorOptions
    from splade_os.query.hybrid import Hybrid, fuse, hit_lists

    # Ingest measured and recorded it; measuring again (same seed, same documents) agrees.
    recorded = subset_index.meta["fusion"]
    again = subset_index.calibrate_fusion(record=False)
    assert again.queries > 200 and recorded["calibration"]["queries"] == again.queries
    assert recorded["weight"] == again.hybrid.weight == 0.5 and again.ratio >= 0.7
    assert subset_index.fusion() == Hybrid("rrf", 0.5, 50, 10)

    # The same documents cut to their 2 heaviest features: SPLADE finds much less, and gets less say.
    weak = ingest_first(cluster, default_model, sample_dir, tmp_path, "eval-weak", SUBSET_DOCS,
                        IndexSettings(vectors=VectorOptions(prune_top_k=2)))
    try:
        calibration = weak.fusion()
        measured = weak.meta["fusion"]["calibration"]["mrr"]
        assert measured["splade"] < 0.7 * measured["bm25"] and calibration.weight < 0.5
        # A hybrid search fuses with the recorded weight unless told otherwise.
        text = "what is the boundary layer on a flat plate"
        lists = hit_lists(weak.request_msearch(weak.hybrid_bodies(text, k=10)), weak.name, 2)
        expected = fuse(*lists, calibration, 10)
        hits = weak.search(text, k=10, hybrid=Hybrid())
        assert [h.id for h in hits] == [h["_id"] for h, _ in expected]
        assert [h.score for h in hits] == pytest.approx([s for _, s in expected])
        equal = [h.id for h in weak.search(text, k=10, hybrid=Hybrid(weight=0.5))]
        assert equal == [h["_id"] for h, _ in fuse(*lists, Hybrid(weight=0.5), 10)]
    finally:
        cluster.request("DELETE", f"/{weak.name}")
