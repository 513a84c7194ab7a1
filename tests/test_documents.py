"""Documents as users have them: every field of a line kept, typed by the user's mapping, and
filtered search that restricts without rescoring, on both engines."""

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from splade_os.bulk import BulkLines
from splade_os.corpus import CorpusFields, Document, Rejected, parse_line
from splade_os.common.errors import ClusterError, InputError
from splade_os.query.filters import (POST_FILTER_SHARE, RANGES, Condition, conjunction, filter_clauses, filtered,
                                     parse_condition, restricted)
from splade_os.query.hybrid import Hybrid
from splade_os.formats.identity import ModelIdentity
from splade_os.cluster.index import IndexSettings
from splade_os.ingest import IngestOptions, ingest
from splade_os.query import Pruning, TwoPhase, query_body
from splade_os.bulk.sender import document_fields
from splade_os.documents.vectors import SparseVector

OWN = {"splade", "splade_model", "ingested_at"}  # what splade-os adds to a stored document's _source
CATEGORIES = ("books", "music", "tools", "garden", "toys")
MAPPING = {"properties": {"category": {"type": "keyword"}, "price": {"type": "float"},
                          "published": {"type": "date"}}}
QUERIES = ("what is the effect of the boundary layer on heat transfer", "supersonic flow over a wing",
           "buckling of thin cylindrical shells under pressure")

# -- the filter syntax ----------------------------------------------------------------------------

field_names = st.text(st.characters(blacklist_characters="=<>!", blacklist_categories=("Cs", "Zs", "Cc")),
                      min_size=1, max_size=12)
values = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=12)


@given(field_names, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), values)
def test_conditions_parse_back_to_their_parts(field, op, value):
    text = f"{field}{op}{value}"
    try:
        parsed = parse_condition(text)
    except InputError as e:  # only a value that would read as a second operator is refused
        assert value.startswith("=") or (op in RANGES and any(c in value for c in "<>=")), e
        return
    assert str(parsed) == text
    if not value.startswith("="):  # "a<=b" is "<=" and "b", never "<" and "=b"
        assert parsed == Condition(field, op, value)


@pytest.mark.parametrize("text, reason", [("price", "expected FIELD OP VALUE"), ("=books", "no field name"),
                                          ("price<", "no value"), ("price<=<3", "one operator"),
                                          ("a==b", "one operator")])
def test_malformed_conditions_say_what_is_wrong(text, reason):
    with pytest.raises(InputError, match=reason):
        parse_condition(text)


def test_conditions_become_engine_queries():
    types = {"tenant": {"type": "text", "fields": {"keyword": {"type": "keyword"}}}, "body": {"type": "text"}}
    clauses = filter_clauses(["category=books", "price<20", "published>=2024-01-01", "tenant=t3", "body=a b",
                              "tag!=old", {"exists": {"field": "url"}}], types)
    assert clauses == [{"term": {"category": "books"}}, {"range": {"price": {"lt": "20"}}},
                       {"range": {"published": {"gte": "2024-01-01"}}}, {"term": {"tenant.keyword": "t3"}},
                       {"match_phrase": {"body": "a b"}}, {"bool": {"must_not": [{"term": {"tag": "old"}}]}},
                       {"exists": {"field": "url"}}]
    assert filter_clauses(None) == [] and filter_clauses("a=1") == [{"term": {"a": "1"}}]
    with pytest.raises(InputError, match="expected a condition"):
        filter_clauses([42])


