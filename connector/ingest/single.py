"""Streaming a JSONL corpus through the document encoder into an index, losing nothing.

An ingest is three steps:

1. **plan** (`plan_ingest`): which concrete index receives the documents (a new one behind an
   alias, or the one named), the model, the checkpoint to resume from, the dead-letter file;
   the index is created when missing.
2. **run** (`run_pipeline`): three stages overlap. The reader parses lines, the encoder turns
   windows of documents into sparse vectors (tokenizing the next windows on a thread pool while
   the device works), and a sender thread turns finished windows into bulk requests (several in
   flight at once). A bounded queue between them keeps memory flat. Every line ends up
   acknowledged by the cluster or in the dead-letter file; after each window the cluster has
   settled, the checkpoint records the input line up to which that holds, so a crash or Ctrl-C
   costs at most the windows in flight.
3. **publish** (`publish`): refresh, check `_count`, move the alias to the new index (one
   atomic request) only when the counts check out, prune old indexes of the alias.

Example:
    >>> cluster = connect("http://localhost:9200")
    >>> stats = ingest(cluster, "corpus.jsonl", "docs")
    >>> stats.indexed, stats.rejected
    (1398, 2)
"""

import json
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

from splade_os.ingest.checkpoint import Checkpoint, default_path
from splade_os.bulk.requests import BulkLines, BulkOptions, request_bytes
from splade_os.corpus.jsonl import CorpusFields, DeadLetters, Document, Rejected, read_corpus
from splade_os.common.errors import IndexStateError, IngestInterrupted, InputError, ModelError
from splade_os.common.files import atomic_write
from splade_os.common.progress import bar, note, ticking
from splade_os.bulk.sender import document_fields, send_documents, usable
from splade_os.documents.settings import IndexSettings
from splade_os.documents.vectors import VectorOptions

if TYPE_CHECKING:  # the index module offers `SpladeIndex.ingest`, which calls into this one
    from splade_os.cluster.index import SpladeIndex
    from splade_os.ingest.ray import RayOptions

_DONE = object()
QUEUE_WINDOWS = 2  # encoded windows waiting for the sender


@dataclass
class IngestOptions:
    """How an ingest reads, encodes, sends and recovers.

    Attributes:
        fields: which JSON fields hold id, text and title (text and title left as None: the
            existing index's, else "text" and "title"). Every field of a line is kept in the
            document's `_source`; the id field becomes its `_id`.
        index: shards, replicas, refresh interval and field of a new index
            (`splade_os.cluster.index.IndexSettings`; its defaults when None).
        bulk: documents and bytes per request, requests in flight, retry policy.
        window: documents encoded together (sorted by length inside); the checkpoint's step.
        device, dtype: for the encoder ("cuda", "cpu", "cuda:0,cuda:1", "all"; "auto" = bf16 on GPU).
        dead_letter: where rejected lines go (default `<corpus stem>.rejected.jsonl` in the cwd).
        checkpoint: the checkpoint file (default: in the cache, named after corpus and index).
        resume: continue an interrupted ingest of the same input from its checkpoint.
        keep: with an alias, keep only the newest `keep` indexes of it.
        shard: (i, n) to take only the lines whose (line - 1) % n == i.
        ray: a `splade_os.ingest.ray.RayOptions` to encode and send on a Ray cluster (an actor pool
            of encoders, each with its own cluster client) instead of in this process.
        allow_pickle: the index's own model may load weights that exist only as a pickle.
        calibrate_fusion: at the end, measure the hybrid fusion on self-supervised queries of the
            index and record it in its `_meta` (`SpladeIndex.calibrate_fusion`; a few seconds).
    """

    fields: Optional[CorpusFields] = None
    index: Optional["IndexSettings"] = None
    bulk: BulkOptions = field(default_factory=BulkOptions)
    window: int = 1024
    device: Optional[str] = None
    dtype: str = "auto"
    dead_letter: Optional[Path] = None
    checkpoint: Optional[Path] = None
    resume: bool = False
    keep: Optional[int] = None
    shard: Optional[Tuple[int, int]] = None
    ray: Optional["RayOptions"] = None
    allow_pickle: bool = False
    calibrate_fusion: bool = True


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
    cut: int = 0  # documents not encoded in full (truncated, or more token windows than allowed)
    vectors: Optional[VectorOptions] = None  # how the index makes document vectors
    fusion: str = ""  # the hybrid fusion measured and recorded at the end, in words (or why not)
    model: dict = field(default_factory=dict)  # the model's name, version and source (`ModelIdentity`)

    @property
    def cut_note(self) -> str:
        """What happened to the documents counted in `cut`, in one line."""
        if self.vectors is not None and self.vectors.long_docs == "windows":
            return (f"{self.cut} document(s) had more than {self.vectors.max_windows} token windows; only their "
                    "first windows were encoded (raise --max-windows to encode more)")
        return (f"{self.cut} document(s) were longer than the model's maximum length and were truncated "
                "(--long-docs windows encodes them in full)")

    @property
    def docs_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class IngestPlan:
    """What `plan_ingest` decided: the target, the model, and where the run stands."""

    corpus: Path
    index: "SpladeIndex"  # the concrete index receiving the documents
    model: object  # splade_os.models.resolve.Model
    state: Checkpoint
    checkpoint_path: Path
    dead_letter_path: Path
    alias: Optional[str] = None
    resumed: bool = False
    fields: CorpusFields = field(default_factory=CorpusFields)  # the corpus fields, made concrete for the index


