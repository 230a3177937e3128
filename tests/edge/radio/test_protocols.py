from __future__ import annotations

import pytest

from edge.radio import DECODERS, Decoded, Frame, FrameSlicer, Reject
from edge.radio.protocols import ev1527, newkaku, pt2262, rcswitch
from edge.radio.slicer import MAX_PULSES
from hardware import _remote as remote


def frames(pulses: list[tuple[int, int]]) -> list[Frame]:
    """The candidate frames of the pulses, the last one closed as the line goes idle."""
    slicer = FrameSlicer()
    out = [f for p in pulses[:-1] for f in slicer.push(*p)]
    return [*out, *slicer.close(pulses[-1])]


def test_each_repeat_is_one_frame_of_bits_plus_sync() -> None:
    got = frames(remote.ev1527(0x12345, 0x6, 320, repeats=3))
    assert [f.pulses for f in got] == [25, 25, 25]
    assert [f.gap_us for f in got] == [31 * 320] * 3
    assert [f.lead_gap_us for f in got] == [0, 31 * 320, 31 * 320]


def test_short_protocol_4_sync_still_splits_frames() -> None:
    # 6 × 380 µs is below rc-switch's 4300 µs separation limit: split at each short sync; with
    # the last split frame the whole stretch up to the idle line is handed out, first
    got = frames(remote.transmit(4, 0x5A5A5A, 24, 380, repeats=3))
    assert [f.pulses for f in got] == [25, 25, 75, 25]
    assert [f.gap_us for f in got] == [6 * 380] * 4
    assert [f.lead_gap_us for f in got] == [0, 6 * 380, 0, 6 * 380]
    assert [isinstance(rcswitch.decode(f), Decoded) for f in got] == [True, True, False, True]


def test_a_stretch_never_split_is_one_frame_and_long_frames_reach_the_decoders() -> None:
    # NewKaku's 5 T data gap, 0.5 T longer from a sloppy transmitter at T = 300 µs, passes the
    # short-sync test, which chops the frame into pieces too short to keep; the whole 66-pulse
    # stretch between stop gaps still decodes
    slicer = FrameSlicer()
    clean = remote.newkaku(0x2ABCDEF, 3, True, pulse_us=300, repeats=2)
    pulses = [(m, g + 150 if g == 1500 else g) for m, g in clean]
    got = [f for p in pulses[:-1] for f in slicer.push(*p)] + list(slicer.close(pulses[-1]))
    assert slicer.stats["short"] > 3
    assert [f.pulses for f in got] == [27, 66, 27, 66]  # a piece, then the whole stretch
    assert [isinstance(newkaku.decode(f), Decoded) for f in got] == [False, True] * 2
    # at 260 µs nothing splits inside a frame: exactly one frame per repeat
    assert [f.pulses for f in frames(remote.newkaku(0x2ABCDEF, 3, True, 260, 3))] == [66] * 3


def test_look_alike_is_valid_under_several_protocols_and_the_registry_picks_one() -> None:
    frame = frames(remote.transmit(1, 0x3C0F35, 24, 350, repeats=2))[1]
    as_pt = pt2262.decode(frame)
    as_ev = ev1527.decode(frame)
    as_rc = rcswitch.decode(frame)
    # 0x3C0F35 = 00 11 11 00 00 00 11 11 00 11 01 01
    assert isinstance(as_pt, Decoded)
    assert as_pt.tristate == "0110001101FF"
    assert isinstance(as_ev, Decoded)
    assert (as_ev.id, as_ev.key) == (0x3C0F3, 0x5)
    assert isinstance(as_rc, Decoded)
    assert as_rc.protocol == "rcswitch1"
    assert as_pt.code == as_ev.code == as_rc.code == 0x3C0F35
    first = next(d for dec in DECODERS if isinstance(d := dec(frame), Decoded))
    assert first.protocol == "pt2262"


def test_pt2262_trits_and_rejection_of_a_non_trit_pair() -> None:
    frame = frames(remote.pt2262("01F0F1FF0011", 350, repeats=2))[1]
    got = pt2262.decode(frame)
    assert isinstance(got, Decoded)
    assert got.tristate == "01F0F1FF0011"
    # a pair 10 (long-short short-long) is not a trit
    frame = frames(remote.transmit(1, 0b10 << 22, 24, 350, repeats=2))[1]
    assert pt2262.decode(frame) == Reject("trits")
    assert isinstance(ev1527.decode(frame), Decoded)


