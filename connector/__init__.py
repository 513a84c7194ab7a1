"""splade-os: inference-free SPLADE retrieval on OpenSearch.

The query side needs no neural network and no torch:

    >>> from connector import QueryEncoder
    >>> body = QueryEncoder.load("path/to/model").to_dsl("what is lift?", size=10)

The document side (`connector.encoder.DocumentEncoder`) and ingest (`connector.ingest.ingest`)
import torch when used.
"""

from .errors import (ClusterError, IndexStateError, InputError, ModelError, ModelMismatchError, NodeError,
                     RegistryError, SpladeOSError)
from .keys import escape_key, unescape_key
from .query import QueryEncoder, query_body

__version__ = "0.1.0"

__all__ = [
    "QueryEncoder", "query_body", "escape_key", "unescape_key", "SpladeOSError", "ModelError",
    "ClusterError", "IndexStateError", "ModelMismatchError", "InputError", "NodeError", "RegistryError",
]
