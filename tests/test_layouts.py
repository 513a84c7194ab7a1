"""The model layouts people publish load as they are (fixtures built from the bundled model's files).

- a sentence-transformers Router whose document module is at the repository root (module id "")
  and whose query table is an `idf.json` named by the module's config (as OpenSearch's
  inference-free v3 models ship it): checked against sentence-transformers itself;
- OpenSearch's older layout, a masked-LM with an `idf.json` beside it and no sentence-transformers
  files: the rule of OpenSearch's SPARSE_TOKENIZE runtime (missing token 1.0, special tokens 0);
- weights only in `pytorch_model.bin`: refused unless allowed.
"""

import json
import shutil

import numpy as np
import pytest

from splade_os.common.errors import ModelError
from splade_os.formats.layout import OPENSEARCH_IDF, max_length_of, read_layout
from splade_os.models.resolve import resolve_model
from splade_os.query import QueryEncoder

QUERIES = ["what is the lift of a slender wing?", "Boundary layer transition at hypersonic speeds",
           "zzqx unknownword ^^ [MASK]"]


def _idf_json(default_model, path, drop_every: int = 7) -> dict:
    """The default table as {token: weight}, leaving out every 7th listed token (to test the missing rule)."""
    encoder = default_model.query_encoder
    listed = {encoder.tokens[i]: float(w) for i, w in enumerate(encoder.table) if w > 0}
    kept = {token: w for n, (token, w) in enumerate(sorted(listed.items())) if n % drop_every}
    path.write_text(json.dumps(kept), encoding="utf-8")
    return kept


@pytest.fixture(scope="module")
def router_at_root(default_model, tmp_path_factory):
    """The default model re-laid out: masked-LM + tokenizer at the root (module id ""), query table as idf.json."""
    root = tmp_path_factory.mktemp("router-root") / "model"
    shutil.copytree(default_model.root, root)
    for item in (root / "document_0_Transformer").iterdir():
        shutil.move(str(item), root / item.name)
    (root / "document_0_Transformer").rmdir()
    config = json.loads((root / "router_config.json").read_text())
    config["types"][""] = config["types"].pop("document_0_Transformer")
    config["structure"]["document"][0] = ""
    (root / "router_config.json").write_text(json.dumps(config))
    query = root / "query_0_SparseStaticEmbedding"
    (query / "model.safetensors").unlink()
    idf = _idf_json(default_model, root / "idf.json")
    # sentence-transformers resolves the path itself (absolute here); splade-os also beside the module or root.
    (query / "config.json").write_text(json.dumps({"frozen": True, "path": str(root / "idf.json")}))
    return root, idf


@pytest.fixture(scope="module")
def opensearch_idf(default_model, tmp_path_factory):
    """A bare masked-LM with idf.json beside it (OpenSearch's doc-v1/v2 models' layout)."""
    root = tmp_path_factory.mktemp("os-idf") / "model"
    shutil.copytree(default_model.layout.document_dir, root)
    for name in ("sentence_bert_config.json",):
        (root / name).unlink(missing_ok=True)
    idf = _idf_json(default_model, root / "idf.json")
    return root, idf


def test_router_with_the_document_module_at_the_root(router_at_root, default_model):
    root, idf = router_at_root
    layout = read_layout(root)
    assert layout.document_dir == root and layout.query_dir == root / "query_0_SparseStaticEmbedding"
    assert layout.idf_file == root / "idf.json"
    encoder = QueryEncoder.from_layout(layout)
    # sentence-transformers' from_json: a token missing from idf.json weighs 0.
    for token, weight in idf.items():
        assert encoder.table[encoder.tokens.index(token)] == pytest.approx(weight)
    missing = [t for i, t in enumerate(default_model.query_encoder.tokens)
               if default_model.query_encoder.table[i] > 0 and t not in idf]
    assert missing and all(encoder.table[encoder.tokens.index(t)] == 0 for t in missing)
    # A relative path in the config is found beside the module or at the root.
    config = layout.query_dir / "config.json"
    saved = config.read_text()
    config.write_text(json.dumps({"frozen": True, "path": "idf.json"}))
    try:
        assert np.array_equal(QueryEncoder.from_layout(read_layout(root)).table, encoder.table)
    finally:
        config.write_text(saved)


