"""What a transmitted rc-switch code must decode to, written from the documented rule alone.

The rule (edge/radio/protocols/__init__.py): a 24-bit protocol-1 frame is PT2262 when every bit
pair is a trit (00 → 0, 11 → 1, 01 → F), else EV1527 (id = top 20 bits, key = low 4, and the
alarm-sensor state rtl_433's Kerui decoder gives the key: a = motion, e = open, 7 = close,
b = tamper, f = battery); protocol 12 is named 11; a protocol-9 code ending in a 1 bit is a
protocol-8 frame shifted by one bit (edge/radio/protocols/rcswitch.py); any other frame is
``rcswitch<N>``.
"""

from __future__ import annotations

from typing import Any

_TRIT = {0b00: "0", 0b11: "1", 0b01: "F"}
_KERUI = {0xA: "motion", 0xE: "open", 0x7: "close", 0xB: "tamper", 0xF: "battery"}


def canonical(protocol: int, code: int, bits: int) -> dict[str, Any]:
    """The JSON a confirmed press of this transmission produces."""
    if protocol == 1 and bits == 24:
        pairs = [(code >> shift) & 0b11 for shift in range(22, -1, -2)]
        if all(pair in _TRIT for pair in pairs):
            trits = "".join(_TRIT[pair] for pair in pairs)
            return {"protocol": "pt2262", "bits": 24, "code": f"{code:06x}", "tristate": trits}
        out: dict[str, Any] = {
            "protocol": "ev1527",
            "bits": 24,
            "code": f"{code:06x}",
            "id": f"{code >> 4:05x}",
            "key": code & 0xF,
        }
        if code & 0xF in _KERUI:
            out["state"] = _KERUI[code & 0xF]
        return out
    if protocol == 9 and code & 1:  # the same waveform as a protocol-8 frame, shifted
        protocol, code = 8, code >> 1
    digits = (bits + 3) // 4
    name = 11 if protocol == 12 else protocol
    return {"protocol": f"rcswitch{name}", "bits": bits, "code": f"{code:0{digits}x}"}


def newkaku(
    address: int, unit: int, on: bool, *, group: bool = False, dim: int | None = None
) -> dict[str, Any]:
    """What a NewKaku transmission decodes to: the bits as sent (the dim marker as 0)."""
    if dim is None:
        code, bits = address << 6 | group << 5 | on << 4 | unit, 32
        state = "on" if on else "off"
    else:
        code, bits = address << 10 | group << 9 | unit << 4 | dim, 36
        state = "dim"
    out: dict[str, Any] = {
        "protocol": "newkaku",
        "bits": bits,
        "code": f"{code:0{bits // 4}x}",
        "id": f"{address:07x}",
        "state": state,
        "unit": unit,
        "group": group,
    }
    if dim is not None:
        out["dim"] = dim
    return out


def homeeasy(address: int, command14: int) -> dict[str, Any]:
    """What a HomeEasy EU transmission decodes to: address and command bits; on/off from the
    command's bits 4-5 (10 = on, 01 = off)."""
    out: dict[str, Any] = {
        "protocol": "homeeasy",
        "bits": 46,
        "code": f"{address << 14 | command14:012x}",
        "id": f"{address:08x}",
    }
    state = {0b10: "on", 0b01: "off"}.get(command14 >> 8 & 0b11)
    if state is not None:
        out["state"] = state
    return out
