"""The file layout of a saved inference-free SPLADE model: which folder holds what.

A sentence-transformers `SparseEncoder` of this kind is a `Router` with two routes:
`query` -> one `SparseStaticEmbedding` (tokenizer + one weight per vocabulary entry), and
`document` -> a masked-LM transformer followed by `SpladePooling`. This module reads that
layout from the files (`modules.json`, `router_config.json`, the module folders) without
importing torch, so the query side can start fast. Nothing here unpickles anything.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import ModelError

QUERY_MODULE_TYPES = ("SparseStaticEmbedding", "IDF")
DOCUMENT_MODULE_TYPES = ("Transformer", "MLMTransformer")
POOLING_MODULE_TYPES = ("SpladePooling",)


@dataclass
class ModelLayout:
    """Where the query table, the tokenizer and the document route of a model live."""

    root: Path
    query_dir: Path
    document_dir: Path
    pooling_strategy: str = "max"
    activation_function: str = "relu"

    @property
    def tokenizer_file(self) -> Path:
        return _first_existing(self.query_dir / "tokenizer.json", self.root / "tokenizer.json")

    @property
    def document_tokenizer_file(self) -> Path:
        return _first_existing(self.document_dir / "tokenizer.json", self.root / "tokenizer.json")


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


def _module_dir(router_dir: Path, module_id: str) -> Path:
    # Some hub repos keep the masked-LM and its tokenizer at the repo root instead of in
    # the module's own subfolder.
    folder = router_dir / module_id
    return folder if folder.is_dir() else router_dir


def read_layout(root: Path) -> ModelLayout:
    """Read the Router layout of a saved model folder.

    Raises:
        ModelError: the folder is missing, or is not an inference-free SPLADE model.
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelError(f"{root}: no such model folder")
    modules = _read_json(root / "modules.json", "the list of sentence-transformers modules")
    routers = [m for m in modules if _class_name(m.get("type", "")) == "Router"]
    if not routers:
        raise ModelError(
            f"{root}: not an inference-free SPLADE model (modules.json has no Router with a query route)"
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
    pool_config = _module_dir(router_dir, pool_ids[0]) / "config.json"
    if pool_config.exists():
        pooling = _read_json(pool_config, "SpladePooling settings")
    layout = ModelLayout(
        root=root,
        query_dir=_module_dir(router_dir, query_ids[0]),
        document_dir=_module_dir(router_dir, doc_ids[0]),
        pooling_strategy=pooling.get("pooling_strategy", "max"),
        activation_function=pooling.get("activation_function", "relu"),
    )
    if layout.pooling_strategy not in ("max", "sum"):
        raise ModelError(f"{pool_config}: pooling_strategy must be 'max' or 'sum', got {layout.pooling_strategy!r}")
    if layout.activation_function not in ("relu", "log1p_relu"):
        raise ModelError(
            f"{pool_config}: activation_function must be 'relu' or 'log1p_relu', got {layout.activation_function!r}"
        )
    if not layout.tokenizer_file.exists():
        raise ModelError(f"{layout.query_dir}: missing tokenizer.json (the query tokenizer)")
    return layout


def max_length_of(folder: Path) -> Optional[int]:
    """The truncation length sentence-transformers uses for a module folder, or None (no limit).

    That is the tokenizer's `model_max_length`, capped at the transformer's position embeddings.
    """
    limit = None
    tok_config = folder / "tokenizer_config.json"
    if tok_config.exists():
        value = _read_json(tok_config, "tokenizer settings").get("model_max_length")
        if isinstance(value, int) and value < 10**9:
            limit = value
    model_config = folder / "config.json"
    if model_config.exists():
        positions = _read_json(model_config, "model settings").get("max_position_embeddings")
        if isinstance(positions, int):
            limit = positions if limit is None else min(limit, positions)
    return limit
