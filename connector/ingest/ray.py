"""Ingest on Ray: the corpus cut into blocks, encoded and sent by a pool of actors, counted exactly.

`ingest(..., options=IngestOptions(ray=RayOptions(...)))` (or `splade-os ingest --ray`) runs the
encoding as a Ray Data job instead of in this process:

1. **plan** (this process, the driver): `plan_ingest` as for any ingest, then the corpus is cut
   into blocks: line ranges of a JSONL file (byte offsets found by one pass counting newlines)
   or the row groups of a Parquet file. The plan is saved beside the checkpoint.
2. **run** (the actors): `ray.data.from_items(blocks).map_batches(BlockWorker, concurrency=N)`.
   Each actor holds a `DocumentEncoder` (one GPU per actor where the cluster has GPUs, else CPU
   threads) and its own cluster client; it reads its block from the shared file, parses every
   line with `splade_os.corpus.parse_line`, encodes, and sends the bulk requests itself with the
   same builder and retry rules as the single-process ingest (`BulkLines`, `send_chunk`), so no
   document passes through the driver. A block's answer is small: per document a 64-bit id
   digest, its line and whether the cluster acknowledged it, and the block's dead letters. The
   driver stores it (`<checkpoint>.ray/`) as blocks finish: a crash of the driver costs the
   blocks in flight, and `--resume` skips the finished ones.
3. **settle** (the driver): duplicate ids are found over all blocks at once (the same 64-bit
   digests `read_corpus` keeps) and the dead-letter file is written from the blocks' records,
   so counts and dead letters are those of the single-process ingest; then `publish`.

Exactly-once without coordination: ids are stable, and every write carries an external version
(`version_type` external_gte) that decreases with the line number, so a block that Ray retries
after a worker died overwrites its own documents, and where an id occurs twice the first
occurrence is what the index keeps, whichever block arrives first.

The corpus must be readable at the same path by every Ray node (a shared filesystem), and the
model resolvable there: the default model, a registry model (`NAME@VERSION`, pulled from the
cluster by each worker) or a folder on the shared filesystem.

Example:
    >>> options = IngestOptions(ray=RayOptions(address="auto", workers=8))
    >>> stats = ingest(cluster, "corpus.jsonl", "docs", options=options)
"""

import base64
import hashlib
import json
import math
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from splade_os.bulk.requests import BulkLines, BulkOptions, RetryPolicy, request_bytes, send_chunk, source_bytes
from splade_os.corpus.jsonl import DEFAULT_MAX_LINE_BYTES, CorpusFields, DeadLetters, Document, Rejected, parse_line, parse_record
from splade_os.corpus.jsonl import read_lines
from splade_os.common.errors import IngestInterrupted, InputError, ModelError, SpladeOSError
from splade_os.common.extras import require
from splade_os.common.files import atomic_write
from splade_os.common.progress import bar, note

LINE_LIMIT = 1 << 32  # the line number takes the low 32 bits of a document's version
MAX_BLOCK_LINES = 20000


@dataclass
class RayOptions:
    """Where and how wide an ingest runs on Ray.

    Attributes:
        address: the Ray cluster ("auto", "HOST:6379", "ray://HOST:10001"); None: the cluster this
            process is already connected to, else `ray.init()`'s default (RAY_ADDRESS, or a new
            local Ray that is shut down afterwards).
        workers: encoder actors; default: one per GPU of the cluster, else 1.
        block_lines: lines per block, the unit of work, of retries and of resume; default: about
            4 blocks per worker, at most 20,000 lines (Parquet: the file's row groups).
        gpus_per_worker: default 1 where the cluster has GPUs, else 0 (CPU actors).
        cpus_per_worker: CPU actors' threads; default: the cluster's CPUs / workers, at most a node's.
    """

    address: Optional[str] = None
    workers: Optional[int] = None
    block_lines: Optional[int] = None
    gpus_per_worker: Optional[float] = None
    cpus_per_worker: Optional[float] = None


