"""Self-supervised training pairs: what each construction keeps and leaves out."""

import json
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from splade_os.common.errors import InputError
from splade_os.training.pairs import SpanSettings, corpus_pairs, crop_pair, ict_pair, title_pair

words_lists = st.lists(st.text("abcdefgh", min_size=1, max_size=6), min_size=12, max_size=200)


@given(words_lists, st.integers(0, 2**32 - 1))
def test_ict_splits_a_document_into_a_span_and_the_rest(words, seed):
    spans = SpanSettings()
    query, positive = ict_pair(words, random.Random(seed), spans)
    q, p = query.split(), positive.split()
    assert spans.query_min <= len(q) <= max(spans.query_min, min(spans.query_max, len(words) // 3))
    assert Counter(q) + Counter(p) == Counter(words)
    assert " ".join(q) in " ".join(words)


@given(words_lists, st.integers(0, 2**32 - 1))
def test_crop_spans_are_pieces_of_the_document(words, seed):
    query, positive = crop_pair(words, random.Random(seed), SpanSettings())
    assert f" {query} " in f" {' '.join(words)} " and f" {positive} " in f" {' '.join(words)} "
    assert len(positive.split()) >= len(words) // 2


def test_title_pairs_drop_a_leading_copy_of_the_title():
    assert title_pair("Lift of wings", "Lift of wings. The lift of thin wings is measured here.") == (
        "Lift of wings", "The lift of thin wings is measured here.")
    assert title_pair("", "no title at all in this one") is None


def test_corpus_pairs_are_reproducible_and_name_their_document(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    docs = [{"_id": f"d{i}", "title": "", "text": " ".join(f"w{i}x{j}" for j in range(30))} for i in range(5)]
    docs.append({"_id": "short", "title": "", "text": "too short"})
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    first, second = corpus_pairs(corpus, "ict", seed=3), corpus_pairs(corpus, "ict", seed=3)
    assert first.column_names == ["query", "positive", "positive_id"]
    assert first["positive_id"] == [f"d{i}" for i in range(5)]  # the short document gives no pair
    assert first["query"] == second["query"] and first["query"] != corpus_pairs(corpus, "ict", seed=4)["query"]
    for row in first:
        assert row["query"].split()[0].startswith(f"w{row['positive_id'][1:]}x")
    with pytest.raises(InputError, match="no 'title' training pairs"):
        corpus_pairs(corpus, "title")
    with pytest.raises(InputError, match="'clozes' is not one of"):
        corpus_pairs(corpus, "clozes")


def test_lead_pairs_take_the_title_or_the_first_words(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    words = " ".join(f"w{j}" for j in range(40))
    corpus.write_text(json.dumps({"_id": "t", "title": "Heat transfer in cones", "text": "Heat transfer in cones. "
                                  "Measurements of heat transfer on cones at high speed are reported."}) + "\n"
                      + json.dumps({"_id": "n", "title": "", "text": words}) + "\n")
    rows = corpus_pairs(corpus, "lead")
    assert rows[0]["query"] == "Heat transfer in cones" and rows[0]["positive"].startswith("Measurements")
    lead, rest = rows[1]["query"].split(), rows[1]["positive"].split()
    assert lead + rest == words.split() and 4 <= len(lead) <= SpanSettings().lead_max


def test_combined_kinds_give_a_pair_of_each_kind_per_document(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    docs = [{"_id": f"d{i}", "title": f"title {i}", "text": " ".join(f"w{i}x{j}" for j in range(30))} for i in range(4)]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    lead, ict, both = (corpus_pairs(corpus, kind, seed=5) for kind in ("lead", "ict", "lead+ict"))
    assert both["positive_id"] == [d["_id"] for d in docs for _ in range(2)]
    assert both["query"][0::2] == lead["query"] and both["query"][1::2] == ict["query"]
    assert both["positive"][0::2] == lead["positive"] and both["positive"][1::2] == ict["positive"]
    with pytest.raises(InputError, match="'cloze' is not one of"):
        corpus_pairs(corpus, "lead+cloze")
    with pytest.raises(InputError, match="repeated"):
        corpus_pairs(corpus, "ict+ict")
