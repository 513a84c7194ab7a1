"""Which model? The one module that turns a model name into a `Model`, for every source.

- None or "default": the bundled default model (built into the cache on first use);
- an existing folder (or a path starting with ".", "/" or "~"): used as it is;
- "cluster:NAME[@VERSION]", or "NAME@VERSION": a model stored in the cluster's registry
  (`splade-os push`), pulled into the cache; this needs a cluster and is never guessed from a
  bare name, so resolving a name sends no request unless it says so;
- anything else: a model hub id, downloaded with huggingface_hub (needs the hub).

An index's own model is found from its `_meta`: `SpladeIndex.query_encoder()` reads only the query
side (by hash, from the cluster), `model_of_index` the whole model (for encoding).
"""

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from splade_os.common.errors import ModelError
from splade_os.formats.identity import ModelIdentity, document_fingerprint
from splade_os.formats.layout import ModelLayout, read_layout

DEFAULT = "default"
_REGISTRY_REF = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}@[0-9]+$")


@dataclass
class Model:
    """A resolved inference-free SPLADE model: its files, and how it is named.

    Attributes:
        layout: where its query table, tokenizer and document route are.
        name: a short name ("splade-os-default", the registry name, the folder name).
        source: how to find it again: "default", a folder path, a hub id, "cluster:NAME@VERSION".
        version: the registry version; None: the index records a version derived from the fingerprint.
        allow_pickle: the document encoder may load `pytorch_model.bin` when there are no
            safetensors weights (unpickling can run code: only for a model you trust).
    """

    layout: ModelLayout
    name: str
    source: str
    version: Optional[str] = None
    allow_pickle: bool = False  # may the document encoder load weights that exist only as a pickle

    @property
    def root(self) -> Path:
        return self.layout.root

    @functools.cached_property
    def query_encoder(self):
        """The model's `QueryEncoder` (tokenizer + static table), built once."""
        from splade_os.query.encoder import QueryEncoder

        return QueryEncoder.from_layout(self.layout, self.name)

    @functools.cached_property
    def identity(self) -> ModelIdentity:
        """Name, version, source, query hash and document fingerprint, as an index records them."""
        query_hash = self.query_encoder.hash
        fingerprint = document_fingerprint(self.layout, query_hash)
        return ModelIdentity(self.name, self.version or fingerprint[:12], self.source, query_hash, fingerprint)


def is_registry_ref(spec: str) -> bool:
    """Whether `spec` names a registry model ("cluster:NAME[@VERSION]" or "NAME@VERSION")."""
    return spec.startswith("cluster:") or bool(_REGISTRY_REF.match(spec))


def resolve_model(spec: Optional[str] = None, cluster=None, show_progress: bool = True,
                  allow_pickle: bool = False) -> Model:
    """Turn what a user passed as `--model` into a `Model` (see the module docstring for the forms).

    Args:
        spec: the model's name, folder, hub id or registry reference; None means the default.
        cluster: the `Cluster` whose registry holds "cluster:" models.
        show_progress: notes and bars on stderr while building, pulling or downloading.
        allow_pickle: allow document weights that exist only as `pytorch_model.bin` (see `Model`).

    Raises:
        ModelError: the folder is not a model, the registry has no such model, or no cluster was given.
        MissingExtraError: the default model is not built yet and the `encode` extra is missing.
    """
    if spec in (None, "", DEFAULT):
        from splade_os.models.builder import ensure_default_model

        return Model(read_layout(ensure_default_model(show_progress=show_progress)), "splade-os-default", DEFAULT)
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        return Model(read_layout(path), path.resolve().name, str(path.resolve()), allow_pickle=allow_pickle)
    if is_registry_ref(spec):
        from splade_os.models.registry import metadata, parse_ref, pull

        if cluster is None:
            raise ModelError(f"{spec}: a registry model needs a cluster (--url)")
        name, version = parse_ref(spec[len("cluster:"):] if spec.startswith("cluster:") else spec)
        meta = metadata(cluster, name, version)
        ref = f"{name}@{meta['version']}"
        folder = pull(cluster, ref, show_progress=show_progress)
        return Model(read_layout(folder), name, f"cluster:{ref}", str(meta["version"]))
    return Model(read_layout(_download_from_hub(spec, allow_pickle)), spec, spec, allow_pickle=allow_pickle)


def model_of_index(index, spec: Optional[str] = None, show_progress: bool = True, allow_pickle: bool = False) -> Model:
    """The whole model (document route included) to encode for `index`: `spec`, else the index's own.

    Raises:
        ModelMismatchError: `spec` is another model than the index's.
    """
    model = resolve_model(spec if spec is not None else index.model["source"], index.cluster, show_progress,
                          allow_pickle)
    index.check_fingerprint(model.identity.fingerprint)
    return model


def _download_from_hub(model_id: str, allow_pickle: bool = False) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelError(f"{model_id}: not a local folder, and huggingface_hub is not installed") from None
    patterns = ["*.json", "*.safetensors", "*.txt", "*.md"] + (["pytorch_model.bin"] if allow_pickle else [])
    try:
        return Path(snapshot_download(model_id, allow_patterns=patterns))
    except Exception as e:  # the hub client raises many kinds; all mean the same to the user
        raise ModelError(
            f"{model_id}: not a local folder and could not be fetched from the model hub "
            f"({type(e).__name__}); pass a local model folder with --model"
        ) from None
