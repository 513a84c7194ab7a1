"""Turning encoded documents into bulk requests and settling them: shared by the single-process
ingest (`splade_os.ingest`) and the Ray ingest (`splade_os.ingest.ray`), so both send the same
requests with the same retry rules and dead-letter the same documents for the same reasons."""

import time
from typing import Callable, List, Optional

import numpy as np

from splade_os.bulk.requests import chunk_actions, send_chunk
from splade_os.corpus.jsonl import DeadLetters, Document
from splade_os.documents.vectors import VectorOptions


def user_fields(doc: Document) -> dict:
    """Every field of the document's line but its id (a document built without a line: title and text)."""
    return doc.source if doc.source is not None else {"title": doc.title, "text": doc.text}


def document_fields(pipeline: Optional[str], identity) -> Callable[[Document], dict]:
    """What a document's `_source` holds besides its features, for an index with or without a
    pipeline: the line's own fields, unchanged, and splade-os's (`splade_os.cluster.index.OWN_FIELDS`)."""
    if pipeline:
        # The index's pipeline checks this against the index's model, then removes it.
        return lambda doc: {**user_fields(doc), "splade_fingerprint": identity.fingerprint}
    # No pipeline on this cluster: the client stamps what the pipeline would have.
    model = {"name": identity.name, "version": identity.version}
    return lambda doc: {**user_fields(doc), "splade_model": model,
                        "ingested_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def send_documents(cluster, actions: List[bytes], max_docs: int, max_bytes: int, policy, pool,
                   on_retry: Optional[Callable[[str], None]] = None) -> List[Optional[str]]:
    """Send documents' bulk actions in chunks over `pool`; in input order, None (acknowledged) or the reason."""
    chunks = chunk_actions(actions, max_docs, max_bytes)
    outcomes = pool.map(lambda chunk: send_chunk(cluster, [actions[i] for i in chunk], policy, on_retry=on_retry),
                        chunks)
    reasons: List[Optional[str]] = [None] * len(actions)
    for chunk, chunk_reasons in zip(chunks, outcomes):
        for i, reason in zip(chunk, chunk_reasons):
            reasons[i] = reason
    return reasons


def usable(docs: List[Document], vectors: list, dead: DeadLetters, options: Optional[VectorOptions] = None):
    """The documents with a usable vector, pruned as the index's `options` say; the others are
    dead-lettered (the checks a pipeline makes)."""
    kept, usable = [], []
    for doc, vector in zip(docs, vectors):
        vector, problem = checked_vector(vector, options)
        if problem:
            dead.add(doc.line, problem, doc.raw)
        else:
            kept.append(doc)
            usable.append(vector)
    return kept, usable


def checked_vector(vector, options: Optional[VectorOptions] = None):
    """(the vector pruned as `options` say, None) or (None, why it cannot be indexed)."""
    if options is not None and options.prunes and len(vector.ids):
        vector = options.pruned(vector)
        if len(vector.ids) == 0:
            return None, f"no feature of this document reaches the prune threshold {options.prune_threshold}"
    if len(vector.ids) == 0:
        return None, "the model gives this document no non-zero feature"
    if not np.all(np.isfinite(vector.values)):
        return None, "the model gives this document non-finite feature values"
    return vector, None
