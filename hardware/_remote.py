"""A simulated 433 MHz remote: what its transmitter puts on the air, as a receiver pin sees it.

Used by the fake backend and by tests. It carries its own copy of rc-switch's timing table (a
remote is its own device; ``hardware`` never imports ``edge``).

Remotes modelled: rc-switch protocols 1–12 (EV1527, PT2262 and HT12E on top of them), Kerui-style
alarm sensors (EV1527 with a state nibble), KlikAanKlikUit/Intertechno self-learning ("NewKaku")
and HomeEasy EU, each from its published timing table; :func:`sloppy` adds what real
transmitters and receivers do to those timings.

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
    7: ((2, 62), (1, 6), (6, 1), False),
    8: ((3, 130), (7, 16), (3, 16), False),
    9: ((130, 7), (16, 7), (16, 3), True),
    10: ((18, 1), (3, 1), (1, 3), True),
    11: ((36, 1), (1, 2), (2, 1), True),
    12: ((36, 1), (1, 2), (2, 1), True),
}
NOMINAL_PULSE_US = {
    **{1: 350, 2: 650, 3: 100, 4: 380, 5: 500, 6: 450},
    **{7: 150, 8: 200, 9: 200, 10: 365, 11: 270, 12: 320},
}
#: The alarm-sensor states of rtl_433's Kerui decoder, by EV1527 key nibble.
KERUI_STATES = {"motion": 0xA, "open": 0xE, "close": 0x7, "tamper": 0xB, "battery": 0xF}
NEWKAKU_PULSE_US = 260
HOMEEASY_PREAMBLE = 0x63C
_TRIT_BITS = {"0": 0b00, "1": 0b11, "F": 0b01}


def transmit(
    protocol: int,
    code: int,
    bits: int,
    pulse_us: int,
    repeats: int = 4,
    *,
    sync: tuple[int, int] | None = None,
) -> list[tuple[int, int]]:
    """The ``(mark_us, gap_us)`` pulses of ``repeats`` frames of an rc-switch code.

    ``sync`` replaces the table's sync (high, low units), for transmitters that differ from it.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown rc-switch protocol {protocol}; known: {sorted(PROTOCOLS)}")
    if not 1 <= bits <= 64 or not 0 <= code < 1 << bits:
        raise ValueError(f"code {code} does not fit in {bits} bits (1..64)")
    if pulse_us <= 0 or repeats < 1:
        raise ValueError("pulse_us and repeats must be positive")
    table_sync, zero, one, inverted = PROTOCOLS[protocol]
    sync = table_sync if sync is None else sync
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


def kerui(id20: int, state: str, pulse_us: int = 320, repeats: int = 6) -> list[tuple[int, int]]:
    """A Kerui-style alarm sensor (door contact, PIR): EV1527 with the state in the key nibble."""
    if state not in KERUI_STATES:
        raise ValueError(f"Kerui state must be one of {sorted(KERUI_STATES)}, not {state!r}")
    return ev1527(id20, KERUI_STATES[state], pulse_us, repeats)


def ht12e(
    code12: int, pulse_us: int = 270, repeats: int = 6, sync_high_units: int = 2
) -> list[tuple[int, int]]:
    """An HT12E encoder (rc-switch protocol 11): 12 bits, inverted. Its real sync high (the
    "1/3 bit" after the 12-bit pilot) is longer than rc-switch's 1 T: ``sync_high_units``."""
    return transmit(11, code12, 12, pulse_us, repeats, sync=(36, sync_high_units))


