"""Integration tests against a real node: ingest, search, pipeline checks, refusals."""

import json
from pathlib import Path

import numpy as np
import pytest

from splade_os.documents.encoder import DocumentEncoder
from splade_os.common.errors import ClusterError, ModelMismatchError
from splade_os.ingest import IngestOptions, ingest
from splade_os.models.resolve import resolve_model

pytestmark = [pytest.mark.slow, pytest.mark.smoke]
ROOT = Path(__file__).resolve().parent.parent


class RecordingEncoder:
    """Delegates to a DocumentEncoder and keeps every vector it produced (for the exact reference)."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.vocab_size = encoder.vocab_size
        self.vectors = {}

    def encode_stream(self, windows, on_batch=None):
        windows = list(windows)
        for (payload, vectors), (_, texts) in zip(self.encoder.encode_stream(windows, on_batch), windows):
            for text, vector in zip(texts, vectors):
                self.vectors[text] = vector
            yield payload, vectors


@pytest.fixture(scope="module")
def cranfield(cluster, default_model, sample_dir, tmp_path_factory):
    """The bundled Cranfield corpus ingested once; returns (index, doc vectors by id, stats, dead letters)."""
    recorder = RecordingEncoder(DocumentEncoder(default_model, device="cpu"))
    dead = tmp_path_factory.mktemp("dead") / "cranfield.rejected.jsonl"
    stats = ingest(cluster, sample_dir / "corpus.jsonl", "cranfield", default_model,
                   options=IngestOptions(dead_letter=dead), encoder=recorder, show_progress=False)
    by_id = {}
    for line in open(sample_dir / "corpus.jsonl", encoding="utf-8"):
        record = json.loads(line)
        content = f"{record['title']} {record['text']}" if record["title"] else record["text"]
        if content in recorder.vectors:
            by_id[record["_id"]] = recorder.vectors[content]
    return cluster.index("cranfield"), by_id, stats, dead


def _get(index, doc_id):
    return index.cluster.request("GET", f"/{index.name}/_doc/{doc_id}")["_source"]


def test_ingest_counts(cranfield):
    index, vectors, stats, dead = cranfield
    # Two Cranfield documents (471, 995) have empty title and text: rejected, the rest indexed.
    assert stats.rejected == 2 and stats.indexed == 1398 and stats.count_after == 1398
    reasons = [json.loads(line) for line in open(dead)]
    assert sorted(r["line"] for r in reasons) == [471, 995]
    assert all("empty text field" in r["reason"] for r in reasons)


def test_top10_matches_exact_dot_product(cranfield, default_model, sample_dir):
    index, vectors, _, _ = cranfield
    encoder = default_model.query_encoder
    ids = sorted(vectors)
    matrix = np.zeros((len(ids), len(encoder.keys)), dtype=np.float32)
    for row, doc_id in enumerate(ids):
        matrix[row, vectors[doc_id].ids] = vectors[doc_id].values
    queries = [json.loads(line)["text"] for line in open(sample_dir / "queries.jsonl")][:60]
    overlaps = []
    for text in queries:
        q = np.zeros(len(encoder.keys), dtype=np.float32)
        for token_id, weight in encoder.weights(text).items():
            q[token_id] = weight
        scores = matrix @ q
        exact = {ids[i] for i in np.argsort(-scores, kind="stable")[:10]}
        hits = index.search(text, k=10)
        assert len(hits) == 10
        overlaps.append(len(exact & {h.id for h in hits}) / 10)
        # Scores agree up to the 9-bit storage of feature values.
        top = hits[0]
        assert top.score == pytest.approx(float(scores[ids.index(top.id)]), rel=0.02)
    assert np.mean(overlaps) >= 0.9, overlaps


def test_documents_are_stamped_with_the_model(cranfield):
    index = cranfield[0]
    source = _get(index, "1")
    assert source["splade_model"]["name"] == "splade-os-default"
    assert "splade_fingerprint" not in source and "ingested_at" in source
    assert "%2E" in source["splade"]  # the "." token, escaped


def test_query_found_only_through_a_dot_token(cluster, default_model, tmp_path):
    corpus = tmp_path / "dots.jsonl"
    corpus.write_text(json.dumps({"_id": "d1", "text": "..."}) + "\n" + json.dumps({"_id": "d2", "text": "wing"}) + "\n")
    stats = ingest(cluster, corpus, "dots", default_model, show_progress=False,
                   options=IngestOptions(dead_letter=tmp_path / "dead.jsonl"))
    assert stats.indexed == 2
    assert list(default_model.query_encoder.encode("...")) == ["%2E"]
    assert [h.id for h in cluster.index("dots").search("...")] == ["d1"]


def test_bad_lines_go_to_dead_letters_and_the_rest_is_indexed(cluster, default_model, tmp_path):
    lines = [
        b'{"_id": "ok1", "text": "supersonic flow over a wedge"}',
        b'{"_id": "ok2", "title": "drag", "text": "drag of a cone"}',
        b'{"_id": "bad-json", "text": ',
        b"\xff\xfe\x00 not utf8",
        b'{"_id": "no-text"}',
        b'{"_id": "empty", "text": "  "}',
        b'{"_id": "ok1", "text": "duplicate id"}',
        b'{"text": "no id given, so a stable one"}',
    ]
    corpus = tmp_path / "mixed.jsonl"
    corpus.write_bytes(b"\n".join(lines) + b"\n")
    dead = tmp_path / "mixed.rejected.jsonl"
    options = IngestOptions(dead_letter=dead)
    stats = ingest(cluster, corpus, "mixed", default_model, options=options, show_progress=False)
    assert (stats.indexed, stats.rejected, stats.count_after) == (3, 5, 3)
    records = {r["line"]: r for r in map(json.loads, open(dead))}
    assert sorted(records) == [3, 4, 5, 6, 7]
    assert "malformed JSON" in records[3]["reason"] and records[3]["raw"] == '{"_id": "bad-json", "text": '
    assert "not valid UTF-8" in records[4]["reason"] and "raw_base64" in records[4]
    assert "missing text field" in records[5]["reason"]
    assert "empty text field" in records[6]["reason"]
    assert "duplicate id 'ok1'" in records[7]["reason"]
    # Re-running never duplicates: ids (given or derived from content) are stable.
    again = ingest(cluster, corpus, "mixed", default_model, options=options, show_progress=False)
    assert again.count_after == 3


def test_pipeline_rejects_foreign_and_malformed_documents(cranfield):
    index = cranfield[0]
    if not index.cluster.has_ingest_checks:
        # A minimal zip (Elasticsearch's; OpenSearch's before 3.5) has no fail processor: the index
        # has no pipeline and the client checked and stamped every document itself
        # (test_documents_are_stamped_with_the_model).
        nodes = index.cluster.request("GET", "/_nodes/ingest")["nodes"].values()
        assert not any(p["type"] == "fail" for node in nodes for p in node.get("ingest", {}).get("processors", []))
        assert index.pipeline is None
        assert "default_pipeline" not in json.dumps(index.cluster.request("GET", f"/{index.name}/_settings"))
        return
    good = _get(index, "1")
    cases = {
        "another model": {"text": "x", "splade": good["splade"], "splade_fingerprint": "0" * 64},
        "no fingerprint": {"text": "x", "splade": good["splade"]},
        "empty features": {"text": "x", "splade": {}, "splade_fingerprint": "0"},
        "zero value": {"text": "x", "splade": {"wing": 0.0}, "splade_fingerprint": "0"},
    }
    for name, doc in cases.items():
        with pytest.raises(ClusterError, match="splade-os"):
            index.cluster.request("PUT", f"/{index.name}/_doc/foreign-{name.replace(' ', '-')}", doc)


def test_other_model_is_refused(cluster, cranfield, default_model, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    index = cranfield[0]
    folder = tmp_path / "other-model"
    shutil.copytree(default_model.root, folder)
    table_path = folder / "query_0_SparseStaticEmbedding" / "model.safetensors"
    table = load_file(str(table_path))
    table["weight"] = table["weight"] * 2
    save_file(table, str(table_path))
    with pytest.raises(ModelMismatchError, match="was ingested with model"):
        index.query_encoder(str(folder))
    # Ingesting with it into the same index is refused before anything is sent.
    corpus = tmp_path / "one.jsonl"
    corpus.write_text('{"_id": "x1", "text": "wing"}\n')
    with pytest.raises(ModelMismatchError):
        ingest(cluster, corpus, index.name, resolve_model(str(folder)), show_progress=False)
    assert not cluster.exists(f"/{index.name}/_doc/x1")
    # Searching with no model uses the index's own query side, stored in the cluster by hash.
    encoder = index.query_encoder()
    assert encoder.hash == index.model["hash"] == default_model.query_encoder.hash


def test_identity_recorded_in_meta(cranfield, default_model):
    index = cranfield[0]
    meta = index.cluster.request("GET", f"/{index.name}/_mapping")[index.name]["mappings"]["_meta"]["splade_os"]
    assert meta["model"] == default_model.identity.as_meta()
    assert meta["model"]["source"] == "default"
    pipeline = "splade-os-cranfield" if index.cluster.has_ingest_checks else ""
    assert meta["field"] == "splade" and meta["pipeline"] == pipeline and meta["schema"] == 3
    assert (meta["title_field"], meta["text_field"]) == ("title", "text")


def test_expected_retrieval_scores(cranfield, sample_dir):
    """The scores kept in benchmarks/regressions.json, within their tolerances, on each engine."""
    from splade_os.corpus.beir import load_beir
    from splade_os.query.hybrid import Hybrid
    from splade_os.query import bm25_body

    expected = json.loads((ROOT / "benchmarks" / "regressions.json").read_text())["cranfield"]["runs"]
    index = cranfield[0]
    queries, qrels, _ = load_beir(sample_dir)
    measured = {"splade-default": index.evaluate(queries, qrels).metrics,
                "bm25": index.evaluate(queries, qrels, body=bm25_body).metrics,
                "hybrid": index.evaluate(queries, qrels, hybrid=Hybrid()).metrics}
    failures = [f"{run} {metric}: {measured[run][metric]:.4f}, expected {value} +- {tolerance}"
                for run, spec in expected.items() for metric, (value, tolerance) in spec["metrics"].items()
                if abs(measured[run][metric] - value) > tolerance]
    assert not failures, failures


def test_parallel_requests_share_kept_connections(cranfield, default_model, caplog):
    """Threads searching one cluster at once (as bulk workers and an app do) reuse open connections
    instead of closing each extra one after use (urllib3's "Connection pool is full" warning)."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    index = cranfield[0]
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        with ThreadPoolExecutor(max_workers=8) as pool:
            counts = list(pool.map(lambda i: len(index.search(f"flow over a wing {i}", k=3,
                                                              encoder=default_model.query_encoder)), range(64)))
    assert counts == [3] * 64
    assert [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()] == []
