"""Setting an index's hybrid fusion from the index itself, without judged queries.

Reciprocal rank fusion with equal say gains where BM25 and SPLADE are of similar quality, and
drags the better one down where SPLADE is much weaker (a small model on a domain unlike its
training data, documents pruned hard). Which case an index is in can be measured without labels:
documents sampled from the index give self-supervised queries (a random span of a document's
words, as the trainer's "ict" pairs are made), each with one known answer, its document; both
rankers search for it and the mean reciprocal rank (MRR@10) of that document is taken for each.

Known-item queries copied from the text favour BM25 (exact words), so their MRRs are not compared
as they are: SPLADE's over BM25's (the ratio) was 0.80-0.89 on every index where SPLADE was as
good as BM25 or better on judged queries, and 0.29-0.36 where equal say lost to BM25
(docs/quality.md). SPLADE keeps equal say (weight 0.5) at a ratio of 0.7 or more; below, its
weight falls linearly, to 0.1 at a ratio of 0.1 or less (where its top hits cannot displace
BM25's top ten).

The result is recorded in the index's `_meta` (`SpladeIndex.record_fusion`), so `search --hybrid`,
`eval --hybrid`, `query --hybrid` and the inspection page use it (`SpladeIndex.fusion`).

Example:
    >>> calibration = index.calibrate_fusion()      # measured and recorded
    >>> calibration.hybrid
    Hybrid(method='rrf', weight=0.5, depth=50, rrf_k=10, fields=None)
"""

import random
import statistics
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from splade_os.common.errors import InputError
from splade_os.query.hybrid import Hybrid, hit_lists
from splade_os.query.options import SearchOptions

EQUAL_SAY_RATIO = 0.7  # SPLADE's MRR over BM25's on span queries at which SPLADE keeps equal say
NO_SAY_RATIO = 0.1  # ...and at which its weight reaches the floor
MIN_WEIGHT = 0.1
SAMPLES = 300
QUERY_WORDS = (4, 12)  # a span this many words long, like a short real query
MIN_WORDS = 16  # shorter documents give no query
BATCH = 50  # queries per _msearch request (two searches each)


@dataclass
class FusionCalibration:
    """What `calibrate_fusion` measured.

    Attributes:
        hybrid: the fusion chosen (rrf, its k and depth, and SPLADE's weight).
        queries: self-supervised queries measured.
        mrr: {"bm25": ..., "splade": ...}: mean reciprocal rank (within the top 10) of each
            query's own document.
        seed: the sampling seed.
    """

    hybrid: Hybrid
    queries: int
    mrr: Dict[str, float] = field(default_factory=dict)
    seed: int = 42

    @property
    def ratio(self) -> float:
        """SPLADE's MRR over BM25's."""
        return self.mrr["splade"] / self.mrr["bm25"] if self.mrr["bm25"] > 0 else 1.0

    def as_meta(self) -> dict:
        return {**self.hybrid.as_meta(), "calibration": {"queries": self.queries, "seed": self.seed,
                                                         "mrr": {k: round(v, 4) for k, v in self.mrr.items()}}}

    def describe(self) -> str:
        return (f"fusion {self.hybrid.describe()} (from {self.queries} queries made from the index's documents: "
                f"MRR@10 BM25 {self.mrr['bm25']:.3f}, SPLADE {self.mrr['splade']:.3f})")


def weight_for(ratio: float) -> float:
    """SPLADE's weight for a ratio of SPLADE's MRR to BM25's (see the module docstring)."""
    share = (ratio - NO_SAY_RATIO) / (EQUAL_SAY_RATIO - NO_SAY_RATIO)
    return round(max(MIN_WEIGHT, 0.5 * min(1.0, share)), 2)


def span_query(doc_id: str, text: str, seed: int) -> Optional[str]:
    """A self-supervised query of a document: a random span of its words, query-sized (None for a
    document too short). Seeded by the document id, so the same on every run."""
    words = text.split()
    if len(words) < MIN_WORDS:
        return None
    rng = random.Random(zlib.crc32(doc_id.encode("utf-8")) ^ seed)
    length = rng.randint(*QUERY_WORDS)
    start = rng.randrange(0, len(words) - length + 1)
    return " ".join(words[start:start + length])


def sample_documents(index, n: int, seed: int) -> List[Tuple[str, str]]:
    """(id, title + text) of up to `n` documents of the index, drawn at random (seeded)."""
    body = {"size": n, "_source": [index.title_field, index.text_field], "track_total_hits": False,
            "query": {"function_score": {"query": {"match_all": {}},
                                         "random_score": {"seed": seed, "field": "_seq_no"}}}}
    docs = []
    for hit in index.request_search(body)["hits"]["hits"]:
        source = hit.get("_source") or {}
        parts = [source.get(index.title_field), source.get(index.text_field)]
        docs.append((hit["_id"], " ".join(p for p in parts if isinstance(p, str) and p)))
    return docs


def reciprocal_rank(doc_id: str, ranked: Sequence[str], cutoff: int = 10) -> float:
    for rank, other in enumerate(ranked[:cutoff], 1):
        if other == doc_id:
            return 1.0 / rank
    return 0.0


def calibrate_fusion(index, encoder=None, samples: int = SAMPLES, seed: int = 42,
                     base: Optional[Hybrid] = None) -> FusionCalibration:
    """Measure BM25 and SPLADE on self-supervised queries of the index and choose SPLADE's weight
    in reciprocal rank fusion (see the module docstring). Two searches per query, ids only.

    Args:
        index: the `SpladeIndex`.
        encoder: its `QueryEncoder` (default: the index's own).
        samples: documents sampled (each gives one query when long enough).
        seed: the sampling seed.
        base: the fusion whose weight is chosen (default rrf, k = 10, depth 50).

    Raises:
        InputError: too few documents long enough to make queries from (fewer than 20).
    """
    hybrid = (base or Hybrid("rrf")).resolved()
    if hybrid.method != "rrf":
        raise InputError("fusion calibration chooses the weight of reciprocal rank fusion (method 'rrf')")
    queries = [(doc_id, q) for doc_id, text in sample_documents(index, samples, seed)
               if (q := span_query(doc_id, text, seed))]
    if len(queries) < 20:
        raise InputError(f"index {index.name!r}: {len(queries)} sampled documents have {MIN_WORDS} words or more; "
                         "at least 20 are needed to measure the fusion")
    options = SearchOptions(k=10, hybrid=Hybrid("rrf", depth=10), source=False)
    ranks: Dict[str, List[float]] = {"bm25": [], "splade": []}
    for start in range(0, len(queries), BATCH):
        batch = queries[start:start + BATCH]
        bodies = [body for _, text in batch for body in index.hybrid_bodies(text, encoder=encoder, options=options)]
        lists = hit_lists(index.request_msearch(bodies), index.name, len(bodies))
        for i, (doc_id, _) in enumerate(batch):  # [BM25, SPLADE] per query, in order
            ranks["bm25"].append(reciprocal_rank(doc_id, [h["_id"] for h in lists[2 * i]]))
            ranks["splade"].append(reciprocal_rank(doc_id, [h["_id"] for h in lists[2 * i + 1]]))
    mrr = {name: statistics.fmean(values) for name, values in ranks.items()}
    calibration = FusionCalibration(hybrid, len(queries), mrr, seed)
    calibration.hybrid = Hybrid("rrf", weight=weight_for(calibration.ratio), depth=hybrid.depth, rrf_k=hybrid.rrf_k)
    return calibration
