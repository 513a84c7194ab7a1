"""Search bodies from weighted tokens: the feature query (its shape is the engine's), two-phase
search and Elasticsearch's pruning as a first pass and a rescore, filters around the query, and
the BM25 body over the same index. Every builder is told its engine: no body is built for an
engine nobody named.
"""

import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from splade_os.common.errors import InputError
from splade_os.query.engine import engine_named
from splade_os.query.filters import filter_clauses, filtered, restricted

DEFAULT_FIELD = "splade"
DEFAULT_MAX_CLAUSES = 1024  # indices.query.bool.max_clause_count's default


@dataclass(frozen=True)
class TwoPhase:
    """Two-phase search: a first pass with the query's `tokens` highest-weight tokens, then a
    `rescore` of its top `window` hits that adds the rest of the query (both engines).

    The rescore runs with `query_weight` and `rescore_query_weight` 1, so a hit inside the
    window gets first pass + rest = exactly the full query's score (the score is a sum over
    tokens); only which documents reach the window can differ from the full query. The
    defaults were chosen on a 1M-document index (docs/scale.md, benchmarks/bench_scale.py):
    top-10 agreement 0.987 with the full query, p50 1.37x and p99 1.44x faster.

    Attributes:
        tokens: query tokens (highest weights) in the first pass.
        window: hits of the first pass rescored with the full query (at least the hits asked for).
    """

    tokens: int = 12
    window: int = 200

    def __post_init__(self):
        if self.tokens < 1 or self.window < 1:
            raise InputError(f"two-phase search needs tokens >= 1 and window >= 1, not {self.tokens} and {self.window}")


class ClauseCapWarning(UserWarning):
    """A query had more non-zero tokens than the cluster allows clauses; the weakest were dropped."""


class NegativeWeightWarning(UserWarning):
    """The query table has negative weights; feature query boosts cannot be negative, so they are dropped."""


def weighted_terms(weights: Dict[int, float], keys: Sequence[str], max_clauses: int = DEFAULT_MAX_CLAUSES
                   ) -> List[Tuple[str, float]]:
    """(key, weight) pairs a feature query can carry: positive weights, highest first, at most `max_clauses`."""
    items: List[Tuple[int, float]] = [(i, w) for i, w in weights.items() if w > 0]
    if len(items) < len(weights):
        warnings.warn(
            f"{len(weights) - len(items)} query token(s) have negative weights and were dropped "
            "(feature query boosts must be positive)",
            NegativeWeightWarning,
            stacklevel=4,
        )
    items.sort(key=lambda item: (-item[1], item[0]))
    if len(items) > max_clauses:
        warnings.warn(
            f"query has {len(items)} weighted tokens but the cluster allows {max_clauses} clauses; "
            f"kept the {max_clauses} highest weights",
            ClauseCapWarning,
            stacklevel=4,
        )
        items = items[:max_clauses]
    return [(keys[i], w) for i, w in items]


def feature_query(terms: Sequence[Tuple[str, float]], field: str, engine) -> dict:
    """The query clause scoring sum(weight * document feature) over `terms` on `engine` (its
    `Engine.feature_query`). No term matches nothing (a bool with no clauses would match every
    document)."""
    if not terms:
        return {"match_none": {}}
    return engine_named(engine).feature_query(terms, field)


def sparse_vector_query(terms: Sequence[Tuple[str, float]], field: str, pruning=None,
                        only_pruned: bool = False) -> dict:
    """Elasticsearch's `sparse_vector` query over `terms`, exact unless `pruning` is given.

    From 8.19 the query prunes by default (measured: a Cranfield query's top score 29.9 instead of
    the exact 40.9), so `prune` is always spelled out.
    """
    query = {"field": field, "query_vector": dict(terms), "prune": pruning is not None}
    if pruning is not None:
        query["pruning_config"] = pruning.config(only_pruned)
    return {"sparse_vector": query}


