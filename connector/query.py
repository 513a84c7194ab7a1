"""Inference-free queries: tokenizer + static weight table -> OpenSearch query DSL.

The query side of an inference-free SPLADE model has no neural network. A query is
tokenized without special tokens, every DISTINCT token gets the weight the model's
`SparseStaticEmbedding` table gives it (a repeated token counts once; no normalisation),
and each non-zero weight becomes one `rank_feature` clause whose linear score is
`weight * document value`, so the bool `should` of them is the sparse dot product.

This module imports neither torch nor transformers: `tokenizers` (Rust) and
`safetensors`' numpy loader are enough, which keeps `splade-os search` start-up short;
`connector.query_tokenizer` gets the token ids without the per-character offset tracking
that `Tokenizer.encode` does and a query does not need.
"""

import hashlib
import json
import warnings
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from .errors import ModelError
from .keys import escape_key
from .model import ModelLayout, max_length_of, read_layout
from .query_tokenizer import QueryTokenizer

DEFAULT_FIELD = "splade"
DEFAULT_MAX_CLAUSES = 1024  # OpenSearch's default indices.query.bool.max_clause_count


class ClauseCapWarning(UserWarning):
    """A query had more non-zero tokens than the cluster allows clauses; the weakest were dropped."""


class NegativeWeightWarning(UserWarning):
    """The query table has negative weights; `rank_feature` boosts cannot be negative, so they are dropped."""


def load_query_table(query_dir: Path, vocab_size: int) -> np.ndarray:
    """Read a `SparseStaticEmbedding` weight table as float32 of length `vocab_size`."""
    config_path = query_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    weights_path = query_dir / "model.safetensors"
    if weights_path.exists():
        from safetensors.numpy import load_file

        tensors = load_file(str(weights_path))
        if "weight" not in tensors:
            raise ModelError(f"{weights_path}: has no tensor named 'weight' (found {sorted(tensors)})")
        table = np.asarray(tensors["weight"], dtype=np.float32).reshape(-1)
    elif str(config.get("path", "")).endswith(".json"):
        raise ModelError(
            f"{query_dir}: the query table is an idf.json reference ({config['path']}); "
            "save the model once with sentence-transformers to get model.safetensors"
        )
    elif (query_dir / "pytorch_model.bin").exists():
        raise ModelError(f"{query_dir}: only safetensors query tables are read (pickled pytorch_model.bin refused)")
    else:
        raise ModelError(f"{query_dir}: missing model.safetensors (the query weight table)")
    if table.shape[0] > vocab_size:
        raise ModelError(f"{weights_path}: table has {table.shape[0]} weights but the vocabulary has {vocab_size}")
    if table.shape[0] < vocab_size:
        # SparseStaticEmbedding.from_json can build a table shorter than the vocabulary.
        table = np.concatenate([table, np.zeros(vocab_size - table.shape[0], dtype=np.float32)])
    if not np.all(np.isfinite(table)):
        raise ModelError(f"{weights_path}: the query table holds NaN or infinite weights")
    return table


def vocabulary_hash(tokens: List[str], table: np.ndarray) -> str:
    """sha256 of the vocabulary (in id order) and the query table: the model's query identity."""
    digest = hashlib.sha256()
    digest.update("\n".join(tokens).encode("utf-8"))
    digest.update(b"\x00")
    digest.update(np.ascontiguousarray(table, dtype="<f4").tobytes())
    return digest.hexdigest()


