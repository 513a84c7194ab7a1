"""Shared pieces of benchmarks/bench_quality.py: collections, cached document vectors, index variants.

Encoding a collection on the shared 2-core CPU takes minutes, and every index variant of one
collection holds the same model's vectors (pruning, `_source` and the query table change
what is stored or how queries are weighted, not what the encoder computes). So each collection
is encoded once per encoder setting, the vectors are kept in the cache folder, and index
variants are built by the library's own `ingest` with a `CachedEncoder` that hands back those
vectors instead of running the network: the ingest path (pruning, bulk requests, pipeline)
is the real one.
"""

import hashlib
import json
import time
from pathlib import Path
from typing import Dict

import numpy as np

from splade_os.corpus.beir import load_beir
from splade_os.common.cache import cache_dir
from splade_os.documents.encoder import SparseVector
from splade_os.evaluate import exact_doc_vectors

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = {"cranfield": Path("/work/shared/data/cranfield"), "vaswani": Path("/work/shared/data/vaswani")}
if not COLLECTIONS["cranfield"].exists():  # elsewhere: the bundled copy of Cranfield only
    COLLECTIONS = {"cranfield": ROOT / "connector" / "data" / "cranfield"}


def collection(name: str):
    """(queries, qrels, corpus path) of a bundled collection."""
    return load_beir(COLLECTIONS[name], "test")


def _vector_file(name: str, model, tag: str) -> Path:
    key = hashlib.sha256(f"{model.identity.fingerprint}/{tag}".encode()).hexdigest()[:16]
    return cache_dir() / "bench-vectors" / f"{name}-{tag}-{key}.npz"


def save_vectors(path: Path, vectors: Dict[str, SparseVector]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc_ids = list(vectors)
    lengths = np.array([len(vectors[d].ids) for d in doc_ids], dtype=np.int64)
    np.savez(path, doc_ids=np.array(doc_ids), indptr=np.concatenate([[0], np.cumsum(lengths)]),
             ids=np.concatenate([vectors[d].ids for d in doc_ids]).astype(np.int64),
             values=np.concatenate([vectors[d].values for d in doc_ids]).astype(np.float32))


def load_vectors(path: Path) -> Dict[str, SparseVector]:
    data = np.load(path)
    indptr, ids, values = data["indptr"], data["ids"], data["values"]
    return {str(d): SparseVector(ids[indptr[i]:indptr[i + 1]], values[indptr[i]:indptr[i + 1]])
            for i, d in enumerate(data["doc_ids"])}


def cached_vectors(name: str, model, tag: str = "truncate", **encode_args):
    """Document vectors of a collection (encoded once, then read from the cache) and encode seconds."""
    path = _vector_file(name, model, tag)
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return load_vectors(path), json.loads(meta.read_text())["seconds"]
    started = time.perf_counter()
    vectors = exact_doc_vectors(collection(name)[2], model, device="cpu", show_progress=True, **encode_args)
    seconds = time.perf_counter() - started
    save_vectors(path, vectors)
    meta.write_text(json.dumps({"seconds": seconds, "docs": len(vectors)}))
    return vectors, seconds


class CachedEncoder:
    """Stands in for a `DocumentEncoder` in `ingest`: returns stored vectors by document id."""

    def __init__(self, vectors: Dict[str, SparseVector], vocab_size: int):
        self.vectors = vectors
        self.vocab_size = vocab_size
        self.window = 1024
        self.documents = 0

    def encode_stream(self, windows, on_batch=None):
        empty = SparseVector(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        for payload, texts in windows:
            docs = payload[0]
            self.documents += len(docs)
            if on_batch:
                on_batch(len(docs))
            yield payload, [self.vectors.get(d.id, empty) for d in docs]


def settle(cluster, index: str, model, timeout: float = 120.0) -> None:
    """Force-merge to one segment once the shard no longer retains its operations' `_recovery_source`.

    With part of `_source` excluded, Lucene keeps a `_recovery_source` copy of every document
    until the shard's peer-recovery retention lease has moved past it (it is renewed every 30 s);
    a merge after that drops it, which is the size the index has once it has merged in normal use.
    A merge needs two segments: one throw-away document is indexed and deleted first.
    """
    def leases_caught_up() -> bool:
        stats = cluster.request("GET", f"/{index}/_stats/docs", params={"level": "shards"})
        shards = next(iter(stats["indices"].values()))["shards"]
        for copies in shards.values():
            for shard in copies:
                top = shard["seq_no"]["max_seq_no"]
                leases = shard["retention_leases"]["leases"]
                if not leases or min(lease["retaining_seq_no"] for lease in leases) <= top:
                    return False
        return True

    cluster.request("POST", f"/{index}/_refresh")
    first = cluster.request("POST", f"/{index}/_search", {"size": 1, "_source": True})["hits"]["hits"][0]
    source = {k: v for k, v in first["_source"].items() if k not in ("splade_model", "ingested_at")}
    meta = cluster.index(index).meta
    field = meta.get("field", "splade")
    if field not in source:  # features left out of _source: any valid feature will do
        source[field] = {"a": 1.0}
    if meta.get("pipeline"):
        source["splade_fingerprint"] = model.identity.fingerprint
    cluster.request("PUT", f"/{index}/_doc/bench-merge-trigger", source, params={"refresh": "true"})
    cluster.request("DELETE", f"/{index}/_doc/bench-merge-trigger", params={"refresh": "true"})
    cluster.request("POST", f"/{index}/_flush")
    deadline = time.monotonic() + timeout
    while not leases_caught_up() and time.monotonic() < deadline:
        time.sleep(2)
        cluster.request("POST", f"/{index}/_flush")
    cluster.request("POST", f"/{index}/_forcemerge", params={"max_num_segments": "1"})
    cluster.request("POST", f"/{index}/_flush")
    cluster.request("POST", f"/{index}/_refresh")


def store_bytes(cluster, index: str) -> int:
    stats = cluster.request("GET", f"/{index}/_stats/store")
    return int(next(iter(stats["indices"].values()))["primaries"]["store"]["size_in_bytes"])


def machine() -> str:
    import os
    import platform

    model = platform.processor()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"
