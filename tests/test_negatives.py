"""Hard-negative mining: one _msearch per batch, the positive and the skipped ranks left out."""

import json

import datasets
import pytest

from splade_os.common.errors import ClusterError, InputError
from splade_os.training.negatives import MiningOptions, add_hard_negatives, mine, pick_negatives

from fakes import FakeCluster, splade_mapping


def hit(doc_id, text, title=""):
    return {"_id": doc_id, "_source": {"title": title, "text": text}}


def test_pick_skips_the_positive_duplicates_and_the_first_ranks():
    hits = [hit("p", "the positive"), hit("a", "alpha"), hit("a2", "Alpha "), hit("b", "beta", "T"),
            hit("c", "gamma"), hit("d", "delta")]
    assert pick_negatives(hits, "p", "the positive", count=2, skip=0) == ["alpha", "T beta"]
    assert pick_negatives(hits, "p", "the positive", count=2, skip=1) == ["T beta", "gamma"]
    # Without an id the positive is recognised by its text.
    assert pick_negatives(hits, None, "The  positive", count=1, skip=0) == ["alpha"]
    assert pick_negatives(hits, "p", "x", count=2, skip=4) == []


def msearch_answer(bodies):
    # Each search answers hits named after its query: the positive first, then five others.
    responses = []
    for body in bodies:
        text = body["query"]["multi_match"]["query"]
        responses.append({"hits": {"hits": [hit(f"{text}-pos", f"{text} positive")]
                                   + [hit(f"{text}-{r}", f"{text} other {r}") for r in range(5)]}})
    return {"responses": responses}


def test_mining_sends_one_msearch_per_batch():
    def handler(method, path, body):
        if path == "/docs/_mapping":  # the index says which fields hold the title and text
            return splade_mapping("docs")
        assert (method, path) == ("POST", "/docs/_msearch")
        lines = body.decode().splitlines()
        assert lines[0::2] == ["{}"] * (len(lines) // 2)
        return msearch_answer([json.loads(line) for line in lines[1::2]])

    cluster = FakeCluster(handler)
    queries = [f"q{i}" for i in range(10)]
    rows = datasets.Dataset.from_dict({"query": queries, "positive": [f"{q} positive" for q in queries],
                                       "positive_id": [f"{q}-pos" for q in queries]})
    mined, stats = add_hard_negatives(rows, cluster.index("docs"), MiningOptions("bm25", count=2, skip=1, batch=4))
    assert len(cluster.calls) == 4 and stats.requests == 3 and stats.kept == 10
    assert mined.column_names == ["query", "positive", "positive_id", "negative_1", "negative_2"]
    assert mined[0]["negative_1"] == "q0 other 1" and mined[9]["negative_2"] == "q9 other 2"
    # The body asks for enough hits: positive + skipped + wanted, title and text only.
    body = json.loads(cluster.calls[1][2].decode().splitlines()[1])
    assert body["size"] >= 1 + 1 + 2 and body["_source"] == ["title", "text"]
    assert body["query"]["multi_match"]["fields"] == ["title", "text"]


def test_a_failed_search_inside_msearch_is_an_error():
    cluster = FakeCluster(lambda m, p, b: splade_mapping("docs") if p.endswith("_mapping") else
                          {"responses": [{"error": {"reason": "no such index [docs]"}, "status": 404}]})
    with pytest.raises(ClusterError, match="no such index"):
        mine(cluster.index("docs"), ["q"], ["p"], None, MiningOptions())


def test_no_negatives_found_is_an_input_error():
    cluster = FakeCluster(lambda m, p, b: splade_mapping("docs") if p.endswith("_mapping") else
                          {"responses": [{"hits": {"hits": []}}]})
    rows = datasets.Dataset.from_dict({"query": ["q"], "positive": ["p"]})
    with pytest.raises(InputError, match="is the corpus indexed there"):
        add_hard_negatives(rows, cluster.index("docs"), MiningOptions())
    with pytest.raises(InputError, match="expected one of"):
        MiningOptions("dense").check()
