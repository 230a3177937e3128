"""Slice a pulse stream into frames at sync gaps.

A remote repeats one frame: data bits, then a sync whose low part is a long gap. A gap closes the
current frame when it is

- at least ``frame_gap_us`` (default 4300 µs, rc-switch's separation limit), or
- at least ``MIN_SYNC_US`` *and* at least ``SYNC_RATIO`` times the mean duration (marks and gaps)
  of the frame so far, once the frame holds a whole pulse. This catches short syncs such as
  rc-switch protocol 4's 6 × 380 µs, while a data gap (at most ~1.8 × the mean for the 1:3 and
  1:2 codings) never qualifies.

The closing pulse belongs to the frame, so a frame of ``n`` bits has ``n + 1`` pulses. Frames of
fewer than ``MIN_PULSES`` or more than ``MAX_PULSES`` pulses are counted (``short``/``long``) and
dropped without building anything: idle receivers emit thousands of noise edges per second, so the
work per pulse is a few integer operations and a list append, and a runaway frame stops storing.
The base period is *not* guessed here: each protocol derives it from the frame it expects.

``tolerance`` (stamped on each frame for the decoders) is the allowed error of one duration as a
fraction of the base period. Default 0.5, tighter than rc-switch's 0.6: the base is estimated from
the whole frame rather than from the sync alone, so it is accurate, and 0.5 is the largest value
at which a duration can never match both zero and one of the 1:2 codings (they are 1 T apart).
Simulated edge jitter of ±20 % of the base (±40 % per duration) still decodes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

MIN_SYNC_US = 1500
SYNC_RATIO = 2
MIN_PULSES = 13  # 12 bits + sync
MAX_PULSES = 65  # 64 bits + sync
DEFAULT_TOLERANCE = 0.5
DEFAULT_FRAME_GAP_US = 4300


@dataclass(frozen=True, slots=True)
class Frame:
    """One candidate frame.

    ``durations`` is flat: ``mark, gap, mark, gap, ...``; the last gap is the one that closed it.
    ``active_us`` is the sum of all durations but that last gap. ``lead_gap_us`` is the gap that
    closed the previous frame (the previous repeat's sync), 0 when unknown (after idle).
    ``tolerance`` is the allowed error of one duration, as a fraction of the base period.
    """

    durations: tuple[int, ...]
    active_us: int
    lead_gap_us: int
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def pulses(self) -> int:
        return len(self.durations) // 2

    @property
    def gap_us(self) -> int:
        """The closing gap."""
        return self.durations[-1]


class FrameSlicer:
    """Accumulates pulses and hands out candidate frames; counts dropped ones in ``stats``."""

    __slots__ = ("_buf", "_count", "_frame_gap", "_lead", "_sum", "stats", "tolerance")

    def __init__(
        self,
        tolerance: float = DEFAULT_TOLERANCE,
        frame_gap_us: int = DEFAULT_FRAME_GAP_US,
        stats: Counter[str] | None = None,
    ) -> None:
        if not 0 < tolerance < 1:
            raise ValueError(
                f"tolerance is a fraction of the base period in (0, 1), not {tolerance}"
            )
        if frame_gap_us < MIN_SYNC_US:
            raise ValueError(f"frame_gap_us must be at least {MIN_SYNC_US}, not {frame_gap_us}")
        self.tolerance = tolerance
        self.stats: Counter[str] = Counter() if stats is None else stats
        self._frame_gap = frame_gap_us
        self._buf: list[int] = []
        self._count = 0  # pulses in the current frame (also past MAX_PULSES)
        self._sum = 0  # sum of all durations of the current frame
        self._lead = 0

    def push(self, mark: int, gap: int) -> Frame | None:
        """Add one pulse; return the frame it closes, if it is a candidate."""
        count = self._count
        active = self._sum + mark
        if gap >= self._frame_gap or (
            gap >= MIN_SYNC_US and count > 0 and gap * (2 * count + 1) >= SYNC_RATIO * active
        ):
            if count < MAX_PULSES:
                self._buf.append(mark)
                self._buf.append(gap)
            return self._close(count + 1, active, gap)
        if count < MAX_PULSES:
            self._buf.append(mark)
            self._buf.append(gap)
        self._count = count + 1
        self._sum = active + gap
        return None

    def close(self) -> Frame | None:
        """End the current frame at its last gap (line idle); the next one has no lead gap."""
        frame = None
        if self._count:
            gap = self._buf[-1] if self._count <= MAX_PULSES else 0
            frame = self._close(self._count, self._sum - gap, gap)
        self._lead = 0
        return frame

    def _close(self, count: int, active: int, gap: int) -> Frame | None:
        lead = self._lead
        self._lead = gap
        self._count = 0
        self._sum = 0
        if count < MIN_PULSES or count > MAX_PULSES:
            self.stats["short" if count < MIN_PULSES else "long"] += 1
            self._buf.clear()
            return None
        frame = Frame(tuple(self._buf), active, lead, self.tolerance)
        self._buf.clear()
        return frame
