"""What a document vector is beyond the model: long documents, pruning, and its compact copy.

The model fixes how a passage becomes a vector; an index also records how a document is cut
into passages and how much of its vector is kept (`VectorOptions`, in the index's `_meta`), so
that every writer of the index makes the same vectors and `eval --exact` can rebuild them:

- **long documents**: `truncate` (what sentence-transformers does: the first `max_length`
  tokens) or `windows`: the document's tokens are cut into consecutive windows of the model's
  length, each with the model's special tokens, every window is encoded like a passage, and the
  document's vector is the max over its windows. SPLADE pools by max over positions, so that is
  the same pooling over the whole text (the only difference is each token's context, which ends
  at its window's edges). `max_windows` bounds the cost of one document; a document with more
  windows keeps its first `max_windows` and is counted as capped, never silently.
- **pruning**: `prune_top_k` keeps a document's K highest weights, `prune_threshold` drops
  weights below T (either or both). Smaller postings, faster queries; nDCG@10 cost measured in
  docs/quality.md.

`pack`/`unpack` turn a vector into a short base64 string (uint16 or uint32 ids + 16-bit
weights, exactly what the index stores): the compact copy kept in `_source` when the feature map itself is not, so the vectors
of an index can be read back for a re-index without encoding again (`splade_os.cluster.reindex`).

Nothing here imports torch.
"""

import base64
from dataclasses import asdict, dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from splade_os.common.errors import InputError

LONG_DOCS = ("truncate", "windows")
DEFAULT_MAX_WINDOWS = 8


@dataclass
class SparseVector:
    """A document vector: vocabulary ids and their positive weights."""

    ids: np.ndarray  # int64
    values: np.ndarray  # float32

    def to_dict(self, keys: Sequence[str]) -> dict:
        return {keys[i]: float(v) for i, v in zip(self.ids.tolist(), self.values.tolist())}


@dataclass(frozen=True)
class VectorOptions:
    """How document vectors are made from the model's output (recorded in the index's `_meta`).

    Attributes:
        long_docs: "truncate" (the first `max_length` tokens, as sentence-transformers) or
            "windows" (every window of `max_length` tokens, max-pooled).
        max_windows: with "windows", the most windows encoded per document.
        prune_top_k: keep only this many highest weights per document (None: all).
        prune_threshold: drop weights below this value (None: none).
    """

    long_docs: str = "truncate"
    max_windows: int = DEFAULT_MAX_WINDOWS
    prune_top_k: Optional[int] = None
    prune_threshold: Optional[float] = None

    def __post_init__(self):
        if self.long_docs not in LONG_DOCS:
            raise InputError(f"long documents {self.long_docs!r}: expected one of {', '.join(LONG_DOCS)}")
        if self.max_windows < 1:
            raise InputError(f"max windows {self.max_windows}: expected at least 1")
        if self.prune_top_k is not None and self.prune_top_k < 1:
            raise InputError(f"prune top-k {self.prune_top_k}: expected at least 1")
        if self.prune_threshold is not None and not (np.isfinite(self.prune_threshold) and self.prune_threshold >= 0):
            raise InputError(f"prune threshold {self.prune_threshold}: expected a finite number >= 0")

    @property
    def prunes(self) -> bool:
        return self.prune_top_k is not None or self.prune_threshold is not None

    def as_meta(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: Optional[dict]) -> "VectorOptions":
        """The options an index recorded; an index made before they were recorded had the defaults."""
        known = {k: v for k, v in (meta or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def pruned(self, vector):
        """`vector` (a `SparseVector` or the like) as the pruning settings keep it; itself when they prune nothing."""
        if not self.prunes or len(vector.ids) == 0:
            return vector
        return type(vector)(*self.prune(vector.ids, vector.values))

    def prune(self, ids: np.ndarray, values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The (ids, values) kept by the pruning settings, in their original (id) order."""
        keep = np.ones(len(ids), dtype=bool)
        if self.prune_threshold is not None:
            keep &= values >= self.prune_threshold
        if self.prune_top_k is not None and keep.sum() > self.prune_top_k:
            candidates = np.flatnonzero(keep)
            # Highest weights first; equal weights by id, so the result does not depend on the sort.
            order = np.lexsort((ids[candidates], -values[candidates]))
            keep[:] = False
            keep[candidates[order[: self.prune_top_k]]] = True
        return ids[keep], values[keep]


def max_merge(parts) -> Tuple[np.ndarray, np.ndarray]:
    """One (ids, values) from several: for each id, its largest value; ids ascending."""
    ids = np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False)
    values = np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False)
    if len(ids) == 0:
        return ids, values
    order = np.lexsort((-values, ids))  # by id, largest value first within an id
    ids, values = ids[order], values[order]
    first = np.concatenate([[True], ids[1:] != ids[:-1]])
    return ids[first], values[first]


def pack(ids: np.ndarray, values: np.ndarray, vocab_size: int) -> str:
    """A vector as base64 of its ids (uint16, or uint32 for vocabularies over 65,536), then its weights.

    A weight is kept as the 16 bits Lucene's `FeatureField` (behind `rank_features` and
    `sparse_vector`) keeps of a positive float32: its bits shifted right by 15 (the exponent and
    the top 8 mantissa bits). The copy is exactly as precise as the index, in 2 bytes.
    """
    id_type = "<u2" if vocab_size <= 1 << 16 else "<u4"
    weights = (np.asarray(values, dtype=np.float32).view(np.uint32) >> 15).astype("<u2")
    raw = np.asarray(ids, dtype=id_type).tobytes() + weights.tobytes()
    return ("2:" if id_type == "<u2" else "4:") + base64.b64encode(raw).decode("ascii")


def unpack(text: str) -> Tuple[np.ndarray, np.ndarray]:
    """(ids, values) from `pack`'s string; the values as the index stores them.

    Raises:
        InputError: the string is not one `pack` wrote.
    """
    width, _, data = text.partition(":")
    if width not in ("2", "4"):
        raise InputError(f"packed vector {text[:20]!r}: not written by splade-os (no id width prefix)")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise InputError(f"packed vector {text[:20]!r}: not valid base64") from None
    size = int(width)
    if len(raw) % (size + 2):
        raise InputError(f"packed vector {text[:20]!r}: {len(raw)} bytes is not a whole number of features")
    n = len(raw) // (size + 2)
    ids = np.frombuffer(raw[: n * size], dtype="<u2" if size == 2 else "<u4").astype(np.int64)
    bits = np.frombuffer(raw[n * size:], dtype="<u2").astype(np.uint32) << 15
    return ids, bits.view(np.float32)
