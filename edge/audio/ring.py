"""A RAM ring buffer of mono S16 audio addressed by absolute sample index.

Rules:

- Sample ``i`` of the capture lives at slot ``i % capacity``; ``head`` is one past the newest
  index written and ``oldest = max(0, head - capacity)`` the oldest index still held.
- An empty write is ignored. A write that starts after ``head`` leaves a hole
  ``[head, start)``: the hole reads as zeros and is kept as a recorded gap until it falls out of
  the ring.
- A write that starts before ``head`` drops the part already written (counted in
  ``overlap_samples``) and appends the rest; a block longer than the ring keeps only its newest
  ``capacity`` samples (the rest counted in ``overflow_samples``).
- A read never returns overwritten audio: a range starting before ``oldest`` is cut from
  ``oldest`` and flagged ``truncated``; a range ending after ``head`` is an error.
- Storage: one preallocated ``bytearray`` of native int16 (S16_LE on every device this runs
  on), two bytes a sample; a write and a view are ``memoryview`` slices of it, so no per-sample
  Python loop: every copy is at most two slice copies (``memcpy``), and nothing but the standard
  library is imported (issue #14: numpy cost the daemon ~25 MiB of RSS for these copies).
- Samples come in as any 1-D int16 buffer (:func:`as_samples`: a driver's ``memoryview``, an
  ``array('h')``, a numpy int16 array in the tests); anything else is a ``TypeError``.

Not thread-safe: one owner (the core loop, through :class:`edge.audio.Clipper`) calls it.
"""

from __future__ import annotations

import sys
from array import array
from collections import deque
from dataclasses import dataclass
from typing import TypeAlias

#: int16 samples as a 1-D ``memoryview`` of format ``"h"`` (``len()`` counts samples)
Samples: TypeAlias = memoryview
#: what samples may come in as (a numpy int16 array as its ``.data``); checked by as_samples
SampleBuffer: TypeAlias = "memoryview | array[int] | bytes | bytearray"
#: buffer formats read as native int16 ("<h" is numpy's explicit little-endian int16)
_INT16_FORMATS = frozenset({"h", "@h", "=h", "<h" if sys.byteorder == "little" else ">h"})
_ZEROS = bytes(1 << 16)  # what a hole in the ring is zeroed from, a slice at a time


def as_samples(samples: SampleBuffer) -> Samples:
    """``samples`` (any 1-D int16 buffer) as a ``memoryview`` of format ``"h"``, without a copy
    (a strided buffer, which only a numpy slice can be, is copied); otherwise ``TypeError``."""
    view = samples if isinstance(samples, memoryview) else memoryview(samples)
    if view.ndim != 1 or view.format not in _INT16_FORMATS:
        raise TypeError(f"expected 1-D int16 samples, got {view.ndim}-D format {view.format!r}")
    if not view.c_contiguous:
        return memoryview(view.tobytes()).cast("h")
    return view if view.format == "h" else view.cast("B").cast("h")


@dataclass(frozen=True, slots=True)
class Cut:
    """Audio read from the ring: ``samples`` covers ``[start, end)`` and is a copy (an
    ``array('h')``).

    ``truncated`` is set when the requested start had already been overwritten; ``gaps`` are the
    recorded gaps (zeros in ``samples``) inside ``[start, end)``.
    """

    samples: array[int]
    start: int
    end: int
    truncated: bool
    gaps: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class View:
    """Audio in the ring, not copied: ``parts`` (one, or two where ``[start, end)`` wraps around
    the ring's end) are read-only int16 ``memoryview`` slices of the ring's buffer, valid until
    the ring is written again. ``truncated`` and ``gaps`` as in :class:`Cut`."""

    parts: tuple[Samples, ...]
    start: int
    end: int
    truncated: bool
    gaps: tuple[tuple[int, int], ...]

    @property
    def nbytes(self) -> int:
        return sum(part.nbytes for part in self.parts)


