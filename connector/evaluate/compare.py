"""BM25, SPLADE and hybrid side by side on the same index and judged queries.

Each system is evaluated by `evaluate_index` with the same options (k, filter, BEIR's self-hit
rule): BM25 is the index's own `multi_match` over its title and text fields, SPLADE the feature
query, hybrid the two fused as the index's fusion says (or the options' `hybrid`). For each pair
the per-query graded nDCG@10 (BEIR's measure) gives wins, ties and losses, and a paired
randomization test (the within-query labels swapped at random, 10,000 times, two-sided: the test
Smucker, Allan and Carterette 2007 recommend for IR) says how likely a mean difference this large
is by chance.

Example:
    >>> comparison = compare_index(index, queries, qrels)
    >>> comparison.differences[0].as_text()
    'splade - bm25: +0.0123 nDCG@10, 40 wins / 150 ties / 35 losses, p = 0.412'
"""

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

import numpy as np

from splade_os.evaluate.run import EvalResult, evaluate_index, per_query_ndcg
from splade_os.query.options import SearchOptions, search_options

SYSTEMS = ("bm25", "splade", "hybrid")
PAIRS = (("splade", "bm25"), ("hybrid", "bm25"), ("hybrid", "splade"))
PERMUTATIONS = 10_000


@dataclass
class Difference:
    """System `a` minus system `b`, query by query, on graded nDCG@10.

    Attributes:
        a, b: system names.
        mean: mean per-query difference (= the difference of the two means).
        wins, ties, losses: queries where `a` scored higher, the same (within 1e-9), lower.
        p_value: two-sided paired randomization test of the mean difference.
    """

    a: str
    b: str
    mean: float
    wins: int
    ties: int
    losses: int
    p_value: float

    def as_text(self) -> str:
        return (f"{self.a} - {self.b}: {self.mean:+.4f} nDCG@10, {self.wins} wins / {self.ties} ties / "
                f"{self.losses} losses, p = {self.p_value:.3f}")


@dataclass
class Comparison:
    """What `compare_index` measured.

    Attributes:
        results: system name -> its `EvalResult` (metrics, latency, run, settings).
        per_query: system name -> {query id: graded nDCG@10}.
        differences: one `Difference` per pair of `PAIRS`.
    """

    results: Dict[str, EvalResult]
    per_query: Dict[str, Dict[str, float]]
    differences: List[Difference] = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-ready: each system's metrics, latency and settings, and the differences."""
        return {"systems": {name: {"metrics": r.metrics, "latency": r.latency, "queries": r.queries,
                                   "settings": r.settings} for name, r in self.results.items()},
                "per_query_ndcg@10_graded": self.per_query,
                "differences": [vars(d) for d in self.differences]}


def paired_randomization(a: np.ndarray, b: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided p-value of mean(a - b) under a paired randomization (sign-flip) test."""
    from scipy.stats import permutation_test

    if len(a) < 2 or np.allclose(a, b):
        return 1.0
    result = permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
                              vectorized=True, n_resamples=permutations, alternative="two-sided",
                              random_state=np.random.default_rng(seed))
    return float(result.pvalue)


def difference(name_a: str, a: Dict[str, float], name_b: str, b: Dict[str, float]) -> Difference:
    """The `Difference` of two systems' per-query values (the same query ids)."""
    ids = list(a)
    x = np.array([a[q] for q in ids])
    y = np.array([b[q] for q in ids])
    delta = x - y
    return Difference(name_a, name_b, float(delta.mean()) if len(ids) else 0.0, int((delta > 1e-9).sum()),
                      int((np.abs(delta) <= 1e-9).sum()), int((delta < -1e-9).sum()), paired_randomization(x, y))


def compare_index(index, queries: Dict[str, str], qrels: Dict[str, Dict[str, int]], encoder=None,
                  options: Optional[SearchOptions] = None, show_progress: bool = False,
                  keep_self_hits: bool = False, **given) -> Comparison:
    """BM25, SPLADE and hybrid on `index`, evaluated alike, and their paired differences.

    Args:
        index: the `SpladeIndex`.
        queries, qrels: as for `evaluate_index`.
        encoder: the index's `QueryEncoder` (default: the index's own).
        options: search options for all three (k, filter...); its `hybrid`, when set, is the
            fusion of the hybrid system, else the index's (`SpladeIndex.fusion`).
        keep_self_hits: count hits whose id is the query's id (BEIR drops them).
    """
    options = search_options(options or SearchOptions(k=100), **given)
    encoder = encoder or index.query_encoder()
    hybrid = options.hybrid or index.fusion()
    plain = replace(options, hybrid=None)
    runs = {
        "bm25": evaluate_index(index, queries, qrels, encoder, plain, show_progress, keep_self_hits=keep_self_hits,
                               body=lambda text, k: index.bm25_body(text, k, filter=plain.filter)),
        "splade": evaluate_index(index, queries, qrels, encoder, plain, show_progress, keep_self_hits=keep_self_hits),
        "hybrid": evaluate_index(index, queries, qrels, encoder, plain.but(hybrid=hybrid), show_progress,
                                 keep_self_hits=keep_self_hits),
    }
    runs["bm25"].settings["query"] = "bm25"
    per_query = {name: per_query_ndcg(queries, qrels, result.run) for name, result in runs.items()}
    differences = [difference(a, per_query[a], b, per_query[b]) for a, b in PAIRS]
    return Comparison(runs, per_query, differences)