def test_a_filter_never_makes_the_query_optional():
    weights, keys = {1: 2.0, 2: 1.0}, ["a", "b", "c"]
    for engine in ("opensearch", "elasticsearch"):
        plain = query_body(weights, keys, engine=engine)
        body = query_body(weights, keys, engine=engine, filters=[{"term": {"x": "1"}}])
        # Beside the query's clauses, one of which must still match (its score unchanged); the
        # filter only restricts.
        assert body["query"] == {"bool": {"should": plain["query"]["bool"]["should"], "filter": [{"term": {"x": "1"}}],
                                          "minimum_should_match": 1}}
        two = query_body(weights, keys, engine=engine, two_phase=TwoPhase(tokens=1), filters=[{"term": {"x": "1"}}])
        assert two["query"]["bool"]["filter"] and "filter" not in json.dumps(two["rescore"])
        assert two["query"]["bool"]["minimum_should_match"] == 1
    # Any other query is nested: it must match, the filter restricts.
    pruned = query_body(weights, keys, engine="elasticsearch", pruning=Pruning(), filters=[{"term": {"x": "1"}}])
    assert "sparse_vector" in pruned["query"]["bool"]["must"][0]
    match = {"multi_match": {"query": "a", "fields": ["text"]}}
    assert filtered(match, [{"term": {"x": "1"}}]) == {"bool": {"must": [match], "filter": [{"term": {"x": "1"}}]}}
    scored = {"bool": {"should": [match], "minimum_should_match": 2}}
    assert filtered(scored, [{"term": {"x": "1"}}])["bool"]["must"] == [scored]
    assert query_body({}, keys, "opensearch", filters=[{"term": {"x": "1"}}])["query"] == {"match_none": {}}
    assert filtered({"match_all": {}}, []) == {"match_all": {}}


def test_a_broad_filter_is_a_post_filter_and_a_narrow_one_a_conjunction():
    weights, keys, clauses = {1: 2.0, 2: 1.0}, ["a", "b", "c"], [{"term": {"x": "1"}}]
    plain = query_body(weights, keys, engine="opensearch")
    broad = query_body(weights, keys, engine="opensearch", filters=clauses, filter_share=POST_FILTER_SHARE)
    # The query as it is unfiltered, the filter dropping hits as they are collected.
    assert broad == {**plain, "post_filter": {"bool": {"filter": clauses}}}
    # Narrow: the query and the filter both required, the filter scoring 0 (the query's scores).
    narrow = query_body(weights, keys, engine="opensearch", filters=clauses, filter_share=POST_FILTER_SHARE / 2)
    assert narrow == {**plain, "query": {"bool": {"must": [plain["query"], {"constant_score": {
        "filter": clauses[0], "boost": 0}}]}}}
    both = [{"term": {"x": "1"}}, {"range": {"y": {"lt": "2"}}}]
    assert conjunction(plain["query"], both)["bool"]["must"][1] == {"constant_score": {
        "filter": {"bool": {"filter": both}}, "boost": 0}}
    # Share unknown: beside the query's clauses.
    unknown = query_body(weights, keys, engine="opensearch", filters=clauses)
    assert "post_filter" not in unknown and unknown["query"]["bool"]["filter"] == clauses
    two = query_body(weights, keys, engine="opensearch", two_phase=TwoPhase(tokens=1), filters=clauses, filter_share=1)
    assert two["post_filter"] == {"bool": {"filter": clauses}} and "filter" not in json.dumps([two["query"], two["rescore"]])
    # Only a SPLADE disjunction takes a post_filter or a conjunction; a query matching nothing stays as it is.
    for share in (1, 0):
        pruned = query_body(weights, keys, engine="elasticsearch", pruning=Pruning(), filters=clauses, filter_share=share)
        assert "post_filter" not in pruned and pruned["query"]["bool"]["filter"] == clauses
    assert restricted({"query": {"match_none": {}}}, clauses, 1.0) == {"query": {"match_none": {}}}
    assert restricted({"query": {"match_none": {}}}, clauses, 0.0) == {"query": {"match_none": {}}}


# -- what a document keeps ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs",))),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",)), max_size=6), children, max_size=3),
    max_leaves=12)
user_keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda k: k not in ("_id", "text", "title") and not any(k == r or k.startswith(r + ".") for r in
                                                     ("splade", "splade_packed", "splade_model", "ingested_at",
                                                      "splade_fingerprint")))


@given(st.dictionaries(user_keys, json_values, max_size=6), st.text(min_size=1).filter(str.strip),
       st.booleans())
