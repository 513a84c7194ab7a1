"""Hybrid fusion rules, settings and the `_msearch` body (no cluster)."""

import json

import pytest

from splade_os.common.errors import ClusterError, InputError
from splade_os.query.hybrid import Hybrid, fuse, hit_lists, msearch_payload


def _hits(*pairs):
    return [{"_id": doc_id, "_score": score} for doc_id, score in pairs]


def test_rrf_sums_reciprocal_ranks():
    bm25 = _hits(("a", 9.0), ("b", 5.0), ("c", 1.0))
    splade = _hits(("c", 30.0), ("a", 20.0))
    fused = fuse(bm25, splade, Hybrid("rrf", rrf_k=10), k=10)
    scores = {hit["_id"]: score for hit, score in fused}
    assert scores == pytest.approx({"a": 1 / 11 + 1 / 12, "c": 1 / 13 + 1 / 11, "b": 1 / 12})
    assert [hit["_id"] for hit, _ in fused] == ["a", "c", "b"]


def test_weighted_rrf_gives_each_list_its_share_and_equal_say_is_plain_rrf():
    bm25 = _hits(("a", 9.0), ("b", 5.0))
    splade = _hits(("b", 30.0), ("c", 20.0))
    scores = {h["_id"]: s for h, s in fuse(bm25, splade, Hybrid("rrf", weight=0.2, rrf_k=10), k=10)}
    assert scores == pytest.approx({"a": 1.6 / 11, "b": 1.6 / 12 + 0.4 / 11, "c": 0.4 / 12})
    assert [h["_id"] for h, _ in fuse(bm25, splade, Hybrid("rrf", weight=0.0), k=10)][:2] == ["a", "b"]
    assert [h["_id"] for h, _ in fuse(bm25, splade, Hybrid("rrf", weight=1.0), k=10)][:2] == ["b", "c"]
    assert fuse(bm25, splade, Hybrid(weight=0.5), k=10) == fuse(bm25, splade, Hybrid(), k=10)


def test_unset_settings_come_from_the_index_then_the_defaults():
    recorded = Hybrid("rrf", weight=0.3, depth=50, rrf_k=10)
    assert Hybrid().resolved() == Hybrid("rrf", 0.5, 50, 10)
    assert Hybrid("minmax").resolved() == Hybrid("minmax", 0.4, 50, 10)
    assert Hybrid().resolved(recorded) == recorded
    assert Hybrid(depth=100).resolved(recorded) == Hybrid("rrf", 0.3, 100, 10)
    # Another method than the recorded one: the recorded weight (of rrf) does not carry over.
    assert Hybrid("minmax").resolved(recorded) == Hybrid("minmax", 0.4, 50, 10)
    assert Hybrid.from_meta(recorded.as_meta()) == recorded and Hybrid.from_meta(None) is None
    assert recorded.describe() == "rrf k=10, SPLADE weight 0.3, top 50 of each list"


def test_minmax_weights_normalised_scores():
    bm25 = _hits(("a", 10.0), ("b", 6.0), ("c", 2.0))
    splade = _hits(("b", 40.0), ("d", 20.0), ("a", 10.0))
    fused = dict((hit["_id"], score) for hit, score in fuse(bm25, splade, Hybrid("minmax", weight=0.25), k=10))
    assert fused == pytest.approx({"a": 0.75 * 1.0 + 0.25 * 0.0, "b": 0.75 * 0.5 + 0.25 * 1.0,
                                   "c": 0.0, "d": 0.25 * (1 / 3)})


def test_fusion_edge_cases():
    # one list empty, all scores equal, ties broken by id, k cuts
    assert [h["_id"] for h, _ in fuse([], _hits(("z", 1.0), ("y", 1.0)), Hybrid("minmax"), k=5)] == ["y", "z"]
    assert fuse([], [], Hybrid(), k=5) == []
    fused = fuse(_hits(("a", 2.0), ("b", 1.0)), _hits(("b", 2.0), ("a", 1.0)), Hybrid("rrf"), k=1)
    assert [h["_id"] for h, _ in fused] == ["a"]  # a tie: the smaller id first
    # the hit kept carries its _source
    bm25 = [{"_id": "a", "_score": 1.0, "_source": {"title": "T"}}]
    assert fuse(bm25, [], Hybrid(), k=1)[0][0]["_source"] == {"title": "T"}


@pytest.mark.parametrize("kwargs", [{"method": "sum"}, {"weight": 1.5}, {"weight": -0.1}, {"depth": 0},
                                    {"rrf_k": -1}, {"fields": ()}])
def test_settings_are_checked(kwargs):
    with pytest.raises(InputError):
        Hybrid(**kwargs)


def test_msearch_payload_is_ndjson_headers_and_bodies():
    bodies = [{"size": 3, "query": {"match_all": {}}}, {"size": 3, "query": {"match_none": {}}}]
    lines = msearch_payload("docs", bodies).decode().splitlines()
    assert [json.loads(line) for line in lines] == [{"index": "docs"}, bodies[0], {"index": "docs"}, bodies[1]]
    assert msearch_payload(None, bodies[:1]).decode().splitlines()[0] == "{}"


