"""HomeEasy EU (HE300/HE301/HE800 series with automatic coding): 57 bits with a fixed preamble.

Facts (RFLink's plugin 15, the documented decoder of these remotes, door sensors and PIRs): a
frame is 58 pulses; each bit is a short high (~150–200 µs) and a low that is short (~150–200 µs)
for 0 or long (~1170 µs) for 1. The bits are an 11-bit preamble 0x63C, a 32-bit address and
15 command bits, the last of which (the stop bit) ends on the gap to the next repeat (~20 ms);
of the 14 others, bits 4–5 (from the left) are the command: 10 = on, 01 = off. The remaining
command bits (group, channel) are not documented well enough to name: they stay in ``code``.

Rules:
- ``T`` is the median mark; the first mark may be stretched by the receiver's AGC and is not
  checked; every other mark within ``frame.tolerance × 1.5`` of T (these marks are unsteady);
- a low shorter than 4 T is a 0 and must be at most 2.5 T; a longer one is a 1 and must be
  5–11 T; the closing gap at least 20 T;
- the preamble must be 0x63C (a ``sync`` reject otherwise).

``code`` is the address and the 14 command bits (46 bits); ``id`` the address; ``state`` on/off.
"""

from __future__ import annotations

from edge.radio.codes import Decoded, Reject
from edge.radio.slicer import Frame

PULSES = 58
PREAMBLE = 0x63C
PREAMBLE_BITS = 11
ADDRESS_BITS = 32
COMMAND_BITS = 14
_STATES = {0b10: "on", 0b01: "off"}


def decode(frame: Frame) -> Decoded | Reject:
    """A HomeEasy EU code, or why not."""
    d = frame.durations
    if len(d) // 2 != PULSES:
        return Reject("bits")
    marks = sorted(d[2::2])  # the first mark may be stretched
    base = marks[len(marks) // 2]
    if base <= 0:
        return Reject("timing")
    if frame.gap_us < 20 * base:
        return Reject("sync")
    slack = frame.tolerance * 1.5 * base
    if marks[0] < base - slack or marks[-1] > base + slack:
        return Reject("timing")
    value = 0
    for low in d[1:-1:2]:
        if low < 4 * base:
            if low > 2.5 * base:
                return Reject("timing")
            value <<= 1
        elif low <= 11 * base and low >= 5 * base:
            value = value << 1 | 1
        else:
            return Reject("timing")
    payload_bits = ADDRESS_BITS + COMMAND_BITS
    if value >> payload_bits != PREAMBLE:
        return Reject("sync")
    payload = value & ((1 << payload_bits) - 1)
    command = payload >> (COMMAND_BITS - 6) & 0b11
    return Decoded(
        "homeeasy",
        payload_bits,
        payload,
        round(base),
        id=payload >> COMMAND_BITS,
        id_digits=8,
        state=_STATES.get(command),
    )
