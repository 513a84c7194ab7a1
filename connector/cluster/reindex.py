"""Copying an index into a new one (other shards, `_source` settings or stricter pruning).

The engines' own `_reindex` copies `_source`; an index whose `_source` leaves the feature map
out cannot be copied that way (the new index's pipeline would reject every document for having
no features). `reindex` reads the vectors back instead:

- from the feature map (`source_features="map"`) or the compact copy (`"packed"`, see
  `splade_os.documents.vectors.pack`): no model and no torch are needed; values come back exactly as the
  index stores them, so the new index scores every query the same (pruning may be made
  stricter on the way);
- from nothing (`"none"`), or when the new index cuts long documents differently: the texts
  are read back and encoded again with the index's recorded model (`splade_os.ingest`), which
  costs a full ingest.

Example:
    >>> stats = reindex(cluster, "docs", "docs-v2", IndexSettings(source_features="packed", shards=3))
"""

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Tuple

import numpy as np

from splade_os.bulk.requests import BulkLines, RetryPolicy, chunk_actions, request_bytes, send_chunk, source_bytes
from splade_os.corpus.jsonl import CorpusFields
from splade_os.common.errors import IndexStateError, InputError
from splade_os.formats.identity import ModelIdentity
from splade_os.common.progress import bar
from splade_os.documents.settings import IndexSettings
from splade_os.documents.vectors import SparseVector, VectorOptions, unpack

PAGE = 500
SCROLL = "5m"


@dataclass
class ReindexStats:
    """What `reindex` did: documents written, how the vectors were recovered, wall time."""

    source: str
    target: str
    documents: int = 0
    method: str = ""  # "copied vectors" or "encoded again"
    seconds: float = 0.0


def stricter(new: VectorOptions, old: VectorOptions) -> bool:
    """Whether vectors made with `old` can be turned into vectors made with `new` without encoding."""
    if (new.long_docs, new.max_windows) != (old.long_docs, old.max_windows):
        return False
    top_k_ok = old.prune_top_k is None or (new.prune_top_k is not None and new.prune_top_k <= old.prune_top_k)
    threshold_ok = old.prune_threshold is None or (new.prune_threshold is not None
                                                   and new.prune_threshold >= old.prune_threshold)
    return top_k_ok and threshold_ok


def reindex(cluster, source: str, target: str, settings=None, show_progress: bool = True) -> ReindexStats:
    """Copy index `source` into a new index `target` made with `settings`.

    Args:
        cluster: the `splade_os.cluster.Cluster`.
        source, target: index names; `target` must not exist.
        settings: the new index's `splade_os.cluster.index.IndexSettings`; `source_features`, `vectors`
            and `mapping` left as None take the source's; the sparse field and the title and
            text fields are always the source's. Every document keeps all its fields.
        show_progress: a progress bar on stderr.

    Raises:
        IndexStateError: `target` exists, or its documents do not add up after the copy.
    """
    started = time.perf_counter()
    old = cluster.index(source)
    settings = settings or IndexSettings()
    settings = replace(settings, field=old.field, source_features=settings.source_features or old.source_features,
                       vectors=settings.vectors or old.vector_options, mapping=settings.mapping or old.user_mapping,
                       title_field=old.title_field, text_field=old.text_field)
    new = cluster.index(target)
    if new.exists():
        raise IndexStateError(f"index {target!r} exists already; reindex writes a new index")
    stats = ReindexStats(source, target)
    if old.source_features == "none" or not stricter(settings.vectors, old.vector_options):
        stats.documents, stats.method = _encode_again(cluster, old, target, settings, show_progress), "encoded again"
    else:
        new.create_for(ModelIdentity(**old.model), settings)
        stats.documents, stats.method = _copy_vectors(old, new, show_progress), "copied vectors"
    new.refresh()
    if new.count() != old.count():
        raise IndexStateError(f"index {target!r} holds {new.count()} documents, {source!r} {old.count()}")
    stats.seconds = time.perf_counter() - started
    return stats


