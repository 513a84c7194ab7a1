"""Two-phase search: a first pass on the highest-weight tokens, a rescore with the rest."""

import json

import numpy as np
import pytest

from splade_os.bulk import BulkLines, RetryPolicy, send_chunk
from splade_os.common.errors import InputError
from splade_os.cluster.index import IndexSettings, SpladeIndex
from splade_os.query import Pruning, TwoPhase, feature_query, query_body

KEYS = [f"t{i}" for i in range(50)]


def test_body_splits_the_query_by_weight():
    weights = {3: 0.5, 7: 4.0, 9: 2.0, 11: 1.0}
    body = query_body(weights, KEYS, "opensearch", size=10, two_phase=TwoPhase(tokens=2, window=100))
    first = [c["rank_feature"] for c in body["query"]["bool"]["should"]]
    assert [(c["field"], c["boost"]) for c in first] == [("splade.t7", 4.0), ("splade.t9", 2.0)]
    rescore = body["rescore"]
    assert rescore["window_size"] == 100
    assert rescore["query"]["query_weight"] == rescore["query"]["rescore_query_weight"] == 1.0
    rest = [c["rank_feature"] for c in rescore["query"]["rescore_query"]["bool"]["should"]]
    assert [(c["field"], c["boost"]) for c in rest] == [("splade.t11", 1.0), ("splade.t3", 0.5)]


def test_short_query_and_window_smaller_than_k():
    weights = {1: 1.0, 2: 2.0}
    assert "rescore" not in query_body(weights, KEYS, "opensearch", two_phase=TwoPhase(tokens=2))
    assert query_body(weights, KEYS, "opensearch", size=50, two_phase=TwoPhase(tokens=1, window=10))["rescore"]["window_size"] == 50
    body = query_body(weights, KEYS, engine="elasticsearch", two_phase=TwoPhase(tokens=1))
    assert body["query"] == feature_query([("t2", 2.0)], "splade", engine="elasticsearch")
    assert body["rescore"]["query"]["rescore_query"] == feature_query([("t1", 1.0)], "splade", engine="elasticsearch")
    with pytest.raises(InputError):
        TwoPhase(tokens=0)
    with pytest.raises(InputError, match="not both"):
        query_body(weights, KEYS, engine="elasticsearch", two_phase=TwoPhase(), pruning=Pruning())


def test_rescored_scores_are_the_full_query_scores(cluster, default_model):
    """On a real node: hits inside the window score exactly as with the full query."""
    index = SpladeIndex(cluster, "two-phase")
    if index.exists():
        cluster.request("DELETE", "/two-phase")
    index.create(default_model, IndexSettings())
    keys = default_model.query_encoder.keys
    lines = BulkLines(index.name, index.field, keys)
    rng = np.random.default_rng(0)
    encoder = default_model.query_encoder
    query = "transition of laminar boundary layers to turbulence at supersonic speeds"
    vocabulary = np.array(sorted(encoder.weights(query)))
    fingerprint = default_model.identity.fingerprint

    class Vector:
        def __init__(self, ids, values):
            self.ids, self.values = ids, values

    actions = []
    for n in range(400):
        ids = np.unique(np.concatenate([rng.choice(vocabulary, 4), rng.integers(1000, 30000, 20)]))
        actions.append(lines.document(f"d{n}", {"title": "", "text": f"doc {n}", "splade_fingerprint": fingerprint},
                                      Vector(ids, rng.gamma(1.0, 1.0, len(ids)).astype(np.float32))))
    assert send_chunk(cluster, actions, RetryPolicy()) == [None] * 400
    index.refresh()

    def hits(two_phase):
        body = index.body(query, k=10, source=False, two_phase=two_phase)
        return [(h["_id"], h["_score"]) for h in index.request_search(body)["hits"]["hits"]]

    full = dict(hits(None))
    assert len(full) == 10
    # A window holding every first-pass match: the full query's ranking of the documents that
    # match one of the first-pass tokens (the others never reach the window).
    whole_window = hits(TwoPhase(tokens=2, window=400))
    first_pass = index.body(query, k=10, two_phase=TwoPhase(tokens=2))["query"]
    body = {"size": 10, "_source": False, "query": {"bool": {"must": index.body(query)["query"], "filter": first_pass}}}
    expected = [(h["_id"], h["_score"]) for h in index.request_search(body)["hits"]["hits"]]
    assert [i for i, _ in whole_window] == [i for i, _ in expected]
    assert np.allclose([s for _, s in whole_window], [s for _, s in expected], rtol=1e-5)
    narrow = hits(TwoPhase(tokens=2, window=10))
    everything = dict(hits(TwoPhase(tokens=100, window=10)))  # the full query again
    assert everything == pytest.approx(full)
    for doc_id, score in narrow:  # a narrow window may miss documents, never mis-score them
        body = {"size": 1, "query": {"bool": {"must": index.body(query, k=1)["query"],
                                              "filter": {"ids": {"values": [doc_id]}}}}}
        assert score == pytest.approx(index.request_search(body)["hits"]["hits"][0]["_score"], rel=1e-5)
    # The command line sends the same two-phase body.
    from click.testing import CliRunner

    from splade_os.cli import cli

    result = CliRunner().invoke(cli, ["-q", "search", query, "--index", "two-phase", "--url", cluster.url, "--json",
                                      "--two-phase", "--first-tokens", "2", "--rescore-window", "10"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert [h["id"] for h in printed] == [i for i, _ in narrow]
    assert [h["score"] for h in printed] == pytest.approx([s for _, s in narrow])
    cluster.request("DELETE", "/two-phase")


def test_cli_two_phase_options_need_the_flag():
    from click.testing import CliRunner

    from splade_os.cli import cli

    result = CliRunner().invoke(cli, ["-q", "search", "lift", "--index", "x", "--first-tokens", "3"])
    assert result.exit_code == 2 and "needs --two-phase" in result.output