def test_a_failed_search_in_msearch_raises():
    answer = {"responses": [{"hits": {"hits": []}}, {"error": {"type": "x", "reason": "no such field"},
                                                     "status": 400}]}
    with pytest.raises(ClusterError, match="no such field") as error:
        hit_lists(answer, "docs")
    assert error.value.status == 400


def _answer(failed, hits=()):
    shards = {"total": 3, "successful": 3 - failed, "failed": failed}
    if failed:
        shards["failures"] = [{"shard": 1, "reason": {"type": "node_disconnected_exception", "reason": "node left"}}]
    return {"_shards": shards, "hits": {"hits": list(hits)}}


def _scripted(answers: list):
    """A FakeCluster handler giving `answers` in turn (an exception in the list is raised)."""

    def handler(method, path, body):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


def test_a_search_with_failed_shards_is_asked_again_then_refused(monkeypatch):
    """A 200 answer with failed shards is incomplete: asked again while the cluster recovers, an error if it stays."""
    import splade_os.cluster.index
    from fakes import FakeCluster

    monkeypatch.setattr(splade_os.cluster.index.time, "sleep", lambda s: None)
    answers = [_answer(1), _answer(0, [{"_id": "a"}])]
    index = FakeCluster(lambda m, p, b: answers.pop(0)).index("docs")
    assert index.request_search({"query": {}})["hits"]["hits"] == [{"_id": "a"}]
    assert not answers

    msearch = FakeCluster(lambda m, p, b: {"responses": [_answer(0), _answer(2)]}).index("docs")
    with pytest.raises(ClusterError) as error:
        msearch.request_msearch([{}, {}])
    assert str(error.value) == "searching 'docs': 2 of 6 shard searches failed (node left)"
    assert len(msearch.cluster.calls) == 1 + len(splade_os.cluster.index.SHARD_RETRY_PAUSES)


def test_a_shard_with_no_copy_is_not_a_silent_empty_answer(monkeypatch):
    """OpenSearch counts a shard with no assigned copy in `total` only (neither failed nor successful)."""
    import splade_os.cluster.index
    from fakes import FakeCluster

    monkeypatch.setattr(splade_os.cluster.index.time, "sleep", lambda s: None)
    unassigned = {"_shards": {"total": 3, "successful": 2, "skipped": 1, "failed": 0}, "hits": {"hits": []}}
    skipped = {"_shards": {"total": 3, "successful": 3, "skipped": 2, "failed": 0}, "hits": {"hits": [{"_id": "a"}]}}
    answers = [unassigned, skipped]
    index = FakeCluster(lambda m, p, b: answers.pop(0)).index("docs")
    assert index.request_search({})["hits"]["hits"] == [{"_id": "a"}]  # skipped shards count as successful
    stuck = FakeCluster(lambda m, p, b: unassigned).index("docs")
    with pytest.raises(ClusterError, match="1 of 3 shard searches had no shard copy"):
        stuck.request_search({})


def test_a_search_failed_on_every_shard_is_asked_again(monkeypatch):
    """Right after a node leaves, a search may fail on all its shards (HTTP 500): asked again, it answers."""
    import splade_os.cluster.index
    from fakes import FakeCluster

    monkeypatch.setattr(splade_os.cluster.index.time, "sleep", lambda s: None)
    answers = [ClusterError("all shards failed", status=500, error_type="search_phase_execution_exception"),
               {"responses": [_answer(0), {"error": {"type": "search_phase_execution_exception"}, "status": 500}]},
               {"responses": [_answer(0, [{"_id": "a"}]), _answer(0)]}]

    index = FakeCluster(_scripted(answers)).index("docs")
    assert index.request_msearch([{}, {}])["responses"][0]["hits"]["hits"] == [{"_id": "a"}]
    assert not answers
    other = FakeCluster(lambda m, p, b: (_ for _ in ()).throw(ClusterError("bad query", status=400,
                                                                           error_type="parsing_exception")))
    with pytest.raises(ClusterError, match="bad query"):
        other.index("docs").request_search({})
    assert len(other.calls) == 1  # other errors are not asked again


def test_refresh_and_count_wait_out_a_busy_node(monkeypatch):
    """A refresh refused with 429 (a node's memory breaker) is asked again; a real error is not."""
    import splade_os.cluster.index
    from fakes import FakeCluster

    pauses = []
    monkeypatch.setattr(splade_os.cluster.index.time, "sleep", pauses.append)
    busy = ClusterError("refreshing 'docs' failed (HTTP 429: [parent] Data too large)", status=429, transient=True)
    answers = [busy, busy, {"_shards": {}}, busy, {"count": 7}]

    index = FakeCluster(_scripted(answers)).index("docs")
    index.refresh()
    assert index.count() == 7 and not answers and pauses == [0.5, 1.0, 0.5]
    refused = FakeCluster(lambda m, p, b: (_ for _ in ()).throw(ClusterError("no such index", status=404))).index("x")
    with pytest.raises(ClusterError, match="no such index"):
        refused.refresh()
    assert len(refused.cluster.calls) == 1
    always = FakeCluster(lambda m, p, b: (_ for _ in ()).throw(busy)).index("docs")
    with pytest.raises(ClusterError, match="429"):
        always.count()
    assert len(always.cluster.calls) == 1 + len(splade_os.cluster.index.TRANSIENT_PAUSES)
