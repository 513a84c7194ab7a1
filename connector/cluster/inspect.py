"""The inspection page (`splade-os ui`): BM25, SPLADE and hybrid side by side for one query.

`make_app(index, judged)` builds a Flask app (the `ui` extra) with three pages:

- `/`: a search box, and with judged queries a list of them, each opening its results;
- `/search?q=...`: the top 10 of BM25, SPLADE and hybrid for the query, in three columns. Each
  hit has its title and a snippet of its text with the query's tokens marked (the index's query
  encoder's own tokens, matched on the document's token ids), the tokens that made its SPLADE
  score (query weight x document weight, `splade_os.cluster.explain`), and the expansion terms
  among them (tokens the document's text never says). With judged queries (the query found by
  its text), the relevant hits are marked and each column has its graded nDCG@10 (ir_measures,
  as `eval` computes it). The server-side time is on the page and in an `X-Search-Ms` header;
- `/doc/<id>`: a document's fields and its stored vector's largest weights.

A query costs two requests: one `_msearch` (BM25 and SPLADE at the hybrid depth, which the
hybrid column fuses as `search --hybrid` does) and one for every hit's explanation.
"""

import bisect
import json
import time
from typing import Dict, List, Optional, Tuple

from splade_os.cluster.explain import explain_hits, untruncated_tokenizer
from splade_os.common.errors import SpladeOSError
from splade_os.common.extras import require
from splade_os.documents.vectors import unpack
from splade_os.query.hits import Hit
from splade_os.query.hybrid import Hybrid, fuse, hit_lists

