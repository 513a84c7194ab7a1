"""splade-os: inference-free SPLADE retrieval on OpenSearch and Elasticsearch.

The query side needs no neural network and no torch:

    >>> import splade_os
    >>> cluster = splade_os.connect("http://localhost:9200")
    >>> index = cluster.index("docs")
    >>> hits = index.search("what is lift?", k=5)
    >>> body = index.body("what is lift?")          # the search body an app can send itself

Ingesting encodes documents with the model's document route (needs `splade-os[encode]`):

    >>> stats = splade_os.ingest(cluster, "corpus.jsonl", "docs")
    >>> stats = splade_os.enrich(cluster, "products", options=splade_os.EnrichOptions(text_field="body"))

`DocumentEncoder` (and `ingest`) import torch when first used; everything else here does not.
The packages, bottom to top (each imports only those before it; docs/design.md): `common`,
`corpus`, `formats`, `query`, `node`, `documents`, `bulk`, `models`, `ingest`, `evaluate`,
`cluster`, `training`, `cli`.
"""

import importlib
import importlib.abc
import importlib.util
import sys

from splade_os.cluster.client import Cluster, connect
from splade_os.cluster.index import SpladeIndex
from splade_os.common.errors import (ClusterError, IndexStateError, IngestInterrupted, InputError, MissingExtraError,
                                     ModelError, ModelMismatchError, NodeError, RegistryError, SpladeOSError)
from splade_os.documents.settings import IndexSettings
from splade_os.documents.vectors import VectorOptions
from splade_os.ingest.enrich import EnrichOptions, EnrichStats, enrich
from splade_os.ingest.single import IngestOptions, IngestStats, ingest
from splade_os.models.export import export_model
from splade_os.models.resolve import Model, resolve_model
from splade_os.query.bodies import Pruning, TwoPhase, query_body
from splade_os.query.encoder import QueryEncoder
from splade_os.query.hits import Hit, Hits
from splade_os.query.hybrid import Hybrid
from splade_os.query.keys import escape_key, unescape_key
from splade_os.query.options import SearchOptions

__version__ = "0.2.0"

# Modules that moved into the task packages: their old paths still import, as the same module.
MOVED = {
    "splade_os.beir": "splade_os.corpus.beir",
    "splade_os.cache": "splade_os.common.cache",
    "splade_os.callbacks": "splade_os.training.callbacks",
    "splade_os.checkpoint": "splade_os.ingest.checkpoint",
    "splade_os.corpus_idf": "splade_os.models.corpus_idf",
    "splade_os.demo": "splade_os.cli.demo",
    "splade_os.encoder": "splade_os.documents.encoder",
    "splade_os.engine": "splade_os.query.engine",
    "splade_os.errors": "splade_os.common.errors",
    "splade_os.extras": "splade_os.common.extras",
    "splade_os.files": "splade_os.common.files",
    "splade_os.filters": "splade_os.query.filters",
    "splade_os.hybrid": "splade_os.query.hybrid",
    "splade_os.identity": "splade_os.formats.identity",
    "splade_os.index": "splade_os.cluster.index",
    "splade_os.keys": "splade_os.query.keys",
    "splade_os.layout": "splade_os.formats.layout",
    "splade_os.model": "splade_os.models.resolve",
    "splade_os.model_builder": "splade_os.models.builder",
    "splade_os.negatives": "splade_os.training.negatives",
    "splade_os.pairs": "splade_os.training.pairs",
    "splade_os.pooling": "splade_os.documents.pooling",
    "splade_os.progress": "splade_os.common.progress",
    "splade_os.projection": "splade_os.documents.projection",
    "splade_os.query_tokenizer": "splade_os.query.tokenizer",
    "splade_os.ray_ingest": "splade_os.ingest.ray",
    "splade_os.registry": "splade_os.models.registry",
    "splade_os.reindex": "splade_os.cluster.reindex",
    "splade_os.search": "splade_os.query.hits",
    "splade_os.sender": "splade_os.bulk.sender",
    "splade_os.teacher": "splade_os.training.teacher",
    "splade_os.train": "splade_os.training.trainer",
    "splade_os.vectors": "splade_os.documents.vectors",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path (`splade_os.vectors`) as the module it became
    (`splade_os.documents.vectors`): one module object under both names."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        self._spec = module.__spec__  # the import system overwrites it; exec_module puts it back
        return module

    def exec_module(self, module):
        module.__spec__ = self._spec


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name):
    # The document encoder imports torch: load it only when asked for.
    if name == "DocumentEncoder":
        from splade_os.documents.encoder import DocumentEncoder

        return DocumentEncoder
    raise AttributeError(f"module 'splade_os' has no attribute {name!r}")


__all__ = [
    "connect", "Cluster", "SpladeIndex", "IndexSettings", "Model", "resolve_model", "QueryEncoder", "query_body",
    "Hit", "Hits", "Hybrid", "SearchOptions", "Pruning", "TwoPhase", "VectorOptions", "ingest", "DocumentEncoder",
    "IngestOptions", "IngestStats", "enrich", "EnrichOptions", "EnrichStats", "export_model", "escape_key",
    "unescape_key",
    "SpladeOSError", "InputError", "MissingExtraError", "ModelError", "RegistryError", "ClusterError",
    "IndexStateError", "ModelMismatchError", "IngestInterrupted", "NodeError",
]
