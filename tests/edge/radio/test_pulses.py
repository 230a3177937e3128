from __future__ import annotations

from pathlib import Path

import pytest

from edge.radio import EdgeToPulses, OokError, format_ook, read_ook
from edge.radio import ook as ook_module
from edge.radio import pulses as pulses_module
from edge.radio.ook import decode_ook_file

WRAP = 1 << 32


def test_edges_become_mark_gap_pairs_at_the_next_rising_edge() -> None:
    conv = EdgeToPulses()
    assert conv.push(1, 1000) is None
    assert conv.push(0, 1350) is None
    assert conv.push(1, 2400) == (350, 1050)
    assert conv.push(0, 3450) is None
    assert conv.push(1, 3800) == (1050, 350)


def test_tick_wrap_inside_a_pulse() -> None:
    conv = EdgeToPulses()
    conv.push(1, WRAP - 100)
    conv.push(0, 250)  # 350 µs after the rise, across the wrap
    assert conv.push(1, 1300) == (350, 1050)


def test_repeated_level_keeps_the_first_edge() -> None:
    conv = EdgeToPulses()
    conv.push(1, 0)
    conv.push(1, 100)  # missed falling edge: ignored
    conv.push(0, 300)
    conv.push(0, 500)  # ignored
    assert conv.push(1, 1000) == (300, 700)


def test_watchdog_completes_a_pending_pulse_and_returns_to_idle() -> None:
    conv = EdgeToPulses()
    conv.push(1, 0)
    conv.push(0, 300)
    assert conv.push(2, 20_300) == (300, 20_000)
    assert conv.push(2, 40_300) is None  # idle: nothing pending
    assert conv.push(1, 50_000) is None  # a fresh start, no pulse invented from the idle time
    conv.push(0, 50_400)
    assert conv.push(1, 51_000) == (400, 600)


def test_watchdog_while_high_drops_the_partial_mark() -> None:
    conv = EdgeToPulses()
    conv.push(1, 0)
    assert conv.push(2, 20_000) is None
    conv.push(0, 20_500)  # the falling edge of the dropped mark: nothing to measure
    assert conv.push(1, 21_000) is None


def test_unknown_level_is_an_error() -> None:
    with pytest.raises(ValueError, match="level"):
        EdgeToPulses().push(4, 0)


GOOD = """;pulse data
;version 1
;timescale 1us
;freq1 433920000

;ook 2 pulses
350 1050
1050 10850
;end
;ook 1 pulses
400 800
;end
500 1000
"""


def test_read_ook_packets_and_trailing_packet_without_end() -> None:
    assert read_ook(GOOD) == [[(350, 1050), (1050, 10850)], [(400, 800)], [(500, 1000)]]


def test_timescale_multiplies() -> None:
    text = ";pulse data\n;timescale 4us\n10 20\n;end\n"
    assert read_ook(text) == [[(40, 80)]]


def test_format_then_read_round_trips() -> None:
    packets = [[(1, 2), (3, 4)], [(5, 6)]]
    assert read_ook(format_ook(packets)) == packets


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("350 1050\n", 1),  # no header
        ("\n;pulse data\n350 1050\n12 abc\n", 4),
        (";pulse data\n350 1050 7\n", 2),
        (";pulse data\n;ook\n-5 10\n", 3),
        (";pulse data\n350\n", 2),
        (";pulse data\n;timescale 1ms\n", 2),
        (";pulse data\n1.5 2\n", 2),
    ],
)
def test_malformed_lines_name_the_line(text: str, line: int) -> None:
    with pytest.raises(OokError, match=rf"^line {line}: "):
        read_ook(text)


def test_error_names_the_file_when_given() -> None:
    with pytest.raises(OokError, match=r"^cap\.ook:3: "):
        read_ook(";pulse data\n1 2\nx y\n", "cap.ook")


def test_empty_text_is_an_error() -> None:
    with pytest.raises(OokError, match="';pulse data'"):
        read_ook("\n\n")


def test_size_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OokError, match="larger than"):
        read_ook(";pulse data\n" + " " * pulses_module.MAX_OOK_CHARS)
    monkeypatch.setattr(pulses_module, "MAX_OOK_PULSES", 2)
    with pytest.raises(OokError, match=r"^line 4: more than 2 pulses"):
        read_ook(";pulse data\n1 2\n1 2\n1 2\n")


def test_decode_file_errors_are_user_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.ook"
    bad.write_text(";pulse data\n1 2\noops\n")
    with pytest.raises(OokError, match=r"bad\.ook:3: "):
        list(decode_ook_file(bad))
    with pytest.raises(OokError, match="cannot read"):
        list(decode_ook_file(tmp_path / "missing.ook"))
    monkeypatch.setattr(ook_module, "MAX_OOK_CHARS", 10)
    with pytest.raises(OokError, match="more than the 10 allowed"):
        list(decode_ook_file(bad))
