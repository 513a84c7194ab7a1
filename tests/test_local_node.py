"""The local OpenSearch node starts, and has what splade-os relies on.

One node serves the whole module (starting one takes 15-30 s). Requests use plain urllib
so the test only needs the standard library and pytest. The facts checked here are the
ones the connector is built on: exact linear rank_feature scoring, the dot problem in
rank_features keys, painless-guarded ingest pipelines, and zero weights being rejected.
"""

import json
import math
import socket
import urllib.error
import urllib.request

import pytest

from splade_os.local_node import LocalNode

# Never send loopback requests through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# rank_features stores each value as a float with its low 15 bits dropped: 9 significant
# bits, so a stored value is below the original by at most a relative 2^-8.
_PRECISION = 2.0 ** -8


def call(node, method, path, body=None):
    """Send one JSON request; return (HTTP status, parsed body) for successes and errors alike."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        node.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with _OPENER.open(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def node():
    local = LocalNode().start()
    yield local
    local.stop()  # a no-op when test_stop_closes_the_port already stopped it


def make_index(node, name):
    status, body = call(node, "PUT", f"/{name}", {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {"properties": {"feats": {"type": "rank_features"}}},
    })
    assert status == 200, body


def test_linear_rank_feature_scores_are_the_weighted_sum(node):
    make_index(node, "sum")
    docs = {
        "1": {"alpha": 1.7, "beta": 0.3, "gamma": 12.5},
        "2": {"alpha": 0.123456, "delta": 3.14159},
        "3": {"gamma": 0.0101, "beta": 7.77},
    }
    for doc_id, feats in docs.items():
        status, body = call(node, "PUT", f"/sum/_doc/{doc_id}", {"feats": feats})
        assert status == 201, body
    call(node, "POST", "/sum/_refresh")

    boosts = {"alpha": 2.0, "beta": 0.5, "gamma": 1.25, "delta": 3.0, "absent": 4.0}
    query = {"bool": {"should": [
        {"rank_feature": {"field": f"feats.{term}", "linear": {}, "boost": boost}}
        for term, boost in boosts.items()
    ]}}
    status, body = call(node, "POST", "/sum/_search", {"query": query, "size": 10})
    assert status == 200, body
    scores = {hit["_id"]: hit["_score"] for hit in body["hits"]["hits"]}
    assert set(scores) == set(docs)
    for doc_id, feats in docs.items():
        expected = sum(boosts[term] * value for term, value in feats.items())
        assert math.isclose(scores[doc_id], expected, rel_tol=_PRECISION), (doc_id, scores[doc_id], expected)


def test_dotted_feature_names_cannot_be_queried(node):
    # A key with a dot is indexed without complaint, but a rank_feature query on
    # "feats.a.b" silently matches nothing (no error): the query cannot name it. This is
    # why the connector escapes "." in vocabulary terms before indexing and querying.
    make_index(node, "dots")
    status, body = call(node, "PUT", "/dots/_doc/1?refresh=true", {"feats": {"a.b": 2.0, "plain": 1.0}})
    assert status == 201, body

    status, body = call(node, "POST", "/dots/_search",
                        {"query": {"rank_feature": {"field": "feats.a.b", "linear": {}}}})
    assert status == 200, body
    assert body["hits"]["total"]["value"] == 0

    # The same document is found through a dot-free key, so the index itself is fine.
    status, body = call(node, "POST", "/dots/_search",
                        {"query": {"rank_feature": {"field": "feats.plain", "linear": {}}}})
    assert status == 200, body
    assert body["hits"]["total"]["value"] == 1


def test_painless_guarded_fail_processor(node):
    # Needs both the ingest-common (fail) and the lang-painless (if) modules.
    status, body = call(node, "PUT", "/_ingest/pipeline/require-feats", {"processors": [{"fail": {
        "if": "ctx.feats == null || ctx.feats.isEmpty()",
        "message": "document has no features",
    }}]})
    assert status == 200, body
    make_index(node, "piped")

    status, body = call(node, "PUT", "/piped/_doc/empty?pipeline=require-feats", {"feats": {}})
    assert status >= 400
    assert body["error"]["type"] == "fail_processor_exception", body
    assert body["error"]["reason"] == "document has no features"

    status, body = call(node, "PUT", "/piped/_doc/good?pipeline=require-feats&refresh=true",
                        {"feats": {"word": 1.5}})
    assert status == 201, body
    status, body = call(node, "GET", "/piped/_count")
    assert body["count"] == 1


def test_zero_weight_is_rejected(node):
    make_index(node, "zero")
    status, body = call(node, "PUT", "/zero/_doc/1", {"feats": {"word": 0.0}})
    assert status == 400, body
    assert body["error"]["type"] == "mapper_parsing_exception", body
    assert "positive normal float" in body["error"]["caused_by"]["reason"], body


def test_stop_closes_the_port(node):
    port, process, temp_dir = node.port, node.process, node._temp_dir
    assert port_open(port)
    node.stop()
    assert process.poll() is not None
    assert not port_open(port)
    assert not temp_dir.exists()