def test_source_round_trips(extra, text, with_pipeline):
    record = {"_id": "d1", **extra, "text": text}
    doc = parse_line(json.dumps(record, ensure_ascii=False).encode("utf-8"), 1,
                     reserved=("splade", "splade_packed", "splade_model", "ingested_at", "splade_fingerprint"))
    assert isinstance(doc, Document), doc
    identity = ModelIdentity("m", "1", "default", "h", "f")
    lines = BulkLines("docs", "splade", ["a", "b", "c"])
    action = lines.document(doc.id, document_fields("p" if with_pipeline else None, identity)(doc),
                            SparseVector(np.array([1]), np.array([0.5], dtype=np.float32)))
    header, source, end = action.split(b"\n")  # NDJSON: only \n ends a line
    assert end == b""
    assert json.loads(header)["index"]["_id"] == "d1"
    stored = json.loads(source)
    added = {"splade", "splade_fingerprint"} if with_pipeline else OWN
    assert set(stored) - set(record) == added
    assert {k: v for k, v in stored.items() if k not in added} == {k: v for k, v in record.items() if k != "_id"}


def test_lines_that_cannot_be_kept_as_they_are_are_rejected():
    reserved = ("splade", "splade_packed", "splade_model", "ingested_at", "splade_fingerprint")
    for raw, reason in [(b'{"text": "a", "splade": {"x": 1}}', "field 'splade' is a name splade-os writes"),
                        (b'{"text": "a", "splade.x": 1}', "'splade.x' (inside 'splade')"),
                        (b'{"text": "a", "ingested_at": "2024"}', "field 'ingested_at'"),
                        (b'{"text": "a", "price": NaN}', "NaN is not a JSON value"),
                        (b'{"text": "a", "x": [{"y": "\\ud800"}]}', "field 'x.0.y' holds an unpaired surrogate")]:
        item = parse_line(raw, 9, reserved=reserved)
        assert isinstance(item, Rejected) and reason in item.reason, (raw, item)
    # A field called like a reserved one but not inside it is the user's.
    assert isinstance(parse_line(b'{"text": "a", "splade_score": 1, "splades": 2}', 1, reserved=reserved), Document)


def test_a_mapping_may_not_touch_splade_os_fields():
    assert IndexSettings(mapping={"mappings": MAPPING}).mapping == MAPPING
    for mapping, reason in [({"properties": {"splade": {"type": "keyword"}}}, "field 'splade' is splade-os's own"),
                            ({"properties": {"splade_model.name": {"type": "text"}}}, "'splade_model.name'"),
                            ({"properties": {"a": {"type": "text"}}, "_source": {}}, "'_source' cannot be set"),
                            ([1], "expected a JSON object")]:
        with pytest.raises(InputError, match=reason):
            IndexSettings(mapping=mapping)
    with pytest.raises(InputError, match="field 'vec' is splade-os's own"):
        IndexSettings(field="vec", mapping={"properties": {"vec": {"type": "float"}}})


# -- on both engines ------------------------------------------------------------------------------

def catalogue_lines(sample_dir: Path, n: int = 2000) -> list:
    """n product-like lines over Cranfield's texts (short), with many fields of mixed types."""
    cran = [json.loads(line) for line in open(sample_dir / "corpus.jsonl", encoding="utf-8")]
    lines = []
    for i in range(n):
        source = cran[i % len(cran)]
        lines.append({
            "_id": f"p{i}", "title": source["title"], "text": " ".join(source["text"].split()[:40]) + f" item {i}",
            "url": f"https://shop.invalid/p/{i}", "category": CATEGORIES[i % 5], "price": round(5 + (i * 37 % 400) / 10, 2),
            "published": f"20{20 + i % 6}-{1 + i % 12:02d}-{1 + i % 28:02d}", "tags": ["sale"] * (i % 4 == 0) + ["new"],
            "tenant": f"t{i % 7}", "in_stock": i % 3 != 0, "rating": i % 6, "dims": {"w": i % 50, "h": {"cm": i / 7}},
            "notes": None, "名前": f"製品 {i}", "authors": [{"name": "Ada", "ids": [i, i + 1]}], "ratio": 1e-7 * i})
    return lines


def write_jsonl(path: Path, records) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


