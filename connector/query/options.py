"""How a search is made: one frozen object that every way of searching takes.

`SpladeIndex.search`, `SpladeIndex.body`, `SpladeIndex.evaluate`, `QueryEncoder.to_dsl` and the
`search`, `query` and `eval` commands all take a `SearchOptions`, and the same options by name
(`k=5, filter="price<20"`) over it, so a setting that one of them knows (two-phase search, a
filter) is known to all of them.

Example:
    >>> options = SearchOptions(k=20, two_phase=TwoPhase(), filter=["tenant=acme"])
    >>> hits = index.search("what is lift?", options=options)
    >>> result = index.evaluate(queries, qrels, options=options.but(k=100))
"""

from dataclasses import dataclass, fields, replace
from typing import Any, Optional

from splade_os.common.errors import InputError
from splade_os.query.bodies import Pruning, TwoPhase
from splade_os.query.hybrid import Hybrid

DEFAULT_RETRY_BUDGET = 7.7  # s: the sum of `splade_os.cluster.index.SHARD_RETRY_PAUSES`, as before budgets


@dataclass(frozen=True)
class SearchOptions:
    """How a search is made.

    Attributes:
        k: hits to return.
        pruning: Elasticsearch's token pruning with an exact rescore (`Pruning`); None: exact.
        two_phase: a first pass on the query's highest-weight tokens and a rescore with the rest
            (`TwoPhase`, or True for its measured defaults); None: the whole query at once.
        hybrid: BM25 and SPLADE fused (`Hybrid`); None: SPLADE alone.
        filter: only documents matching it, scores unchanged: a condition ("price<20"), an
            engine query (a dict), or a list of these, ANDed (`splade_os.query.filters`).
        source: what each hit carries from `_source`: None, the title and text fields; a list,
            those and the fields named; True, every field but the features; False, nothing.
        explain: each hit of `SpladeIndex.search` also carries the tokens that made its score
            (`Hit.explanation`); the body itself does not change.
        retry_budget: seconds a search that shards failed to answer (a node left, its shards'
            other copies not yet in charge) may spend pausing before it is asked again; 0: asked
            once. The pauses grow from 0.2 s (`splade_os.cluster.index.retry_pauses`).
        allow_partial_results: when the budget is spent, return what the other shards found
            (`Hits.partial`, `Hits.shards` say so) instead of raising a `ClusterError`.
    """

    k: int = 10
    pruning: Optional[Pruning] = None
    two_phase: Optional[TwoPhase] = None
    hybrid: Optional[Hybrid] = None
    filter: Any = None
    source: Any = None
    explain: bool = False
    retry_budget: float = DEFAULT_RETRY_BUDGET
    allow_partial_results: bool = False

    def __post_init__(self):
        if not isinstance(self.k, int) or self.k < 0:
            raise InputError(f"k {self.k!r}: expected a whole number of hits >= 0")
        if not isinstance(self.retry_budget, (int, float)) or self.retry_budget < 0:
            raise InputError(f"retry budget {self.retry_budget!r}: expected seconds >= 0")
        if self.two_phase is True:
            object.__setattr__(self, "two_phase", TwoPhase())
        if self.pruning is not None and self.two_phase:
            raise InputError("give pruning or two-phase search, not both (each is a first pass and a rescore)")

    def but(self, **given) -> "SearchOptions":
        """These options with the `given` ones that are not None in their place."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(given) - names)
        if unknown:
            raise TypeError(f"unexpected search option(s) {', '.join(unknown)}; expected {', '.join(sorted(names))}")
        chosen = {name: value for name, value in given.items() if value is not None}
        return replace(self, **chosen) if chosen else self


def search_options(options: Optional[SearchOptions] = None, **given) -> SearchOptions:
    """`options` (default `SearchOptions()`) with the options `given` by name over it."""
    return (options or SearchOptions()).but(**given)
