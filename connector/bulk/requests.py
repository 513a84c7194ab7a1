"""Sending bulk requests that lose nothing: byte-capped chunks, backoff with jitter, a deadline,
per-item retries, and a request split when the cluster says it is too large.

opensearch-py's helpers retry only HTTP 429, per chunk, with no jitter, and a per-document 429
inside a successful response escapes their loop unless errors are swallowed. Here a window of
documents is cut into chunks that close at `BulkOptions.docs` documents or `max_bytes` bytes
(whichever comes first, as the helpers' `chunk_size` / `max_chunk_bytes`), and each chunk is
sent until every item is either acknowledged or rejected for a reason retrying cannot fix:

- the whole request failed with 429, 502, 503, 504, a connection error or a timeout: the
  chunk is sent again after an exponential backoff with jitter;
- the request was too large (HTTP 413): it is split in two halves, each sent on its own; a
  single document that is still too large is rejected with that reason (dead-lettered);
- some items failed with 429 or 5xx (a full write queue, a shard not ready): only those
  items are sent again;
- other item errors (mapping errors, rejected values, a pipeline's fail processor) are final.

When the cluster keeps refusing for `deadline` seconds without acknowledging anything,
`BulkDeadlineError` stops the ingest. Stable `_id`s make a re-sent document overwrite itself,
never duplicate.

`BulkLines` writes each document's two NDJSON lines as bytes, with orjson: building a dict of a
few hundred features and `json.dumps` of it holds the GIL long enough to cap a GPU ingest whatever
the GPU does (measured in benchmarks/bench_ingest.py).
"""

import base64
import json
import operator
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import orjson

from splade_os.common.errors import ClusterError
from splade_os.documents.vectors import pack

DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # well under http.max_content_length (100 MB by default)


class BulkDeadlineError(ClusterError):
    """The cluster kept refusing a bulk request until the retry deadline passed."""


@dataclass
class RetryPolicy:
    """Backoff settings: `initial * 2**attempt` seconds, capped at `maximum`, times a jitter in [0.5, 1.5).

    `deadline`: seconds the cluster may keep refusing a chunk without acknowledging any of it.
    """

    initial: float = 0.5
    maximum: float = 30.0
    deadline: float = 300.0

    def delay(self, attempt: int) -> float:
        return min(self.maximum, self.initial * 2**attempt) * random.uniform(0.5, 1.5)


@dataclass
class BulkOptions:
    """How documents are sent.

    Attributes:
        docs: the most documents per bulk request.
        max_bytes: the most bytes per bulk request (capped at half the cluster's
            `http.max_content_length`); a single larger document is sent alone.
        workers: bulk requests in flight at once.
        retry: backoff and deadline.
    """

    docs: int = 500
    max_bytes: int = DEFAULT_MAX_BYTES
    workers: int = 2
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def index_action(index: str, doc_id: str, source: dict) -> bytes:
    """The two NDJSON lines indexing `source` as document `doc_id` of `index`."""
    return (b'{"index":{"_index":' + orjson.dumps(index) + b',"_id":' + orjson.dumps(doc_id) + b"}}\n"
            + orjson.dumps(source) + b"\n")