def ingest(cluster, corpus, index: Optional[str] = None, model=None, *, alias: Optional[str] = None,
           options: Optional[IngestOptions] = None, encoder=None, show_progress: bool = True) -> IngestStats:
    """Encode a JSONL corpus and index it.

    Args:
        cluster: the `splade_os.cluster.Cluster`.
        corpus: the JSONL file; one JSON object per line (BEIR's `_id`, `title`, `text` by default).
        index: the target index, created (with its pipeline) when missing; None with `alias`.
        model: a `splade_os.models.resolve.Model`; default: the index's own model when the index exists,
            else the bundled default model.
        alias: build a new concrete index `<alias>-<model version>-<time>` and move the alias to
            it atomically once the ingest succeeded and the counts check out.
        options: `IngestOptions` (defaults otherwise).
        encoder: a ready `DocumentEncoder` to reuse (else one is built for the model).
        show_progress: a progress bar and notes on stderr.

    Returns:
        `IngestStats`: indexed and rejected counts, wall time, the index's `_count` afterwards.

    Raises:
        IngestInterrupted: on Ctrl-C, after the windows in flight were settled.
        ModelMismatchError: the index exists and was made for another model.
    """
    options = options or IngestOptions()
    started = time.perf_counter()
    plan = plan_ingest(cluster, corpus, index, model, alias, options, show_progress)
    identity = plan.model.identity
    model_fields = {"name": identity.name, "version": identity.version, "source": identity.source}
    if plan.state.complete:
        note(show_progress, f"{plan.checkpoint_path}: that ingest already completed")
        return IngestStats(index=plan.index.name, indexed=plan.state.indexed, rejected=plan.state.rejected,
                           count_after=plan.index.count(), checkpoint_path=plan.checkpoint_path, model=model_fields)
    if plan.resumed:
        from splade_os.ingest.ray import check_resume_mode

        check_resume_mode(plan.checkpoint_path, on_ray=options.ray is not None)
    if options.ray is not None:
        from splade_os.ingest.ray import run_on_ray

        indexed, rejected = run_on_ray(plan, options, show_progress)
        stats = IngestStats(index=plan.index.name, indexed=indexed, rejected=rejected,
                            checkpoint_path=plan.checkpoint_path,
                            dead_letter_path=plan.dead_letter_path if rejected else None)
    else:
        stats = run_pipeline(plan, _encoder(plan, options, encoder, show_progress), options, show_progress)
    publish(plan, stats, options.keep, options.calibrate_fusion)
    stats.seconds, stats.model = time.perf_counter() - started, model_fields
    return stats


