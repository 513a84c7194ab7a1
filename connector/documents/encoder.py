"""Document encoding: the model's document route, computed the cheap way.

sentence-transformers computes SPLADE document vectors as
`max over positions of log1p(relu(MLM logits * attention mask))`, materialising the
whole [batch, tokens, vocabulary] logits tensor (and a masked copy) on the way. This
encoder computes the same numbers with less work and memory:

- log1p(relu(x)) is monotone non-decreasing, so the max over positions is taken on the raw
  logits and the activation applied afterwards to the [batch, vocabulary] result;
- the vocabulary projection (the MLM decoder) runs in cache-sized tiles and, on a CPU with int8
  dot-product instructions, behind an exact int8 screen (`splade_os.documents.projection`), so the full
  [tokens, vocabulary] logits never exist;
- inputs are sorted by length and cut into batches by a token budget, so padding is small
  and memory is bounded by the budget, not by batch x length x vocabulary;
- the result is sparsified on the device and only (ids, values) go to the host.

Long documents are truncated at the model's length (as sentence-transformers does), or, with
`long_docs="windows"`, cut into consecutive windows of that length, each with the model's
special tokens (the tokenizer's overflowing encodings); all windows are encoded in the normal
batches and a document's vector is the max over its windows (a sum for sum pooling), which for
max pooling is the same pooling over the whole text. `DocumentEncoder.cut` counts the documents
whose text was not encoded in full (truncated, or over `max_windows`), so none is cut silently.
"""

import collections
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Deque, Iterable, Iterator, List, Optional, Sequence, Tuple

from splade_os.common.extras import require

require("encode", "document encoding")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from splade_os.common.errors import InputError, ModelError  # noqa: E402
from splade_os.formats.layout import PICKLED_WEIGHTS, max_length_of  # noqa: E402
from splade_os.documents.projection import Int8Screen, cpu_has_int8_dot, pad_with_first_token, tiled_max  # noqa: E402
from splade_os.documents.vectors import DEFAULT_MAX_WINDOWS, LONG_DOCS, SparseVector, max_merge  # noqa: E402