def request_bytes(cluster, wanted: int = DEFAULT_MAX_BYTES) -> int:
    """Bytes per bulk request: `wanted`, but at most half the cluster's `http.max_content_length`
    (the other half leaves room for a chunk's last document)."""
    return max(1, min(wanted, cluster.max_content_length // 2))


def chunk_actions(actions: Sequence[bytes], max_docs: int, max_bytes: int) -> List[List[int]]:
    """Positions of `actions` grouped into requests of at most `max_docs` items and `max_bytes` bytes.

    An action larger than `max_bytes` goes alone into its own request.
    """
    chunks: List[List[int]] = []
    current: List[int] = []
    size = 0
    for i, action in enumerate(actions):
        if current and (len(current) >= max_docs or size + len(action) > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(i)
        size += len(action)
    if current:
        chunks.append(current)
    return chunks


class BulkLines:
    """A document's bulk "index" action and source, as NDJSON bytes ready to send.

    The feature map is written from the vector's arrays without a dict: orjson formats all values
    at once (the shortest decimal that reads back as the same float32) and each value is joined
    to its key's pre-encoded `"key":` prefix.

    Example:
        >>> lines = BulkLines("my-index", "splade", keys)
        >>> body = lines.document("doc-1", {"title": "T", "text": "..."}, vector)
    """

    def __init__(self, index: str, field: str, keys: Sequence[str], packed_field: Optional[str] = None):
        self._index = orjson.dumps(index)
        self._action = b'{"index":{"_index":' + self._index + b',"_id":'
        self._field = orjson.dumps(field) + b":"
        self._keys = [orjson.dumps(key) + b":" for key in keys]
        # With a packed field, each document also carries `splade_os.documents.vectors.pack` of its vector.
        self._packed = b"," + orjson.dumps(packed_field) + b":" if packed_field else b""
        self._vocab_size = len(keys)

    def features(self, ids: np.ndarray, values: np.ndarray) -> bytes:
        """The `rank_features` object {"key": value, ...} for parallel id and value arrays."""
        if len(ids) == 0:
            return b"{}"
        numbers = orjson.dumps(np.ascontiguousarray(values, dtype=np.float32),
                               option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
        return b"{" + b",".join(map(operator.add, map(self._keys.__getitem__, ids.tolist()), numbers)) + b"}"

    def document(self, doc_id: str, fields: dict, vector, version: Optional[int] = None,
                 condition: Optional[Tuple[int, int]] = None) -> bytes:
        """Both lines for one document: `fields` plus the vector's feature map under the field.

        `version`: an external version (`version_type` external_gte): the write is refused (HTTP
        409) when the index holds the id with a higher version, and re-sending the same version
        overwrites; the distributed ingest gives lower lines higher versions, so the first
        occurrence of a duplicated id wins whatever the order of arrival.
        `condition`: (seq_no, primary_term) the document must still have (HTTP 409 otherwise).
        """
        head = source_bytes(fields)
        separator = b"," if len(head) > 2 else b""
        packed = b""
        if self._packed:
            packed = self._packed + orjson.dumps(pack(vector.ids, vector.values, self._vocab_size))
        versioned = b"" if version is None else b',"version":%d,"version_type":"external_gte"' % version
        versioned += _condition(condition)
        return (self._action + orjson.dumps(doc_id) + versioned + b"}}\n"
                + head[:-1] + separator + self._field + self.features(vector.ids, vector.values) + packed + b"}\n")


    def update(self, doc_id: str, version: Tuple[int, int], fields: dict, vector) -> bytes:
        """Both lines of a bulk `update` adding the features (and `fields`) to an existing document
        that has none, only if it is still `version` ((seq_no, primary_term): HTTP 409 otherwise).

        The document's other fields are not sent. (A partial update merges objects, so it would
        keep the stale features of a document that has some: that one is written whole with
        `document(..., condition=version)`.)
        """
        head = source_bytes(fields)
        return (b'{"update":{"_index":' + self._index + b',"_id":' + orjson.dumps(doc_id) + _condition(version)
                + b'}}\n{"doc":' + head[:-1] + (b"," if len(head) > 2 else b"") + self._field
                + self.features(vector.ids, vector.values) + b"}}\n")


def _condition(version: Optional[Tuple[int, int]]) -> bytes:
    """The action's `if_seq_no`/`if_primary_term` for a (seq_no, primary_term), or nothing."""
    return b"" if version is None else b',"if_seq_no":%d,"if_primary_term":%d' % tuple(version)


def _jsonable(value):
    """What orjson cannot write itself, as JSON values: Parquet's decimals and binary columns."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON")


def source_bytes(fields: dict) -> bytes:
    """A document's fields as JSON; integers beyond 64 bits (valid JSON, which orjson refuses) are
    written by the standard library, and the engine says whether the field takes them."""
    try:
        return orjson.dumps(fields, default=_jsonable)
    except TypeError:
        return json.dumps(fields, ensure_ascii=False, default=_jsonable, separators=(",", ":")).encode("utf-8")


class Refusal(str):
    """Why the cluster refused one bulk item, as a message; `status` is the item's HTTP status
    (409: a version conflict, 404: the document of an update is gone)."""

    status: Optional[int] = None


def _reason(result: dict, engine_label: str) -> Refusal:
    error = result.get("error")
    if isinstance(error, dict):
        reason = error.get("reason") or error.get("type") or "rejected"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason = f"{reason}: {cause['reason']}"
    else:
        reason = error
    refusal = Refusal(f"{engine_label} rejected the document (HTTP {result.get('status')}): {reason}")
    refusal.status = result.get("status")
    return refusal


def _item_error(result: dict) -> tuple:
    """(error type, reason) of a bulk item's error."""
    error = result.get("error")
    if isinstance(error, dict):
        return error.get("type"), error.get("reason") or error.get("type") or ""
    return None, str(error or "")


def _item_retryable(result: dict) -> bool:
    status = result.get("status", 500)
    # A pipeline's fail processor answers 500 on some versions: that is a verdict, not a fault.
    return status == 429 or status in (502, 503, 504) or (
        status >= 500 and "fail_processor" not in str(result.get("error")))


def send_chunk(
    cluster,
    actions: List[bytes],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Optional[Callable[[str], None]] = None,
) -> List[Optional[str]]:
    """Send documents (each its action and source NDJSON lines, see `BulkLines`) until each is settled.

    Args:
        cluster: the `splade_os.cluster.Cluster`.
        actions: one document's two NDJSON lines each.
        policy: backoff and deadline.
        sleep, on_retry: how to wait, and a callback told why a retry happens.

    Returns:
        In input order, None for an acknowledged item or the reason it was rejected.

    Raises:
        BulkDeadlineError: nothing was acknowledged for `policy.deadline` seconds of retries.
        ClusterError: the cluster refused the request for a reason retrying cannot fix.
    """
    outcome: List[Optional[str]] = [None] * len(actions)
    groups = [list(range(len(actions)))]
    attempt, progress_at = 0, time.monotonic()
    while groups:
        pending = groups.pop()
        retry, why = [], ""
        try:
            response = cluster.request("POST", "/_bulk", b"".join([actions[i] for i in pending]), ndjson=True,
                                       action="sending a bulk request")
        except ClusterError as e:
            if e.status == 413:
                _split_too_large(pending, actions, outcome, groups)
                continue
            if not e.transient:
                raise
            retry, why = pending, (f"HTTP {e.status}" if e.status else "no answer")
        else:
            for i, item in zip(pending, response["items"]):
                result = next(iter(item.values()))
                if 200 <= result.get("status", 500) < 300:
                    outcome[i] = None
                elif result.get("status") in (401, 403):
                    # The user may not write here: no document's fault, and the same for every one.
                    error_type, reason = _item_error(result)
                    raise cluster.refused(result["status"], reason, "sending a bulk request", error_type)
                elif _item_retryable(result):
                    retry.append(i)
                    why = f"item HTTP {result.get('status')}"
                else:
                    outcome[i] = _reason(result, cluster.engine.label)
            if len(retry) < len(pending):
                attempt, progress_at = 0, time.monotonic()
        if not retry:
            continue
        waited = time.monotonic() - progress_at
        if waited >= policy.deadline:
            raise BulkDeadlineError(
                f"the cluster still refused {len(retry)} document(s) after {waited:.0f} s of retries ({why})")
        delay = min(policy.delay(attempt), max(0.0, policy.deadline - waited))
        if on_retry:
            on_retry(f"{len(retry)} document(s) to retry after {why}; waiting {delay:.1f} s")
        sleep(delay)
        attempt += 1
        groups.append(retry)
    return outcome


def _split_too_large(pending: List[int], actions, outcome, groups) -> None:
    """HTTP 413: send each half on its own; a lone document that is too large is rejected."""
    if len(pending) == 1:
        size = len(actions[pending[0]])
        outcome[pending[0]] = (f"the document's bulk request is {size} bytes, more than the cluster accepts in "
                               "one request (HTTP 413; http.max_content_length)")
        return
    half = len(pending) // 2
    groups.extend([pending[half:], pending[:half]])
