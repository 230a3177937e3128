"""KlikAanKlikUit / Intertechno / Nexa self-learning remotes ("NewKaku"): 32 bits, or 36 with a
dim level, two pulses per bit.

Facts (Randy Simons' NewRemoteSwitch, the reference the other implementations follow), in base
periods T of about 260 µs:

- start pulse: high T, low ~10.44 T (the library sends 10.5 T);
- a "0" bit: high T, low T, high T, low 5 T; a "1" bit: high T, low 5 T, high T, low T;
- the dim marker, sent instead of the on/off bit: high T, low T, high T, low T;
- frame: 26-bit address, group bit, on/off bit (or the dim marker), 4-bit unit, then for a dim
  command a 4-bit dim level; stop pulse: high T, low ~40 T.

So a frame is 66 pulses (start, 64, stop), or 74 with a dim level — longer than any rc-switch
frame, which is why the slicer passes frames of up to ``MAX_PULSES``.

Rules:
- ``T`` is the median mark (every mark is T); the first mark may be stretched by the receiver's
  AGC and is not checked;
- every other mark within ``frame.tolerance × T`` of T; each low within that of T or 5 T;
- the start low within ``0.08 × 10.5 T + tolerance × T`` of 10.5 T; the stop low (the frame's
  closing gap) at least 20 T;
- a bit is (short low, long low) = 0, (long, short) = 1; (short, short) only as the dim marker in
  a 36-bit frame; anything else is a ``timing`` reject.

``code`` is the bits as sent, the dim marker written as 0; ``id`` the address, ``unit``,
``group``, ``state`` (on/off/dim) and ``dim`` what the receiver acts on.
"""

from __future__ import annotations

from edge.radio.codes import Decoded, Reject
from edge.radio.slicer import Frame

SWITCH_BITS = 32
DIM_BITS = 36
START_UNITS = 10.5
STOP_UNITS = 20
_ON_OFF = 27  # index of the on/off bit (or dim marker)


def decode(frame: Frame) -> Decoded | Reject:
    """A NewKaku code, or why not."""
    d = frame.durations
    bits = (len(d) // 2 - 2) // 2
    if len(d) // 2 % 2 or bits not in (SWITCH_BITS, DIM_BITS):
        return Reject("bits")
    marks = sorted(d[2:-1:2])  # the start mark may be stretched
    base = marks[len(marks) // 2]
    if base <= 0:
        return Reject("timing")
    tol = frame.tolerance * base
    start_slack = 0.08 * START_UNITS * base + tol
    if abs(d[1] - START_UNITS * base) > start_slack or frame.gap_us < STOP_UNITS * base:
        return Reject("sync")
    if marks[0] < base - tol or marks[-1] > base + tol:
        return Reject("timing")
    long_low = 5 * base
    value = 0
    dim_marker = False
    for i in range(bits):
        first, second = d[3 + 4 * i], d[5 + 4 * i]
        a = _low(first, base, long_low, tol)
        b = _low(second, base, long_low, tol)
        if a is None or b is None:
            return Reject("timing")
        if a != b:
            value = value << 1 | a  # (long, short) = 1
        elif not a and bits == DIM_BITS and i == _ON_OFF:
            dim_marker = True
            value <<= 1
        else:
            return Reject("timing")
    if bits == DIM_BITS and not dim_marker:
        return Reject("timing")
    tail = bits - 28  # the bits after the on/off bit / dim marker: unit (+ dim level)
    address = value >> (bits - 26)
    group = bool(value >> (bits - 27) & 1)
    if dim_marker:
        unit, level, state = value >> 4 & 0xF, value & 0xF, "dim"
    else:
        unit, level = value & 0xF, None
        state = "on" if value >> tail & 1 else "off"
    return Decoded(
        "newkaku",
        bits,
        value,
        round(base),
        id=address,
        id_digits=7,
        state=state,
        unit=unit,
        group=group,
        dim=level,
    )


def _low(low: int, base: float, long_low: float, tol: float) -> int | None:
    """1 for a long low (5 T), 0 for a short one (T), None for neither."""
    if abs(low - base) <= tol:
        return 0
    if abs(low - long_low) <= tol:
        return 1
    return None
