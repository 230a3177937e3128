"""PT2262 (and compatible encoders): 12 tri-state trits in rc-switch protocol-1 timing.

Each trit is two protocol-1 bits: ``0`` = 00 (short-long short-long), ``1`` = 11
(long-short long-short), ``F`` (floating) = 01 (short-long long-short). The pair 10 is not a trit,
so a frame containing it is rejected (``trits``) and falls through to EV1527. As for EV1527,
protocol 1 must be the frame's best rc-switch fit.
"""

from __future__ import annotations

from edge.radio.codes import Decoded, Reject
from edge.radio.protocols.rcswitch import best_fit
from edge.radio.slicer import Frame

TRITS = 12
_TRIT = {0b00: "0", 0b11: "1", 0b01: "F"}


def decode(frame: Frame) -> Decoded | Reject:
    """A PT2262 code (with its tri-state string), or why not."""
    if frame.pulses != 2 * TRITS + 1:
        return Reject("bits")
    got = best_fit(frame)
    if isinstance(got, Reject):
        return got
    if got.protocol != 1:
        return Reject("timing")
    value, bits, base = got.value, got.bits, got.base_us
    trits = []
    for shift in range(bits - 2, -1, -2):
        trit = _TRIT.get((value >> shift) & 0b11)
        if trit is None:
            return Reject("trits")
        trits.append(trit)
    return Decoded("pt2262", bits, value, round(base), tristate="".join(trits))
