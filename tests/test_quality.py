"""Hybrid search, long documents, pruning, the packed `_source` copy, re-indexing and the corpus's
own IDF table, against a real node with the bundled model's real weights.

One small corpus (the first 200 Cranfield documents, plus one long document whose last words come
after token 2,000) is encoded once; every index variant is built from it by `ingest`.
"""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from splade_os.cli import cli
from splade_os.common.errors import IndexStateError
from splade_os.evaluate import exact_doc_vectors
from splade_os.query.hybrid import Hybrid, fuse, hit_lists
from splade_os.cluster.index import IndexSettings
from splade_os.ingest import IngestOptions, ingest
from splade_os.query import bm25_body
from splade_os.documents.vectors import VectorOptions, unpack

pytestmark = pytest.mark.slow
LONG_ID, RARE = "long-1", "zeppelin"


@pytest.fixture(scope="module")
def corpus(sample_dir, tmp_path_factory):
    """200 Cranfield documents + one of ~2,600 tokens that names a zeppelin only at its end."""
    folder = tmp_path_factory.mktemp("quality")
    lines = (sample_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:200]
    filler = " ".join(["the pressure distribution on the wing surface was measured in the tunnel"] * 200)
    lines.append(json.dumps({"_id": LONG_ID, "title": "", "text": f"{filler} a {RARE} airship hangar"}))
    path = folder / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Vectors:
    """A stand-in encoder that returns vectors computed once (ingest's encoder interface)."""

    def __init__(self, vectors, vocab_size, long_docs="truncate", max_windows=8):
        self.vectors, self.vocab_size = vectors, vocab_size
        self.long_docs, self.max_windows, self.cut = long_docs, max_windows, 0

    def encode_stream(self, windows, on_batch=None):
        for payload, _ in windows:
            yield payload, [self.vectors[d.id] for d in payload[0]]


@pytest.fixture(scope="module")
def vectors(corpus, default_model):
    return {mode: exact_doc_vectors(corpus, default_model, device="cpu", options=VectorOptions(mode))
            for mode in ("truncate", "windows")}


def _build(cluster, name, corpus, model, vectors, settings=None, mode="truncate"):
    if cluster.exists(f"/{name}"):
        cluster.request("DELETE", f"/{name}")
    stats = ingest(cluster, corpus, name, model, options=IngestOptions(
        index=settings or IndexSettings(), dead_letter=corpus.parent / f"{name}.rejected.jsonl"),
        encoder=Vectors(vectors[mode], len(model.query_encoder.keys), mode), show_progress=False)
    assert stats.rejected == 0
    return cluster.index(name)


# -- long documents ----------------------------------------------------------------------------


def _text(corpus, doc_id):
    for line in open(corpus, encoding="utf-8"):
        record = json.loads(line)
        if record["_id"] == doc_id:
            return f"{record['title']} {record['text']}" if record["title"] else record["text"]


def test_a_term_after_token_2000_finds_its_document_only_with_windows(cluster, corpus, default_model, vectors):
    from tokenizers import Tokenizer

    rare = default_model.query_encoder.tokens.index(RARE)
    tokenizer = Tokenizer.from_file(str(default_model.layout.document_tokenizer_file))
    tokenizer.no_truncation()
    assert tokenizer.encode(json.loads(open(corpus).read().splitlines()[-1])["text"]).ids.index(rare) > 2000
    assert rare not in vectors["truncate"][LONG_ID].ids and rare in vectors["windows"][LONG_ID].ids
    truncated = _build(cluster, "q-long-truncate", corpus, default_model, vectors)
    windowed = _build(cluster, "q-long-windows", corpus, default_model, vectors,
                      IndexSettings(vectors=VectorOptions("windows")), mode="windows")
    assert LONG_ID not in [h.id for h in truncated.search(f"{RARE} hangar", k=10)]
    assert windowed.search(f"{RARE} hangar", k=1)[0].id == LONG_ID
    # A document of one window has the same vector either way; a longer one keeps its first
    # window's features, at least as heavy (the max runs over more positions).
    longer = 0
    for doc_id, vector in vectors["truncate"].items():
        other = vectors["windows"][doc_id]
        if len(tokenizer.encode(_text(corpus, doc_id)).ids) <= 512:
            assert np.array_equal(vector.ids, other.ids) and np.array_equal(vector.values, other.values)
        else:
            longer += 1
            assert set(vector.ids.tolist()) <= set(other.ids.tolist())
            assert np.all(other.values[np.isin(other.ids, vector.ids)] >= vector.values)
    assert longer >= 1


