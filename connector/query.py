"""Inference-free queries: tokenizer + static weight table -> the search body.

The query side of an inference-free SPLADE model has no neural network. A query is tokenized
without special tokens, every DISTINCT token gets the weight the model's `SparseStaticEmbedding`
table gives it (a repeated token counts once; no normalisation), and the non-zero weights become
a weighted feature query whose score is the sparse dot product with the document's features:
a bool of linear `rank_feature` clauses on OpenSearch, a `sparse_vector` query on Elasticsearch.

This module imports neither torch nor transformers: `tokenizers` (Rust) and `safetensors`' numpy
loader are enough, which keeps `splade-os search` start-up short; `splade_os.query_tokenizer`
gets the token ids without the per-character offset tracking that `Tokenizer.encode` does and a
query does not need.
"""

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .engine import ELASTICSEARCH, OPENSEARCH, engine_named
from .errors import InputError, ModelError
from .filters import filter_clauses, filtered
from .identity import vocabulary_hash
from .keys import escape_key
from .layout import OPENSEARCH_IDF, ModelLayout, max_length_of, read_layout
from .query_tokenizer import QueryTokenizer

DEFAULT_FIELD = "splade"
DEFAULT_MAX_CLAUSES = 1024  # indices.query.bool.max_clause_count's default


@dataclass(frozen=True)
class TwoPhase:
    """Two-phase search: a first pass with the query's `tokens` highest-weight tokens, then a
    `rescore` of its top `window` hits that adds the rest of the query (both engines).

    The rescore runs with `query_weight` and `rescore_query_weight` 1, so a hit inside the
    window gets first pass + rest = exactly the full query's score (the score is a sum over
    tokens); only which documents reach the window can differ from the full query. The
    defaults were chosen on a 1M-document index (docs/scale.md, benchmarks/bench_scale.py):
    top-10 agreement 0.987 with the full query, p50 1.37x and p99 1.44x faster.

    Attributes:
        tokens: query tokens (highest weights) in the first pass.
        window: hits of the first pass rescored with the full query (at least the hits asked for).
    """

    tokens: int = 12
    window: int = 200

    def __post_init__(self):
        if self.tokens < 1 or self.window < 1:
            raise InputError(f"two-phase search needs tokens >= 1 and window >= 1, not {self.tokens} and {self.window}")


class ClauseCapWarning(UserWarning):
    """A query had more non-zero tokens than the cluster allows clauses; the weakest were dropped."""


class NegativeWeightWarning(UserWarning):
    """The query table has negative weights; feature query boosts cannot be negative, so they are dropped."""


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
        """The query side of a model folder's layout (see `splade_os.layout.read_layout`)."""
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

    def to_dsl(self, text: str, field: str = DEFAULT_FIELD, size: int = 10, max_clauses: int = DEFAULT_MAX_CLAUSES,
               source=None, engine=OPENSEARCH, pruning: Optional["Pruning"] = None,
               two_phase: Optional[TwoPhase] = None, filter=None) -> dict:
        """The search body for a query (see `query_body`).

        Args:
            text: the query text.
            field: the sparse field documents were indexed into.
            size: number of hits to return.
            max_clauses: the cluster's `indices.query.bool.max_clause_count`; the highest
                weights are kept when a query has more tokens than that.
            source: `_source` fields to return: all when None, none when False (an empty
                list means all to the engines).
            engine: "opensearch" or "elasticsearch" (or a `splade_os.engine.Engine`).
            pruning: Elasticsearch's token pruning with a rescore (`Pruning`); None: exact.
            two_phase: a `TwoPhase` for a first pass on the highest-weight tokens and a rescore
                with the rest (large indexes, both engines); None: the full query in one pass.
            filter: restricts the hits without changing their scores: a condition ("price<20"),
                an engine query (a dict), or a list of these (see `splade_os.filters`). Here
                `category=books` is a `term` query on `category` as named; `SpladeIndex.body`
                also picks a `text` field's `keyword` sub-field from the index's mapping.
        """
        return query_body(self.weights(text), self.keys, field, size, max_clauses, source, engine, pruning,
                          two_phase, filter_clauses(filter))


