"""Filters: restrict a search to the documents that match conditions, without changing a score.

A filter is any engine query used in filter context (`bool.filter`: it matches or not, and adds
nothing to the score), or a condition in a small syntax for the common cases:

| condition | engine query |
|---|---|
| `category=books` | `term` (a `text` field: its `keyword` sub-field, else `match_phrase`) |
| `category!=books` | `bool.must_not` of the same |
| `price<20`, `price<=20`, `published>=2024-01-01`, `rating>4` | `range` |

Values are sent as strings; the engines read them as the field's type (numbers, dates,
booleans). Several conditions are ANDed.

Where the filter goes (`restricted`) depends on how much of the index it lets through, which
`SpladeIndex.filter_share` counts once per filter:

- 5% of the index or more (`POST_FILTER_SHARE`): the SPLADE query is sent as it is unfiltered,
  the filter as the body's `post_filter`. Hits failing it are dropped as they are collected, so
  the top k is exact, and the query keeps the block skipping it has unfiltered, which a filter
  in the query narrows.
- Narrower: a conjunction of two required clauses, the SPLADE query and the filter scoring 0
  (`{"bool": {"must": [query, {"constant_score": {"filter": ..., "boost": 0}}]}}`). Lucene
  runs it with its block-max conjunction: the filter leads, and blocks whose best possible score
  cannot enter the top k are skipped. Scores are the query's (plus 0).
- Share unknown (as in `QueryEncoder.to_dsl`, or explain's handful of ids): beside the SPLADE
  query's `should` clauses, with `"minimum_should_match": 1` (without it a bool with a `filter`
  clause makes its `should` clauses optional, and documents matching none of the query's tokens
  would come back with score 0 just for passing the filter). The least slow place when the
  share can be anything: 1.0-1.1x the unfiltered p50 for a narrow filter, 1.5-2x for a broad one,
  where the conjunction costs up to 2.4x.

Any other query (BM25's `multi_match`, a pruned `sparse_vector`) is nested:
`{"bool": {"must": [query], "filter": [...]}}`. Every way, a hit must match the query and the
filter, with the query's score (measured in benchmarks/README.md, bench_filter.py).

Example:
    >>> filter_clauses(["category=books", "price<20"])
    [{'term': {'category': 'books'}}, {'range': {'price': {'lt': '20'}}}]
"""

import json
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from splade_os.common.errors import InputError

