"""Search results.

`SpladeIndex.search` runs the inference-free query (see `splade_os.index`); this module holds what
comes back.
"""

from dataclasses import asdict, dataclass


@dataclass
class Hit:
    """One search result."""

    id: str
    score: float
    title: str
    text: str

    @classmethod
    def from_engine(cls, hit: dict) -> "Hit":
        """From one entry of the engine's `hits.hits`."""
        source = hit.get("_source") or {}
        return cls(hit["_id"], float(hit["_score"]), source.get("title") or "", source.get("text") or "")

    def as_dict(self) -> dict:
        return asdict(self)