@dataclass
class Block:
    """Part of the corpus: JSONL bytes [start, stop), or Parquet row group `start`; lines from `first_line`."""

    number: int
    start: int
    stop: int
    first_line: int
    lines: int


BLOCK_KEYS = ("number", "start", "stop", "first_line", "lines")


# -- blocks -------------------------------------------------------------------------------------

def corpus_format(path: Path) -> str:
    """"parquet" (the file starts with Parquet's magic bytes) or "jsonl"."""
    with open(path, "rb") as f:
        return "parquet" if f.read(4) == b"PAR1" else "jsonl"


def default_block_lines(path: Path, workers: int) -> int:
    """About 4 blocks per worker (from the mean length of the first MiB's lines), 50 to 20,000 lines."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    mean = len(head) / max(1, head.count(b"\n"))
    lines = path.stat().st_size / max(mean, 1.0)
    return int(min(MAX_BLOCK_LINES, max(50, math.ceil(lines / (4 * workers)))))


def jsonl_blocks(path: Path, block_lines: int, chunk_bytes: int = 1 << 24) -> List[Block]:
    """Cut a JSONL file after every `block_lines` newlines (one pass, newlines found with numpy)."""
    blocks: List[Block] = []
    start, first, in_block, offset, last = 0, 1, 0, 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            cut = block_lines - in_block - 1  # the newline that completes the current block
            if cut >= len(newlines):
                in_block += len(newlines)
            while cut < len(newlines):
                end = offset + int(newlines[cut]) + 1
                blocks.append(Block(len(blocks), start, end, first, block_lines))
                start, first = end, first + block_lines
                in_block = len(newlines) - cut - 1
                cut += block_lines
            offset += len(chunk)
            last = chunk[-1:]
    if offset > start:
        blocks.append(Block(len(blocks), start, offset, first, in_block + (last != b"\n")))
    return blocks


def parquet_blocks(path: Path) -> List[Block]:
    """One block per row group of a Parquet file (rows numbered from 1 as lines)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    blocks, first = [], 1
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group).num_rows
        blocks.append(Block(group, group, group + 1, first, rows))
        first += rows
    return blocks


def read_block(path: str, kind: str, block: Block, fields: CorpusFields,
               reserved: Sequence[str] = ()) -> Iterator[Union[Document, Rejected]]:
    """The block's documents and rejected lines, parsed as the single-process ingest parses them
    (every column of a Parquet row kept, as every field of a JSON line is)."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(path).read_row_group(block.start).to_pylist()
        for number, row in enumerate(rows, block.first_line):
            yield parse_record(row, number, source_bytes(row), fields, reserved)
        return
    for number, raw, too_long in read_lines(Path(path), DEFAULT_MAX_LINE_BYTES, block.start, block.stop,
                                            block.first_line):
        yield Rejected(number, f"line longer than {DEFAULT_MAX_LINE_BYTES} bytes", raw) if too_long \
            else parse_line(raw, number, fields, reserved)


def id_digest(doc_id: str) -> int:
    """The 64-bit digest `read_corpus` compares ids by, as an integer."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little")


# -- the ledger: the plan and each finished block, beside the checkpoint -------------------------

