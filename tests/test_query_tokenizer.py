"""The query tokenizer's fast path gives exactly the ids of `Tokenizer.encode`."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from splade_os.query.tokenizer import QueryTokenizer

# Printable ASCII with whitespace, punctuation runs, digits and mixed case: the fast path's alphabet.
ascii_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\t\n\r"), max_size=300)
# The same, with words that do not reach the fast path mixed in.
special = st.sampled_from(["[MASK]", "[cls]", "[SEP]", "café", "中文", "\x00", "\x0b", "\u00a0", "😀", "İ", "\ufffd"])
mixed_text = st.lists(ascii_text | special, max_size=6).map(" ".join)


def _tokenizer(model, max_length=None, **normalizer):
    config = json.loads(model.layout.tokenizer_file.read_text(encoding="utf-8"))
    config["normalizer"].update(normalizer)
    tokenizer = Tokenizer.from_str(json.dumps(config))
    tokenizer.no_padding()
    if max_length:
        tokenizer.enable_truncation(max_length)
    else:
        tokenizer.no_truncation()
    return tokenizer


@pytest.fixture(scope="module")
def bert(default_model):
    return _tokenizer(default_model)


@pytest.fixture(scope="module")
def cased(default_model):
    return _tokenizer(default_model, lowercase=False)


@pytest.fixture(scope="module")
def truncating(default_model):
    return {n: _tokenizer(default_model, max_length=n) for n in (1, 2, 5, 12)}


_made = {}


def _check(tokenizer, text):
    # One QueryTokenizer per tokenizer, as in use: its word cache carries over between texts.
    fast = _made.setdefault(id(tokenizer), QueryTokenizer(tokenizer))
    assert fast.ids(text) == tokenizer.encode(text, add_special_tokens=False).ids, repr(text)
    return fast


def test_fast_path_is_taken_for_bert_tokenizers(bert):
    fast = _check(bert, "what is lift?")
    assert fast.fast and "lift" in fast.words  # the word went through the cached WordPiece path


def test_real_queries(bert, sample_dir):
    fast = QueryTokenizer(bert)
    for line in open(sample_dir / "queries.jsonl", encoding="utf-8"):
        text = json.loads(line)["text"]
        assert fast.ids(text) == bert.encode(text, add_special_tokens=False).ids, text


@settings(max_examples=400)
@given(ascii_text)
def test_any_ascii_text(bert, text):
    _check(bert, text)


@settings(max_examples=200)
@given(mixed_text)
def test_text_outside_the_fast_path(bert, text):
    _check(bert, text)


@settings(max_examples=100)
@given(ascii_text)
def test_case_kept_when_the_normalizer_does_not_lowercase(cased, text):
    _check(cased, text + " Lift DRAG")


@settings(max_examples=100)
@given(ascii_text, st.sampled_from([1, 2, 5, 12]))
def test_truncation(truncating, text, max_length):
    _check(truncating[max_length], text)


def test_long_words_become_unknown(bert):
    _check(bert, "a" * 150 + " wing " + "b" * 99)


def test_other_tokenizers_use_the_library(default_model):
    config = json.loads(default_model.layout.tokenizer_file.read_text(encoding="utf-8"))
    config["pre_tokenizer"] = {"type": "Whitespace"}
    tokenizer = Tokenizer.from_str(json.dumps(config))
    fast = _check(tokenizer, "what is lift? (x-y)")
    assert not fast.fast


def test_text_that_is_not_unicode_is_a_clear_error(bert):
    from splade_os.common.errors import InputError

    with pytest.raises(InputError, match=r"unpaired surrogate \(\\udcff at character 5\)"):
        QueryTokenizer(bert).ids("wing \udcff lift")  # what argv bytes that are not UTF-8 become
