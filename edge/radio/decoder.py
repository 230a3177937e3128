"""The 433 MHz OOK decoder: edges → pulses → frames → protocol codes → confirmed presses.

Rules:
- each candidate frame goes through the protocol registry; the first decoder that accepts it
  wins; a frame nobody accepts is counted in ``stats`` once, under the reason of the decoder that
  got furthest (order of ``REASONS``), as are the short/long frames the slicer drops;
- a code is reported only after ``repeats`` identical frames (protocol, bits, value), each less
  than ``release_us`` after the previous one; rejected frames in between do not break the run,
  a different code does (EV1527 and rc-switch have no checksum: trust comes from repeats);
- one press = one event: after a code is reported it is held, and frames of the held code are
  not reported again until ``release_us`` passes without one;
- a frame's time is the end of its last mark (before its sync gap), so the idle time merged into
  the last repeat's gap never delays it; ``Decoded.t_ns`` is that time for the confirming frame;
- level 2 (watchdog) closes the frame in progress, so a burst's last repeat is decoded at once
  (the watchdog timeout must exceed the longest sync gap, ~12 ms: use 20 ms or more);
- a lone frame followed by idle is never confirmed: its sync gap merges with the idle line and no
  earlier sync vouches for it (remotes send 4–10 repeats).

``feed`` returns a tuple, the shared empty one for the vast majority of edges (no allocation).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from edge.radio.codes import REASONS, Decoded, Reject
from edge.radio.protocols import DECODERS
from edge.radio.pulses import IDLE, EdgeToPulses, Pulse
from edge.radio.slicer import DEFAULT_FRAME_GAP_US, DEFAULT_TOLERANCE, Frame, FrameSlicer

DEFAULT_RELEASE_US = 200_000
_NONE: tuple[Decoded, ...] = ()
_RANK = {reason: i for i, reason in enumerate(REASONS)}


class Decoder:
    """Stateful decoder for one receiver pin; feed it every edge in order."""

    def __init__(
        self,
        repeats: int = 2,
        tolerance: float = DEFAULT_TOLERANCE,
        frame_gap_us: int = DEFAULT_FRAME_GAP_US,
        release_us: int = DEFAULT_RELEASE_US,
    ) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, not {repeats}")
        self.repeats = repeats
        self.release_ns = release_us * 1000
        self.stats: Counter[str] = Counter()
        self._edges = EdgeToPulses()
        self._slicer = FrameSlicer(tolerance, frame_gap_us, self.stats)
        self._run: tuple[str, int, int] | None = None
        self._run_count = 0
        self._run_ns = 0
        self._held: tuple[str, int, int] | None = None
        self._held_ns = 0
        self._replay_us = 0

    def feed(self, level: int, tick_us: int, t_ns: int) -> tuple[Decoded, ...]:
        """One edge (level 0/1, or 2 = watchdog) at driver tick ``tick_us``, queued at ``t_ns``."""
        pulse = self._edges.push(level, tick_us)
        frame = None if pulse is None else self._slicer.push(*pulse)
        if level == IDLE and frame is None:
            frame = self._slicer.close()
        if frame is None:
            return _NONE
        return self._frame(frame, t_ns - frame.gap_us * 1000)

    def feed_pulses(self, pulses: Iterable[Pulse], *, close: bool = True) -> list[Decoded]:
        """Replay recorded pulses (e.g. one ``.ook`` packet); time runs from the pulses alone.

        ``close`` ends the last frame at the end of the pulses, as a watchdog would.
        """
        out: list[Decoded] = []
        for mark, gap in pulses:
            self._replay_us += mark + gap
            frame = self._slicer.push(mark, gap)
            if frame is not None:
                out.extend(self._frame(frame, (self._replay_us - gap) * 1000))
        if close:
            frame = self._slicer.close()
            if frame is not None:
                out.extend(self._frame(frame, (self._replay_us - frame.gap_us) * 1000))
        return out

    def _frame(self, frame: Frame, end_ns: int) -> tuple[Decoded, ...]:
        worst: Reject | None = None
        for decode in DECODERS:
            got = decode(frame)
            if isinstance(got, Decoded):
                return self._confirm(got, end_ns)
            if worst is None or _RANK.get(got.reason, 0) > _RANK.get(worst.reason, 0):
                worst = got
        self.stats[worst.reason if worst is not None else "sync"] += 1
        return _NONE

    def _confirm(self, code: Decoded, end_ns: int) -> tuple[Decoded, ...]:
        ident = code.identity
        if ident == self._held and end_ns - self._held_ns < self.release_ns:
            self._held_ns = end_ns
            return _NONE
        if ident == self._run and end_ns - self._run_ns < self.release_ns:
            self._run_count += 1
        else:
            self._run, self._run_count = ident, 1
        self._run_ns = end_ns
        if self._run_count < self.repeats:
            return _NONE
        self._held, self._held_ns = ident, end_ns
        self._run, self._run_count = None, 0
        return (replace(code, t_ns=end_ns),)
