"""A local cluster of three nodes, OpenSearch and then Elasticsearch: they form one cluster, and it
keeps answering (and ingesting) while one of them is stopped.

One cluster per engine (three JVMs, 384 MiB heap each, quick-start JIT) serves the module's tests in
turn; a test that needs every node starts the stopped ones again. The client is given every node's URL (comma-separated), so it skips a node
that does not answer.
"""

import threading
import time

import pytest

from splade_os.bulk import BulkOptions, RetryPolicy
from splade_os.ingest.checkpoint import Checkpoint
from splade_os.cluster import connect
from splade_os.documents.encoder import make_encoder
from splade_os.cluster.index import IndexSettings
from splade_os.ingest import IngestOptions, ingest
from splade_os.node import QUICK_START, LocalCluster

pytestmark = pytest.mark.node

SPREAD = {"number_of_shards": 3, "number_of_replicas": 1}
DOCS = 120  # Cranfield documents ingested while a node goes away (after the first 40)


@pytest.fixture(scope="module", params=["opensearch", "elasticsearch"])
def local(request):
    with LocalCluster(request.param, nodes=3, heap="384m", show_progress=False, java_options=QUICK_START) as cluster:
        yield cluster


@pytest.fixture
def full(local):
    """The local cluster with all three nodes running."""
    for i, node in enumerate(local.nodes):
        if not node.running:
            local.start_node(i)
    return local


def health(cluster, nodes, status=("green", "yellow"), seconds=90):
    """The cluster health once `nodes` nodes are in and the status is one of `status`."""
    deadline = time.monotonic() + seconds
    while True:
        answer = cluster.request("GET", "/_cluster/health")
        if answer["number_of_nodes"] == nodes and answer["status"] in status or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def node_names(cluster):
    return sorted(row["name"] for row in cluster.request("GET", "/_cat/nodes", params={"format": "json"}))


def a_non_master(cluster, local) -> int:
    """The number of a node that is not the elected cluster manager (master), on either engine."""
    rows = cluster.request("GET", "/_cat/nodes", params={"format": "json", "h": "name,master"})
    master = next(row["name"] for row in rows if row["master"] == "*")
    return next(i for i, node in enumerate(local.nodes) if node.name != master)


def test_three_nodes_join_and_one_may_stop(full):
    cluster = connect(",".join(full.urls))
    assert node_names(cluster) == ["splade-os-0", "splade-os-1", "splade-os-2"]
    cluster.request("PUT", "/spread", {"settings": SPREAD, "mappings": {"properties": {"n": {"type": "integer"}}}})
    lines = "".join(f'{{"index": {{"_id": "{i}"}}}}\n{{"n": {i}}}\n' for i in range(30))
    answer = cluster.request("POST", "/spread/_bulk", lines.encode(), params={"refresh": "true"}, ndjson=True)
    assert not answer["errors"]
    assert health(cluster, 3, status=("green",))["status"] == "green"
    # Six shard copies, two on each node.
    shards = cluster.request("GET", "/_cat/shards/spread", params={"format": "json"})
    assert sorted(row["node"] for row in shards) == sorted(node_names(cluster) * 2)

    stopped = a_non_master(cluster, full)
    full.stop_node(stopped)
    after = health(cluster, 2)
    # The copies on the stopped node are gone: every primary remains, some replicas do not.
    assert (after["number_of_nodes"], after["status"]) == (2, "yellow")
    query = {"query": {"match_all": {}}, "sort": [{"n": "desc"}], "size": 1}
    for _ in range(6):  # round-robin over all three URLs, the stopped one included
        hits = cluster.request("POST", "/spread/_search", query)
        assert hits["hits"]["total"]["value"] == 30 and hits["hits"]["hits"][0]["_id"] == "29"
        assert hits["_shards"]["failed"] == 0

    full.start_node(stopped)
    assert health(cluster, 3)["number_of_nodes"] == 3
    assert connect(full.urls[stopped]).index("spread").count() == 30


def _search_until(stop: threading.Event, index, encoder, answers: list, failures: list) -> None:
    """Search `index` every 0.1 s until `stop` is set; note each answer's time and hit count, or the error."""
    while not stop.is_set():
        try:
            hits = index.search("lift and drag of a wing", k=3, encoder=encoder)
            answers.append((time.monotonic(), len(hits)))
        except Exception as error:  # noqa: BLE001 - every failure is the finding
            failures.append(repr(error))
        time.sleep(0.1)


