"""Searching a splade-os index with the inference-free query side."""

from dataclasses import dataclass
from typing import List, Optional

from .client import cluster_error
from .index import check_identity, max_clause_count, read_meta
from .model import ModelLayout, resolve_model
from .query import QueryEncoder
from .registry import query_side


@dataclass
class Hit:
    """One search result."""

    id: str
    score: float
    title: str
    text: str


def query_encoder_for(client, url: str, index: str, model: Optional[str] = None,
                      show_progress: bool = False) -> "tuple[QueryEncoder, dict]":
    """The query encoder to search `index` with, and the index's splade-os `_meta`.

    With `model` None, the model recorded in the index is used. Either way the model's
    vocabulary + query table hash must equal the index's.

    Raises:
        ModelMismatchError: the model is not the one the index was ingested with.
    """
    meta = read_meta(client, url, index)
    source = model if model is not None else meta.get("model", {}).get("source", "default")
    if source.startswith("cluster:"):
        # Only the tokenizer and the table are needed: read them from the registry document.
        folder = query_side(client, url, source[len("cluster:"):])
        encoder = QueryEncoder(ModelLayout(folder, source, folder, folder, source=source))
    else:
        encoder = QueryEncoder(resolve_model(source, show_progress=show_progress, client=client, url=url))
    check_identity(index, meta, encoder.hash, "hash")
    return encoder, meta


def search(client, url: str, index: str, text: str, encoder: QueryEncoder, k: int = 10,
           field: str = "splade", max_clauses: Optional[int] = None) -> List[Hit]:
    """Run one query; returns the top `k` hits, best first.

    Args:
        client, url: the cluster and its URL (for messages).
        index: the index (or alias) to search.
        text: the query text.
        encoder: the model's `QueryEncoder` (see `query_encoder_for`).
        k: number of hits.
        field: the `rank_features` field.
        max_clauses: clause cap; read from the cluster when None.
    """
    from opensearchpy import exceptions as os_exc

    if max_clauses is None:
        max_clauses = max_clause_count(client)
    body = encoder.to_dsl(text, field=field, size=k, max_clauses=max_clauses, source=["title", "text"])
    try:
        response = client.search(index=index, body=body)
    except os_exc.TransportError as e:
        raise cluster_error(e, url, f"searching {index!r}") from None
    return [
        Hit(h["_id"], float(h["_score"]), h.get("_source", {}).get("title", ""), h.get("_source", {}).get("text", ""))
        for h in response["hits"]["hits"]
    ]