OPERATORS = ("!=", "<=", ">=", "=", "<", ">")
RANGES = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
_CONDITION = re.compile(r"^\s*([^=<>!]*?)\s*(!=|<=|>=|=|<|>)\s*(.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Condition:
    """One `FIELD OP VALUE` condition (see the module docstring)."""

    field: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"

    def query(self, field_types: Optional[Dict[str, dict]] = None) -> dict:
        """The engine query for this condition; `field_types` (`SpladeIndex.field_types`) picks the
        `keyword` sub-field of a `text` field for `=` and `!=`."""
        if self.op in RANGES:
            return {"range": {self.field: {RANGES[self.op]: self.value}}}
        equal = _equality(self.field, self.value, (field_types or {}).get(self.field))
        return equal if self.op == "=" else {"bool": {"must_not": [equal]}}


def _equality(field: str, value: str, mapped: Optional[dict]) -> dict:
    if mapped and mapped.get("type") == "text":
        keyword = next((name for name, sub in (mapped.get("fields") or {}).items() if sub.get("type") == "keyword"),
                       None)
        if keyword:
            return {"term": {f"{field}.{keyword}": value}}
        return {"match_phrase": {field: value}}  # a text field alone: the value as a phrase of its words
    return {"term": {field: value}}


def parse_condition(text: str) -> Condition:
    """`FIELD OP VALUE` as a `Condition`.

    Raises:
        InputError: no operator, an empty field or an empty value.
    """
    found = _CONDITION.match(text)
    if not found:
        raise InputError(f"filter {text!r}: expected FIELD OP VALUE with OP one of {' '.join(OPERATORS)}, "
                         "e.g. category=books or price<20")
    field, op, value = found.groups()
    if not field:
        raise InputError(f"filter {text!r}: no field name before {op!r}")
    if not value:
        raise InputError(f"filter {text!r}: no value after {op!r}")
    if value.startswith("=") or (op in RANGES and any(c in value for c in "<>=")):
        raise InputError(f"filter {text!r}: one operator per condition (FIELD OP VALUE)")
    return Condition(field, op, value)


def parse_filter_json(text: str) -> List[dict]:
    """An engine query (a JSON object) or a list of them, given as JSON text, as filter clauses.

    Raises:
        InputError: not JSON, or not an object or a list of objects.
    """
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InputError(f"filter JSON {text[:60]!r}: not valid JSON ({e})") from None
    clauses = value if isinstance(value, list) else [value]
    if not clauses or not all(isinstance(c, dict) and c for c in clauses):
        raise InputError(f"filter JSON {text[:60]!r}: expected an engine query (a JSON object) or a list of them")
    return clauses


def filter_clauses(filter, field_types: Optional[Dict[str, dict]] = None) -> List[dict]:
    """Filter clauses for `bool.filter` from None, a condition string, a `Condition`, an engine
    query (a dict), or a list of these (ANDed).

    Raises:
        InputError: a malformed condition, or something that is none of these.
    """
    if filter is None:
        return []
    items = filter if isinstance(filter, (list, tuple)) else [filter]
    clauses = []
    for item in items:
        if isinstance(item, str):
            item = parse_condition(item)
        if isinstance(item, Condition):
            clauses.append(item.query(field_types))
        elif isinstance(item, dict) and item:
            clauses.append(item)
        else:
            raise InputError(f"filter {item!r}: expected a condition like 'price<20' or an engine query (a dict)")
    return clauses


# A filter matching at least this share of the index restricts a SPLADE query as the body's
# `post_filter`; a narrower one goes in the query as a conjunction. Measured on both engines
# (benchmarks/bench_filter.py, benchmarks/README.md section 7): the two places cross between 3%
# and 7.5% of the index.
POST_FILTER_SHARE = 0.05


def all_of(clauses: List[dict]) -> dict:
    """One query matching the documents that match every clause (scoring nothing)."""
    return {"bool": {"filter": list(clauses)}}


def _disjunction(query: dict) -> Optional[list]:
    """The `should` clauses of a pure disjunction (a SPLADE query), else None."""
    inner = query.get("bool")
    if isinstance(inner, dict) and set(inner) == {"should"} and inner["should"]:
        return inner["should"]
    return None


def filtered(query: dict, clauses: List[dict]) -> dict:
    """`query` restricted to documents matching every clause, its scores unchanged."""
    if not clauses or "match_none" in query:
        return query
    should = _disjunction(query)
    if should is not None:
        # The filter beside the query's clauses, one of which must still match.
        return {"bool": {"should": should, "filter": list(clauses), "minimum_should_match": 1}}
    return {"bool": {"must": [query], "filter": list(clauses)}}


def conjunction(query: dict, clauses: List[dict]) -> dict:
    """`query` and the filter as two required clauses, the filter scoring 0: the query's scores,
    and Lucene's block-max conjunction (a `filter` clause would be inlined beside the query's
    `should` clauses instead, which Lucene checks document by document)."""
    if not clauses or "match_none" in query:
        return query
    only = clauses[0] if len(clauses) == 1 else all_of(clauses)
    return {"bool": {"must": [query, {"constant_score": {"filter": only, "boost": 0}}]}}


def restricted(body: dict, clauses: List[dict], share: Optional[float] = None) -> dict:
    """A search `body` whose hits must also match every clause, their scores unchanged.

    `share`: the share of the index the clauses match, when known. For a SPLADE query (a pure
    disjunction) it picks the place (see the module docstring): `post_filter` from
    `POST_FILTER_SHARE` up (a rescore, as in two-phase search, re-scores the post-filtered hits),
    a `conjunction` below it, `filtered` (beside the query's clauses) when unknown. Any other
    query is nested under `must` beside the filter.
    """
    if not clauses or "match_none" in body["query"]:
        return body
    if share is not None and _disjunction(body["query"]) is not None:
        if share >= POST_FILTER_SHARE:
            return {**body, "post_filter": all_of(clauses)}
        return {**body, "query": conjunction(body["query"], clauses)}
    return {**body, "query": filtered(body["query"], clauses)}


def mapped_fields(properties: dict, prefix: str = "") -> Dict[str, dict]:
    """{dotted field path: its mapping} of a mapping's `properties`, objects flattened."""
    flat: Dict[str, dict] = {}
    for name, mapping in (properties or {}).items():
        path = prefix + name
        if not isinstance(mapping, dict):
            continue
        flat[path] = mapping
        if "properties" in mapping:
            flat.update(mapped_fields(mapping["properties"], path + "."))
    return flat
