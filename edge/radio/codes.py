"""What a protocol decoder returns for one frame: a :class:`Decoded` code or a :class:`Reject`.

A decoder returns exactly one of the two and never raises for bad radio input. ``Reject.reason``
is one of a few short words (see ``REASONS``) so rejects can be counted by reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Reject reasons, from "nowhere near" to "nearly": short/long (slicer: pulse count out of range),
# bits (not the bit count this protocol needs), sync (sync, start or stop pulse, or preamble off),
# timing (a bit's length or shape is outside the tolerance), trits (PT2262: a bit pair that is not
# a trit).
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
    decoder). What else a protocol knows about the code:

    - ``id`` (printed with ``id_digits`` hex digits) and ``key``: EV1527's 20-bit id and 4-bit
      key; NewKaku's 26-bit address; HomeEasy's 32-bit address;
    - ``tristate``: PT2262's trits;
    - ``state``: what the code means to the device that sent it: an alarm sensor's
      ``open``/``close``/``tamper``/``battery``/``motion`` (EV1527 key nibbles, as rtl_433's
      Kerui decoder maps them), or a switch's ``on``/``off``/``dim`` (NewKaku, HomeEasy);
    - ``unit``, ``group`` and ``dim``: NewKaku's unit, group flag and dim level.
    """

    protocol: str
    bits: int
    code: int
    pulse_us: int
    t_ns: int = 0
    id: int | None = None
    key: int | None = None
    tristate: str | None = None
    state: str | None = None
    unit: int | None = None
    group: bool | None = None
    dim: int | None = None
    id_digits: int = 5

    @property
    def hex(self) -> str:
        """The code in lower-case hex, zero-padded to ``bits / 4`` digits, no ``0x``."""
        return f"{self.code:0{(self.bits + 3) // 4}x}"

    @property
    def identity(self) -> tuple[str, int, int]:
        """What makes two frames "the same code": protocol, bit count and value."""
        return (self.protocol, self.bits, self.code)

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form: protocol, bits, code (hex), then what the protocol knows (id as
        hex, key, tristate, state, unit, group, dim), each only when set."""
        out: dict[str, Any] = {"protocol": self.protocol, "bits": self.bits, "code": self.hex}
        if self.id is not None:
            out["id"] = f"{self.id:0{self.id_digits}x}"
        for name in ("key", "tristate", "state", "unit", "group", "dim"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out
