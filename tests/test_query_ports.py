"""The query side in every language is the same query side: the Python side equals
sentence-transformers on the whole conformance pack, and each port (Python, Java, JavaScript,
through the one runner `scripts/query-port`) reproduces the pack exactly and gets the same top 10
as the Python client from real OpenSearch and Elasticsearch nodes."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from splade_os.query.encoder import QueryEncoder
from splade_os.query.pack import CONFORMANCE_FILE, answer, default_texts, load_side, write_pack
from samples import ingest_first

ROOT = Path(__file__).resolve().parent.parent
PORTS = ["python", "java", "js"]


def _f32(value):
    """A JSON value with every number read as a float32 (how weights and boosts are compared)."""
    if isinstance(value, dict):
        return {k: _f32(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_f32(v) for v in value]
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return float(np.float32(value))
    return value


def records(pack: Path) -> list:
    return [json.loads(line) for line in (pack / CONFORMANCE_FILE).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def default_pack(default_model, tmp_path_factory) -> Path:
    return write_pack(default_model.query_encoder, tmp_path_factory.mktemp("packs") / "default", default_texts())


@pytest.fixture(scope="module")
def signed_pack(default_model, tmp_path_factory) -> Path:
    """The default tokenizer with a table of negative (every 3rd id) and zero (every 7th) weights,
    and queries cut at 16 tokens: what the default model never exercises."""
    encoder = default_model.query_encoder
    table = encoder.table.copy()
    table[::3] *= -1
    table[::7] = 0
    signed = QueryEncoder(Tokenizer.from_str(encoder.tokenizer.to_str()), table, "signed", 16)
    return write_pack(signed, tmp_path_factory.mktemp("packs") / "signed", default_texts())


def test_the_pack_is_what_the_python_side_answers(default_pack, signed_pack):
    for pack in (default_pack, signed_pack):
        encoder = load_side(pack)
        expected = records(pack)
        assert len(expected) == len(default_texts()) and any("error" in r for r in expected)
        for record in expected:
            reply = answer(encoder, {key: record[key] for key in ("text", "max_clauses", "size", "field")
                                     if key in record})
            assert reply == {key: record[key] for key in ("features", "bodies", "error") if key in record}
    signed = records(signed_pack)
    assert any(w < 0 for r in signed for w in r.get("features", {}).values())
    assert any(len(r.get("ids", ())) == 16 for r in signed)


def test_the_python_side_equals_sentence_transformers_on_the_pack(default_model, default_pack):
    from sentence_transformers import SparseEncoder

    model = SparseEncoder(str(default_model.root), device="cpu")
    cases = [r for r in records(default_pack) if "error" not in r]
    dense = model.encode_query([r["text"] for r in cases], convert_to_tensor=True).to_dense()
    keys = default_model.query_encoder.keys
    for record, row in zip(cases, dense):
        expected = {keys[i]: float(row[i]) for i in row.nonzero().flatten().tolist()}
        assert record["features"] == expected, record["text"]


def run_port(lang: str, model, requests: list, *source) -> list:
    """Each request's reply from `scripts/query-port LANG --model MODEL` (or the `source` arguments)."""
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    where = list(source) or ["--model", str(model)]
    done = subprocess.run(["bash", str(ROOT / "scripts" / "query-port"), lang, *where], input=lines,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    replies = [json.loads(line) for line in done.stdout.split("\n") if line]
    assert len(replies) == len(requests), done.stderr[-3000:]
    return replies


def _requests(pack: Path) -> list:
    return [{key: r[key] for key in ("text", "max_clauses", "size", "field") if key in r} for r in records(pack)]


@pytest.mark.slow
@pytest.mark.parametrize("lang", PORTS)
@pytest.mark.parametrize("pack_name", ["default", "signed"])
def test_each_port_passes_the_whole_pack(lang, pack_name, default_pack, signed_pack):
    pack = default_pack if pack_name == "default" else signed_pack
    expected = records(pack)
    for record, reply in zip(expected, run_port(lang, pack, _requests(pack))):
        if "error" in record:
            assert set(reply) == {"error"} and "surrogate" in reply["error"], (record["text"], reply)
            assert "\n" not in reply["error"]
            continue
        assert set(reply) == {"features", "bodies"}, (record["text"], reply)
        assert _f32(reply["features"]) == _f32(record["features"]), record["text"]
        assert _f32(reply["bodies"]) == _f32(record["bodies"]), record["text"]


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["java", "js"])
def test_a_port_refuses_a_folder_without_a_query_side_in_one_line(lang, tmp_path):
    (tmp_path / "query-side.json").write_text('{"name": "not a query side"}')
    done = subprocess.run(["bash", str(ROOT / "scripts" / "query-port"), lang, "--model", str(tmp_path)],
                          input='{"text": "lift"}\n', capture_output=True, text=True, timeout=900)
    assert done.returncode != 0 and done.stdout == ""
    message = done.stderr.strip().splitlines()
    assert len(message) == 1 and "query side" in message[0], done.stderr[-2000:]


@pytest.fixture(scope="module")
def cranfield_index(cluster, default_model, sample_dir, tmp_path_factory):
    """The first 400 Cranfield documents, ingested on each engine."""
    yield ingest_first(cluster, default_model, sample_dir, tmp_path_factory.mktemp("ports-index"), "ports", 400)
    cluster.request("DELETE", "/ports")


@pytest.mark.node
@pytest.mark.slow
@pytest.mark.parametrize("lang", PORTS)
def test_each_port_finds_what_the_python_client_finds(lang, cranfield_index, default_pack, sample_dir):
    index = cranfield_index
    texts = [json.loads(line)["text"] for line in open(sample_dir / "queries.jsonl", encoding="utf-8")]
    engine = index.cluster.engine.name
    for text, reply in zip(texts, run_port(lang, default_pack, [{"text": t} for t in texts])):
        theirs = index.request_search(reply["bodies"][engine])["hits"]["hits"]
        ours = index.search(text, k=10)
        assert [(h["_id"], h["_score"]) for h in theirs] == [(h.id, h.score) for h in ours], text


@pytest.mark.node
@pytest.mark.slow
@pytest.mark.parametrize("lang", PORTS)
def test_each_port_reads_the_query_side_of_an_index_from_the_cluster(lang, cranfield_index, default_pack):
    """As an app does: the index's `_meta` names the model, `splade-query-sides` holds its query side."""
    index = cranfield_index
    requests = [{"text": r["text"]} for r in records(default_pack)[:40] if "error" not in r]
    from_cluster = run_port(lang, None, requests, "--url", index.cluster.url, "--index", index.name)
    from_pack = run_port(lang, default_pack, requests)
    assert _f32(from_cluster) == _f32(from_pack)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "query-port"), lang, "--url", index.cluster.url,
                           "--index", "no-such-index"], input='{"text": "lift"}\n', capture_output=True, text=True,
                          timeout=900)
    assert done.returncode != 0 and done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["java", "js"])
def test_each_port_loads_an_exported_model_folder(lang, default_model, default_pack, tmp_path):
    """`splade-os export` writes query-side.json into the model folder: the ports load the folder itself."""
    from splade_os.models.export import export_model

    folder = export_model(default_model, tmp_path / "exported")
    requests = [{"text": r["text"]} for r in records(default_pack)[:40] if "error" not in r]
    assert _f32(run_port(lang, folder, requests)) == _f32(run_port("python", default_pack, requests))