class Ledger:
    """`<checkpoint>.ray/`: plan.json (format, blocks, version base) and blocks/<n>.npz + <n>.dead.jsonl.

    A block is finished when its .npz exists (written last, atomically).
    """

    def __init__(self, checkpoint_path: Path):
        self.folder = Path(str(checkpoint_path) + ".ray")
        self.blocks_dir = self.folder / "blocks"
        self.plan: dict = {}

    @property
    def blocks(self) -> List[Block]:
        return [Block(i, *b) for i, b in enumerate(self.plan["blocks"])]

    def create(self, corpus: Path, block_lines: Optional[int], workers: int) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        kind = corpus_format(corpus)
        if kind == "parquet":
            blocks = parquet_blocks(corpus)
        else:
            blocks = jsonl_blocks(corpus, block_lines or default_block_lines(corpus, workers))
        if blocks and blocks[-1].first_line + blocks[-1].lines >= LINE_LIMIT:
            raise InputError(f"{corpus}: more than {LINE_LIMIT - 1} lines; split it into several corpora")
        self.plan = {"format": kind, "version_base": int(time.time() // 60),
                     "blocks": [[b.start, b.stop, b.first_line, b.lines] for b in blocks]}
        self.blocks_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / "plan.json", json.dumps(self.plan))

    def load(self, checkpoint_path: Path) -> None:
        try:
            self.plan = json.loads((self.folder / "plan.json").read_text())
        except FileNotFoundError:
            raise InputError(f"{checkpoint_path}: that ingest did not run on Ray; resume it without --ray") from None

    def done(self) -> Dict[int, int]:
        """{finished block: documents acknowledged}."""
        out = {}
        for path in self.blocks_dir.glob("*.npz"):
            with np.load(path) as arrays:
                out[int(path.stem)] = int(arrays["acked"].sum())
        return out

    def record(self, number: int, result: dict) -> None:
        atomic_write(self.blocks_dir / f"{number}.dead.jsonl", result["dead"])
        partial = self.blocks_dir / f"{number}.npz.partial"
        with open(partial, "wb") as f:
            np.savez(f, digests=np.frombuffer(result["digests"], dtype=np.uint64),
                     lines=np.frombuffer(result["lines"], dtype=np.int64),
                     acked=np.frombuffer(result["acked"], dtype=np.bool_))
        partial.replace(self.blocks_dir / f"{number}.npz")

    def outcomes(self):
        """(digests, lines, acked) of every parsed document, in block order."""
        parts = []
        for block in self.blocks:
            with np.load(self.blocks_dir / f"{block.number}.npz") as arrays:
                parts.append((arrays["digests"], arrays["lines"], arrays["acked"]))
        if not parts:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.bool_)
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

    def dead(self, number: int) -> List[dict]:
        text = (self.blocks_dir / f"{number}.dead.jsonl").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line]


def check_resume_mode(checkpoint_path: Path, on_ray: bool) -> None:
    """Refuse to resume a Ray ingest in one process (`Ledger.load` refuses the other way round)."""
    if not on_ray and Path(str(checkpoint_path) + ".ray").exists():
        raise InputError(f"{checkpoint_path}: that ingest ran on Ray; resume it with --ray")


# -- the actors ---------------------------------------------------------------------------------

@dataclass
class Job:
    """What every actor needs; pickled to them (the `Cluster` reconnects on arrival, with no secret inside)."""

    cluster: object
    corpus: str
    format: str
    fields: CorpusFields
    index: str
    field: str
    pipeline: Optional[str]
    model_source: str
    fingerprint: str
    device: Optional[str]
    dtype: str
    window: int
    bulk: BulkOptions
    version_base: int
    cpus: Optional[float]
    vectors: Optional[dict] = None  # the index's `VectorOptions` (long documents, pruning), as its _meta has them
    packed_field: Optional[str] = None  # where `_source` keeps the packed copy of the features, if it does
    reserved: Sequence[str] = ()  # the names splade-os writes: a line holding one is rejected

    def version(self, line: int) -> int:
        # Later runs write higher versions; inside a run, a lower line a higher one.
        return (self.version_base << 32) | (LINE_LIMIT - 1 - line)


class _Collected:
    """Dead letters of one block, kept as records (raw bytes in base64) for the driver."""

    def __init__(self):
        self.records: List[dict] = []

    def add(self, line: int, reason: str, raw: bytes) -> None:
        self.records.append({"line": line, "reason": reason, "raw_base64": base64.b64encode(raw).decode("ascii")})


