"""Which search engine: OpenSearch or Elasticsearch, what differs between them, and the query
shape each one reads.

Both keep a document's SPLADE features as Lucene `FeatureField`s (9 significant bits) and score
a weighted query as a sparse dot product; they differ in the field type, the query that reads it,
and what a minimal install of each ships.

| | OpenSearch | Elasticsearch |
|---|---|---|
| field type | `rank_features` | `sparse_vector` |
| query | bool of linear `rank_feature` clauses | bool of boosted `term` clauses |
| query-side pruning | none in the core | the `sparse_vector` query's `pruning_config` (+ a rescore) |

Keys are escaped the same way on both (`splade_os.query.keys`), so one feature map fits either.
A new engine is a subclass of `Engine` with its `feature_query` (and an entry in `ENGINES`).
"""

from dataclasses import dataclass
from typing import Sequence, Tuple

from splade_os.common.errors import InputError


@dataclass(frozen=True)
class Engine:
    """A search engine splade-os works with, and the query shape it reads."""

    name: str  # "opensearch" or "elasticsearch"
    label: str  # for messages
    feature_type: str  # the mapping type of the SPLADE field
    prunes: bool = False  # whether its sparse query can prune tokens (`splade_os.query.bodies.Pruning`)

    def __str__(self) -> str:
        return self.name

    def feature_query(self, terms: Sequence[Tuple[str, float]], field: str) -> dict:
        """The clause scoring sum(weight * document feature) over `terms` (non-empty (key, weight) pairs)."""
        raise NotImplementedError


class _OpenSearch(Engine):
    def feature_query(self, terms, field):
        # A bool of linear `rank_feature` clauses on the `rank_features` field.
        return {"bool": {"should": [{"rank_feature": {"field": f"{field}.{key}", "boost": w, "linear": {}}}
                                    for key, w in terms]}}


class _Elasticsearch(Engine):
    def feature_query(self, terms, field):
        # Boosted `term` clauses on `sparse_vector` score the same exact dot product as the
        # `sparse_vector` query and measured faster (benchmarks/bench_engines.py).
        return {"bool": {"should": [{"term": {field: {"value": key, "boost": w}}} for key, w in terms]}}


OPENSEARCH = _OpenSearch("opensearch", "OpenSearch", "rank_features")
ELASTICSEARCH = _Elasticsearch("elasticsearch", "Elasticsearch", "sparse_vector", prunes=True)
ENGINES = {engine.name: engine for engine in (OPENSEARCH, ELASTICSEARCH)}


def engine_named(name) -> Engine:
    """The `Engine` for "opensearch" or "elasticsearch" (an `Engine` is returned as it is)."""
    if isinstance(name, Engine):
        return name
    try:
        return ENGINES[str(name).lower()]
    except (KeyError, AttributeError):
        raise InputError(f"engine {name!r}: expected one of {', '.join(ENGINES)}") from None
