"""The vocabulary projection of SPLADE max pooling, without the [tokens, vocabulary] logits.

`tiled_max` projects hidden states onto the MLM decoder in tiles of (whole documents x a
vocabulary chunk) and reduces each tile to [documents, chunk] at once; on CPU a tile is sized to
stay in cache, which doubles the projection's speed (its output is written and read back once,
and main memory is the bottleneck).

`Int8Screen` makes the CPU projection cheaper still, with the same output. A document keeps only
a small share of the vocabulary (a column whose max logit + bias is <= 0 is 0 after relu), so
the whole projection first runs in int8 (VNNI/AMX, faster than fp32) and gives, for each
(document, column), an upper bound of the fp32 max logit; the exact fp32 projection then runs
only on the columns whose bound is positive, on the document's real tokens (the shares and the
speed are measured in benchmarks/bench_encode.py). With h = s*q + e and w = r*p + f (q, p
int8; one scale s per document, r per column; e and f the rounding errors, known exactly),
h.w = s*r*(q.p) + s*(q.f) + e.w, so by Cauchy-Schwarz

    max over positions of h.w <= s*r*max(q.p) + s*max|q|*|f| + max|e|*|w|

plus a margin for fp32 rounding. A column ruled out this way is 0 in the full computation too.
For a model whose logits sit too close to 0 (over a quarter of the columns left) the screen
costs more than it saves and turns itself off.
"""

from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

Chunks = List[Tuple[int, torch.Tensor]]  # (first column, [hidden, chunk] matrix)


def pad_with_first_token(hidden: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Padding positions take the hidden state of their document's first token.

    Their logits then repeat a real token's and cannot change a max over positions, so no mask
    pass over the [tokens, vocabulary] logits is needed and the max is a plain reduction.
    """
    return torch.where(real[..., None], hidden, hidden[:, :1, :])


def tiled_max(hidden: torch.Tensor, chunks: Chunks, product: Callable, out: torch.Tensor,
              tile_tokens: Optional[int]) -> None:
    """out[doc, columns] = max over the doc's positions of product(hidden, chunk), tile by tile.

    A tile is whole documents (about `tile_tokens` tokens, or the whole batch when None) x one chunk.
    """
    n_docs, width, hidden_size = hidden.shape
    step = max(1, tile_tokens // width) if tile_tokens else n_docs
    for first in range(0, n_docs, step):
        tile = hidden[first : first + step]
        docs = tile.shape[0]
        tile = tile.reshape(docs * width, hidden_size)
        for start, weight_t in chunks:
            stop = start + weight_t.shape[1]
            out[first : first + docs, start:stop] = product(tile, weight_t).view(docs, width, -1).amax(dim=1)


def cpu_has_int8_dot() -> bool:
    """Whether this CPU multiplies int8 matrices natively (VNNI or AMX), so the int8 screen pays."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line.split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return hasattr(torch, "_int_mm") and any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


class Int8Screen:
    """The exact int8 screen of a decoder (see the module docstring).

    Args:
        weight: the decoder's [vocabulary, hidden] weight; bias: its [vocabulary] bias.
        vocab_chunk: columns per chunk of the int8 projection.
        tile_tokens: tokens per tile of the int8 projection.

    Attributes:
        active: False once the screen found it leaves too many columns to pay.
        exact_columns: (document, column) pairs left to the exact projection so far.
        screened_columns: (document, column) pairs screened so far.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, vocab_chunk: int, tile_tokens: Optional[int]):
        weight = weight.to(torch.float32)
        self.bias = bias
        self.tile_tokens = tile_tokens
        self.vocab_size = weight.shape[0]
        self._rows = weight.contiguous()  # [vocabulary, hidden]: gathering a column is a row copy
        self._column_scale = weight.abs().amax(dim=1).clamp_(min=torch.finfo(torch.float32).tiny) / 127
        quantized = torch.round(weight / self._column_scale[:, None]).clamp_(-127, 127)
        self._residual_norm = (weight - quantized * self._column_scale[:, None]).norm(dim=1)
        self._weight_norm = weight.norm(dim=1)
        # fp32 dot products of length H are off by at most ~H * 2^-24 * |h| |w|; 4x that is the margin.
        self._rounding = 4 * weight.shape[1] * 2.0**-24 + 1e-6
        quantized = quantized.to(torch.int8).T
        self._chunks = [(start, quantized[:, start : start + vocab_chunk].contiguous())
                        for start in range(0, self.vocab_size, vocab_chunk)]
        self.active = True
        self.exact_columns = 0
        self.screened_columns = 0

    def candidates(self, hidden: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(rows, columns) whose max logit + bias may be > 0, for padded-with-first-token `hidden`."""
        n_docs = hidden.shape[0]
        scale = hidden.abs().amax(dim=(1, 2)).clamp_(min=torch.finfo(torch.float32).tiny) / 127
        quantized = torch.round(hidden / scale[:, None, None]).clamp_(-127, 127)
        error = (hidden - quantized * scale[:, None, None]).norm(dim=2).amax(dim=1)
        quantized_norm = quantized.norm(dim=2).amax(dim=1)
        hidden_norm = hidden.norm(dim=2).amax(dim=1)
        best = torch.empty((n_docs, self.vocab_size), dtype=torch.int32)
        tiled_max(quantized.to(torch.int8), self._chunks, torch._int_mm, best, self.tile_tokens)
        bound = best.float().mul_(scale[:, None] * self._column_scale)
        bound.addcmul_((scale * quantized_norm)[:, None], self._residual_norm)
        bound.addcmul_((error + self._rounding * hidden_norm)[:, None], self._weight_norm)
        bound.add_(self.bias)
        rows, cols = torch.nonzero(bound > 0, as_tuple=True)
        self.exact_columns += len(cols)
        self.screened_columns += n_docs * self.vocab_size
        if self.exact_columns > 0.25 * self.screened_columns and self.screened_columns > 64 * self.vocab_size:
            self.active = False  # this model's logits are too close to 0 for the screen to pay
        return rows, cols

    def max_pool(self, hidden: torch.Tensor, real: torch.Tensor, lengths: np.ndarray) -> torch.Tensor:
        """log1p(relu(max logit + bias)) per (document, column), exact, fp32 only where the bound allows."""
        n_docs = hidden.shape[0]
        hidden = pad_with_first_token(hidden, real)
        rows, cols = self.candidates(hidden)
        counts = torch.bincount(rows, minlength=n_docs).tolist()
        pooled = torch.zeros((n_docs, self.vocab_size), dtype=torch.float32)
        for doc, columns in enumerate(torch.split(cols, counts)):
            if len(columns):
                logits = hidden[doc, : lengths[doc]] @ self._rows.index_select(0, columns).T
                pooled[doc, columns] = logits.amax(dim=0).add_(self.bias[columns]).relu_().log1p_()
        return pooled
