"""Each retry rule of the bulk sender, against a fake cluster that answers as scripted."""

import json

import pytest

from splade_os.bulk import BulkDeadlineError, RetryPolicy, chunk_actions, index_action, send_chunk
from splade_os.common.errors import ClusterError
from fakes import FakeCluster

POLICY = RetryPolicy(initial=0.01, maximum=0.02, deadline=60)


def actions(n, size=10):
    return [index_action("idx", f"d{i}", {"text": "x" * size}) for i in range(n)]


def ids_of(body: bytes):
    lines = body.decode().splitlines()
    return [json.loads(line)["index"]["_id"] for line in lines[::2]]


def ok(doc_id):
    return {"index": {"_id": doc_id, "status": 201}}


def failed(doc_id, status, error_type="mapper_parsing_exception", reason="bad"):
    return {"index": {"_id": doc_id, "status": status, "error": {"type": error_type, "reason": reason}}}


class Script:
    """Answers bulk requests in turn: each entry maps the request's ids to an answer or raises."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.bodies = []

    def __call__(self, method, path, body):
        assert (method, path) == ("POST", "/_bulk")
        self.bodies.append(ids_of(body))
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return {"errors": True, "items": [step(doc_id) for doc_id in self.bodies[-1]]}


def send(script, n=4, policy=POLICY, **kwargs):
    sleeps = []
    outcome = send_chunk(FakeCluster(script), actions(n, **kwargs), policy, sleep=sleeps.append)
    return outcome, sleeps


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_whole_request_refused_is_sent_again(status):
    script = Script(ClusterError("busy", status=status, transient=True), ok)
    outcome, sleeps = send(script)
    assert outcome == [None] * 4 and len(script.bodies) == 2 and script.bodies[0] == script.bodies[1]
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.03


def test_no_answer_is_sent_again():
    script = Script(ClusterError("cannot reach", transient=True), ClusterError("timeout", transient=True), ok)
    outcome, sleeps = send(script)
    assert outcome == [None] * 4 and len(script.bodies) == 3 and len(sleeps) == 2


def test_a_refusal_retrying_cannot_fix_stops():
    script = Script(ClusterError("bad request", status=400, error_type="illegal_argument_exception"))
    with pytest.raises(ClusterError, match="bad request"):
        send(script)
    assert len(script.bodies) == 1


@pytest.mark.parametrize("status", [429, 503, 500])
def test_only_refused_items_are_sent_again(status):
    first = {"d1", "d3"}
    script = Script(lambda d: failed(d, status, "es_rejected_execution_exception") if d in first else ok(d), ok)
    outcome, _ = send(script)
    assert outcome == [None] * 4 and script.bodies == [["d0", "d1", "d2", "d3"], ["d1", "d3"]]


def test_item_errors_that_retrying_cannot_fix_are_final():
    def answer(doc_id):
        if doc_id == "d1":
            return failed(doc_id, 400, reason="failed to parse field [splade]")
        if doc_id == "d2":  # a pipeline's fail processor answers 500 on some versions: a verdict
            return failed(doc_id, 500, "fail_processor_exception", "splade-os: another model")
        return ok(doc_id)

    outcome, sleeps = send(Script(answer))
    assert outcome[0] is None and outcome[3] is None and not sleeps
    assert outcome[1] == "OpenSearch rejected the document (HTTP 400): failed to parse field [splade]"
    assert "fail_processor" not in outcome[2] and "another model" in outcome[2]


def test_too_large_request_is_split_and_a_lone_oversized_document_rejected():
    limit = 3 * len(actions(1)[0])  # the cluster takes at most 3 normal documents per request
    acknowledged = []

    def answer(method, path, body):
        if len(body) > limit:
            raise ClusterError("too large", status=413)
        acknowledged.extend(ids_of(body))
        return {"items": [ok(d) for d in ids_of(body)]}

    docs = actions(8)
    docs[5] = index_action("idx", "d5", {"text": "y" * 5000})
    outcome = send_chunk(FakeCluster(answer), docs, POLICY, sleep=lambda s: None)
    assert [i for i, reason in enumerate(outcome) if reason] == [5]
    assert "HTTP 413" in outcome[5] and f"{len(docs[5])} bytes" in outcome[5]
    # Everything else acknowledged exactly once: nothing lost, nothing sent twice after acknowledgement.
    assert sorted(acknowledged) == sorted(f"d{i}" for i in range(8) if i != 5)


def test_deadline_stops_a_cluster_that_keeps_refusing():
    script = Script(ClusterError("busy", status=429, transient=True))
    with pytest.raises(BulkDeadlineError, match="still refused 4 document"):
        send(script, policy=RetryPolicy(initial=0.01, maximum=0.01, deadline=0))


def test_chunks_close_by_count_and_by_bytes():
    small = [b"x" * 10] * 7
    assert chunk_actions(small, 3, 10_000) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunk_actions(small, 100, 25) == [[0, 1], [2, 3], [4, 5], [6]]
    assert chunk_actions([b"x" * 100, b"y", b"z"], 100, 50) == [[0], [1, 2]]  # an oversized action alone