def plan_ingest(cluster, corpus, index: Optional[str], model, alias: Optional[str], options: IngestOptions,
                show_progress: bool = True) -> IngestPlan:
    """Decide the target index, the model and the starting point; create the index when missing."""
    from splade_os.models.resolve import model_of_index, resolve_model

    corpus = Path(corpus)
    if not corpus.is_file():
        raise InputError(f"{corpus}: no such file")
    if bool(index) == bool(alias):
        raise InputError("give exactly one of an index or an alias")
    if options.keep is not None and (not alias or options.keep < 1):
        raise InputError("keep: needs an alias and a number >= 1")
    checkpoint_path = Path(options.checkpoint or default_path(corpus, index or alias))
    if options.resume:
        state = Checkpoint.load(checkpoint_path)
        if not state.matches(corpus) or state.input != str(corpus.resolve()):
            raise InputError(f"{corpus}: the input changed since checkpoint {checkpoint_path} was written")
        index, alias = state.index, state.alias
    target = cluster.index(index) if index else None
    if model is None:
        model = model_of_index(target, show_progress=show_progress, allow_pickle=options.allow_pickle) \
            if target and target.exists() else resolve_model(None, cluster, show_progress)
    identity = model.identity
    if options.resume:
        if state.fingerprint != identity.fingerprint:
            raise ModelError(f"{checkpoint_path}: the interrupted run used another model; resume with the same --model")
        dead_letter_path = Path(state.dead_letter)
    else:
        if alias:
            if cluster.exists(f"/{alias}") and not cluster.exists(f"/_alias/{alias}"):
                raise IndexStateError(f"{alias!r} is a concrete index, not an alias; choose another alias name")
            target = cluster.index(f"{alias}-{identity.version}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
                                   .lower())
        dead_letter_path = Path(options.dead_letter or f"{corpus.stem}.rejected.jsonl")
        stat = corpus.stat()
        state = Checkpoint(
            input=str(corpus.resolve()), input_size=stat.st_size, input_mtime=stat.st_mtime, index=target.name,
            fingerprint=identity.fingerprint, dead_letter=str(dead_letter_path), alias=alias)
    fields, settings = _fields_and_settings(target, options, alias)
    if target.create(model, settings):
        note(show_progress, f"Created index {target.name!r} for model {identity.name} ({identity.version})")
    else:
        target.check_fingerprint(identity.fingerprint)
    return IngestPlan(corpus, target, model, state, checkpoint_path, dead_letter_path, alias, options.resume, fields)


def _fields_and_settings(target: "SpladeIndex", options: IngestOptions, alias: Optional[str]):
    """The corpus fields for `target` and the settings that record them in a new index.

    An existing index keeps its recorded title and text fields. A new generation of an alias
    takes, where not given, the fields and the user mapping of the index the alias points to now.
    """
    settings = options.index or IndexSettings()
    given = options.fields or CorpusFields()
    recorded = (target.title_field, target.text_field) if target.exists() else None
    if recorded is None and alias and target.cluster.exists(f"/_alias/{alias}"):
        current = target.cluster.index(alias)
        given = CorpusFields(given.id, given.text or current.text_field, given.title or current.title_field)
        if settings.mapping is None:
            settings = replace(settings, mapping=current.user_mapping)
    fields = given.for_index(target.name, recorded)
    if fields.id in (fields.text, fields.title):
        raise InputError(f"the id field {fields.id!r} cannot also be the text or title field")
    return fields, replace(settings, title_field=fields.title, text_field=fields.text)