@pytest.fixture(scope="module")
def catalogue(cluster, default_model, sample_dir, tmp_path_factory):
    """The 2,000-line catalogue ingested with a mapping; (index, lines by id, stats)."""
    folder = tmp_path_factory.mktemp("catalogue")
    lines = catalogue_lines(sample_dir)
    corpus = write_jsonl(folder / "catalogue.jsonl", lines)
    options = IngestOptions(index=IndexSettings(mapping=MAPPING), dead_letter=folder / "dead.jsonl",
                            checkpoint=folder / "checkpoint.json")
    stats = ingest(cluster, corpus, "catalogue", default_model, options=options, show_progress=False)
    yield cluster.index("catalogue"), {line["_id"]: line for line in lines}, stats
    cluster.request("DELETE", "/catalogue")  # the session's node has a small heap: give it back


def _sources(index, ids) -> dict:
    found = {}
    for start in range(0, len(ids), 500):
        docs = index.cluster.request("POST", f"/{index.name}/_mget", {"ids": ids[start:start + 500]})["docs"]
        found.update({doc["_id"]: doc["_source"] for doc in docs if doc.get("found")})
    return found


@pytest.mark.smoke
def test_every_field_of_every_line_is_kept(catalogue):
    index, lines, stats = catalogue
    assert (stats.indexed, stats.rejected, stats.count_after) == (2000, 0, 2000)
    sources = _sources(index, list(lines))
    assert len(sources) == 2000
    for doc_id, line in lines.items():
        source = sources[doc_id]
        assert set(source) - set(line) == OWN, doc_id
        assert {k: v for k, v in source.items() if k not in OWN} == {k: v for k, v in line.items() if k != "_id"}
    properties = index.mappings[index.name]["properties"]
    assert properties["category"]["type"] == "keyword" and properties["price"]["type"] == "float"
    assert properties["tenant"]["type"] == "text"  # the engine's dynamic mapping for the rest
    assert index.meta["title_field"] == "title" and index.meta["text_field"] == "text"


def _matches(line: dict, conditions) -> bool:
    for field, op, value in conditions:
        have = line[field]
        if op == "=" and not (value in have if isinstance(have, list) else have == value):
            return False
        if op == "!=" and have == value:
            return False
        if op in ("<", ">=") and ((have < value) != (op == "<")):
            return False
    return True


FILTERS = [
    (["category=books", "price<20"], [("category", "=", "books"), ("price", "<", 20)]),
    (["tenant=t3", "published>=2024-01-01"], [("tenant", "=", "t3"), ("published", ">=", "2024-01-01")]),
    (["in_stock=true", "rating>=4", "tags=sale"], [("in_stock", "=", True), ("rating", ">=", 4),
                                                   ("tags", "=", "sale")]),
    (["category!=books", {"range": {"dims.w": {"lt": 10}}}], [("category", "!=", "books"), ("dims_w", "<", 10)]),
]


def _line_view(line: dict) -> dict:
    return {**line, "dims_w": line["dims"]["w"]}


def _same_ranking(got, expected, k):
    """Same scores in the same order; the same ids wherever a score is not tied at the cut."""
    assert [round(h.score, 3) for h in got] == [round(h.score, 3) for h in expected[:k]]
    if len(got) == k and len(expected) > k:
        cut = expected[k - 1].score
        assert {h.id for h in got if h.score > cut + 1e-4} == {h.id for h in expected[:k] if h.score > cut + 1e-4}
    else:
        assert [h.id for h in got] == [h.id for h in expected[:k]]


