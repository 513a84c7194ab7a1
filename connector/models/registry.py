"""What the cluster stores about models: the registry (`push`, `pull`) and every index's query side.

Three indexes hold it:

- `splade-models` (the registry): one document per version, `_id` = "NAME@VERSION", with the
  metadata (name, version, created, base model, hash, fingerprint, pooling, max lengths,
  metrics from the model card) and the list of files with their sizes and sha256.
- `splade-models-chunks`: every file of a pushed model folder in chunks of at most 4 MiB, each
  with its sha256 (`_id` = "NAME@VERSION/path#seq").
- `splade-query-sides`: the query side of every model an index was created for, `_id` = the
  model's hash, in a form any app can read without this package: the tokenizer
  (`tokenizer_json`: the `tokenizer.json` text), the table (`query_table`: float32
  little-endian, base64, one weight per token id), the truncation length and the key escape.
  So a machine with only the base install (no torch, no model files) can search any index.

A registry version becomes visible only once all its chunks are stored (its metadata document is
written last). Only safetensors, JSON and text files are pushed or written back: nothing a model
is loaded from can run code (no pickles).
"""

import base64
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from splade_os.bulk.requests import RetryPolicy, chunk_actions, index_action, request_bytes, send_chunk
from splade_os.common.cache import cache_dir
from splade_os.common.errors import ClusterError, ModelError, RegistryError
from splade_os.common.files import staged_dir
from splade_os.formats.identity import document_fingerprint
from splade_os.formats.layout import max_length_of, read_layout
from splade_os.query.pack import query_side_document

REGISTRY_INDEX = "splade-models"
CHUNK_INDEX = "splade-models-chunks"
QUERY_SIDE_INDEX = "splade-query-sides"
CHUNK_BYTES = 4 * 1024 * 1024
# Text and tensors only, nothing that unpickles; .toml: the recipe.toml `train` saves beside its model.
ALLOWED_SUFFIXES = (".safetensors", ".json", ".txt", ".md", ".model", ".toml")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")

_MAPPINGS = {
    REGISTRY_INDEX: {"name": {"type": "keyword"}, "version": {"type": "integer"}, "created": {"type": "date"},
                     "base_model": {"type": "keyword"}, "hash": {"type": "keyword"},
                     "fingerprint": {"type": "keyword"}},
    CHUNK_INDEX: {"name": {"type": "keyword"}, "version": {"type": "integer"}, "path": {"type": "keyword"},
                  "seq": {"type": "integer"}, "sha256": {"type": "keyword"}, "data": {"type": "binary"}},
    QUERY_SIDE_INDEX: {"hash": {"type": "keyword"}, "name": {"type": "keyword"}, "created": {"type": "date"}},
}


def parse_ref(ref: str) -> Tuple[str, Optional[int]]:
    """"name" or "name@3" -> (name, version or None)."""
    name, _, version = ref.partition("@")
    if not NAME_RE.match(name):
        raise RegistryError(f"{ref!r}: a registry model name is lower-case letters, digits, '.', '_' or '-'")
    if version and not version.isdigit():
        raise RegistryError(f"{ref!r}: the version after '@' must be a whole number")
    return name, int(version) if version else None


def _ensure_index(cluster, index: str) -> None:
    if cluster.exists(f"/{index}"):
        return
    body = {"settings": {"index": {"number_of_shards": 1}},
            "mappings": {"dynamic": False, "properties": _MAPPINGS[index]}}
    try:
        cluster.request("PUT", f"/{index}", body, action=f"creating {index!r}")
    except ClusterError as e:
        if e.error_type != "resource_already_exists_exception":
            raise


def _get(cluster, index: str, doc_id: str) -> Optional[dict]:
    """A document's `_source`, or None when the index or the document is missing."""
    from urllib.parse import quote

    try:
        return cluster.request("GET", f"/{index}/_doc/{quote(doc_id, safe='')}", action=f"reading {doc_id!r}")["_source"]
    except ClusterError as e:
        if e.status == 404:
            return None
        raise


def _refresh(cluster) -> None:
    """Make the newest registry entries searchable. Entries are written with refresh=true, so a
    user who may only read the registry (no `maintenance` privilege) sees them all without it."""
    try:
        cluster.request("POST", f"/{REGISTRY_INDEX}/_refresh", action="refreshing the model registry")
    except ClusterError as e:
        if e.status != 403:
            raise


def versions(cluster, name: str) -> List[int]:
    """The versions of `name` in the registry, ascending."""
    if not cluster.exists(f"/{REGISTRY_INDEX}"):
        return []
    _refresh(cluster)
    response = cluster.request("POST", f"/{REGISTRY_INDEX}/_search", {
        "size": 1000, "_source": ["version"], "query": {"term": {"name": name}}}, action="reading the model registry")
    return sorted(hit["_source"]["version"] for hit in response["hits"]["hits"])


