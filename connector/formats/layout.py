"""The file layout of a saved inference-free SPLADE model: which folder holds what.

Two layouts are read, without importing torch (so the query side can start fast) and without
unpickling anything:

- **sentence-transformers** (`modules.json` present): a `SparseEncoder` whose `Router` has two
  routes, `query` -> one `SparseStaticEmbedding` (tokenizer + one weight per vocabulary entry)
  and `document` -> a masked-LM transformer followed by `SpladePooling`. A module's files are
  in the folder named by its id, relative to the Router's path; an id of "" (what
  sentence-transformers writes for a module at the repository root), or an id whose folder is
  missing or holds no files of that module, means the repository root, where OpenSearch's
  published inference-free models keep the masked-LM and its tokenizer. The query table is
  the module's `model.safetensors` ("weight"), or the `idf.json` its config names (`"path"`):
  tokens missing from that file get 0, as sentence-transformers' `SparseStaticEmbedding.from_json`
  gives them.
- **OpenSearch's older inference-free models** (no sentence-transformers files): a masked-LM
  (`config.json`, weights, `tokenizer.json`) with an `idf.json` beside it, which OpenSearch
  deploys as a `SPARSE_TOKENIZE` model for the queries. The rule is that runtime's (ml-commons
  `SparseTokenizerModel`; the neural-search analyzer `HFModelTokenizer` does the same): a token
  missing from `idf.json` weighs 1.0, and special tokens are dropped (weight 0). Documents are
  max-pooled with one `log1p(relu(.))`, as their model cards compute them.

Document weights are read from safetensors; a model that has only `pytorch_model.bin` (a pickle:
loading it can run code) loads only when the caller allows it (`allow_pickle`).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from splade_os.common.errors import ModelError

QUERY_MODULE_TYPES = ("SparseStaticEmbedding", "IDF")
DOCUMENT_MODULE_TYPES = ("Transformer", "MLMTransformer")
POOLING_MODULE_TYPES = ("SpladePooling",)
SENTENCE_TRANSFORMERS, OPENSEARCH_IDF = "sentence-transformers", "opensearch-idf"
PICKLED_WEIGHTS = "pytorch_model.bin"


@dataclass
class ModelLayout:
    """Where the query table, the tokenizer and the document route of a model live.

    Attributes:
        root: the model folder.
        query_dir: the folder of the query module (its tokenizer, table, truncation length).
        document_dir: the folder of the masked-LM.
        pooling_strategy, activation_function: SpladePooling's settings.
        idf_file: the `idf.json` the query table is built from, or None (`model.safetensors`).
        kind: `SENTENCE_TRANSFORMERS` or `OPENSEARCH_IDF`, whose rule fills tokens missing
            from `idf_file` (0, or 1.0 with special tokens at 0).
    """

    root: Path
    query_dir: Path
    document_dir: Path
    pooling_strategy: str = "max"
    activation_function: str = "relu"
    idf_file: Optional[Path] = None
    kind: str = SENTENCE_TRANSFORMERS

    @property
    def tokenizer_file(self) -> Path:
        return _first_existing(self.query_dir / "tokenizer.json", self.root / "tokenizer.json")

    @property
    def document_tokenizer_file(self) -> Path:
        return _first_existing(self.document_dir / "tokenizer.json", self.root / "tokenizer.json")

    @property
    def pickled_weights(self) -> bool:
        """Whether the masked-LM's weights exist only as a pickle (`pytorch_model.bin`)."""
        return not any(self.document_dir.glob("*.safetensors")) and (self.document_dir / PICKLED_WEIGHTS).exists()


def _first_existing(*paths: Path) -> Path:
    for path in paths:
        if path.exists():
            return path
    return paths[0]


