"""What a transmitted rc-switch code must decode to, written from the documented rule alone.

The rule (edge/radio/protocols/__init__.py): a 24-bit protocol-1 frame is PT2262 when every bit
pair is a trit (00 → 0, 11 → 1, 01 → F), else EV1527 (id = top 20 bits, key = low 4); any other
frame is ``rcswitch<N>``.
"""

from __future__ import annotations

from typing import Any

_TRIT = {0b00: "0", 0b11: "1", 0b01: "F"}


def canonical(protocol: int, code: int, bits: int) -> dict[str, Any]:
    """The JSON a confirmed press of this transmission produces."""
    if protocol == 1 and bits == 24:
        pairs = [(code >> shift) & 0b11 for shift in range(22, -1, -2)]
        if all(pair in _TRIT for pair in pairs):
            trits = "".join(_TRIT[pair] for pair in pairs)
            return {"protocol": "pt2262", "bits": 24, "code": f"{code:06x}", "tristate": trits}
        return {
            "protocol": "ev1527",
            "bits": 24,
            "code": f"{code:06x}",
            "id": f"{code >> 4:05x}",
            "key": code & 0xF,
        }
    digits = (bits + 3) // 4
    return {"protocol": f"rcswitch{protocol}", "bits": bits, "code": f"{code:0{digits}x}"}
