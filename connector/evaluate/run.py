"""Evaluating a splade-os index against a BEIR collection.

The retrieval metrics are the ones sentence-transformers' `SparseInformationRetrievalEvaluator`
puts on model cards (accuracy, precision and recall at 1/3/5/10, MRR@10, NDCG@10, MAP@100),
computed by sentence-transformers' own `compute_metrics` fed with the hits the cluster returned,
so an index can be compared with a model card number for number. Those metrics treat relevance
as binary (a qrels grade > 0 is relevant); `ndcg@10_graded` adds the graded nDCG@10 of the
BEIR/TREC convention, computed by `ir_measures` (pytrec_eval).

`evaluate_exact` computes the same metrics from an in-memory exact sparse dot product, which
separates what the index changes (values stored on 9 bits, clause cap) from what the model does.

BEIR's rule on self-hits: where queries are themselves documents of the corpus (argument or
duplicate-question retrieval), a hit whose id is the query's id is dropped before any metric, as
BEIR's `EvaluateRetrieval.evaluate(ignore_identical_ids=True)` and Anserini's `-removeQuery` do.
It applies when some query id is a document id (`SelfHits`), to every run alike (index, exact,
BM25, hybrid); one more hit is fetched per query so that k remain. One deviation, on purpose: a
document the qrels judge relevant to the query is kept (numeric ids of two different texts).

Nothing here prints: results are returned, progress bars appear only with `show_progress`.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from splade_os.corpus.beir import relevant as relevant_sets
from splade_os.common.extras import require
from splade_os.common.errors import InputError
from splade_os.query.encoder import QueryEncoder
from splade_os.query.hybrid import fuse, hit_lists
from splade_os.query.options import SearchOptions, search_options

# sentence-transformers' default cut-offs, which are the model-card metric set.
ACCURACY_AT_K = [1, 3, 5, 10]
PRECISION_RECALL_AT_K = [1, 3, 5, 10]
MRR_AT_K = [10]
NDCG_AT_K = [10]
MAP_AT_K = [100]
GRADED_NDCG = "ndcg@10_graded"


@dataclass(frozen=True)
class SelfHits:
    """Whether hits whose id equals the query's id are dropped (BEIR's rule), and why.

    Attributes:
        drop: drop them before computing metrics.
        queries_in_corpus: how many evaluated query ids are document ids (None: not looked up).
        queries: how many query ids were looked up.
    """

    drop: bool
    queries_in_corpus: Optional[int] = None
    queries: int = 0

    def describe(self) -> str:
        """One line for the output: what was done and how to do the other."""
        found = (f"{self.queries_in_corpus} of {self.queries} query ids are document ids"
                 if self.queries_in_corpus is not None else "kept on request")
        if self.drop:
            return f"self-hits dropped ({found}; BEIR's rule; --keep-self-hits counts them)"
        return f"self-hits counted ({found})"

    def apply(self, run: Dict[str, Dict[str, float]], k: Optional[int] = None,
              qrels: Optional[Dict[str, Dict[str, int]]] = None) -> Dict[str, Dict[str, float]]:
        """`run` without self-hits (when dropping), each query's hits cut to the best `k`.

        A document the qrels judge relevant to the query (grade > 0) is never a self-hit: where ids
        are plain numbers (Cranfield, Medline: queries 1..n, documents 1..m), query 5 and document 5
        are different texts, and the judgment says the pair is relevant. (BEIR would drop it too.)
        """
        out = {}
        for qid, hits in run.items():
            judged = (qrels or {}).get(qid, {})
            kept = {d: s for d, s in hits.items() if not (self.drop and d == qid and judged.get(d, 0) <= 0)}
            if k is not None and len(kept) > k:
                kept = dict(_ranked(kept)[:k])
            out[qid] = kept
        return out

    def fetch(self, k: int) -> int:
        """Hits to fetch per query for `k` to remain after dropping."""
        return k + 1 if self.drop else k


def self_hits(query_ids: Iterable[str], corpus_ids, keep: bool = False) -> SelfHits:
    """BEIR's rule for these queries: drop self-hits when some query id is a document id.

    `corpus_ids` answers `in` (a set, a dict of vectors) or is a `SpladeIndex` (asked with an
    `ids` query); `keep` counts self-hits whatever the ids are.
    """
    query_ids = list(query_ids)
    if keep:
        return SelfHits(False, None, len(query_ids))
    if hasattr(corpus_ids, "documents_with_ids"):
        found = corpus_ids.documents_with_ids(query_ids)
    else:
        found = sum(1 for qid in query_ids if qid in corpus_ids)
    return SelfHits(found > 0, found, len(query_ids))


@dataclass
class EvalResult:
    """What `evaluate_index` measured.

    Attributes:
        metrics: metric name -> value: `accuracy@1` ... `map@100` (sentence-transformers' names
            without the score-function prefix), `ndcg@10_graded`, `query_active_dims`.
        exact_metrics: the same metrics from `evaluate_exact`, when the caller computed them.
        latency: `p50_ms`, `p90_ms`, `p99_ms`, `mean_ms` (client-side time of each search
            request) and `qps` (queries per second, one request at a time).
        queries: number of queries evaluated (those with at least one relevant document).
        run: query id -> {document id: score}, the hits OpenSearch returned.
        settings: what was evaluated and how (index, k, field, model, library versions...).
    """

    metrics: Dict[str, float]
    exact_metrics: Optional[Dict[str, float]]
    latency: Dict[str, float]
    queries: int
    run: Dict[str, Dict[str, float]]
    settings: Dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Metrics


def evaluated_queries(queries: Dict[str, str], qrels: Dict[str, Dict[str, int]]) -> List[str]:
    """The query ids that are evaluated, in `queries` order: those with a relevant document.

    This is sentence-transformers' rule: a query without a relevant document has no defined
    recall or nDCG, so it is left out of every mean.
    """
    relevant = relevant_sets(qrels)
    return [qid for qid in queries if relevant.get(qid)]


def _ranked(hits: Dict[str, float]) -> List[Tuple[str, float]]:
    # sentence-transformers' order: score descending, ties by ascending document id.
    return sorted(hits.items(), key=lambda item: (-item[1], item[0]))


def retrieval_metrics(
    queries: Dict[str, str], qrels: Dict[str, Dict[str, int]], run: Dict[str, Dict[str, float]]
) -> Dict[str, float]:
    """The model-card metrics of a run, plus `ndcg@10_graded`.

    Args:
        queries: query id -> text (the ids and their order select what is evaluated).
        qrels: query id -> {document id: grade}.
        run: query id -> {document id: score}; a query missing from it counts as no hit.

    Returns:
        `accuracy@{1,3,5,10}`, `precision@{1,3,5,10}`, `recall@{1,3,5,10}`, `ndcg@10`, `mrr@10`,
        `map@100` from sentence-transformers' `compute_metrics` (binary relevance: grade > 0),
        and `ndcg@10_graded` from ir_measures with the grades as gains.
    """
    require("encode", "computing the model card's metrics")
    import ir_measures
    from ir_measures import nDCG
    from sentence_transformers.sparse_encoder.evaluation import SparseInformationRetrievalEvaluator

    query_ids = evaluated_queries(queries, qrels)
    if not query_ids:
        raise InputError("no query has a relevant document in the qrels (grade > 0): nothing to evaluate")
    relevant = relevant_sets(qrels)
    # The evaluator only needs the ids and judgments to compute metrics from given hits; the
    # corpus texts are used by its encoding step, which is not run here.
    evaluator = SparseInformationRetrievalEvaluator(
        queries={qid: queries[qid] for qid in query_ids},
        corpus={},
        relevant_docs={qid: relevant[qid] for qid in query_ids},
        accuracy_at_k=ACCURACY_AT_K,
        precision_recall_at_k=PRECISION_RECALL_AT_K,
        mrr_at_k=MRR_AT_K,
        ndcg_at_k=NDCG_AT_K,
        map_at_k=MAP_AT_K,
        write_csv=False,
    )
    # compute_metrics pairs its i-th result list with its i-th query id.
    assert evaluator.queries_ids == query_ids
    results = [
        [{"corpus_id": docid, "score": score} for docid, score in run.get(qid, {}).items()]
        for qid in evaluator.queries_ids
    ]
    scores = evaluator.compute_metrics(results)
    metrics = {
        name.replace("@k", f"@{k}"): float(value)
        for name, values in scores.items()
        for k, value in values.items()
    }

    graded = ir_measures.calc_aggregate([nDCG @ 10], *_trec_inputs(qrels, run, query_ids))
    metrics[GRADED_NDCG] = float(graded[nDCG @ 10])
    return metrics


def _trec_inputs(qrels, run, query_ids) -> Tuple[dict, dict]:
    """(qrels, run) for ir_measures/pytrec_eval over exactly `query_ids`."""
    # pytrec_eval breaks score ties by document id descending, sentence-transformers ascending;
    # scoring each hit by its rank in sentence-transformers' order keeps both on one ranking.
    ranked_run = {}
    for qid in query_ids:
        ranked = _ranked(run.get(qid, {}))
        ranked_run[qid] = {docid: float(len(ranked) - rank) for rank, (docid, _) in enumerate(ranked)}
    # Qrels restricted to the evaluated queries: pytrec_eval then averages over exactly those
    # (a query with no hit counts as 0, as in sentence-transformers).
    graded_qrels = {qid: {docid: int(g) for docid, g in qrels[qid].items()} for qid in query_ids}
    return graded_qrels, ranked_run


def per_query_ndcg(queries: Dict[str, str], qrels: Dict[str, Dict[str, int]],
                   run: Dict[str, Dict[str, float]]) -> Dict[str, float]:
    """{query id: graded nDCG@10} of a run over the evaluated queries (0 for a query with no hit),
    the per-query values whose mean is `ndcg@10_graded`."""
    import ir_measures
    from ir_measures import nDCG

    query_ids = evaluated_queries(queries, qrels)
    values = dict.fromkeys(query_ids, 0.0)
    for metric in ir_measures.iter_calc([nDCG @ 10], *_trec_inputs(qrels, run, query_ids)):
        values[metric.query_id] = float(metric.value)
    return values


def _latency(seconds: List[float]) -> Dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    total = float(np.sum(seconds))
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "qps": len(seconds) / total if total > 0 else 0.0,
    }


def _versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("sentence-transformers", "ir_measures", "pytrec_eval-terrier", "opensearch-py"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


# ---------------------------------------------------------------------------------------------
# Evaluating an index


def evaluate_index(
    index,
    queries: Dict[str, str],
    qrels: Dict[str, Dict[str, int]],
    encoder: QueryEncoder,
    options: Optional[SearchOptions] = None,
    show_progress: bool = False,
    body: Optional[Callable[[str, int], dict]] = None,
    keep_self_hits: bool = False,
    **given,
) -> EvalResult:
    """Run every judged query against the index and compute the model-card metrics.

    Queries run one at a time, each timed on the client from sending the request to having
    the parsed response (building the query body is not timed). One untimed request is sent
    first so that opening the connection is not counted.

    Args:
        index: the `splade_os.cluster.index.SpladeIndex` (or alias) to evaluate.
        queries: query id -> text (see `splade_os.corpus.beir.load_beir` / `load_queries`).
        qrels: query id -> {document id: grade}.
        encoder: the index's `QueryEncoder` (see `SpladeIndex.query_encoder`).
        options: how each query is searched (`splade_os.query.SearchOptions`; default 100
            hits): `k` hits retrieved per query (MAP@100 needs k >= 100 to match
            sentence-transformers, which ranks 100 documents; smaller k only truncates that one
            metric), pruning, two-phase search, a filter, or `hybrid` (BM25 + SPLADE fused, one
            `_msearch` per query, timed whole).
        show_progress: draw a progress bar on stderr.
        body: build another search body from (text, k) instead of the SPLADE query, e.g.
            `splade_os.query.bm25_body` for the BM25 baseline on the same index.
        keep_self_hits: count a hit whose id is the query's id; by default it is dropped when
            some query id is a document id of the index (BEIR's rule, `SelfHits`).
        given: search options by name over `options` (`k=20`, `hybrid=Hybrid()`).

    Returns:
        EvalResult, with `exact_metrics` None (see `evaluate_exact`).

    Raises:
        InputError: k < 10 (the @10 metrics would be wrong), or no query has a relevant document.
        ClusterError: a search request failed.
    """
    from splade_os.common.progress import bar

    options = search_options(options or SearchOptions(k=100), **given)
    query_ids = _judged(queries, qrels, options.k)
    rule = self_hits(query_ids, index, keep_self_hits)
    search = _searcher(index, queries, query_ids, encoder, options.but(k=rule.fetch(options.k)), body)
    search(query_ids[0])  # warm-up, not timed
    run: Dict[str, Dict[str, float]] = {}
    seconds: List[float] = []
    with bar(show_progress, total=len(query_ids), unit="query", desc=f"evaluate {index.name}") as progress:
        for qid in query_ids:
            started = time.perf_counter()
            run[qid] = search(qid)
            seconds.append(time.perf_counter() - started)
            progress.update(1)

    run = rule.apply(run, options.k, qrels)
    metrics = retrieval_metrics(queries, qrels, run)
    metrics["query_active_dims"] = _query_active_dims(encoder, queries, query_ids)
    hybrid = options.hybrid
    settings = {
        "index": index.name,
        "url": index.cluster.url,
        "engine": index.cluster.engine.name,
        "k": options.k,
        "field": index.field,
        "max_clauses": index.cluster.max_clause_count,
        "pruning": vars(options.pruning) if options.pruning is not None else None,
        "two_phase": asdict(options.two_phase) if options.two_phase else None,
        "filter": options.filter,
        "query": "hybrid" if hybrid is not None else "splade" if body is None else getattr(body, "__name__", "custom"),
        "model": encoder.name,
        "model_hash": encoder.hash,
        "queries_given": len(queries),
        "queries_without_relevant": len(queries) - len(query_ids),
        "self_hits": asdict(rule) | {"rule": rule.describe()},
        "relevance": "binary (grade > 0) for sentence-transformers' metrics; grades as gains for "
        + GRADED_NDCG,
        "versions": _versions(),
    }
    if hybrid is not None:
        settings["hybrid"] = asdict(index.fusion(hybrid))
    return EvalResult(metrics, None, _latency(seconds), len(query_ids), run, settings)


def _searcher(index, queries: Dict[str, str], query_ids: List[str], encoder: QueryEncoder, options: SearchOptions,
              body: Optional[Callable[[str, int], dict]]) -> Callable[[str], Dict[str, float]]:
    """query id -> {document id: score} from the cluster; bodies are built before any is timed."""
    # Only ids and scores are needed.
    options = options.but(source=False)
    if options.hybrid is None:
        if body is not None:
            bodies = {qid: {**body(queries[qid], options.k), "_source": False} for qid in query_ids}
        else:
            bodies = {qid: index.body(queries[qid], encoder=encoder, options=options) for qid in query_ids}

        def search(qid: str) -> Dict[str, float]:
            response = index.request_search(bodies[qid])
            return {hit["_id"]: float(hit["_score"]) for hit in response["hits"]["hits"]}

        return search
    fusion = index.fusion(options.hybrid)
    many = {qid: index.hybrid_bodies(queries[qid], encoder=encoder, options=options) for qid in query_ids}

    def search_hybrid(qid: str) -> Dict[str, float]:
        bm25, splade = hit_lists(index.request_msearch(many[qid]), index.name)
        return {hit["_id"]: score for hit, score in fuse(bm25, splade, fusion, options.k)}

    return search_hybrid


def _judged(queries: Dict[str, str], qrels: Dict[str, Dict[str, int]], k: int) -> List[str]:
    """The evaluated query ids; checks k and that something can be evaluated."""
    if k < 10:
        raise InputError(f"k must be at least 10 for the @10 metrics, got {k}")
    query_ids = evaluated_queries(queries, qrels)
    if not query_ids:
        raise InputError("no query has a relevant document in the qrels (grade > 0): nothing to evaluate")
    return query_ids


def _query_active_dims(encoder: QueryEncoder, queries: Dict[str, str], query_ids: List[str]) -> float:
    # Non-zeros of the query vector (== encode_query), as sentence-transformers counts them.
    return float(np.mean([len(encoder.weights(queries[qid])) for qid in query_ids]))


# ---------------------------------------------------------------------------------------------
# The exact reference


def exact_doc_vectors(corpus_path, model, device: Optional[str] = None, show_progress: bool = False,
                      dtype: str = "float32", options=None, fields=None) -> Dict[str, Any]:
    """Encode a corpus in memory with the model's document route.

    Documents are read like `splade-os ingest` reads them (`splade_os.corpus.read_corpus`, BEIR
    field names unless `fields`, a `CorpusFields`, says others): rejected lines are skipped,
    title and text are joined like `Document.content`, long documents are cut and vectors pruned
    as `options` say (an index's `SpladeIndex.vector_options`), and a document left with no
    feature is left out, as ingest rejects it.

    Args:
        corpus_path: the JSONL corpus.
        model: the `splade_os.models.resolve.Model` (`splade_os.models.resolve.resolve_model`).
        device: "cuda", "cpu"...; the best available when None.
        show_progress: draw a progress bar on stderr.
        dtype: encoder precision; float32 by default, so the reference is the model's numbers
            even on a GPU (where ingest defaults to bf16).
        options: a `splade_os.documents.vectors.VectorOptions` (default: truncate, no pruning).

    Returns:
        document id -> `splade_os.documents.encoder.SparseVector`.
    """
    from splade_os.corpus.jsonl import Document, read_corpus
    from splade_os.documents.encoder import DocumentEncoder
    from splade_os.common.progress import bar

    from splade_os.documents.vectors import VectorOptions

    options = options or VectorOptions()
    encoder = DocumentEncoder(model, device=device, dtype=dtype, long_docs=options.long_docs,
                              max_windows=options.max_windows)
    window = 1024

    def windows() -> Iterable:
        pending: List[Document] = []
        for item in read_corpus(Path(corpus_path), fields):
            if not isinstance(item, Document):
                continue
            pending.append(item)
            if len(pending) >= window:
                yield pending, [d.content for d in pending]
                pending = []
        if pending:
            yield pending, [d.content for d in pending]

    vectors = {}
    with bar(show_progress, unit="doc", desc=f"encode {Path(corpus_path).name}") as progress:
        for docs, encoded in encoder.encode_stream(windows(), on_batch=progress.update):
            for doc, vector in zip(docs, encoded):
                vector = options.pruned(vector)
                if len(vector.ids):
                    vectors[doc.id] = vector
    return vectors


def exact_run(doc_vectors: Dict[str, Any], queries: Dict[str, str], query_ids: List[str],
              encoder: QueryEncoder, k: int = 100) -> Dict[str, Dict[str, float]]:
    """Top-k documents per query by exact sparse dot product (scipy), only scores > 0.

    Only positive scores are kept, as a `rank_feature` query only returns matching documents.
    Ties at the k-th score are cut by ascending document id, as sentence-transformers does.

    Args:
        doc_vectors: document id -> SparseVector.
        queries: query id -> text.
        query_ids: the queries to run.
        encoder: the model's `QueryEncoder` (all query weights are used, negative ones too).
        k: hits per query.

    Returns:
        query id -> {document id: score}.
    """
    from scipy import sparse

    doc_ids = list(doc_vectors)
    vocab = len(encoder.tokens)
    if not doc_ids:
        return {qid: {} for qid in query_ids}
    lengths = np.fromiter((len(doc_vectors[d].ids) for d in doc_ids), dtype=np.int64, count=len(doc_ids))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([np.asarray(doc_vectors[d].ids, dtype=np.int64) for d in doc_ids])
    values = np.concatenate([np.asarray(doc_vectors[d].values, dtype=np.float32) for d in doc_ids])
    # [vocabulary, documents], so that queries @ it gives [queries, documents].
    docs_t = sparse.csr_matrix((values, indices, indptr), shape=(len(doc_ids), vocab)).T.tocsr()

    run: Dict[str, Dict[str, float]] = {}
    # Dense score rows of about 256 MB at most per step, whatever the corpus size.
    step = max(1, (1 << 26) // len(doc_ids))
    for start in range(0, len(query_ids), step):
        chunk = query_ids[start : start + step]
        rows, cols, weights = [], [], []
        for row, qid in enumerate(chunk):
            for token_id, weight in encoder.weights(queries[qid]).items():
                rows.append(row)
                cols.append(token_id)
                weights.append(weight)
        q = sparse.csr_matrix((np.asarray(weights, dtype=np.float32), (rows, cols)), shape=(len(chunk), vocab))
        scores = (q @ docs_t).toarray()
        for row, qid in enumerate(chunk):
            run[qid] = _top_k(scores[row], doc_ids, k)
    return run


def _top_k(scores: np.ndarray, doc_ids: List[str], k: int) -> Dict[str, float]:
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > k:
        kth = np.partition(scores[candidates], -k)[-k]
        # Every document tied with the k-th score stays a candidate; the sort below decides.
        candidates = candidates[scores[candidates] >= kth]
    best = sorted(candidates.tolist(), key=lambda i: (-scores[i], doc_ids[i]))[:k]
    return {doc_ids[i]: float(scores[i]) for i in best}


def evaluate_exact(
    doc_vectors: Dict[str, Any],
    queries: Dict[str, str],
    qrels: Dict[str, Dict[str, int]],
    encoder: QueryEncoder,
    k: int = 100,
    keep_self_hits: bool = False,
) -> Dict[str, float]:
    """The same metrics as `evaluate_index`, from an exact in-memory sparse dot product.

    Args:
        doc_vectors: document id -> SparseVector (see `exact_doc_vectors`).
        queries: query id -> text.
        qrels: query id -> {document id: grade}.
        encoder: the model's `QueryEncoder`.
        k: hits per query (100 for MAP@100 as sentence-transformers computes it).
        keep_self_hits: as for `evaluate_index` (here the corpus is `doc_vectors`).

    Returns:
        metric name -> value: those of `retrieval_metrics`, `query_active_dims` and
        `corpus_active_dims` (mean non-zeros per document vector).
    """
    query_ids = _judged(queries, qrels, k)
    rule = self_hits(query_ids, doc_vectors, keep_self_hits)
    run = rule.apply(exact_run(doc_vectors, queries, query_ids, encoder, rule.fetch(k)), k, qrels)
    metrics = retrieval_metrics(queries, qrels, run)
    metrics["query_active_dims"] = _query_active_dims(encoder, queries, query_ids)
    metrics["corpus_active_dims"] = (
        float(np.mean([len(v.ids) for v in doc_vectors.values()])) if doc_vectors else 0.0
    )
    return metrics
