"""Inference-free queries: a tokenizer and a static weight table turn query text into weighted tokens.

The query side of an inference-free SPLADE model has no neural network. A query is tokenized
without special tokens, every DISTINCT token gets the weight the model's `SparseStaticEmbedding`
table gives it (a repeated token counts once; no normalisation), and the non-zero weights become
a weighted feature query (`splade_os.query.bodies`) whose score is the sparse dot product with
the document's features.

This module imports neither torch nor transformers: `tokenizers` (Rust) and `safetensors`' numpy
loader are enough, which keeps `splade-os search` start-up short; `splade_os.query.tokenizer`
gets the token ids without the per-character offset tracking that `Tokenizer.encode` does and a
query does not need.
"""

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from splade_os.common.errors import ModelError
from splade_os.formats.identity import vocabulary_hash
from splade_os.formats.layout import OPENSEARCH_IDF, ModelLayout, max_length_of, read_layout
from splade_os.query.bodies import DEFAULT_FIELD, DEFAULT_MAX_CLAUSES, query_body
from splade_os.query.filters import filter_clauses
from splade_os.query.keys import escape_key
from splade_os.query.options import SearchOptions, search_options
from splade_os.query.tokenizer import QueryTokenizer


def load_query_table(query_dir: Path, vocab_size: int) -> np.ndarray:
    """Read a `SparseStaticEmbedding` weight table as float32 of length `vocab_size`."""
    weights_path = query_dir / "model.safetensors"
    if weights_path.exists():
        from safetensors.numpy import load_file

        tensors = load_file(str(weights_path))
        if "weight" not in tensors:
            raise ModelError(f"{weights_path}: has no tensor named 'weight' (found {sorted(tensors)})")
        table = np.asarray(tensors["weight"], dtype=np.float32).reshape(-1)
    elif (query_dir / "pytorch_model.bin").exists():
        raise ModelError(f"{query_dir}: only safetensors query tables are read (pickled pytorch_model.bin refused)")
    else:
        raise ModelError(f"{query_dir}: missing model.safetensors (the query weight table)")
    return fit_table(table, vocab_size, str(weights_path))


def idf_table(path: Path, tokenizer, missing: float = 0.0) -> np.ndarray:
    """A query table from an `idf.json` ({token: weight}), one float32 per token id.

    Args:
        path: the JSON file.
        tokenizer: the model's `tokenizers.Tokenizer` (token strings -> ids).
        missing: the weight of a token the file does not list: 0.0 as sentence-transformers'
            `SparseStaticEmbedding.from_json`; 1.0 as OpenSearch's `SPARSE_TOKENIZE` runtime,
            which also drops special tokens (they get 0 here).

    Raises:
        ModelError: the file is not a JSON object of finite numbers.
    """
    try:
        weights = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot be read as an idf.json ({e})") from None
    if not isinstance(weights, dict):
        raise ModelError(f"{path}: expected a JSON object of token -> weight")
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    table = np.full(len(vocab), missing, dtype=np.float32)
    for token, weight in weights.items():
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise ModelError(f"{path}: the weight of {token!r} is not a number")
        if token in vocab:  # a token outside the vocabulary can never be a query token
            table[vocab[token]] = weight
    if missing:
        special = [t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special]
        table[[vocab[t] for t in special if t in vocab]] = 0.0
    return table


def fit_table(table: np.ndarray, vocab_size: int, where: str) -> np.ndarray:
    """Check a query table against the vocabulary; a short one is padded with zeros.

    `SparseStaticEmbedding.from_json` can build a table shorter than the vocabulary.
    """
    if table.shape[0] > vocab_size:
        raise ModelError(f"{where}: table has {table.shape[0]} weights but the vocabulary has {vocab_size}")
    if table.shape[0] < vocab_size:
        table = np.concatenate([table, np.zeros(vocab_size - table.shape[0], dtype=np.float32)])
    if not np.all(np.isfinite(table)):
        raise ModelError(f"{where}: the query table holds NaN or infinite weights")
    return table


