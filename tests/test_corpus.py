"""Corpus parsing: every line becomes a Document or a Rejected with a reason, never an exception."""

import json

from hypothesis import given
from hypothesis import strategies as st

from splade_os.corpus import DeadLetters, Document, Rejected, parse_line, read_corpus, stable_id


@given(st.binary(max_size=300))
def test_any_bytes_parse_without_crashing(raw):
    item = parse_line(raw, 7)
    assert isinstance(item, (Document, Rejected))
    assert item.line == 7


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(["_id", "text", "title", "other"]), json_values))
def test_any_json_object_is_accepted_or_rejected_with_reason(record):
    item = parse_line(json.dumps(record).encode(), 1)
    if isinstance(item, Rejected):
        assert item.reason
    else:
        assert isinstance(record.get("text"), str)
        assert item.text == record["text"]


@given(st.text(min_size=1).filter(lambda t: t.strip()), st.text(), st.text(min_size=1, max_size=50))
def test_valid_lines_round_trip(text, title, doc_id):
    raw = json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False).encode()
    item = parse_line(raw, 3)
    assert item == Document(doc_id, title, text, 3, raw, {"title": title, "text": text})


def test_each_bad_kind_has_its_reason():
    cases = {
        b"\xff\xfe not utf8": "not valid UTF-8",
        b'{"_id": "1", "text": ': "malformed JSON",
        b"[1, 2]": "expected a JSON object",
        b'{"_id": "1"}': "missing text field 'text'",
        b'{"_id": "1", "text": "   "}': "empty text field",
        b'{"_id": "1", "text": 5}': "is int, not a string",
        b'{"_id": [1], "text": "x"}': "not a string or integer",
        b"[" * 100000: "malformed JSON",
        # JSON escapes can spell unpaired surrogates: valid JSON, but not text.
        b'{"_id": "1", "text": "a \\ud800 b"}': "text field 'text' holds an unpaired surrogate (\\ud800",
        b'{"title": "\\udfff", "text": "b"}': "title field 'title' holds an unpaired surrogate",
        b'{"_id": "\\ud83d", "text": "b"}': "id field '_id' holds an unpaired surrogate",
    }
    for raw, reason in cases.items():
        item = parse_line(raw, 1)
        assert isinstance(item, Rejected), raw[:30]
        assert reason in item.reason, (raw[:30], item.reason)
    # A surrogate pair is a character like any other.
    assert parse_line(b'{"_id": "1", "text": "\\ud83d\\ude00"}', 1).text == "\U0001f600"


def test_missing_id_is_stable(tmp_path):
    item = parse_line(b'{"title": "a", "text": "b"}', 1)
    assert item.id == stable_id("a", "b") == parse_line(b'{"text": "b", "title": "a"}', 9).id


def test_read_corpus_line_numbers_duplicates_and_long_lines(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = [
        b'{"_id": "a", "text": "one"}',
        b"",
        b'{"_id": "a", "text": "again"}',
        b'{"_id": "b", "text": "' + b"x" * 2000 + b'"}',
        b'{"_id": 3, "text": "three"}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    items = list(read_corpus(path, max_line_bytes=1000))
    assert [(type(i).__name__, i.line) for i in items] == [
        ("Document", 1), ("Rejected", 3), ("Rejected", 4), ("Document", 5)]
    assert "duplicate id 'a'" in items[1].reason
    assert "longer than 1000 bytes" in items[2].reason
    assert items[3].id == "3"


def test_dead_letters_keep_original_line(tmp_path):
    path = tmp_path / "dead.jsonl"
    with DeadLetters(path, "c.jsonl") as dead:
        dead.add(4, "not valid UTF-8", b"\xffabc")
        dead.add(5, "malformed JSON", b"{oops")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["line"] == 4 and records[0]["raw_base64"] == "/2FiYw=="
    assert records[1] == {"file": "c.jsonl", "line": 5, "reason": "malformed JSON", "raw": "{oops"}


def test_shards_split_lines_without_overlap(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"_id": str(i), "text": f"t{i}"}) + "\n" for i in range(10)))
    parts = [[d.id for d in read_corpus(path, shard=(i, 3))] for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(str(i) for i in range(10))
    assert parts[0] == ["0", "3", "6", "9"]
