"""The local OpenSearch and Elasticsearch nodes start and stop, and have what splade-os relies on.

One node per engine serves the whole module (starting one takes 15-40 s). Requests use plain
urllib so the facts are checked on the engines' own answers. The facts checked here are the ones
the connector is built on. OpenSearch: exact linear rank_feature scoring, the dot problem in
rank_features keys, painless-guarded ingest pipelines, zero weights rejected. Elasticsearch (the
minimal zip): on sparse_vector a bool of boosted term clauses and the sparse_vector query both
score the exact dot product, dotted keys work natively, and there is no fail processor.
"""

import json
import math
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from splade_os.cluster import connect
from splade_os.query.engine import ELASTICSEARCH, OPENSEARCH
from splade_os.node import LocalNode

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
    local = LocalNode("opensearch").start()
    yield local
    local.stop()  # a no-op when test_stop_closes_the_port already stopped it


@pytest.fixture(scope="module")
def es_node():
    local = LocalNode("elasticsearch").start()
    yield local
    local.stop()


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


def test_the_node_is_the_engine_it_was_asked_for(node, es_node):
    assert connect(node.url).engine is OPENSEARCH
    assert connect(es_node.url).engine is ELASTICSEARCH
    status, body = call(es_node, "GET", "/_nodes/_local")
    assert status == 200 and next(iter(body["nodes"].values()))["version"] == "8.19.21"


def test_elasticsearch_root_path_is_no_readiness_probe(es_node):
    # The zip has no handler for GET / (hence readiness via /_cluster/health).
    status, _ = call(es_node, "GET", "/")
    assert status == 405
    status, body = call(es_node, "GET", "/_cluster/health")
    assert status == 200 and body["status"] in ("green", "yellow")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only as root")
def test_as_root_the_nodes_run_as_an_unprivileged_user(node, es_node):
    for local in (node, es_node):
        uid = int(Path(f"/proc/{local.pid}/status").read_text().split("Uid:")[1].split()[0])
        assert uid != 0, local


def make_sparse_index(node, name):
    status, body = call(node, "PUT", f"/{name}", {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {"properties": {"sp": {"type": "sparse_vector"}}},
    })
    assert status == 200, body
    status, body = call(node, "PUT", f"/{name}/_doc/1?refresh=true", {"sp": {"lift": 2.5, "wing": 1.25, "a.b": 0.5}})
    assert status == 201, body


def test_sparse_vector_term_clauses_score_the_dot_product(es_node):
    make_sparse_index(es_node, "terms")
    query = {"bool": {"should": [
        {"term": {"sp": {"value": "lift", "boost": 2.0}}},
        {"term": {"sp": {"value": "wing", "boost": 1.0}}},
    ]}}
    status, body = call(es_node, "POST", "/terms/_search", {"query": query})
    assert status == 200, body
    assert [hit["_score"] for hit in body["hits"]["hits"]] == [2 * 2.5 + 1 * 1.25]  # 6.25, exactly


def test_sparse_vector_query_scores_the_same(es_node):
    make_sparse_index(es_node, "vector")
    query = {"sparse_vector": {"field": "sp", "query_vector": {"lift": 2.0, "wing": 1.0}}}
    status, body = call(es_node, "POST", "/vector/_search", {"query": query})
    assert status == 200, body
    assert [hit["_score"] for hit in body["hits"]["hits"]] == [6.25]


def test_sparse_vector_dotted_key_is_found(es_node):
    make_sparse_index(es_node, "dotted")
    for query in ({"term": {"sp": "a.b"}}, {"sparse_vector": {"field": "sp", "query_vector": {"a.b": 1.0}}}):
        status, body = call(es_node, "POST", "/dotted/_search", {"query": query})
        assert status == 200, body
        assert [hit["_score"] for hit in body["hits"]["hits"]] == [0.5], query


def test_elasticsearch_zip_has_no_fail_processor(es_node):
    status, body = call(es_node, "GET", "/_nodes/ingest")
    assert status == 200, body
    nodes = body["nodes"].values()
    processors = {p["type"] for n in nodes for p in n.get("ingest", {}).get("processors", [])}
    assert "fail" not in processors
    # ...so the library makes its checks on the client side there.
    assert connect(es_node.url).has_ingest_checks is False


def uses(info, folder):
    """Whether a process (psutil's info: cmdline, cwd) names `folder` or runs in it."""
    return str(folder) in " ".join(info["cmdline"] or []) or str(info["cwd"] or "").startswith(str(folder))


@pytest.mark.parametrize("which", ["node", "es_node"])
def test_stop_closes_the_port(request, which):
    local = request.getfixturevalue(which)
    port, transport, process, temp_dir = local.port, local.transport_port, local.process, local._temp_dir
    assert port_open(port) and port_open(transport)
    assert len([p for p in psutil.process_iter(["cmdline", "cwd"]) if uses(p.info, temp_dir)]) >= 1
    local.stop()
    assert process.poll() is not None
    # Nothing of the node is left (Elasticsearch: the server JVM too, not only its launcher).
    assert [p.pid for p in psutil.process_iter(["cmdline", "cwd"]) if uses(p.info, temp_dir)] == []
    assert not port_open(port) and not port_open(transport)
    assert not temp_dir.exists()
