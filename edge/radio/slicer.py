"""Slice a pulse stream into candidate frames at sync gaps.

A remote repeats one frame: data bits, then a sync whose low part is a long gap (NewKaku and
HomeEasy also start with a short start pulse, and end on a long stop gap). Two kinds of gap end
a frame:

- a *hard* gap of at least ``frame_gap_us`` (default 4300 µs, rc-switch's separation limit);
- a *short sync*: a gap of at least ``MIN_SYNC_US`` *and* at least ``SYNC_RATIO`` (2.5) times
  the mean duration (marks and gaps) of the frame so far, once the frame holds a whole pulse.
  This catches short syncs such as rc-switch protocol 4's 6 × 380 µs (3 × the mean), while a
  data gap of the 1:3 and 1:2 codings (~1.5–1.8 × the mean, 2 × when a sloppy transmitter
  stretches it by 0.5 T) does not qualify.

A short-sync split can be wrong: NewKaku's long data gap (5 T, 1.3–1.5 ms) passes the ratio test
at a base period of ~300 µs. So the slicer keeps two candidates: frames split at every sync, and
the whole stretch between two hard gaps. When a hard gap ends a stretch that was split, the whole
stretch and the last split frame are handed out together as *alternatives*, the whole one first:
the decoder takes the first that decodes (a frame split by a sloppy long data gap must not also
decode as a shorter code). A stretch that was never split is one frame.

The closing pulse belongs to the frame, so a frame of ``n`` bits plus a sync has ``n + 1``
pulses. Frames of fewer than ``MIN_PULSES`` or more than ``MAX_PULSES`` pulses are counted
(``short``/``long``) and dropped without building anything: idle receivers emit thousands of noise
edges per second, so the work per pulse is a few integer operations and a list append, and a
runaway frame stops storing. ``MAX_PULSES`` is 192: NewKaku's dim frames have 74 pulses, HomeEasy
EU's 58, and frames up to 150 pulses and more reach the decoders.

The line going idle (:meth:`FrameSlicer.close`, a watchdog) ends the frames in progress with an
*open* gap: the real gap is at least the one measured. When the line comes back,
:meth:`FrameSlicer.resume` gives the next frame the whole silence as its lead gap, so a sync
longer than the watchdog (rc-switch 8 and 9: 130 × 200 µs) still vouches for the next repeat.
:meth:`FrameSlicer.discard` drops everything in progress (the driver lost edges).

``tolerance`` (stamped on each frame for the decoders) is the allowed error of a bit's length
(high + low) in base periods; 0.6 by default, as rc-switch allows per duration. The base period
is *not* guessed here: each protocol derives it from the frame it expects.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

MIN_SYNC_US = 1500
SYNC_RATIO = 2.5
MIN_PULSES = 13  # 12 bits + sync
MAX_PULSES = 192
DEFAULT_TOLERANCE = 0.6
DEFAULT_FRAME_GAP_US = 4300

_NONE: tuple[Frame, ...] = ()


@dataclass(frozen=True, slots=True)
class Frame:
    """One candidate frame.

    ``durations`` is flat: ``mark, gap, mark, gap, ...``; the last gap is the one that closed it.
    ``active_us`` is the sum of all durations but that last gap. ``lead_gap_us`` is the gap that
    closed the previous frame (the previous repeat's sync), 0 when unknown (after idle with no
    known resume). ``tolerance`` is the allowed error of a bit's length in base periods.
    ``open_gap``: the line went idle, so the closing gap is only a lower bound.
    """

    durations: tuple[int, ...]
    active_us: int
    lead_gap_us: int
    tolerance: float = DEFAULT_TOLERANCE
    open_gap: bool = False

    @property
    def pulses(self) -> int:
        return len(self.durations) // 2

    @property
    def gap_us(self) -> int:
        """The closing gap."""
        return self.durations[-1]


class FrameSlicer:
    """Accumulates pulses and hands out candidate frames; counts dropped ones in ``stats``."""

    __slots__ = (
        "_buf",
        "_count",
        "_frame_gap",
        "_idle",
        "_lead",
        "_long_lead",
        "_long_ok",
        "_start",
        "_sum",
        "_total",
        "stats",
        "tolerance",
    )

    def __init__(
        self,
        tolerance: float = DEFAULT_TOLERANCE,
        frame_gap_us: int = DEFAULT_FRAME_GAP_US,
        stats: Counter[str] | None = None,
    ) -> None:
        if not 0 < tolerance < 1.5:
            raise ValueError(
                f"tolerance is a bit's allowed error in base periods, in (0, 1.5), not {tolerance}"
            )
        if frame_gap_us < MIN_SYNC_US:
            raise ValueError(f"frame_gap_us must be at least {MIN_SYNC_US}, not {frame_gap_us}")
        self.tolerance = tolerance
        self.stats: Counter[str] = Counter() if stats is None else stats
        self._frame_gap = frame_gap_us
        self._buf: list[int] = []  # durations of the whole stretch since the last hard gap
        self._start = 0  # index in _buf where the current (split) frame starts
        self._count = 0  # pulses in the current frame (also past MAX_PULSES)
        self._sum = 0  # sum of all durations of the current frame
        self._total = 0  # pulses in the whole stretch
        self._long_ok = True  # the whole stretch is still stored in full
        self._lead = 0  # the gap before the current frame
        self._long_lead = 0  # the gap before the whole stretch
        self._idle = False

    def push(self, mark: int, gap: int) -> tuple[Frame, ...]:
        """Add one pulse; return the frames it closes (usually none)."""
        self._idle = False
        count = self._count + 1
        active = self._sum + mark
        self._total += 1
        buf = self._buf
        if count <= MAX_PULSES:
            if len(buf) >= 2 * MAX_PULSES:  # the whole stretch outgrew: keep the current frame
                del buf[: self._start]
                self._start = 0
                self._long_ok = False
            buf.append(mark)
            buf.append(gap)
        else:
            self._long_ok = False
        if gap >= self._frame_gap:
            return self._end(count, active, gap, False)
        if gap >= MIN_SYNC_US and count > 1 and gap * (2 * count - 1) >= SYNC_RATIO * active:
            frame = self._candidate(count, active, gap, self._lead, False)
            self._lead = gap
            self._start = len(buf)
            self._count = 0
            self._sum = 0
            return _NONE if frame is None else (frame,)
        self._count = count
        self._sum = active + gap
        return _NONE

    def close(self, pulse: tuple[int, int] | None = None) -> tuple[Frame, ...]:
        """The line went idle: end the frames in progress, ``pulse`` (its gap measured so far)
        last. Their gaps are open; the next frame's lead is unknown until :meth:`resume`."""
        frames = _NONE
        if pulse is not None:
            self._idle = False
            count = self._count + 1
            self._total += 1
            if count <= MAX_PULSES and len(self._buf) < 2 * MAX_PULSES:
                self._buf.append(pulse[0])
                self._buf.append(pulse[1])
            else:
                self._long_ok = False
            frames = self._end(count, self._sum + pulse[0], pulse[1], True)
        elif self._count:
            gap = self._buf[-1] if self._buf and self._count <= MAX_PULSES else 0
            frames = self._end(self._count, self._sum - gap, gap, True)
        self._lead = self._long_lead = 0
        self._idle = True
        return frames

    def resume(self, gap_us: int) -> None:
        """The line came back after idle, ``gap_us`` after the last frame's last mark."""
        if self._idle and not self._count:
            self._lead = self._long_lead = gap_us

    def discard(self) -> None:
        """Forget the frames in progress (edges were lost): count it as ``lost``."""
        self.stats["lost"] += 1
        self._reset(0)
        self._idle = False

    def _end(self, count: int, active: int, gap: int, open_gap: bool) -> tuple[Frame, ...]:
        frame = self._candidate(count, active, gap, self._lead, open_gap)
        whole = None
        if self._start and self._long_ok and MIN_PULSES <= self._total <= MAX_PULSES:
            durations = tuple(self._buf)
            whole = Frame(
                durations, sum(durations) - gap, self._long_lead, self.tolerance, open_gap
            )
        self._reset(gap)
        if frame is None:
            return _NONE if whole is None else (whole,)
        return (frame,) if whole is None else (whole, frame)

    def _candidate(
        self, count: int, active: int, gap: int, lead: int, open_gap: bool
    ) -> Frame | None:
        if count < MIN_PULSES or count > MAX_PULSES:
            self.stats["short" if count < MIN_PULSES else "long"] += 1
            return None
        durations = tuple(self._buf[self._start :])
        return Frame(durations, active, lead, self.tolerance, open_gap)

    def _reset(self, lead: int) -> None:
        self._buf.clear()
        self._start = self._count = self._sum = self._total = 0
        self._long_ok = True
        self._lead = self._long_lead = lead
