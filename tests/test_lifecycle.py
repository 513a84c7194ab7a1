"""The model's life cycle on a real node: train -> push -> pull -> ingest -> search (-> eval)."""

import base64
import filecmp
import json
import shutil

import numpy as np
import pytest

from connector.errors import ModelError, RegistryError
from connector.ingest import ingest
from connector.model import resolve_model
from connector.registry import CHUNK_INDEX, REGISTRY_INDEX, pull, push, query_side
from connector.search import query_encoder_for, search
from connector.train import TrainArgs, beir_pairs, starting_model, static_table_parameter, train


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


def test_push_pull_ingest_search(client, opensearch_url, trained, tmp_path, sample_dir):
    model_dir = trained[0].model_dir
    first = push(client, opensearch_url, model_dir, "cran-test", show_progress=False)
    second = push(client, opensearch_url, model_dir, "cran-test", show_progress=False)
    assert (first["version"], second["version"]) == (1, 2)
    with pytest.raises(RegistryError, match="never overwritten"):
        push(client, opensearch_url, model_dir, "cran-test", version=2, show_progress=False)

    pulled = pull(client, opensearch_url, "cran-test@1", dest=tmp_path / "pulled", show_progress=False)
    names = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(pulled).as_posix() for p in pulled.rglob("*") if p.is_file())
    for name in names:
        assert filecmp.cmp(model_dir / name, pulled / name, shallow=False), name

    # Apps in any language can read the query side from the registry document.
    meta = client.get(index=REGISTRY_INDEX, id="cran-test@2")["_source"]
    table = np.frombuffer(base64.b64decode(meta["query_side"]["query_table"]), dtype="<f4")
    layout = resolve_model("cran-test@2", show_progress=False, client=client, url=opensearch_url)
    assert layout.source == "cluster:cran-test@2"
    from connector.query import QueryEncoder

    assert np.array_equal(table, QueryEncoder(layout).table)

    corpus = tmp_path / "small.jsonl"
    corpus.write_text("".join(open(sample_dir / "corpus.jsonl").readlines()[:30]))
    stats = ingest(client, opensearch_url, corpus, "lifecycle", layout, show_progress=False,
                   dead_letter_path=tmp_path / "dead.jsonl")
    assert stats.indexed == 30
    # Search with no model: the query side comes from the registry, found through the index _meta.
    encoder, index_meta = query_encoder_for(client, opensearch_url, "lifecycle")
    assert index_meta["model"]["source"] == "cluster:cran-test@2" and index_meta["model"]["version"] == "2"
    assert encoder.layout.query_dir == query_side(client, opensearch_url, "cran-test@2")
    hits = search(client, opensearch_url, "lifecycle", "boundary layer", encoder, k=3)
    assert len(hits) == 3

    # Evaluate the index: Cranfield's judgments restricted to the 30 documents ingested.
    from connector.evaluate import evaluate_index, load_beir

    queries, qrels, _ = load_beir(sample_dir)
    ids = {json.loads(line)["_id"] for line in open(corpus)}
    qrels = {q: {d: g for d, g in docs.items() if d in ids} for q, docs in qrels.items()}
    qrels = {q: docs for q, docs in qrels.items() if docs}
    result = evaluate_index(client, opensearch_url, "lifecycle", queries, qrels, encoder, k=10)
    assert result.queries == len(qrels) > 5
    assert 0 < result.metrics["ndcg@10"] <= 1 and result.latency["p50_ms"] > 0


def test_corrupted_or_missing_chunk_is_an_error(client, opensearch_url, trained, tmp_path):
    push(client, opensearch_url, trained[0].model_dir, "cran-broken", show_progress=False)
    chunk_id = "cran-broken@1/document_0_Transformer/model.safetensors#0"
    source = client.get(index=CHUNK_INDEX, id=chunk_id)["_source"]
    data = bytearray(base64.b64decode(source["data"]))
    data[100] ^= 0xFF
    source["data"] = base64.b64encode(bytes(data)).decode()
    client.index(index=CHUNK_INDEX, id=chunk_id, body=source, refresh=True)
    with pytest.raises(RegistryError, match="corrupted"):
        pull(client, opensearch_url, "cran-broken@1", dest=tmp_path / "a", show_progress=False)
    client.delete(index=CHUNK_INDEX, id=chunk_id, refresh=True)
    with pytest.raises(RegistryError, match="missing"):
        pull(client, opensearch_url, "cran-broken@1", dest=tmp_path / "b", show_progress=False)
    with pytest.raises(RegistryError, match="not in the registry"):
        pull(client, opensearch_url, "cran-broken@7", dest=tmp_path / "c", show_progress=False)


def test_only_safe_files_are_pushed(client, opensearch_url, default_layout, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(default_layout.root, folder)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelError, match="only safetensors, JSON and text files"):
        push(client, opensearch_url, folder, "unsafe", show_progress=False)
