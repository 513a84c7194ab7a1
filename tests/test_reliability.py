"""Fault tests against a real node: crash and resume, node restart, 429s and dropped
connections, fuzzed input, alias switches, TLS + basic auth. Each is bounded in time."""

import contextlib
import json
import shutil
import tempfile
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splade_os.bulk import BulkOptions, RetryPolicy
from splade_os.ingest.checkpoint import Checkpoint
from splade_os.cluster import connect
from splade_os.corpus import Rejected, parse_line
from splade_os.documents.encoder import DocumentEncoder
from splade_os.common.errors import ClusterError
from splade_os.ingest import IngestOptions, ingest
from splade_os.node import LocalNode
from faults import FaultProxy, self_signed_certificate

pytestmark = pytest.mark.slow
FAST_RETRY = RetryPolicy(initial=0.2, maximum=2.0, deadline=120)


def options(tmp_path, window=1024, bulk_docs=500, **kwargs) -> IngestOptions:
    """Ingest options with the checkpoint and dead letters in `tmp_path` and quick retries."""
    bulk = kwargs.pop("bulk", None) or BulkOptions(docs=bulk_docs)
    bulk.retry = FAST_RETRY
    return IngestOptions(window=window, bulk=bulk,
                         checkpoint=kwargs.pop("checkpoint", tmp_path / "ckpt.json"),
                         dead_letter=kwargs.pop("dead_letter", tmp_path / "dead.jsonl"), **kwargs)


@pytest.fixture(scope="module")
def encoder(default_model):
    return DocumentEncoder(default_model, device="cpu")


@pytest.fixture(scope="module")
def corpus(sample_dir, tmp_path_factory):
    """The first 200 Cranfield documents (all valid)."""
    path = tmp_path_factory.mktemp("corpus") / "cran200.jsonl"
    path.write_text("".join(open(sample_dir / "corpus.jsonl", encoding="utf-8").readlines()[:200]), encoding="utf-8")
    return path


