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
    """

    k: int = 10
    pruning: Optional[Pruning] = None
    two_phase: Optional[TwoPhase] = None
    hybrid: Optional[Hybrid] = None
    filter: Any = None
    source: Any = None
    explain: bool = False

    def __post_init__(self):
        if not isinstance(self.k, int) or self.k < 0:
            raise InputError(f"k {self.k!r}: expected a whole number of hits >= 0")
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
