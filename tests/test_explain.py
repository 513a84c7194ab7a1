"""`search --explain`: each hit's tokens, query weight x document weight, add up to its score on
both engines, whatever the index keeps in `_source`, with at most one more request for all the hits."""

import json

import pytest
from click.testing import CliRunner

from splade_os.cluster.index import IndexSettings
from samples import ingest_first
from splade_os.query.hits import contributions

pytestmark = pytest.mark.node
QUERIES = ("what is the effect of the boundary layer on heat transfer", "lift and drag of a slender wing",
           "buckling of thin cylindrical shells under pressure")


def test_contributions_are_the_shared_tokens_largest_first():
    parts = contributions({"a": 2.0, "b": 1.0, "c": 3.0}, {"a": 1.0, "c": 0.5, "d": 9.0}, {"a"}, {"a": "A"})
    assert [(p.token, p.product, p.in_text) for p in parts] == [("A", 2.0, True), ("c", 1.5, False)]


@pytest.fixture(scope="module", params=["map", "packed", "none"])
def explained_index(request, cluster, default_model, sample_dir, tmp_path_factory):
    name = f"explain-{request.param}"
    yield ingest_first(cluster, default_model, sample_dir, tmp_path_factory.mktemp("explain"), name, 200,
                       IndexSettings(source_features=request.param))
    cluster.request("DELETE", f"/{name}")


def _counting(index, monkeypatch) -> list:
    calls = []
    original = index.cluster.request

    def request(*args, **kwargs):
        calls.append(args[:2])
        return original(*args, **kwargs)

    monkeypatch.setattr(index.cluster, "request", request)
    return calls


def test_explanations_add_up_to_the_score(explained_index, monkeypatch):
    index = explained_index
    index.search(QUERIES[0], k=10, explain=True)  # the mapping, the query side, the clause cap read once
    calls = _counting(index, monkeypatch)
    for text in QUERIES:
        plain = index.search(text, k=10)
        before = len(calls)
        hits = index.search(text, k=10, explain=True)
        # The vectors come with the hits; where `_source` keeps none, one more request for all the hits.
        assert len(calls) - before == (2 if index.source_features == "none" else 1)
        assert all(index.field not in hit.source for hit in hits)
        assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in plain]
        for hit in hits:
            total = sum(part.product for part in hit.explanation)
            # The engines keep 9 significant bits of a stored weight; the engine's own shares are exact.
            tolerance = 1e-4 if index.source_features == "none" else 5e-3
            assert total == pytest.approx(hit.score, rel=tolerance), (text, hit.id)
            products = [part.product for part in hit.explanation]
            assert products == sorted(products, reverse=True)
            assert all(p.product == pytest.approx(p.query_weight * p.document_weight, rel=1e-6)
                       for p in hit.explanation)
        in_text = [part for hit in hits for part in hit.explanation if part.in_text]
        expansion = [part for hit in hits for part in hit.explanation if not part.in_text]
        assert in_text and expansion  # SPLADE matches words a document never says
        for hit in hits:
            words = set((hit.title + " " + hit.text).lower().split())
            assert all(part.in_text for part in hit.explanation if part.token in words), hit.id


def test_hybrid_hits_are_explained_by_their_splade_product(explained_index):
    from splade_os.query.hybrid import Hybrid

    hits = explained_index.search(QUERIES[1], k=5, hybrid=Hybrid(), explain=True)
    assert hits and all(hit.explanation is not None for hit in hits)
    assert any(hit.explanation for hit in hits)


def test_cli_explain_prints_and_sums(explained_index):
    from splade_os.cli.main import cli

    index = explained_index
    args = ["search", QUERIES[1], "--index", index.name, "--url", index.cluster.url, "-k", "10", "--explain"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "expansion" in result.output and "sum of" in result.output
    result = CliRunner().invoke(cli, args + ["--json"])
    hits = json.loads(result.output)
    assert set(hits[0]["explanation"][0]) == {"token", "query_weight", "document_weight", "product", "in_text"}