@contextlib.contextmanager
def interruptible_children():
    """Children started inside take Ctrl-C as a terminal user's process does.

    A shell without job control starts background commands with SIGINT ignored, and an ignored
    signal stays ignored across exec, so under `bash scripts/test &` the ingest would never see
    the Ctrl-C. A handled signal is reset to its default at exec: handle it here for the spawn.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ids(cluster, index):
    cluster.index(index).refresh()
    hits = cluster.request("POST", f"/{index}/_search", {"size": 10000, "_source": False, "query": {"match_all": {}}})
    return [h["_id"] for h in hits["hits"]["hits"]]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_kill_and_resume(cluster, engine_url, default_model, encoder, corpus, tmp_path, stop):
    checkpoint, dead = tmp_path / "ckpt.json", tmp_path / "dead.jsonl"
    window = 10
    index = f"crash-{stop.name.lower()}"
    command = [sys.executable, "-m", "splade_os", "-q", "ingest", str(corpus), "--index", index, "--url",
               engine_url, "--window", str(window), "--bulk-docs", "5", "--checkpoint", str(checkpoint),
               "--dead-letter", str(dead), "--device", "cpu"]
    with interruptible_children():
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if checkpoint.exists() and Checkpoint.load(checkpoint).line >= 60:
                break
            assert process.poll() is None, "ingest ended before it could be killed"
            time.sleep(0.05)
        process.send_signal(stop)
    finally:
        _, stderr = process.communicate(timeout=120)
    state = Checkpoint.load(checkpoint)
    assert not state.complete and 60 <= state.line < 200
    cluster.index(index).refresh()
    acknowledged_before = cluster.index(index).count()
    # Documents past the checkpoint that the cluster had already taken: the in-flight ones.
    in_flight = acknowledged_before - state.indexed
    capacity = window * (encoder.prefetch + 2 + 2)  # being encoded + prefetched + queued + being sent
    assert 0 <= in_flight <= capacity
    if stop == signal.SIGINT:
        # Ctrl-C settles the windows in flight before it exits: the checkpoint is exact.
        assert process.returncode == 130 and "continue with --resume" in stderr, stderr
        assert in_flight == 0

    before = encoder.documents
    stats = ingest(cluster, corpus, index, default_model, encoder=encoder, show_progress=False,
                   options=options(tmp_path, window=window, checkpoint=checkpoint, resume=True))
    assert encoder.documents - before == 200 - state.line  # nothing before the checkpoint encoded again
    ids = _ids(cluster, index)
    assert len(ids) == len(set(ids)) == 200 == stats.count_after == stats.indexed
    assert Checkpoint.load(checkpoint).complete


def test_node_stopped_mid_ingest(default_model, encoder, corpus, tmp_path):
    # Outside pytest's private temp folder: as root the node runs as an unprivileged user.
    data = Path(tempfile.mkdtemp(prefix="splade-os-restart-"))
    node = LocalNode(show_progress=False, data_dir=data).start()
    port = node.port
    try:
        restarting = connect(node.url)
        checkpoint = tmp_path / "ckpt.json"
        result = {}

        def run():
            try:
                result["stats"] = ingest(restarting, corpus, "restart", default_model, encoder=encoder,
                                         options=options(tmp_path, window=10, bulk_docs=5), show_progress=False)
            except BaseException as e:
                result["error"] = e

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 180
        while not (checkpoint.exists() and Checkpoint.load(checkpoint).line >= 40):
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        node.stop()
        time.sleep(3)
        node = LocalNode(show_progress=False, data_dir=data, port=port).start()
        thread.join(timeout=240)
        assert not thread.is_alive()
        assert "error" not in result, result.get("error")
        assert result["stats"].indexed == 200 and result["stats"].rejected == 0
        ids = _ids(connect(node.url), "restart")
        assert len(ids) == len(set(ids)) == 200
    finally:
        node.stop()
        shutil.rmtree(data, ignore_errors=True)


def test_429s_and_dropped_connections(cluster, engine_url, default_model, encoder, corpus, tmp_path):
    def fault(n, path, size):
        return {0: "429", 1: "drop", 2: "items-429"}.get(n % 4)

    with FaultProxy(engine_url, fault) as proxy:
        flaky = connect(proxy.url)
        stats = ingest(flaky, corpus, "flaky", default_model, encoder=encoder,
                       options=options(tmp_path, window=20, bulk_docs=10), show_progress=False)
    assert proxy.counts["429"] > 0 and proxy.counts["drop"] > 0 and proxy.counts["items-429"] > 0
    assert stats.indexed == 200 and stats.rejected == 0
    ids = _ids(cluster, "flaky")
    assert len(ids) == len(set(ids)) == 200


bad_lines = st.one_of(
    st.binary(min_size=1, max_size=60).filter(
        lambda b: b.strip() and b"\n" not in b and b"\r" not in b and isinstance(parse_line(b, 1), Rejected)),
    st.just(b'{"_id": "x", "text": '),
    st.just(b"[" * 5000 + b"]" * 5000),
    st.sampled_from([b'{"text": 5}', b'{"text": null}', b'{"text": ["a"]}', b'{"text": "   \\t "}', b'"just a string"',
                     b'{"_id": {"a": 1}, "text": "x"}', b'{"title": 3, "text": "x"}',
                     b'{"text": "lone \\ud800 surrogate"}', b'{"_id": "\\udfff", "text": "x"}']),
)
good_texts = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80).filter(str.strip),
    st.sampled_from(["supersonic flow \u0000 with control \u0007 chars", "Ünïcödé 中文 😀 \u202e rtl", "word " * 200_000]),
)


@settings(max_examples=8, deadline=None)
@given(st.lists(st.tuples(st.booleans(), good_texts, bad_lines), min_size=1, max_size=12))
def test_fuzzed_input_is_indexed_or_dead_lettered(cluster, default_model, encoder, tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("fuzz")
    lines, good = [], {}
    for number, (is_good, text, junk) in enumerate(rows, 1):
        if is_good:
            lines.append(json.dumps({"_id": f"d{number}", "text": text}).encode())
            good[number] = f"d{number}"
        else:
            lines.append(junk)
    corpus = folder / "fuzz.jsonl"
    corpus.write_bytes(b"\n".join(lines) + b"\n")
    index = f"fuzz-{folder.name.lower()}"
    stats = ingest(cluster, corpus, index, default_model, encoder=encoder, options=options(folder),
                   show_progress=False)
    dead = {json.loads(line)["line"]: json.loads(line) for line in open(folder / "dead.jsonl")} \
        if (folder / "dead.jsonl").exists() else {}
    indexed = set(_ids(cluster, index))
    for number in range(1, len(rows) + 1):
        if number in good:
            assert good[number] in indexed or "no non-zero feature" in dead[number]["reason"], number
        else:
            assert number in dead and dead[number]["reason"], (number, lines[number - 1][:80])
    assert stats.indexed + stats.rejected == len(rows)
    cluster.request("DELETE", f"/{index}")


def test_alias_switch_only_after_success(cluster, default_model, encoder, corpus, tmp_path):
    from splade_os.ingest import alias_targets

    first = ingest(cluster, corpus, None, default_model, alias="live", encoder=encoder,
                   options=options(tmp_path, checkpoint=tmp_path / "a.json"), show_progress=False)
    assert first.alias_switched and alias_targets(cluster, "live") == [first.index]
    live = cluster.index("live")

    class Failing:
        """Encodes two windows, then fails: an ingest that breaks halfway."""

        vocab_size = encoder.vocab_size

        def encode_stream(self, windows, on_batch=None):
            for n, item in enumerate(encoder.encode_stream(windows, on_batch)):
                if n == 2:
                    raise RuntimeError("disk on fire")
                yield item

    failures, searches = [], [0]
    stop = threading.Event()

    def keep_searching():
        while not stop.is_set():
            try:
                assert live.search("boundary layer", k=3)
                searches[0] += 1
            except Exception as e:  # any failure of a query during the run is a test failure
                failures.append(e)
            time.sleep(0.05)

    thread = threading.Thread(target=keep_searching)
    thread.start()
    try:
        with pytest.raises(RuntimeError, match="disk on fire"):
            time.sleep(1.1)  # a new index name (names carry the second)
            ingest(cluster, corpus, None, default_model, alias="live", encoder=Failing(),
                   options=options(tmp_path, window=20, checkpoint=tmp_path / "b.json"), show_progress=False)
        assert alias_targets(cluster, "live") == [first.index]
        time.sleep(1.1)
        second = ingest(cluster, corpus, None, default_model, alias="live", encoder=encoder,
                        options=options(tmp_path, keep=1, checkpoint=tmp_path / "c.json"), show_progress=False)
    finally:
        stop.set()
        thread.join()
    assert not failures and searches[0] > 0
    assert alias_targets(cluster, "live") == [second.index]
    assert not cluster.exists(f"/{first.index}")  # pruned by keep=1, with the failed run's index
    assert live.count() == 200


def test_tls_and_basic_auth(opensearch_url, default_model, encoder, corpus, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    with FaultProxy(opensearch_url, tls=(cert, key), basic_auth="alice:s3cr3t-pw") as proxy:
        secured = connect(proxy.url, user="alice", password="s3cr3t-pw", ca_certs=cert)
        stats = ingest(secured, corpus, "tls", default_model, encoder=encoder, options=options(tmp_path),
                       show_progress=False)
        assert stats.indexed == 200
        assert secured.index("tls").search("boundary layer")
        with pytest.raises(ClusterError, match="TLS verification failed") as error:
            connect(proxy.url, user="alice", password="s3cr3t-pw")
        assert "s3cr3t-pw" not in str(error.value)
        with pytest.raises(ClusterError, match="refused the credentials") as error:
            connect(proxy.url, user="alice", password="wrong-pw", ca_certs=cert)
        assert "wrong-pw" not in str(error.value)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            connect(proxy.url, user="alice", password="s3cr3t-pw", insecure=True)
        assert any("verification is off" in str(w.message) for w in caught)


def _long_documents(sample_dir, folder, count, size):
    """`count` documents of about `size` bytes of real words (Cranfield abstracts run together)."""
    words = " ".join(json.loads(line)["text"] for line in open(sample_dir / "corpus.jsonl", encoding="utf-8"))
    path = folder / "long.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            start = (i * 7919) % (len(words) - size)
            f.write(json.dumps({"_id": f"long-{i}", "text": words[start:start + size]}) + "\n")
    return path


def test_long_documents_are_sent_in_byte_capped_requests(cluster, default_model, encoder, sample_dir, tmp_path):
    # 300 documents of ~400 KB: 120 MB, more than http.max_content_length (100 MB) in one request;
    # by count alone (500 per request) this failed with HTTP 413 and indexed nothing.
    corpus = _long_documents(sample_dir, tmp_path, 300, 400_000)
    stats = ingest(cluster, corpus, "long-docs", default_model, encoder=encoder, options=options(tmp_path),
                   show_progress=False)
    assert (stats.indexed, stats.rejected, stats.count_after) == (300, 0, 300)
    cluster.request("DELETE", "/long-docs")


def test_http_413_splits_requests_and_dead_letters_a_document_too_large(opensearch_url, default_model, encoder,
                                                                        sample_dir, tmp_path):
    # A proxy that answers 413 above 600 KB, as a cluster with a small http.max_content_length does.
    corpus = _long_documents(sample_dir, tmp_path, 40, 50_000)
    lines = corpus.read_text(encoding="utf-8").splitlines()
    lines[16] = json.dumps({"_id": "huge", "text": ("wing lift drag " * 60_000)[:800_000]})
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with FaultProxy(opensearch_url, max_body=600_000) as proxy:
        stats = ingest(connect(proxy.url), corpus, "too-large", default_model, encoder=encoder, show_progress=False,
                       options=options(tmp_path, bulk_docs=500, bulk=BulkOptions(docs=500, max_bytes=50 * 2**20)))
    assert proxy.counts["413"] > 1  # the first requests were split, more than once
    assert (stats.indexed, stats.rejected) == (39, 1)
    (dead,) = [json.loads(line) for line in open(tmp_path / "dead.jsonl")]
    assert dead["line"] == 17 and "HTTP 413" in dead["reason"]
    ids = _ids(connect(opensearch_url), "too-large")
    assert len(ids) == len(set(ids)) == 39 and "huge" not in ids
