"""Streaming a JSONL corpus through the document encoder into OpenSearch, losing nothing.

Three stages overlap: the reader parses lines, the encoder turns windows of documents into
sparse vectors (tokenizing the next windows on a thread pool while the device works), and a
sender thread turns finished windows into bulk requests (several chunks in flight at once).
A bounded queue between them keeps memory flat: the encoder waits when the cluster is
slower, and the other way round.

Every line ends up acknowledged by the cluster or in the dead-letter file. After each window
the cluster has settled, a checkpoint records the input line up to which that holds, so a
crash or Ctrl-C costs at most the windows in flight: `resume=True` continues from there.
With an alias, documents go into a new concrete index and the alias moves to it atomically
only after the ingest succeeded and the counts check out.
"""

import json
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from . import checkpoint as checkpoints
from .bulk import BulkLines, RetryPolicy, send_chunk
from .corpus import DeadLetters, Document, Rejected, read_corpus
from .errors import IndexStateError, InputError, ModelError, SpladeOSError
from .index import init_index
from .model import ModelLayout, model_identity
from .progress import bar, note
from .query import QueryEncoder

if TYPE_CHECKING:  # the encoder module imports torch, which `search` never needs
    from .encoder import SparseVector

_DONE = object()
QUEUE_WINDOWS = 2  # encoded windows waiting for the sender


class IngestInterrupted(SpladeOSError):
    """Ctrl-C: the windows in flight were settled and the checkpoint written."""


@dataclass
class IngestStats:
    """What an ingest did."""

    index: str = ""
    indexed: int = 0  # acknowledged by the cluster
    rejected: int = 0  # written to the dead-letter file
    seconds: float = 0.0
    count_after: Optional[int] = None  # `_count` of the index after a refresh
    dead_letter_path: Optional[Path] = None
    checkpoint_path: Optional[Path] = None
    resumed_from_line: int = 0
    alias_switched: bool = False

    @property
    def docs_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0


def _count_lines(path: Path, limit_bytes: int = 2 << 30) -> Optional[int]:
    # Cheap enough to give the progress bar a total; skipped for huge files.
    if path.stat().st_size > limit_bytes:
        return None
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


class _Sender(threading.Thread):
    """Sends encoded windows, settles every item, and advances the checkpoint window by window."""

    def __init__(self, client, lines: BulkLines, fingerprint, dead, bulk_docs, bulk_workers, policy, progress, stats,
                 state: checkpoints.Checkpoint, checkpoint_path: Path, show_progress: bool):
        super().__init__(daemon=True, name="splade-os-bulk")
        self.client, self.lines, self.fingerprint = client, lines, fingerprint
        self.dead, self.bulk_docs, self.policy = dead, bulk_docs, policy
        self.progress, self.stats, self.state, self.checkpoint_path = progress, stats, state, checkpoint_path
        self.pool = ThreadPoolExecutor(max_workers=bulk_workers, thread_name_prefix="splade-os-bulk")
        self.inbox: "queue.Queue" = queue.Queue(maxsize=QUEUE_WINDOWS)
        self.error: Optional[BaseException] = None
        self.on_retry = (lambda message: note(True, f"retrying: {message}")) if show_progress else None

    def run(self):
        try:
            while True:
                work = self.inbox.get()
                if work is _DONE:
                    return
                self._settle(*work)
        except BaseException as e:  # handed to the main thread, which raises it
            self.error = e
        finally:
            self.pool.shutdown(wait=True)

    def _settle(self, docs: List[Document], vectors: List["SparseVector"], last_line: int):
        actions = [self.lines.document(d.id, {"title": d.title, "text": d.text, "splade_fingerprint": self.fingerprint}, v)
                   for d, v in zip(docs, vectors)]
        chunks = [actions[i : i + self.bulk_docs] for i in range(0, len(actions), self.bulk_docs)]
        outcomes = self.pool.map(lambda chunk: send_chunk(self.client, chunk, self.policy, on_retry=self.on_retry),
                                 chunks)
        reasons = [reason for chunk in outcomes for reason in chunk]
        for doc, reason in zip(docs, reasons):
            if reason is None:
                self.stats.indexed += 1
            else:
                self.dead.add(doc.line, reason, doc.raw)
            self.progress.update(1)
        self.state.line = last_line
        self.state.indexed = self.stats.indexed
        self.state.rejected = self.dead.count
        self.state.save(self.checkpoint_path)