_ATTENTION_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def best_device() -> str:
    """'cuda' when a GPU is usable, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _parse_dtype(dtype: Optional[str], device: str) -> torch.dtype:
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    choices = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
               "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in choices:
        raise InputError(f"dtype {dtype!r}: expected one of {', '.join(sorted(choices))} or 'auto'")
    return choices[dtype]


def _split_output_layer(model: torch.nn.Module):
    """Detach the MLM decoder (hidden -> vocabulary) from a masked-LM model.

    The model's forward then returns the transformed hidden states; the decoder's weight
    and bias are returned so the projection can be done in vocabulary chunks.
    """
    decoder = model.get_output_embeddings()
    if not isinstance(decoder, torch.nn.Linear):
        raise ModelError(f"unsupported masked-LM head {type(decoder).__name__} (expected a Linear decoder)")
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is decoder:
                setattr(parent, name, torch.nn.Identity())
                weight = decoder.weight
                bias = decoder.bias if decoder.bias is not None else torch.zeros(weight.shape[0])
                return weight.detach(), bias.detach()
    raise ModelError("could not find the MLM decoder inside the model")


class DocumentEncoder:
    """Encodes documents with a model's document route (masked-LM + SPLADE max pooling).

    Args:
        model: the `splade_os.models.resolve.Model` (see `splade_os.models.resolve.resolve_model`).
        device: "cuda", "cuda:1", "cpu"... ; the best available when None.
        dtype: "float32", "bfloat16", "float16" or "auto" (bf16 on GPU, fp32 on CPU).
        token_budget: the most (padded) tokens one forward pass may hold.
        max_batch_docs: the most documents one forward pass may hold (256 on CPU, 1024 on GPU):
            the [documents, vocabulary] results are ~120 KB per document, so very short
            documents must not fill a whole token budget.
        vocab_chunk: vocabulary columns projected at once (1024 on CPU, 8192 on GPU).
        tile_tokens: tokens projected at once (whole documents); on CPU 1024, so that a
            tile's logits (tile_tokens x vocab_chunk floats) stay in cache; on GPU the batch.
        int8_screen: screen vocabulary columns with an int8 projection before the exact fp32
            one (see the module docstring); by default on when the CPU has int8 dot-product
            instructions and the encoder runs fp32 max pooling on the CPU
            (`splade_os.documents.projection.Int8Screen`).
        max_length: truncation length; the model's own (as sentence-transformers) when None.
        window: documents sorted by length together (`encode` cuts its input into windows).
        tokenizer_threads: threads tokenizing the next windows while the device works.
        long_docs: "truncate" (the first `max_length` tokens) or "windows" (every window of
            `max_length` tokens, max-pooled; see the module docstring).
        max_windows: with "windows", the most token windows encoded per document.

    Attributes:
        cut: documents whose text was not encoded in full so far (truncated, or more windows
            than `max_windows`).

    Example:
        >>> encoder = DocumentEncoder(resolve_model("default"))
        >>> vectors = encoder.encode(["A passage about wings and lift."])
    """

    def __init__(
        self,
        model,
        device: Optional[str] = None,
        dtype: Optional[str] = "auto",
        token_budget: Optional[int] = None,
        max_batch_docs: Optional[int] = None,
        vocab_chunk: Optional[int] = None,
        tile_tokens: Optional[int] = None,
        int8_screen: Optional[bool] = None,
        max_length: Optional[int] = None,
        window: int = 4096,
        tokenizer_threads: Optional[int] = None,
        long_docs: str = "truncate",
        max_windows: int = DEFAULT_MAX_WINDOWS,
    ):
        from tokenizers import Tokenizer
        from transformers import AutoModelForMaskedLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bar is the one that matters
        if long_docs not in LONG_DOCS or max_windows < 1:
            raise InputError(f"long documents {long_docs!r} with {max_windows} windows: expected one of "
                             f"{', '.join(LONG_DOCS)} and at least 1 window")
        self.long_docs, self.max_windows = long_docs, max_windows

        self.model = model  # the splade_os Model; the torch module is self.network
        layout = model.layout
        self.device = torch.device(device or best_device())
        self.dtype = _parse_dtype(dtype, self.device.type)
        self.token_budget = token_budget or (65536 if self.device.type == "cuda" else 8192)
        on_cpu = self.device.type == "cpu"
        self.max_batch_docs = max_batch_docs or (256 if on_cpu else 1024)
        self.vocab_chunk = vocab_chunk or (1024 if on_cpu else 8192)
        self.tile_tokens = tile_tokens or (1024 if on_cpu else None)  # None: the whole batch
        self.window = window
        self.tokenizer_threads = tokenizer_threads or max(1, min(16, (os.cpu_count() or 2) - 1))
        self.prefetch = 2
        self.pad_slack = 0.1
        if layout.pickled_weights and not getattr(model, "allow_pickle", False):
            raise ModelError(f"{layout.document_dir}: the weights exist only as {PICKLED_WEIGHTS}, a pickle (loading "
                             "it can run code); convert them to safetensors, or pass --allow-pickle for a model you "
                             "trust")
        try:
            # Without the user's leave, transformers may read safetensors only.
            mlm = AutoModelForMaskedLM.from_pretrained(str(layout.document_dir), dtype=self.dtype,
                                                       use_safetensors=None if layout.pickled_weights else True)
        except (OSError, ValueError) as e:
            raise ModelError(f"{layout.document_dir}: cannot load the masked-LM ({e})") from None
        weight, bias = _split_output_layer(mlm)
        self.network = mlm.to(self.device).eval()
        self.vocab_size = weight.shape[0]
        # The decoder as contiguous [hidden, chunk] slices: a plain (not transposed) matrix
        # product per chunk, which BLAS runs fastest.
        self._chunks = [
            (start, weight[start : start + self.vocab_chunk].T.contiguous().to(self.device, self.dtype))
            for start in range(0, self.vocab_size, self.vocab_chunk)
        ]
        self._bias = bias.to(self.device, torch.float32)
        self.max_length = max_length or max_length_of(layout.document_dir) or 512
        self.tokenizer = Tokenizer.from_file(str(layout.document_tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.double_log = layout.activation_function == "log1p_relu"
        self.pooling = layout.pooling_strategy
        if int8_screen is None:
            int8_screen = cpu_has_int8_dot()
        usable = on_cpu and self.dtype == torch.float32 and self.pooling == "max"
        self.screen = Int8Screen(weight, self._bias, self.vocab_chunk, self.tile_tokens) \
            if int8_screen and usable else None
        self.calls = 0  # forward passes, for tests and benchmarks
        self.documents = 0  # documents (with "windows": token windows) encoded
        self.cut = 0

    def tokenize(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids with special tokens, truncated to `max_length` (as sentence-transformers)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def token_windows(self, texts: Sequence[str]) -> Tuple[List[List[List[int]]], int]:
        """Each text's token windows (one with "truncate"), and how many texts were not taken in full.

        A window is at most `max_length` tokens with the model's special tokens; the windows of
        a text are consecutive and cover it up to `max_windows` of them.
        """
        out, cut = [], 0
        keep = self.max_windows if self.long_docs == "windows" else 1
        for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=True):
            rest = encoding.overflowing
            cut += len(rest) >= keep
            out.append([encoding.ids] + [e.ids for e in rest[: keep - 1]])
        return out, cut

    def batches(self, lengths: Sequence[int]) -> List[List[int]]:
        """Indices grouped into batches of similar length whose padded size fits the token budget.

        Inputs are taken longest first; a batch closes when the next input would overflow the
        budget or `max_batch_docs`, or would be padded by more than `pad_slack` of the batch's
        width (so a few long inputs do not pad a whole batch of short ones).
        """
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches, current, width = [], [], 0
        for i in order:
            length = max(lengths[i], 1)
            if current and (width * (len(current) + 1) > self.token_budget or len(current) >= self.max_batch_docs
                            or length < width * (1 - self.pad_slack)):
                batches.append(current)
                current = []
            if not current:
                width = length
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def encode(self, texts: Sequence[str]) -> List[SparseVector]:
        """Encode texts; returns one `SparseVector` per text, in input order."""
        windows = ((None, texts[i : i + self.window]) for i in range(0, len(texts), self.window))
        return [v for _, vectors in self.encode_stream(windows) for v in vectors]

    @property
    def int8_screen(self) -> bool:
        """Whether the int8 screen is in use (it turns itself off for a model where it does not pay)."""
        return self.screen is not None and self.screen.active

    @property
    def exact_columns(self) -> int:
        """(document, column) pairs the int8 screen left to the exact projection so far."""
        return self.screen.exact_columns if self.screen is not None else 0

    def encode_stream(self, windows: Iterable[Tuple[Any, Sequence[str]]],
                      on_batch: Optional[Callable[[int], None]] = None) -> Iterator[Tuple[Any, List[SparseVector]]]:
        """Encode a stream of (payload, texts) windows; yields (payload, vectors) in order.

        The next windows are tokenized on a thread pool (the Rust tokenizer releases the GIL)
        while the device encodes the current one, so neither waits for the other.
        `on_batch(n)` is called after each forward pass of n documents (for progress bars).
        """
        ahead: Deque = collections.deque()
        with ThreadPoolExecutor(max_workers=self.tokenizer_threads, thread_name_prefix="splade-os-tok") as pool:
            windows = iter(windows)
            while True:
                while len(ahead) < self.prefetch:
                    try:
                        payload, texts = next(windows)
                    except StopIteration:
                        break
                    ahead.append((payload, self._tokenize_async(pool, texts)))
                if not ahead:
                    return
                payload, parts = ahead.popleft()
                windows_of_docs = []
                for part in parts:
                    docs, cut = part.result()
                    windows_of_docs += docs
                    self.cut += cut
                yield payload, self.encode_windows(windows_of_docs, on_batch)

    def encode_windows(self, windows_of_docs: List[List[List[int]]],
                       on_batch: Optional[Callable[[int], None]] = None) -> List[SparseVector]:
        """One vector per document from its token windows: the max over the windows (a sum for sum pooling)."""
        if all(len(windows) == 1 for windows in windows_of_docs):
            return self.encode_tokenized([windows[0] for windows in windows_of_docs], on_batch)
        flat = [window for windows in windows_of_docs for window in windows]
        vectors = self.encode_tokenized(flat)
        out, start = [], 0
        for windows in windows_of_docs:
            parts = vectors[start : start + len(windows)]
            start += len(windows)
            if len(parts) == 1:
                out.append(parts[0])
            elif self.pooling == "max":
                out.append(SparseVector(*max_merge([(v.ids, v.values) for v in parts])))
            else:
                out.append(_sum_merge(parts))
        if on_batch is not None:
            on_batch(len(windows_of_docs))
        return out

    def _tokenize_async(self, pool, texts: Sequence[str]) -> list:
        # Several slices per window so that every tokenizer thread has work.
        step = max(64, -(-len(texts) // self.tokenizer_threads))
        return [pool.submit(self.token_windows, texts[i : i + step]) for i in range(0, len(texts), step)]

    def encode_tokenized(self, ids: List[List[int]], on_batch: Optional[Callable[[int], None]] = None
                         ) -> List[SparseVector]:
        """Encode token id lists (already truncated): sorted by length, batched by the token budget."""
        self.documents += len(ids)
        out: List[Optional[SparseVector]] = [None] * len(ids)
        for batch in self.batches([len(x) for x in ids]):
            for i, vector in zip(batch, self.encode_ids([ids[i] for i in batch])):
                out[i] = vector
            if on_batch is not None:
                on_batch(len(batch))
        return out

    @torch.inference_mode()
    def encode_ids(self, batch: List[List[int]]) -> List[SparseVector]:
        """Encode one batch of token id lists (already truncated)."""
        self.calls += 1
        lengths = np.fromiter((len(x) for x in batch), dtype=np.int64, count=len(batch))
        width = int(lengths.max())
        real = np.arange(width)[None, :] < lengths[:, None]
        input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        # One vectorised scatter instead of a Python loop per row.
        input_ids[real] = np.fromiter(itertools.chain.from_iterable(batch), dtype=np.int64, count=int(lengths.sum()))
        input_ids = torch.from_numpy(input_ids).to(self.device, non_blocking=True)
        real = torch.from_numpy(real).to(self.device, non_blocking=True)
        # With the decoder detached, the model returns the MLM head's transformed hidden states.
        # cuDNN's attention builds a graph for every new (batch, width) shape, ~10 ms each on
        # the host: more than the whole batch's GPU work. The other backends need no such step.
        with sdpa_kernel(_ATTENTION_BACKENDS):
            hidden = self.network(input_ids=input_ids, attention_mask=real.long()).logits
        if self.int8_screen:
            pooled = self.screen.max_pool(hidden, real, lengths)
        elif self.pooling == "max":
            pooled = self._max_pool(hidden, real)
        else:
            pooled = self._sum_pool(hidden, real)
        if self.double_log:
            pooled.log1p_()
        return self._sparsify(pooled)

    def _max_pool(self, hidden: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """[docs, width, hidden] -> [docs, vocabulary] of log1p(relu(max over real positions))."""
        hidden = pad_with_first_token(hidden, real)
        pooled = torch.empty((hidden.shape[0], self.vocab_size), dtype=torch.float32, device=hidden.device)
        tiled_max(hidden, self._chunks, torch.matmul, pooled, self.tile_tokens)
        # The bias is the same at every position of a column: add it after the max.
        return pooled.add_(self._bias).relu_().log1p_()

    def _sum_pool(self, hidden: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Sum pooling: the activation does not commute with a sum, so every real token is transformed."""
        n_docs, width, _ = hidden.shape
        hidden = hidden.reshape(n_docs * width, -1)
        mask = real.reshape(n_docs, width, 1).float()
        pooled = torch.empty((n_docs, self.vocab_size), dtype=torch.float32, device=hidden.device)
        for start, weight_t in self._chunks:
            stop = start + weight_t.shape[1]
            logits = (hidden @ weight_t).view(n_docs, width, stop - start).float().add_(self._bias[start:stop])
            pooled[:, start:stop] = (logits.relu_().log1p_() * mask).sum(dim=1)
        return pooled

    def _sparsify(self, pooled: torch.Tensor) -> List[SparseVector]:
        rows, cols = torch.nonzero(pooled, as_tuple=True)
        values = pooled[rows, cols]
        counts = torch.bincount(rows, minlength=pooled.shape[0]).cpu().numpy()
        cols = cols.cpu().numpy()
        values = values.cpu().numpy()
        out, start = [], 0
        for count in counts.tolist():
            out.append(SparseVector(cols[start : start + count], values[start : start + count]))
            start += count
        return out