@pytest.mark.slow
def test_router_at_root_equals_sentence_transformers(router_at_root, sample_dir):
    from sentence_transformers import SparseEncoder

    from splade_os.documents.encoder import DocumentEncoder

    root, _ = router_at_root
    reference = SparseEncoder(str(root), device="cpu")
    model = resolve_model(str(root), show_progress=False)
    ours = model.query_encoder
    for text, vector in zip(QUERIES, reference.encode_query(QUERIES, convert_to_tensor=True).to_dense()):
        theirs = {int(i): float(vector[i]) for i in vector.nonzero().flatten()}
        assert ours.weights(text) == pytest.approx(theirs)
    texts = [json.loads(line)["text"] for line in open(sample_dir / "corpus.jsonl")][:8]
    dense = reference.encode_document(texts, convert_to_tensor=True).to_dense()
    for row, vector in zip(dense, DocumentEncoder(model, device="cpu").encode(texts)):
        assert set(vector.ids.tolist()) == set(row.nonzero().flatten().tolist())
        assert np.abs(row[vector.ids].numpy() - vector.values).max() < 1e-4


def test_opensearch_idf_layout_follows_its_runtime(opensearch_idf, default_model):
    root, idf = opensearch_idf
    layout = read_layout(root)
    assert layout.kind == OPENSEARCH_IDF and layout.document_dir == root and layout.idf_file == root / "idf.json"
    assert (layout.pooling_strategy, layout.activation_function) == ("max", "relu")
    encoder = QueryEncoder.load(root)
    vocab = encoder.tokenizer.get_vocab()
    specials = {"[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"}
    for token, token_id in vocab.items():
        expected = 0.0 if token in specials else idf.get(token, 1.0)
        assert encoder.table[token_id] == pytest.approx(expected), token
    # A query's weights: listed tokens their idf, others 1.0 (never 0: OpenSearch scores them).
    weights = encoder.weights("slender wing aerodynamics")
    assert weights and all(w == pytest.approx(idf.get(encoder.tokens[i], 1.0)) for i, w in weights.items())


@pytest.mark.slow
def test_opensearch_idf_layout_documents_and_pickles(opensearch_idf, default_model, sample_dir, tmp_path):
    import torch
    from transformers import AutoModelForMaskedLM

    from splade_os.documents.encoder import DocumentEncoder

    root, _ = opensearch_idf
    texts = [json.loads(line)["text"] for line in open(sample_dir / "corpus.jsonl")][:6]
    expected = DocumentEncoder(default_model, device="cpu").encode(texts)
    ours = DocumentEncoder(resolve_model(str(root), show_progress=False), device="cpu").encode(texts)
    for a, b in zip(expected, ours):  # same masked-LM, max pooling, one log1p
        assert np.array_equal(a.ids, b.ids) and np.allclose(a.values, b.values, atol=1e-6)

    pickled = tmp_path / "pickled"
    shutil.copytree(root, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(AutoModelForMaskedLM.from_pretrained(str(root)).state_dict(), pickled / "pytorch_model.bin")
    refused = resolve_model(str(pickled), show_progress=False)
    with pytest.raises(ModelError, match="--allow-pickle"):
        DocumentEncoder(refused, device="cpu")
    allowed = resolve_model(str(pickled), show_progress=False, allow_pickle=True)
    assert allowed.identity.fingerprint != resolve_model(str(root), show_progress=False).identity.fingerprint
    for a, b in zip(ours, DocumentEncoder(allowed, device="cpu").encode(texts)):
        assert np.array_equal(a.ids, b.ids) and np.allclose(a.values, b.values, atol=1e-6)


def test_not_a_model_names_both_layouts(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="idf.json"):
        read_layout(tmp_path)


def test_max_length_prefers_sentence_bert_config(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8192}))
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    assert max_length_of(tmp_path) == 8192
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512}))
    assert max_length_of(tmp_path) == 512
