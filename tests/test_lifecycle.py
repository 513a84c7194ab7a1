"""The model's life cycle on a real node: train -> push -> pull -> ingest -> search (-> eval)."""

import base64
import filecmp
import json
import shutil

import numpy as np
import pytest

from splade_os.common.errors import ModelError, RegistryError
from splade_os.ingest import IngestOptions, ingest
from splade_os.models.resolve import resolve_model
from splade_os.models.registry import CHUNK_INDEX, QUERY_SIDE_INDEX, REGISTRY_INDEX, pull, push, query_side
from splade_os.training.trainer import TrainArgs, beir_pairs, starting_model, static_table_parameter, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(sample_dir, tmp_path_factory):
    """A few training steps on Cranfield query -> relevant-document pairs."""
    folder = tmp_path_factory.mktemp("beir")
    shutil.copy(sample_dir / "corpus.jsonl", folder)
    shutil.copy(sample_dir / "queries.jsonl", folder)
    (folder / "qrels").mkdir()
    shutil.copy(sample_dir / "qrels" / "test.tsv", folder / "qrels" / "train.tsv")
    rows = beir_pairs(folder).shuffle(seed=1).select(range(64))
    model = starting_model(init_idf=sample_dir / "corpus.jsonl", max_seq_length=64)
    before = dict(model.named_parameters())[static_table_parameter(model)].detach().clone()
    args = TrainArgs(output_dir=tmp_path_factory.mktemp("run"), batch_size=16, max_steps=8, logging_steps=1,
                     learning_rate=1e-4, save_steps=1000, document_regularizer_weight=0.0)
    result = train(model, rows, args, show_progress=False)
    return result, before


def test_training_lowers_the_loss_and_moves_the_table(trained):
    result, before = trained
    assert result.steps == 8 and len(result.losses) == 8
    # Two passes over the same 4 batches: the second pass has the lower mean loss.
    assert np.mean(result.losses[4:]) < np.mean(result.losses[:4]), result.losses
    assert result.table_change > 0
    card = (result.model_dir / "README.md").read_text()
    assert "SpladeLoss" in card
    saved = json.loads((result.model_dir / "splade_os_training.json").read_text())
    assert saved["training_args"]["static_learning_rate"] == 1e-3


def test_beir_pairs_without_training_queries_use_titles(sample_dir):
    rows = beir_pairs(sample_dir, split="train")  # Cranfield has only test qrels
    assert rows.column_names == ["query", "positive"] and len(rows) > 1000
    assert rows[0]["query"] and rows[0]["positive"] != rows[0]["query"]


def test_push_pull_ingest_search(cluster, trained, tmp_path, sample_dir):
    model_dir = trained[0].model_dir
    first = push(cluster, model_dir, "cran-test", show_progress=False)
    second = push(cluster, model_dir, "cran-test", show_progress=False)
    assert (first["version"], second["version"]) == (1, 2)
    with pytest.raises(RegistryError, match="never overwritten"):
        push(cluster, model_dir, "cran-test", version=2, show_progress=False)

    pulled = pull(cluster, "cran-test@1", dest=tmp_path / "pulled", show_progress=False)
    names = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(pulled).as_posix() for p in pulled.rglob("*") if p.is_file())
    for name in names:
        assert filecmp.cmp(model_dir / name, pulled / name, shallow=False), name

    # Apps in any language can read the query side from the cluster: the registry entry names it.
    meta = cluster.request("GET", f"/{REGISTRY_INDEX}/_doc/cran-test@2")["_source"]
    side = cluster.request("GET", f"/{meta['query_side']['index']}/_doc/{meta['query_side']['id']}")["_source"]
    assert meta["query_side"]["index"] == QUERY_SIDE_INDEX and side["hash"] == meta["hash"]
    table = np.frombuffer(base64.b64decode(side["query_table"]), dtype="<f4")
    model = resolve_model("cran-test@2", cluster, show_progress=False)
    assert model.source == "cluster:cran-test@2" and model.version == "2"
    assert np.array_equal(table, model.query_encoder.table)

    corpus = tmp_path / "small.jsonl"
    corpus.write_text("".join(open(sample_dir / "corpus.jsonl").readlines()[:30]))
    stats = ingest(cluster, corpus, "lifecycle", model, options=IngestOptions(dead_letter=tmp_path / "dead.jsonl"),
                   show_progress=False)
    assert stats.indexed == 30
    # Search with no model: the query side comes from the cluster, found through the index _meta.
    index = cluster.index("lifecycle")
    assert index.model["source"] == "cluster:cran-test@2" and index.model["version"] == "2"
    encoder = index.query_encoder()
    assert encoder.hash == model.query_encoder.hash and query_side(cluster, encoder.hash) is not None
    hits = index.search("boundary layer", k=3)
    assert len(hits) == 3

    # Evaluate the index: Cranfield's judgments restricted to the 30 documents ingested.
    from splade_os.corpus.beir import load_beir

    queries, qrels, _ = load_beir(sample_dir)
    ids = {json.loads(line)["_id"] for line in open(corpus)}
    qrels = {q: {d: g for d, g in docs.items() if d in ids} for q, docs in qrels.items()}
    qrels = {q: docs for q, docs in qrels.items() if docs}
    result = index.evaluate(queries, qrels, k=10)
    # The exact in-memory reference of the same model on the same 30 documents: the index loses
    # only the 9-bit storage of the values.
    from splade_os.evaluate import evaluate_exact, exact_doc_vectors

    exact = evaluate_exact(exact_doc_vectors(corpus, model, device="cpu"), queries, qrels, encoder, k=10)
    assert result.queries == len(qrels) > 5
    assert result.metrics["ndcg@10"] == pytest.approx(exact["ndcg@10"], abs=0.01)
    assert result.metrics["ndcg@10"] > 0.3 and result.latency["p50_ms"] > 0


def test_corrupted_or_missing_chunk_is_an_error(cluster, trained, tmp_path):
    from urllib.parse import quote

    push(cluster, trained[0].model_dir, "cran-broken", show_progress=False)
    path = f"/{CHUNK_INDEX}/_doc/" + quote("cran-broken@1/document_0_Transformer/model.safetensors#0", safe="")
    source = cluster.request("GET", path)["_source"]
    data = bytearray(base64.b64decode(source["data"]))
    data[100] ^= 0xFF
    source["data"] = base64.b64encode(bytes(data)).decode()
    cluster.request("PUT", path, source, params={"refresh": "true"})
    with pytest.raises(RegistryError, match="corrupted"):
        pull(cluster, "cran-broken@1", dest=tmp_path / "a", show_progress=False)
    cluster.request("DELETE", path, params={"refresh": "true"})
    with pytest.raises(RegistryError, match="missing"):
        pull(cluster, "cran-broken@1", dest=tmp_path / "b", show_progress=False)
    with pytest.raises(RegistryError, match="not in the registry"):
        pull(cluster, "cran-broken@7", dest=tmp_path / "c", show_progress=False)


def test_only_safe_files_are_pushed(cluster, default_model, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(default_model.root, folder)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelError, match="only safetensors, JSON and text files"):
        push(cluster, folder, "unsafe", show_progress=False)
