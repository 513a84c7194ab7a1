"""Finding the parts of a saved inference-free SPLADE model.

A sentence-transformers `SparseEncoder` of this kind is a `Router` with two routes:
`query` -> one `SparseStaticEmbedding` (tokenizer + one weight per vocabulary entry), and
`document` -> a masked-LM transformer followed by `SpladePooling`. This module reads that
layout from the files (`modules.json`, `router_config.json`, the module folders) without
importing torch, so the query side can start fast. Nothing here unpickles anything.
"""

import hashlib
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
    name: str
    query_dir: Path
    document_dir: Path
    pooling_strategy: str = "max"
    activation_function: str = "relu"
    source: str = ""  # how the model is named: "default", a folder path, a hub id, "cluster:NAME@VERSION"
    version: Optional[str] = None  # the registry version; None: derived from the fingerprint

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


def read_layout(root: Path, name: Optional[str] = None) -> ModelLayout:
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
        name=name or root.name,
        query_dir=_module_dir(router_dir, query_ids[0]),
        document_dir=_module_dir(router_dir, doc_ids[0]),
        pooling_strategy=pooling.get("pooling_strategy", "max"),
        activation_function=pooling.get("activation_function", "relu"),
        source=str(root.resolve()),
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


def resolve_model(name_or_path: Optional[str], show_progress: bool = True, client=None, url: str = "") -> ModelLayout:
    """Turn what a user passed as `--model` into a readable model folder.

    - None or "default": the bundled default model (built into the cache on first use);
    - an existing folder: used as it is;
    - "cluster:NAME[@VERSION]", or a bare NAME[@VERSION] that the cluster's registry holds
      (needs `client`): pulled from the registry into the cache;
    - anything else: a model hub id, downloaded with huggingface_hub (needs the hub).
    """
    if name_or_path in (None, "", "default"):
        from .model_builder import ensure_default_model

        layout = read_layout(ensure_default_model(show_progress=show_progress), name="splade-os-default")
        layout.source = "default"
        return layout
    path = Path(name_or_path).expanduser()
    if path.exists() or name_or_path.startswith((".", "/", "~")):
        return read_layout(path)
    ref = name_or_path[len("cluster:"):] if name_or_path.startswith("cluster:") else None
    if ref is None and client is not None and "/" not in name_or_path:
        from .registry import parse_ref, versions

        try:
            name, _ = parse_ref(name_or_path)
            if versions(client, url, name):
                ref = name_or_path
        except ModelError:
            ref = None
    if ref is not None:
        if client is None:
            raise ModelError(f"{name_or_path}: a registry model needs a cluster (--url)")
        from .registry import metadata, parse_ref, pull

        name, version = parse_ref(ref)
        meta = metadata(client, url, name, version)
        folder = pull(client, url, f"{name}@{meta['version']}", show_progress=show_progress)
        layout = read_layout(folder, name=name)
        layout.source = f"cluster:{name}@{meta['version']}"
        layout.version = str(meta["version"])
        return layout
    layout = read_layout(_download_from_hub(name_or_path), name=name_or_path)
    layout.source = name_or_path
    return layout


def _download_from_hub(model_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelError(f"{model_id}: not a local folder, and huggingface_hub is not installed") from None
    try:
        return Path(snapshot_download(model_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.md"]))
    except Exception as e:  # the hub client raises many kinds; all mean the same to the user
        raise ModelError(
            f"{model_id}: not a local folder and could not be fetched from the model hub "
            f"({type(e).__name__}); pass a local model folder with --model"
        ) from None


@dataclass
class ModelIdentity:
    """What an index records about the model that encoded its documents."""

    name: str
    version: str
    source: str
    hash: str  # vocabulary + query table: what queries depend on
    fingerprint: str  # hash + document route weights and pooling: what documents depend on


def model_identity(layout: ModelLayout, query_hash: str, source: Optional[str] = None,
                   version: Optional[str] = None) -> ModelIdentity:
    """The identity of a model: its query hash and a fingerprint of everything documents depend on."""
    digest = hashlib.sha256(query_hash.encode("ascii"))
    for path in sorted(layout.document_dir.glob("*.safetensors")) + [layout.document_dir / "config.json"]:
        if path.exists():
            digest.update(path.name.encode("utf-8"))
            digest.update(file_sha256(path).encode("ascii"))
    digest.update(f"{layout.pooling_strategy}/{layout.activation_function}/{max_length_of(layout.document_dir)}".encode())
    fingerprint = digest.hexdigest()
    return ModelIdentity(
        name=layout.name,
        version=version or layout.version or fingerprint[:12],
        source=source or layout.source,
        hash=query_hash,
        fingerprint=fingerprint,
    )


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
