"""Adding SPLADE vectors to an index an app already owns, and keeping them current (`enrich`).

An app's index has its own mapping and its own writers. `enrich` adopts it in place
(`SpladeIndex.adopt`: the sparse field and splade-os's own fields added to the mapping, the model
and the title and text fields recorded in `_meta`, no ingest pipeline), then makes passes over
its documents:

- **Reading**, shard by shard in `_seq_no` order (`preference=_shards:N`, a range and a sort on
  `_seq_no`, pages of `batch`). Every write of a document gives it a new, higher sequence number in
  its shard, so one number per shard is a cursor that finds what was written since the last
  pass, survives kill -9 (it is saved in the checkpoint; a point-in-time dies with its
  keep-alive and never sees a write made after it opened, which `follow` needs), and the shards
  are the slices several readers share (`slice=(i, n)` takes the shards s with s % n == i). A
  pass reads up to each shard's global checkpoint taken at its start (operations every copy
  holds), after a refresh.
- **Deciding**: a document whose `splade_hash` is the hash of its current title and text is
  current and skipped; one whose text field is missing or not text goes to the dead-letter file
  (index, id, shard, sequence number, reason, the fields read); the others are encoded, as
  `ingest` encodes a corpus line (title and text joined; the index's long-document and pruning
  options).
- **Writing**: one bulk `update` per document, a script that sets only the features and
  splade-os's own fields, and only if the document is still the version read
  (`if_seq_no`/`if_primary_term`). A document the app changed in the meantime (HTTP 409) is read
  again and encoded again, never overwritten with stale vectors; one it deleted (404) is counted
  and stays deleted. Retries, backoff and 429s as in `ingest` (`splade_os.bulk`).

A run repeats passes until one finds nothing to encode (our own updates give documents new
sequence numbers, so the next pass reads them once more and finds them current). With `follow`
it keeps going: a pass every `interval` seconds until Ctrl-C (which finishes the batch in flight
and saves the checkpoint) or `stop`, reporting the lag on the progress line.

Example:
    >>> stats = enrich(connect("http://localhost:9200"), "products", options=EnrichOptions(text_field="description"))
    >>> stats.encoded, stats.rejected
    (1996, 4)
"""

import hashlib
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from dataclasses import field as default
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from splade_os.bulk.requests import BulkLines, BulkOptions, request_bytes
from splade_os.bulk.sender import checked_vector, send_documents
from splade_os.common.cache import cache_dir
from splade_os.common.errors import IndexStateError, InputError, ModelError
from splade_os.common.files import atomic_write
from splade_os.common.progress import bar, note
from splade_os.corpus.jsonl import DeadLetters
from splade_os.documents.settings import HASH_FIELD, IndexSettings

CONFLICT_ROUNDS = 5  # times a document changed under us is read again within one batch
MAX_PASSES = 5  # passes of a run without `follow` while other writers keep changing documents
COUNTS = ("encoded", "current", "conflicts", "deleted", "rejected", "passes")  # in `EnrichState` and `EnrichStats`


@dataclass
class EnrichOptions:
    """How `enrich` reads, encodes and writes.

    Attributes:
        text_field, title_field: the document fields to encode (dotted paths for object fields).
            None: what the index records; an index not enriched yet needs `text_field`, and its
            title field is "title" unless given (a document without one is encoded from its text).
        field: the sparse field to add (an index not enriched yet).
        batch: documents read, encoded and written together; the checkpoint's step.
        bulk: documents and bytes per bulk request, requests in flight, retry policy.
        device, dtype: for the encoder, as for `ingest`.
        dead_letter: where documents that cannot be encoded are listed (default
            `<index>.rejected.jsonl` in the working directory).
        checkpoint: the checkpoint file (default: in the cache, named after the index).
        slice: (i, n) to take only the shards s with s % n == i (n readers share an index).
        follow: keep enriching new and changed documents until stopped.
        interval: seconds between the passes of `follow`.
        allow_pickle: the model may load weights that exist only as a pickle.
    """

    text_field: Optional[str] = None
    title_field: Optional[str] = None
    field: str = "splade"
    batch: int = 256
    bulk: BulkOptions = default(default_factory=BulkOptions)
    device: Optional[str] = None
    dtype: str = "auto"
    dead_letter: Optional[Path] = None
    checkpoint: Optional[Path] = None
    slice: Optional[Tuple[int, int]] = None
    follow: bool = False
    interval: float = 5.0
    allow_pickle: bool = False

    def __post_init__(self):
        if self.batch < 1 or self.interval <= 0:
            raise InputError(f"batch {self.batch} and interval {self.interval}: expected at least 1 and more than 0")
        if self.slice is not None and not (self.slice[1] >= 1 and 0 <= self.slice[0] < self.slice[1]):
            raise InputError(f"slice {self.slice[0]}/{self.slice[1]}: expected i/n with 0 <= i < n")