def test_windows_count_what_they_cut(corpus, default_model):
    from splade_os.documents.encoder import DocumentEncoder

    texts = [line and json.loads(line)["text"] for line in open(corpus).read().splitlines()[-3:]]
    one = DocumentEncoder(default_model, device="cpu", long_docs="windows", max_windows=1)
    plain = DocumentEncoder(default_model, device="cpu")
    for a, b in zip(one.encode(texts), plain.encode(texts)):  # one window == today's truncation
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.values, b.values)
    assert one.cut == plain.cut == 1
    full = DocumentEncoder(default_model, device="cpu", long_docs="windows", max_windows=16)
    full.encode(texts)
    tokens = len(full.tokenizer.encode(texts[-1], add_special_tokens=False).ids)
    tokens += sum(len(e.ids) for e in full.tokenizer.encode(texts[-1], add_special_tokens=False).overflowing)
    # Each window holds 510 of the text's tokens + [CLS] and [SEP].
    assert full.cut == 0 and full.documents == 2 + math.ceil(tokens / 510)


# -- pruning, _source, re-indexing -------------------------------------------------------------


def _features(index, doc_id):
    return index.cluster.request("GET", f"/{index.name}/_doc/{doc_id}")["_source"]


def test_pruned_index_keeps_the_top_weights_and_records_it(cluster, corpus, default_model, vectors):
    options = VectorOptions(prune_top_k=40, prune_threshold=0.3)
    index = _build(cluster, "q-pruned", corpus, default_model, vectors, IndexSettings(vectors=options))
    assert index.vector_options == options
    for doc_id in ("1", "2", "3"):
        stored = _features(index, doc_id)["splade"]
        full = vectors["truncate"][doc_id]
        expected = options.prune(full.ids, full.values)
        assert sorted(stored) == sorted(default_model.query_encoder.keys[i] for i in expected[0])
        assert len(stored) <= 40 and min(stored.values()) >= 0.3
    with pytest.raises(IndexStateError, match="prune_threshold=0.3"):
        index.create(default_model, IndexSettings(vectors=VectorOptions(prune_threshold=0.1)))


def test_packed_source_scores_the_same_and_reindexes(cluster, corpus, default_model, vectors):
    from splade_os.cluster.reindex import reindex

    full = _build(cluster, "q-map", corpus, default_model, vectors)
    packed = _build(cluster, "q-packed", corpus, default_model, vectors, IndexSettings(source_features="packed"))
    source = _features(packed, "7")
    assert "splade" not in source and set(source) >= {"title", "text", "splade_packed"}
    ids, values = unpack(source["splade_packed"])
    assert np.array_equal(ids, vectors["truncate"]["7"].ids)
    queries = ["flow past a slender wing", "heat transfer at hypersonic speed", "boundary layer"]

    def ranking(index):
        return [[(h.id, round(h.score, 4)) for h in index.search(q, k=10)] for q in queries]

    assert ranking(packed) == ranking(full)
    for target, source_index, features in (("q-copy-map", packed, "map"), ("q-copy-packed", full, "packed")):
        cluster.request("DELETE", f"/{target}", params={"ignore_unavailable": "true"})
        stats = reindex(cluster, source_index.name, target, IndexSettings(source_features=features),
                        show_progress=False)
        assert stats.method == "copied vectors" and stats.documents == len(vectors["truncate"])
        assert ranking(cluster.index(target)) == ranking(full)
    with pytest.raises(IndexStateError, match="exists already"):
        reindex(cluster, packed.name, "q-copy-map", show_progress=False)


def test_an_index_without_features_in_source_reindexes_by_encoding_again(cluster, corpus, default_model, vectors):
    from splade_os.cluster.reindex import reindex

    full = cluster.index("q-map") if cluster.exists("/q-map") else _build(cluster, "q-map", corpus, default_model,
                                                                          vectors)
    bare = _build(cluster, "q-bare", corpus, default_model, vectors, IndexSettings(source_features="none"))
    assert "splade" not in _features(bare, "7") and "splade_packed" not in _features(bare, "7")
    cluster.request("DELETE", "/q-bare-copy", params={"ignore_unavailable": "true"})
    options = VectorOptions(prune_top_k=64)
    stats = reindex(cluster, "q-bare", "q-bare-copy", IndexSettings(source_features="packed", vectors=options),
                    show_progress=False)
    assert stats.method == "encoded again" and stats.documents == len(vectors["truncate"])
    copy = cluster.index("q-bare-copy")
    assert copy.vector_options == options and copy.source_features == "packed"
    for doc_id in ("7", "150", LONG_ID):  # encoded again, the same numbers, pruned on the way
        original = vectors["truncate"][doc_id]
        ids, _ = unpack(_features(copy, doc_id)["splade_packed"])
        assert np.array_equal(ids, options.prune(original.ids, original.values)[0])
    assert copy.search("flow past a slender wing", k=1)[0].id == full.search("flow past a slender wing", k=1)[0].id


# -- hybrid ------------------------------------------------------------------------------------


