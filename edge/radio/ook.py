"""Decode an rtl_433 ``.ook`` pulse file: the body of ``contactpoint rf433 decode FILE``.

Packets are replayed back to back through one :class:`Decoder`; each ``;end`` closes the frame in
progress as a receiver's watchdog would. One JSON object per confirmed press.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge.radio.decoder import Decoder
from edge.radio.pulses import MAX_OOK_CHARS, OokError, read_ook


def decode_ook_file(path: Path, repeats: int = 2) -> Iterator[dict[str, Any]]:
    """Yield ``Decoded.to_json()`` for every press the file's pulses confirm."""
    try:
        size = path.stat().st_size
        if size > MAX_OOK_CHARS:
            raise OokError(f"{path}: {size} bytes, more than the {MAX_OOK_CHARS} allowed")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OokError(f"{path}: cannot read pulse data: {exc}") from exc
    decoder = Decoder(repeats=repeats)
    for packet in read_ook(text, str(path)):
        for code in decoder.feed_pulses(packet):
            yield code.to_json()
