"""A splade-os index on a cluster: the handle apps hold, and how an index is created.

The index body comes from `mappings/index.json` and the ingest pipeline from
`pipelines/ingest.json` (shipped inside the package as `splade_os.mappings` and
`splade_os.pipelines`); both are templates whose "@name@" placeholders are filled in from the
model and the settings. The index's `_meta` records the model, its field and whether a pipeline
guards it; the pipeline rejects any document encoded with another model, so an index fed by
several writers can never silently mix models. Where the cluster has no ingest processors (a
minimal Elasticsearch), the same checks are made by the client before sending.

Example:
    >>> index = connect("http://localhost:9200").index("docs")
    >>> index.field, index.model["name"]
    ('splade', 'splade-os-default')
    >>> [hit.id for hit in index.search("what is lift?", k=3)]
"""

import functools
import json
import re
import time
from importlib import resources
from typing import List, Optional, Sequence

from splade_os.common.errors import ClusterError, IndexStateError, ModelMismatchError
from splade_os.documents.settings import (HASH_FIELD, MAPPING_OPTIONS, SOURCE_FEATURES, IndexSettings,  # noqa: F401
                                         packed_field, reserved_fields)
from splade_os.documents.vectors import VectorOptions
from splade_os.evaluate import evaluate_index
from splade_os.formats.identity import ModelIdentity
from splade_os.query.bodies import bm25_body, query_body
from splade_os.query.encoder import QueryEncoder
from splade_os.query.filters import all_of, filter_clauses, mapped_fields
from splade_os.query.hits import Hit, Hits
from splade_os.query.hybrid import Hybrid, fuse, hit_lists, msearch_payload
from splade_os.query.options import SearchOptions, search_options

# Pauses (s) before asking again a search that some shards failed to answer: a node that left is
# noticed, and its shards' other copies take over, within seconds. A budget beyond their sum
# (`SearchOptions.retry_budget`, 7.7 s by default) repeats the last one.
SHARD_RETRY_PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0)

# Pauses (s) before asking again a refresh or count the cluster refused for a passing reason.
TRANSIENT_PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0)

SHARD_FAILURE = "search_phase_execution_exception"  # the engines' error for a search failed on its shards


def retry_pauses(budget: float) -> List[float]:
    """The pauses before each new try of a search that fit in `budget` seconds: `SHARD_RETRY_PAUSES`
    in turn (the last one repeated), the final one cut to what is left of the budget."""
    pauses, left = [], budget
    for step in range(1000):
        if left <= 1e-9:
            break
        pause = min(SHARD_RETRY_PAUSES[min(step, len(SHARD_RETRY_PAUSES) - 1)], left)
        pauses.append(pause)
        left -= pause
    return pauses


def _searches(answer: dict) -> List[dict]:
    """The answers of each search in a search (one) or `_msearch` (its `responses`) answer."""
    return answer.get("responses", [answer])


def shard_counts(answer: dict) -> dict:
    """{"total", "successful", "skipped", "failed"} shard searches of a search (or `_msearch`) answer."""
    searches = [found.get("_shards") or {} for found in _searches(answer) if "error" not in found]
    return {key: sum(s.get(key) or 0 for s in searches) for key in ("total", "successful", "skipped", "failed")}


def _shard_problem(answer: dict) -> Optional[str]:
    """What is missing from a search (or `_msearch`) answer because shards failed; None if nothing."""
    searches = _searches(answer)
    errors = [found["error"] for found in searches if "error" in found]
    if any(isinstance(e, dict) and e.get("type") == SHARD_FAILURE for e in errors):
        return f"{len(errors)} of {len(searches)} searches failed on every shard ({SHARD_FAILURE})"
    shards = [found.get("_shards") or {} for found in searches if "error" not in found]
    failed = sum(s.get("failed") or 0 for s in shards)
    # A shard with no copy to ask at all is counted in `total` but neither failed nor successful
    # on OpenSearch (and Elasticsearch before 8.0): only the sum shows it (skipped ones count as successful).
    unanswered = sum((s.get("total") or 0) - (s.get("successful") or 0) - (s.get("failed") or 0) for s in shards)
    if unanswered > 0 and not failed:
        return (f"{unanswered} of {sum(s.get('total') or 0 for s in shards)} shard searches had no shard copy "
                "to answer them")
    if not failed:
        return None  # another error of an `_msearch` search is reported by `hybrid.hit_lists`
    reasons = {str((f.get("reason") or {}).get("reason") or (f.get("reason") or {}).get("type") or f)
               for s in shards for f in s.get("failures") or []}
    return (f"{failed} of {sum(s.get('total') or 0 for s in shards)} shard searches failed ("
            + ("; ".join(sorted(reasons))[:300] or "no reason given") + ")")


