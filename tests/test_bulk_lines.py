"""Bulk NDJSON lines written without a dict read back as exactly the document and its features."""

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from splade_os.bulk import BulkLines
from splade_os.documents.encoder import SparseVector
from splade_os.query.keys import escape_key

# Keys as the connector makes them (escaped vocabulary entries), including JSON's special characters.
keys = [escape_key(k) for k in ["[CLS]", "lift", ".", "##.", '"', "\\", "%", "é", "中", "\x00", "a b", "😀"]]
floats32 = st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def vectors(draw):
    ids = draw(st.lists(st.integers(0, len(keys) - 1), unique=True, max_size=len(keys)))
    values = draw(st.lists(floats32, min_size=len(ids), max_size=len(ids)))
    return SparseVector(np.array(sorted(ids), dtype=np.int64), np.array(values, dtype=np.float32))


@given(vectors(), st.text(), st.text(), st.text(min_size=1))
def test_lines_read_back_exactly(vector, title, text, doc_id):
    lines = BulkLines('idx "1"', "splade", keys).document(doc_id, {"title": title, "text": text}, vector)
    assert lines.endswith(b"\n") and lines.count(b"\n") == 2
    action, source = (json.loads(line) for line in lines.splitlines())
    assert action == {"index": {"_index": 'idx "1"', "_id": doc_id}}
    assert source["title"] == title and source["text"] == text
    # Every value reads back as the same float32 (the shortest decimal for it).
    expected = {keys[i]: float(v) for i, v in zip(vector.ids.tolist(), vector.values.tolist())}
    assert {k: float(np.float32(v)) for k, v in source["splade"].items()} == expected
    assert list(source) == ["title", "text", "splade"]


def test_no_other_fields_and_no_features():
    empty = SparseVector(np.array([], dtype=np.int64), np.array([], dtype=np.float32))
    lines = BulkLines("i", "f", keys).document("1", {}, empty)
    assert [json.loads(line) for line in lines.splitlines()] == [{"index": {"_index": "i", "_id": "1"}}, {"f": {}}]


def test_shorter_than_float64_digits():
    vector = SparseVector(np.array([1, 2]), np.array([0.1, 2.8890574], dtype=np.float32))
    assert BulkLines("i", "f", keys).features(vector.ids, vector.values) == b'{"lift":0.1,"%2E":2.8890574}'