class Ring:
    """A fixed-size ring of int16 samples, preallocated once."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"ring capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.head = 0
        self.gaps_samples = 0  # total samples never captured (holes between writes)
        self.overlap_samples = 0  # samples dropped because their indices were already written
        self.overflow_samples = 0  # samples of over-long blocks that never fitted in the ring
        self._bytes = bytearray(2 * capacity)  # never resized: the views below stay valid
        self._raw = memoryview(self._bytes)  # its bytes
        self._buf: Samples = self._raw.cast("h")  # its samples
        self._gaps: deque[tuple[int, int]] = deque()

    @property
    def oldest(self) -> int:
        """The oldest index still held."""
        return max(0, self.head - self.capacity)

    @property
    def gaps(self) -> tuple[tuple[int, int], ...]:
        """Recorded gaps ``[start, end)`` that still overlap the ring."""
        return tuple(self._gaps)

    def write(self, start_index: int, samples: SampleBuffer) -> None:
        """Store ``samples`` (1-D int16, see :func:`as_samples`) as indices
        ``[start_index, start_index + len(samples))``.

        ``samples`` is copied into the ring (it may be a read-only view of a driver's buffer).
        """
        block = as_samples(samples)
        if start_index < 0:
            raise ValueError(f"sample index cannot be negative: {start_index}")
        n = len(block)
        capacity = self.capacity
        if start_index == self.head and 0 < n <= capacity:
            # the steady state of capture: the next block, appended with one or two slice copies
            end = start_index + n
            first = start_index % capacity
            if first + n <= capacity:
                self._buf[first : first + n] = block
            else:
                self._put(start_index, block)
            self.head = end
            gaps = self._gaps
            while gaps and gaps[0][1] <= end - capacity:
                gaps.popleft()
            return
        if n == 0:
            return  # writes nothing, says nothing: no gap, head unchanged
        end = start_index + n
        if end <= self.head:
            self.overlap_samples += n
            return
        if start_index < self.head:
            self.overlap_samples += self.head - start_index
            block = block[self.head - start_index :]
            start_index = self.head
        if start_index > self.head:
            self.gaps_samples += start_index - self.head
            self._gaps.append((self.head, start_index))
            # Zero only the part of the hole that will still be in the ring after this write.
            self._fill(max(self.head, end - capacity), start_index)
        if len(block) > capacity:
            self.overflow_samples += len(block) - capacity
            block = block[-capacity:]
            start_index = end - capacity
        self._put(start_index, block)
        self.head = end
        while self._gaps and self._gaps[0][1] <= self.oldest:
            self._gaps.popleft()

    def read(self, start: int, end: int) -> Cut:
        """Copy ``[start, end)`` (what :meth:`view` shows); ``end`` must not be past ``head``."""
        view = self.view(start, end)
        out = array("h")
        for part in view.parts:
            out.frombytes(part.cast("B"))
        return Cut(
            samples=out, start=view.start, end=view.end, truncated=view.truncated, gaps=view.gaps
        )

    def view(self, start: int, end: int) -> View:
        """``[start, end)`` as views of the buffer, without a copy (what :meth:`read` copies);
        ``end`` must not be past ``head``. A clip is written straight from these (issue #14:
        a long clip's copy was the largest allocation after the ring)."""
        if end > self.head:
            raise ValueError(f"cannot read up to {end}: newest sample is {self.head - 1}")
        if start > end:
            raise ValueError(f"range reversed: start {start} > end {end}")
        truncated = start < self.oldest
        start = min(max(start, self.oldest), end)
        first = start % self.capacity
        n1 = min(end - start, self.capacity - first)
        # read-only views: the ring's buffer itself stays writable
        parts = [self._buf[first : first + n1].toreadonly()]
        if end - start > n1:
            parts.append(self._buf[: end - start - n1].toreadonly())
        gaps = tuple(
            (max(g0, start), min(g1, end)) for g0, g1 in self._gaps if g0 < end and g1 > start
        )
        return View(parts=tuple(parts), start=start, end=end, truncated=truncated, gaps=gaps)

    def _put(self, start: int, block: Samples) -> None:
        first = start % self.capacity
        n1 = min(len(block), self.capacity - first)
        self._buf[first : first + n1] = block[:n1]
        self._buf[: len(block) - n1] = block[n1:]

    def _fill(self, start: int, end: int) -> None:
        """Zero indices ``[start, end)`` (at most ``capacity`` of them)."""
        if end <= start:
            return
        first = start % self.capacity
        n1 = min(end - start, self.capacity - first)
        self._zero(first, first + n1)
        self._zero(0, end - start - n1)

    def _zero(self, first: int, end: int) -> None:
        """Zero slots ``[first, end)``, a slice of :data:`_ZEROS` at a time (no allocation as
        large as the hole)."""
        raw = self._raw
        step = len(_ZEROS)
        for pos in range(2 * first, 2 * end, step):
            chunk = min(step, 2 * end - pos)
            raw[pos : pos + chunk] = _ZEROS[:chunk]
