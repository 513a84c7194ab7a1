"""`splade-os export --layout opensearch`: the folder OpenSearch's doc-only models are published as,
read back three ways with the source's numbers (the bundled default model's real weights):

- splade-os's loader of the whole folder (the sentence-transformers Router, document module at the root);
- splade-os's loader of a copy holding ONLY OpenSearch's files (masked-LM, tokenizer, idf.json):
  the `opensearch-idf` reading, whose rule gives a missing token 1.0 and special tokens 0;
- sentence-transformers' `SparseEncoder` of the folder.
"""

import json
import shutil
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from splade_os.common.errors import InputError, ModelError
from splade_os.formats.layout import OPENSEARCH_IDF, SENTENCE_TRANSFORMERS, max_length_of, read_layout
from splade_os.models.export import export_model
from splade_os.models.resolve import resolve_model

QUERIES = ["what is the lift of a slender wing?", "Boundary layer transition at hypersonic speeds",
           "zzqx unknownword ^^ [MASK] \u2603 \u65e5\u672c", "heat heat heat transfer... in a 3.5-inch pipe",
           "the", ""]
OPENSEARCH_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "idf.json")


def _opensearch_only(exported, dest):
    """A copy of an export with OpenSearch's files only (no sentence-transformers file)."""
    dest.mkdir()
    for name in OPENSEARCH_FILES:
        shutil.copyfile(exported / name, dest / name)
    return dest


def _texts(sample_dir, n=8):
    return [json.loads(line)["text"] for line in open(sample_dir / "corpus.jsonl")][:n]


