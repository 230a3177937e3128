"""rc-switch protocols 1–6: fixed-length pulse-width codes with a sync after each repeat.

Facts from rc-switch's protocol table (base µs; sync, zero, one as high:low multiples of the base;
protocol 6 sends every level inverted):

    1: 350, sync 1:31, zero 1:3, one 3:1        4: 380, sync 1:6,  zero 1:3, one 3:1
    2: 650, sync 1:10, zero 1:2, one 2:1        5: 500, sync 6:14, zero 1:2, one 2:1
    3: 100, sync 30:71, zero 4:11, one 9:6      6: 450, sync 23:1, zero 1:2, one 2:1, inverted

Rules:
- a frame of ``n + 1`` pulses carries ``n`` bits, most significant first;
- the base period is estimated from the frame itself: every bit of a protocol spans the same
  number of base periods, so ``T = active_us / (n * bit_units + sync_edge_units)`` — exact whatever
  the bit values, averaged over the whole frame, and unaffected by the idle time that merges with
  the first repeat's leading gap or the last repeat's sync;
- the sync gap must be ``sync_units * T`` within ±``SYNC_TOLERANCE``; when the closing gap is
  longer (the last repeat before idle) the previous repeat's sync (the lead gap) must match;
- every other duration must be within ``frame.tolerance * T`` of its expected multiple;
- an inverted frame (6) starts with the previous sync's short high and ends on its own long low,
  so bit ``i`` is (gap ``i``, mark ``i + 1``) and the lead gap must be a sync too; the burst's
  first repeat is lost in the idle low (rc-switch sends 10 repeats);
- when several protocols fit, the one with the smallest worst-case deviation (µs) wins: the
  right protocol is off by receiver jitter only, a look-alike by a systematic fraction of the
  base. Two look-alikes exist: protocol 3 is protocol 5 at five times the base (4:11 ≈ 5:10,
  9:6 ≈ 10:5, sync 30:71 ≈ 30:70), and a code whose bits are all equal fits both 1 and 6
  (bits inverted) within tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from edge.radio.codes import Decoded, Reject
from edge.radio.slicer import Frame

SYNC_TOLERANCE = 0.15


@dataclass(frozen=True, slots=True)
class Timing:
    """One protocol in wire order: each pair is (first, second) duration in base periods."""

    number: int
    pulse_us: int
    sync: tuple[int, int]
    zero: tuple[int, int]
    one: tuple[int, int]
    inverted: bool = False

    @property
    def gap_units(self) -> int:
        """The long sync gap: the low part, or for an inverted protocol the (sent low) high."""
        return self.sync[0] if self.inverted else self.sync[1]

    @property
    def edge_units(self) -> int:
        """The other half of the sync: the mark before the gap, or (inverted) the first mark."""
        return self.sync[1] if self.inverted else self.sync[0]


TABLE: tuple[Timing, ...] = (
    Timing(1, 350, (1, 31), (1, 3), (3, 1)),
    Timing(2, 650, (1, 10), (1, 2), (2, 1)),
    Timing(3, 100, (30, 71), (4, 11), (9, 6)),
    Timing(4, 380, (1, 6), (1, 3), (3, 1)),
    Timing(5, 500, (6, 14), (1, 2), (2, 1)),
    Timing(6, 450, (23, 1), (1, 2), (2, 1), inverted=True),
)


class Fit(NamedTuple):
    """A frame read under one timing; ``error_us`` is the largest deviation of a duration."""

    protocol: int
    value: int
    bits: int
    base_us: float
    error_us: float


def demodulate(frame: Frame, timing: Timing) -> Fit | Reject:
    """The frame's bits under one timing, or why they are not."""
    d = frame.durations
    n = len(d) // 2 - 1
    bit_units = timing.zero[0] + timing.zero[1]
    base = frame.active_us / (n * bit_units + timing.edge_units)
    expected_gap = timing.gap_units * base
    low, high = expected_gap * (1 - SYNC_TOLERANCE), expected_gap * (1 + SYNC_TOLERANCE)
    gap, lead = frame.gap_us, frame.lead_gap_us
    lead_ok = low <= lead <= high
    if timing.inverted:
        synced = lead_ok and gap >= low  # the frame starts with the previous sync's tail
    else:
        synced = low <= gap <= high or (gap > high and lead_ok)
    if not synced:
        return Reject("sync")
    tol = frame.tolerance * base
    edge = d[0] if timing.inverted else d[-2]
    error = abs(edge - timing.edge_units * base)
    if error >= tol:
        return Reject("sync")
    z0, z1 = timing.zero[0] * base, timing.zero[1] * base
    o0, o1 = timing.one[0] * base, timing.one[1] * base
    value = 0
    start = 1 if timing.inverted else 0
    for i in range(start, start + 2 * n, 2):
        a, b = d[i], d[i + 1]
        ea, eb = abs(a - z0), abs(b - z1)
        if ea < tol and eb < tol:
            value <<= 1
        else:
            ea, eb = abs(a - o0), abs(b - o1)
            if ea < tol and eb < tol:
                value = value << 1 | 1
            else:
                return Reject("timing")
        error = max(error, ea, eb)
    return Fit(timing.number, value, n, base, error)


def best_fit(frame: Frame) -> Fit | Reject:
    """The protocol that fits the frame best, or the furthest-reaching reason none does."""
    best: Fit | Reject = Reject("sync")
    for timing in TABLE:
        got = demodulate(frame, timing)
        if isinstance(got, Fit):
            if not isinstance(best, Fit) or got.error_us < best.error_us:
                best = got
        elif got.reason == "timing" and not isinstance(best, Fit):
            best = got
    return best


def decode(frame: Frame) -> Decoded | Reject:
    """The rc-switch code of the frame, or why not."""
    got = best_fit(frame)
    if isinstance(got, Reject):
        return got
    return Decoded(f"rcswitch{got.protocol}", got.bits, got.value, round(got.base_us))
