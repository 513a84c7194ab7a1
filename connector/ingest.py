"""Streaming a JSONL corpus through the document encoder into OpenSearch.

Three stages overlap: the reader parses lines and the encoder turns a window of documents
into sparse vectors (torch releases the GIL while it computes), while a sender thread turns
finished windows into bulk requests. A bounded queue between them keeps memory flat: the
encoder waits when the cluster is slower than the GPU/CPU, and the other way round.
Every line ends up either acknowledged by the cluster or in the dead-letter file.
"""

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .corpus import DeadLetters, Document, Rejected, read_corpus
from .errors import ModelError
from .index import init_index
from .model import ModelLayout, model_identity
from .progress import bar, note
from .query import QueryEncoder

_DONE = object()


@dataclass
class IngestStats:
    """What an ingest did."""

    indexed: int = 0  # acknowledged by the cluster
    rejected: int = 0  # written to the dead-letter file
    seconds: float = 0.0
    count_after: Optional[int] = None  # `_count` of the index after a refresh
    dead_letter_path: Optional[Path] = None

    @property
    def docs_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0


def _count_lines(path: Path, limit_bytes: int = 2 << 30) -> Optional[int]:
    # Cheap enough to give the progress bar a total; skipped for huge files.
    if path.stat().st_size > limit_bytes:
        return None
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def _item_reason(item: dict) -> str:
    result = next(iter(item.values())) if item else {}
    error = result.get("error")
    if isinstance(error, dict):
        reason = error.get("reason") or error.get("type") or "rejected"
        cause = error.get("caused_by", {})
        if isinstance(cause, dict) and cause.get("reason"):
            reason = f"{reason}: {cause['reason']}"
        return f"OpenSearch rejected the document (HTTP {result.get('status')}): {reason}"
    return f"OpenSearch rejected the document (HTTP {result.get('status')}): {error or result.get('exception')}"


class _Sender(threading.Thread):
    """Sends encoded windows as bulk requests and sorts acknowledgements from rejections."""

    def __init__(self, client, index, field, fingerprint, dead, bulk_docs, progress, stats):
        super().__init__(daemon=True, name="splade-os-bulk")
        self.client, self.index, self.field, self.fingerprint = client, index, field, fingerprint
        self.dead, self.bulk_docs, self.progress, self.stats = dead, bulk_docs, progress, stats
        self.inbox: "queue.Queue" = queue.Queue(maxsize=4)
        self.error: Optional[BaseException] = None

    def run(self):
        try:
            while True:
                work = self.inbox.get()
                if work is _DONE:
                    return
                self._send(*work)
        except BaseException as e:  # handed to the main thread, which raises it
            self.error = e

    def _actions(self, docs: List[Document], features: List[dict]):
        for doc, feats in zip(docs, features):
            yield {
                "_op_type": "index",
                "_index": self.index,
                "_id": doc.id,
                "_source": {
                    "title": doc.title,
                    "text": doc.text,
                    self.field: feats,
                    "splade_fingerprint": self.fingerprint,
                },
            }

    def _send(self, docs: List[Document], features: List[dict]):
        from opensearchpy import helpers

        results = helpers.streaming_bulk(
            self.client,
            self._actions(docs, features),
            chunk_size=self.bulk_docs,
            max_chunk_bytes=50 * 1024 * 1024,
            raise_on_error=False,
            raise_on_exception=False,
            max_retries=3,
            initial_backoff=1,
        )
        # streaming_bulk yields one result per action, in order.
        for doc, (ok, item) in zip(docs, results):
            if ok:
                self.stats.indexed += 1
            else:
                self.dead.add(doc.line, _item_reason(item), doc.raw)
            self.progress.update(1)


