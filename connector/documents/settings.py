"""What a new index is made with (`IndexSettings`), and the fields splade-os writes into documents.

Shared by the index (`splade_os.cluster.index`), the ingest that creates it and the copy that re-creates
it (`splade_os.cluster.reindex`); it imports nothing of theirs.
"""

from dataclasses import dataclass
from typing import Optional

from splade_os.common.errors import InputError
from splade_os.corpus.jsonl import reserved_key
from splade_os.documents.vectors import VectorOptions

SOURCE_FEATURES = ("map", "packed", "none")
# What splade-os writes into a document besides the sparse field (and its packed copy): the model
# stamp and the ingest time (by the pipeline or the client), and the fingerprint the pipeline checks.
# `splade_hash`: on an enriched index, the hash of the title and text the vector was made from.
HASH_FIELD = "splade_hash"
OWN_FIELDS = ("splade_model", "ingested_at", "splade_fingerprint", HASH_FIELD)
# What a user's mapping may set besides `properties` (copied into the index's mapping as given).
MAPPING_OPTIONS = ("dynamic", "dynamic_templates")
USER_MAPPING_KEYS = ("properties", *MAPPING_OPTIONS)


def reserved_fields(field: str) -> tuple:
    """The names splade-os writes into an index whose sparse field is `field`: a corpus line may not hold them."""
    return (field, packed_field(field), *OWN_FIELDS)


def user_mapping(mapping: Optional[dict], field: str) -> Optional[dict]:
    """A user's mapping in the engines' own form (`{"properties": {...}}`, or an index body's
    `{"mappings": {...}}`), checked: None when none was given.

    Raises:
        InputError: not a mapping, or it (re)defines a field splade-os writes.
    """
    if mapping is None:
        return None
    if isinstance(mapping, dict) and set(mapping) == {"mappings"}:
        mapping = mapping["mappings"]
    if not isinstance(mapping, dict) or not isinstance(mapping.get("properties", {}), dict):
        raise InputError('mapping: expected a JSON object like {"properties": {"price": {"type": "float"}}}')
    unknown = sorted(set(mapping) - set(USER_MAPPING_KEYS))
    if unknown:
        raise InputError(f"mapping: {', '.join(map(repr, unknown))} cannot be set here; a mapping may hold "
                         f"{', '.join(USER_MAPPING_KEYS)}")
    clash = reserved_key(mapping.get("properties", {}), reserved_fields(field))  # as a corpus line is checked
    if clash:
        raise InputError(f"mapping: field {clash[0]!r} is splade-os's own ({clash[1]!r}, docs/documents.md); "
                         "leave it out of the mapping")
    return mapping


@dataclass
class IndexSettings:
    """Settings of a new index.

    Attributes:
        shards, replicas: primary shards and replicas per shard.
        refresh_interval: how soon new documents become searchable.
        field: the sparse field holding the SPLADE features.
        source_features: what `_source` keeps of a document's features: "map" (the feature map
            itself), "packed" (a compact copy in `<field>_packed`, see `splade_os.documents.vectors.pack`:
            hits are fetched faster and the vectors can still be read back for a re-index) or
            "none" (nothing: a re-index encodes the texts again with the index's model).
            None: "map" for a new index; for an existing one, whatever it was made with.
        vectors: how document vectors are made (`splade_os.documents.vectors.VectorOptions`: long
            documents, pruning); None: the defaults for a new index, the recorded ones for an
            existing one.
        mapping: the user's field mappings, in the engines' own form (`{"properties":
            {"category": {"type": "keyword"}, "price": {"type": "float"}}}`), merged into the
            index's; fields it leaves out get the engine's dynamic mapping. It may not define
            splade-os's own fields (`reserved_fields`). Given for an existing index, its fields
            are added to that index's mapping (the engine refuses a change of type).
        title_field, text_field: the document fields holding the title and the text (recorded in
            `_meta`: searches, BM25 and hits read them); `splade_os.ingest` sets them from the
            corpus fields it reads.
    """

    shards: int = 1
    replicas: int = 0
    refresh_interval: str = "1s"
    field: str = "splade"
    source_features: Optional[str] = None
    vectors: Optional[VectorOptions] = None
    mapping: Optional[dict] = None
    title_field: str = "title"
    text_field: str = "text"

    def __post_init__(self):
        if self.source_features not in (None,) + SOURCE_FEATURES:
            raise InputError(f"source features {self.source_features!r}: expected one of {', '.join(SOURCE_FEATURES)}")
        self.mapping = user_mapping(self.mapping, self.field)
        for role, name in (("title", self.title_field), ("text", self.text_field)):
            if name in reserved_fields(self.field):
                raise InputError(f"{role} field {name!r} is a name splade-os writes itself; choose another field")


def packed_field(field: str) -> str:
    """The `_source` field holding the compact copy of the features (`source_features="packed"`)."""
    return f"{field}_packed"