def newkaku(
    address: int,
    unit: int,
    on: bool,
    pulse_us: int = NEWKAKU_PULSE_US,
    repeats: int = 4,
    *,
    group: bool = False,
    dim: int | None = None,
) -> list[tuple[int, int]]:
    """A KlikAanKlikUit / Intertechno self-learning remote (NewRemoteSwitch's timings).

    Start pulse T : 10.5 T; each bit two pulses, 1 = (T, 5T)(T, T), 0 = (T, T)(T, 5T); the bits
    are the 26-bit address, the group bit, on/off (or, with ``dim``, the dim marker (T, T)(T, T)),
    the 4-bit unit and the 4-bit dim level; stop pulse T : 40 T.
    """
    if not 0 <= address < 1 << 26 or not 0 <= unit < 16 or (dim is not None and not 0 <= dim < 16):
        raise ValueError(
            f"NewKaku address must fit 26 bits, unit and dim level 4 bits: {address}, {unit}, {dim}"
        )
    if pulse_us <= 0 or repeats < 1:
        raise ValueError("pulse_us and repeats must be positive")
    t = pulse_us
    short, long_ = (t, t), (t, 5 * t)
    bit = {True: [long_, short], False: [short, long_]}
    frame = [(t, t * 10 + t // 2)]
    for i in range(25, -1, -1):
        frame += bit[bool(address >> i & 1)]
    frame += bit[group]
    frame += [short, short] if dim is not None else bit[on]
    for i in range(3, -1, -1):
        frame += bit[bool(unit >> i & 1)]
    if dim is not None:
        for i in range(3, -1, -1):
            frame += bit[bool(dim >> i & 1)]
    frame.append((t, 40 * t))
    return frame * repeats


def homeeasy(
    address: int,
    command14: int,
    repeats: int = 5,
    *,
    mark_us: int = 200,
    short_us: int = 150,
    long_us: int = 1170,
    gap_us: int = 20_000,
) -> list[tuple[int, int]]:
    """A HomeEasy EU transmitter (RFLink's plugin 15 timings): the 11-bit preamble 0x63C, the
    32-bit address and 14 command bits, each a short high and a short (0) or long (1) low, then
    the stop bit's high and ``gap_us`` to the next repeat."""
    if not 0 <= address < 1 << 32 or not 0 <= command14 < 1 << 14:
        raise ValueError(f"HomeEasy address must fit 32 bits, command 14: {address}, {command14}")
    value = (HOMEEASY_PREAMBLE << 46) | (address << 14) | command14
    frame = [(mark_us, long_us if value >> i & 1 else short_us) for i in range(56, -1, -1)]
    frame.append((mark_us, gap_us))
    return frame * repeats


def sloppy(
    pulses: list[tuple[int, int]],
    pulse_us: int,
    *,
    lopsided: bool = True,
    off_share: float = 0.1,
    agc_first_units: float = 0.0,
    seed: int = 0,
) -> list[tuple[int, int]]:
    """What a real, sloppy transmitter and an AGC receiver make of clean pulses.

    - ``lopsided``: a short high before a longer low (a "0") is sent 0.5 T shorter and its low
      0.5 T longer (1 : 2 becomes 0.5 T : 2.5 T);
    - in ``off_share`` of the pulses one duration (never the last gap) is off by ±0.5 T, never
      below 0.5 T (single durations: a bit's length is off by 0.5 T at most);
    - ``agc_first_units`` > 0: the burst's first high is stretched to that many T (a receiver's
      AGC after a long silence makes it 6–11 T).
    """
    rng = random.Random(seed)
    half = pulse_us / 2
    out: list[tuple[int, int]] = []
    for mark, gap in pulses:
        m, g = float(mark), float(gap)
        if lopsided and m < g and m <= 1.5 * pulse_us:
            m, g = m - half, g + half
        out.append((round(m), round(g)))
    durations = [d for pulse in out for d in pulse]
    for i in range(0, len(durations) - 1, 2):
        if rng.random() < off_share:  # one of the pulse's two durations, not the last gap
            j = i if i + 2 >= len(durations) else i + rng.randrange(2)
            step = rng.choice((-half, half))
            if durations[j] + step < half:
                step = half
            durations[j] = round(durations[j] + step)
    if agc_first_units:
        durations[0] = round(agc_first_units * pulse_us)
    return list(zip(durations[0::2], durations[1::2], strict=True))


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


def agc_noise(
    seconds: float, seed: int, min_gap_us: int = 1500, max_gap_us: int = 20_000
) -> list[tuple[int, int]]:
    """An idle receiver whose AGC turns the gain up and down: bursts of noise (20–400 µs
    levels, 1–40 ms long) separated by silences of ``min_gap_us``–``max_gap_us`` (log-uniform),
    for at least ``seconds``. The silences close frames, so the protocol checks run on noise."""
    if not 0 < min_gap_us <= max_gap_us:
        raise ValueError(f"need 0 < min_gap_us <= max_gap_us, got {min_gap_us}, {max_gap_us}")
    rng = random.Random(seed)
    lo, hi = math.log(min_gap_us), math.log(max_gap_us)
    out: list[tuple[int, int]] = []
    total = 0.0
    while total < seconds * 1e6:
        burst_us = rng.uniform(1_000, 40_000)
        spent = 0
        burst = noise(max(2, round(burst_us / 220)), rng.getrandbits(32), 20, 400)
        for mark, gap in burst:
            out.append((mark, gap))
            spent += mark + gap
            if spent >= burst_us:
                break
        mark, gap = out[-1]
        silence = round(math.exp(rng.uniform(lo, hi)))
        out[-1] = (mark, silence)
        total += spent - gap + silence
    return out


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
