"""What a protocol decoder returns for one frame: a :class:`Decoded` code or a :class:`Reject`.

A decoder returns exactly one of the two and never raises for bad radio input. ``Reject.reason``
is one of a few short words (see ``REASONS``) so rejects can be counted by reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Reject reasons, from "nowhere near" to "nearly": short/long (slicer: pulse count out of range),
# bits (not the bit count this protocol needs), sync (sync gap or sync mark off), timing (a bit
# matches neither zero nor one), trits (PT2262: a bit pair that is not a trit).
REASONS = ("short", "long", "bits", "sync", "timing", "trits")


@dataclass(frozen=True, slots=True)
class Reject:
    """Why a frame is not a code of this protocol (one of ``REASONS``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded remote code.

    ``pulse_us`` is the base period estimated from the frame; ``t_ns`` is the monotonic time at
    which the frame that confirmed the code ended (set by the decoder, 0 from a bare protocol
    decoder). ``id``/``key`` are set for EV1527, ``tristate`` for PT2262.
    """

    protocol: str
    bits: int
    code: int
    pulse_us: int
    t_ns: int = 0
    id: int | None = None
    key: int | None = None
    tristate: str | None = None

    @property
    def hex(self) -> str:
        """The code in lower-case hex, zero-padded to ``bits / 4`` digits, no ``0x``."""
        return f"{self.code:0{(self.bits + 3) // 4}x}"

    @property
    def identity(self) -> tuple[str, int, int]:
        """What makes two frames "the same code": protocol, bit count and value."""
        return (self.protocol, self.bits, self.code)

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form: protocol, bits, code (hex); id (hex) and key, or tristate."""
        out: dict[str, Any] = {"protocol": self.protocol, "bits": self.bits, "code": self.hex}
        if self.id is not None:
            out["id"] = f"{self.id:05x}"
        if self.key is not None:
            out["key"] = self.key
        if self.tristate is not None:
            out["tristate"] = self.tristate
        return out
