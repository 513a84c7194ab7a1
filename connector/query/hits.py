"""Search results.

`SpladeIndex.search` runs the inference-free query (see `splade_os.cluster.index`); this module holds what
comes back.
"""

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional


class Hits(list):
    """The hits of a search, best first (a list of `Hit`), and what its shards did.

    Attributes:
        shards: {"total", "successful", "skipped", "failed"} shard searches (summed over the
            searches of a hybrid search).
        partial: some shards did not answer (with `SearchOptions.allow_partial_results` only;
            else such a search raises): the hits are those of the shards that did.
        problem: what was missing, in one line, when `partial`.
    """

    def __init__(self, hits=(), shards: Optional[dict] = None, problem: Optional[str] = None):
        super().__init__(hits)
        self.shards = shards or {}
        self.problem = problem

    @property
    def partial(self) -> bool:
        return self.problem is not None


@dataclass
class Hit:
    """One search result: its id, score, title and text, and the `_source` fields asked for."""

    id: str
    score: float
    title: str
    text: str
    source: dict = field(default_factory=dict)
    explanation: Optional[List["Contribution"]] = None  # with `explain`: the tokens that made the score

    @classmethod
    def from_engine(cls, hit: dict, title_field: str = "title", text_field: str = "text") -> "Hit":
        """From one entry of the engine's `hits.hits`, the title and text read from the index's fields."""
        source = hit.get("_source") or {}
        return cls(hit["_id"], float(hit["_score"]), as_text(source.get(title_field)),
                   as_text(source.get(text_field)), source)

    def as_dict(self) -> dict:
        return asdict(self)


def as_text(value) -> str:
    """A `_source` value shown as text (None: empty)."""
    return value if isinstance(value, str) else "" if value is None else str(value)


@dataclass
class Contribution:
    """One token's part in a hit's score: query weight x document weight.

    `in_text`: whether the token occurs in the document's title or text; False for an expansion
    term the model added to the document.
    """

    token: str
    query_weight: float
    document_weight: float
    product: float
    in_text: bool


def contributions(query: Dict[str, float], document: Dict[str, float], text_keys: set,
                  tokens: Dict[str, str]) -> List[Contribution]:
    """The tokens a query and a document share, largest product first: what a hit's score is the sum of.

    Args:
        query: {feature key: weight} of the query's positive weights (what the body sends).
        document: {feature key: weight} of the document's stored vector.
        text_keys: the keys of the tokens the document's own text holds.
        tokens: {feature key: token string}, for display.
    """
    shared = [Contribution(tokens.get(key, key), weight, document[key], weight * document[key], key in text_keys)
              for key, weight in query.items() if key in document]
    return sorted(shared, key=lambda c: (-c.product, c.token))
