"""EV1527 (and its clones): 24 bits of rc-switch protocol-1 timing, no checksum.

A frame qualifies when it is 24 bits long and protocol 1 is its best rc-switch fit.

The first 20 bits are the remote's id, the last 4 the key pattern. The base period differs from
remote to remote (about 280–370 µs) and is estimated from the frame, as for rc-switch. With no
checksum, trust comes from repeats (the decoder's job, not this module's).
"""

from __future__ import annotations

from edge.radio.codes import Decoded, Reject
from edge.radio.protocols.rcswitch import best_fit
from edge.radio.slicer import Frame

BITS = 24


def decode(frame: Frame) -> Decoded | Reject:
    """An EV1527 code, or why not."""
    if frame.pulses != BITS + 1:
        return Reject("bits")
    got = best_fit(frame)
    if isinstance(got, Reject):
        return got
    if got.protocol != 1:
        return Reject("timing")
    value, bits, base = got.value, got.bits, got.base_us
    return Decoded("ev1527", bits, value, round(base), id=value >> 4, key=value & 0xF)