def _read_tokenizer(path: Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises its own exception type for bad files
        raise ModelError(f"{path}: cannot be read as a tokenizer ({e})") from None


def weighted_terms(weights: Dict[int, float], keys: Sequence[str], max_clauses: int = DEFAULT_MAX_CLAUSES
                   ) -> List[Tuple[str, float]]:
    """(key, weight) pairs a feature query can carry: positive weights, highest first, at most `max_clauses`."""
    items: List[Tuple[int, float]] = [(i, w) for i, w in weights.items() if w > 0]
    if len(items) < len(weights):
        warnings.warn(
            f"{len(weights) - len(items)} query token(s) have negative weights and were dropped "
            "(feature query boosts must be positive)",
            NegativeWeightWarning,
            stacklevel=4,
        )
    items.sort(key=lambda item: (-item[1], item[0]))
    if len(items) > max_clauses:
        warnings.warn(
            f"query has {len(items)} weighted tokens but the cluster allows {max_clauses} clauses; "
            f"kept the {max_clauses} highest weights",
            ClauseCapWarning,
            stacklevel=4,
        )
        items = items[:max_clauses]
    return [(keys[i], w) for i, w in items]


def feature_query(terms: Sequence[Tuple[str, float]], field: str = DEFAULT_FIELD, engine=OPENSEARCH) -> dict:
    """The query clause scoring sum(weight * document feature) over `terms` on `engine`.

    OpenSearch: a bool of linear `rank_feature` clauses on `rank_features`. Elasticsearch: a bool
    of boosted `term` clauses on `sparse_vector`, which scores the same exact dot product as the
    `sparse_vector` query and measured faster (benchmarks/bench_engines.py). No term matches
    nothing (a bool with no clauses would match every document).
    """
    if not terms:
        return {"match_none": {}}
    if engine_named(engine) is ELASTICSEARCH:
        return {"bool": {"should": [{"term": {field: {"value": key, "boost": w}}} for key, w in terms]}}
    return {"bool": {"should": [{"rank_feature": {"field": f"{field}.{key}", "boost": w, "linear": {}}}
                                for key, w in terms]}}


def sparse_vector_query(terms: Sequence[Tuple[str, float]], field: str = DEFAULT_FIELD, pruning=None,
                        only_pruned: bool = False) -> dict:
    """Elasticsearch's `sparse_vector` query over `terms`, exact unless `pruning` is given.

    From 8.19 the query prunes by default (measured: a Cranfield query's top score 29.9 instead of
    the exact 40.9), so `prune` is always spelled out.
    """
    query = {"field": field, "query_vector": dict(terms), "prune": pruning is not None}
    if pruning is not None:
        query["pruning_config"] = pruning.config(only_pruned)
    return {"sparse_vector": query}


@dataclass(frozen=True)
class Pruning:
    """Elasticsearch's query-side token pruning, with a rescore that restores the exact top scores.

    The first pass leaves out tokens that are frequent in the index (more than
    `tokens_freq_ratio_threshold` times the average token's frequency) and light in the query
    (below `tokens_weight_threshold` of the query's best weight); the rescore then adds the
    pruned tokens' share to the top `window` hits, so their scores are the full dot product.
    Elasticsearch's defaults: 5 and 0.4.
    """

    tokens_freq_ratio_threshold: float = 5.0
    tokens_weight_threshold: float = 0.4
    window: int = 100

    def config(self, only_pruned: bool = False) -> dict:
        config = {"tokens_freq_ratio_threshold": self.tokens_freq_ratio_threshold,
                  "tokens_weight_threshold": self.tokens_weight_threshold}
        if only_pruned:
            config["only_score_pruned_tokens"] = True
        return config


def pruned_query(terms: Sequence[Tuple[str, float]], field: str, size: int, pruning: Pruning, engine) -> dict:
    """The pruned first pass and a rescore that adds the pruned tokens' share to the top hits."""
    if engine_named(engine) is not ELASTICSEARCH:
        raise InputError("query pruning (pruning_config) is an Elasticsearch feature; OpenSearch has no such option")
    if not terms:
        return {"query": {"match_none": {}}}
    return {"query": sparse_vector_query(terms, field, pruning),
            "rescore": {"window_size": max(pruning.window, size),
                        "query": {"rescore_query": sparse_vector_query(terms, field, pruning, only_pruned=True),
                                  "query_weight": 1.0, "rescore_query_weight": 1.0}}}


def rescore_clause(rest: Sequence[Tuple[str, float]], window: int, field: str = DEFAULT_FIELD,
                   engine=OPENSEARCH) -> dict:
    """A `rescore` adding the `rest` of a query's terms to the first pass's score over its top `window` hits.

    Both weights are 1 and the score mode "total": a rescored hit's score is first + rest.
    """
    return {"window_size": window, "query": {"rescore_query": feature_query(rest, field, engine),
                                             "query_weight": 1.0, "rescore_query_weight": 1.0,
                                             "score_mode": "total"}}


def query_body(weights: Dict[int, float], keys: Sequence[str], field: str = DEFAULT_FIELD, size: int = 10,
               max_clauses: int = DEFAULT_MAX_CLAUSES, source=None, engine=OPENSEARCH,
               pruning: Optional[Pruning] = None, two_phase: Optional[TwoPhase] = None,
               filters: Sequence[dict] = ()) -> dict:
    """Build the search body from {token id: weight}; see `QueryEncoder.to_dsl`.

    `filters`: filter clauses (`splade_os.filters.filter_clauses`); the first pass is restricted to
    them, a rescore needs no filter (it only re-scores hits of the first pass).
    """
    if pruning is not None and two_phase is not None:
        raise InputError("give pruning or two-phase search, not both (each is a first pass and a rescore)")
    terms = weighted_terms(weights, keys, max_clauses)
    # Exact hit counts would stop Lucene from skipping blocks by their maximum impact.
    body = {"size": size, "track_total_hits": False}
    if pruning is not None:
        body.update(pruned_query(terms, field, size, pruning, engine))
    elif two_phase is not None and len(terms) > two_phase.tokens:
        body["query"] = feature_query(terms[: two_phase.tokens], field, engine)
        body["rescore"] = rescore_clause(terms[two_phase.tokens:], max(two_phase.window, size), field, engine)
    else:
        body["query"] = feature_query(terms, field, engine)
    body["query"] = filtered(body["query"], list(filters))
    if source is not None:
        body["_source"] = source
    return body


def bm25_body(text: str, size: int = 10, fields: Sequence[str] = ("title", "text"), source=None,
              filter=None) -> dict:
    """The BM25 baseline on the same index: a `multi_match` over the text fields (both engines),
    restricted by `filter` (see `QueryEncoder.to_dsl`) without changing its scores."""
    query = filtered({"multi_match": {"query": text, "fields": list(fields)}}, filter_clauses(filter))
    body = {"size": size, "query": query, "track_total_hits": False}
    if source is not None:
        body["_source"] = source
    return body
