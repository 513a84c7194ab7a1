"""The model registry inside the cluster: `push` a model folder, `pull` it back byte-identical.

Two indexes hold it:

- `splade-models` (the registry): one document per version, `_id` = "NAME@VERSION", with the
  metadata (name, version, created, base model, hash, fingerprint, pooling, max length,
  metrics from the model card), the list of files with their sizes and sha256, and the
  query side in a form any app can read without this package: the tokenizer (`tokenizer.json`
  text) and the query table (`query_table`: float32 little-endian, base64).
- `splade-models-chunks`: every file of the model folder in chunks of at most 4 MiB, each with
  its sha256 (`_id` = "NAME@VERSION/path#seq").

The metadata document is written last, so a version is visible only once all its chunks
are stored. Only safetensors, JSON and text files are pushed or written back: nothing a
model is loaded from can run code (no pickles).
"""

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .client import cluster_error
from .errors import ModelError, RegistryError
from .local_node import cache_dir

REGISTRY_INDEX = "splade-models"
CHUNK_INDEX = "splade-models-chunks"
CHUNK_BYTES = 4 * 1024 * 1024
ALLOWED_SUFFIXES = (".safetensors", ".json", ".txt", ".md", ".model")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")

_REGISTRY_MAPPING = {
    "mappings": {
        "dynamic": False,
        "properties": {
            "name": {"type": "keyword"},
            "version": {"type": "integer"},
            "created": {"type": "date"},
            "base_model": {"type": "keyword"},
            "hash": {"type": "keyword"},
            "fingerprint": {"type": "keyword"},
        },
    }
}
_CHUNK_MAPPING = {
    "mappings": {
        "dynamic": False,
        "properties": {
            "name": {"type": "keyword"},
            "version": {"type": "integer"},
            "path": {"type": "keyword"},
            "seq": {"type": "integer"},
            "sha256": {"type": "keyword"},
            "data": {"type": "binary"},
        },
    }
}


def parse_ref(ref: str) -> Tuple[str, Optional[int]]:
    """"name" or "name@3" -> (name, version or None)."""
    name, _, version = ref.partition("@")
    if not NAME_RE.match(name):
        raise RegistryError(f"{ref!r}: a registry model name is lower-case letters, digits, '.', '_' or '-'")
    if version and not version.isdigit():
        raise RegistryError(f"{ref!r}: the version after '@' must be a whole number")
    return name, int(version) if version else None


