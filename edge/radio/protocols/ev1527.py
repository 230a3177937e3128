"""EV1527 (and its clones): 24 bits of rc-switch protocol-1 timing, no checksum.

A frame qualifies when it is 24 bits long and protocol 1 is its best rc-switch fit.

The first 20 bits are the remote's id (an alarm sensor's unit code), the last 4 the key pattern.
The base period differs from remote to remote (about 280–370 µs) and is estimated from the frame,
as for rc-switch. With no checksum, trust comes from repeats (the decoder's job, not this
module's).

Alarm sensors built on EV1527 (Kerui and its many clones: door/window contacts, PIRs) send their
state in the key nibble. rtl_433's Kerui decoder maps 0xa = motion, 0xe = open, 0x7 = close,
0xb = tamper, 0xf = battery (low); such a code carries that ``state``, so a door contact's
"open" code can be bound to a role (``contactpoint learn``) and its "close" code ignored or bound
elsewhere. A plain remote whose key happens to use one of these nibbles shows the state too: it
is a hint, the code is what a binding matches.
"""

from __future__ import annotations

from edge.radio.codes import Decoded, Reject
from edge.radio.protocols.rcswitch import best_fit
from edge.radio.slicer import Frame

BITS = 24
SENSOR_STATES = {0xA: "motion", 0xE: "open", 0x7: "close", 0xB: "tamper", 0xF: "battery"}


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
    key = value & 0xF
    return Decoded(
        "ev1527", bits, value, round(base), id=value >> 4, key=key, state=SENSOR_STATES.get(key)
    )
