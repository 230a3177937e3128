"""rc-switch protocols 1–12: fixed-length pulse-width codes with a sync after each repeat.

Facts from rc-switch's protocol table (base µs; sync, zero, one as high:low multiples of the base;
inverted protocols send every level the other way round):

    1: 350, sync 1:31,  zero 1:3,  one 3:1          7: 150, sync 2:62,  zero 1:6,  one 6:1
    2: 650, sync 1:10,  zero 1:2,  one 2:1          8: 200, sync 3:130, zero 7:16, one 3:16
    3: 100, sync 30:71, zero 4:11, one 9:6          9: 200, sync 130:7, zero 16:7, one 16:3, inv.
    4: 380, sync 1:6,   zero 1:3,  one 3:1         10: 365, sync 18:1,  zero 3:1,  one 1:3, inv.
    5: 500, sync 6:14,  zero 1:2,  one 2:1         11: 270, sync 36:1,  zero 1:2,  one 2:1, inv.
    6: 450, sync 23:1,  zero 1:2,  one 2:1, inv.   12: 320, sync 36:1,  zero 1:2,  one 2:1, inv.

(6: HT6P20B; 7: HS2303-PT; 8/9: Conrad RS-200; 10: 1ByOne doorbell; 11: HT12E; 12: SM5212.)
Protocol 12 is protocol 11 with another base period. The base is measured from each frame, so
the two cannot be told apart and *both decode as* ``rcswitch11`` (a stable name for a remote
whose oscillator sits between the two nominal bases).

Real transmitters are sloppier than this table, so the rules are:

- a frame of ``n + 1`` pulses carries ``n`` bits (12..64), most significant first;
- the base period ``T`` is the *median* bit length over the bit's length in base periods — one
  odd pulse (a stretched first mark, a glitch) cannot move it, unlike a whole-frame average;
- each bit is decided by its shape, not by matching every duration: for the mirrored codings
  (1:3/3:1, 1:2/2:1, ...) by which half is longer, in general by which side of the midpoint
  between zero and one the difference *high − low* falls, at least a quarter of the way
  (``SHAPE_MARGIN``) from that midpoint to the nominal zero or one. A "0" sent as 0.5 T : 2.5 T
  instead of 1 : 2, or one duration off by ±0.5 T, is still the right bit; 2 T : 2 T is no bit;
- the bit's total length must be within ``frame.tolerance × T`` of its nominal length (0.6 T by
  default, rc-switch's tolerance per duration): that is what keeps noise out; and no single
  duration may be off by more than ``tolerance + LOPSIDED`` (1.1 T): a lopsided half plus a
  sloppy one, but not the shape of another protocol (protocol 5's lopsided "0", 0.5 T : 2.5 T,
  is 2.5 T : 12.5 T in protocol 3's base of a fifth, 1.5 T from its 4 : 11);
- a stretched first pulse: receivers with AGC make the first high after a long silence 6–11 T.
  When the first mark is longer than any bit's high, the first bit is decided from its low part;
- the sync: its short part (the mark before the gap, or for an inverted protocol the frame's
  first mark) within the tolerance of its nominal length — HT12E/SM5212 (11) send a longer sync
  high than the table's 1 T, so up to 3 T is accepted there; its long gap within
  ``SYNC_TOLERANCE × gap + tolerance × T`` of its nominal length. When the closing gap is longer
  (the last repeat before idle) or open (the line went idle), the previous repeat's sync (the
  lead gap) must match instead;
- an inverted frame starts with the previous sync's short high and ends on its own long low, so
  bit ``i`` is (gap ``i``, mark ``i + 1``) and the lead gap must be a sync too; the burst's first
  repeat is lost in the idle low (rc-switch sends 10 repeats);
- when several protocols fit, the one with the smallest mean deviation (µs) of its durations from
  their nominal values wins: the right protocol is off by the transmitter's sloppiness on a few
  pulses, a look-alike by a systematic fraction of the base on many. Known look-alikes: protocol
  3 is protocol 5 at five times the base, and a code whose bits are all equal fits both 1 and 6;
- protocols 8 and 9 (the Conrad RS-200's two directions) are one waveform read from two starting
  points: a repeated protocol-9 frame is a protocol-8 frame shifted by one bit. When both fit, 8
  wins (as in rc-switch, which tries 8 first), so a protocol-9 code whose last bit is 1 decodes
  as ``rcswitch8`` with its value shifted right by one bit; one ending in 0 cannot be read as 8
  (its last high, 7 T, is no protocol-8 sync mark) and decodes as ``rcswitch9``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from edge.radio.codes import Decoded, Reject
from edge.radio.slicer import Frame

SYNC_TOLERANCE = 0.08
SHAPE_MARGIN = 0.25
LOPSIDED = 0.5
MIN_BITS = 12
MAX_BITS = 64


@dataclass(frozen=True, slots=True)
class Timing:
    """One protocol in wire order: each pair is (first, second) duration in base periods."""

    number: int
    pulse_us: int
    sync: tuple[int, int]
    zero: tuple[int, int]
    one: tuple[int, int]
    inverted: bool = False
    edge_max: int = 0  # > 0: the sync's short part may be up to this many base periods

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
    Timing(7, 150, (2, 62), (1, 6), (6, 1)),
    Timing(8, 200, (3, 130), (7, 16), (3, 16)),
    Timing(9, 200, (130, 7), (16, 7), (16, 3), inverted=True),
    Timing(10, 365, (18, 1), (3, 1), (1, 3), inverted=True),
    Timing(11, 270, (36, 1), (1, 2), (2, 1), inverted=True, edge_max=3),
)
#: rc-switch's protocol 12 (SM5212): decodes as 11, see the module docstring.
SM5212 = Timing(12, 320, (36, 1), (1, 2), (2, 1), inverted=True, edge_max=3)


class Fit(NamedTuple):
    """A frame read under one timing; ``error_us`` is the mean deviation of its durations."""

    protocol: int
    value: int
    bits: int
    base_us: float
    error_us: float


def _median(values: list[int]) -> float:
    values.sort()
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def demodulate(frame: Frame, timing: Timing) -> Fit | Reject:
    """The frame's bits under one timing, or why they are not."""
    d = frame.durations
    n = len(d) // 2 - 1
    if not MIN_BITS <= n <= MAX_BITS:
        return Reject("bits")
    start = 1 if timing.inverted else 0
    z0, z1 = timing.zero
    o0, o1 = timing.one
    zu, ou = z0 + z1, o0 + o1
    dz, do = z0 - z1, o0 - o1
    one_above = do > dz
    firsts = d[start : start + 2 * n : 2]
    seconds = d[start + 1 : start + 2 * n : 2]
    # the base period: the median bit length (one odd pulse cannot move it)
    if zu == ou:
        base = _median([a + b for a, b in zip(firsts, seconds, strict=True)]) / zu
    else:
        rough = _median([a + b for a, b in zip(firsts, seconds, strict=True)]) * 2 / (zu + ou)
        mid = (dz + do) / 2 * rough
        units = [
            (a + b) / (ou if (a - b > mid) == one_above else zu)
            for a, b in zip(firsts, seconds, strict=True)
        ]
        units.sort()
        base = units[len(units) // 2]
    if base <= 0:
        return Reject("timing")
    tol = frame.tolerance * base
    # the sync
    gu, eu = timing.gap_units, timing.edge_units
    expected_gap = gu * base
    slack = SYNC_TOLERANCE * expected_gap + tol
    low, high = expected_gap - slack, expected_gap + slack
    gap, lead = frame.gap_us, frame.lead_gap_us
    lead_ok = low <= lead <= high
    if timing.inverted:
        synced = lead_ok and (gap >= low or frame.open_gap)
    elif low <= gap <= high and not frame.open_gap:
        synced = True
    else:
        synced = (gap > high or frame.open_gap) and lead_ok
    if not synced:
        return Reject("sync")
    edge = d[0] if timing.inverted else d[2 * n]
    edge_error = edge - eu * base
    if timing.edge_max and edge_error > 0:
        edge_error = max(0.0, edge - timing.edge_max * base)
    if abs(edge_error) > tol:
        return Reject("sync")
    error = abs(edge_error)
    if not (timing.inverted or frame.open_gap or gap > high):
        error += abs(gap - expected_gap)
    # the bits
    mid = (dz + do) / 2 * base
    margin = SHAPE_MARGIN * abs(do - dz) / 2 * base
    loose = tol + LOPSIDED * base
    value = 0
    for i in range(n):
        a, b = firsts[i], seconds[i]
        if i == 0 and not timing.inverted and a > max(z0, o0) * base + tol:
            # a stretched first mark (AGC after silence): the low part decides
            if z1 == o1:
                return Reject("timing")
            bit = abs(b - o1 * base) < abs(b - z1 * base)
            dev = abs(b - (o1 if bit else z1) * base)
            if dev > tol:
                return Reject("timing")
            error += dev
        else:
            diff = a - b - mid
            if abs(diff) < margin:
                return Reject("timing")  # neither shape: e.g. 2 T : 2 T for a 1:3 coding
            bit = (diff > 0) == one_above
            e0, e1 = (o0, o1) if bit else (z0, z1)
            if abs(a + b - (e0 + e1) * base) > tol:
                return Reject("timing")
            da, db = abs(a - e0 * base), abs(b - e1 * base)
            if da > loose or db > loose:
                return Reject("timing")
            error += da + db
        value = value << 1 | bit
    return Fit(timing.number, value, n, base, error / (2 * n + 1))


@lru_cache(maxsize=8)
def best_fit(frame: Frame) -> Fit | Reject:
    """The protocol that fits the frame best, or the furthest-reaching reason none does.

    Cached: PT2262, EV1527 and rc-switch all ask for the same frame in turn.
    """
    best: Fit | Reject = Reject("bits")
    for timing in TABLE:
        if timing.number == 9 and isinstance(best, Fit) and best.protocol == 8:
            continue  # the same waveform: 8 is preferred, see the module docstring
        got = demodulate(frame, timing)
        if isinstance(got, Fit):
            if not isinstance(best, Fit) or got.error_us < best.error_us:
                best = got
        elif not isinstance(best, Fit) and _RANK[got.reason] > _RANK[best.reason]:
            best = got
    return best


_RANK = {"bits": 0, "sync": 1, "timing": 2}


def decode(frame: Frame) -> Decoded | Reject:
    """The rc-switch code of the frame, or why not."""
    got = best_fit(frame)
    if isinstance(got, Reject):
        return got
    return Decoded(f"rcswitch{got.protocol}", got.bits, got.value, round(got.base_us))
