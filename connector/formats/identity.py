"""What identifies a model to an index: its query hash and its document fingerprint.

- The **hash** covers the vocabulary (in id order) and the query table: everything a query
  depends on. Two models with the same hash build the same query for any text.
- The **fingerprint** covers the hash plus the document route's weights, its config, the pooling
  and the truncation length: everything a document vector depends on. An index accepts documents
  of one fingerprint only.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np

from splade_os.formats.layout import PICKLED_WEIGHTS, ModelLayout, max_length_of


@dataclass(frozen=True)
class ModelIdentity:
    """What an index records about the model that encoded its documents (its `_meta.splade_os.models.resolve`)."""

    name: str
    version: str
    source: str  # how to find the model again: "default", a folder, a hub id, "cluster:NAME@VERSION"
    hash: str  # vocabulary + query table: what queries depend on
    fingerprint: str  # hash + document route weights and pooling: what documents depend on

    def as_meta(self) -> dict:
        return {"name": self.name, "version": self.version, "source": self.source, "hash": self.hash,
                "fingerprint": self.fingerprint}


def vocabulary_hash(tokens: List[str], table: np.ndarray) -> str:
    """sha256 of the vocabulary (in id order) and the query table: the model's query identity."""
    digest = hashlib.sha256()
    digest.update("\n".join(tokens).encode("utf-8"))
    digest.update(b"\x00")
    digest.update(np.ascontiguousarray(table, dtype="<f4").tobytes())
    return digest.hexdigest()


def document_fingerprint(layout: ModelLayout, query_hash: str) -> str:
    """sha256 of the query hash, the document route's weights and config, pooling and truncation."""
    digest = hashlib.sha256(query_hash.encode("ascii"))
    weights = sorted(layout.document_dir.glob("*.safetensors")) or [layout.document_dir / PICKLED_WEIGHTS]
    for path in weights + [layout.document_dir / "config.json"]:
        if path.exists():
            digest.update(path.name.encode("utf-8"))
            digest.update(file_sha256(path).encode("ascii"))
    digest.update(f"{layout.pooling_strategy}/{layout.activation_function}/{max_length_of(layout.document_dir)}".encode())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
