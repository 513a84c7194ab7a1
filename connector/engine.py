"""Which search engine: OpenSearch or Elasticsearch, and what differs between them.

Both keep a document's SPLADE features as Lucene `FeatureField`s (9 significant bits) and score
a weighted query as a sparse dot product; they differ in the field type, the query that reads it,
and what a minimal install of each ships.

| | OpenSearch | Elasticsearch |
|---|---|---|
| field type | `rank_features` | `sparse_vector` |
| query | bool of linear `rank_feature` clauses | bool of boosted `term` clauses |
| query-side pruning | none in the core | the `sparse_vector` query's `pruning_config` (+ a rescore) |

Keys are escaped the same way on both (`splade_os.keys`), so one feature map fits either.
"""

from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class Engine:
    """A search engine splade-os works with."""

    name: str  # "opensearch" or "elasticsearch"
    label: str  # for messages
    feature_type: str  # the mapping type of the SPLADE field

    def __str__(self) -> str:
        return self.name


OPENSEARCH = Engine("opensearch", "OpenSearch", "rank_features")
ELASTICSEARCH = Engine("elasticsearch", "Elasticsearch", "sparse_vector")
ENGINES = {engine.name: engine for engine in (OPENSEARCH, ELASTICSEARCH)}


def engine_named(name) -> Engine:
    """The `Engine` for "opensearch" or "elasticsearch" (an `Engine` is returned as it is)."""
    if isinstance(name, Engine):
        return name
    try:
        return ENGINES[str(name).lower()]
    except KeyError:
        raise InputError(f"engine {name!r}: expected one of {', '.join(ENGINES)}") from None
