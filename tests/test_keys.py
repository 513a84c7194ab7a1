"""Key escaping: reversible, collision-free, and never a '.' (the rank_feature path separator)."""

from hypothesis import given
from hypothesis import strategies as st

from splade_os.query.keys import escape_key, unescape_key


@given(st.text())
def test_round_trip(token):
    assert unescape_key(escape_key(token)) == token


@given(st.text())
def test_no_dot_in_keys(token):
    assert "." not in escape_key(token)


@given(st.text(), st.text())
def test_distinct_tokens_get_distinct_keys(a, b):
    if a != b:
        assert escape_key(a) != escape_key(b)


@given(st.text(alphabet="%.2E5a"))
def test_escape_characters_themselves(token):
    # Tokens built only from the escape alphabet are where a naive scheme collides.
    assert unescape_key(escape_key(token)) == token


def test_bert_dot_tokens():
    assert escape_key(".") == "%2E"
    assert escape_key("...") == "%2E%2E%2E"
    assert escape_key("##.") == "##%2E"
    assert escape_key("%") == "%25"
    assert escape_key("_") == "_"  # not mapped onto "." 's key, unlike the ES helper
    assert escape_key("lift") == "lift"