def _trim_dead_letters(path: Path, after_line: int) -> int:
    """Drop dead letters past the checkpoint (they will be read again); returns how many remain."""
    if not path.exists():
        return 0
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("line", 0) <= after_line]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return len(kept)


def ingest(
    client,
    url: str,
    path: Path,
    index: Optional[str],
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
    bulk_workers: int = 2,
    shards: int = 1,
    replicas: int = 0,
    refresh_interval: str = "1s",
    encoder=None,
    show_progress: bool = True,
    resume: bool = False,
    checkpoint_path: Optional[Path] = None,
    retry: Optional[RetryPolicy] = None,
    alias: Optional[str] = None,
    keep: Optional[int] = None,
    shard: Optional[tuple] = None,
) -> IngestStats:
    """Encode a JSONL corpus and index it into a `rank_features` field.

    Args:
        client: an `opensearchpy.OpenSearch` client (see `connector.client.connect`).
        url: the cluster URL, for messages.
        path: the JSONL corpus; one JSON object per line.
        index: target index, created (with its pipeline) when missing; None with `alias`.
        layout: the model (`connector.model.resolve_model`).
        source: how the model is named in the index's `_meta` (default: `layout.source`).
        field: the `rank_features` field (default "splade").
        id_field, text_field, title_field: JSON field names (BEIR's by default).
        dead_letter_path: where rejected lines go (default `<input stem>.rejected.jsonl` in the cwd).
        device, dtype: for the encoder: "cuda", "cpu", "cuda:0,cuda:1" or "all" (one worker per
            GPU); the best device and bf16 on GPU by default.
        shard: (i, n) to take only the input lines whose (line - 1) % n == i, so n hosts can
            split one corpus without overlap.
        window: documents encoded together (sorted by length inside the window); also the
            checkpoint's granularity.
        bulk_docs: documents per bulk request; bulk_workers: bulk requests in flight at once.
        shards, replicas, refresh_interval: index settings when the index is created.
        encoder: a ready `DocumentEncoder` to reuse (else one is built).
        show_progress: draw a progress bar and notes on stderr.
        resume: continue from the checkpoint of an interrupted run of the same input.
        checkpoint_path: default: in the cache, named after the input and the index or alias.
        retry: backoff and deadline for bulk retries (`connector.bulk.RetryPolicy`).
        alias: build a new concrete index `<alias>-<model version>-<time>` and move the alias
            to it atomically once the ingest succeeded and the counts check out.
        keep: with `alias`, delete all but the newest `keep` indexes of the alias afterwards.

    Returns:
        IngestStats with indexed/rejected counts, wall time and the index `_count` afterwards.

    Raises:
        IngestInterrupted: on Ctrl-C, after the windows in flight were settled.
    """
    from .encoder import make_encoder

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if bool(index) == bool(alias):
        raise ValueError("give exactly one of index or alias")
    started = time.perf_counter()
    queries = QueryEncoder(layout)
    identity = model_identity(layout, queries.hash, source)
    checkpoint_path = Path(checkpoint_path or checkpoints.default_path(path, index or alias))
    dead_letter_path = Path(dead_letter_path or f"{path.stem}.rejected.jsonl")
    stat = path.stat()

    if resume:
        state = checkpoints.Checkpoint.load(checkpoint_path)
        if not state.matches(path) or state.input != str(path.resolve()):
            raise InputError(f"{path}: the input changed since checkpoint {checkpoint_path} was written")
        if state.fingerprint != identity.fingerprint:
            raise ModelError(f"{checkpoint_path}: the interrupted run used another model; resume with the same --model")
        index = state.index
        dead_letter_path = Path(state.dead_letter)
        if state.complete:
            note(show_progress, f"{checkpoint_path}: that ingest already completed")
            return IngestStats(index=index, indexed=state.indexed, rejected=state.rejected,
                               count_after=client.count(index=index)["count"], checkpoint_path=checkpoint_path)
    else:
        if alias:
            if client.indices.exists(index=alias) and not client.indices.exists_alias(name=alias):
                raise IndexStateError(f"{alias!r} is a concrete index, not an alias; choose another alias name")
            index = f"{alias}-{identity.version}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}".lower()
        state = checkpoints.Checkpoint(
            input=str(path.resolve()), input_size=stat.st_size, input_mtime=stat.st_mtime, index=index,
            fingerprint=identity.fingerprint, dead_letter=str(dead_letter_path), alias=alias)
    if init_index(client, url, index, identity, field, shards, replicas, refresh_interval):
        note(show_progress, f"Created index {index!r} for model {identity.name} ({identity.version})")
    if encoder is None:
        encoder = make_encoder(layout, device=device, dtype=dtype)
    if encoder.vocab_size != len(queries.keys):
        raise ModelError(
            f"{layout.root}: the document route has {encoder.vocab_size} outputs but the query vocabulary "
            f"has {len(queries.keys)} tokens"
        )
    stats = IngestStats(index=index, indexed=state.indexed, checkpoint_path=checkpoint_path,
                        resumed_from_line=state.line)
    if resume:
        note(show_progress, f"Resuming after line {state.line} ({state.indexed} indexed, {state.rejected} rejected)")
        _trim_dead_letters(dead_letter_path, state.line)
    state.save(checkpoint_path)
    total = _count_lines(path)
    progress = bar(show_progress, total=total, initial=state.line if total else 0, unit="doc",
                   desc=f"ingest {path.name}")
    with DeadLetters(dead_letter_path, str(path), append=resume) as dead, progress:
        sender = _Sender(client, BulkLines(index, field, queries.keys), identity.fingerprint, dead, bulk_docs, bulk_workers,
                         retry or RetryPolicy(), progress, stats, state, checkpoint_path, show_progress)
        sender.start()
        last_line = [state.line]

        def windows():
            # Rejected lines are recorded as they are read; documents travel in windows, each
            # with the last input line it accounts for.
            pending: List[Document] = []
            for item in read_corpus(path, id_field, text_field, title_field, skip_lines=state.line, shard=shard):
                last_line[0] = item.line
                if isinstance(item, Rejected):
                    dead.add(item.line, item.reason, item.raw)
                    progress.update(1)
                    continue
                pending.append(item)
                if len(pending) >= window:
                    yield (pending, item.line), [d.content for d in pending]
                    pending = []
            # The last window also accounts for trailing rejected lines (it may hold no document).
            yield (pending, last_line[0]), [d.content for d in pending]

        interrupted = False
        try:
            for (docs, line), vectors in encoder.encode_stream(windows()):
                kept, nonempty = [], []
                for doc, vector in zip(docs, vectors):
                    if len(vector.ids) == 0:
                        dead.add(doc.line, "the model gives this document no non-zero feature", doc.raw)
                        progress.update(1)
                    else:
                        kept.append(doc)
                        nonempty.append(vector)
                _put(sender, (kept, nonempty, line))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            _put(sender, _DONE)
            sender.join()
        if sender.error is not None:
            raise sender.error
        if interrupted:
            raise IngestInterrupted(
                f"interrupted: everything up to line {state.line} of {path} is settled "
                f"({state.indexed} indexed, {state.rejected} rejected); continue with --resume")
        stats.rejected = dead.count
    stats.dead_letter_path = dead_letter_path if stats.rejected else None
    client.indices.refresh(index=index)
    stats.count_after = client.count(index=index)["count"]
    if alias:
        if stats.count_after != stats.indexed:
            raise IndexStateError(
                f"index {index!r} holds {stats.count_after} documents but {stats.indexed} were acknowledged; "
                f"alias {alias!r} left where it was")
        _switch_alias(client, alias, index)
        stats.alias_switched = True
        if keep:
            _prune(client, alias, keep)
    state.complete = True
    state.save(checkpoint_path)
    stats.seconds = time.perf_counter() - started
    return stats


def _alias_indexes(client, alias: str) -> List[str]:
    """The concrete indexes made for `alias`, oldest first."""
    found = client.indices.get(index=f"{alias}-*", expand_wildcards="open", ignore_unavailable=True)
    made = [(int(body["settings"]["index"]["creation_date"]), name) for name, body in found.items()
            if body.get("mappings", {}).get("_meta", {}).get("splade_os")]
    return [name for _, name in sorted(made)]


def _switch_alias(client, alias: str, index: str) -> None:
    # One request: readers see the old index or the new one, never none.
    actions = [{"remove": {"index": name, "alias": alias}} for name in _current_targets(client, alias)]
    actions.append({"add": {"index": index, "alias": alias}})
    client.indices.update_aliases(body={"actions": actions})


def _current_targets(client, alias: str) -> List[str]:
    if not client.indices.exists_alias(name=alias):
        return []
    return list(client.indices.get_alias(name=alias).keys())


def _prune(client, alias: str, keep: int) -> None:
    """Delete all but the newest `keep` indexes of the alias (never one the alias points to)."""
    live = set(_current_targets(client, alias))
    for name in _alias_indexes(client, alias)[:-keep]:
        if name not in live:
            client.indices.delete(index=name)


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
