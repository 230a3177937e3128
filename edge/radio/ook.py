"""Decode an rtl_433 ``.ook`` pulse file: the body of ``contactpoint rf433 decode FILE``.

Packets are replayed back to back through one :class:`Decoder`, as edges (the same path a live
receiver's edges take); each ``;end`` lets the line go idle, as a receiver's watchdog would. One
JSON object per confirmed press.

With ``--explain`` (:func:`explain_ook_file`), every frame that reached the protocol decoders and
was not decoded is printed with each decoder's reason, and a verdict an installer can act on:

- some decoder got as far as ``timing``/``trits``: the frame is close to that protocol but a bit
  is out of tolerance: a noisy or sloppy signal (antenna, distance, a second transmitter);
- the best is ``sync``: the frame has a length that protocol uses but its sync, start pulse or
  preamble is wrong: another protocol of that length, or a truncated frame (when only rc-switch,
  which takes any length of 12–64 bits, got that far: no known sync, an unknown protocol or
  noise);
- all ``bits``: no supported protocol has frames of this length: an unknown protocol, or noise.

The last line sums up: frames per outcome, reasons, what the slicer dropped, presses confirmed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge.radio.codes import REASONS, Decoded, Reject
from edge.radio.decoder import Decoder, FrameResults
from edge.radio.pulses import MAX_OOK_CHARS, OokError, Pulse, read_ook
from edge.radio.slicer import Frame

_RANK = {reason: i for i, reason in enumerate(REASONS)}


def decode_ook_file(path: Path, repeats: int = 2, glitch_us: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``Decoded.to_json()`` for every press the file's pulses confirm."""
    decoder = Decoder(repeats=repeats, glitch_us=glitch_us)
    for packet in _packets(path):
        for code in decoder.feed_pulses(packet):
            yield code.to_json()


def explain_ook_file(path: Path, repeats: int = 2, glitch_us: int = 0) -> Iterator[str]:
    """Lines for ``rf433 decode --explain``: each press as its JSON line, each frame no decoder
    accepted as text (``frame N at S s: ...`` and its reasons), then a summary line."""
    pending: list[str] = []
    outcomes: Counter[str] = Counter()
    number = 0

    def on_frame(frame: Frame, end_ns: int, results: FrameResults) -> None:
        nonlocal number
        number += 1
        if isinstance(results[-1][1], Decoded):
            outcomes["decoded"] += 1
            return
        outcomes["rejected"] += 1
        pending.extend(_explain(number, frame, end_ns, results))

    decoder = Decoder(repeats=repeats, glitch_us=glitch_us, on_frame=on_frame)
    presses = 0
    for packet in _packets(path):
        for code in decoder.feed_pulses(packet):
            yield from pending
            pending.clear()
            presses += 1
            yield json.dumps(code.to_json())
        yield from pending
        pending.clear()
    stats = decoder.stats
    reasons = ", ".join(f"{r} {stats[r]}" for r in REASONS[2:] if stats[r]) or "none"
    yield (
        f"summary: {number} frames reached the decoders: {outcomes['decoded']} decoded, "
        f"{outcomes['rejected']} rejected (by the furthest reason: {reasons}); the slicer "
        f"dropped {stats['short']} too short and {stats['long']} too long; {presses} "
        f"press(es) confirmed ({repeats} identical frames needed)"
    )


def _explain(number: int, frame: Frame, end_ns: int, results: FrameResults) -> list[str]:
    reasons = {name: got.reason for name, got in results if isinstance(got, Reject)}
    best = max(reasons.values(), key=lambda r: _RANK.get(r, 0))
    closest = [name for name, reason in reasons.items() if reason == best]
    if best in ("timing", "trits"):
        verdict = (
            f"close to {', '.join(closest)}, but a bit is out of tolerance: a noisy or sloppy "
            "signal (antenna, distance, another transmitter at the same time)"
        )
    elif best == "sync" and closest == ["rcswitch"]:
        verdict = (  # rc-switch takes any length of 12-64 bits: the length says nothing
            "no sync of any supported protocol ends it: an unknown protocol, noise, or a "
            "truncated frame"
        )
    elif best == "sync":
        verdict = (
            f"a length {', '.join(closest)} uses, but the sync, start pulse or preamble does "
            "not fit: another protocol of that length, or a truncated frame"
        )
    else:
        verdict = "no supported protocol has frames of this length: an unknown protocol or noise"
    gap = f"{frame.gap_us} us" + (" or more (line idle)" if frame.open_gap else "")
    head = (
        f"frame {number} at {end_ns / 1e9:.6f} s: {frame.pulses} pulses, closing gap {gap}, "
        f"lead gap {frame.lead_gap_us or 'unknown'}{' us' if frame.lead_gap_us else ''}: {verdict}"
    )
    return [head, "  " + "  ".join(f"{name}: {reason}" for name, reason in reasons.items())]


def _packets(path: Path) -> list[list[Pulse]]:
    try:
        size = path.stat().st_size
        if size > MAX_OOK_CHARS:
            raise OokError(f"{path}: {size} bytes, more than the {MAX_OOK_CHARS} allowed")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OokError(f"{path}: cannot read pulse data: {exc}") from exc
    return read_ook(text, str(path))