class _Sender(threading.Thread):
    """Sends encoded windows, settles every item, and advances the checkpoint window by window."""

    def __init__(self, plan: IngestPlan, dead: DeadLetters, bulk: BulkOptions, stats: IngestStats,
                 show_progress: bool):
        super().__init__(daemon=True, name="splade-os-bulk")
        self.plan, self.dead, self.stats = plan, dead, stats
        cluster = plan.index.cluster
        self.cluster = cluster
        self.lines = BulkLines(plan.index.name, plan.index.field, plan.model.query_encoder.keys,
                               plan.index.packed_field)
        self.max_docs = bulk.docs
        self.max_bytes = request_bytes(cluster, bulk.max_bytes)
        self.policy = bulk.retry
        self.pool = ThreadPoolExecutor(max_workers=bulk.workers, thread_name_prefix="splade-os-bulk")
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

    def _settle(self, docs: List[Document], vectors: list, last_line: int):
        fields = document_fields(self.plan.index.pipeline, self.plan.model.identity)
        actions = [self.lines.document(d.id, fields(d), v) for d, v in zip(docs, vectors)]
        reasons = send_documents(self.cluster, actions, self.max_docs, self.max_bytes, self.policy, self.pool,
                                 self.on_retry)
        for doc, reason in zip(docs, reasons):
            if reason is None:
                self.stats.indexed += 1
            else:
                self.dead.add(doc.line, reason, doc.raw)
        state = self.plan.state
        state.line, state.indexed, state.rejected = last_line, self.stats.indexed, self.dead.count
        state.save(self.plan.checkpoint_path)


def _windows(plan: IngestPlan, options: IngestOptions, dead: DeadLetters, progress, last_line: list):
    """(documents, last line) windows of the corpus; rejected lines go to `dead` as they are read.

    The last window also accounts for trailing rejected lines (it may hold no document).
    """
    pending: List[Document] = []
    for item in read_corpus(plan.corpus, plan.fields, skip_lines=plan.state.line, shard=options.shard,
                            reserved=plan.index.reserved_fields):
        last_line[0] = item.line
        if isinstance(item, Rejected):
            dead.add(item.line, item.reason, item.raw)
            progress.update(1)
            continue
        pending.append(item)
        if len(pending) >= options.window:
            yield (pending, item.line), [d.content for d in pending]
            pending = []
    yield (pending, last_line[0]), [d.content for d in pending]


def _encoder(plan: IngestPlan, options: IngestOptions, encoder, show_progress: bool):
    """The given encoder (checked against how the index cuts long documents), or one built for the plan."""
    vectors = plan.index.vector_options
    if encoder is None:
        from splade_os.documents.encoder import make_encoder

        note(show_progress, f"Loading the document encoder of {plan.model.name}...")
        return make_encoder(plan.model, device=options.device, dtype=options.dtype, long_docs=vectors.long_docs,
                            max_windows=vectors.max_windows)
    if (getattr(encoder, "long_docs", vectors.long_docs), getattr(encoder, "max_windows", vectors.max_windows)) \
            != (vectors.long_docs, vectors.max_windows):
        raise InputError(f"the given encoder cuts long documents as {encoder.long_docs!r} ({encoder.max_windows} "
                         f"windows) but index {plan.index.name!r} records {vectors.long_docs!r} "
                         f"({vectors.max_windows} windows)")
    return encoder


def run_pipeline(plan: IngestPlan, encoder, options: IngestOptions, show_progress: bool = True) -> IngestStats:
    """Read, encode and send the corpus from the plan's starting line; see the module docstring."""
    if encoder.vocab_size != len(plan.model.query_encoder.keys):
        raise ModelError(f"{plan.model.root}: the document route has {encoder.vocab_size} outputs but the query "
                         f"vocabulary has {len(plan.model.query_encoder.keys)} tokens")
    state = plan.state
    stats = IngestStats(index=plan.index.name, indexed=state.indexed, checkpoint_path=plan.checkpoint_path,
                        resumed_from_line=state.line)
    if plan.resumed:
        note(show_progress, f"Resuming after line {state.line} ({state.indexed} indexed, {state.rejected} rejected)")
        _trim_dead_letters(plan.dead_letter_path, state.line)
    state.save(plan.checkpoint_path)
    total = _count_lines(plan.corpus)
    progress = bar(show_progress, total=total, initial=state.line if total else 0, unit="doc",
                   desc=f"ingest {plan.corpus.name}")
    with DeadLetters(plan.dead_letter_path, str(plan.corpus), append=plan.resumed) as dead, progress, \
            ticking(progress):
        sender = _Sender(plan, dead, options.bulk, stats, show_progress)
        sender.start()
        last_line = [state.line]
        interrupted = False
        vector_options = plan.index.vector_options
        try:
            for (docs, line), vectors in encoder.encode_stream(_windows(plan, options, dead, progress, last_line),
                                                               on_batch=progress.update):
                _put(sender, (*usable(docs, vectors, dead, vector_options), line))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            _put(sender, _DONE)
            sender.join()
        if sender.error is not None:
            raise sender.error
        if interrupted:
            raise IngestInterrupted(
                f"interrupted: everything up to line {state.line} of {plan.corpus} is settled "
                f"({state.indexed} indexed, {state.rejected} rejected); continue with --resume")
        stats.rejected = dead.count
    stats.cut, stats.vectors = getattr(encoder, "cut", 0), vector_options
    stats.dead_letter_path = plan.dead_letter_path if stats.rejected else None
    return stats