def test_ev1527_needs_24_bits() -> None:
    frame = frames(remote.transmit(1, 0xABCDEF1, 28, 350, repeats=2))[1]
    assert ev1527.decode(frame) == Reject("bits")
    got = rcswitch.decode(frame)
    assert isinstance(got, Decoded)
    assert (got.protocol, got.bits) == ("rcswitch1", 28)


@pytest.mark.parametrize("protocol", range(1, 7))
def test_rcswitch_protocols_overlap_only_where_documented(protocol: int) -> None:
    pulse_us = remote.NOMINAL_PULSE_US[protocol]
    frame = frames(remote.transmit(protocol, 0x2C4A6E, 24, pulse_us, repeats=3))[1]
    matches = [
        t.number for t in rcswitch.TABLE if isinstance(rcswitch.demodulate(frame, t), rcswitch.Fit)
    ]
    # protocol 3 (4:11 / 9:6, sync 30:71) is protocol 5 (1:2 / 2:1, sync 6:14) at 5x the base
    # within tolerance: each reads as the other, and the closer fit names it
    assert matches == ([3, 5] if protocol in (3, 5) else [protocol])
    got = rcswitch.decode(frame)
    assert isinstance(got, Decoded)
    assert got.protocol == f"rcswitch{protocol}"
    assert got.code == 0x2C4A6E


def test_inverted_first_repeat_is_rejected_not_misread() -> None:
    # protocol 6's first low merges with the idle line: that frame lacks its leading sync
    first, second = frames(remote.transmit(6, 0xA5C3F1, 24, 450, repeats=2))[:2]
    assert rcswitch.demodulate(first, rcswitch.TABLE[5]) == Reject("sync")
    assert all(isinstance(dec(first), Reject) for dec in DECODERS)
    fit = rcswitch.demodulate(second, rcswitch.TABLE[5])
    assert isinstance(fit, rcswitch.Fit)
    assert (fit.protocol, fit.value, fit.bits, fit.base_us) == (6, 0xA5C3F1, 24, 450.0)


def test_frames_outside_the_pulse_count_range_are_counted_not_built() -> None:
    slicer = FrameSlicer()
    assert slicer.push(300, 900) == ()
    assert slicer.push(300, 10_000) == ()  # 2 pulses: too short
    for _ in range(MAX_PULSES + 5):
        slicer.push(300, 900)
    assert slicer.push(300, 10_000) == ()
    assert slicer.stats == {"short": 1, "long": 1}


def test_decoded_json_forms() -> None:
    ev = Decoded("ev1527", 24, 0x0A1B2C, 320, id=0x0A1B2, key=0xC)
    assert ev.to_json() == {
        "protocol": "ev1527",
        "bits": 24,
        "code": "0a1b2c",
        "id": "0a1b2",
        "key": 12,
    }
    rc = Decoded("rcswitch2", 12, 0x05, 650)
    assert rc.hex == "005"
    assert rc.to_json() == {"protocol": "rcswitch2", "bits": 12, "code": "005"}


@pytest.mark.parametrize(("protocol", "code"), [(1, 0x000000), (6, 0xFFFFFF)])
def test_all_zeros_of_1_and_all_ones_of_6_look_alike_and_the_closer_fit_wins(
    protocol: int, code: int
) -> None:
    # (T, 3T) pairs and inverted (2T low, T high) pairs differ by a quarter of the base only
    frame = frames(remote.transmit(protocol, code, 24, 400, repeats=3))[1]
    as_1, as_6 = (
        rcswitch.demodulate(frame, rcswitch.TABLE[0]),
        rcswitch.demodulate(frame, rcswitch.TABLE[5]),
    )
    assert isinstance(as_1, rcswitch.Fit)
    assert isinstance(as_6, rcswitch.Fit)
    assert (as_1.value, as_6.value) == (0x000000, 0xFFFFFF)
    best = rcswitch.best_fit(frame)
    assert isinstance(best, rcswitch.Fit)
    assert best.protocol == protocol
    if protocol == 6:  # and EV1527/PT2262 do not claim it
        assert ev1527.decode(frame) == Reject("timing")
        assert pt2262.decode(frame) == Reject("timing")
