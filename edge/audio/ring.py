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
- No per-sample Python loops: every copy is at most two numpy slice copies.

Not thread-safe: one owner (the core loop, through :class:`edge.audio.Clipper`) calls it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]
_INT16 = np.dtype(np.int16)


@dataclass(frozen=True, slots=True)
class Cut:
    """Audio read from the ring: ``samples`` covers ``[start, end)`` and is a copy.

    ``truncated`` is set when the requested start had already been overwritten; ``gaps`` are the
    recorded gaps (zeros in ``samples``) inside ``[start, end)``.
    """

    samples: Samples
    start: int
    end: int
    truncated: bool
    gaps: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class View:
    """Audio in the ring, not copied: ``parts`` (one array, or two where ``[start, end)`` wraps
    around the ring's end) are read-only views of the ring's buffer, valid until the ring is
    written again. ``truncated`` and ``gaps`` as in :class:`Cut`."""

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
        self._buf: Samples = np.zeros(capacity, dtype=np.int16)
        self._gaps: deque[tuple[int, int]] = deque()

    @property
    def oldest(self) -> int:
        """The oldest index still held."""
        return max(0, self.head - self.capacity)

    @property
    def gaps(self) -> tuple[tuple[int, int], ...]:
        """Recorded gaps ``[start, end)`` that still overlap the ring."""
        return tuple(self._gaps)

    def write(self, start_index: int, samples: npt.ArrayLike) -> None:
        """Store ``samples`` as indices ``[start_index, start_index + len(samples))``.

        ``samples`` is copied into the ring (it may be a read-only view of a driver's buffer).
        """
        block = samples if isinstance(samples, np.ndarray) else np.asarray(samples)
        if block.dtype != _INT16 or block.ndim != 1:
            raise TypeError(f"expected a 1-D int16 array, got {block.ndim}-D {block.dtype}")
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
        out: Samples = np.concatenate(view.parts) if len(view.parts) > 1 else view.parts[0].copy()
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
        parts = [self._buf[first : first + n1]]
        if end - start > n1:
            parts.append(self._buf[: end - start - n1])
        for part in parts:
            part.flags.writeable = False  # a view: the ring's buffer itself stays writable
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
        self._buf[first : first + n1] = 0
        self._buf[: end - start - n1] = 0
