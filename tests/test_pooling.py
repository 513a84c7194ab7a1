"""The training-time max pooling gives sentence-transformers' numbers and gradients."""

import pytest
import torch

from splade_os.documents.pooling import fast_max_pooling, max_pooled_projection


def test_projection_matches_the_full_logits_and_their_gradient():
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(50, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    upstream = torch.randn(3, 50, dtype=torch.float64)

    full = (hidden @ weight.T + bias).masked_fill(~mask.bool()[..., None], float("-inf")).amax(dim=1)
    expected = torch.log1p(torch.relu(full))
    grads = torch.autograd.grad((expected * upstream).sum(), (hidden, weight, bias))
    got = torch.log1p(torch.relu(max_pooled_projection(hidden, weight, bias, mask)))
    assert torch.allclose(got, expected)
    for mine, theirs in zip(torch.autograd.grad((got * upstream).sum(), (hidden, weight, bias)), grads):
        assert torch.allclose(mine, theirs)
    assert torch.autograd.gradcheck(lambda h, w, b: max_pooled_projection(h, w, b, mask), (hidden, weight, bias))


def test_the_model_encodes_and_learns_the_same_through_the_fast_path(default_model):
    from sentence_transformers import SparseEncoder

    texts = ["the boundary layer of a flat plate in hypersonic flow", "heat transfer", "lift " * 40]

    def run(model, fast):
        model.train()  # dropout off below, but the training branch of SpladePooling
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        model.zero_grad()
        features = model.preprocess(texts, task="document")
        with fast_max_pooling(model) if fast else torch.enable_grad():
            out = model(features)["sentence_embedding"]
        (out * upstream).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out.detach(), grads

    upstream = torch.rand(len(texts), 30522, generator=torch.Generator().manual_seed(0))
    model = SparseEncoder(str(default_model.root), device="cpu")
    with fast_max_pooling(model) as used:
        assert used
    slow_out, slow_grads = run(model, fast=False)
    fast_out, fast_grads = run(model, fast=True)
    assert torch.allclose(fast_out, slow_out, atol=1e-5)
    assert slow_grads.keys() == fast_grads.keys()
    # Float32 sums in another order: compared up to a small share of the largest gradient (some,
    # like attention key biases, are 0 in exact arithmetic and noise in both).
    scale = max(float(g.abs().max()) for g in slow_grads.values())
    for name, grad in slow_grads.items():
        assert torch.allclose(fast_grads[name], grad, rtol=1e-3, atol=1e-5 * scale), name
    # The block restores the model's own forward.
    assert torch.equal(model.encode_document(texts, convert_to_tensor=True).to_dense(),
                       SparseEncoder(str(default_model.root), device="cpu").encode_document(
                           texts, convert_to_tensor=True).to_dense())
