"""The changed ranges an incremental image backup trusts (app/fs/sparse.py: merged, Overlaps): which blocks it reads."""

import itertools

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.fs.sparse import Overlaps, cut, merged

ranges = st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 400)).map(lambda r: (r[0], r[0] + r[1])), max_size=40)


@given(ranges)
def test_merged_covers_exactly_the_same_bytes_in_order_and_apart(given_ranges):
    result = merged(given_ranges)
    covered = {b for s, e in given_ranges for b in range(s, e)}
    assert {b for s, e in result for b in range(s, e)} == covered
    assert all(s < e for s, e in result)
    assert all(e1 < s2 for (_s1, e1), (s2, _e2) in itertools.pairwise(result))  # not even touching


@given(ranges, st.lists(st.tuples(st.integers(0, 4400), st.integers(1, 500)), max_size=20), st.sampled_from([64, 100, 512]))
@example(changed=[(1, 1)], data=[(0, 2)], block_size=64)  # an empty range changes no byte
def test_a_block_is_read_exactly_when_a_changed_byte_falls_in_it(changed, data, block_size):
    data_ranges = merged((s, s + n) for s, n in data)
    overlaps = Overlaps(changed)
    for offset, length in cut(data_ranges, block_size):
        brute = any(max(s, offset) < min(e, offset + length) for s, e in changed)  # a byte in both
        assert overlaps(offset, offset + length) == brute


def test_blocks_asked_about_out_of_order_are_refused():
    overlaps = Overlaps([(0, 10)])
    overlaps(100, 110)
    with pytest.raises(ValueError, match="ascending"):
        overlaps(0, 10)