@dataclass
class EnrichState:
    """The checkpoint: per shard, the sequence number up to which every document is settled."""

    index: str
    uuid: str  # the index's own id: a checkpoint of a deleted and re-created index is not used
    fingerprint: str
    dead_letter: str
    positions: Dict[str, int] = default(default_factory=dict)
    encoded: int = 0
    current: int = 0
    conflicts: int = 0
    deleted: int = 0
    rejected: int = 0
    passes: int = 0

    def save(self, path: Path) -> None:
        atomic_write(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Optional["EnrichState"]:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as e:
            raise InputError(f"{path}: not a splade-os enrich checkpoint ({e})") from None


@dataclass
class EnrichStats:
    """What one `enrich` call did (the checkpoint keeps the totals of every run)."""

    index: str = ""
    encoded: int = 0  # documents given the vectors of their current text
    current: int = 0  # documents read that had them already
    conflicts: int = 0  # changed by another writer between read and write: read and encoded again
    deleted: int = 0  # deleted by another writer before their vectors were written
    rejected: int = 0  # in the dead-letter file
    passes: int = 0
    waiting: int = 0  # documents written since the last pass (an estimate; see `lag`)
    adopted: bool = False  # the index became a splade-os index in this run
    stopped: bool = False  # ended by Ctrl-C or `stop` (follow)
    seconds: float = 0.0
    dead_letter_path: Optional[Path] = None
    checkpoint_path: Optional[Path] = None
    fusion: str = ""  # the hybrid fusion measured at the end of a first complete run, in words (or why not)

    @property
    def docs_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0


def content_hash(content: str) -> str:
    """The `splade_hash` of what the encoder reads: a document is current when this matches."""
    return hashlib.blake2b(content.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def default_checkpoint(index: str, uuid: str, slice_: Optional[Tuple[int, int]] = None) -> Path:
    """The cache's `checkpoints/enrich-<index>-<uuid>[-<i>of<n>].json`."""
    part = f"-{slice_[0]}of{slice_[1]}" if slice_ else ""
    return cache_dir() / "checkpoints" / f"enrich-{index}-{uuid[:12]}{part}.json"


def _value(source: dict, path: str):
    """The value at a dotted `path` of a `_source` (a key with dots in it, or nested objects)."""
    if path in source:
        return source[path]
    head, _, rest = path.partition(".")
    inner = source.get(head)
    return _value(inner, rest) if rest and isinstance(inner, dict) else None


@dataclass
class _Read:
    """One document as read: where it is, which version, and what to encode."""

    id: str
    shard: str
    seq_no: int
    primary_term: int
    source: dict  # the fields read (`whole`: the whole `_source`)
    whole: bool = False
    content: Optional[str] = None
    problem: Optional[str] = None


class _Run:
    """One `enrich` call: the index, the encoder and the bulk sender, the checkpoint, the counts."""

    def __init__(self, index, model, encoder, options: EnrichOptions, state: EnrichState, checkpoint: Path,
                 dead: DeadLetters, show_progress: bool, stop: Optional[threading.Event] = None):
        self.index, self.cluster, self.model = index, index.cluster, model
        self._encoder, self.options, self.state = encoder, options, state
        self.checkpoint, self.dead, self.show_progress = checkpoint, dead, show_progress
        self.text_field, self.title_field = index.text_field, index.title_field
        self.vector_options = index.vector_options
        # What a pass reads of each document: what is encoded, its hash, and whether splade-os wrote it.
        self.read_fields = list(dict.fromkeys([self.title_field, self.text_field, HASH_FIELD, "splade_model",
                                               "ingested_at"]))
        self.began = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # this run's writes are not "current"
        self.lines = BulkLines(index.name, index.field, model.query_encoder.keys)
        self.max_bytes = request_bytes(self.cluster, options.bulk.max_bytes)
        self.pool = ThreadPoolExecutor(max_workers=options.bulk.workers, thread_name_prefix="splade-os-enrich")
        identity = model.identity
        self.stamp = {"name": identity.name, "version": identity.version}
        self.stop, self.stop_asked = stop, False  # `stop`: the caller's; `stop_asked`: Ctrl-C
        self.on_retry = (lambda message: note(True, f"retrying: {message}")) if show_progress else None

    @property
    def encoder(self):
        """The document encoder, loaded when a first document needs it (a pass may find none)."""
        if self._encoder is None:
            self._encoder = _encoder(self.model, self.index, self.options, self.show_progress)
        if self._encoder.vocab_size != len(self.model.query_encoder.keys):
            raise ModelError(f"{self.model.root}: the document route has {self._encoder.vocab_size} outputs but "
                             f"the query vocabulary has {len(self.model.query_encoder.keys)} tokens")
        return self._encoder

    def stopped(self) -> bool:
        return self.stop_asked or (self.stop is not None and self.stop.is_set())

    # -- reading ---------------------------------------------------------------------------------

    def limits(self) -> Dict[str, int]:
        """Per shard of this reader, the global checkpoint of its primary: what a pass reads up to."""
        answer = self.cluster.request("GET", f"/{self.index.name}/_stats/docs", params={"level": "shards"},
                                      action=f"reading the shard stats of {self.index.name!r}")
        shards = answer["indices"][self.index.name]["shards"]
        limits = {}
        for shard, copies in shards.items():
            if self.options.slice and int(shard) % self.options.slice[1] != self.options.slice[0]:
                continue
            primary = next((c for c in copies if c["routing"]["primary"]), None)
            if primary is None:
                raise IndexStateError(f"shard {shard} of index {self.index.name!r} has no primary; wait for the "
                                      "cluster to recover")
            limits[shard] = primary["seq_no"]["global_checkpoint"]
        return limits

    def read(self, shard: str, after: int, upto: int) -> List[dict]:
        body = {"size": self.options.batch, "query": {"range": {"_seq_no": {"gt": after, "lte": upto}}},
                "sort": [{"_seq_no": "asc"}], "seq_no_primary_term": True, "track_total_hits": False,
                "_source": self.read_fields}
        answer = self.index.request_search(body, params={"preference": f"_shards:{shard}"})
        return answer["hits"]["hits"]

    def waiting(self, since: Optional[str]) -> int:
        """Documents after the cursors, not counting the ones this run wrote since `since` (an ISO time)."""
        total = 0
        for shard, at in self.state.positions.items():
            query: dict = {"range": {"_seq_no": {"gt": at}}}
            if since:
                query = {"bool": {"filter": [query], "must_not": [{"range": {"ingested_at": {"gte": since}}}]}}
            answer = self.cluster.request("POST", f"/{self.index.name}/_count", {"query": query},
                                          params={"preference": f"_shards:{shard}"},
                                          action=f"counting the waiting documents of {self.index.name!r}")
            total += answer["count"]
        return total

    def reread(self, docs: List[_Read], whole: bool = False) -> List[_Read]:
        """The documents as they are now, classified (`whole`: with their whole `_source`); the
        deleted ones are left out and counted."""
        params = None if whole else {"_source": ",".join(self.read_fields)}
        answer = self.cluster.request("POST", f"/{self.index.name}/_mget", {"ids": [d.id for d in docs]},
                                      params=params, action=f"reading documents of {self.index.name!r} again")
        fresh = []
        for doc, found in zip(docs, answer["docs"]):
            if not found.get("found"):
                self.state.deleted += 1
                continue
            fresh.append(self.classify(found, doc.shard, whole))
        return fresh

    # -- deciding and writing --------------------------------------------------------------------

    def classify(self, hit: dict, shard: str, whole: bool = False) -> _Read:
        source = hit.get("_source") or {}
        doc = _Read(hit["_id"], shard, hit["_seq_no"], hit["_primary_term"], source, whole)
        text, title = _value(source, self.text_field), _value(source, self.title_field)
        if text is None:
            doc.problem = f"the document has no {self.text_field!r} field"
        elif not isinstance(text, str):
            doc.problem = f"field {self.text_field!r} is not text (a {type(text).__name__})"
        elif title is not None and not isinstance(title, str):
            doc.problem = f"field {self.title_field!r} is not text (a {type(title).__name__})"
        elif not text.strip() and not (title or "").strip():
            doc.problem = f"field {self.text_field!r} is empty"
        else:
            doc.content = f"{title} {text}" if title else text
        return doc

    def reject(self, doc: _Read, reason: str) -> None:
        shown = {key: value for key, value in doc.source.items() if key not in self.index.reserved_fields}
        self.dead.write({"index": self.index.name, "id": doc.id, "shard": int(doc.shard), "seq_no": doc.seq_no,
                         "reason": reason}, json.dumps(shown, ensure_ascii=False).encode("utf-8"))
        self.state.rejected += 1

    def prepare(self, docs: List[_Read]) -> List[_Read]:
        """The documents (as classified) to encode; the current ones are counted, the bad ones rejected.

        A document splade-os already wrote features into is read whole: it is written whole, so no
        stale feature survives (a partial update would merge the old features with the new).
        """
        todo = self.to_encode(docs)
        stamped = [doc for doc in todo if not doc.whole and "splade_model" in doc.source]
        if stamped:
            todo = [doc for doc in todo if doc.whole or "splade_model" not in doc.source]
            todo += self.to_encode(self.reread(stamped, whole=True))
        return todo

    def settle(self, docs: List[_Read], vectors: list) -> None:
        """Write the encoded `docs`; those another writer changed meanwhile are read, encoded and written
        again, up to `CONFLICT_ROUNDS` times."""
        for _ in range(CONFLICT_ROUNDS):
            changed = self.write(docs, vectors)
            if not changed:
                return
            self.state.conflicts += len(changed)
            docs = self.prepare(self.reread(changed))
            if not docs:
                return
            vectors = self.encoder.encode([doc.content for doc in docs])
        # Still changing: a later pass reads them again (their sequence numbers moved past the cursor).

    def to_encode(self, docs: List[_Read]) -> List[_Read]:
        """The documents whose vectors are missing or stale; the others are counted or rejected."""
        todo = []
        for doc in docs:
            if doc.problem:
                self.reject(doc, doc.problem)
            elif doc.source.get(HASH_FIELD) == content_hash(doc.content):
                # Found current; not counted when this run wrote it (the pass after a write reads it again).
                self.state.current += str(doc.source.get("ingested_at") or "") < self.began
            else:
                todo.append(doc)
        return todo

    def write(self, docs: List[_Read], vectors: list) -> List[_Read]:
        """Send the encoded `docs`; the ones changed by another writer since they were read."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sent, actions = [], []
        for doc, vector in zip(docs, vectors):
            vector, problem = checked_vector(vector, self.vector_options)
            if problem:
                self.reject(doc, problem)
                continue
            ours = {HASH_FIELD: content_hash(doc.content), "splade_model": self.stamp, "ingested_at": when}
            version = (doc.seq_no, doc.primary_term)
            if doc.whole:
                kept = {key: value for key, value in doc.source.items() if key not in self.index.reserved_fields}
                actions.append(self.lines.document(doc.id, {**kept, **ours}, vector, condition=version))
            else:
                actions.append(self.lines.update(doc.id, version, ours, vector))
            sent.append(doc)
        reasons = send_documents(self.cluster, actions, self.options.bulk.docs, self.max_bytes,
                                 self.options.bulk.retry, self.pool, self.on_retry)
        changed = []
        for doc, reason in zip(sent, reasons):
            status = getattr(reason, "status", None)
            if reason is None:
                self.state.encoded += 1
            elif status == 409:
                changed.append(doc)
            elif status == 404:
                self.state.deleted += 1
            else:
                self.reject(doc, reason)
        return changed

    # -- passes ----------------------------------------------------------------------------------

    def one_pass(self, progress) -> int:
        """Read every shard of this reader up to its global checkpoint; documents encoded.

        The pages of a shard stream through the encoder: the next page is read and tokenized
        while the current one is encoded, as `ingest` streams a corpus.
        """
        before = self.state.encoded
        limits = self.limits()
        self.index.refresh()
        for shard, upto in sorted(limits.items(), key=lambda item: int(item[0])):
            start = self.state.positions.setdefault(shard, -1)
            for (docs, at, read), vectors in self.encoder.encode_stream(self.pages(shard, start, upto)):
                if docs:
                    self.settle(docs, vectors)
                progress.update(read)
                self.state.positions[shard] = at
                self.state.save(self.checkpoint)
                progress.set_postfix_str(self.progress_note(), refresh=False)
        self.state.passes += 1
        self.state.save(self.checkpoint)
        return self.state.encoded - before

    def pages(self, shard: str, at: int, upto: int):
        """((documents to encode, the page's last sequence number, documents read), their texts) per
        page of `shard` after `at` up to `upto`; stops early when the run is asked to stop."""
        while at < upto and not self.stopped():
            hits = self.read(shard, at, upto)
            at = hits[-1]["_seq_no"] if hits else upto
            docs = self.prepare([self.classify(hit, shard) for hit in hits])
            yield (docs, at, len(hits)), [doc.content for doc in docs]

    def progress_note(self) -> str:
        s = self.state
        return f"encoded {s.encoded}, current {s.current}, rejected {s.rejected}, conflicts {s.conflicts}"


def enrich(cluster, index: str, model=None, *, options: Optional[EnrichOptions] = None, encoder=None,
           show_progress: bool = True, stop: Optional[threading.Event] = None) -> EnrichStats:
    """Add SPLADE vectors to the documents of an existing index, in place; see the module docstring.

    Args:
        cluster: the `splade_os.cluster.Cluster`.
        index: the index (or an alias of exactly one index) the app writes to.
        model: a `splade_os.models.resolve.Model`; default: the index's own once enriched, else
            the bundled default model.
        options: `EnrichOptions` (`text_field` is needed the first time).
        encoder: a ready `DocumentEncoder` to reuse (else one is built for the model).
        show_progress: a progress bar and notes on stderr.
        stop: with `follow`, set it to end the run after the batch in flight.

    Returns:
        `EnrichStats`: what this call did.

    Raises:
        IndexStateError: see `SpladeIndex.adopt`.
        ModelMismatchError: the index holds another model's vectors.
    """
    from splade_os.models.resolve import model_of_index, resolve_model

    options = options or EnrichOptions()
    started = time.perf_counter()
    target = cluster.index(index)
    recorded = _recorded_fields(target)
    if recorded is None and not options.text_field:
        raise InputError(f"index {index!r} is not enriched yet: name the field to encode with --text-field")
    if model is None:
        model = model_of_index(target, show_progress=show_progress, allow_pickle=options.allow_pickle) \
            if recorded else resolve_model(None, cluster, show_progress)
    title, text = recorded or ("title", None)
    settings = IndexSettings(field=options.field if recorded is None else target.field,
                             title_field=options.title_field or title, text_field=options.text_field or text)
    adopted = target.adopt(model, settings)
    if adopted:
        note(show_progress, f"Enriching index {index!r}: field {settings.field!r} added for model "
                            f"{model.identity.name} ({model.identity.version}), text from {settings.text_field!r}")
    name, uuid = _concrete(cluster, index)
    target = cluster.index(name)
    checkpoint = Path(options.checkpoint or default_checkpoint(name, uuid, options.slice))
    state = EnrichState.load(checkpoint)
    if state is not None and (state.uuid != uuid or state.fingerprint != model.identity.fingerprint):
        note(show_progress, f"{checkpoint}: made for another index or model; starting over")
        state = None
    resumed = state is not None
    if state is None:
        state = EnrichState(index=name, uuid=uuid, fingerprint=model.identity.fingerprint,
                            dead_letter=str(options.dead_letter or f"{name}.rejected.jsonl"))
    dead_path = Path(state.dead_letter)
    if resumed:
        state.rejected = _trim_dead_letters(dead_path, state.positions)
        note(show_progress, f"Resuming enrich of {name!r} from {checkpoint} ({state.encoded} encoded so far)")
    stats = EnrichStats(index=name, adopted=adopted, checkpoint_path=checkpoint)
    before = {key: getattr(state, key) for key in COUNTS}
    with DeadLetters(dead_path, name, append=resumed) as dead:
        run = _Run(target, model, encoder, options, state, checkpoint, dead, show_progress, stop)
        with _stop_on_interrupt(run), run.pool:
            _passes(run, options, show_progress, stats)
    for key in COUNTS:
        setattr(stats, key, getattr(state, key) - before[key])
    stats.dead_letter_path = dead_path if stats.rejected else None
    if stats.encoded and not stats.stopped and not options.follow and "fusion" not in cluster.index(name).meta:
        # The first complete run measures the hybrid fusion, as ingest does (`splade-os calibrate` again later).
        try:
            stats.fusion = cluster.index(name).calibrate_fusion(model.query_encoder).describe()
        except InputError as e:
            stats.fusion = f"default fusion kept: {e}"
    stats.seconds = time.perf_counter() - started
    return stats


def _passes(run: _Run, options: EnrichOptions, show_progress: bool, stats: EnrichStats) -> None:
    progress = bar(show_progress, unit="doc", desc=f"enrich {run.index.name}")
    waiting_since = None  # when a pass first left documents waiting
    with progress:
        for _ in range(10**9 if options.follow else MAX_PASSES):
            began = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            encoded = run.one_pass(progress)
            if run.stopped():
                stats.stopped = True
                return
            if not options.follow:
                if encoded == 0:
                    return
                continue
            stats.waiting = run.waiting(began)  # what this run wrote since the pass began is not waiting
            waiting_since = (waiting_since or time.monotonic()) if stats.waiting else None
            age = f", oldest waiting {time.monotonic() - waiting_since:.0f} s" if waiting_since else ""
            progress.set_postfix_str(f"{run.progress_note()}; waiting {stats.waiting}{age}", refresh=True)
            if _wait(run, options.interval):
                stats.stopped = True
                return
        note(show_progress, f"other writers kept changing documents for {MAX_PASSES} passes; the next run (or "
                            "--follow) picks up the rest")


def _wait(run: _Run, seconds: float) -> bool:
    """Wait `seconds` or until stopped; whether stopped."""
    deadline = time.monotonic() + seconds
    while not run.stopped() and time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return run.stopped()


class _stop_on_interrupt:
    """Within the block, Ctrl-C (main thread only) asks the run to end after the batch in flight."""

    def __init__(self, run: _Run):
        self.run, self.previous = run, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            def ask(signum, frame):
                self.run.stop_asked = True
            self.previous = signal.signal(signal.SIGINT, ask)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _recorded_fields(index) -> Optional[Tuple[str, str]]:
    """(title field, text field) an enriched or splade-os index records; None for an app's own index."""
    try:
        return index.title_field, index.text_field
    except IndexStateError:
        if not index.exists():
            raise IndexStateError(f"index {index.name!r} does not exist") from None
        return None


def _concrete(cluster, name: str) -> Tuple[str, str]:
    """(concrete index name, its uuid) of an index or an alias of one index."""
    answer = cluster.request("GET", f"/{name}/_settings/index.uuid", action=f"reading the settings of {name!r}")
    (concrete, body), = answer.items()
    return concrete, body["settings"]["index"]["uuid"]


def _encoder(model, index, options: EnrichOptions, show_progress: bool):
    from splade_os.documents.encoder import make_encoder

    vectors = index.vector_options
    note(show_progress, f"Loading the document encoder of {model.name}...")
    return make_encoder(model, device=options.device, dtype=options.dtype, long_docs=vectors.long_docs,
                        max_windows=vectors.max_windows)


def _trim_dead_letters(path: Path, positions: Dict[str, int]) -> int:
    """Drop dead letters past the checkpoint (their documents will be read again); how many remain."""
    if not path.exists():
        return 0
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
            and json.loads(line).get("seq_no", -1) <= positions.get(str(json.loads(line).get("shard")), -1)]
    atomic_write(path, "".join(line + "\n" for line in kept))
    return len(kept)