class QueryEncoder:
    """Turns query text into token weights with a model's tokenizer and static table.

    Example:
        >>> encoder = QueryEncoder.load("path/to/model")
        >>> encoder.encode("what is lift?")
        {'lift': 5.3, 'what': 1.1, 'is': 0.9, '?': 0.2}
    """

    def __init__(self, layout: ModelLayout):
        from tokenizers import Tokenizer

        self.layout = layout
        self.name = layout.name
        try:
            self.tokenizer = Tokenizer.from_file(str(layout.tokenizer_file))
        except Exception as e:  # tokenizers raises its own exception type for bad files
            raise ModelError(f"{layout.tokenizer_file}: cannot be read as a tokenizer ({e})") from None
        self.max_length = max_length_of(layout.query_dir)
        self.tokenizer.no_padding()
        if self.max_length:
            self.tokenizer.enable_truncation(self.max_length)
        else:
            self.tokenizer.no_truncation()
        self.query_tokenizer = QueryTokenizer(self.tokenizer)
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        self.tokens = [""] * len(vocab)
        for token, index in vocab.items():
            if index >= len(self.tokens):
                raise ModelError(f"{layout.tokenizer_file}: token ids are not contiguous (id {index})")
            self.tokens[index] = token
        self.keys = [escape_key(t) for t in self.tokens]
        self.table = load_query_table(layout.query_dir, len(self.tokens))
        self.hash = vocabulary_hash(self.tokens, self.table)

    @classmethod
    def load(cls, model: str) -> "QueryEncoder":
        """Load from a saved model folder (see `connector.model.resolve_model` for other sources)."""
        return cls(read_layout(Path(model)))

    def token_ids(self, text: str) -> List[int]:
        """The query's token ids, without special tokens, truncated like sentence-transformers."""
        return self.query_tokenizer.ids(text)

    def weights(self, text: str) -> Dict[int, float]:
        """{token id: weight} for each distinct token with a non-zero weight (== encode_query)."""
        table = self.table
        out = {}
        for token_id in set(self.token_ids(text)):
            weight = float(table[token_id])
            if weight != 0.0:
                out[token_id] = weight
        return out

    def encode(self, text: str) -> Dict[str, float]:
        """{escaped rank_features key: weight} for a query."""
        keys = self.keys
        return {keys[i]: w for i, w in self.weights(text).items()}

    def to_dsl(
        self,
        text: str,
        field: str = DEFAULT_FIELD,
        size: int = 10,
        max_clauses: int = DEFAULT_MAX_CLAUSES,
        source=None,
    ) -> dict:
        """The OpenSearch search body for a query: a bool `should` of linear `rank_feature` clauses.

        Args:
            text: the query text.
            field: the `rank_features` field documents were indexed into.
            size: number of hits to return.
            max_clauses: the cluster's `indices.query.bool.max_clause_count`; the highest
                weights are kept when a query has more tokens than that.
            source: `_source` fields to return: all when None, none when False (an empty
                list means all to OpenSearch).
        """
        return query_body(self.weights(text), self.keys, field, size, max_clauses, source)


def query_body(
    weights: Dict[int, float],
    keys: List[str],
    field: str = DEFAULT_FIELD,
    size: int = 10,
    max_clauses: int = DEFAULT_MAX_CLAUSES,
    source=None,
) -> dict:
    """Build the search body from {token id: weight}; see `QueryEncoder.to_dsl`."""
    items: List[Tuple[int, float]] = [(i, w) for i, w in weights.items() if w > 0]
    if len(items) < len(weights):
        warnings.warn(
            f"{len(weights) - len(items)} query token(s) have negative weights and were dropped "
            "(rank_feature boosts must be positive)",
            NegativeWeightWarning,
            stacklevel=3,
        )
    items.sort(key=lambda item: (-item[1], item[0]))
    if len(items) > max_clauses:
        warnings.warn(
            f"query has {len(items)} weighted tokens but the cluster allows {max_clauses} clauses; "
            f"kept the {max_clauses} highest weights",
            ClauseCapWarning,
            stacklevel=3,
        )
        items = items[:max_clauses]
    should = [
        {"rank_feature": {"field": f"{field}.{keys[i]}", "boost": w, "linear": {}}} for i, w in items
    ]
    body = {
        "size": size,
        # A bool with no clauses would match every document; a query with no known token matches none.
        "query": {"bool": {"should": should}} if should else {"match_none": {}},
        # Exact hit counts would stop Lucene from skipping blocks by their maximum impact.
        "track_total_hits": False,
    }
    if source is not None:
        body["_source"] = source
    return body