@dataclass(frozen=True)
class Pruning:
    """Elasticsearch's query-side token pruning, with a rescore that restores the exact top scores.

    The first pass leaves out tokens that are frequent in the index (more than
    `tokens_freq_ratio_threshold` times the average token's frequency) and light in the query
    (below `tokens_weight_threshold` of the query's best weight); the rescore then adds the
    pruned tokens' share to the top `window` hits, so their scores are the full dot product.
    Elasticsearch's defaults: 5 and 0.4.
    """

    tokens_freq_ratio_threshold: float = 5.0
    tokens_weight_threshold: float = 0.4
    window: int = 100

    def config(self, only_pruned: bool = False) -> dict:
        config = {"tokens_freq_ratio_threshold": self.tokens_freq_ratio_threshold,
                  "tokens_weight_threshold": self.tokens_weight_threshold}
        if only_pruned:
            config["only_score_pruned_tokens"] = True
        return config


def pruned_query(terms: Sequence[Tuple[str, float]], field: str, size: int, pruning: Pruning, engine) -> dict:
    """The pruned first pass and a rescore that adds the pruned tokens' share to the top hits."""
    if not engine_named(engine).prunes:
        raise InputError("query pruning (pruning_config) is an Elasticsearch feature; OpenSearch has no such option")
    if not terms:
        return {"query": {"match_none": {}}}
    return {"query": sparse_vector_query(terms, field, pruning),
            "rescore": {"window_size": max(pruning.window, size),
                        "query": {"rescore_query": sparse_vector_query(terms, field, pruning, only_pruned=True),
                                  "query_weight": 1.0, "rescore_query_weight": 1.0}}}


def rescore_clause(rest: Sequence[Tuple[str, float]], window: int, field: str, engine) -> dict:
    """A `rescore` adding the `rest` of a query's terms to the first pass's score over its top `window` hits.

    Both weights are 1 and the score mode "total": a rescored hit's score is first + rest.
    """
    return {"window_size": window, "query": {"rescore_query": feature_query(rest, field, engine),
                                             "query_weight": 1.0, "rescore_query_weight": 1.0,
                                             "score_mode": "total"}}


def query_body(weights: Dict[int, float], keys: Sequence[str], engine, *, field: str = DEFAULT_FIELD,
               size: int = 10, max_clauses: int = DEFAULT_MAX_CLAUSES, source=None,
               pruning: Optional[Pruning] = None, two_phase: Optional[TwoPhase] = None,
               filters: Sequence[dict] = (), filter_share: Optional[float] = None) -> dict:
    """The search body from {token id: weight} for `engine` ("opensearch", "elasticsearch" or an
    `Engine`); see `splade_os.query.QueryEncoder.to_dsl` for the other arguments.

    `filters`: filter clauses (`splade_os.query.filters.filter_clauses`); the first pass is
    restricted to them, a rescore needs no filter (it only re-scores hits of the first pass).
    `filter_share`: the share of the index they match, when known: a broad filter is sent as the
    body's `post_filter` (`splade_os.query.filters.restricted`).
    """
    if pruning is not None and two_phase is not None:
        raise InputError("give pruning or two-phase search, not both (each is a first pass and a rescore)")
    terms = weighted_terms(weights, keys, max_clauses)
    # Exact hit counts would stop Lucene from skipping blocks by their maximum impact.
    body = {"size": size, "track_total_hits": False}
    if pruning is not None:
        body.update(pruned_query(terms, field, size, pruning, engine))
    elif two_phase is not None and len(terms) > two_phase.tokens:
        body["query"] = feature_query(terms[: two_phase.tokens], field, engine)
        body["rescore"] = rescore_clause(terms[two_phase.tokens:], max(two_phase.window, size), field, engine)
    else:
        body["query"] = feature_query(terms, field, engine)
    body = restricted(body, list(filters), filter_share)
    if source is not None:
        body["_source"] = source
    return body


def bm25_body(text: str, size: int = 10, fields: Sequence[str] = ("title", "text"), source=None,
              filter=None) -> dict:
    """The BM25 baseline on the same index: a `multi_match` over the text fields (both engines),
    restricted by `filter` (see `QueryEncoder.to_dsl`) without changing its scores."""
    query = filtered({"multi_match": {"query": text, "fields": list(fields)}}, filter_clauses(filter))
    body = {"size": size, "query": query, "track_total_hits": False}
    if source is not None:
        body["_source"] = source
    return body
