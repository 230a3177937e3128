"""The simulated remote sends what rc-switch sends (timings from its protocol table)."""

from __future__ import annotations

import itertools

import pytest

from hardware import _remote as remote


def test_protocol_1_frame_is_bits_msb_first_then_sync() -> None:
    t = 350
    pulses = remote.transmit(1, 0b101, 3, t, repeats=2)
    one, zero, sync = (3 * t, t), (t, 3 * t), (t, 31 * t)
    assert pulses == [one, zero, one, sync] * 2


def test_inverted_protocol_6_drops_the_idle_low_and_rests_low() -> None:
    t = 450
    # levels per repeat, low first: one = low 2T high T, zero = low T high 2T, sync = low 23T high T
    pulses = remote.transmit(6, 0b10, 2, t, repeats=2)
    assert pulses == [(t, t), (2 * t, 23 * t), (t, 2 * t), (t, t), (2 * t, 23 * t), (t, 23 * t)]


def test_ev1527_and_pt2262_encode_into_protocol_1() -> None:
    assert remote.ev1527(0xABCDE, 0x5) == remote.transmit(1, 0xABCDE5, 24, 320, 4)
    # 0 = 00, 1 = 11, F = 01
    assert remote.pt2262("01F000000000", 350) == remote.transmit(1, 0b001101 << 18, 24, 350, 4)


@pytest.mark.parametrize(
    "call",
    [
        lambda: remote.transmit(13, 1, 24, 350),
        lambda: remote.transmit(1, 1 << 24, 24, 350),
        lambda: remote.ev1527(1 << 20, 0),
        lambda: remote.pt2262("01F2F0000000"),
        lambda: remote.noise(10, 0, 100, 50),
    ],
)
def test_bad_arguments_are_refused(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_to_edges_alternates_levels_wraps_and_keeps_order_under_jitter() -> None:
    pulses = remote.transmit(1, 0xFFF, 12, 300, repeats=2)
    start = (1 << 32) - 5_000
    edges = remote.to_edges(pulses, start, jitter_us=150, seed=9)
    assert [level for level, _ in edges] == [1, 0] * len(pulses)
    deltas = [(b - a) & 0xFFFFFFFF for (_, a), (_, b) in itertools.pairwise(edges)]
    assert min(deltas) >= 1
    assert any(tick < 5_000 for _, tick in edges)  # wrapped
    assert remote.to_edges(pulses, start, 150, seed=9) == edges  # deterministic


def test_noise_edges_are_deterministic_and_in_range() -> None:
    a = remote.noise_edges(1001, seed=4, min_us=50, max_us=2000)
    assert a == remote.noise_edges(1001, seed=4, min_us=50, max_us=2000)
    assert len(a) == 1001
    durations = [b[1] - x[1] for x, b in itertools.pairwise(a)]
    assert min(durations) >= 50
    assert max(durations) <= 2000
