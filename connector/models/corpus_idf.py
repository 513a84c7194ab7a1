"""The default model's query table rebuilt from the user's corpus (`ingest --idf-from-corpus`).

The bundled default model weighs query tokens by their IDF over the bundled Cranfield sample,
which says nothing about another corpus (a "?" weighs as much as a rare word there). This
module builds, from any model's document route, a model whose query table is the IDF of the
corpus being ingested, and stores it in the cluster's registry, so that `search`, other
machines and apps use the same table (measured in docs/quality.md).
"""

import hashlib
from pathlib import Path

from splade_os.common.cache import cache_dir
from splade_os.formats.identity import document_fingerprint, vocabulary_hash
from splade_os.common.errors import ModelError
from splade_os.formats.layout import PICKLED_WEIGHTS, max_length_of, read_layout
from splade_os.models.resolve import Model, resolve_model
from splade_os.models.builder import build_model, idf_weights, sample_texts
from splade_os.common.progress import note
from splade_os.models.registry import find_version, parse_ref, push


def corpus_idf_model(cluster, corpus: Path, name: str, base=None, fields=None, show_progress: bool = True):
    """A model whose query table is the IDF of `corpus`, stored in the cluster's registry as `name`.

    The document route (weights, pooling, length) is `base`'s (the default model when None); the
    query table is `idf_weights` over the corpus's documents, read as ingest reads them. The model
    is built once into the cache and pushed as the next version of `name`, unless a version with
    the same fingerprint is there already; every machine and app then gets it from the registry
    (`search` reads its query side by hash).

    Args:
        cluster: the `splade_os.cluster.Cluster` whose registry stores the model.
        corpus: the JSONL corpus (the one being ingested).
        name: the registry name (e.g. "<index>-idf").
        base: the `splade_os.models.resolve.Model` whose document route is kept.
        fields: the corpus's `splade_os.corpus.CorpusFields`.

    Returns:
        The `splade_os.models.resolve.Model` "cluster:NAME@VERSION".
    """
    name, _ = parse_ref(name)
    base = base or resolve_model(None, cluster, show_progress)
    if base.layout.pickled_weights and not base.allow_pickle:
        raise ModelError(f"{base.layout.document_dir}: the weights exist only as {PICKLED_WEIGHTS}, a pickle; "
                         "pass --allow-pickle to re-save them as safetensors for the corpus's model")
    encoder = base.query_encoder
    note(show_progress, f"Counting document frequencies in {corpus}...")
    table = idf_weights(sample_texts(Path(corpus), fields), base.layout.tokenizer_file, len(encoder.tokens))
    query_hash = vocabulary_hash(encoder.tokens, table)
    key = hashlib.sha256(f"{base.identity.fingerprint}/{query_hash}".encode()).hexdigest()[:16]
    folder = cache_dir() / "models" / "corpus-idf" / f"{name}-{key}"
    if not (folder / "modules.json").exists():
        note(show_progress, f"Building {name} (the document route of {base.name} + the corpus's IDF)...")
        layout = base.layout
        build_model(str(layout.document_dir), folder, query_weights=table,
                    max_seq_length=max_length_of(layout.document_dir), activation_function=layout.activation_function,
                    pooling_strategy=layout.pooling_strategy)
    fingerprint = document_fingerprint(read_layout(folder), query_hash)
    version = find_version(cluster, name, fingerprint)
    if version is None:
        version = push(cluster, folder, name, base_model=base.source, show_progress=show_progress)["version"]
        note(show_progress, f"Pushed {name}@{version} to the registry of {cluster.url}")
    # The registry's copy has this folder's fingerprint: use the folder rather than pull it back.
    return Model(read_layout(folder), name, f"cluster:{name}@{version}", str(version))