def find_version(cluster, name: str, fingerprint: str) -> Optional[int]:
    """The newest version of `name` with this document fingerprint, or None."""
    if not cluster.exists(f"/{REGISTRY_INDEX}"):
        return None
    _refresh(cluster)
    response = cluster.request("POST", f"/{REGISTRY_INDEX}/_search", {
        "size": 1000, "_source": ["version"],
        "query": {"bool": {"filter": [{"term": {"name": name}}, {"term": {"fingerprint": fingerprint}}]}}},
        action="reading the model registry")
    found = [hit["_source"]["version"] for hit in response["hits"]["hits"]]
    return max(found) if found else None


def _files(folder: Path) -> List[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    refused = [p for p in files if p.suffix not in ALLOWED_SUFFIXES]
    if refused:
        raise ModelError(
            f"{folder}: only safetensors, JSON and text files go into the registry, found {refused[0].relative_to(folder)}"
        )
    return files


def _store(cluster, actions: List[bytes], what: str) -> None:
    """Index documents (NDJSON action pairs) with the ingest's retry rules; any rejection is an error."""
    for chunk in chunk_actions(actions, 500, request_bytes(cluster, 16 * 1024 * 1024)):
        for reason in send_chunk(cluster, [actions[i] for i in chunk], RetryPolicy(deadline=120)):
            if reason:
                raise RegistryError(f"storing {what} failed: {reason}")


def push(cluster, folder: Path, name: str, version: Optional[int] = None, base_model: Optional[str] = None,
         show_progress: bool = True) -> dict:
    """Store a model folder in the cluster as NAME@VERSION (the next version when None).

    Returns:
        The registry's metadata document.

    Raises:
        RegistryError: the version exists already (versions are never overwritten).
        ModelError: the folder is not a model, or holds files other than safetensors, JSON and text.
    """
    from splade_os.common.progress import bar
    from splade_os.query.encoder import QueryEncoder

    folder = Path(folder)
    name, _ = parse_ref(name)
    layout = read_layout(folder)
    queries = QueryEncoder.from_layout(layout, name)
    files = _files(folder)
    _ensure_index(cluster, REGISTRY_INDEX)
    _ensure_index(cluster, CHUNK_INDEX)
    existing = versions(cluster, name)
    if version is None:
        version = (existing[-1] + 1) if existing else 1
    elif version in existing:
        raise RegistryError(f"{name}@{version} is already in the registry; versions are never overwritten")
    ref = f"{name}@{version}"
    entries = []
    with bar(show_progress, total=sum(p.stat().st_size for p in files), unit="B", unit_scale=True,
             desc=f"push {ref}") as progress:
        for path in files:
            relative = path.relative_to(folder).as_posix()
            digest, actions = hashlib.sha256(), []
            with open(path, "rb") as f:
                for seq, data in enumerate(iter(lambda: f.read(CHUNK_BYTES), b"")):
                    digest.update(data)
                    actions.append(index_action(CHUNK_INDEX, f"{ref}/{relative}#{seq}", {
                        "name": name, "version": version, "path": relative, "seq": seq,
                        "sha256": hashlib.sha256(data).hexdigest(), "data": base64.b64encode(data).decode("ascii")}))
            _store(cluster, actions, f"{relative} of {ref}")
            progress.update(path.stat().st_size)
            entries.append({"path": relative, "size": path.stat().st_size, "sha256": digest.hexdigest(),
                            "chunks": len(actions)})
    store_query_side(cluster, queries)
    card = folder / "README.md"
    meta = {
        "name": name,
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": base_model or _base_model(layout),
        "hash": queries.hash,
        "fingerprint": document_fingerprint(layout, queries.hash),
        "pooling": {"strategy": layout.pooling_strategy, "activation": layout.activation_function},
        "max_length": queries.max_length,
        "document_max_length": max_length_of(layout.document_dir),
        "metrics": _card_metrics(card) if card.exists() else {},
        "files": entries,
        "query_side": {"index": QUERY_SIDE_INDEX, "id": queries.hash},
    }
    cluster.request("PUT", f"/{REGISTRY_INDEX}/_doc/{ref}", meta, params={"refresh": "true"},
                    action=f"writing the registry entry of {ref}")
    return meta


def _base_model(layout) -> str:
    config = layout.document_dir / "config.json"
    if config.exists():
        data = json.loads(config.read_text())
        return data.get("_name_or_path") or ",".join(data.get("architectures", []))
    return ""


def _card_metrics(card: Path) -> Dict[str, float]:
    """Metric values from a sentence-transformers model card's `model-index` section, if any."""
    metrics = {}
    for match in re.finditer(r"- type: ([\w@.-]+)\s*\n\s*value: ([0-9.eE+-]+)", card.read_text(encoding="utf-8")):
        try:
            metrics[match.group(1)] = float(match.group(2))
        except ValueError:
            continue
    return metrics


def metadata(cluster, name: str, version: Optional[int] = None) -> dict:
    """The registry document of NAME@VERSION (the latest version when None)."""
    if version is None:
        known = versions(cluster, name)
        if not known:
            raise RegistryError(f"model {name!r} is not in the registry of {cluster.url}; push it with `splade-os push`")
        version = known[-1]
    meta = _get(cluster, REGISTRY_INDEX, f"{name}@{version}")
    if meta is None:
        raise RegistryError(f"model {name}@{version} is not in the registry of {cluster.url}")
    return meta


def pull(cluster, ref: str, dest: Optional[Path] = None, show_progress: bool = True) -> Path:
    """Restore NAME[@VERSION] into a folder (default: the cache), verifying every chunk and file.

    A model already pulled into the cache (same name, version and fingerprint) is reused.

    Raises:
        RegistryError: missing version, missing chunk, or a checksum that does not match.
    """
    from splade_os.common.progress import bar

    name, version = parse_ref(ref)
    meta = metadata(cluster, name, version)
    ref = f"{name}@{meta['version']}"
    if dest is not None and Path(dest).exists() and any(Path(dest).iterdir()):
        raise RegistryError(f"{dest}: exists and is not empty; pull into a new folder")
    dest = Path(dest) if dest else cache_dir() / "models" / "registry" / f"{ref}-{meta['fingerprint'][:12]}"
    # The marker sits beside the folder so that the folder holds exactly the model's files.
    marker = dest.parent / (dest.name + ".complete")
    if dest.exists() and marker.exists():
        return dest
    with staged_dir(dest) as staging, bar(show_progress, total=sum(e["size"] for e in meta["files"]), unit="B",
                                          unit_scale=True, desc=f"pull {ref}") as progress:
        for entry in meta["files"]:
            relative = entry["path"]
            if not relative.endswith(ALLOWED_SUFFIXES) or ".." in Path(relative).parts or relative.startswith("/"):
                raise RegistryError(f"{ref}: refusing to write {relative!r} (only safetensors, JSON and text files)")
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with open(target, "wb") as out:
                for seq in range(entry["chunks"]):
                    data = _chunk(cluster, ref, relative, seq)
                    digest.update(data)
                    out.write(data)
                    progress.update(len(data))
            if digest.hexdigest() != entry["sha256"] or target.stat().st_size != entry["size"]:
                raise RegistryError(f"{ref}: {relative} does not match its checksum after download")
    marker.write_text(meta["fingerprint"])
    return dest


def _chunk(cluster, ref: str, relative: str, seq: int) -> bytes:
    source = _get(cluster, CHUNK_INDEX, f"{ref}/{relative}#{seq}")
    if source is None:
        raise RegistryError(f"{ref}: chunk {seq} of {relative} is missing from {CHUNK_INDEX}")
    data = base64.b64decode(source["data"])
    if hashlib.sha256(data).hexdigest() != source["sha256"]:
        raise RegistryError(f"{ref}: chunk {seq} of {relative} is corrupted (sha256 mismatch)")
    return data


def store_query_side(cluster, encoder) -> None:
    """Store a model's query side (tokenizer + table) under its hash, once; see the module docstring."""
    _ensure_index(cluster, QUERY_SIDE_INDEX)
    if _get(cluster, QUERY_SIDE_INDEX, encoder.hash) is not None:
        return
    document = query_side_document(encoder)
    cluster.request("PUT", f"/{QUERY_SIDE_INDEX}/_doc/{encoder.hash}", document, params={"refresh": "true"},
                    action="storing the model's query side")


def query_side(cluster, query_hash: str) -> Optional[Path]:
    """A folder with the query side stored under `query_hash` (cached by hash), or None if not stored.

    Searching needs no document weights: this reads one document of `splade-query-sides`.
    """
    import numpy as np
    from safetensors.numpy import save_file

    folder = cache_dir() / "query-sides" / query_hash
    if (folder / "model.safetensors").exists():
        return folder
    side = _get(cluster, QUERY_SIDE_INDEX, query_hash) if cluster.exists(f"/{QUERY_SIDE_INDEX}") else None
    if side is None:
        return None
    with staged_dir(folder, replace=False) as staging:
        (staging / "tokenizer.json").write_text(side["tokenizer_json"], encoding="utf-8")
        config = {"model_max_length": side["max_length"]} if side.get("max_length") else {}
        (staging / "tokenizer_config.json").write_text(json.dumps(config))
        table = np.frombuffer(base64.b64decode(side["query_table"]), dtype="<f4").astype(np.float32)
        save_file({"weight": table}, str(staging / "model.safetensors"))
    return folder
