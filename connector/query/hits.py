"""Search results.

`SpladeIndex.search` runs the inference-free query (see `splade_os.cluster.index`); this module holds what
comes back.
"""

from dataclasses import asdict, dataclass, field


@dataclass
class Hit:
    """One search result: its id, score, title and text, and the `_source` fields asked for."""

    id: str
    score: float
    title: str
    text: str
    source: dict = field(default_factory=dict)

    @classmethod
    def from_engine(cls, hit: dict, title_field: str = "title", text_field: str = "text") -> "Hit":
        """From one entry of the engine's `hits.hits`, the title and text read from the index's fields."""
        source = hit.get("_source") or {}
        return cls(hit["_id"], float(hit["_score"]), _string(source.get(title_field)),
                   _string(source.get(text_field)), source)

    def as_dict(self) -> dict:
        return asdict(self)


def _string(value) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)