def test_hybrid_is_the_fusion_of_the_two_searches(cluster, corpus, default_model, vectors):
    index = cluster.index("q-map") if cluster.exists("/q-map") else _build(cluster, "q-map", corpus, default_model,
                                                                           vectors)
    for hybrid in (Hybrid(), Hybrid("minmax", weight=0.3, depth=20)):
        fusion = index.fusion(hybrid)  # what is not given is the index's (measured at ingest)
        for text in ("shock wave boundary layer interaction", "zeppelin"):
            bm25 = index.request_search(bm25_body(text, fusion.depth))["hits"]["hits"]
            splade = index.request_search(index.body(text, fusion.depth))["hits"]["hits"]
            expected = [(h["_id"], s) for h, s in fuse(bm25, splade, fusion, 10)]
            hits = index.search(text, k=10, hybrid=hybrid)
            assert [(h.id, pytest.approx(h.score)) for h in hits] == expected
            assert all(h.title or h.text for h in hits)
    # A word SPLADE does not know (every piece of it is rare) is still found by BM25 in the fusion.
    only_bm25 = {h["_id"] for h in index.request_search(bm25_body("hangar", 10))["hits"]["hits"]}
    assert only_bm25 and only_bm25 <= {h.id for h in index.search("hangar", k=10, hybrid=Hybrid())}


def test_hybrid_on_the_command_line(engine_url, cluster, corpus, default_model, vectors):
    index = cluster.index("q-map") if cluster.exists("/q-map") else _build(cluster, "q-map", corpus, default_model,
                                                                           vectors)
    runner = CliRunner()
    result = runner.invoke(cli, ["-q", "search", "shock wave", "--index", index.name, "--url", engine_url,
                                 "--hybrid", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    hits = json.loads(result.output)
    assert [h["id"] for h in hits] == [h.id for h in index.search("shock wave", k=10, hybrid=Hybrid())]
    # `query --hybrid` prints what an app sends: the node takes it as it is.
    result = runner.invoke(cli, ["-q", "query", "shock wave", "--index", index.name, "--url", engine_url,
                                 "--hybrid", "--fusion", "minmax"], catch_exceptions=False)
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines[0] == lines[2] == {"index": index.name} and [lines[1]["size"], lines[3]["size"]] == [50, 50]
    assert "multi_match" in lines[1]["query"] and lines[3] == index.body("shock wave", 50)
    lists = hit_lists(cluster.request("POST", "/_msearch", result.output.encode(), ndjson=True), index.name)
    assert len(lists) == 2 and all(lists)


def test_eval_hybrid(cluster, corpus, default_model, vectors, sample_dir):
    from splade_os.corpus.beir import load_beir

    index = cluster.index("q-map") if cluster.exists("/q-map") else _build(cluster, "q-map", corpus, default_model,
                                                                           vectors)
    queries, qrels, _ = load_beir(sample_dir)
    judged = {q: {d: g for d, g in docs.items() if int(d) <= 200} for q, docs in qrels.items()}
    judged = {q: docs for q, docs in judged.items() if docs}
    result = index.evaluate(queries, judged, hybrid=Hybrid())
    assert result.settings["query"] == "hybrid" and result.settings["hybrid"]["method"] == "rrf"
    splade = index.evaluate(queries, judged).metrics["ndcg@10"]
    bm25 = index.evaluate(queries, judged, body=bm25_body).metrics["ndcg@10"]
    assert result.metrics["ndcg@10"] > max(splade, bm25)


# -- the corpus's own IDF ----------------------------------------------------------------------


def test_idf_from_the_corpus_is_pushed_once_and_used_by_search(cluster, corpus, default_model, vectors):
    from splade_os.models.corpus_idf import corpus_idf_model
    from splade_os.models.builder import idf_weights, sample_texts

    for name in ("q-idf-a", "q-idf-b"):
        cluster.request("DELETE", f"/{name}", params={"ignore_unavailable": "true"})
    model = corpus_idf_model(cluster, corpus, "q-idf-model", default_model, show_progress=False)
    expected = idf_weights(sample_texts(corpus), default_model.layout.tokenizer_file, len(model.query_encoder.table))
    assert np.array_equal(model.query_encoder.table, expected)
    assert model.source.startswith("cluster:q-idf-model@")
    again = corpus_idf_model(cluster, corpus, "q-idf-model", default_model, show_progress=False)
    assert again.source == model.source  # the same table is not pushed twice
    index = _build(cluster, "q-idf-a", corpus, model, vectors)
    assert index.model["source"] == model.source
    # Another machine: only the index name; the query side comes from the cluster by hash.
    encoder = cluster.index("q-idf-a").query_encoder()
    assert np.array_equal(encoder.table, expected)
    assert encoder.weights("?") != default_model.query_encoder.weights("?")  # no longer the sample's IDF
    assert index.search("pressure distribution wing", k=3)
