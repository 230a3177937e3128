"""What real transmitters and receivers do to the table timings, and what the decoder makes of it.

Every signal comes from the simulated remote's published timing tables (hardware._remote), made
sloppy by its model of real transmitters (``sloppy``); expected codes come from what was sent.
"""

from __future__ import annotations

from typing import Any

import pytest

from edge.radio import Decoded, Decoder, EdgeToPulses, Frame, FrameSlicer, Reject
from edge.radio.protocols import ev1527, homeeasy, newkaku, rcswitch
from edge.radio.pulses import IDLE, LOST
from hardware import _remote as remote
from tests.edge.radio.expect import canonical
from tests.edge.radio.helpers import run, silence

Pulses = list[tuple[int, int]]


def frames_of(pulses: Pulses) -> list[Frame]:
    slicer = FrameSlicer()
    out = [f for p in pulses[:-1] for f in slicer.push(*p)]
    return [*out, *slicer.close(pulses[-1])]


def decoded(pulses: Pulses, **kwargs: Any) -> list[dict[str, Any]]:
    return [d.to_json() for d in run(Decoder(**kwargs), silence(pulses, 100_000))]


# -- 4. lopsided bits ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    ("protocol", "code", "bits", "pulse_us"),
    [
        (1, 0x5A3C96, 24, 320),
        (1, 0xB0C5D1E2, 32, 300),
        (2, 0x3C5A9, 20, 650),
        (5, 0x9ABCD, 20, 500),
    ],
)
def test_lopsided_zeros_and_durations_off_by_half_a_period_decode(
    protocol: int, code: int, bits: int, pulse_us: int, seed: int
) -> None:
    # every "0" sent 0.5 T : (long + 0.5 T), and 15 % of all durations off by ±0.5 T
    clean = remote.transmit(protocol, code, bits, pulse_us, repeats=6)
    pulses = remote.sloppy(clean, pulse_us, lopsided=True, off_share=0.15, seed=seed)
    assert pulses != clean
    assert decoded(pulses) == [canonical(protocol, code, bits)]