def _seen_for(answers: list, seconds: float) -> bool:
    """Whether every answer of the last `seconds` had hits, and the answers go back that far."""
    if not answers or answers[-1][1] == 0:
        return False
    since = next((at for at, count in reversed(answers) if count == 0), None)
    first = answers[0][0] if since is None else since
    return answers[-1][0] - first >= seconds


class _Held:
    """A document encoder that holds the stream after window `line` until `go` is set.

    So the node stops while the corpus is in the middle however fast this machine encodes
    (a CI run once finished all 120 documents before the stopped node's process had exited).
    """

    def __init__(self, encoder, line: int, go: threading.Event):
        self.encoder, self.line, self.go = encoder, line, go

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode_stream(self, windows, on_batch=None):
        for (docs, line), vectors in self.encoder.encode_stream(windows, on_batch):
            if line > self.line:
                assert self.go.wait(timeout=300), "the test never let the held ingest go on"
            yield (docs, line), vectors


@pytest.mark.slow
def test_ingest_survives_a_data_node_stopped(full, default_model, sample_dir, tmp_path):
    corpus = tmp_path / "cran120.jsonl"
    corpus.write_text("".join(open(sample_dir / "corpus.jsonl", encoding="utf-8").readlines()[:DOCS]),
                      encoding="utf-8")
    cluster = connect(",".join(full.urls))
    checkpoint = tmp_path / "ckpt.json"
    options = IngestOptions(index=IndexSettings(shards=3, replicas=1), window=10, device="cpu",
                            bulk=BulkOptions(docs=5, retry=RetryPolicy(initial=0.2, maximum=2.0, deadline=120)),
                            checkpoint=checkpoint, dead_letter=tmp_path / "dead.jsonl")
    result, go = {}, threading.Event()
    encoder = _Held(make_encoder(default_model, device="cpu"), 40, go)

    def run():
        try:
            result["stats"] = ingest(cluster, corpus, "survivor", default_model, options=options, encoder=encoder,
                                     show_progress=False)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            result["error"] = error

    def until(line):
        deadline = time.monotonic() + 180
        while not (checkpoint.exists() and Checkpoint.load(checkpoint).line >= line):
            assert time.monotonic() < deadline and thread.is_alive(), result.get("error")
            time.sleep(0.05)

    thread = threading.Thread(target=run)
    thread.start()
    stop, answers, failures = threading.Event(), [], []
    searcher = threading.Thread(target=_search_until, args=(stop, cluster.index("survivor"),
                                                            default_model.query_encoder, answers, failures))
    try:
        until(20)
        searcher.start()
        until(40)
        # Every shard copy already shows documents, so that an empty answer after the stop can only
        # be the stop's doing: a primary and its replica refresh on their own 1 s clocks, and a CI
        # run once stopped the node right after the first non-empty answer, then got one empty
        # answer from a replica that had not refreshed yet. Answers non-empty for 3 s span both.
        deadline = time.monotonic() + 60
        while not _seen_for(answers, 3.0):
            assert time.monotonic() < deadline, answers[-5:]
            time.sleep(0.05)
        stopped_at = time.monotonic()
        full.stop_node(a_non_master(cluster, full))
        # The node is gone (stop_node waited for its process) and most of the corpus is still to come.
        assert thread.is_alive() and Checkpoint.load(checkpoint).line < DOCS - 20, result.get("error")
        go.set()
        thread.join(timeout=300)
        assert not thread.is_alive()
    finally:
        go.set()
        stop.set()
        if searcher.is_alive():
            searcher.join()
    assert "error" not in result, result.get("error")
    stats = result["stats"]
    assert (stats.indexed, stats.rejected, stats.count_after) == (DOCS, 0, DOCS)
    cluster.index("survivor").refresh()
    hits = cluster.request("POST", "/survivor/_search", {"size": 1000, "_source": False})["hits"]["hits"]
    ids = [hit["_id"] for hit in hits]
    assert len(ids) == len(set(ids)) == DOCS  # no loss, no duplicates
    assert failures == []
    during = [count for at, count in answers if at > stopped_at]
    assert len(during) >= 5 and all(count > 0 for count in during), answers[-5:]
