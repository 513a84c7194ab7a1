"""Hybrid search: BM25 and SPLADE on the same index, fused on the client.

One `_msearch` request carries two searches of the same index: BM25
(`splade_os.query.bm25_body`, `multi_match` over the text fields) and the inference-free SPLADE
query (`splade_os.query.feature_query`, so the same code serves OpenSearch and Elasticsearch).
Their top `depth` hits are fused into one ranking:

- `rrf` (the default): reciprocal rank fusion, a document scores `sum over lists of
  2 * share / (rrf_k + rank)` (share: SPLADE's weight, BM25's 1 - weight; 0.5 each by default,
  which is the usual `1 / (rrf_k + rank)`); it depends on ranks only, not on how the two scores
  are scaled;
- `minmax`: each list's scores are rescaled to [0, 1] by its own minimum and maximum, and a
  document scores `weight * splade + (1 - weight) * bm25`, 0 for a list it is missing from.

Neither needs anything on the cluster (OpenSearch's `hybrid` query needs the neural-search plugin
and a search pipeline, Elasticsearch's `rrf` retriever a recent version and licence), and the
fusion takes one round trip. The default method and its settings were chosen by measurement
(docs/quality.md, benchmarks/bench_quality.py).

Example:
    >>> hits = index.search("what is lift?", k=10, hybrid=Hybrid())
    >>> bodies = index.hybrid_bodies("what is lift?", k=10)   # [BM25 body, SPLADE body]
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import orjson

from splade_os.common.errors import ClusterError, InputError

METHODS = ("minmax", "rrf")
# SPLADE's share when neither the call nor the index says: equal say for rrf, 0.4 measured for minmax.
DEFAULT_WEIGHT = {"rrf": 0.5, "minmax": 0.4}
DEFAULT_FIELDS = ("title", "text")


@dataclass(frozen=True)
class Hybrid:
    """How BM25 and SPLADE results are fused.

    A setting left None is the index's (`SpladeIndex.fusion`: what `calibrate_fusion` measured and
    recorded in its `_meta`), else the default: reciprocal rank fusion with k = 10 over the top 50
    of each list, equal say (docs/quality.md).

    Attributes:
        method: "rrf" (reciprocal rank fusion) or "minmax" (normalised weighted sum).
        weight: SPLADE's share (BM25 gets 1 - weight): of each list's reciprocal ranks with rrf
            (0.5: equal say), of the rescaled scores with minmax (default 0.4).
        depth: hits fetched from each list before fusing (at least the k asked for).
        rrf_k: the constant of reciprocal rank fusion (smaller: the top ranks count more).
        fields: the text fields BM25 searches; None: the index's title and text fields.
    """

    method: Optional[str] = None
    weight: Optional[float] = None
    depth: Optional[int] = None
    rrf_k: Optional[int] = None
    fields: Optional[Tuple[str, ...]] = None

    def __post_init__(self):
        if self.method is not None and self.method not in METHODS:
            raise InputError(f"hybrid method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.weight is not None and not 0.0 <= self.weight <= 1.0:
            raise InputError(f"hybrid weight {self.weight}: expected a number from 0 (BM25 only) to 1 (SPLADE only)")
        if (self.depth is not None and self.depth < 1) or (self.rrf_k is not None and self.rrf_k < 0):
            raise InputError(f"hybrid depth {self.depth} / rrf_k {self.rrf_k}: expected depth >= 1 and rrf_k >= 0")
        if self.fields is not None and not self.fields:
            raise InputError("hybrid fields: BM25 needs at least one text field")

    def resolved(self, base: Optional["Hybrid"] = None) -> "Hybrid":
        """Every setting filled: this one's, else `base`'s (an index's fusion; ignored when it is of
        another method), else the defaults."""
        method = self.method or (base.method if base is not None else None) or "rrf"
        if base is not None and (base.method or "rrf") != method:
            base = None
        given = {name: getattr(self, name) for name in ("weight", "depth", "rrf_k", "fields")}
        for name, value in given.items():
            if value is None and base is not None:
                given[name] = getattr(base, name)
        defaults = {"weight": DEFAULT_WEIGHT[method], "depth": 50, "rrf_k": 10}
        return Hybrid(method, **{name: defaults[name] if value is None and name in defaults else value
                                 for name, value in given.items()})

    def describe(self) -> str:
        """The fusion in words, e.g. "rrf k=10, SPLADE weight 0.5, top 50 of each list"."""
        f = self.resolved()
        return ((f"rrf k={f.rrf_k}" if f.method == "rrf" else "minmax") + f", SPLADE weight {f.weight:g}, "
                f"top {f.depth} of each list")

    def as_meta(self) -> dict:
        """The settings an index records (fields are the index's own, not recorded)."""
        return {"method": self.method, "weight": self.weight, "depth": self.depth, "rrf_k": self.rrf_k}

    @classmethod
    def from_meta(cls, meta: Optional[dict]) -> Optional["Hybrid"]:
        """The fusion an index recorded (None when it recorded none)."""
        if not meta:
            return None
        return cls(**{name: meta.get(name) for name in ("method", "weight", "depth", "rrf_k")})


def msearch_payload(index: Optional[str], bodies: Sequence[dict]) -> bytes:
    """The NDJSON body of one `_msearch` request running every body against `index`.

    With no index the headers are `{}`: the request then goes to `POST /<index>/_msearch`.
    """
    header = orjson.dumps({"index": index} if index else {})
    return b"".join(header + b"\n" + orjson.dumps(body) + b"\n" for body in bodies)


def hit_lists(answer: dict, index: str, searches: Optional[int] = None) -> List[List[dict]]:
    """`hits.hits` of each search in an `_msearch` answer; a failed search raises, and so does an
    answer with other than `searches` responses (when given)."""
    lists = []
    for response in answer.get("responses", []):
        if "error" in response:
            error = response["error"]
            reason = error.get("reason") or error.get("type") if isinstance(error, dict) else error
            raise ClusterError(f"a search of {index!r} failed (HTTP {response.get('status')}: {reason})",
                               status=response.get("status"))
        lists.append(response["hits"]["hits"])
    if searches is not None and len(lists) != searches:
        raise ClusterError(f"_msearch on {index!r} answered {len(lists)} searches for {searches}")
    return lists


def minmax_scores(hits: List[dict]) -> Dict[str, float]:
    """{_id: score scaled to [0, 1] within the list} of a hit list."""
    if not hits:
        return {}
    scores = [float(h["_score"]) for h in hits]
    low, high = min(scores), max(scores)
    # A list whose scores are all equal ranks nothing above anything else: all 1.
    return {h["_id"]: (s - low) / (high - low) if high > low else 1.0 for h, s in zip(hits, scores)}


def fuse(bm25_hits: List[dict], splade_hits: List[dict], hybrid: Hybrid, k: int) -> List[Tuple[dict, float]]:
    """The top `k` (hit, fused score) of two hit lists, best first; ties by document id.

    Args:
        bm25_hits, splade_hits: `hits.hits` of the two searches (best first).
        hybrid: the fusion settings.
        k: hits to return.
    """
    hybrid = hybrid.resolved()
    first: Dict[str, dict] = {}
    for hit in splade_hits + bm25_hits:  # either copy carries the same _source
        first.setdefault(hit["_id"], hit)
    scores: Dict[str, float] = dict.fromkeys(first, 0.0)
    if hybrid.method == "rrf":
        # Weighted reciprocal ranks, doubled so that equal say (0.5) is the usual 1 / (k + rank).
        for hits, share in ((bm25_hits, 1.0 - hybrid.weight), (splade_hits, hybrid.weight)):
            for rank, hit in enumerate(hits, 1):
                scores[hit["_id"]] += 2.0 * share / (hybrid.rrf_k + rank)
    else:
        for hits, share in ((bm25_hits, 1.0 - hybrid.weight), (splade_hits, hybrid.weight)):
            for doc_id, score in minmax_scores(hits).items():
                scores[doc_id] += share * score
    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
    return [(first[doc_id], score) for doc_id, score in best]