def test_a_lopsided_zero_is_decided_by_which_half_is_longer() -> None:
    t = 400
    # protocol 2 (1:2 / 2:1): zeros as 0.5 T : 2.5 T, ones as 2 T : 1 T, one low 0.5 T long
    pulses = remote.transmit(2, 0b1010_0110_1001, 12, t, repeats=3)
    lopsided = [(m - t // 2, g + t // 2) if m < g and m == t else (m, g) for m, g in pulses]
    lopsided[3] = (lopsided[3][0], lopsided[3][1] + t // 2)
    fit = rcswitch.demodulate(frames_of(lopsided)[1], rcswitch.TABLE[1])
    assert isinstance(fit, rcswitch.Fit)
    assert (fit.value, fit.bits, round(fit.base_us)) == (0b1010_0110_1001, 12, t)


def test_lopsided_protocol_5_is_not_mistaken_for_protocol_3() -> None:
    # 3 is 5 at a fifth of the base; a lopsided "0" of 5 (0.5 T : 2.5 T) is nearer 3's 4 : 11
    # in shape, but 1.5 of 3's base periods off in its first half: no 3 bit at all
    pulses = remote.sloppy(remote.transmit(5, 0x001, 12, 550, 6), 550, off_share=0)
    assert decoded(pulses) == [canonical(5, 0x001, 12)]
    frame = frames_of(pulses)[2]
    assert rcswitch.demodulate(frame, rcswitch.TABLE[2]) == Reject("timing")


def test_the_bit_length_bounds_what_a_bit_may_be() -> None:
    t = 350
    pulses = remote.transmit(1, 0xB16B00, 24, t, repeats=3)
    frame = frames_of(pulses)[1]
    assert isinstance(rcswitch.demodulate(frame, rcswitch.TABLE[0]), rcswitch.Fit)
    for stretch_units, ok in ((0.5, True), (0.75, False)):
        bad = list(pulses)
        mark, gap = bad[25 + 7]  # the second repeat's 8th bit
        bad[25 + 7] = (mark, gap + round(stretch_units * t))
        got = rcswitch.demodulate(frames_of(bad)[1], rcswitch.TABLE[0])
        assert isinstance(got, rcswitch.Fit) is ok
        if not ok:
            assert got == Reject("timing")


# -- 5. a stretched first pulse -----------------------------------------------------------


@pytest.mark.parametrize("first_units", [6, 8.5, 11])
def test_a_stretched_first_high_after_silence_is_decoded_from_its_low(first_units: float) -> None:
    t = 330
    code = 0xC3A5E1 | 1 << 23  # the first bit is a 1: its low (T) decides it, not its high
    pulses = remote.transmit(1, code, 24, t, repeats=1)
    stretched = remote.sloppy(pulses, t, lopsided=False, off_share=0, agc_first_units=first_units)
    assert stretched[0][0] == round(first_units * t)
    first = frames_of([*stretched[:-1], (t, 31 * t), (t, 3 * t)])[0]  # its own sync follows
    fit = rcswitch.best_fit(first)
    assert isinstance(fit, rcswitch.Fit)
    assert (fit.protocol, fit.value) == (1, code)
    # the base comes from the median bit, not the whole frame's average
    assert abs(fit.base_us - t) <= 1
    got = ev1527.decode(first)
    assert isinstance(got, Decoded)
    assert got.code == code


def test_stretched_first_pulses_of_every_burst_still_give_one_press_each() -> None:
    t = 300
    burst = remote.sloppy(remote.ev1527(0x6D2F1, 0x4, t, repeats=2), t, agc_first_units=9, seed=3)
    got = decoded(silence(burst, 300_000) + burst)
    assert got == [canonical(1, 0x6D2F14, 24)] * 2


# -- 6. families: rc-switch 7-12, HT12E, NewKaku, HomeEasy EU, alarm sensors ---------------


@pytest.mark.parametrize("protocol", range(7, 13))
def test_rcswitch_7_to_12_decode_from_their_table(protocol: int) -> None:
    pulse_us = remote.NOMINAL_PULSE_US[protocol]
    bits = 12 if protocol in (11, 12) else 24
    code = 0xA5C if bits == 12 else 0x2C4A6E
    got = decoded(remote.transmit(protocol, code, bits, pulse_us, repeats=6))
    assert got == [canonical(protocol, code, bits)]


def test_protocol_9_is_protocol_8_shifted_by_one_bit_and_8_is_preferred() -> None:
    ends_in_1 = remote.transmit(9, 0x2C4A6F, 24, 200, repeats=6)
    assert decoded(ends_in_1) == [{"protocol": "rcswitch8", "bits": 24, "code": "162537"}]
    ends_in_0 = remote.transmit(9, 0x2C4A6E, 24, 200, repeats=6)
    assert decoded(ends_in_0) == [{"protocol": "rcswitch9", "bits": 24, "code": "2c4a6e"}]
    starts_with_0 = remote.transmit(8, 0x2C4A6E, 24, 200, repeats=6)  # fits 9 as well
    assert decoded(starts_with_0) == [{"protocol": "rcswitch8", "bits": 24, "code": "2c4a6e"}]


def test_protocol_8s_sync_longer_than_the_watchdog_still_vouches_for_the_next_repeat() -> None:
    # 130 x 200 µs = 26 ms: the 20 ms watchdog fires inside every sync; the line coming back
    # gives the next frame its lead gap
    pulses = remote.transmit(8, 0x2C4A6E, 24, 200, repeats=4)
    edges = remote.to_edges(pulses, 0)
    decoder = Decoder()
    out: list[Decoded] = []
    last = 0
    for level, tick in edges:
        if level == 1 and tick - last > 20_000:
            out.extend(decoder.feed(IDLE, last + 20_000, (last + 20_000) * 1000))
        out.extend(decoder.feed(level, tick, tick * 1000))
        last = tick
    out.extend(decoder.feed(IDLE, last + 20_000, (last + 20_000) * 1000))
    assert [d.to_json() for d in out] == [canonical(8, 0x2C4A6E, 24)]


def test_ht12e_with_its_real_longer_sync_high_decodes() -> None:
    for sync_high in (1, 2, 3):
        pulses = remote.ht12e(0xA5C, 270, repeats=6, sync_high_units=sync_high)
        assert decoded(pulses) == [canonical(11, 0xA5C, 12)], sync_high
    # a sync high of 4.5 T is not one
    assert decoded(remote.ht12e(0xA5C, 270, repeats=6, sync_high_units=5)) == []


def test_newkaku_on_off_group_and_dim() -> None:
    on = decoded(remote.newkaku(0x1234567, 5, True, repeats=4))
    assert on == [
        {
            "protocol": "newkaku",
            "bits": 32,
            "code": f"{0x1234567 << 6 | 1 << 4 | 5:08x}",
            "id": "1234567",
            "state": "on",
            "unit": 5,
            "group": False,
        }
    ]
    off = decoded(remote.newkaku(0x1234567, 5, False, group=True, repeats=4))
    assert off[0]["state"] == "off"
    assert off[0]["group"] is True
    assert off[0]["code"] == f"{0x1234567 << 6 | 1 << 5 | 5:08x}"
    dim = decoded(remote.newkaku(0x0ABCDEF, 2, True, dim=9, repeats=4))
    assert dim == [
        {
            "protocol": "newkaku",
            "bits": 36,
            "code": f"{0x0ABCDEF << 10 | 2 << 4 | 9:09x}",
            "id": "0abcdef",
            "state": "dim",
            "unit": 2,
            "group": False,
            "dim": 9,
        }
    ]


@pytest.mark.parametrize("pulse_us", [240, 260, 280, 300])
@pytest.mark.parametrize("seed", range(4))
def test_sloppy_newkaku_decodes(pulse_us: int, seed: int) -> None:
    clean = remote.newkaku(0x3FF0A5C, 11, False, pulse_us, repeats=5)
    pulses = remote.sloppy(clean, pulse_us, lopsided=False, off_share=0.1, agc_first_units=8)
    got = decoded(pulses)
    assert [(g["id"], g["unit"], g["state"]) for g in got] == [("3ff0a5c", 11, "off")]


def test_newkaku_rejects_a_bit_of_two_long_lows_and_a_missing_start() -> None:
    pulses = remote.newkaku(0x1234567, 5, True, repeats=2)
    frame = frames_of(pulses)[0]
    assert isinstance(newkaku.decode(frame), Decoded)
    d = list(frame.durations)
    d[3] = d[5] = 5 * 260  # bit 0: (T, 5T)(T, 5T) is no bit
    assert newkaku.decode(Frame(tuple(d), frame.active_us, 0)) == Reject("timing")
    d = list(frame.durations)
    d[1] = 4 * 260  # no start low of 10.5 T
    assert newkaku.decode(Frame(tuple(d), frame.active_us, 0)) == Reject("sync")


def test_homeeasy_eu_on_and_off() -> None:
    on_bits, off_bits = 0b1100_10_11_000111, 0b1100_01_11_000111  # RFLink's HE301EU samples
    for bits, state in ((on_bits, "on"), (off_bits, "off")):
        got = decoded(remote.homeeasy(0x79B2A5C3, bits))
        assert got == [
            {
                "protocol": "homeeasy",
                "bits": 46,
                "code": f"{0x79B2A5C3 << 14 | bits:012x}",
                "id": "79b2a5c3",
                "state": state,
            }
        ]
    # RFLink's sample shows marks of 125-200 µs: unsteady marks still decode
    shaky = remote.homeeasy(0x79B2A5C3, on_bits)
    shaky = [(m + (i % 3 - 1) * 50, g) for i, (m, g) in enumerate(shaky)]
    assert len(decoded(shaky)) == 1
    frame = frames_of(remote.homeeasy(0x79B2A5C3, on_bits, repeats=2))[0]
    d = list(frame.durations)
    d[1] = 150  # the preamble's first bit flipped: not HomeEasy
    assert homeeasy.decode(Frame(tuple(d), frame.active_us, 0)) == Reject("sync")


@pytest.mark.parametrize("state", ["open", "close", "tamper", "battery", "motion"])
def test_kerui_alarm_sensors_carry_their_state(state: str) -> None:
    got = decoded(remote.kerui(0x4F1C2, state))
    assert len(got) == 1
    assert (got[0]["protocol"], got[0]["id"], got[0]["state"]) == ("ev1527", "4f1c2", state)
    assert got[0]["key"] == remote.KERUI_STATES[state]


def test_a_plain_remote_key_has_no_state() -> None:
    got = decoded(remote.ev1527(0x4F1C2, 0x1))
    assert "state" not in got[0]


# -- the pulse layer: glitches, lost edges ------------------------------------------------


def test_glitches_shorter_than_the_filter_vanish_in_the_pulse_layer() -> None:
    conv = EdgeToPulses(glitch_us=100)
    ticks = [(1, 0), (0, 40), (1, 90), (0, 400), (1, 430), (0, 460), (1, 1450), (0, 1800)]
    # a 40 µs spike before the mark and a 30 µs dip inside it vanish: the mark runs 90..460
    out = [p for level, tick in ticks if (p := conv.push(level, tick)) is not None]
    assert out == [(370, 990)]
    assert conv.push(1, 2900) is None  # confirmed by the next edge: (1800 - 1450, ...)
    assert conv.push(0, 3200) == (350, 1100)


def test_without_glitch_filter_the_spikes_are_pulses() -> None:
    conv = EdgeToPulses()
    ticks = [(1, 0), (0, 40), (1, 90), (0, 400), (1, 430), (0, 460), (1, 1450)]
    out = [p for level, tick in ticks if (p := conv.push(level, tick)) is not None]
    assert out == [(40, 50), (310, 30), (30, 990)]


def test_glitch_filter_keeps_a_noisy_press_decodable() -> None:
    t = 320
    pulses = remote.ev1527(0x2B4E6, 0x4, t, repeats=6)
    spiky: Pulses = []
    for i, (mark, gap) in enumerate(pulses):
        if i % 5 == 2 and gap > 3 * t - 1:  # a 40 µs spike in the middle of some long lows
            spiky += [(mark, gap // 2 - 20), (40, gap - gap // 2 - 20)]
        else:
            spiky.append((mark, gap))
    assert decoded(spiky) == []
    assert decoded(spiky, glitch_us=100) == [canonical(1, 0x2B4E64, 24)]


def test_lost_edges_void_the_frame_in_progress() -> None:
    t = 320
    pulses = remote.ev1527(0x13579, 0x4, t, repeats=3)
    edges = remote.to_edges(pulses, 0)
    cut = 25 * 2 + 20  # inside the second repeat
    decoder = Decoder()
    out: list[Decoded] = []
    for i, (level, tick) in enumerate(edges):
        if i == cut:
            out.extend(decoder.feed(LOST, tick, tick * 1000))
        if cut <= i < cut + 6:
            continue  # these edges never arrived
        out.extend(decoder.feed(level, tick, tick * 1000))
    out.extend(decoder.feed(IDLE, edges[-1][1] + 20_000, 0))
    assert decoder.stats["lost"] == 1
    assert [d.code for d in out] == [0x135794]  # repeats 1 and 3; the broken one never counted