def _hits(answer: dict, hits: List[Hit]) -> Hits:
    """`hits` with the shard counts of the engine's search (or `_msearch`) answer."""
    return Hits(hits, shard_counts(answer), _shard_problem(answer))


_PLACEHOLDER = re.compile(r"@([a-z_]+)@")
SCHEMA = 3  # 3: documents keep every field of their line; `_meta` records the title and text fields
def fill_template(template, values: dict):
    """Replace "@key@" placeholders inside every string of a JSON structure."""
    if isinstance(template, dict):
        return {fill_template(k, values): fill_template(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill_template(v, values) for v in template]
    if isinstance(template, str):
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    return template


def _template(package: str, name: str) -> dict:
    return json.loads((resources.files(package) / name).read_text(encoding="utf-8"))


def pipeline_id(index: str) -> str:
    return f"splade-os-{index}"


def _values(index: str, identity: ModelIdentity, settings: IndexSettings, engine, pipeline: str) -> dict:
    # Braces would be read as mustache templates inside the pipeline's messages and values.
    safe_name = identity.name.replace("{", "(").replace("}", ")")
    return {
        "shards": settings.shards,
        "replicas": settings.replicas,
        "refresh_interval": settings.refresh_interval,
        "pipeline": pipeline,
        "field": settings.field,
        "feature_type": engine.feature_type,
        "schema": SCHEMA,
        "model_name": safe_name,
        "model_version": identity.version,
        "model_source": identity.source,
        "model_hash": identity.hash,
        "model_fingerprint": identity.fingerprint,
    }


def index_body(index: str, identity: ModelIdentity, settings: IndexSettings, engine, pipeline: str = "") -> dict:
    """The create-index body: settings, mapping and `_meta` for one model (no default pipeline when "")."""
    body = fill_template(_template("splade_os.mappings", "index.json"),
                         _values(index, identity, settings, engine, pipeline))
    if not pipeline:
        del body["settings"]["index"]["default_pipeline"]
    meta = body["mappings"]["_meta"]["splade_os"]
    meta["schema"] = SCHEMA
    source = settings.source_features or "map"
    meta["source_features"] = source
    meta["vectors"] = (settings.vectors or VectorOptions()).as_meta()
    meta["title_field"], meta["text_field"] = settings.title_field, settings.text_field
    mappings = body["mappings"]
    user = settings.mapping or {}
    roles = {name: {"type": "text"} for name in (settings.title_field, settings.text_field)}
    mappings["properties"] = {**roles, **user.get("properties", {}), **mappings["properties"]}
    mappings.update({key: user[key] for key in MAPPING_OPTIONS if key in user})
    if source != "map":
        # The features are still sent (and indexed); only the stored source leaves them out.
        body["mappings"]["_source"] = {"excludes": [settings.field]}
    if source == "packed":
        body["mappings"]["properties"][packed_field(settings.field)] = {"type": "binary"}
    return body


def pipeline_body(index: str, identity: ModelIdentity, settings: IndexSettings, engine) -> dict:
    """The ingest pipeline body for one index and model."""
    return fill_template(_template("splade_os.pipelines", "ingest.json"),
                         _values(index, identity, settings, engine, pipeline_id(index)))


def _source_params(source) -> Optional[dict]:
    """A search body's `_source` filter as the query-string parameters of `_mget`."""
    if isinstance(source, dict):
        return {f"_source_{key}": ",".join(value) for key, value in source.items() if value}
    return {"_source": ",".join(source)} if source else None


def _show(value) -> str:
    if isinstance(value, VectorOptions):
        return "(" + ", ".join(f"{k}={v}" for k, v in value.as_meta().items()) + ")"
    return repr(value)


FILTER_SHARE_SECONDS = 300.0  # how long `SpladeIndex.filter_share` trusts a count
FILTER_SHARES_KEPT = 256  # filters whose share an index remembers (the oldest forgotten first)


class SpladeIndex:
    """An index (or alias) on a cluster that splade-os created for one model.

    Its `_meta` is read once, when first needed. Build it with `Cluster.index(name)`.

    Attributes:
        cluster: the `splade_os.cluster.Cluster`.
        name: the index or alias name.
    """

    def __init__(self, cluster, name: str):
        self.cluster = cluster
        self.name = name
        self._filter_shares: dict = {}  # filter clauses (JSON) -> (when counted, share of the index)

    def __repr__(self) -> str:
        return f"SpladeIndex({self.cluster.url!r}, {self.name!r})"

    # -- what the index records ----------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the index or alias exists."""
        return self.cluster.exists(f"/{self.name}")

    @functools.cached_property
    def mappings(self) -> dict:
        """{concrete index: its mapping} of the index, or of every index the alias points to.

        Raises:
            IndexStateError: the index does not exist, or was not created by splade-os.
        """
        try:
            answer = self.cluster.request("GET", f"/{self.name}/_mapping", action=f"reading the mapping of {self.name!r}")
        except ClusterError as e:
            if e.status == 404:
                raise IndexStateError(f"index {self.name!r} does not exist; create it with `splade-os ingest` "
                                      "or `splade-os init`") from None
            raise
        ours = {name: body.get("mappings", {}) for name, body in answer.items()
                if body.get("mappings", {}).get("_meta", {}).get("splade_os")}
        if not ours:
            raise IndexStateError(f"index {self.name!r} was not created by splade-os (no splade_os entry in its _meta)")
        return ours

    @property
    def meta(self) -> dict:
        """The splade-os `_meta` of the index: {"field", "model": {...}, "pipeline", "schema", ...}
        (an alias: of the first of its indexes)."""
        return next(iter(self.mappings.values()))["_meta"]["splade_os"]

    @functools.cached_property
    def field_types(self) -> dict:
        """{dotted field path: its mapping} over the index's fields (an alias: all its indexes)."""
        types: dict = {}
        for mapping in self.mappings.values():
            types.update(mapped_fields(mapping.get("properties", {})))
        return types

    @property
    def user_mapping(self) -> dict:
        """The index's mapping without splade-os's own fields: what a copy of it starts from."""
        mapping = next(iter(self.mappings.values()))
        reserved = self.reserved_fields
        kept = {"properties": {name: value for name, value in mapping.get("properties", {}).items()
                               if name not in reserved}}
        return {**kept, **{key: mapping[key] for key in MAPPING_OPTIONS if key in mapping}}

    @property
    def title_field(self) -> str:
        """The document field holding the title (recorded when the index was created)."""
        return self.meta.get("title_field", "title")

    @property
    def text_field(self) -> str:
        """The document field holding the text (recorded when the index was created)."""
        return self.meta.get("text_field", "text")

    @property
    def reserved_fields(self) -> tuple:
        """The fields splade-os writes into this index's documents (see `reserved_fields`)."""
        return reserved_fields(self.field)

    def source(self, fields=None):
        """The `_source` filter of a search body for `SearchOptions.source`: the title and text
        fields plus `fields` (a list of names), everything but the features (True), or nothing (False)."""
        if fields is False:
            return False
        if fields is True:
            return {"excludes": [self.field, packed_field(self.field)]}
        return list(dict.fromkeys([self.title_field, self.text_field, *(fields or [])]))

    @property
    def field(self) -> str:
        """The sparse field the documents' features are in."""
        return self.meta.get("field", "splade")

    @property
    def model(self) -> dict:
        """The model the index was created for: name, version, source, hash, fingerprint."""
        return self.meta.get("model", {})

    @property
    def pipeline(self) -> Optional[str]:
        """The ingest pipeline that checks and stamps documents, or None (the client does it)."""
        if "pipeline" in self.meta:
            return self.meta["pipeline"] or None
        return pipeline_id(self.name)  # indexes made before the schema recorded it always had one

    @property
    def source_features(self) -> str:
        """What `_source` keeps of the features: "map", "packed" or "none" (see `IndexSettings`)."""
        return self.meta.get("source_features", "map")

    @property
    def packed_field(self) -> Optional[str]:
        """The `_source` field with the compact copy of each document's features, or None."""
        return packed_field(self.field) if self.source_features == "packed" else None

    @property
    def vector_options(self) -> VectorOptions:
        """How the index's document vectors are made (long documents, pruning)."""
        return VectorOptions.from_meta(self.meta.get("vectors"))

    def check_settings(self, settings: IndexSettings) -> None:
        """Refuse settings given explicitly that differ from what the existing index was made with."""
        given = {"source_features": settings.source_features, "vectors": settings.vectors}
        recorded = {"source_features": self.source_features, "vectors": self.vector_options}
        for name, value in given.items():
            if value is not None and value != recorded[name]:
                raise IndexStateError(
                    f"index {self.name!r} was made with {name} {_show(recorded[name])}, not {_show(value)}; "
                    "leave the option out to use the index's, or ingest into another index")

    def check_hash(self, query_hash: str) -> None:
        """Refuse a query side whose vocabulary + table hash differs from the index's."""
        self._check("hash", query_hash)

    def check_fingerprint(self, fingerprint: str) -> None:
        """Refuse a model whose document fingerprint differs from the index's."""
        self._check("fingerprint", fingerprint)

    def _check(self, key: str, value: str) -> None:
        model = self.model
        if model.get(key) != value:
            raise ModelMismatchError(
                f"index {self.name!r} was ingested with model {model.get('name')!r} ({key} {str(model.get(key))[:12]}), "
                f"not with the given model ({key} {value[:12]}); use the index's model or another index")

    # -- creating ------------------------------------------------------------------------------

    def create(self, model, settings: Optional[IndexSettings] = None) -> bool:
        """Create the index (and its ingest pipeline where the cluster can run one) for `model`.

        Also stores the model's query side in the cluster, so any machine can search the index.

        Args:
            model: the `splade_os.models.resolve.Model` documents will be encoded with.
            settings: shards, replicas, refresh interval and field (`IndexSettings()` by default).

        Returns:
            True when created; False when it existed already for the same model.

        Raises:
            ModelMismatchError: the index exists and holds another model's documents.
            IndexStateError: the index exists but was not created by splade-os.
        """
        from splade_os.models.registry import store_query_side

        created = self.create_for(model.identity, settings)  # first: a refused mapping leaves nothing behind
        store_query_side(self.cluster, model.query_encoder)
        return created

    def create_for(self, identity: ModelIdentity, settings: Optional[IndexSettings] = None) -> bool:
        """`create` from a model's identity alone (its query side must be stored already, e.g. a re-index)."""
        settings = settings or IndexSettings()
        if self.exists():
            self.check_fingerprint(identity.fingerprint)
            self.check_settings(settings)
            if settings.mapping:
                self._add_mapping(settings.mapping)
            return False
        pipeline = ""
        if self.cluster.has_ingest_checks:
            pipeline = pipeline_id(self.name)
            self.cluster.request("PUT", f"/_ingest/pipeline/{pipeline}",
                                 pipeline_body(self.name, identity, settings, self.cluster.engine),
                                 action=f"creating the ingest pipeline of {self.name!r}")
        body = index_body(self.name, identity, settings, self.cluster.engine, pipeline)
        try:
            self.cluster.request("PUT", f"/{self.name}", body, action=f"creating index {self.name!r}")
        except ClusterError as e:
            if e.error_type == "resource_already_exists_exception":  # another writer was first
                self._forget()
                self.check_fingerprint(identity.fingerprint)
                self.check_settings(settings)
                return False
            if pipeline:  # nothing half-made: the pipeline goes with the index it was for
                self.cluster.request("DELETE", f"/_ingest/pipeline/{pipeline}",
                                     action=f"removing the ingest pipeline of {self.name!r}")
            raise
        self._forget()
        return True

    def adopt(self, model, settings: IndexSettings) -> bool:
        """Make an index an app owns (and keeps writing to) a splade-os index, in place.

        Adds the sparse field and splade-os's own fields (`reserved_fields`) to its mapping and
        records the model and the title and text fields in its `_meta`, beside the app's own
        `_meta`. No ingest pipeline is set: the app's writes go on exactly as before. The
        model's query side is stored in the cluster, as `create` does.

        Returns:
            True when adopted now; False when it was a splade-os index already (for this model).

        Raises:
            IndexStateError: no such index; an alias or pattern naming several indexes; the text
                field is not in the mapping; a field splade-os writes exists already.
            ModelMismatchError: the index holds another model's vectors.
        """
        from splade_os.models.registry import store_query_side

        try:
            found = self.cluster.request("GET", f"/{self.name}/_mapping", action=f"reading the mapping of {self.name!r}")
        except ClusterError as e:
            if e.status == 404:
                raise IndexStateError(f"index {self.name!r} does not exist") from None
            raise
        if len(found) != 1:
            raise IndexStateError(f"{self.name!r} names {len(found)} indexes ({', '.join(sorted(found))}); "
                                  "give one index at a time")
        mapping = next(iter(found.values())).get("mappings", {})
        meta = mapping.get("_meta") or {}
        properties = mapping.get("properties", {})
        identity = model.identity
        hash_mapping = {HASH_FIELD: {"type": "keyword", "index": False}}
        if "splade_os" in meta:
            self.check_fingerprint(identity.fingerprint)
            for role, given, recorded in (("text", settings.text_field, self.text_field),
                                          ("title", settings.title_field, self.title_field)):
                if given != recorded:
                    raise IndexStateError(f"index {self.name!r} records {recorded!r} as its {role} field, not "
                                          f"{given!r}; leave the option out to use the index's")
            if HASH_FIELD not in properties:  # an index splade-os ingested: enriched from now on
                self._add_mapping({"properties": hash_mapping})
            store_query_side(self.cluster, model.query_encoder)
            return False
        fields = mapped_fields(properties)
        if settings.text_field not in fields:
            raise IndexStateError(f"index {self.name!r} has no field {settings.text_field!r} in its mapping (it has "
                                  f"{', '.join(sorted(fields)[:20]) or 'none'}); name the text field with --text-field")
        clash = sorted(name for name in (*reserved_fields(settings.field), HASH_FIELD) if name in properties)
        if clash:
            raise IndexStateError(f"index {self.name!r} already has field(s) {', '.join(map(repr, clash))}, which "
                                  f"splade-os would write; choose another --field or another index")
        body = index_body(self.name, identity, settings, self.cluster.engine)["mappings"]
        own = {name: value for name, value in body["properties"].items() if name in reserved_fields(settings.field)}
        self._add_mapping({"properties": {**own, **hash_mapping},
                           "_meta": {**meta, "splade_os": {**body["_meta"]["splade_os"], "enriched": True}}})
        store_query_side(self.cluster, model.query_encoder)
        return True

    def _forget(self) -> None:
        """Read the mapping again when next needed."""
        for name in ("mappings", "field_types"):
            self.__dict__.pop(name, None)

    def _add_mapping(self, mapping: dict) -> None:
        """Add the user's field mappings to the existing index (the engine refuses a change of type)."""
        self.cluster.request("PUT", f"/{self.name}/_mapping", mapping,
                             action=f"adding the given mapping to index {self.name!r}")
        self._forget()

    # -- using ---------------------------------------------------------------------------------

    def query_encoder(self, model: Optional[str] = None, show_progress: bool = False):
        """The `QueryEncoder` to search this index with: the index's own model, or `model` (checked).

        The index's own query side is read from the cluster (stored by hash when the index was
        created), so no model files are needed; a `model` given by name must have the index's hash.

        Raises:
            ModelMismatchError: `model` is not the model the index was ingested with.
        """
        from splade_os.models.registry import query_side

        if model is None:
            folder = query_side(self.cluster, self.model.get("hash", ""))
            if folder is not None:
                return QueryEncoder.load(folder, self.model.get("name", ""))
            model = self.model.get("source", "default")  # an index made before query sides were stored
        from splade_os.models.resolve import resolve_model

        encoder = resolve_model(model, self.cluster, show_progress).query_encoder
        self.check_hash(encoder.hash)
        return encoder

    @functools.cached_property
    def _default_encoder(self):
        return self.query_encoder()

    def filter_clauses(self, filter) -> List[dict]:
        """`filter` (see `splade_os.query.filters.filter_clauses`) as clauses for this index: `=` on a
        `text` field compares its `keyword` sub-field (the engines' dynamic mapping of strings)."""
        return filter_clauses(filter, self.field_types if filter is not None else None)

    def filter_share(self, clauses: List[dict]) -> Optional[float]:
        """The share of this index's documents that match every filter clause (0 for an empty
        index); None when the cluster could not count them (the search itself will say why).

        Counted with one request, then remembered for `FILTER_SHARE_SECONDS`: it only chooses where
        a search body puts its filter (`splade_os.query.filters.restricted`), which is exact either way.
        """
        key = json.dumps(clauses, sort_keys=True, default=str)  # a key only: dates and the like as text
        now = time.monotonic()
        known = self._filter_shares.get(key)
        if known and now - known[0] < FILTER_SHARE_SECONDS:
            return known[1]
        try:
            # Asked once; the shards that answer are enough to choose a place.
            answer = self.request_search({"size": 0, "track_total_hits": True,
                                          "aggs": {"matching": {"filter": all_of(clauses)}}},
                                         options=SearchOptions(retry_budget=0, allow_partial_results=True))
        except ClusterError:
            return None
        total = answer["hits"]["total"]
        total = total["value"] if isinstance(total, dict) else total
        share = answer["aggregations"]["matching"]["doc_count"] / total if total else 0.0
        if len(self._filter_shares) >= FILTER_SHARES_KEPT:
            self._filter_shares.pop(next(iter(self._filter_shares)))
        self._filter_shares[key] = (now, share)
        return share

    def body(self, text: str, k: Optional[int] = None, encoder=None, *, options=None, max_clauses=None,
             **given) -> dict:
        """The search body an app sends for `text` (the index's field, engine and clause cap).

        Args:
            text: the query.
            k: number of hits (over `options.k`).
            encoder: a `QueryEncoder` (default: the index's own model, read once).
            options: a `splade_os.query.SearchOptions`: pruning (Elasticsearch), two-phase search,
                a filter (`=` on a `text` field compares its `keyword` sub-field), the `_source`
                fields; `given`: the same by name over it (`filter="price<20"`, `two_phase=True`).
            max_clauses: the most query clauses (default: the cluster's `indices.query.bool.max_clause_count`).

        A filter matching 5% of the index or more (`filter_share`, counted once per filter) is sent
        as the body's `post_filter`, a narrower one in the query as a conjunction (the filter a
        required clause scoring 0): the faster place for each, with the same hits and scores
        (`splade_os.query.filters.restricted`).
        """
        options = search_options(options, k=k, **given)
        encoder = encoder or self._default_encoder
        clauses = self.filter_clauses(options.filter)
        share = self.filter_share(clauses) if clauses and options.pruning is None else None
        return query_body(encoder.weights(text), encoder.keys, self.cluster.engine, field=self.field, size=options.k,
                          max_clauses=max_clauses or self.cluster.max_clause_count, source=self.source(options.source),
                          pruning=options.pruning, two_phase=options.two_phase, filters=clauses, filter_share=share)

    def bm25_body(self, text: str, k: int = 10, source=None, filter=None, fields=None) -> dict:
        """The BM25 search body on this index: `multi_match` over its title and text fields (or
        `fields`), restricted by `filter`; `source` as `SearchOptions.source`."""
        return bm25_body(text, k, fields or (self.title_field, self.text_field), self.source(source),
                         self.filter_clauses(filter))

    def fusion(self, given: Optional[Hybrid] = None) -> Hybrid:
        """The fusion of this index's hybrid searches: the settings `given` (a `Hybrid`), the rest as
        `splade_os.query.fusion.calibrate_fusion` measured and recorded in the index's `_meta`,
        else the defaults."""
        return (given or Hybrid()).resolved(Hybrid.from_meta(self.meta.get("fusion")))

    def calibrate_fusion(self, encoder=None, samples: Optional[int] = None, record: bool = True):
        """Choose the hybrid fusion from self-supervised queries of this index and (by default)
        record it in the index's `_meta`; the `FusionCalibration`. See
        `splade_os.evaluate.fusion.calibrate_fusion`."""
        from splade_os.evaluate.fusion import SAMPLES, calibrate_fusion

        calibration = calibrate_fusion(self, encoder or self._default_encoder, samples or SAMPLES)
        if record:
            self.record_fusion(calibration.as_meta())
        return calibration

    def record_fusion(self, fusion: dict) -> None:
        """Record `fusion` (`Hybrid.as_meta()`, plus how it was measured) in the `_meta` of the index
        (of each index of an alias), beside what it records already."""
        for name, mapping in self.mappings.items():
            meta = mapping["_meta"]
            self.cluster.request("PUT", f"/{name}/_mapping",
                                 {"_meta": {**meta, "splade_os": {**meta["splade_os"], "fusion": fusion}}},
                                 action=f"recording the fusion of index {name!r}")
        self._forget()

    def hybrid_bodies(self, text: str, k: Optional[int] = None, encoder=None, *, options=None, **given) -> List[dict]:
        """The two search bodies of a hybrid search, [BM25, SPLADE], each asking for the fused depth
        and restricted by the same filter (`options` as for `body`, its `hybrid` the fusion).

        Sent together in one `_msearch` request (`splade_os.query.hybrid.msearch_payload`), then
        fused with `splade_os.query.hybrid.fuse`; see `search`.
        """
        options = search_options(options, k=k, **given)
        hybrid = self.fusion(options.hybrid)
        deep = options.but(k=max(options.k, hybrid.depth))
        return [self.bm25_body(text, deep.k, deep.source, deep.filter, hybrid.fields),
                self.body(text, encoder=encoder, options=deep)]

    def search(self, text: str, k: Optional[int] = None, encoder=None, *, options=None, **given) -> Hits:
        """The top `k` hits for `text`, best first (a list of `Hit`); `options` and `given` as for `body`.

        A search that some shards failed to answer is asked again for `options.retry_budget`
        seconds; then, with `options.allow_partial_results`, what the other shards found comes back
        with `Hits.partial` set and `Hits.shards` counting them, else a `ClusterError` says so.

        With `hybrid` (a `splade_os.query.Hybrid`), BM25 and SPLADE results are fused (one
        `_msearch` request) and a hit's score is the fused score; a filter restricts both lists.
        Each hit carries the `source` fields asked for in `Hit.source`, besides its title and text;
        with `explain`, the tokens that made its score (`Hit.explanation`; the vectors come with the
        hits, or one more request for all of them: `splade_os.cluster.explain`).
        """
        options = search_options(options, k=k, **given)
        roles = (self.title_field, self.text_field)
        sources = None  # the hits' stored vectors, when they come with the search itself
        inline = options.explain and options.hybrid is None and self.source_features != "none"
        if options.hybrid is None:
            body = self.body(text, encoder=encoder, options=options)
            if inline:
                from splade_os.cluster.explain import with_vectors

                body = with_vectors(self, body)
            response = self.request_search(body, options=options)
            hits = _hits(response, [Hit.from_engine(h, *roles) for h in response["hits"]["hits"]])
            if inline:
                sources = {h["_id"]: h.get("_source") or {} for h in response["hits"]["hits"]}
        else:
            fused, response = self._hybrid(text, encoder, options)
            hits = _hits(response, [Hit.from_engine(dict(hit, _score=score), *roles) for hit, score in fused])
        if options.explain:
            from splade_os.cluster.explain import explain_hits

            explain_hits(self, text, hits, encoder or self._default_encoder, sources=sources)
        return hits

    def hybrid_hits(self, text: str, k: Optional[int] = None, encoder=None, *, options=None, **given) -> List[tuple]:
        """(engine hit, fused score) of a hybrid search, best first; see `search`.

        One `_msearch` request. On an index whose `_source` holds the feature map, reading a hit
        means reading that whole map, which for `2 x depth` hits costs more than a second round
        trip: there both lists come without `_source` and the fused top `k` are read with one
        `_mget` (measured in docs/quality.md).
        """
        return self._hybrid(text, encoder, search_options(options, k=k, **given))[0]

    def _hybrid(self, text: str, encoder, options: SearchOptions) -> tuple:
        """(`hybrid_hits`, the `_msearch` answer)."""
        later = options.source is not False and self.source_features == "map"
        bodies = self.hybrid_bodies(text, encoder=encoder, options=options.but(source=False) if later else options)
        answer = self.request_msearch(bodies, options=options)
        fused = fuse(*hit_lists(answer, self.name), self.fusion(options.hybrid), options.k)
        if not later or not fused:
            return fused, answer
        docs = self.cluster.request("POST", f"/{self.name}/_mget", {"ids": [hit["_id"] for hit, _ in fused]},
                                    params=_source_params(self.source(options.source)),
                                    action=f"reading hits of {self.name!r}")["docs"]
        sources = {doc["_id"]: doc.get("_source") for doc in docs if doc.get("found")}
        return [(dict(hit, _source=sources.get(hit["_id"])), score) for hit, score in fused], answer

    def request_search(self, body: dict, params: Optional[dict] = None, options: Optional[SearchOptions] = None) -> dict:
        """Send a search body to this index; the engine's raw answer, from every shard (see `_whole`;
        `options`: its retry budget and whether partial results are allowed)."""
        return self._whole("_search", body, params=params, options=options)

    def request_msearch(self, bodies: List[dict], options: Optional[SearchOptions] = None) -> dict:
        """Send several search bodies to this index in one `_msearch` request; the engine's raw answer."""
        return self._whole("_msearch", msearch_payload(None, bodies), ndjson=True, options=options)

    def _whole(self, endpoint: str, body, ndjson: bool = False, params: Optional[dict] = None,
               options: Optional[SearchOptions] = None) -> dict:
        """The answer of `POST /<index>/<endpoint>` once no shard failed in any of its searches.

        Right after a node leaves, an engine answers a search with 200 and the hits of the shards
        that answered (silently incomplete), or fails it on every shard
        (`search_phase_execution_exception`). Either is asked again after short pauses while the
        cluster moves the shards to their other copies, for `options.retry_budget` seconds; if it
        persists, a `ClusterError` says so, unless `options.allow_partial_results` takes an answer
        some shards failed (not one whose searches failed on every shard: there is nothing to take).
        """
        options = options or SearchOptions()
        for pause in (*retry_pauses(options.retry_budget), None):
            try:
                answer = self.cluster.request("POST", f"/{self.name}/{endpoint}", body, ndjson=ndjson, params=params,
                                              action=f"searching {self.name!r}")
            except ClusterError as error:
                if error.error_type != SHARD_FAILURE or pause is None:
                    raise
                time.sleep(pause)
                continue
            problem = _shard_problem(answer)
            if problem is None:
                return answer
            if pause is None:
                if options.allow_partial_results and not any("error" in found for found in _searches(answer)):
                    return answer
                raise ClusterError(f"searching {self.name!r}: {problem}")
            time.sleep(pause)

    def count(self) -> int:
        """`_count` of the index."""
        return self._patiently("GET", f"/{self.name}/_count", f"counting {self.name!r}")["count"]

    def documents_with_ids(self, ids: Sequence[str]) -> int:
        """How many of `ids` are ids of documents in the index (`ids` queries of 10,000 at a time)."""
        ids = list(ids)
        found = 0
        for start in range(0, len(ids), 10_000):
            body = {"query": {"ids": {"values": ids[start:start + 10_000]}}}
            found += self._patiently("POST", f"/{self.name}/_count", f"counting ids in {self.name!r}", body)["count"]
        return found

    def refresh(self) -> None:
        """Make everything indexed so far searchable."""
        self._patiently("POST", f"/{self.name}/_refresh", f"refreshing {self.name!r}")

    def _patiently(self, method: str, path: str, action: str, body=None):
        """A request asked again after short pauses while the cluster refuses it for a passing reason
        (HTTP 429 from a busy node's memory breaker, 502-504, no answer), as bulk requests are."""
        for pause in (*TRANSIENT_PAUSES, None):
            try:
                return self.cluster.request(method, path, body, action=action)
            except ClusterError as error:
                if not error.transient or pause is None:
                    raise
                time.sleep(pause)

    def ingest(self, corpus, model=None, **kwargs):
        """Encode a JSONL corpus into this index; see `splade_os.ingest.ingest` for the options."""
        from splade_os.ingest.single import ingest

        return ingest(self.cluster, corpus, self.name, model, **kwargs)

    def evaluate(self, queries, qrels, k: Optional[int] = None, encoder=None, show_progress: bool = False, body=None,
                 *, options=None, keep_self_hits: bool = False, **given):
        """Evaluate the index on judged queries, searched as `options` say (100 hits by default;
        two-phase, pruned, filtered or hybrid like `search`), self-hits dropped by BEIR's rule
        unless `keep_self_hits`; see `splade_os.evaluate.evaluate_index`."""
        options = search_options(options or SearchOptions(k=100), k=k, **given)
        return evaluate_index(self, queries, qrels, encoder or self._default_encoder, options=options,
                              show_progress=show_progress, body=body, keep_self_hits=keep_self_hits)
