"""A simulated 433 MHz remote: what its transmitter puts on the air, as a receiver pin sees it.

Used by the fake backend and by tests. It carries its own copy of rc-switch's timing table (a
remote is its own device; ``hardware`` never imports ``edge``).

Rules, as rc-switch transmits:
- each repeat is the bits, most significant first, then the sync; each bit and the sync are a
  high then a low of (high, low) × ``pulse_us``;
- an inverted protocol (6) swaps the levels; the line rests low, so the first low of the burst
  merges with the idle line and the burst ends on the sync's short high, followed by a low of the
  sync's long length (the line back at rest);
- output is ``(mark_us, gap_us)`` pulses; :func:`to_edges` turns them into ``(level, tick_us)``
  edges with optional jitter and 32-bit tick wrap-around.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

_TICK_MASK = 0xFFFFFFFF

# protocol: (sync, zero, one, inverted), each pair (high, low) in base periods
PROTOCOLS: dict[int, tuple[tuple[int, int], tuple[int, int], tuple[int, int], bool]] = {
    1: ((1, 31), (1, 3), (3, 1), False),
    2: ((1, 10), (1, 2), (2, 1), False),
    3: ((30, 71), (4, 11), (9, 6), False),
    4: ((1, 6), (1, 3), (3, 1), False),
    5: ((6, 14), (1, 2), (2, 1), False),
    6: ((23, 1), (1, 2), (2, 1), True),
}
NOMINAL_PULSE_US = {1: 350, 2: 650, 3: 100, 4: 380, 5: 500, 6: 450}
_TRIT_BITS = {"0": 0b00, "1": 0b11, "F": 0b01}


def transmit(
    protocol: int, code: int, bits: int, pulse_us: int, repeats: int = 4
) -> list[tuple[int, int]]:
    """The ``(mark_us, gap_us)`` pulses of ``repeats`` frames of an rc-switch code."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown rc-switch protocol {protocol}; known: {sorted(PROTOCOLS)}")
    if not 1 <= bits <= 64 or not 0 <= code < 1 << bits:
        raise ValueError(f"code {code} does not fit in {bits} bits (1..64)")
    if pulse_us <= 0 or repeats < 1:
        raise ValueError("pulse_us and repeats must be positive")
    sync, zero, one, inverted = PROTOCOLS[protocol]
    frame = [one if code >> i & 1 else zero for i in range(bits - 1, -1, -1)]
    frame.append(sync)
    levels = [units * pulse_us for high_low in frame * repeats for units in high_low]
    if not inverted:
        return list(zip(levels[0::2], levels[1::2], strict=True))
    # inverted: levels alternate low, high, ...; drop the first low (idle) and rest low at the end
    levels = [*levels[1:], max(sync) * pulse_us]
    return list(zip(levels[0::2], levels[1::2], strict=True))


def ev1527(id20: int, key4: int, pulse_us: int = 320, repeats: int = 4) -> list[tuple[int, int]]:
    """An EV1527 remote: 20-bit id and 4-bit key in protocol-1 timing."""
    if not 0 <= id20 < 1 << 20 or not 0 <= key4 < 16:
        raise ValueError(f"EV1527 id must fit 20 bits and key 4 bits, got {id20}, {key4}")
    return transmit(1, id20 << 4 | key4, 24, pulse_us, repeats)


def pt2262(trits: str, pulse_us: int = 350, repeats: int = 4) -> list[tuple[int, int]]:
    """A PT2262 remote: 12 trits of '0', '1', 'F' in protocol-1 timing."""
    if len(trits) != 12 or any(t not in _TRIT_BITS for t in trits):
        raise ValueError(f"PT2262 needs 12 trits of '0', '1', 'F', got {trits!r}")
    code = 0
    for trit in trits:
        code = code << 2 | _TRIT_BITS[trit]
    return transmit(1, code, 24, pulse_us, repeats)


def noise(count: int, seed: int, min_us: int = 50, max_us: int = 2000) -> list[tuple[int, int]]:
    """``count`` random pulses of an idle superheterodyne receiver.

    Durations are log-uniform in [min_us, max_us]: mostly short spikes, some longer gaps.
    """
    if not 0 < min_us <= max_us:
        raise ValueError(f"need 0 < min_us <= max_us, got {min_us}, {max_us}")
    rng = random.Random(seed)
    lo, hi = math.log(min_us), math.log(max_us)

    def one() -> int:
        return round(math.exp(rng.uniform(lo, hi)))

    return [(one(), one()) for _ in range(count)]


def noise_edges(
    count: int, seed: int, min_us: int = 50, max_us: int = 2000, start_tick_us: int = 0
) -> list[tuple[int, int]]:
    """``count`` edges of receiver noise, as :func:`to_edges` gives them."""
    return to_edges(noise((count + 1) // 2, seed, min_us, max_us), start_tick_us)[:count]


def to_edges(
    pulses: Iterable[tuple[int, int]], start_tick_us: int, jitter_us: int = 0, seed: int = 0
) -> list[tuple[int, int]]:
    """``(level, tick_us)`` edges of pulses starting at ``start_tick_us``.

    Each edge moves by a uniform random amount in ±``jitter_us`` (order kept, every level at least
    1 µs); ticks wrap at 2**32 like pigpio's. The last pulse's gap has no closing edge.
    """
    rng = random.Random(seed)
    edges: list[tuple[int, int]] = []
    t = 0
    last = -1
    for mark, gap in pulses:
        for level, at in ((1, t), (0, t + mark)):
            moved = at + rng.randint(-jitter_us, jitter_us) if jitter_us else at
            moved = max(moved, last + 1)
            edges.append((level, (start_tick_us + moved) & _TICK_MASK))
            last = moved
        t += mark + gap
    return edges
