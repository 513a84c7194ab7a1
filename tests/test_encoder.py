"""The optimized document encoder equals sentence-transformers' encode_document (fp32, 1e-4)."""

import json
import shutil

import pytest
import torch

from splade_os.documents.encoder import DocumentEncoder
from splade_os.models.resolve import resolve_model


def _texts(sample_dir, n):
    out = []
    for line in open(sample_dir / "corpus.jsonl"):
        record = json.loads(line)
        if record["text"]:
            out.append(f"{record['title']} {record['text']}")
        if len(out) == n:
            return out


def _compare(model, texts, **encoder_args):
    from sentence_transformers import SparseEncoder

    reference = SparseEncoder(str(model.root), device="cpu").encode_document(texts, convert_to_tensor=True).to_dense()
    encoder = DocumentEncoder(model, device="cpu", dtype="float32", **encoder_args)
    ours = torch.zeros_like(reference)
    for row, vector in enumerate(encoder.encode(texts)):
        assert (vector.values > 0).all()
        ours[row, torch.from_numpy(vector.ids)] = torch.from_numpy(vector.values)
    assert torch.equal(ours > 0, reference > 0)
    assert (ours - reference).abs().max().item() < 1e-4
    return encoder


@pytest.mark.slow
@pytest.mark.parametrize("int8_screen", [False, True])
def test_equals_encode_document(default_model, sample_dir, int8_screen):
    texts = _texts(sample_dir, 48) + ["x", "a . b ... c", "word " * 700]
    # A small token budget, tile and vocabulary chunk force many batches, tiles and chunks.
    encoder = _compare(default_model, texts, token_budget=1024, vocab_chunk=5000, tile_tokens=300,
                       int8_screen=int8_screen)
    assert encoder.calls > 5
    if int8_screen:
        # The screen leaves only a few percent of the columns to the exact projection.
        assert 0 < encoder.exact_columns < 0.05 * len(texts) * encoder.vocab_size
    else:
        assert encoder.exact_columns == 0


@pytest.mark.slow
def test_int8_screen_exact_when_most_columns_are_near_zero(default_model, sample_dir, tmp_path):
    """Biases set to minus each column's median max logit: half of the documents are just above 0
    in every column and half just below, the hardest case for the screen's bound."""
    from safetensors.torch import load_file, save_file

    texts = _texts(sample_dir, 16)
    plain = DocumentEncoder(default_model, device="cpu", dtype="float32", int8_screen=False)
    ids = plain.tokenize(texts)
    with torch.inference_mode():
        maxima = torch.stack([
            (plain.network(input_ids=torch.tensor([x]), attention_mask=torch.ones(1, len(x), dtype=torch.long)).logits[0]
             @ torch.cat([w for _, w in plain._chunks], dim=1)).amax(dim=0)
            for x in ids])
    folder = tmp_path / "model"
    shutil.copytree(default_model.root, folder)
    weights_file = folder / "document_0_Transformer" / "model.safetensors"
    weights = load_file(str(weights_file))
    # Halfway between the 8th and 9th of the 16 documents' maxima: no document sits exactly at
    # 0, where fp32 rounding alone would decide whether a value is 0 or 1e-6.
    middle = maxima.sort(dim=0).values[7:9].mean(dim=0)
    weights["cls.predictions.bias"] = -middle.contiguous()
    save_file(weights, str(weights_file))
    encoder = _compare(resolve_model(str(folder)), texts, int8_screen=True)
    assert encoder.exact_columns > 0.4 * len(texts) * encoder.vocab_size
    # With this many columns left, the screen costs more than it saves: it turns itself off.
    assert encoder.int8_screen
    encoder.encode(texts * 5)
    assert not encoder.int8_screen


@pytest.mark.slow
@pytest.mark.parametrize("strategy,activation", [("max", "log1p_relu"), ("sum", "relu")])
def test_other_pooling_configs(default_model, sample_dir, tmp_path, strategy, activation):
    folder = tmp_path / "model"
    shutil.copytree(default_model.root, folder)
    config = folder / "document_1_SpladePooling" / "config.json"
    settings = json.loads(config.read_text())
    settings.update(pooling_strategy=strategy, activation_function=activation)
    config.write_text(json.dumps(settings))
    _compare(resolve_model(str(folder)), _texts(sample_dir, 12))


def test_truncation_follows_the_model(default_model):
    encoder = DocumentEncoder(default_model, device="cpu")
    assert encoder.max_length == 512
    assert len(encoder.tokenize(["word " * 2000])[0]) == 512


@pytest.mark.gpu
def test_cuda_bf16_close_to_reference(default_model, sample_dir):
    texts = _texts(sample_dir, 64)
    cpu = DocumentEncoder(default_model, device="cpu", dtype="float32").encode(texts)
    gpu = DocumentEncoder(default_model, device="cuda", dtype="bfloat16").encode(texts)
    for a, b in zip(cpu, gpu):
        top_a = set(a.ids[a.values.argsort()[-20:]].tolist())
        top_b = set(b.ids[b.values.argsort()[-20:]].tolist())
        assert len(top_a & top_b) >= 16


@pytest.mark.slow
def test_multi_device_encoder_equals_single(default_model, sample_dir):
    from splade_os.documents.encoder import MultiDeviceEncoder, make_encoder

    texts = _texts(sample_dir, 30)
    single = DocumentEncoder(default_model, device="cpu", window=7).encode(texts)
    multi = make_encoder(default_model, device="cpu,cpu", window=7)
    assert isinstance(multi, MultiDeviceEncoder) and len(multi.encoders) == 2
    for a, b in zip(single, multi.encode(texts)):
        assert (a.ids == b.ids).all() and (a.values == b.values).all()
    assert multi.documents == 30 and all(e.documents > 0 for e in multi.encoders)


def test_batches_respect_token_budget_document_cap_and_padding(default_model):
    encoder = DocumentEncoder(default_model, device="cpu", token_budget=100, max_batch_docs=7)
    assert [len(b) for b in encoder.batches([3] * 20)] == [7, 7, 6]  # the document cap
    assert [len(b) for b in encoder.batches([30] * 7)] == [3, 3, 1]  # the token budget
    lengths = [50, 50, 20, 20]
    assert [sorted(lengths[i] for i in b) for b in encoder.batches(lengths)] == [[50, 50], [20, 20]]  # padding