@pytest.mark.smoke
@pytest.mark.parametrize("placement", ["beside", "conjunction", "post_filter"])
@pytest.mark.parametrize("filter, conditions", FILTERS)
def test_filtered_top_k_is_the_unfiltered_ranking_restricted(catalogue, filter, conditions, placement, monkeypatch):
    index, lines, _ = catalogue
    # Each place the filter can go (chosen by its share of the index), whatever its share here.
    share = {"beside": None, "conjunction": 0.0, "post_filter": 1.0}[placement]
    monkeypatch.setattr(index, "filter_share", lambda clauses: share)
    body = json.dumps(index.body(QUERIES[0], filter=filter))
    assert ("post_filter" in body, "constant_score" in body) == (placement == "post_filter", placement == "conjunction")
    for text in QUERIES:
        everything = index.search(text, k=2000)
        expected = [h for h in everything if _matches(_line_view(lines[h.id]), conditions)]
        got = index.search(text, k=10, filter=filter)
        assert got and all(h.score > 0 for h in got)
        _same_ranking(got, expected, 10)
        # Two-phase: a window covering the index gives the two-phase ranking restricted.
        phases = TwoPhase(tokens=3, window=2000)
        both = [h for h in index.search(text, k=2000, two_phase=phases) if _matches(_line_view(lines[h.id]), conditions)]
        _same_ranking(index.search(text, k=10, two_phase=phases, filter=filter), both, 10)


@pytest.mark.smoke
def test_filtered_hybrid_and_pruned_hits_all_match(catalogue):
    index, lines, _ = catalogue
    filter, conditions = FILTERS[0]
    for text in QUERIES:
        hits = index.search(text, k=20, hybrid=Hybrid(), filter=filter, source=["category", "price"])
        assert len(hits) == 20 and all(_matches(lines[h.id], conditions) for h in hits)
        assert all(h.source["category"] == "books" and h.source["price"] < 20 for h in hits)
        bm25 = index.request_search(index.bm25_body(text, 50, source=False, filter=filter))["hits"]["hits"]
        assert bm25 and all(_matches(lines[h["_id"]], conditions) for h in bm25)
        if index.cluster.engine.name == "elasticsearch":
            pruned = index.search(text, k=10, pruning=Pruning(), filter=filter)
            assert pruned and all(_matches(lines[h.id], conditions) for h in pruned)


def test_the_filter_goes_where_its_share_of_the_index_puts_it(catalogue):
    index, lines, _ = catalogue
    broad, narrow = ["in_stock=true"], ["category=books", "rating=5", "tenant=t3"]
    for conditions, expected in ((broad, [("in_stock", "=", True)]),
                                 (narrow, [("category", "=", "books"), ("rating", "=", 5), ("tenant", "=", "t3")])):
        share = index.filter_share(index.filter_clauses(conditions))
        assert share == sum(_matches(line, expected) for line in lines.values()) / len(lines)
    assert index.filter_share(index.filter_clauses(broad)) > POST_FILTER_SHARE > index.filter_share(
        index.filter_clauses(narrow)) > 0
    assert "post_filter" in index.body(QUERIES[0], filter=broad)
    assert "post_filter" not in index.body(QUERIES[0], filter=narrow)
    assert "constant_score" in index.body(QUERIES[0], filter=narrow)["query"]["bool"]["must"][1]
    assert index.filter_share(index.filter_clauses("category=none-such")) == 0.0


def test_a_filter_never_brings_in_documents_the_query_does_not_match(catalogue):
    index, lines, _ = catalogue
    # "nozzle" is in few documents' text; the filter matches a fifth of the index.
    matched = {h.id for h in index.search("nozzle", k=2000)}
    hits = index.search("nozzle", k=2000, filter="category=music")
    assert 0 < len(hits) < 400 and all(h.score > 0 for h in hits)
    assert {h.id for h in hits} == {i for i in matched if lines[i]["category"] == "music"}
    assert index.search("nozzle", k=10, filter="category=no-such-category") == []
    assert index.search("nozzle", k=10, hybrid=Hybrid(), filter="price>100000") == []


def test_hits_carry_the_fields_asked_for(catalogue):
    index, lines, _ = catalogue
    (hit,) = index.search(QUERIES[0], k=1, source=["url", "dims"])
    assert set(hit.source) == {"title", "text", "url", "dims"} and hit.source["url"] == lines[hit.id]["url"]
    (hit,) = index.search(QUERIES[0], k=1, source=True)
    assert set(hit.source) == set(lines[hit.id]) - {"_id"} | {"splade_model", "ingested_at"}
    assert hit.title == lines[hit.id]["title"]


