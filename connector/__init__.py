"""splade-os: inference-free SPLADE retrieval on OpenSearch and Elasticsearch.

The query side needs no neural network and no torch:

    >>> import splade_os
    >>> cluster = splade_os.connect("http://localhost:9200")
    >>> index = cluster.index("docs")
    >>> hits = index.search("what is lift?", k=5)
    >>> body = index.body("what is lift?")          # the search body an app can send itself

Ingesting encodes documents with the model's document route (needs `splade-os[encode]`):

    >>> stats = splade_os.ingest(cluster, "corpus.jsonl", "docs")

`DocumentEncoder` (and `ingest`) import torch when first used; everything else here does not.
"""

from .cluster import Cluster, connect
from .errors import (ClusterError, IndexStateError, IngestInterrupted, InputError, MissingExtraError, ModelError,
                     ModelMismatchError, NodeError, RegistryError, SpladeOSError)
from .hybrid import Hybrid
from .index import IndexSettings, SpladeIndex
from .ingest import IngestOptions, IngestStats, ingest
from .keys import escape_key, unescape_key
from .model import Model, resolve_model
from .query import QueryEncoder, query_body
from .search import Hit
from .vectors import VectorOptions

__version__ = "0.2.0"


def __getattr__(name):
    # The document encoder imports torch: load it only when asked for.
    if name == "DocumentEncoder":
        from .encoder import DocumentEncoder

        return DocumentEncoder
    raise AttributeError(f"module 'splade_os' has no attribute {name!r}")


__all__ = [
    "connect", "Cluster", "SpladeIndex", "IndexSettings", "Model", "resolve_model", "QueryEncoder", "query_body",
    "Hit", "Hybrid", "VectorOptions", "ingest", "DocumentEncoder", "IngestOptions", "IngestStats", "escape_key",
    "unescape_key",
    "SpladeOSError", "InputError", "MissingExtraError", "ModelError", "RegistryError", "ClusterError",
    "IndexStateError", "ModelMismatchError", "IngestInterrupted", "NodeError",
]