class BlockWorker:
    """A Ray actor that encodes whole blocks and sends them with its own encoder and cluster client."""

    def __init__(self, job: Job):
        import torch
        import ray

        from splade_os.documents.encoder import DocumentEncoder
        from splade_os.models.resolve import resolve_model
        from splade_os.bulk.sender import document_fields
        from splade_os.documents.vectors import VectorOptions

        self.job = job
        model = resolve_model(job.model_source, job.cluster, show_progress=False)
        if model.identity.fingerprint != job.fingerprint:
            raise ModelError(f"{job.model_source}: resolves on this Ray node to a model with another fingerprint "
                             f"than the driver's ({model.identity.fingerprint[:12]} != {job.fingerprint[:12]})")
        device = job.device or ("cuda" if ray.get_gpu_ids() else "cpu")
        if device == "cpu" and job.cpus:
            torch.set_num_threads(max(1, int(job.cpus)))
        self.options = VectorOptions.from_meta(job.vectors)
        self.encoder = DocumentEncoder(model, device=device, dtype=job.dtype, long_docs=self.options.long_docs,
                                       max_windows=self.options.max_windows)
        self.lines = BulkLines(job.index, job.field, model.query_encoder.keys, job.packed_field)
        self.fields = document_fields(job.pipeline, model.identity)
        self.max_bytes = request_bytes(job.cluster, job.bulk.max_bytes)
        self.chunks = ThreadPoolExecutor(max_workers=job.bulk.workers, thread_name_prefix="splade-os-bulk")
        self.windows = ThreadPoolExecutor(max_workers=1, thread_name_prefix="splade-os-window")

    def __call__(self, batch: dict) -> dict:
        """Ray Data's call: a batch of block descriptions in, one row of results per block out."""
        results = [self.run_block(Block(**{key: int(batch[key][i]) for key in BLOCK_KEYS}))
                   for i in range(len(batch["number"]))]
        return {key: np.array([r[key] for r in results], dtype=np.int64 if key in ("number", "indexed") else object)
                for key in results[0]}

    def run_block(self, block: Block) -> dict:
        """Encode and send one block; its documents' digests, lines and acknowledgements, and its dead letters."""
        from splade_os.bulk.sender import send_documents, usable

        job, dead, docs = self.job, _Collected(), []
        for item in read_block(job.corpus, job.format, block, job.fields, job.reserved):
            if isinstance(item, Rejected):
                dead.add(item.line, item.reason, item.raw)
            else:
                docs.append(item)
        position = {doc.line: i for i, doc in enumerate(docs)}
        acked = np.zeros(len(docs), dtype=np.bool_)
        in_flight: deque = deque()

        def settle(kept, future):
            for doc, reason in zip(kept, future.result()):
                if reason is None:
                    acked[position[doc.line]] = True
                else:
                    dead.add(doc.line, reason, doc.raw)

        windows = ((docs[i : i + job.window], [d.content for d in docs[i : i + job.window]])
                   for i in range(0, len(docs), job.window))
        for window_docs, vectors in self.encoder.encode_stream(windows):
            kept, kept_vectors = usable(window_docs, vectors, dead, self.options)
            actions = [self.lines.document(d.id, self.fields(d), v, version=job.version(d.line))
                       for d, v in zip(kept, kept_vectors)]
            in_flight.append((kept, self.windows.submit(send_documents, job.cluster, actions, job.bulk.docs,
                                                        self.max_bytes, job.bulk.retry, self.chunks)))
            while len(in_flight) > 1:  # one window sending while the next one encodes
                settle(*in_flight.popleft())
        while in_flight:
            settle(*in_flight.popleft())
        return {"number": block.number, "indexed": int(acked.sum()),
                "digests": np.array([id_digest(d.id) for d in docs], dtype=np.uint64).tobytes(),
                "doc_lines": np.array([d.line for d in docs], dtype=np.int64).tobytes(), "acked": acked.tobytes(),
                "dead": "".join(json.dumps(r) + "\n" for r in dead.records)}


# -- the driver ---------------------------------------------------------------------------------

def _connect_ray(ray, address: Optional[str]) -> bool:
    """Connect to (or start) Ray unless already connected; True when this call started it."""
    if ray.is_initialized():
        return False
    import logging

    ray.init(address=address or None, logging_level=logging.WARNING, log_to_driver=False)
    return True


