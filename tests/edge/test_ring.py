"""The RAM ring: addressing by absolute index, wrap-around, gaps, overlaps, truncation."""

from __future__ import annotations

from array import array

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.audio import Ring
from hardware import Samples


def ramp(start: int, count: int, salt: int = 0) -> Samples:
    """Distinct values per index (and per salt, so a rewrite of an index is visible)."""
    idx = np.arange(start, start + count, dtype=np.int64)
    return ((idx * 7 + salt * 1013) % 60001 - 30000).astype(np.int16).data


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
    expected = np.array(ramp(5, 15))
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
        ring.write(0, np.zeros(3, dtype=np.float32).data)
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
    data = np.arange(8, dtype="<i2").tobytes()
    ring = Ring(6)
    ring.write(0, memoryview(data[:8]).cast("h"))  # read-only, as the ALSA driver gives it
    ring.write(4, memoryview(data[8:]).cast("h"))  # wraps: two slice copies
    cut = ring.read(ring.oldest, ring.head)
    np.testing.assert_array_equal(cut.samples, np.arange(2, 8, dtype=np.int16))
    cut.samples[0] = -1  # a copy: writable, and the ring does not change
    assert ring.read(2, 3).samples.tolist() == [2]
    assert (ring.gaps_samples, ring.overlap_samples) == (0, 0)


def test_views_are_read_only_slices_of_the_ring() -> None:
    ring = Ring(6)
    ring.write(0, ramp(0, 8))
    view = ring.view(2, 8)
    assert [len(part) for part in view.parts] == [4, 2]  # slots 2..5, then 0..1
    assert all(part.readonly and part.format == "h" for part in view.parts)
    assert view.nbytes == 12
    np.testing.assert_array_equal(np.concatenate(view.parts), ramp(2, 6))
    ring.write(8, ramp(8, 2, salt=3))  # the ring moved on: the views show its new content
    assert view.parts[0][0] == ramp(8, 1, salt=3)[0]


def test_samples_in_other_buffers_and_strides_are_accepted() -> None:
    ring = Ring(50)
    ring.write(0, array("h", [1, -2, 3]))
    ring.write(3, ramp(0, 20)[::2])  # a strided view (copied, not misread)
    ring.write(13, np.arange(3, dtype=">i2").astype("<i2").data)
    assert ring.read(0, 6).samples.tolist() == [1, -2, 3, *ramp(0, 20)[:6:2].tolist()]
    assert ring.read(13, 16).samples.tolist() == [0, 1, 2]
    bad_buffers = (np.zeros((2, 2), np.int16).data, np.zeros(3, np.int32).data, b"\x00\x01")
    for bad in bad_buffers:
        with pytest.raises(TypeError):
            ring.write(ring.head, bad)


def test_a_hole_of_more_than_one_zeroing_chunk_reads_as_zeros() -> None:
    capacity = 200_000  # the hole is zeroed 32768 samples at a time
    ring = Ring(capacity)
    ring.write(0, np.full(capacity, 7, np.int16).data)
    ring.write(capacity + 150_000, ramp(0, 10))
    cut = ring.read(ring.oldest, ring.head)
    samples = np.asarray(cut.samples)
    old = capacity - ring.oldest  # the first write's newest samples are still there
    assert cut.gaps == ((capacity, capacity + 150_000),)
    assert (samples[:old] == 7).all()
    assert not samples[old:-10].any()  # 150,000 zeros over slots of old audio
    np.testing.assert_array_equal(samples[-10:], ramp(0, 10))


def test_writing_periods_allocates_nothing_that_grows_with_them() -> None:
    import tracemalloc

    ring = Ring(16000 * 60)
    period = memoryview(bytes(range(200)) * 16).cast("h")  # 1600 samples, as ALSA hands them
    ring.write(0, period)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k in range(1, 2001):  # wraps around the ring more than three times
            ring.write(k * 1600, period)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ring.head == 2001 * 1600
    assert current - before < 1024  # nothing kept per period
    assert peak - before < 4096  # no copy of a period (3200 bytes) on the way