def _read_json(path: Path, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ModelError(f"{path.parent}: missing {path.name} ({what})") from None
    except ValueError as e:
        raise ModelError(f"{path}: not valid JSON ({e})") from None


def _class_name(type_path: str) -> str:
    return type_path.rsplit(".", 1)[-1]


# The files that show a folder holds a module of that kind (else the module is at the root).
_MODULE_FILES = {
    "query": ("model.safetensors", "config.json"),
    "document": ("config.json",),
    "pooling": ("config.json",),
}


def _module_dir(router_dir: Path, module_id: str, kind: str) -> Path:
    folder = router_dir / module_id
    if module_id and folder.is_dir() and any((folder / name).exists() for name in _MODULE_FILES[kind]):
        return folder
    return router_dir


def read_layout(root: Path) -> ModelLayout:
    """Read the layout of a saved model folder (see the module docstring for the two layouts).

    Raises:
        ModelError: the folder is missing, or is not an inference-free SPLADE model.
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelError(f"{root}: no such model folder")
    if not (root / "modules.json").exists() and (root / "idf.json").exists() and (root / "config.json").exists():
        layout = ModelLayout(root, root, root, idf_file=root / "idf.json", kind=OPENSEARCH_IDF)
    else:
        layout = _router_layout(root)
    if not layout.tokenizer_file.exists():
        raise ModelError(f"{layout.query_dir}: missing tokenizer.json (the query tokenizer)")
    return layout


def _router_layout(root: Path) -> ModelLayout:
    if not (root / "modules.json").exists():
        raise ModelError(f"{root}: missing modules.json (a sentence-transformers model), and no idf.json beside "
                         "a masked-LM's config.json (an OpenSearch inference-free model)")
    modules = _read_json(root / "modules.json", "the list of sentence-transformers modules")
    routers = [m for m in modules if _class_name(m.get("type", "")) == "Router"]
    if not routers:
        raise ModelError(
            f"{root}: not an inference-free SPLADE model (modules.json has no Router with a query route, "
            "and there is no idf.json beside a masked-LM)"
        )
    router_dir = root / routers[0].get("path", "")
    config = _read_json(router_dir / "router_config.json", "the Router's routes")
    types = config.get("types", {})
    structure = config.get("structure", {})

    query_ids = [m for m in structure.get("query", []) if _class_name(types.get(m, "")) in QUERY_MODULE_TYPES]
    if len(structure.get("query", [])) != 1 or not query_ids:
        raise ModelError(
            f"{root}: not an inference-free SPLADE model (the query route must be one SparseStaticEmbedding, "
            f"found {structure.get('query')})"
        )
    document = structure.get("document", [])
    doc_ids = [m for m in document if _class_name(types.get(m, "")) in DOCUMENT_MODULE_TYPES]
    pool_ids = [m for m in document if _class_name(types.get(m, "")) in POOLING_MODULE_TYPES]
    if not doc_ids or not pool_ids:
        raise ModelError(
            f"{root}: the document route must be a masked-LM transformer and SpladePooling, found {document}"
        )
    pooling = {}
    pool_config = _module_dir(router_dir, pool_ids[0], "pooling") / "config.json"
    if pool_config.exists():
        pooling = _read_json(pool_config, "SpladePooling settings")
    query_dir = _module_dir(router_dir, query_ids[0], "query")
    layout = ModelLayout(
        root=root,
        query_dir=query_dir,
        document_dir=_module_dir(router_dir, doc_ids[0], "document"),
        pooling_strategy=pooling.get("pooling_strategy", "max"),
        activation_function=pooling.get("activation_function", "relu"),
        idf_file=_idf_reference(query_dir, root),
    )
    if layout.pooling_strategy not in ("max", "sum"):
        raise ModelError(f"{pool_config}: pooling_strategy must be 'max' or 'sum', got {layout.pooling_strategy!r}")
    if layout.activation_function not in ("relu", "log1p_relu"):
        raise ModelError(
            f"{pool_config}: activation_function must be 'relu' or 'log1p_relu', got {layout.activation_function!r}"
        )
    return layout


def _idf_reference(query_dir: Path, root: Path) -> Optional[Path]:
    """The `idf.json` a SparseStaticEmbedding config names instead of holding a table, or None.

    A relative path is looked up beside the module, then at the model's root.
    """
    config_path = query_dir / "config.json"
    if (query_dir / "model.safetensors").exists() or not config_path.exists():
        return None
    path = str(_read_json(config_path, "SparseStaticEmbedding settings").get("path", ""))
    if not path.endswith(".json"):
        return None
    candidates = [Path(path)] if Path(path).is_absolute() else [query_dir / path, root / path]
    for candidate in candidates + [root / Path(path).name]:
        if candidate.is_file():
            return candidate
    raise ModelError(f"{config_path}: the query table {path!r} is not in the model folder")


def max_length_of(folder: Path) -> Optional[int]:
    """The truncation length sentence-transformers uses for a module folder, or None (no limit).

    That is `max_seq_length` of `sentence_bert_config.json` when set (sentence-transformers 5
    writes it), else the tokenizer's `model_max_length`, capped at the transformer's position
    embeddings.
    """
    limit = None
    st_config = folder / "sentence_bert_config.json"
    if st_config.exists():
        value = _read_json(st_config, "sentence-transformers module settings").get("max_seq_length")
        if isinstance(value, int) and value > 0:
            limit = value
    tok_config = folder / "tokenizer_config.json"
    if limit is None and tok_config.exists():
        value = _read_json(tok_config, "tokenizer settings").get("model_max_length")
        if isinstance(value, int) and value < 10**9:
            limit = value
    model_config = folder / "config.json"
    if model_config.exists():
        positions = _read_json(model_config, "model settings").get("max_position_embeddings")
        if isinstance(positions, int):
            limit = positions if limit is None else min(limit, positions)
    return limit