def _resources(ray, options: RayOptions):
    """(workers, GPUs per worker, CPUs per worker)."""
    total = ray.cluster_resources()
    gpus = options.gpus_per_worker if options.gpus_per_worker is not None else (1 if total.get("GPU", 0) >= 1 else 0)
    workers = options.workers or (max(1, int(total.get("GPU", 0) // gpus)) if gpus else 1)
    if workers < 1:
        raise InputError(f"ray workers: expected a number >= 1, not {workers}")
    if gpus:
        return workers, gpus, options.cpus_per_worker or 0
    node_cpus = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
    cpus = options.cpus_per_worker or max(1, min(node_cpus, total.get("CPU", 1) // workers))
    return workers, 0, cpus


def _cause(error: BaseException) -> BaseException:
    """The splade-os error inside Ray's wrappers (a task error's cause), else the error itself."""
    seen = error
    while seen is not None:
        if isinstance(seen, SpladeOSError):
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    return error


def run_on_ray(plan, options, show_progress: bool = True):
    """Encode and send the plan's corpus on Ray, then settle duplicates and dead letters; see the module docstring.

    Args:
        plan: the `IngestPlan` from `plan_ingest`.
        options: the `IngestOptions`; `options.ray` says where and how wide.
        show_progress: a progress bar and notes on stderr.

    Returns:
        (indexed, rejected): documents the index holds, lines in the dead-letter file.
    """
    require("ray", "ingest on Ray")
    import ray

    started_ray = _connect_ray(ray, options.ray.address)
    try:
        workers, gpus, cpus = _resources(ray, options.ray)
        ledger = Ledger(plan.checkpoint_path)
        if plan.resumed:
            ledger.load(plan.checkpoint_path)
        else:
            ledger.create(plan.corpus, options.ray.block_lines, workers)
        job = Job(plan.index.cluster, str(plan.corpus.resolve()), ledger.plan["format"], plan.fields,
                  plan.index.name, plan.index.field, plan.index.pipeline, plan.model.source,
                  plan.model.identity.fingerprint, options.device, options.dtype, options.window, options.bulk,
                  ledger.plan["version_base"], cpus, plan.index.vector_options.as_meta(), plan.index.packed_field,
                  plan.index.reserved_fields)
        note(show_progress, f"Ray: {workers} {'GPU' if gpus else 'CPU'} worker(s), {len(ledger.blocks)} block(s)")
        # The actors connect again from the pickled Cluster, which holds no secret: credentials
        # given as arguments reach them in a secret file beside the ledger, never in task arguments.
        with plan.index.cluster.secret_file(ledger.folder):
            _run_blocks(ray, ledger, job, workers, gpus, cpus, show_progress)
    finally:
        if started_ray:
            ray.shutdown()
    return settle_ledger(plan, ledger, plan.fields)


def _run_blocks(ray, ledger: Ledger, job: Job, workers: int, gpus: float, cpus: float, show_progress: bool) -> None:
    """Run the unfinished blocks on the actor pool, recording each as it finishes."""
    finished = ledger.done()
    todo = [asdict(b) for b in ledger.blocks if b.number not in finished]
    total = sum(b.lines for b in ledger.blocks)
    progress = bar(show_progress, total=total, initial=total - sum(b["lines"] for b in todo), unit="line",
                   desc=f"ingest {Path(job.corpus).name} on Ray")
    if not todo:
        progress.close()
        return
    import logging

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the bar above is the one that counts lines
    # Ray Data's own loggers are set up when ray.data is imported: quiet its notes, keep its warnings.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    resources = {"num_gpus": gpus} if gpus else {"num_cpus": cpus}
    dataset = ray.data.from_items(todo, override_num_blocks=len(todo)).map_batches(
        BlockWorker, fn_constructor_kwargs={"job": job}, batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(todo))), **resources)
    lines = {b["number"]: b["lines"] for b in todo}
    with progress:
        try:
            for row in dataset.iter_rows():
                number = int(row["number"])
                ledger.record(number, {"digests": row["digests"], "lines": row["doc_lines"], "acked": row["acked"],
                                       "dead": row["dead"]})
                progress.update(lines[number])
        except KeyboardInterrupt:
            done = len(ledger.done())
            raise IngestInterrupted(f"interrupted: {done} of {len(ledger.blocks)} blocks are settled; "
                                    "continue with --resume --ray") from None
        except Exception as e:
            cause = _cause(e)
            if cause is e:
                raise
            raise cause from None


def settle_ledger(plan, ledger: Ledger, fields: CorpusFields):
    """Find duplicate ids over all blocks, write the dead-letter file, and count; returns (indexed, rejected)."""
    digests, lines, acked = ledger.outcomes()
    order = np.lexsort((lines, digests))
    repeat = np.zeros(len(order), dtype=np.bool_)
    repeat[1:] = digests[order][1:] == digests[order][:-1]
    # Each repeat's group starts at the last non-repeat before it: that line is the first occurrence.
    group_start = np.maximum.accumulate(np.where(~repeat, np.arange(len(order)), 0))
    losers = order[repeat]
    first_of = order[group_start[repeat]]
    # Where the first occurrence failed but a later one was written, the index holds that id; the
    # single-process ingest would not have indexed it.
    stray = np.unique(lines[first_of[acked[losers] & ~acked[first_of]]])
    duplicates = _documents_at(plan, ledger, fields, set(lines[losers].tolist()))
    _delete_ids(plan.index, sorted({duplicates[int(line)].id for line in lines[losers[np.isin(lines[first_of], stray)]]}))
    indexed = int(acked.sum()) - int(acked[losers].sum())
    by_block: Dict[int, List[Document]] = {}
    starts = [b.first_line for b in ledger.blocks]
    for line, doc in duplicates.items():
        by_block.setdefault(int(np.searchsorted(starts, line, side="right")) - 1, []).append(doc)
    with DeadLetters(plan.dead_letter_path, str(plan.corpus)) as dead:
        for block in ledger.blocks:
            records = [(r["line"], r["reason"], base64.b64decode(r["raw_base64"])) for r in ledger.dead(block.number)
                       if r["line"] not in duplicates]
            records += [(d.line, f"duplicate id {d.id!r}", d.raw) for d in by_block.get(block.number, [])]
            for line, reason, raw in sorted(records, key=lambda r: r[0]):
                dead.add(line, reason, raw)
        rejected = dead.count
    blocks = ledger.blocks
    state = plan.state
    state.line = blocks[-1].first_line + blocks[-1].lines - 1 if blocks else 0
    state.indexed, state.rejected = indexed, rejected
    state.save(plan.checkpoint_path)
    return indexed, rejected


def _documents_at(plan, ledger: Ledger, fields: CorpusFields, wanted: set) -> Dict[int, Document]:
    """The parsed documents at the `wanted` lines (re-read from the blocks that hold them)."""
    blocks = ledger.blocks
    starts = [b.first_line for b in blocks]
    holding = sorted({int(np.searchsorted(starts, line, side="right")) - 1 for line in wanted})
    found: Dict[int, Document] = {}
    for number in holding:
        for item in read_block(str(plan.corpus), ledger.plan["format"], blocks[number], fields):
            if item.line in wanted and isinstance(item, Document):
                found[item.line] = item
    return found


def _delete_ids(index, ids: Sequence[str]) -> None:
    """Delete documents by id (a missing one is fine)."""
    if not ids:
        return
    actions = [b'{"delete":{"_index":' + json.dumps(index.name).encode() + b',"_id":' + json.dumps(i).encode()
               + b"}}\n" for i in ids]
    for reason in send_chunk(index.cluster, actions, RetryPolicy()):
        if reason is not None and "HTTP 404" not in reason:
            raise SpladeOSError(f"index {index.name!r}: could not delete a duplicate's document: {reason}")
