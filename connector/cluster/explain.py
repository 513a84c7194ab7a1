"""Why a document matched: the tokens that made a hit's score (`search --explain`).

A SPLADE score is a sum over the tokens the query and the document share: query weight x document
weight. A hit's explanation lists those products, largest first, and marks each token as in the
document's own text or an expansion term the model added. It is computed with one request for all
the hits of a search, never one per hit:

- the index keeps the vectors in `_source` (`source_features` "map" or "packed"): the search itself
  brings them (`with_vectors`: the vector field added to the body's `_source`), or, for a hybrid
  search, one `_mget` of the hits' vectors; multiplied here by the weights the body sent;
- it keeps none ("none"): the SPLADE body again, restricted to the hits' ids, with `explain`
  on; each clause's stored document weight is read from the engine's explanation.

The products add up to the SPLADE score, within the engines' rounding: both store a feature's
weight with 9 significant bits (Lucene's `FeatureField`) and the `_source` map holds the float the
client sent, so a product from the map can differ from the engine's by up to 0.4%. A hybrid hit's
score is the fused score; its explanation is still its SPLADE dot product.
"""

import re
from typing import Dict, List, Optional

from splade_os.documents.vectors import unpack
from splade_os.query.bodies import weighted_terms
from splade_os.query.filters import restricted
from splade_os.query.hits import Hit, as_text, contributions


def with_vectors(index, body: dict) -> dict:
    """A search body whose hits also bring their stored vector in `_source` (no extra request)."""
    wanted = [index.packed_field or index.field]
    source = body.get("_source")
    if source is False:
        return {**body, "_source": wanted}
    if isinstance(source, list):
        return {**body, "_source": list(dict.fromkeys(source + wanted))}
    return {**body, "_source": {"excludes": []}} if isinstance(source, dict) else body


def explain_hits(index, text: str, hits: List[Hit], encoder, max_clauses: Optional[int] = None,
                 sources: Optional[Dict[str, dict]] = None) -> List[Hit]:
    """`hits` (of a search of `index` for `text`) with their `explanation` set; see the module docstring.

    `sources`: {id: `_source`} of the hits holding their stored vectors (a body made by
    `with_vectors`); the vector is then taken out of `Hit.source`. Else they are read with one request.
    """
    if not hits:
        return hits
    weights = encoder.weights(text)
    terms = dict(weighted_terms(weights, encoder.keys, max_clauses or index.cluster.max_clause_count))
    tokens = {encoder.keys[i]: encoder.tokens[i] for i in weights}
    ids = [hit.id for hit in hits]
    if sources is not None:
        vectors = {doc_id: _vector(index, source, encoder.keys) for doc_id, source in sources.items()}
        texts = {hit.id: (hit.title, hit.text) for hit in hits}
        for hit in hits:
            for name in (index.field, index.packed_field):
                hit.source.pop(name, None)
    elif index.source_features == "none":
        vectors = _engine_shares(index, text, ids, terms, encoder)
        texts = {hit.id: (hit.title, hit.text) for hit in hits}
    else:
        vectors, texts = _stored_vectors(index, ids, encoder.keys)
    untruncated = untruncated_tokenizer(encoder)
    for hit in hits:
        title, body = texts.get(hit.id, (hit.title, hit.text))
        content = f"{title} {body}" if title else body
        text_keys = {encoder.keys[i] for i in untruncated.encode(content, add_special_tokens=False).ids}
        hit.explanation = contributions(terms, vectors.get(hit.id, {}), text_keys, tokens)
    return hits


def _stored_vectors(index, ids: List[str], keys) -> tuple:
    """({id: {key: weight}}, {id: (title, text)}) from one `_mget` of the hits' stored vectors."""
    field = index.packed_field or index.field
    wanted = ",".join(dict.fromkeys([field, index.title_field, index.text_field]))
    docs = index.cluster.request("POST", f"/{index.name}/_mget", {"ids": ids}, params={"_source_includes": wanted},
                                 action=f"reading the vectors of {index.name!r}'s hits")["docs"]
    vectors, texts = {}, {}
    for doc in docs:
        source = doc.get("_source") or {}
        vectors[doc["_id"]] = _vector(index, source, keys)
        texts[doc["_id"]] = (as_text(source.get(index.title_field)), as_text(source.get(index.text_field)))
    return vectors, texts


def _vector(index, source: dict, keys) -> Dict[str, float]:
    """{key: weight} of the vector a `_source` keeps: the feature map, or its packed copy."""
    stored = source.get(index.packed_field or index.field)
    if index.packed_field and isinstance(stored, str):
        found_ids, values = unpack(stored)
        return {keys[i]: float(v) for i, v in zip(found_ids.tolist(), values.tolist())}
    return stored if isinstance(stored, dict) else {}


def _engine_shares(index, text: str, ids: List[str], terms: Dict[str, float], encoder) -> Dict[str, Dict[str, float]]:
    """{id: {key: document weight}} read from the engine's explanation of the SPLADE body, restricted to `ids`."""
    # A handful of ids: the filter belongs in the query (no share to count).
    body = restricted(index.body(text, len(ids), encoder, source=False), [{"ids": {"values": ids}}])
    body["explain"] = True
    answer = index.request_search(body)
    shares = {}
    for hit in answer["hits"]["hits"]:
        found: Dict[str, float] = {}
        _walk(hit.get("_explanation") or {}, index.field, terms, found)
        shares[hit["_id"]] = found
    return shares


# Lucene's FeatureField explains a linear clause (both engines, `rank_feature` and a `term` on
# `sparse_vector`) as "Linear function on the <field> field for the <key> feature, computed as
# w * S from:", with "S, feature value" (the stored weight) among its details.
_FEATURE = re.compile(r"on the (\S+) field for the (\S+) feature")


def _walk(node: dict, field: str, terms: Dict[str, float], found: Dict[str, float]) -> None:
    """Record the document weight of each query key that an explanation node names."""
    match = _FEATURE.search(node.get("description", ""))
    if match and match.group(1) == field and match.group(2) in terms:
        stored = [d for d in node.get("details", []) or [] if str(d.get("description", "")).startswith("S,")]
        value = float(stored[0]["value"]) if stored else float(node.get("value", 0.0)) / terms[match.group(2)]
        found.setdefault(match.group(2), value)
        return
    for child in node.get("details", []) or []:
        _walk(child, field, terms, found)


def untruncated_tokenizer(encoder):
    """The query tokenizer without truncation (a document's text is longer than a query), made once."""
    copy = getattr(encoder, "_explain_tokenizer", None)
    if copy is None:
        from tokenizers import Tokenizer

        copy = Tokenizer.from_str(encoder.tokenizer.to_str())
        copy.no_truncation()
        copy.no_padding()
        encoder._explain_tokenizer = copy
    return copy
