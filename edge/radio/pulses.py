"""Edges to pulses, and rtl_433's ``.ook`` pulse-data text.

A *pulse* is ``(mark_us, gap_us)``: how long the data pin stayed high, then how long it stayed low
until the next rising edge.

Rules of :class:`EdgeToPulses`:
- ticks are unsigned 32-bit microseconds; a duration is ``(tick - last) & 0xFFFFFFFF``, so a
  wrap-around inside a frame is harmless;
- a pulse is complete at the rising edge that ends its gap;
- a repeated level (a missed edge) is ignored, the first edge of the run counts;
- level 2 (pigpio watchdog: no edge for a while) completes a pending pulse with the gap measured
  so far and returns to idle; a mark still high at that moment is dropped (line stuck high).

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
MAX_OOK_CHARS = 16 * 1024 * 1024
MAX_OOK_PULSES = 1_000_000
_MAX_DURATION_US = 600_000_000


class EdgeToPulses:
    """Turns ``(level, tick_us)`` edges of one pin into ``(mark_us, gap_us)`` pulses."""

    __slots__ = ("_fall", "_mark", "_rise")

    def __init__(self) -> None:
        self._rise: int | None = None  # tick of the rising edge of the mark in progress
        self._fall: int | None = None  # tick of the falling edge ending the last mark
        self._mark = 0

    def push(self, level: int, tick_us: int) -> Pulse | None:
        """Feed one edge; return the pulse it completes, if any."""
        if level == 1:
            if self._rise is not None and self._fall is None:
                return None  # already high: a missed falling edge
            pulse = None
            if self._fall is not None:
                pulse = (self._mark, (tick_us - self._fall) & TICK_MASK)
            self._rise, self._fall = tick_us, None
            return pulse
        if level == 0:
            if self._rise is not None and self._fall is None:
                self._mark = (tick_us - self._rise) & TICK_MASK
                self._fall = tick_us
            return None
        if level == IDLE:
            pulse = None
            if self._fall is not None:
                pulse = (self._mark, (tick_us - self._fall) & TICK_MASK)
            self._rise = self._fall = None
            return pulse
        raise ValueError(f"level must be 0, 1 or 2, not {level}")


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