def documents(index, source=True) -> Iterator[Tuple[str, dict]]:
    """(id, `_source`) of every document of an index, by scroll; `source` filters it (a search
    body's `_source`: a list of fields, or {"excludes": [...]})."""
    answer = index.cluster.request("POST", f"/{index.name}/_search", {
        "size": PAGE, "sort": ["_doc"], "_source": source}, params={"scroll": SCROLL},
        action=f"reading {index.name!r}")
    scroll_id = answer.get("_scroll_id")
    try:
        while answer["hits"]["hits"]:
            for hit in answer["hits"]["hits"]:
                yield hit["_id"], hit.get("_source") or {}
            answer = index.cluster.request("POST", "/_search/scroll", {"scroll": SCROLL, "scroll_id": scroll_id},
                                           action=f"reading {index.name!r}")
            scroll_id = answer.get("_scroll_id", scroll_id)
    finally:
        if scroll_id:
            index.cluster.request("DELETE", "/_search/scroll", {"scroll_id": scroll_id},
                                  action="closing the scroll")


def _vector(source: dict, old, key_ids: dict) -> SparseVector:
    if old.packed_field:
        ids, values = unpack(source[old.packed_field])
    else:
        features = source.get(old.field) or {}
        ids = np.fromiter((key_ids[k] for k in features), dtype=np.int64, count=len(features))
        values = np.fromiter(features.values(), dtype=np.float32, count=len(features))
        order = np.argsort(ids)
        ids, values = ids[order], values[order]
    return SparseVector(ids, values)


def _copy_vectors(old, new, show_progress: bool) -> int:
    """Write every document of `old` into `new` with its stored vector (pruned to `new`'s options)."""
    from splade_os.corpus.jsonl import Document
    from splade_os.bulk.sender import document_fields

    keys = old.query_encoder().keys
    key_ids = {key: i for i, key in enumerate(keys)}
    options = new.vector_options
    identity = ModelIdentity(**old.model)
    lines = BulkLines(new.name, new.field, keys, new.packed_field)
    fields = document_fields(new.pipeline, identity)
    written, pending = 0, []
    with bar(show_progress, total=old.count(), unit="doc", desc=f"reindex {old.name}") as progress:
        for doc_id, source in documents(old):
            vector = options.pruned(_vector(source, old, key_ids))
            doc = Document(doc_id, "", "", 0, source=_user_source(source, old))
            pending.append(lines.document(doc_id, fields(doc), vector))
            if len(pending) >= PAGE:
                written += _send(new, pending)
                progress.update(len(pending))
                pending = []
        written += _send(new, pending)
        progress.update(len(pending))
    return written


def _user_source(source: dict, index) -> dict:
    """A document's `_source` without what splade-os wrote into it (written again for the new index)."""
    reserved = index.reserved_fields
    return {key: value for key, value in source.items() if key not in reserved}


def _send(index, actions) -> int:
    for chunk in chunk_actions(actions, PAGE, request_bytes(index.cluster, 16 * 1024 * 1024)):
        for reason in send_chunk(index.cluster, [actions[i] for i in chunk], RetryPolicy()):
            if reason:
                raise IndexStateError(f"writing into {index.name!r} failed: {reason}")
    return len(actions)


def _encode_again(cluster, old, target: str, settings, show_progress: bool) -> int:
    """Dump the texts of `old` and ingest them into `target` with the index's recorded model."""
    from splade_os.ingest.single import IngestOptions, ingest
    from splade_os.models.resolve import model_of_index

    model = model_of_index(old, show_progress=show_progress)
    with tempfile.TemporaryDirectory(prefix="splade-os-reindex-") as folder:
        corpus = Path(folder) / f"{old.name}.jsonl"
        with open(corpus, "wb") as out:
            for doc_id, source in documents(old, {"excludes": list(old.reserved_fields)}):
                out.write(source_bytes({"_id": doc_id, **_user_source(source, old)}) + b"\n")
        options = IngestOptions(fields=CorpusFields("_id", old.text_field, old.title_field), index=settings,
                                dead_letter=Path(folder) / "rejected.jsonl", checkpoint=Path(folder) / "checkpoint.json")
        stats = ingest(cluster, corpus, target, model, options=options, show_progress=show_progress)
    if stats.rejected:
        raise InputError(f"{stats.rejected} document(s) of {old.name!r} could not be encoded again")
    return stats.indexed
