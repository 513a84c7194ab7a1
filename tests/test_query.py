"""The query side equals sentence-transformers' encode_query exactly, and needs no torch."""

import json
import subprocess
import sys
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splade_os.query import ClauseCapWarning, QueryEncoder, query_body


@pytest.fixture(scope="module")
def encoder(default_model):
    return default_model.query_encoder


@pytest.fixture(scope="module")
def st_model(default_model):
    from sentence_transformers import SparseEncoder

    return SparseEncoder(str(default_model.root), device="cpu")


def _reference(st_model, texts):
    dense = st_model.encode_query(texts, convert_to_tensor=True).to_dense()
    return [{int(i): float(row[i]) for i in row.nonzero().flatten().tolist()} for row in dense]


def test_equals_encode_query_on_real_queries(encoder, st_model, sample_dir):
    texts = [json.loads(line)["text"] for line in open(sample_dir / "queries.jsonl")]
    texts += ["", "...", "wing wing wing", "LIFT. drag... ##.", "x" * 3000, "ünïcödé 中文 😀"]
    for text, expected in zip(texts, _reference(st_model, texts)):
        assert encoder.weights(text) == expected, text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_equals_encode_query_on_any_text(encoder, st_model, text):
    assert encoder.weights(text) == _reference(st_model, [text])[0]


def test_dsl_shape(encoder):
    body = encoder.to_dsl("pressure distribution on a wing.", "opensearch", field="splade", size=7)
    assert body["size"] == 7 and body["track_total_hits"] is False
    clauses = body["query"]["bool"]["should"]
    weights = encoder.encode("pressure distribution on a wing.")
    assert len(clauses) == len(weights)
    for clause in clauses:
        feature = clause["rank_feature"]
        key = feature["field"].split(".", 1)[1]
        assert "." not in key and feature["linear"] == {} and feature["boost"] == weights[key]
    assert [c["rank_feature"]["boost"] for c in clauses] == sorted(weights.values(), reverse=True)
    assert "splade.%2E" in {c["rank_feature"]["field"] for c in clauses}


def test_dsl_places_a_filter_by_the_share_the_app_gives(encoder):
    text, filter = "pressure distribution on a wing.", "tenant=t3"
    plain = encoder.to_dsl(text, "opensearch")
    beside = encoder.to_dsl(text, "opensearch", filter=filter)
    assert beside["query"]["bool"]["filter"] == [{"term": {"tenant": "t3"}}]
    assert beside["query"]["bool"]["should"] == plain["query"]["bool"]["should"]
    assert encoder.to_dsl(text, "opensearch", filter=filter, filter_share=0.2) == {
        **plain, "post_filter": {"bool": {"filter": [{"term": {"tenant": "t3"}}]}}}
    narrow = encoder.to_dsl(text, "opensearch", filter=filter, filter_share=0.001)
    assert narrow["query"]["bool"]["must"] == [plain["query"], {"constant_score": {
        "filter": {"term": {"tenant": "t3"}}, "boost": 0}}]


def test_clause_cap_keeps_highest_weights():
    keys = [f"t{i}" for i in range(10)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        body = query_body({i: float(i + 1) for i in range(10)}, keys, "opensearch", max_clauses=3)
    assert [c["rank_feature"]["field"] for c in body["query"]["bool"]["should"]] == ["splade.t9", "splade.t8", "splade.t7"]
    assert any(issubclass(w.category, ClauseCapWarning) for w in caught)


def test_query_without_known_tokens_matches_nothing():
    assert query_body({}, [], "opensearch")["query"] == {"match_none": {}}


def test_query_side_does_not_import_torch(default_model):
    code = (
        "import sys; from splade_os import QueryEncoder; "
        f"e = QueryEncoder.load({str(default_model.root)!r}); e.to_dsl('lift', 'opensearch'); "
        "import splade_os.cli, splade_os.query.hits; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
