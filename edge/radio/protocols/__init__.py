"""The protocol registry: decoders tried in order, the first that accepts a frame wins.

One physical frame can be valid under several protocols: a 24-bit protocol-1 frame is always an
rc-switch 1 code and an EV1527 code, and a PT2262 code too when every bit pair is a trit. The
decoder reports one canonical decode, the most specific protocol first: PT2262 (only 3^12 of the
2^24 codes are valid), then EV1527 (exactly 24 bits), then NewKaku (66/74 pulses with a start
pulse) and HomeEasy EU (58 pulses with a fixed preamble), then rc-switch 1–12 (any length
12–64). So ``rcswitch1`` only ever names a protocol-1 frame that is not 24 bits long. The choice
is stable: a given remote key always decodes to the same protocol name and code.
"""

from __future__ import annotations

from collections.abc import Callable

from edge.radio.codes import Decoded, Reject
from edge.radio.protocols import ev1527, homeeasy, newkaku, pt2262, rcswitch
from edge.radio.slicer import Frame

FrameDecoder = Callable[[Frame], Decoded | Reject]

#: ``(name, decoder)`` in the order they are tried (names as ``--explain`` prints them).
NAMED_DECODERS: tuple[tuple[str, FrameDecoder], ...] = (
    ("pt2262", pt2262.decode),
    ("ev1527", ev1527.decode),
    ("newkaku", newkaku.decode),
    ("homeeasy", homeeasy.decode),
    ("rcswitch", rcswitch.decode),
)
DECODERS: tuple[FrameDecoder, ...] = tuple(decode for _, decode in NAMED_DECODERS)

__all__ = ["DECODERS", "NAMED_DECODERS", "FrameDecoder"]