def publish(plan: IngestPlan, stats: IngestStats, keep: Optional[int] = None, calibrate: bool = True) -> None:
    """Refresh and count; measure and record the hybrid fusion; with an alias, switch it to the new
    index when the counts check out, then prune."""
    index = plan.index
    index.refresh()
    stats.count_after = index.count()
    if calibrate:
        try:
            stats.fusion = index.calibrate_fusion(plan.model.query_encoder).describe()
        except InputError as e:  # too few documents to measure: the default fusion stays
            stats.fusion = f"default fusion kept: {e}"
    if plan.alias:
        if stats.count_after != stats.indexed:
            raise IndexStateError(
                f"index {index.name!r} holds {stats.count_after} documents but {stats.indexed} were acknowledged; "
                f"alias {plan.alias!r} left where it was")
        switch_alias(index.cluster, plan.alias, index.name)
        stats.alias_switched = True
        if keep:
            prune_alias(index.cluster, plan.alias, keep)
    plan.state.complete = True
    plan.state.save(plan.checkpoint_path)


def _count_lines(path: Path, limit_bytes: int = 2 << 30) -> Optional[int]:
    # Cheap enough to give the progress bar a total; skipped for huge files.
    if path.stat().st_size > limit_bytes:
        return None
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def _trim_dead_letters(path: Path, after_line: int) -> int:
    """Drop dead letters past the checkpoint (they will be read again); returns how many remain."""
    if not path.exists():
        return 0
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("line", 0) <= after_line]
    atomic_write(path, "".join(line + "\n" for line in kept))
    return len(kept)


def alias_targets(cluster, alias: str) -> List[str]:
    """The indexes `alias` points to now (none when it does not exist)."""
    if not cluster.exists(f"/_alias/{alias}"):
        return []
    return list(cluster.request("GET", f"/_alias/{alias}", action=f"reading alias {alias!r}"))


def alias_indexes(cluster, alias: str) -> List[str]:
    """The concrete indexes splade-os made for `alias`, oldest first."""
    found = cluster.request("GET", f"/{alias}-*", params={"expand_wildcards": "open", "ignore_unavailable": "true"},
                            action=f"listing the indexes of alias {alias!r}")
    made = [(int(body["settings"]["index"]["creation_date"]), name) for name, body in found.items()
            if body.get("mappings", {}).get("_meta", {}).get("splade_os")]
    return [name for _, name in sorted(made)]


def switch_alias(cluster, alias: str, index: str) -> None:
    """Point `alias` at `index` alone, in one request: readers see the old index or the new one, never none."""
    actions = [{"remove": {"index": name, "alias": alias}} for name in alias_targets(cluster, alias)]
    actions.append({"add": {"index": index, "alias": alias}})
    cluster.request("POST", "/_aliases", {"actions": actions}, action=f"moving alias {alias!r} to {index!r}")


def prune_alias(cluster, alias: str, keep: int) -> None:
    """Delete all but the newest `keep` indexes of the alias (never one the alias points to)."""
    live = set(alias_targets(cluster, alias))
    for name in alias_indexes(cluster, alias)[:-keep]:
        if name not in live:
            cluster.request("DELETE", f"/{name}", action=f"deleting old index {name!r}")


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