K = 10
COLUMNS = ("BM25", "SPLADE", "hybrid")
SNIPPET_TOKENS = 48  # the window of the text with the most query tokens
SHOWN_PARTS = 8  # contributions listed per hit; the rest summed
TOP_TOKENS = 60  # a document page's largest stored weights
LIGHT = 0.25  # a query token under this share of the query's largest weight is marked lightly

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ query or title or 'splade-os' }} · splade-os ui</title><style>
body{font:13px/1.4 system-ui,sans-serif;margin:10px 16px;color:#222}
form{margin:0 0 8px}input[name=q]{width:560px;font-size:14px;padding:3px}
.grid{display:grid;grid-template-columns:repeat(3,1fr);gap:12px}
.column h2{font-size:15px;margin:4px 0;border-bottom:2px solid #888}
.hit{border:1px solid #ddd;border-radius:4px;padding:4px 6px;margin:0 0 6px}.relevant{border-left:5px solid #2a2}
.hit a.title{font-weight:600}.meta{color:#666;font-size:11px}.rel{color:#171;font-weight:600}
mark{background:#fe6;padding:0}mark.light{background:#fdf6d0}.snippet{margin:2px 0}.expansion{color:#a40}
table{border-collapse:collapse;font-size:11px}td{padding:0 5px 0 0}.muted{color:#777}
</style></head><body>
<form action="{{ url_for('search') }}" method="get"><a href="{{ url_for('home') }}">splade-os ui</a> ·
index <b>{{ index_name }}</b> · <input name="q" value="{{ query or '' }}" placeholder="a query" autofocus>
<button type="submit">Search</button></form>
{% if error %}<p class="rel" style="color:#b00">{{ error }}</p>{% endif %}
{% if columns %}
<p class="meta">server-side {{ '%.1f'|format(ms) }} ms{% if qid %} · judged query {{ qid }}{% endif %}
{% if judged and not qid %} · not a judged query{% endif %}</p>
<div class="grid">{% for name, hits in columns.items() %}<section class="column" id="col-{{ name }}">
<h2>{{ name }}{% if name in ndcg %} <span class="ndcg">nDCG@10 {{ '%.3f'|format(ndcg[name]) }}</span>{% endif %}</h2>
{% for hit in hits %}<article class="hit{% if hit.id in relevant %} relevant{% endif %}">
<a class="title" href="{{ url_for('document', doc_id=hit.id) }}">{{ loop.index }}. {{ marked[hit.id][0] }}</a>
<div class="meta">id {{ hit.id }} · score {{ '%.4f'|format(hit.score) }}
{% if hit.id in relevant %}· <span class="rel">relevant (grade {{ relevant[hit.id] }})</span>{% endif %}</div>
<div class="snippet">{{ marked[hit.id][1] }}</div>
{% set extra = hit.explanation|rejectattr('in_text')|map(attribute='token')|list %}
{% if extra %}<div class="expansion">expansion: {{ extra|join(', ') }}</div>{% endif %}
<table class="explanation">{% for p in hit.explanation[:shown] %}<tr{% if not p.in_text %} class="expansion"{% endif %}>
<td>{{ p.token }}</td><td>{{ '%.2f'|format(p.query_weight) }} × {{ '%.2f'|format(p.document_weight) }}</td>
<td>= {{ '%.3f'|format(p.product) }}</td></tr>{% endfor %}
<tr class="muted"><td colspan="3">{{ hit.explanation|length }} token(s), SPLADE sum
{{ '%.3f'|format(hit.explanation|sum(attribute='product')) }}</td></tr></table>
</article>{% else %}<p class="muted">no hits</p>{% endfor %}</section>{% endfor %}</div>
{% elif fields is not none %}
<h1 style="font-size:17px">{{ title }}</h1><p class="meta">document {{ doc_id }}</p><table class="fields">
{% for name, value in fields %}<tr><td><b>{{ name }}</b></td><td>{{ value }}</td></tr>{% endfor %}</table>
<h2 style="font-size:15px">Top tokens</h2>{% if tokens %}<table class="tokens">
{% for token, weight, in_text in tokens %}<tr{% if not in_text %} class="expansion"{% endif %}><td>{{ token }}</td>
<td>{{ '%.3f'|format(weight) }}</td><td class="muted">{{ 'text' if in_text else 'expansion' }}</td></tr>{% endfor %}
</table>{% else %}<p class="muted">the index keeps no vectors in _source</p>{% endif %}
{% elif judged %}<form action="{{ url_for('search') }}" method="get">Judged queries:
<select name="q">{% for qid, text in judged %}<option value="{{ text }}">{{ qid }}: {{ text }}</option>{% endfor %}
</select> <button type="submit">Open</button></form>{% endif %}
</body></html>"""


def search_columns(index, encoder, text: str, hybrid: Optional[Hybrid] = None, k: int = K) -> Dict[str, List[Hit]]:
    """{column: its top `k` hits, explained}: one `_msearch` (BM25 and SPLADE at the fused depth)
    and one request for the explanations of every hit of the three columns; `hybrid`: the
    index's fusion unless given."""
    hybrid = index.fusion(hybrid)
    answer = index.request_msearch(index.hybrid_bodies(text, k, encoder, hybrid=hybrid))
    bm25, splade = hit_lists(answer, index.name, 2)
    roles = (index.title_field, index.text_field)
    columns = {"BM25": [Hit.from_engine(h, *roles) for h in bm25[:k]],
               "SPLADE": [Hit.from_engine(h, *roles) for h in splade[:k]],
               "hybrid": [Hit.from_engine(dict(h, _score=s), *roles) for h, s in fuse(bm25, splade, hybrid, k)]}
    unique = list({hit.id: hit for hits in columns.values() for hit in hits}.values())
    explain_hits(index, text, unique, encoder)
    explanations = {hit.id: hit.explanation or [] for hit in unique}
    for hits in columns.values():
        for hit in hits:
            hit.explanation = explanations[hit.id]
    return columns


def highlighted(text: str, tokenizer, weights: Dict[int, float], window: Optional[int] = None):
    """`text` as escaped markup, each query token (`weights`: {token id: query weight}) in `<mark>`
    (`<mark class="light">` under `LIGHT` of the largest weight); with `window`, only the `window`
    tokens holding the most of them, widened to whole words (an ellipsis marks what is left out)."""
    from markupsafe import Markup, escape

    encoding = tokenizer.encode(text, add_special_tokens=False)
    spans, words, ids = encoding.offsets, encoding.word_ids, encoding.ids
    found = [i for i, token in enumerate(ids) if token in weights]
    if not spans:
        return escape(text)
    start, end = 0, len(spans)
    if window and end > window:
        start = max(range(end - window + 1),
                    key=lambda s: (bisect.bisect_left(found, s + window) - bisect.bisect_left(found, s), -s))
        end = start + window
        while start and words[start] == words[start - 1]:
            start -= 1
        while end < len(spans) and words[end] == words[end - 1]:
            end += 1
    first, last = spans[start][0] if start else 0, spans[end - 1][1] if end < len(spans) else len(text)
    heavy = LIGHT * max(weights.values(), default=0.0)
    marks: List[Tuple[int, int, bool]] = []
    for i in (i for i in found if start <= i < end):
        light = weights[ids[i]] < heavy
        if marks and spans[i][0] == marks[-1][1] and light == marks[-1][2]:  # a word's pieces: one mark
            marks[-1] = (marks[-1][0], spans[i][1], light)
        else:
            marks.append((*spans[i], light))
    out, at = [Markup("… ") if first else Markup("")], first
    for low, high, light in marks:
        out += [escape(text[at:low]), Markup('<mark class="light">' if light else "<mark>"), escape(text[low:high]),
                Markup("</mark>")]
        at = high
    out += [escape(text[at:last]), Markup(" …") if last < len(text) else Markup("")]
    return Markup("").join(out)


def ndcg_at_10(grades: Dict[str, int], hits: List[Hit]) -> float:
    """The graded nDCG@10 of one ranking (ir_measures, scored by rank as `eval` does)."""
    import ir_measures
    from ir_measures import nDCG

    run = {"q": {hit.id: float(len(hits) - rank) for rank, hit in enumerate(hits)}}
    return float(ir_measures.calc_aggregate([nDCG @ 10], {"q": dict(grades)}, run)[nDCG @ 10])


def _key(text: str) -> str:
    return " ".join(text.split())


def document_view(index, encoder, doc_id: str) -> Optional[dict]:
    """The template values of a document's page (its fields, its largest stored weights); None if absent."""
    docs = index.cluster.request("POST", f"/{index.name}/_mget", {"ids": [doc_id]},
                                 action=f"reading document {doc_id!r} of {index.name!r}")["docs"]
    if not docs or not docs[0].get("found"):
        return None
    source = docs[0].get("_source") or {}
    vector = source.get(index.field)
    packed = source.get(index.packed_field) if index.packed_field else None
    if isinstance(packed, str):
        ids, values = unpack(packed)
        vector = {encoder.keys[i]: float(v) for i, v in zip(ids.tolist(), values.tolist())}
    names = dict(zip(encoder.keys, encoder.tokens))
    title, text = (source.get(name) for name in (index.title_field, index.text_field))
    content = " ".join(str(part) for part in (title, text) if part)
    in_text = {encoder.keys[i] for i in untruncated_tokenizer(encoder).encode(content, add_special_tokens=False).ids}
    top = sorted((vector or {}).items(), key=lambda item: (-float(item[1]), item[0]))[:TOP_TOKENS]
    reserved = set(index.reserved_fields)
    fields = [(name, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
              for name, value in source.items() if name not in reserved]
    return {"doc_id": doc_id, "title": title or doc_id, "fields": fields,
            "tokens": [(names.get(key, key), float(weight), key in in_text) for key, weight in top]}


def make_app(index, judged: Optional[Tuple[Dict[str, str], Dict[str, Dict[str, int]]]] = None):
    """The Flask app of the inspection page for `index` (see the module docstring).

    Args:
        index: a `SpladeIndex`; its query side is read from the cluster once, here.
        judged: (queries {id: text}, qrels {query id: {document id: grade}}), e.g. the first two
            values of `splade_os.corpus.beir.load_beir`; None: no judgments shown.
    """
    require("ui", "the inspection page (splade-os ui)")
    if judged:
        require("encode", "nDCG@10 of judged queries (--beir)")
    from flask import Flask, abort, make_response, redirect, render_template_string, request, url_for

    encoder = index.query_encoder()
    queries, qrels = judged or ({}, {})
    by_text: Dict[str, str] = {}
    for qid, text in queries.items():
        by_text.setdefault(_key(text), qid)
    listed = [(qid, text) for qid, text in queries.items() if qid in qrels]
    app = Flask(__name__)

    def page(**values):
        defaults = dict(index_name=index.name, judged=listed, shown=SHOWN_PARTS, query=None, title=None, columns=None,
                        fields=None, error=None)
        return render_template_string(PAGE, **{**defaults, **values})

    @app.get("/")
    def home():
        return page()

    @app.get("/search")
    def search():
        started = time.perf_counter()
        text = request.args.get("q", "")
        if not text.strip():
            return redirect(url_for("home"))
        try:
            columns = search_columns(index, encoder, text)
        except SpladeOSError as error:
            return page(query=text, error=str(error)), 502
        qid = by_text.get(_key(text))
        grades = qrels.get(qid, {}) if qid else {}
        relevant = {doc: grade for doc, grade in grades.items() if grade > 0}
        ndcg = {name: ndcg_at_10(grades, hits) for name, hits in columns.items()} if relevant else {}
        wanted, tokenizer = encoder.weights(text), untruncated_tokenizer(encoder)
        marked = {hit.id: (highlighted(hit.title or hit.id, tokenizer, wanted),
                           highlighted(hit.text, tokenizer, wanted, SNIPPET_TOKENS))
                  for hits in columns.values() for hit in hits}
        ms = (time.perf_counter() - started) * 1000
        response = make_response(page(query=text, columns=columns, qid=qid, relevant=relevant, ndcg=ndcg,
                                      marked=marked, ms=ms))
        response.headers["X-Search-Ms"] = f"{(time.perf_counter() - started) * 1000:.1f}"
        return response

    @app.get("/doc/<path:doc_id>")
    def document(doc_id):
        values = document_view(index, encoder, doc_id)
        if values is None:
            abort(404)
        return page(**values)

    return app
