"""Drive a Decoder with simulated remote transmissions, as the pigpio callback would."""

from __future__ import annotations

from edge.radio import Decoded, Decoder
from hardware import _remote as remote

WRAP = 1 << 32
WATCHDOG_US = 20_000


def run(
    decoder: Decoder,
    pulses: list[tuple[int, int]],
    *,
    start_tick: int = 0,
    jitter_us: int = 0,
    seed: int = 0,
    watchdog: bool = True,
) -> list[Decoded]:
    """Feed the pulses as edges; ``t_ns`` is µs since the first edge (no wrap) × 1000.

    With ``watchdog``, a level-2 report follows the last edge after ``WATCHDOG_US``.
    """
    plain = remote.to_edges(pulses, 0, jitter_us, seed)
    ticks = remote.to_edges(pulses, start_tick, jitter_us, seed)
    out: list[Decoded] = []
    for (level, t_us), (_, tick) in zip(plain, ticks, strict=True):
        out.extend(decoder.feed(level, tick, t_us * 1000))
    if watchdog:
        t_us = plain[-1][1] + WATCHDOG_US
        out.extend(decoder.feed(2, (start_tick + t_us) % WRAP, t_us * 1000))
    return out


def silence(pulses: list[tuple[int, int]], us: int) -> list[tuple[int, int]]:
    """The pulses followed by ``us`` more of silence."""
    mark, gap = pulses[-1]
    return [*pulses[:-1], (mark, gap + us)]
