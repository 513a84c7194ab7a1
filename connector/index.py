"""Creating splade-os indexes and checking that an index and a model belong together.

The index body comes from `mappings/index.json` and the ingest pipeline from
`pipelines/ingest.json`; both are templates whose "@name@" placeholders are filled in
from the model and the options. The index's `_meta` records the model, and its default
pipeline rejects any document encoded with another model, so an index fed by several
writers can never silently mix models.
"""

import json
import re
from pathlib import Path

from .client import cluster_error
from .errors import IndexStateError, ModelMismatchError
from .model import ModelIdentity

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS_DIR = ROOT / "mappings"
PIPELINES_DIR = ROOT / "pipelines"
_PLACEHOLDER = re.compile(r"@([a-z_]+)@")


def fill_template(template, values: dict):
    """Replace "@key@" placeholders inside every string of a JSON structure."""
    if isinstance(template, dict):
        return {fill_template(k, values): fill_template(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill_template(v, values) for v in template]
    if isinstance(template, str):
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    return template


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def pipeline_id(index: str) -> str:
    return f"splade-os-{index}"


def _values(index: str, identity: ModelIdentity, field: str, shards: int, replicas: int, refresh_interval: str):
    # Braces would be read as mustache templates inside the pipeline's messages and values.
    safe_name = identity.name.replace("{", "(").replace("}", ")")
    return {
        "shards": shards,
        "replicas": replicas,
        "refresh_interval": refresh_interval,
        "pipeline": pipeline_id(index),
        "field": field,
        "model_name": safe_name,
        "model_version": identity.version,
        "model_source": identity.source,
        "model_hash": identity.hash,
        "model_fingerprint": identity.fingerprint,
    }


def index_body(index: str, identity: ModelIdentity, field: str = "splade", shards: int = 1,
               replicas: int = 0, refresh_interval: str = "1s") -> dict:
    """The create-index body: settings, mapping and `_meta` for one model."""
    return fill_template(_load(MAPPINGS_DIR / "index.json"),
                         _values(index, identity, field, shards, replicas, refresh_interval))


def pipeline_body(index: str, identity: ModelIdentity, field: str = "splade") -> dict:
    """The ingest pipeline body for one index and model."""
    return fill_template(_load(PIPELINES_DIR / "ingest.json"), _values(index, identity, field, 1, 0, "1s"))


def init_index(client, url: str, index: str, identity: ModelIdentity, field: str = "splade",
               shards: int = 1, replicas: int = 0, refresh_interval: str = "1s") -> bool:
    """Create the index and its ingest pipeline; True when created, False when it already existed.

    An existing index must have been created for the same model (same fingerprint).

    Raises:
        ModelMismatchError: the index exists and holds another model's documents.
        IndexStateError: the index exists but was not created by splade-os.
    """
    from opensearchpy import exceptions as os_exc

    if client.indices.exists(index=index):
        meta = read_meta(client, url, index)
        check_identity(index, meta, identity.fingerprint, "fingerprint")
        return False
    try:
        client.ingest.put_pipeline(id=pipeline_id(index), body=pipeline_body(index, identity, field))
        client.indices.create(index=index, body=index_body(index, identity, field, shards, replicas, refresh_interval))
    except os_exc.RequestError as e:
        if getattr(e, "error", "") == "resource_already_exists_exception":
            return init_index(client, url, index, identity, field, shards, replicas, refresh_interval)
        raise cluster_error(e, url, f"creating index {index!r}") from None
    except os_exc.TransportError as e:
        raise cluster_error(e, url, f"creating index {index!r}") from None
    return True


def read_meta(client, url: str, index: str) -> dict:
    """The splade-os `_meta` of an index (`{"field": ..., "model": {...}}`).

    Raises:
        IndexStateError: the index does not exist, or was not created by splade-os.
    """
    from opensearchpy import exceptions as os_exc

    try:
        mappings = client.indices.get_mapping(index=index)
    except os_exc.NotFoundError:
        raise IndexStateError(f"index {index!r} does not exist; create it with `splade-os ingest` or `splade-os init`") from None
    except os_exc.TransportError as e:
        raise cluster_error(e, url, f"reading the mapping of {index!r}") from None
    # An alias may resolve to a concrete index with another name: take the only entry.
    for body in mappings.values():
        meta = body.get("mappings", {}).get("_meta", {}).get("splade_os")
        if meta:
            return meta
    raise IndexStateError(f"index {index!r} was not created by splade-os (no splade_os entry in its _meta)")


def check_identity(index: str, meta: dict, value: str, key: str = "hash") -> None:
    """Refuse a model whose hash (queries) or fingerprint (documents) differs from the index's."""
    model = meta.get("model", {})
    if model.get(key) != value:
        raise ModelMismatchError(
            f"index {index!r} was ingested with model {model.get('name')!r} ({key} {str(model.get(key))[:12]}), "
            f"not with the given model ({key} {value[:12]}); use the index's model or another index"
        )


def max_clause_count(client, default: int = 1024) -> int:
    """The cluster's `indices.query.bool.max_clause_count` (its default when unset)."""
    try:
        settings = client.cluster.get_settings(include_defaults=True, flat_settings=True)
    except Exception:  # a restricted user may not read cluster settings; the default is safe
        return default
    for scope in ("transient", "persistent", "defaults"):
        value = settings.get(scope, {}).get("indices.query.bool.max_clause_count")
        if value is not None:
            return int(value)
    return default
