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
"""

import random
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

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
    actions: List[Tuple[dict, dict]],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Optional[Callable[[str], None]] = None,
) -> List[Optional[str]]:
    """Send (action line, source) pairs as bulk requests until each is settled.

    Returns, in input order, None for an acknowledged item or the reason it was rejected.

    Raises:
        BulkDeadlineError: still failing after `policy.deadline` seconds.
    """
    from opensearchpy import exceptions as os_exc

    outcome: List[Optional[str]] = [None] * len(actions)
    pending = list(range(len(actions)))
    attempt, started = 0, time.monotonic()
    while pending:
        body = []
        for i in pending:
            body.extend(actions[i])
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
