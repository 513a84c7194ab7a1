"""Hard negatives mined from the cluster: for each training query, top hits that are not its positive.

In-batch negatives of self-supervised pairs are random documents, trivially easy to rank below
the positive (issue #15: a ranking loss near 0.002 from the first steps). Documents the
retriever itself ranks high for the query, but that are not the query's positive, carry the
signal. Two retrievers:

- "bm25": a `multi_match` over the index's `title` and `text` fields (every splade-os index
  keeps them as analysed text);
- "splade": the index's own sparse query (`SpladeIndex.body`), i.e. the negatives the model
  being trained gets wrong.

The top ranks are skipped (`skip`): in collections judged by pooling, the first hits that are
not the labelled positive are often relevant too (unlabelled positives); training against them
teaches the model to push relevant documents down. Queries are sent `batch` at a time in one
`_msearch` round trip.

Example:
    >>> index = connect(url).index("cranfield")
    >>> rows = add_hard_negatives(rows, index, MiningOptions(method="bm25", count=1, skip=3))
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from splade_os.common.errors import InputError

METHODS = ("bm25", "splade")


@dataclass
class MiningOptions:
    """How hard negatives are mined.

    Attributes:
        method: "bm25" or "splade".
        count: negatives per query (columns `negative_1` ... `negative_<count>`).
        skip: hits that are not the positive passed over before negatives are taken.
        batch: queries per `_msearch` request.
    """

    method: str = "bm25"
    count: int = 1
    skip: int = 5
    batch: int = 64

    def check(self) -> None:
        """Raise InputError for a method or number out of range."""
        if self.method not in METHODS:
            raise InputError(f"hard negatives {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.count < 1 or self.skip < 0 or self.batch < 1:
            raise InputError(f"hard negatives: count ({self.count}) and batch ({self.batch}) must be >= 1, "
                             f"skip ({self.skip}) >= 0")

    @classmethod
    def named(cls, method: str, count: int = 1, skip: int = 5) -> Optional["MiningOptions"]:
        """Options for a method name as the CLI takes it; None for "none" (in-batch negatives only)."""
        return None if method == "none" else cls(method, count, skip)


@dataclass
class MiningStats:
    """What mining did: queries sent, rows kept (enough negatives found), requests made."""

    queries: int = 0
    kept: int = 0
    requests: int = 0


def _content(hit: dict, title_field: str = "title", text_field: str = "text") -> str:
    source = hit.get("_source") or {}
    title, text = source.get(title_field) or "", source.get(text_field) or ""
    return f"{title} {text}" if title else text


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def pick_negatives(hits: List[dict], positive_id: Optional[str], positive: str, count: int, skip: int,
                   fields: tuple = ("title", "text")) -> List[str]:
    """The texts of hits `skip`..`skip + count` once the positive (by id or by text) is left out.

    A hit whose text equals the positive's, or that repeats an earlier hit's text (duplicate
    documents), is left out as well. `fields`: the hits' (title, text) fields.
    """
    seen = {_normal(positive)}
    candidates = []
    for hit in hits:
        text = _content(hit, *fields)
        key = _normal(text)
        if hit.get("_id") == positive_id or key in seen or not key:
            continue
        seen.add(key)
        candidates.append(text)
    return candidates[skip:skip + count]


def mine(index, queries: Sequence[str], positives: Sequence[str], positive_ids: Optional[Sequence[str]],
         options: MiningOptions, show_progress: bool = False) -> List[List[str]]:
    """Hard negatives for each (query, positive): a list of up to `options.count` texts per query.

    Args:
        index: the `SpladeIndex` holding the corpus (for "splade", searched with its own model).
        queries, positives: the training pairs.
        positive_ids: the positives' document ids when known (compared with hit `_id`s); else
            positives are recognised by their text.
        options: method, count, skip, batch.
        show_progress: a progress bar on stderr.
    """
    from splade_os.query.hybrid import hit_lists
    from splade_os.common.progress import bar

    options.check()
    # Room for the positive, the skipped ranks and a few duplicates.
    size = options.skip + options.count + 5
    roles = (index.title_field, index.text_field)
    if options.method == "splade":
        make = lambda text: index.body(text, size, source=list(roles))  # noqa: E731 - the index's encoder
    else:
        make = lambda text: index.bm25_body(text, size, source=list(roles))  # noqa: E731
    found: List[List[str]] = []
    with bar(show_progress, total=len(queries), unit="query", desc=f"mining {options.method} negatives") as progress:
        for start in range(0, len(queries), options.batch):
            chunk = range(start, min(start + options.batch, len(queries)))
            bodies = [make(queries[i]) for i in chunk]
            for i, hits in zip(chunk, hit_lists(index.request_msearch(bodies), index.name, len(bodies))):
                pid = positive_ids[i] if positive_ids is not None else None
                found.append(pick_negatives(hits, pid, positives[i], options.count, options.skip, roles))
            progress.update(len(chunk))
    return found


def add_hard_negatives(rows, index, options: MiningOptions, show_progress: bool = False):
    """`rows` (a Dataset with `query`, `positive`, optionally `positive_id`) with `negative_1..N` columns.

    Rows for which fewer than `options.count` negatives were found are dropped (every row of a
    batch must have the same columns).

    Returns:
        (the Dataset, `MiningStats`).

    Raises:
        InputError: no row got its negatives.
    """
    ids = rows["positive_id"] if "positive_id" in rows.column_names else None
    negatives = mine(index, rows["query"], rows["positive"], ids, options, show_progress)
    keep = [i for i, found in enumerate(negatives) if len(found) == options.count]
    if not keep:
        raise InputError(f"index {index.name!r}: no training query got {options.count} hard negative(s) "
                         f"beyond the first {options.skip} hits; is the corpus indexed there?")
    kept = rows.select(keep)
    columns: Dict[str, List[str]] = {f"negative_{n + 1}": [negatives[i][n] for i in keep] for n in range(options.count)}
    for name, values in columns.items():
        kept = kept.add_column(name, values)
    stats = MiningStats(len(negatives), len(keep), -(-len(negatives) // options.batch))
    return kept, stats
