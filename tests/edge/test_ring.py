"""The RAM ring: addressing by absolute index, wrap-around, gaps, overlaps, truncation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.audio import Ring
from hardware import Samples


def ramp(start: int, count: int, salt: int = 0) -> Samples:
    """Distinct values per index (and per salt, so a rewrite of an index is visible)."""
    idx = np.arange(start, start + count, dtype=np.int64)
    return ((idx * 7 + salt * 1013) % 60001 - 30000).astype(np.int16)


def test_write_and_read_without_wrap() -> None:
    ring = Ring(100)
    ring.write(0, ramp(0, 30))
    ring.write(30, ramp(30, 20))
    assert (ring.head, ring.oldest) == (50, 0)
    cut = ring.read(10, 45)
    assert (cut.start, cut.end, cut.truncated, cut.gaps) == (10, 45, False, ())
    np.testing.assert_array_equal(cut.samples, ramp(10, 35))


def test_read_across_the_wrap() -> None:
    ring = Ring(10)
    ring.write(0, ramp(0, 8))
    ring.write(8, ramp(8, 7))  # indices 8..14: slots 8, 9, then 0..4
    assert (ring.head, ring.oldest) == (15, 5)
    cut = ring.read(5, 15)
    np.testing.assert_array_equal(cut.samples, ramp(5, 10))
    assert not cut.truncated


def test_exactly_capacity() -> None:
    ring = Ring(16)
    ring.write(0, ramp(0, 16))
    assert (ring.head, ring.oldest) == (16, 0)
    np.testing.assert_array_equal(ring.read(0, 16).samples, ramp(0, 16))
    ring.write(16, ramp(16, 1))
    assert ring.oldest == 1
    np.testing.assert_array_equal(ring.read(1, 17).samples, ramp(1, 16))


def test_cut_is_a_copy() -> None:
    ring = Ring(8)
    ring.write(0, ramp(0, 8))
    cut = ring.read(0, 8)
    ring.write(8, ramp(8, 8))
    np.testing.assert_array_equal(cut.samples, ramp(0, 8))


def test_gap_reads_as_zeros_and_is_recorded() -> None:
    ring = Ring(100)
    ring.write(0, ramp(0, 10))
    ring.write(15, ramp(15, 10))
    assert ring.gaps == ((10, 15),)
    assert ring.gaps_samples == 5
    cut = ring.read(5, 20)
    assert cut.gaps == ((10, 15),)
    expected = ramp(5, 15)
    expected[5:10] = 0
    np.testing.assert_array_equal(cut.samples, expected)
    # a read that only touches part of the gap lists only that part
    assert ring.read(12, 20).gaps == ((12, 15),)
    assert ring.read(0, 10).gaps == ()


def test_gap_overwrites_stale_audio_in_its_slots() -> None:
    ring = Ring(10)
    ring.write(0, ramp(0, 10, salt=1))  # every slot holds nonzero old audio
    ring.write(14, ramp(14, 3))  # hole 10..13 lands on slots 0..3
    cut = ring.read(7, 17)
    expected = np.concatenate([ramp(7, 3, salt=1), np.zeros(4, np.int16), ramp(14, 3)])
    np.testing.assert_array_equal(cut.samples, expected)


def test_hole_longer_than_the_ring_leaves_only_zeros_before_the_block() -> None:
    ring = Ring(10)
    ring.write(0, ramp(0, 10, salt=1))
    ring.write(100, ramp(100, 4))
    assert (ring.head, ring.oldest) == (104, 94)
    cut = ring.read(94, 104)
    np.testing.assert_array_equal(cut.samples[:6], np.zeros(6, np.int16))
    np.testing.assert_array_equal(cut.samples[6:], ramp(100, 4))
    assert cut.gaps == ((94, 100),)
    assert ring.gaps_samples == 90


def test_gaps_are_pruned_when_they_leave_the_ring() -> None:
    ring = Ring(20)
    ring.write(0, ramp(0, 5))
    ring.write(8, ramp(8, 5))  # gap (5, 8)
    ring.write(13, ramp(13, 12))  # head 25, oldest 5: gap still inside
    assert ring.gaps == ((5, 8),)
    ring.write(25, ramp(25, 2))  # oldest 7: gap partly gone, still listed
    assert ring.gaps == ((5, 8),)
    assert ring.read(7, 10).gaps == ((7, 8),)
    ring.write(27, ramp(27, 1))  # oldest 8: gap entirely gone
    assert len(ring.gaps) == 0
    assert ring.gaps_samples == 3  # the statistic is a total, not pruned


def test_overlapping_write_keeps_what_was_written_first() -> None:
    ring = Ring(50)
    ring.write(0, ramp(0, 10))
    ring.write(5, ramp(5, 10, salt=1))  # 5..9 again, 10..14 new
    assert ring.head == 15
    assert ring.overlap_samples == 5
    np.testing.assert_array_equal(
        ring.read(0, 15).samples, np.concatenate([ramp(0, 10), ramp(10, 5, salt=1)])
    )
    ring.write(2, ramp(2, 4, salt=2))  # entirely old: dropped
    assert ring.head == 15
    assert ring.overlap_samples == 9
    np.testing.assert_array_equal(ring.read(0, 10).samples, ramp(0, 10))


def test_block_larger_than_capacity_keeps_its_newest_samples() -> None:
    ring = Ring(8)
    ring.write(0, ramp(0, 3, salt=1))
    ring.write(3, ramp(3, 20))
    assert (ring.head, ring.oldest) == (23, 15)
    assert ring.overflow_samples == 12
    np.testing.assert_array_equal(ring.read(15, 23).samples, ramp(15, 8))


def test_read_before_oldest_is_truncated_never_wrong() -> None:
    ring = Ring(10)
    ring.write(0, ramp(0, 25))
    cut = ring.read(3, 22)
    assert cut.truncated
    assert (cut.start, cut.end) == (15, 22)
    np.testing.assert_array_equal(cut.samples, ramp(15, 7))
    gone = ring.read(0, 12)  # nothing of it is left
    assert gone.truncated
    assert len(gone.samples) == 0
    assert gone.start == gone.end == 12


def test_read_beyond_head_is_rejected() -> None:
    ring = Ring(10)
    ring.write(0, ramp(0, 5))
    with pytest.raises(ValueError, match="cannot read"):
        ring.read(0, 6)
    with pytest.raises(ValueError, match="reversed"):
        ring.read(4, 3)


def test_bad_writes_are_rejected() -> None:
    ring = Ring(10)
    with pytest.raises(ValueError, match="negative"):
        ring.write(-1, ramp(0, 2))
    with pytest.raises(TypeError, match="int16"):
        ring.write(0, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="positive"):
        Ring(0)


writes = st.lists(
    st.tuples(st.integers(-30, 40), st.integers(0, 90)),  # (jump from head, length)
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 64), ops=writes, data=st.data())
def test_ring_matches_a_reference_of_the_last_samples(
    capacity: int, ops: list[tuple[int, int]], data: st.DataObject
) -> None:
    ring = Ring(capacity)
    ref: list[int | None] = []  # every index ever: value, or None for never captured
    for salt, (jump, length) in enumerate(ops):
        start = max(0, len(ref) + jump)
        block = ramp(start, length, salt)
        for i, value in enumerate(block.tolist()):
            index = start + i
            if index >= len(ref):
                ref.extend([None] * (index - len(ref)))
                ref.append(value)
        ring.write(start, block)

        head = len(ref)
        assert ring.head == head
        assert ring.oldest == max(0, head - capacity)
        lo = data.draw(st.integers(0, head), label="read start")
        hi = data.draw(st.integers(lo, head), label="read end")
        cut = ring.read(lo, hi)
        begin = max(lo, ring.oldest) if hi >= ring.oldest else hi
        assert (cut.start, cut.end) == (begin, hi)
        assert cut.truncated == (lo < ring.oldest)
        expected = [0 if v is None else v for v in ref[begin:hi]]
        assert cut.samples.tolist() == expected
        missing = {i for i in range(begin, hi) if ref[i] is None}
        listed = {i for g0, g1 in cut.gaps for i in range(g0, g1)}
        assert listed == missing
        assert sum(g1 - g0 for g0, g1 in cut.gaps) == len(missing)  # no overlaps


def test_a_read_only_view_of_driver_bytes_is_copied_into_the_ring() -> None:
    data = bytearray(np.arange(8, dtype="<i2").tobytes())
    ring = Ring(6)
    ring.write(0, np.frombuffer(bytes(data[:8]), "<i2"))  # read-only, as ALSA's bytes give it
    ring.write(4, np.frombuffer(bytes(data[8:]), "<i2"))  # wraps: two slice copies
    cut = ring.read(ring.oldest, ring.head)
    np.testing.assert_array_equal(cut.samples, np.arange(2, 8, dtype=np.int16))
    assert cut.samples.flags.writeable
    assert (ring.gaps_samples, ring.overlap_samples) == (0, 0)
