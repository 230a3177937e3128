"""The 433 MHz OOK decoder: edges → pulses → frames → protocol codes → confirmed presses.

Rules:
- each candidate frame goes through the protocol registry; the first decoder that accepts it
  wins (of alternative frames the slicer hands out together, the first that decodes); a frame
  nobody accepts is counted in ``stats`` once, under the reason of the decoder that
  got furthest (order of ``REASONS``), as are the short/long frames the slicer drops (and
  ``lost``: frames void because the driver lost edges, level 3);
- a code is reported only after ``repeats`` identical frames (protocol, bits, value), each
  starting less than ``release_us`` after the previous one ended; rejected frames in between do
  not break the run, a different code does (EV1527 and rc-switch have no checksum: trust comes
  from repeats); measuring from the frame's start keeps long frames (a 64-bit rc-switch 8 frame
  lasts 0.2 s) confirmable;
- one press = one event: after a code is reported it is held, and frames of the held code are
  not reported again until ``release_us`` passes without one;
- a frame's time is the end of its last mark (before its sync gap), so the idle time merged into
  the last repeat's gap never delays it; ``Decoded.t_ns`` is that time for the confirming frame;
- level 2 (watchdog) closes the frames in progress, so a burst's last repeat is decoded at once;
  a sync longer than the watchdog is measured when the line comes back (the slicer's resume);
- a lone frame followed by idle is never confirmed: its sync gap merges with the idle line and no
  earlier sync vouches for it (remotes send 4–10 repeats);
- ``glitch_us`` filters glitches in the pulse layer (:class:`~edge.radio.pulses.EdgeToPulses`);
- ``on_frame(frame, end_ns, results)``, if given, sees every candidate frame with each decoder's
  answer, ``(name, Decoded | Reject)`` in registry order up to the first that accepted it: what
  ``contactpoint rf433 decode --explain`` prints.

``feed`` returns a tuple, the shared empty one for the vast majority of edges (no allocation).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace

from edge.radio.codes import REASONS, Decoded, Reject
from edge.radio.protocols import NAMED_DECODERS
from edge.radio.pulses import IDLE, LOST, TICK_MASK, EdgeToPulses, Pulse
from edge.radio.slicer import DEFAULT_FRAME_GAP_US, DEFAULT_TOLERANCE, Frame, FrameSlicer

DEFAULT_RELEASE_US = 200_000
_NONE: tuple[Decoded, ...] = ()
_RANK = {reason: i for i, reason in enumerate(REASONS)}

FrameResults = list[tuple[str, Decoded | Reject]]
FrameHook = Callable[[Frame, int, FrameResults], None]


class Decoder:
    """Stateful decoder for one receiver pin; feed it every edge in order."""

    def __init__(
        self,
        repeats: int = 2,
        tolerance: float = DEFAULT_TOLERANCE,
        frame_gap_us: int = DEFAULT_FRAME_GAP_US,
        release_us: int = DEFAULT_RELEASE_US,
        *,
        glitch_us: int = 0,
        on_frame: FrameHook | None = None,
    ) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, not {repeats}")
        self.repeats = repeats
        self.release_ns = release_us * 1000
        self.stats: Counter[str] = Counter()
        self._edges = EdgeToPulses(glitch_us)
        self._slicer = FrameSlicer(tolerance, frame_gap_us, self.stats)
        self._on_frame = on_frame
        self._run: tuple[str, int, int] | None = None
        self._run_count = 0
        self._run_ns = 0
        self._held: tuple[str, int, int] | None = None
        self._held_ns = 0
        self._replay_us = 0

    def feed(self, level: int, tick_us: int, t_ns: int) -> tuple[Decoded, ...]:
        """One edge (level 0/1, 2 = watchdog, 3 = edges lost) at driver tick ``tick_us``,
        stamped ``t_ns``."""
        edges = self._edges
        pulse = edges.push(level, tick_us)
        if edges.resumed:
            self._slicer.resume(edges.take_resumed())
        if level == IDLE:
            frames = self._slicer.close(pulse)
        elif pulse is None:
            if level == LOST:
                self._slicer.discard()
            return _NONE
        else:
            frames = self._slicer.push(*pulse)
        if not frames:
            return _NONE
        # the frame ends where its last mark fell: `gap` before the edge that completed it
        # (with the glitch filter, that edge is confirmed by this one, a little later)
        end_ns = t_ns - ((tick_us - edges.at) & TICK_MASK) * 1000 - frames[0].gap_us * 1000
        for frame in frames:  # alternatives: the first that decodes counts
            code = self._frame(frame, end_ns)
            if code is not None:
                return self._confirm(code, end_ns, end_ns - frame.active_us * 1000)
        return _NONE

    def feed_pulses(self, pulses: Iterable[Pulse], *, close: bool = True) -> list[Decoded]:
        """Replay recorded pulses (e.g. one ``.ook`` packet) as edges; time runs from the pulses
        alone (µs since the first replayed pulse).

        ``close`` ends the last gap with the line going idle, as a watchdog would.
        """
        out: list[Decoded] = []
        t = self._replay_us
        fed = False
        for mark, gap in pulses:
            out.extend(self.feed(1, t & TICK_MASK, t * 1000))
            out.extend(self.feed(0, (t + mark) & TICK_MASK, (t + mark) * 1000))
            t += mark + gap
            fed = True
        self._replay_us = t
        if close and fed:
            out.extend(self.feed(IDLE, t & TICK_MASK, t * 1000))
        return out

    def _frame(self, frame: Frame, end_ns: int) -> Decoded | None:
        worst: Reject | None = None
        results: FrameResults | None = [] if self._on_frame is not None else None
        for name, decode in NAMED_DECODERS:
            got = decode(frame)
            if results is not None:
                results.append((name, got))
            if isinstance(got, Decoded):
                if self._on_frame is not None and results is not None:
                    self._on_frame(frame, end_ns, results)
                return got
            if worst is None or _RANK.get(got.reason, 0) > _RANK.get(worst.reason, 0):
                worst = got
        self.stats[worst.reason if worst is not None else "sync"] += 1
        if self._on_frame is not None and results is not None:
            self._on_frame(frame, end_ns, results)
        return None

    def _confirm(self, code: Decoded, end_ns: int, start_ns: int) -> tuple[Decoded, ...]:
        ident = code.identity
        if ident == self._held and start_ns - self._held_ns < self.release_ns:
            self._held_ns = end_ns
            return _NONE
        if ident == self._run and start_ns - self._run_ns < self.release_ns:
            self._run_count += 1
        else:
            self._run, self._run_count = ident, 1
        self._run_ns = end_ns
        if self._run_count < self.repeats:
            return _NONE
        self._held, self._held_ns = ident, end_ns
        self._run, self._run_count = None, 0
        return (replace(code, t_ns=end_ns),)