def _files(folder: Path) -> List[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    refused = [p for p in files if p.suffix not in ALLOWED_SUFFIXES]
    if refused:
        raise ModelError(
            f"{folder}: only safetensors, JSON and text files go into the registry, found {refused[0].relative_to(folder)}"
        )
    return files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ensure_indexes(client, url: str) -> None:
    from opensearchpy import exceptions as os_exc

    for index, body in ((REGISTRY_INDEX, _REGISTRY_MAPPING), (CHUNK_INDEX, _CHUNK_MAPPING)):
        try:
            if not client.indices.exists(index=index):
                client.indices.create(index=index, body=body)
        except os_exc.RequestError as e:
            if getattr(e, "error", "") != "resource_already_exists_exception":
                raise cluster_error(e, url, f"creating {index!r}") from None


def versions(client, url: str, name: str) -> List[int]:
    """The versions of `name` in the registry, ascending."""
    from opensearchpy import exceptions as os_exc

    if not client.indices.exists(index=REGISTRY_INDEX):
        return []
    try:
        client.indices.refresh(index=REGISTRY_INDEX)
        response = client.search(index=REGISTRY_INDEX, body={
            "size": 1000, "_source": ["version"], "query": {"term": {"name": name}}})
    except os_exc.TransportError as e:
        raise cluster_error(e, url, "reading the model registry") from None
    return sorted(hit["_source"]["version"] for hit in response["hits"]["hits"])


def push(client, url: str, folder: Path, name: str, version: Optional[int] = None,
         base_model: Optional[str] = None, show_progress: bool = True) -> dict:
    """Store a model folder in the cluster as NAME@VERSION (the next version when None).

    Returns the metadata document.
    """
    from opensearchpy import helpers

    from .model import model_identity, read_layout
    from .progress import bar
    from .query import QueryEncoder

    folder = Path(folder)
    name, _ = parse_ref(name)
    layout = read_layout(folder, name=name)
    queries = QueryEncoder(layout)
    files = _files(folder)
    _ensure_indexes(client, url)
    existing = versions(client, url, name)
    if version is None:
        version = (existing[-1] + 1) if existing else 1
    elif version in existing:
        raise RegistryError(f"{name}@{version} is already in the registry; versions are never overwritten")
    ref = f"{name}@{version}"
    identity = model_identity(layout, queries.hash, f"cluster:{ref}", version=str(version))

    entries = []
    total = sum(p.stat().st_size for p in files)
    progress = bar(show_progress, total=total, unit="B", unit_scale=True, desc=f"push {ref}")

    def actions():
        for path in files:
            relative = path.relative_to(folder).as_posix()
            digest = hashlib.sha256()
            seq = 0
            with open(path, "rb") as f:
                for data in iter(lambda: f.read(CHUNK_BYTES), b""):
                    digest.update(data)
                    yield {"_index": CHUNK_INDEX, "_id": f"{ref}/{relative}#{seq}", "_source": {
                        "name": name, "version": version, "path": relative, "seq": seq,
                        "sha256": _sha256(data), "data": base64.b64encode(data).decode("ascii")}}
                    progress.update(len(data))
                    seq += 1
            entries.append({"path": relative, "size": path.stat().st_size, "sha256": digest.hexdigest(), "chunks": seq})

    with progress:
        for ok, item in helpers.streaming_bulk(client, actions(), chunk_size=4, max_chunk_bytes=40 * 1024 * 1024,
                                               max_retries=3, raise_on_error=False):
            if not ok:
                raise RegistryError(f"storing a chunk of {ref} failed: {item}")
    card = folder / "README.md"
    meta = {
        "name": name,
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": base_model or _base_model(folder),
        "hash": identity.hash,
        "fingerprint": identity.fingerprint,
        "pooling": {"strategy": layout.pooling_strategy, "activation": layout.activation_function},
        "max_length": queries.max_length,
        "document_max_length": _document_max_length(layout),
        "metrics": _card_metrics(card) if card.exists() else {},
        "files": entries,
        "query_side": {
            "tokenizer_json": layout.tokenizer_file.read_text(encoding="utf-8"),
            "query_table": base64.b64encode(queries.table.astype("<f4").tobytes()).decode("ascii"),
            "query_table_format": "float32 little-endian, one weight per token id, base64",
            "key_escape": "'%' -> '%25', then '.' -> '%2E'",
        },
    }
    client.index(index=REGISTRY_INDEX, id=ref, body=meta, refresh=True)
    return meta


def _base_model(folder: Path) -> str:
    config = folder / "document_0_Transformer" / "config.json"
    if config.exists():
        data = json.loads(config.read_text())
        return data.get("_name_or_path") or ",".join(data.get("architectures", []))
    return ""


def _document_max_length(layout) -> Optional[int]:
    from .model import max_length_of

    return max_length_of(layout.document_dir)


def _card_metrics(card: Path) -> Dict[str, float]:
    """Metric values from a sentence-transformers model card's `model-index` section, if any."""
    metrics = {}
    for match in re.finditer(r"- type: ([\w@.-]+)\s*\n\s*value: ([0-9.eE+-]+)", card.read_text(encoding="utf-8")):
        try:
            metrics[match.group(1)] = float(match.group(2))
        except ValueError:
            continue
    return metrics


def metadata(client, url: str, name: str, version: Optional[int] = None) -> dict:
    """The registry document of NAME@VERSION (the latest version when None)."""
    from opensearchpy import exceptions as os_exc

    if version is None:
        known = versions(client, url, name)
        if not known:
            raise RegistryError(f"model {name!r} is not in the registry of {url}; push it with `splade-os push`")
        version = known[-1]
    try:
        return client.get(index=REGISTRY_INDEX, id=f"{name}@{version}")["_source"]
    except os_exc.NotFoundError:
        raise RegistryError(f"model {name}@{version} is not in the registry of {url}") from None


def pull(client, url: str, ref: str, dest: Optional[Path] = None, show_progress: bool = True) -> Path:
    """Restore NAME[@VERSION] into a folder (default: the cache), verifying every chunk and file.

    A model already in the cache with the same fingerprint is reused without downloading.

    Raises:
        RegistryError: missing version, missing chunk, or a checksum that does not match.
    """
    from .progress import bar

    name, version = parse_ref(ref)
    meta = metadata(client, url, name, version)
    ref = f"{name}@{meta['version']}"
    if dest is not None and Path(dest).exists() and any(Path(dest).iterdir()):
        raise RegistryError(f"{dest}: exists and is not empty; pull into a new folder")
    dest = Path(dest) if dest else cache_dir() / "models" / "registry" / f"{ref}-{meta['fingerprint'][:12]}"
    # The marker sits beside the folder so that the folder holds exactly the model's files.
    marker = dest.parent / (dest.name + ".complete")
    if dest.exists() and marker.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=dest.parent))
    try:
        total = sum(entry["size"] for entry in meta["files"])
        with bar(show_progress, total=total, unit="B", unit_scale=True, desc=f"pull {ref}") as progress:
            for entry in meta["files"]:
                relative = entry["path"]
                if not relative.endswith(ALLOWED_SUFFIXES) or ".." in Path(relative).parts or relative.startswith("/"):
                    raise RegistryError(f"{ref}: refusing to write {relative!r} (only safetensors, JSON and text files)")
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with open(target, "wb") as out:
                    for seq in range(entry["chunks"]):
                        data = _chunk(client, url, ref, relative, seq)
                        digest.update(data)
                        out.write(data)
                        progress.update(len(data))
                if digest.hexdigest() != entry["sha256"] or target.stat().st_size != entry["size"]:
                    raise RegistryError(f"{ref}: {relative} does not match its checksum after download")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
        marker.write_text(meta["fingerprint"])
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _chunk(client, url: str, ref: str, relative: str, seq: int) -> bytes:
    from opensearchpy import exceptions as os_exc

    chunk_id = f"{ref}/{relative}#{seq}"
    try:
        source = client.get(index=CHUNK_INDEX, id=chunk_id)["_source"]
    except os_exc.NotFoundError:
        raise RegistryError(f"{ref}: chunk {seq} of {relative} is missing from {CHUNK_INDEX}") from None
    except os_exc.TransportError as e:
        raise cluster_error(e, url, f"reading chunk {chunk_id}") from None
    data = base64.b64decode(source["data"])
    if _sha256(data) != source["sha256"]:
        raise RegistryError(f"{ref}: chunk {seq} of {relative} is corrupted (sha256 mismatch)")
    return data


def query_side(client, url: str, ref: str) -> Path:
    """A folder with only the query side of NAME[@VERSION] (tokenizer + table), cached by hash.

    Searching needs no document weights: this reads the registry document alone.
    """
    import numpy as np
    from safetensors.numpy import save_file

    name, version = parse_ref(ref)
    meta = metadata(client, url, name, version)
    folder = cache_dir() / "query-tables" / meta["hash"]
    if (folder / "model.safetensors").exists():
        return folder
    staging = Path(tempfile.mkdtemp(prefix=".query-", dir=cache_dir()))
    try:
        side = meta["query_side"]
        (staging / "tokenizer.json").write_text(side["tokenizer_json"], encoding="utf-8")
        max_length = meta.get("max_length")
        (staging / "tokenizer_config.json").write_text(json.dumps({"model_max_length": max_length or 10**30}))
        table = np.frombuffer(base64.b64decode(side["query_table"]), dtype="<f4").astype(np.float32)
        save_file({"weight": table}, str(staging / "model.safetensors"))
        folder.parent.mkdir(parents=True, exist_ok=True)
        if not folder.exists():
            os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return folder