def test_lines_the_index_cannot_take_are_dead_lettered_with_the_reason(cluster, default_model, tmp_path):
    good = {"_id": "a", "text": "boundary layer", "price": 12.5}
    corpus = write_jsonl(tmp_path / "conflicts.jsonl", [
        good, {"_id": "b", "text": "shock wave", "price": "n/a"}, {"_id": "c", "text": "wing", "splade": {"x": 1}},
        {"_id": "d", "text": "flow", "splade_model": "mine"}, {"_id": "e", "text": "heat", "price": 3}])
    dead = tmp_path / "dead.jsonl"
    stats = ingest(cluster, corpus, "conflicts", default_model, show_progress=False,
                   options=IngestOptions(index=IndexSettings(mapping=MAPPING), dead_letter=dead,
                                         checkpoint=tmp_path / "c.json"))
    assert (stats.indexed, stats.rejected) == (2, 3)
    reasons = {r["line"]: r["reason"] for r in map(json.loads, open(dead))}
    assert "price" in reasons[2] and "rejected the document (HTTP 400)" in reasons[2]
    assert "field 'splade' is a name splade-os writes itself" in reasons[3]
    assert "field 'splade_model'" in reasons[4]


def test_role_fields_stay_the_users_own(cluster, default_model, sample_dir, tmp_path):
    lines = [{"sku": f"s{i}", "name": line["title"], "body": line["text"], "brand": "acme"}
             for i, line in enumerate(catalogue_lines(sample_dir, 60))]
    corpus = write_jsonl(tmp_path / "own.jsonl", lines)
    options = IngestOptions(fields=CorpusFields("sku", "body", "name"), dead_letter=tmp_path / "dead.jsonl",
                            checkpoint=tmp_path / "c.json")
    assert ingest(cluster, corpus, "own-fields", default_model, options=options, show_progress=False).indexed == 60
    index = cluster.index("own-fields")
    assert (index.title_field, index.text_field) == ("name", "body")
    source = _sources(index, ["s3"])["s3"]
    assert "text" not in source and "title" not in source and source["body"] == lines[3]["body"]
    hits = index.search(lines[3]["body"], k=3)
    assert hits[0].id == "s3" and hits[0].text == lines[3]["body"] and hits[0].title == lines[3]["name"]
    assert index.search(lines[3]["name"], k=3, hybrid=Hybrid())[0].id == "s3"  # BM25 reads name and body
    # Ingesting into it again reads the recorded fields; other ones are refused.
    again = IngestOptions(fields=CorpusFields("sku"), dead_letter=tmp_path / "d2.jsonl", checkpoint=tmp_path / "c2.json")
    assert ingest(cluster, corpus, "own-fields", default_model, options=again, show_progress=False).rejected == 0
    with pytest.raises(InputError, match="reads its text from field 'body', not 'text'"):
        ingest(cluster, corpus, "own-fields", default_model, show_progress=False,
               options=IngestOptions(fields=CorpusFields("sku", "text"), checkpoint=tmp_path / "c3.json"))


def test_reindex_and_alias_generations_keep_fields_and_mapping(cluster, default_model, sample_dir, tmp_path):
    from splade_os.cluster.reindex import reindex

    lines = catalogue_lines(sample_dir, 40)
    corpus = write_jsonl(tmp_path / "small.jsonl", lines)
    options = IngestOptions(index=IndexSettings(mapping=MAPPING), dead_letter=tmp_path / "dead.jsonl",
                            checkpoint=tmp_path / "a.json")
    ingest(cluster, corpus, None, default_model, alias="shop", options=options, show_progress=False)
    options = IngestOptions(dead_letter=tmp_path / "dead.jsonl", checkpoint=tmp_path / "b.json")
    ingest(cluster, corpus, None, default_model, alias="shop", options=options, show_progress=False)
    newest = cluster.index(cluster.index("shop").name)
    concrete = next(iter(newest.mappings))
    assert newest.mappings[concrete]["properties"]["category"]["type"] == "keyword"  # inherited, not dynamic
    # shop -> a copy that keeps no features in _source (vectors copied) -> a copy of that (encoded again).
    for source, target, method, settings in (("shop", "shop-bare", "copied vectors",
                                              IndexSettings(source_features="none")),
                                             ("shop-bare", "shop-again", "encoded again", None)):
        stats = reindex(cluster, source, target, settings, show_progress=False)
        assert stats.method == method and stats.documents == 40
        copy = cluster.index(target)
        assert copy.mappings[target]["properties"]["price"]["type"] == "float"
        sources = _sources(copy, [line["_id"] for line in lines])
        for line in lines:
            kept = {k: v for k, v in sources[line["_id"]].items() if k not in OWN}
            assert kept == {k: v for k, v in line.items() if k != "_id"}, (method, line["_id"])