def ingest(
    client,
    url: str,
    path: Path,
    index: str,
    layout: ModelLayout,
    source: Optional[str] = None,
    field: str = "splade",
    id_field: str = "_id",
    text_field: str = "text",
    title_field: str = "title",
    dead_letter_path: Optional[Path] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = "auto",
    window: int = 1024,
    bulk_docs: int = 500,
    shards: int = 1,
    replicas: int = 0,
    refresh_interval: str = "1s",
    encoder=None,
    show_progress: bool = True,
) -> IngestStats:
    """Encode a JSONL corpus and index it into a `rank_features` field.

    Args:
        client: an `opensearchpy.OpenSearch` client (see `connector.client.connect`).
        url: the cluster URL, for messages.
        path: the JSONL corpus; one JSON object per line.
        index: target index; created (with its pipeline) when missing.
        layout: the model (`connector.model.resolve_model`).
        source: how the model is named in the index's `_meta` (default: `layout.source`).
        field: the `rank_features` field (default "splade").
        id_field, text_field, title_field: JSON field names (BEIR's by default).
        dead_letter_path: where rejected lines go (default `<input stem>.rejected.jsonl` in the cwd).
        device, dtype: for the `DocumentEncoder` (best device, bf16 on GPU by default).
        window: documents encoded together (sorted by length inside the window).
        bulk_docs: documents per bulk request.
        shards, replicas, refresh_interval: index settings when the index is created.
        encoder: a ready `DocumentEncoder` to reuse (else one is built).
        show_progress: draw a progress bar on stderr.

    Returns:
        IngestStats with indexed/rejected counts, wall time and the index `_count` afterwards.
    """
    from .encoder import DocumentEncoder

    path = Path(path)
    started = time.perf_counter()
    stats = IngestStats()
    queries = QueryEncoder(layout)
    identity = model_identity(layout, queries.hash, source)
    if init_index(client, url, index, identity, field, shards, replicas, refresh_interval):
        note(show_progress, f"Created index {index!r} for model {identity.name} ({identity.version})")
    if encoder is None:
        encoder = DocumentEncoder(layout, device=device, dtype=dtype)
    if encoder.vocab_size != len(queries.keys):
        raise ModelError(
            f"{layout.root}: the document route has {encoder.vocab_size} outputs but the query vocabulary "
            f"has {len(queries.keys)} tokens"
        )
    dead_letter_path = Path(dead_letter_path or f"{path.stem}.rejected.jsonl")
    keys = queries.keys
    progress = bar(show_progress, total=_count_lines(path), unit="doc", desc=f"ingest {path.name}")
    with DeadLetters(dead_letter_path, str(path)) as dead, progress:
        sender = _Sender(client, index, field, identity.fingerprint, dead, bulk_docs, progress, stats)
        sender.start()

        def windows():
            # Rejected lines are recorded as they are read; documents travel in windows.
            pending: List[Document] = []
            for item in read_corpus(path, id_field, text_field, title_field):
                if isinstance(item, Rejected):
                    dead.add(item.line, item.reason, item.raw)
                    progress.update(1)
                    continue
                pending.append(item)
                if len(pending) >= window:
                    yield pending, [d.content for d in pending]
                    pending = []
            if pending:
                yield pending, [d.content for d in pending]

        try:
            for docs, vectors in encoder.encode_stream(windows()):
                kept, features = [], []
                for doc, vector in zip(docs, vectors):
                    if len(vector.ids) == 0:
                        dead.add(doc.line, "the model gives this document no non-zero feature", doc.raw)
                        progress.update(1)
                    else:
                        kept.append(doc)
                        features.append(vector.to_dict(keys))
                _put(sender, (kept, features))
        finally:
            _put(sender, _DONE)
            sender.join()
        if sender.error is not None:
            raise sender.error
        stats.rejected = dead.count
    stats.dead_letter_path = dead_letter_path if stats.rejected else None
    client.indices.refresh(index=index)
    stats.count_after = client.count(index=index)["count"]
    stats.seconds = time.perf_counter() - started
    return stats


def _put(sender: _Sender, work) -> None:
    # Wait for room, but notice a sender that died instead of blocking forever.
    while True:
        if sender.error is not None or not sender.is_alive():
            if work is _DONE:
                return
            raise sender.error or RuntimeError("the bulk sender stopped")
        try:
            sender.inbox.put(work, timeout=0.5)
            return
        except queue.Full:
            continue
