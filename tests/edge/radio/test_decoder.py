from __future__ import annotations

import pytest

from edge.radio import Decoded, Decoder
from edge.radio.codes import REASONS
from hardware import _remote as remote
from tests.edge.radio.expect import canonical
from tests.edge.radio.helpers import WRAP, run, silence

T = 320
FRAME_US = (24 * 4 + 32) * T  # one EV1527 repeat: 24 bits of 4 T, sync 1 + 31 T


def test_wrap_of_the_32_bit_tick_in_the_middle_of_a_frame() -> None:
    pulses = remote.ev1527(0x9C3E5, 0x2, T, repeats=3)
    # the first frame lasts ~41 ms; start 20 ms before the wrap so it wraps inside frame 1
    got = run(Decoder(), pulses, start_tick=WRAP - 20_000)
    assert [d.to_json() for d in got] == [canonical(1, 0x9C3E52, 24)]


def test_watchdog_closes_the_last_frame_so_the_code_is_accepted_at_once() -> None:
    pulses = remote.ev1527(0x13579, 0x4, T, repeats=2)
    assert run(Decoder(), pulses, watchdog=False) == []  # repeat 2 never closes
    got = run(Decoder(), pulses)
    assert [d.to_json() for d in got] == [canonical(1, 0x135794, 24)]
    # the confirming frame is repeat 2; its time is the end of its last mark
    assert got[0].t_ns == (2 * FRAME_US - 31 * T) * 1000
    assert got[0].pulse_us == T


def test_holding_a_key_two_seconds_is_one_press() -> None:
    repeats = 2_000_000 // FRAME_US + 1
    got = run(Decoder(), remote.ev1527(0x2468A, 0x1, T, repeats=repeats))
    assert len(got) == 1
    assert got[0].t_ns == (2 * FRAME_US - 31 * T) * 1000  # reported at the 2nd repeat


@pytest.mark.parametrize(("pause_ms", "presses"), [(100, 1), (300, 2)])
def test_release_gap_separates_presses(pause_ms: int, presses: int) -> None:
    burst = remote.ev1527(0x2468A, 0x1, T, repeats=6)
    got = run(Decoder(), silence(burst, pause_ms * 1000) + burst)
    assert len(got) == presses
    assert {d.code for d in got} == {0x2468A1}


def test_release_gap_is_configurable() -> None:
    burst = remote.ev1527(0x2468A, 0x1, T, repeats=6)
    pulses = silence(burst, 300_000) + burst
    assert len(run(Decoder(release_us=500_000), pulses)) == 1


def test_two_keys_back_to_back_are_two_presses() -> None:
    a = remote.ev1527(0x2468A, 0x1, T, repeats=4)
    b = remote.ev1527(0x2468A, 0x2, T, repeats=4)
    got = run(Decoder(), a + b)
    assert [d.key for d in got] == [1, 2]


@pytest.mark.parametrize(("required", "sent", "presses"), [(1, 2, 1), (3, 2, 0), (3, 3, 1)])
def test_number_of_repeats_is_configurable(required: int, sent: int, presses: int) -> None:
    got = run(Decoder(repeats=required), remote.ev1527(0x0F0F0, 0xA, T, repeats=sent))
    assert len(got) == presses
    if presses:  # reported by the frame that completed the required count
        assert got[0].t_ns == (required * FRAME_US - 31 * T) * 1000


def test_a_lone_frame_followed_by_idle_is_not_trusted() -> None:
    # its sync gap merges with the idle line and no earlier sync vouches for it
    decoder = Decoder(repeats=1)
    assert run(decoder, remote.ev1527(0x0F0F0, 0xA, T, repeats=1)) == []
    assert decoder.stats["sync"] == 1


def test_repeats_must_be_positive() -> None:
    with pytest.raises(ValueError, match="repeats"):
        Decoder(repeats=0)


def test_a_single_bad_frame_does_not_report_a_wrong_code_and_is_counted() -> None:
    pulses = remote.ev1527(0x11111, 0x3, T, repeats=3)
    pulses[30] = (2 * T, 2 * T)  # 2nd repeat, 6th bit: neither 1:3 nor 3:1
    decoder = Decoder()
    got = run(decoder, pulses)  # repeats 1 and 3 agree; the bad one in between is skipped
    assert [d.code for d in got] == [0x111113]
    assert decoder.stats["timing"] == 1


def test_noise_never_yields_a_code_and_rejects_are_counted_by_reason() -> None:
    decoder = Decoder(repeats=1)  # the harshest setting: a single frame would be enough
    got: list[Decoded] = []
    for level, tick in remote.noise_edges(200_000, seed=1):
        got.extend(decoder.feed(level, tick, 0))
    assert got == []
    assert set(decoder.stats) <= set(REASONS)
    assert decoder.stats["short"] > 1000  # noise splits into many tiny frames
    assert decoder.stats["sync"] > 100  # plausible-length frames fail the sync check


def test_press_after_noise_is_still_decoded() -> None:
    noise = remote.noise(20_000, seed=5)
    got = run(Decoder(), noise + remote.ev1527(0xABCDE, 0x7, 300, repeats=4))
    assert [d.to_json() for d in got] == [canonical(1, 0xABCDE7, 24)]


def test_tolerance_bounds_the_error_of_each_bits_length() -> None:
    # every mark 0.45 T too long and every gap 0.45 T too short: the bits keep their length and
    # shape, and the sync mark is 0.45 T off
    skew = round(0.45 * 350)
    pulses = [(m + skew, g - skew) for m, g in remote.transmit(1, 0xB16B00, 24, 350, 3)]
    assert len(run(Decoder(tolerance=0.5), pulses)) == 1
    strict = Decoder(tolerance=0.4)
    assert run(strict, pulses) == []
    assert strict.stats["sync"] == 3
    # one bit per repeat 0.55 T too long: within 0.6 T, not within 0.5 T
    stretched = remote.transmit(1, 0xB16B00, 24, 350, 3)
    for i in range(5, len(stretched), 25):
        stretched[i] = (stretched[i][0], stretched[i][1] + round(0.55 * 350))
    assert len(run(Decoder(tolerance=0.6), stretched)) == 1
    assert run(Decoder(tolerance=0.5), stretched) == []
