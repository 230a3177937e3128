"""Edges to pulses, and rtl_433's ``.ook`` pulse-data text.

A *pulse* is ``(mark_us, gap_us)``: how long the data pin stayed high, then how long it stayed low
until the next rising edge.

Rules of :class:`EdgeToPulses`:
- ticks are unsigned 32-bit microseconds; a duration is ``(tick - last) & 0xFFFFFFFF``, so a
  wrap-around inside a frame is harmless;
- a pulse is complete at the rising edge that ends its gap;
- a repeated level (a missed edge) is ignored, the first edge of the run counts;
- ``glitch_us`` > 0 filters glitches here, in software (the kernel's debounce is not used on the
  radio line: it delays and blurs timings): an edge counts only once the new level has lasted
  ``glitch_us``, so a spike shorter than that vanishes together with the edge that ended it
  (like pigpio's glitch filter, which makes this a no-op behind pigpiod). An edge is therefore
  confirmed by the next one, one level late, which costs nothing: a pulse is only complete at
  the next rising edge anyway;
- level 2 (watchdog: no edge for a while) completes a pending pulse with the gap measured so far
  and returns to idle; a mark still high at that moment is dropped (line stuck high). When the
  line resumes with a rising edge, :meth:`EdgeToPulses.take_resumed` gives the whole silence
  since the last falling edge (the real sync gap a watchdog cut short), 0 if unknown or longer
  than ``MAX_RESUME_US``;
- level 3 (``LOST``: the driver lost edges here) forgets everything in progress: what was being
  measured is void.

Rules of :func:`read_ook`: the first non-blank line is ``;pulse data``; other ``;`` lines are
directives, of which ``;end`` closes a packet and ``;timescale Nus`` scales the numbers; every
other line is two non-negative integers ``mark gap``. Pulses after the last ``;end`` form a final
packet. Errors name the line; input is capped at ``MAX_OOK_CHARS`` and ``MAX_OOK_PULSES``.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge._errors import UserError

Pulse = tuple[int, int]
TICK_MASK = 0xFFFFFFFF
IDLE = 2
LOST = 3
MAX_RESUME_US = 1_000_000  # a longer silence tells nothing about the previous repeat's sync
MAX_OOK_CHARS = 16 * 1024 * 1024
MAX_OOK_PULSES = 1_000_000
_MAX_DURATION_US = 600_000_000


class EdgeToPulses:
    """Turns ``(level, tick_us)`` edges of one pin into ``(mark_us, gap_us)`` pulses."""

    __slots__ = (
        "_fall",
        "_glitch",
        "_idle_fall",
        "_mark",
        "_pend",
        "_pend_tick",
        "_rise",
        "at",
        "resumed",
    )

    def __init__(self, glitch_us: int = 0) -> None:
        if glitch_us < 0:
            raise ValueError(f"glitch_us must be >= 0, not {glitch_us}")
        self._glitch = glitch_us
        self._rise: int | None = None  # tick of the rising edge of the mark in progress
        self._fall: int | None = None  # tick of the falling edge ending the last mark
        self._mark = 0
        self._pend = -1  # level of the edge waiting for confirmation (glitch filter), -1: none
        self._pend_tick = 0
        self._idle_fall: int | None = None  # last falling edge before the line went idle
        self.resumed = 0  # set by a rising edge after idle: the silence it ended (µs)
        self.at = 0  # tick of the edge (or idle) that completed the last pulse returned

    def push(self, level: int, tick_us: int) -> Pulse | None:
        """Feed one edge; return the pulse it completes, if any."""
        if level in (0, 1):
            if not self._glitch:
                return self._edge(level, tick_us)
            pend = self._pend
            if pend < 0:
                self._pend, self._pend_tick = level, tick_us
                return None
            if level == pend:
                return None  # a repeated level: the first edge counts
            if (tick_us - self._pend_tick) & TICK_MASK < self._glitch:
                self._pend = -1  # a spike: it and the edge that ended it vanish
                return None
            pulse = self._edge(pend, self._pend_tick)
            self._pend, self._pend_tick = level, tick_us
            return pulse
        if level == IDLE:
            pulse = None
            if self._pend >= 0:
                pend, self._pend = self._pend, -1
                if (tick_us - self._pend_tick) & TICK_MASK >= self._glitch:
                    pulse = self._edge(pend, self._pend_tick)  # a rise may complete a pulse
            if pulse is not None:
                self._idle_fall = None  # and the line has stayed high since: nothing to resume
            elif self._fall is not None:
                pulse = (self._mark, (tick_us - self._fall) & TICK_MASK)
                self._idle_fall = self._fall
                self.at = tick_us
            elif self._rise is not None:
                self._idle_fall = None  # stuck high: the mark is dropped
            self._rise = self._fall = None
            return pulse
        if level == LOST:
            self._rise = self._fall = self._idle_fall = None
            self._pend = -1
            self.resumed = 0
            return None
        raise ValueError(f"level must be 0, 1, 2 (idle) or 3 (edges lost), not {level}")

    def take_resumed(self) -> int:
        """The silence a rising edge after idle ended (µs; 0: none or unknown), once."""
        gap, self.resumed = self.resumed, 0
        return gap

    def _edge(self, level: int, tick_us: int) -> Pulse | None:
        if level == 1:
            if self._rise is not None and self._fall is None:
                return None  # already high: a missed falling edge
            pulse = None
            if self._fall is not None:
                pulse = (self._mark, (tick_us - self._fall) & TICK_MASK)
                self.at = tick_us
            elif self._idle_fall is not None:
                gap = (tick_us - self._idle_fall) & TICK_MASK
                self.resumed = gap if gap <= MAX_RESUME_US else 0
            self._idle_fall = None
            self._rise, self._fall = tick_us, None
            return pulse
        if self._rise is not None and self._fall is None:
            self._mark = (tick_us - self._rise) & TICK_MASK
            self._fall = tick_us
        return None


class OokError(UserError):
    """A malformed ``.ook`` pulse file; the message names the line."""


def read_ook(text: str, name: str = "") -> list[list[Pulse]]:
    """Parse rtl_433 pulse data into packets of ``(mark_us, gap_us)`` pulses."""
    where = f"{name}:" if name else "line "
    if len(text) > MAX_OOK_CHARS:
        raise OokError(f"{name or 'pulse data'}: larger than {MAX_OOK_CHARS} characters")
    packets: list[list[Pulse]] = []
    packet: list[Pulse] = []
    scale = 1
    total = 0
    seen_header = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not seen_header:
            if line != ";pulse data":
                raise OokError(f"{where}{number}: expected the header ';pulse data', got {line!r}")
            seen_header = True
            continue
        if line.startswith(";"):
            words = line[1:].split()
            if words == ["end"]:
                if packet:
                    packets.append(packet)
                packet = []
            elif words[:1] == ["timescale"]:
                scale = _timescale(words, f"{where}{number}")
            continue
        fields = line.split()
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            raise OokError(
                f"{where}{number}: expected two non-negative integers 'mark_us gap_us', "
                f"got {line!r}"
            )
        mark, gap = int(fields[0]) * scale, int(fields[1]) * scale
        if mark > _MAX_DURATION_US or gap > _MAX_DURATION_US:
            raise OokError(f"{where}{number}: duration above {_MAX_DURATION_US} us in {line!r}")
        total += 1
        if total > MAX_OOK_PULSES:
            raise OokError(f"{where}{number}: more than {MAX_OOK_PULSES} pulses")
        packet.append((mark, gap))
    if not seen_header:
        raise OokError(f"{name or 'pulse data'}: empty, expected the header ';pulse data'")
    if packet:
        packets.append(packet)
    return packets


def _timescale(words: list[str], where: str) -> int:
    value = words[1] if len(words) == 2 else ""
    if not (value.endswith("us") and value[:-2].isdigit() and int(value[:-2]) > 0):
        raise OokError(f"{where}: timescale must look like ';timescale 1us', got {words!r}")
    return int(value[:-2])


def format_ook(packets: Iterable[Iterable[Pulse]], freq_hz: int = 433_920_000) -> str:
    """Write packets as rtl_433 pulse data (``read_ook`` reads it back)."""
    lines = [";pulse data", ";version 1", ";timescale 1us", f";freq1 {freq_hz}"]
    for packet in packets:
        pulses = list(packet)
        lines.append(f";ook {len(pulses)} pulses")
        lines.extend(f"{mark} {gap}" for mark, gap in pulses)
        lines.append(";end")
    return "\n".join(lines) + "\n"