@pytest.mark.smoke
def test_a_mapping_the_engine_refuses_leaves_nothing_behind(cluster, default_model, sample_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", catalogue_lines(sample_dir, 5))
    settings = IndexSettings(mapping={"properties": {"price": {"type": "flaot"}}})
    with pytest.raises(ClusterError, match="flaot"):
        ingest(cluster, corpus, "refused-mapping", default_model, show_progress=False,
               options=IngestOptions(index=settings, checkpoint=tmp_path / "c.json"))
    assert not cluster.exists("/refused-mapping")
    with pytest.raises(ClusterError) as missing:
        cluster.request("GET", "/_ingest/pipeline/splade-os-refused-mapping")
    assert missing.value.status == 404


def test_cli_filters_and_fields(catalogue):
    index, lines, _ = catalogue
    from click.testing import CliRunner

    from splade_os.cli import cli

    args = ["-q", "search", QUERIES[1], "--index", index.name, "--url", index.cluster.url, "-k", "5"]
    result = CliRunner().invoke(cli, args + ["--filter", "category=books", "--filter", "price<20",
                                             "--fields", "price,category", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert len(hits) == 5 and all(h["source"]["category"] == "books" and h["source"]["price"] < 20 for h in hits)
    result = CliRunner().invoke(cli, args + ["--filter-json", '{"terms": {"category": ["toys"]}}', "--fields", "price"])
    assert result.exit_code == 0 and len(result.output.splitlines()) == 5
    assert all(f"price={lines[line.split()[2]]['price']}" in line for line in result.output.splitlines())
    result = CliRunner().invoke(cli, args + ["--filter", "category=none-such"])
    assert (result.exit_code, result.output) == (0, "no hits\n")
    body = json.loads(CliRunner().invoke(cli, ["-q", "query", "lift", "--index", index.name, "--url", index.cluster.url,
                                               "--filter", "tenant=t3"]).output)
    # A seventh of the index: a post_filter, the query as it is unfiltered.
    assert body["post_filter"] == {"bool": {"filter": [{"term": {"tenant.keyword": "t3"}}]}}
    assert "filter" not in body["query"]["bool"]


def test_cli_refuses_bad_filters_and_mappings_in_one_line(tmp_path):
    from click.testing import CliRunner

    from splade_os.cli import cli

    unreachable = ["--url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(cli, ["-q", "search", "lift", "--index", "x", *unreachable, "--filter", "price<"])
    assert result.exit_code == 2 and "filter 'price<': no value after '<'" in result.output
    result = CliRunner().invoke(cli, ["-q", "search", "lift", "--index", "x", *unreachable, "--filter-json", "{"])
    assert result.exit_code == 2 and "not valid JSON" in result.output
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": "a"}])
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    result = CliRunner().invoke(cli, ["-q", "ingest", str(corpus), "--index", "x", *unreachable,
                                      "--mapping", str(tmp_path / "bad.json")])
    assert result.exit_code == 2 and "bad.json: not valid JSON" in result.output
    (tmp_path / "own.json").write_text('{"properties": {"splade_model": {"type": "keyword"}}}', encoding="utf-8")
    result = CliRunner().invoke(cli, ["-q", "ingest", str(corpus), "--index", "x", *unreachable,
                                      "--mapping", str(tmp_path / "own.json")])
    # Refused before the cluster is asked anything (the URL does not answer).
    assert result.exit_code == 1 and result.output == (
        "Error: mapping: field 'splade_model' is splade-os's own ('splade_model', docs/documents.md); leave it out "
        "of the mapping\n")
