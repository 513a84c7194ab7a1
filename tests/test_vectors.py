"""Document vector options: pruning, the max over windows, and the packed copy (property-tested)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from splade_os.common.errors import InputError
from splade_os.documents.vectors import VectorOptions, max_merge, pack, unpack


def _vectors(max_size=300):
    ids = st.lists(st.integers(0, 30521), min_size=0, max_size=max_size, unique=True).map(sorted)
    return ids.flatmap(lambda i: st.tuples(
        st.just(np.array(i, dtype=np.int64)),
        st.lists(st.floats(2.0**-20, 1e4, width=32), min_size=len(i), max_size=len(i)).map(
            lambda v: np.array(v, dtype=np.float32))))


def _lucene(values: np.ndarray) -> np.ndarray:
    """What Lucene's FeatureField keeps of a positive float32: the bits above the lowest 15."""
    return ((values.view(np.uint32) >> 15) << 15).view(np.float32)


@given(_vectors())
def test_pack_keeps_exactly_what_the_index_stores(vector):
    ids, values = vector
    back_ids, back_values = unpack(pack(ids, values, 30522))
    assert np.array_equal(back_ids, ids)
    assert np.array_equal(back_values, _lucene(values))
    assert np.all(back_values <= values) and np.all(back_values >= values * (1 - 2**-8))


def test_pack_wide_vocabulary_and_bad_input():
    ids, values = np.array([3, 70000, 250001]), np.array([0.5, 1.0, 2.0], dtype=np.float32)
    text = pack(ids, values, 250002)
    assert text.startswith("4:")
    assert np.array_equal(unpack(text)[0], ids)
    for bad in ("xyz", "2:@@@", "2:" + "AAAA" + "A"):
        with pytest.raises(InputError):
            unpack(bad)


@given(_vectors(), st.integers(1, 50), st.floats(0, 10))
def test_prune_keeps_the_highest_weights(vector, top_k, threshold):
    ids, values = vector
    kept_ids, kept_values = VectorOptions(prune_top_k=top_k, prune_threshold=threshold).prune(ids, values)
    assert len(kept_ids) == min(top_k, int((values >= threshold).sum()))
    assert np.all(kept_values >= threshold)
    assert np.all(np.diff(kept_ids) > 0)  # still in id order
    dropped = np.setdiff1d(ids, kept_ids)
    if len(kept_values) and len(dropped):
        # nothing dropped above the threshold weighs more than what was kept
        dropped_values = values[np.isin(ids, dropped)]
        assert dropped_values[dropped_values >= threshold].max(initial=0) <= kept_values.min()


def test_prune_ties_are_broken_by_id():
    ids, values = np.array([1, 2, 3, 4]), np.array([0.5, 0.7, 0.5, 0.5], dtype=np.float32)
    assert VectorOptions(prune_top_k=2).prune(ids, values)[0].tolist() == [1, 2]


@given(st.lists(_vectors(40), min_size=1, max_size=5))
def test_max_merge_is_the_max_per_id(parts):
    ids, values = max_merge(parts)
    expected = {}
    for part_ids, part_values in parts:
        for i, v in zip(part_ids.tolist(), part_values.tolist()):
            expected[i] = max(expected.get(i, 0.0), v)
    assert ids.tolist() == sorted(expected)
    assert np.allclose(values, [expected[i] for i in ids.tolist()])


@pytest.mark.parametrize("kwargs", [{"long_docs": "chunks"}, {"max_windows": 0}, {"prune_top_k": 0},
                                    {"prune_threshold": -1.0}, {"prune_threshold": float("nan")}])
def test_options_are_checked(kwargs):
    with pytest.raises(InputError):
        VectorOptions(**kwargs)


def test_options_round_trip_through_the_index_meta():
    options = VectorOptions("windows", 4, 128, 0.2)
    assert VectorOptions.from_meta(options.as_meta()) == options
    assert VectorOptions.from_meta(None) == VectorOptions()  # an index made before they were recorded
