"""SPLADE max pooling for training, without keeping the [tokens, vocabulary] logits.

sentence-transformers' document route computes the masked-LM logits of every position
([documents, tokens, vocabulary]: 32 x 128 x 30522 floats = 500 MB for one batch), masks them,
applies relu and log1p to all of them, then takes the max over positions; autograd keeps those
tensors and the backward pass multiplies the full [tokens, vocabulary] gradient back through the
decoder. But only one position per (document, vocabulary entry) reaches the output, and only
entries with a positive max have a gradient (relu): the backward pass needs the argmax
positions, no more.

`max_pooled_projection` is that as an autograd function: the forward pass projects tile by tile
and keeps the max and its position per (document, entry); the backward pass scatters each
non-zero output gradient to its one position (for the hidden states) and its one vocabulary row
(for the decoder weight). Since log1p(relu(x)) is monotone, max-then-activation is the same
number as activation-then-max, with the same gradient (checked by tests/test_pooling.py).

`fast_max_pooling(model)` routes a `SparseEncoder`'s document route through it for the duration
of a `with` block (training): the decoder returns its input instead of the logits, and
`SpladePooling` does the projection. Models it does not fit (sum pooling, no separate decoder)
are left as they are.
"""

import contextlib
from typing import Optional

import torch

VOCAB_CHUNK = 4096
TILE_TOKENS = 4096


class _MaxProjection(torch.autograd.Function):
    """max over positions of (hidden @ weight.T) + bias, with a gradient through the argmax only."""

    @staticmethod
    def forward(ctx, hidden, weight, bias):
        docs, width, size = hidden.shape
        vocab = weight.shape[0]
        values = torch.empty((docs, vocab), dtype=hidden.dtype, device=hidden.device)
        where = torch.empty((docs, vocab), dtype=torch.long, device=hidden.device)
        step = max(1, TILE_TOKENS // width)
        for first in range(0, docs, step):
            tile = hidden[first:first + step]
            flat = tile.reshape(-1, size)
            for start in range(0, vocab, VOCAB_CHUNK):
                logits = (flat @ weight[start:start + VOCAB_CHUNK].T).view(tile.shape[0], width, -1)
                best = logits.max(dim=1)
                values[first:first + tile.shape[0], start:start + VOCAB_CHUNK] = best.values
                where[first:first + tile.shape[0], start:start + VOCAB_CHUNK] = best.indices
        if bias is not None:
            values += bias
        ctx.save_for_backward(hidden, weight, where)
        ctx.has_bias = bias is not None
        return values

    @staticmethod
    def backward(ctx, grad):
        hidden, weight, where = ctx.saved_tensors
        docs, width, size = hidden.shape
        doc, column = torch.nonzero(grad, as_tuple=True)
        g = grad[doc, column]
        rows = doc * width + where[doc, column]  # the winning position of each (document, column)
        flat = hidden.reshape(-1, size)
        grad_hidden = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_hidden = torch.zeros_like(flat).index_add_(0, rows, g[:, None] * weight[column]).view_as(hidden)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.zeros_like(weight).index_add_(0, column, g[:, None] * flat[rows])
        grad_bias = grad.sum(dim=0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_hidden, grad_weight, grad_bias


def max_pooled_projection(hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                          attention_mask: torch.Tensor) -> torch.Tensor:
    """[documents, vocabulary] max over each document's real positions of hidden @ weight.T + bias.

    Padding positions take their document's first hidden state, so they cannot win the max.
    """
    real = attention_mask.bool()[..., None]
    hidden = torch.where(real, hidden, hidden[:, :1, :])
    return _MaxProjection.apply(hidden, weight, bias)


def _parts(model):
    """(masked-LM decoder, SpladePooling) of the document route, or None where the fast path does not fit."""
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    poolings = [m for m in model.modules() if isinstance(m, SpladePooling)]
    if len(poolings) != 1 or poolings[0].pooling_strategy != "max":
        return None
    from transformers import PreTrainedModel

    masked_lms = [m for m in model.modules()
                  if isinstance(m, PreTrainedModel) and isinstance(m.get_output_embeddings(), torch.nn.Linear)]
    if len(masked_lms) != 1:
        return None
    if "flash" in str(getattr(masked_lms[0].config, "_attn_implementation", "")):
        return None  # unpadded (flattened) batches: sentence-transformers' own path handles them
    return masked_lms[0].get_output_embeddings(), poolings[0]


@contextlib.contextmanager
def fast_max_pooling(model):
    """Inside the block, the model's document route pools with `max_pooled_projection`.

    Yields True when the fast path is in use, False when the model does not fit it.
    """
    parts = _parts(model)
    if parts is None:
        yield False
        return
    decoder, pooling = parts
    stash = {}

    def decoder_forward(hidden):
        stash["hidden"] = hidden
        return hidden[..., :1]  # a stand-in for the logits, which nothing reads

    def pooling_forward(features):
        hidden = stash.pop("hidden")
        pooled = max_pooled_projection(hidden, decoder.weight, decoder.bias, features["attention_mask"])
        pooled = torch.log1p(torch.relu(pooled))
        if pooling.activation_function == "log1p_relu":
            pooled = torch.log1p(pooled)
        features["sentence_embedding"] = pooled
        if pooling.embedding_dimension is None:
            pooling.embedding_dimension = pooled.shape[1]
        return features

    decoder.forward, pooling.forward = decoder_forward, pooling_forward
    try:
        yield True
    finally:
        del decoder.forward, pooling.forward
