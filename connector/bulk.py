"""Sending bulk requests that lose nothing: backoff with jitter, a deadline, per-item retries.

opensearch-py's helpers retry only HTTP 429, per chunk, with no jitter, and a per-document 429
inside a successful response escapes their loop unless errors are swallowed. Here one chunk
is sent until every item is either acknowledged or rejected for a reason retrying cannot fix:

- the whole request failed with 429, 502, 503, 504, a connection error or a timeout: the
  chunk is sent again after an exponential backoff with jitter;
- some items failed with 429 or 5xx (a full write queue, a shard not ready): only those
  items are sent again;
- other item errors (mapping errors, rejected values, a pipeline's fail processor) are final.

A chunk that is still failing after `deadline` seconds raises `BulkDeadlineError`. Stable
`_id`s make a re-sent document overwrite itself, never duplicate.

`BulkLines` writes each document's two NDJSON lines as bytes, with orjson: building a dict of
~250 features and `json.dumps` of it cost ~400 us per document, all of it holding the GIL, which
would cap a GPU ingest at ~2,500 documents/s whatever the GPU does.
"""

import operator
import random
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
import orjson

from .errors import ClusterError

RETRY_STATUSES = (429, 502, 503, 504)


class BulkDeadlineError(ClusterError):
    """The cluster kept refusing a bulk request until the retry deadline passed."""


@dataclass
class RetryPolicy:
    """Backoff settings: `initial * 2**attempt` seconds, capped at `maximum`, times a jitter in [0.5, 1.5)."""

    initial: float = 0.5
    maximum: float = 30.0
    deadline: float = 300.0

    def delay(self, attempt: int) -> float:
        return min(self.maximum, self.initial * 2**attempt) * random.uniform(0.5, 1.5)


class BulkLines:
    """A document's bulk "index" action and source, as NDJSON bytes ready to send.

    The feature map is written from the vector's arrays without a dict: orjson formats all values
    at once (the shortest decimal that reads back as the same float32) and each value is joined
    to its key's pre-encoded `"key":` prefix.

    Example:
        >>> lines = BulkLines("my-index", "splade", keys)
        >>> body = lines.document("doc-1", {"title": "T", "text": "..."}, vector)
    """

    def __init__(self, index: str, field: str, keys: Sequence[str]):
        self._action = b'{"index":{"_index":' + orjson.dumps(index) + b',"_id":'
        self._field = orjson.dumps(field) + b":"
        self._keys = [orjson.dumps(key) + b":" for key in keys]

    def features(self, ids: np.ndarray, values: np.ndarray) -> bytes:
        """The `rank_features` object {"key": value, ...} for parallel id and value arrays."""
        if len(ids) == 0:
            return b"{}"
        numbers = orjson.dumps(np.ascontiguousarray(values, dtype=np.float32),
                               option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
        return b"{" + b",".join(map(operator.add, map(self._keys.__getitem__, ids.tolist()), numbers)) + b"}"

    def document(self, doc_id: str, fields: dict, vector) -> bytes:
        """Both lines for one document: `fields` plus the vector's feature map under the field."""
        head = orjson.dumps(fields)
        separator = b"," if len(head) > 2 else b""
        return (self._action + orjson.dumps(doc_id) + b"}}\n"
                + head[:-1] + separator + self._field + self.features(vector.ids, vector.values) + b"}\n")


def _reason(result: dict) -> str:
    error = result.get("error")
    if isinstance(error, dict):
        reason = error.get("reason") or error.get("type") or "rejected"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason = f"{reason}: {cause['reason']}"
        return f"OpenSearch rejected the document (HTTP {result.get('status')}): {reason}"
    return f"OpenSearch rejected the document (HTTP {result.get('status')}): {error}"


def send_chunk(
    client,
    actions: List[bytes],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Optional[Callable[[str], None]] = None,
) -> List[Optional[str]]:
    """Send documents (each its action and source NDJSON lines, see `BulkLines`) until each is settled.

    Returns, in input order, None for an acknowledged item or the reason it was rejected.

    Raises:
        BulkDeadlineError: still failing after `policy.deadline` seconds.
    """
    from opensearchpy import exceptions as os_exc

    outcome: List[Optional[str]] = [None] * len(actions)
    pending = list(range(len(actions)))
    attempt, started = 0, time.monotonic()
    while pending:
        body = b"".join([actions[i] for i in pending])
        retry, why = [], ""
        try:
            response = client.bulk(body=body)
        except (os_exc.ConnectionError, os_exc.ConnectionTimeout) as e:
            retry, why = pending, f"connection error ({type(e).__name__})"
        except os_exc.TransportError as e:
            if e.status_code in RETRY_STATUSES:
                retry, why = pending, f"HTTP {e.status_code}"
            else:
                raise ClusterError(f"bulk request failed (HTTP {e.status_code}: {e.error})") from None
        else:
            for i, item in zip(pending, response["items"]):
                result = next(iter(item.values()))
                status = result.get("status", 500)
                if 200 <= status < 300:
                    outcome[i] = None
                elif status == 429 or status in (502, 503, 504) or (
                        status >= 500 and "fail_processor" not in str(result.get("error"))):
                    retry.append(i)
                    why = f"item HTTP {status}"
                else:
                    outcome[i] = _reason(result)
        if not retry:
            return outcome
        waited = time.monotonic() - started
        if waited >= policy.deadline:
            raise BulkDeadlineError(
                f"the cluster still refused {len(retry)} document(s) after {waited:.0f} s of retries ({why})")
        delay = min(policy.delay(attempt), max(0.0, policy.deadline - waited))
        if on_retry:
            on_retry(f"{len(retry)} document(s) to retry after {why}; waiting {delay:.1f} s")
        sleep(delay)
        attempt += 1
        pending = retry
    return outcome