@pytest.fixture(scope="module")
def exported(default_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    folder = export_model(default_model, root / "model")
    return folder, _opensearch_only(folder, root / "opensearch-only")


def test_the_folder_is_opensearchs_layout_with_every_token_in_idf_json(exported, default_model):
    folder, _ = exported
    for name in OPENSEARCH_FILES + ("README.md", "modules.json", "router_config.json",
                                    "query_0_SparseStaticEmbedding/model.safetensors"):
        assert (folder / name).is_file(), name
    source = default_model.query_encoder
    idf = json.loads((folder / "idf.json").read_text(encoding="utf-8"))
    assert list(idf) == source.tokens  # every token, in id order, zeros included
    assert np.array_equal(np.array(list(idf.values()), dtype=np.float32), source.table)
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
        assert idf[special] == 0.0
    assert sum(w == 0 for w in idf.values()) > 0  # the zeros are written, not left out
    router = json.loads((folder / "router_config.json").read_text())
    assert router["structure"]["document"] == ["", "document_1_SpladePooling"]  # the masked-LM is the root
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert default_model.identity.hash in card and "SPARSE_TOKENIZE" in card and "http" not in card


def test_both_readings_give_the_source_query_weights_and_identity(exported, default_model):
    folder, opensearch_only = exported
    whole = resolve_model(str(folder), show_progress=False)
    bare = resolve_model(str(opensearch_only), show_progress=False)
    assert whole.layout.kind == SENTENCE_TRANSFORMERS and whole.layout.document_dir == folder
    assert bare.layout.kind == OPENSEARCH_IDF and bare.layout.idf_file == opensearch_only / "idf.json"
    source = default_model.query_encoder
    for model in (whole, bare):
        assert np.array_equal(model.query_encoder.table, source.table)
        assert model.query_encoder.max_length == source.max_length
        for text in QUERIES:
            assert model.query_encoder.weights(text) == source.weights(text), text
        # Same vocabulary + table and the same masked-LM files: indexes accept one for the other.
        assert (model.identity.hash, model.identity.fingerprint) == (default_model.identity.hash,
                                                                     default_model.identity.fingerprint)


@pytest.mark.slow
def test_document_vectors_are_the_sources(exported, default_model, sample_dir):
    from splade_os.documents.encoder import DocumentEncoder

    folder, opensearch_only = exported
    texts = _texts(sample_dir)
    expected = DocumentEncoder(default_model, device="cpu").encode(texts)
    for root in (folder, opensearch_only):
        got = DocumentEncoder(resolve_model(str(root), show_progress=False), device="cpu").encode(texts)
        for a, b in zip(expected, got):
            assert np.array_equal(a.ids, b.ids) and np.array_equal(a.values, b.values)


@pytest.mark.slow
def test_sentence_transformers_reads_the_export_as_the_source(exported, default_model, sample_dir):
    import torch
    from sentence_transformers import SparseEncoder

    from splade_os.documents.encoder import DocumentEncoder

    folder, _ = exported
    source, ours = SparseEncoder(str(default_model.root), device="cpu"), SparseEncoder(str(folder), device="cpu")
    queries = [q for q in QUERIES if q]
    dense = ours.encode_query(queries, convert_to_tensor=True).to_dense()
    assert torch.equal(dense, source.encode_query(queries, convert_to_tensor=True).to_dense())
    for text, vector in zip(queries, dense):
        assert {int(i): float(vector[i]) for i in vector.nonzero().flatten()} == \
            default_model.query_encoder.weights(text)
    texts = _texts(sample_dir)
    documents = ours.encode_document(texts, convert_to_tensor=True).to_dense()
    assert torch.equal(documents, source.encode_document(texts, convert_to_tensor=True).to_dense())
    for row, vector in zip(documents, DocumentEncoder(default_model, device="cpu").encode(texts)):
        assert set(vector.ids.tolist()) == set(row.nonzero().flatten().tolist())
        assert np.abs(row[vector.ids].numpy() - vector.values).max() < 1e-5  # another order of float sums


@pytest.mark.slow
def test_an_opensearch_folder_exports_to_one_sentence_transformers_reads(exported, default_model, tmp_path):
    """A source without sentence-transformers files gets sentence-transformers 6's (fill-mask at the root)."""
    from sentence_transformers import SparseEncoder

    _, opensearch_only = exported
    folder = export_model(resolve_model(str(opensearch_only), show_progress=False), tmp_path / "again")
    assert json.loads((folder / "sentence_bert_config.json").read_text())["transformer_task"] == "fill-mask"
    queries = [q for q in QUERIES if q]
    for text, vector in zip(queries, SparseEncoder(str(folder), device="cpu").encode_query(
            queries, convert_to_tensor=True).to_dense()):
        assert {int(i): float(vector[i]) for i in vector.nonzero().flatten()} == \
            default_model.query_encoder.weights(text)


def _variant(default_model, dest, table=None, max_seq_length=None):
    """A copy of the default model with another query table or document truncation length."""
    from safetensors.numpy import save_file

    shutil.copytree(default_model.root, dest)
    if table is not None:
        save_file({"weight": table}, str(dest / "query_0_SparseStaticEmbedding" / "model.safetensors"))
    if max_seq_length is not None:
        path = dest / "document_0_Transformer" / "sentence_bert_config.json"
        path.write_text(json.dumps(dict(json.loads(path.read_text()), max_seq_length=max_seq_length)))
    return resolve_model(str(dest), show_progress=False)


def test_a_weighted_special_token_is_kept_and_warned_about(default_model, tmp_path):
    """OpenSearch's runtime drops special tokens from queries: only there would [UNK] weigh 0."""
    source = default_model.query_encoder
    unk = source.tokens.index("[UNK]")
    table = source.table.copy()
    table[unk] = 2.5
    model = _variant(default_model, tmp_path / "unk", table=table)
    with pytest.warns(UserWarning, match=r"\[UNK\] 2.5.*OpenSearch"):
        folder = export_model(model, tmp_path / "out")
    text = "snowman \u2603 lift"
    assert unk in model.query_encoder.token_ids(text)
    assert json.loads((folder / "idf.json").read_text(encoding="utf-8"))["[UNK]"] == 2.5
    assert resolve_model(str(folder), show_progress=False).query_encoder.weights(text) == \
        model.query_encoder.weights(text)
    bare = resolve_model(str(_opensearch_only(folder, tmp_path / "bare")), show_progress=False).query_encoder
    expected = {i: w for i, w in model.query_encoder.weights(text).items() if i != unk}
    assert bare.weights(text) == expected
    assert "[UNK] 2.5" in (folder / "README.md").read_text(encoding="utf-8")


def test_the_truncation_length_is_where_opensearch_reads_it(default_model, tmp_path):
    model = _variant(default_model, tmp_path / "short", max_seq_length=64)
    card = model.root / "README.md"  # as `train` leaves it: the card, then the recipe it ran
    card.write_text(card.read_text() + "\n\n## splade-os recipe\n\n```toml\n[trainer]\nlr = 2e-05\n```\n")
    folder = export_model(model, tmp_path / "out")
    assert "## Training recipe\n\n```toml\n[trainer]\nlr = 2e-05\n```" in (folder / "README.md").read_text()
    bare = _opensearch_only(folder, tmp_path / "bare")
    assert max_length_of(folder) == max_length_of(bare) == 64
    assert json.loads((bare / "tokenizer.json").read_text(encoding="utf-8"))["truncation"]["max_length"] == 64
    assert resolve_model(str(folder), show_progress=False).identity.fingerprint == model.identity.fingerprint
    assert max_length_of(folder / "query_0_SparseStaticEmbedding") == model.query_encoder.max_length == 512


def test_refusals_are_one_line(default_model, tmp_path, exported):
    with pytest.raises(InputError, match="layout 'elasticsearch': expected one of opensearch"):
        export_model(default_model, tmp_path / "a", layout="elasticsearch")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        export_model(default_model, tmp_path / "full")
    with pytest.raises(InputError, match="not a model"):
        export_model(default_model, tmp_path / "full", overwrite=True)
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    folder, _ = exported
    with pytest.raises(InputError, match="overlaps"):
        export_model(resolve_model(str(folder), show_progress=False), folder / "inside")
    with pytest.raises(InputError, match="overlaps"):
        export_model(default_model, default_model.root.parent)
    summed = tmp_path / "sum"
    shutil.copytree(default_model.root, summed)
    pooling = summed / "document_1_SpladePooling" / "config.json"
    pooling.write_text(json.dumps({"pooling_strategy": "sum", "activation_function": "relu"}))
    with pytest.raises(ModelError, match="max-pooled"):
        export_model(resolve_model(str(summed), show_progress=False), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_overwrite_replaces_an_earlier_export(default_model, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default model's special tokens weigh 0: no warning
        folder = export_model(default_model, tmp_path / "out")
    (folder / "stale.json").write_text("{}")
    export_model(default_model, folder, overwrite=True)
    assert not (folder / "stale.json").exists() and read_layout(folder).root == folder


def test_cli_export(default_model, tmp_path):
    from splade_os.cli import cli

    runner = CliRunner()
    target = tmp_path / "os-model"
    result = runner.invoke(cli, ["-q", "export", "default", str(target), "--layout", "opensearch"])
    assert result.exit_code == 0, result.output
    assert f"exported splade-os-default to {target}" in result.output
    assert json.loads((target / "idf.json").read_text(encoding="utf-8"))["lift"] > 0
    again = runner.invoke(cli, ["-q", "export", "default", str(target)])
    assert again.exit_code == 1
    assert again.output.strip().splitlines() == [
        f"Error: {target}: exists and is not empty; export into a new folder, or replace it with --overwrite"]
    assert runner.invoke(cli, ["-q", "export", "default", str(target), "--overwrite"]).exit_code == 0
    wrong = runner.invoke(cli, ["-q", "export", "default", str(tmp_path / "x"), "--layout", "vespa"])
    assert wrong.exit_code == 2 and "'vespa' is not 'opensearch'" in wrong.output