class QueryEncoder:
    """Turns query text into token weights with a model's tokenizer and static table.

    Args:
        tokenizer: a `tokenizers.Tokenizer` (its truncation is set from `max_length`).
        table: one float32 weight per token id.
        name: the model's name, for messages.
        max_length: truncation length (sentence-transformers' `model_max_length`); None: none.

    Example:
        >>> encoder = QueryEncoder.load("path/to/model")
        >>> encoder.encode("what is lift?")
        {'lift': 5.3, 'what': 1.1, 'is': 0.9, '?': 0.2}
    """

    def __init__(self, tokenizer, table: np.ndarray, name: str = "", max_length: Optional[int] = None,
                 where: str = "the query table"):
        self.name = name
        self.tokenizer = tokenizer
        self.max_length = max_length
        tokenizer.no_padding()
        if max_length:
            tokenizer.enable_truncation(max_length)
        else:
            tokenizer.no_truncation()
        self.query_tokenizer = QueryTokenizer(tokenizer)
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.tokens = [""] * len(vocab)
        for token, index in vocab.items():
            if index >= len(self.tokens):
                raise ModelError(f"{where}: token ids are not contiguous (id {index})")
            self.tokens[index] = token
        self.keys = [escape_key(t) for t in self.tokens]
        self.table = fit_table(np.asarray(table, dtype=np.float32).reshape(-1), len(self.tokens), where)
        self.hash = vocabulary_hash(self.tokens, self.table)

    @classmethod
    def from_layout(cls, layout: ModelLayout, name: str = "") -> "QueryEncoder":
        """The query side of a model folder's layout (see `splade_os.formats.layout.read_layout`)."""
        if layout.idf_file is None:
            return cls.from_files(layout.tokenizer_file, layout.query_dir, name or layout.root.name)
        tokenizer = _read_tokenizer(layout.tokenizer_file)
        missing = 1.0 if layout.kind == OPENSEARCH_IDF else 0.0
        return cls(tokenizer, idf_table(layout.idf_file, tokenizer, missing), name or layout.root.name,
                   max_length_of(layout.query_dir), str(layout.idf_file))

    @classmethod
    def from_files(cls, tokenizer_file: Path, query_dir: Path, name: str = "") -> "QueryEncoder":
        """From a `tokenizer.json` and a folder holding the table (`model.safetensors`, key "weight")
        and optionally `tokenizer_config.json` (the truncation length)."""
        tokenizer = _read_tokenizer(tokenizer_file)
        table = load_query_table(query_dir, tokenizer.get_vocab_size(with_added_tokens=True))
        return cls(tokenizer, table, name, max_length_of(query_dir), str(query_dir))

    @classmethod
    def load(cls, path, name: str = "") -> "QueryEncoder":
        """Load from a saved model folder, or from a query-side folder (`tokenizer.json`,
        `model.safetensors`, optionally `tokenizer_config.json`)."""
        path = Path(path)
        if (path / "modules.json").exists() or (path / "idf.json").exists() or not path.is_dir():
            return cls.from_layout(read_layout(path), name)
        return cls.from_files(path / "tokenizer.json", path, name or path.name)

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
        """{escaped feature key: weight} for a query."""
        keys = self.keys
        return {keys[i]: w for i, w in self.weights(text).items()}

    def to_dsl(self, text: str, engine, options: Optional[SearchOptions] = None, *, field: str = DEFAULT_FIELD,
               max_clauses: int = DEFAULT_MAX_CLAUSES, size: Optional[int] = None,
               filter_share: Optional[float] = None, **given) -> dict:
        """The search body for a query, from the model alone (`SpladeIndex.body` knows the index).

        Args:
            text: the query text.
            engine: "opensearch" or "elasticsearch" (or a `splade_os.query.engine.Engine`): the
                body's dialect. Required: an Elasticsearch app must never get an OpenSearch body.
            options: a `SearchOptions` (k, pruning, two-phase, filter, source); `given`: the same
                by name over it (`k=5`, `filter="price<20"`; `size` is `k`). Here `source` is the
                body's `_source` as given (None and True: all fields), and `category=books` a
                `term` on `category` as named (`SpladeIndex.body` picks a `text` field's `keyword`
                sub-field from the index's mapping).
            field: the sparse field documents were indexed into.
            max_clauses: the cluster's `indices.query.bool.max_clause_count`; the highest
                weights are kept when a query has more tokens than that.
            filter_share: the share of the index the filter matches, when the app knows it (a
                tenant among hundreds): the filter then goes where `SpladeIndex.body` puts it, as
                the body's `post_filter` from 5% up, else as a conjunction with the query. Unknown
                (None), it goes beside the query's clauses, the least slow place for any share.
        """
        options = search_options(options, k=size, **given)
        source = None if options.source is True else options.source
        return query_body(self.weights(text), self.keys, engine, field=field, size=options.k, max_clauses=max_clauses,
                          source=source, pruning=options.pruning, two_phase=options.two_phase,
                          filters=filter_clauses(options.filter), filter_share=filter_share)


def _read_tokenizer(path: Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises its own exception type for bad files
        raise ModelError(f"{path}: cannot be read as a tokenizer ({e})") from None