def _sum_merge(parts: List[SparseVector]) -> SparseVector:
    ids = np.concatenate([v.ids for v in parts])
    unique, inverse = np.unique(ids, return_inverse=True)
    values = np.zeros(len(unique), dtype=np.float32)
    np.add.at(values, inverse, np.concatenate([v.values for v in parts]))
    return SparseVector(unique, values)


class MultiDeviceEncoder:
    """One `DocumentEncoder` per device (e.g. every GPU of a host), fed windows round-robin.

    Each device's worker thread encodes whole windows (torch releases the GIL while a device
    computes); results come back in input order.

    Example:
        >>> encoder = MultiDeviceEncoder(model, ["cuda:0", "cuda:1"])
    """

    def __init__(self, model, devices: Sequence[str], **encoder_args):
        if not devices:
            raise InputError("MultiDeviceEncoder needs at least one device")
        self.encoders = [DocumentEncoder(model, device=device, **encoder_args) for device in devices]
        self.vocab_size = self.encoders[0].vocab_size
        self.window = self.encoders[0].window

    @property
    def documents(self) -> int:
        return sum(e.documents for e in self.encoders)

    @property
    def cut(self) -> int:
        """Documents whose text was not encoded in full (see `DocumentEncoder.cut`)."""
        return sum(e.cut for e in self.encoders)

    def encode(self, texts: Sequence[str]) -> List[SparseVector]:
        windows = ((None, texts[i : i + self.window]) for i in range(0, len(texts), self.window))
        return [v for _, vectors in self.encode_stream(windows) for v in vectors]

    def encode_stream(self, windows: Iterable[Tuple[Any, Sequence[str]]],
                      on_batch: Optional[Callable[[int], None]] = None) -> Iterator[Tuple[Any, List[SparseVector]]]:
        """Like `DocumentEncoder.encode_stream`, spread over the devices."""
        n = len(self.encoders)
        ahead: Deque = collections.deque()

        def encode(encoder, texts):
            windows = ((None, texts[i : i + encoder.window]) for i in range(0, len(texts), encoder.window))
            return [v for _, vectors in encoder.encode_stream(windows, on_batch) for v in vectors]

        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="splade-os-device") as pool:
            for i, (payload, texts) in enumerate(windows):
                ahead.append((payload, pool.submit(encode, self.encoders[i % n], texts)))
                if len(ahead) >= 2 * n:
                    payload_done, future = ahead.popleft()
                    yield payload_done, future.result()
            while ahead:
                payload_done, future = ahead.popleft()
                yield payload_done, future.result()


def make_encoder(model, device: Optional[str] = None, **encoder_args):
    """A `DocumentEncoder`, or a `MultiDeviceEncoder` for "cuda:0,cuda:1" or "all" (every GPU)."""
    if device == "all":
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    else:
        devices = [d.strip() for d in (device or "").split(",") if d.strip()]
    if len(devices) > 1:
        return MultiDeviceEncoder(model, devices, **encoder_args)
    return DocumentEncoder(model, device=devices[0] if devices else None, **encoder_args)
