"""``contactpoint rf433 decode`` on the captures, through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.cli import main

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rf433"


def test_decode_explain_prints_presses_reasons_and_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["rf433", "decode", "--explain", str(FIXTURES / "noisy_press.ook")]) == 0
    lines = capsys.readouterr().out.splitlines()
    presses = [json.loads(line) for line in lines if line.startswith("{")]
    assert [p["code"] for p in presses] == ["2b4e64"]
    frames = [line for line in lines if line.startswith("frame ")]
    reasons = [line for line in lines if line.startswith("  pt2262: ")]
    assert frames and len(frames) == len(reasons)
    assert all("rcswitch: " in line for line in reasons)
    assert lines[-1].startswith("summary: ")


def test_decode_without_explain_prints_only_the_presses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["rf433", "decode", str(FIXTURES / "kerui_door.ook")]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(g["id"], g["state"]) for g in got] == [
        ("4c7a2", "open"),
        ("4c7a2", "close"),
        ("4c7a2", "tamper"),
    ]


def test_decode_with_the_glitch_filter_of_a_live_receiver(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ook = FIXTURES / "newkaku_sloppy.ook"
    assert main(["rf433", "decode", "--glitch-us", "100", str(ook)]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(g["protocol"], g["id"], g["state"]) for g in got] == [("newkaku", "15a0f3c", "on")]


@pytest.mark.parametrize("flag", [["--glitch-us", "-1"], ["--repeats", "0"]])
def test_bad_decode_options_are_clear_errors(
    flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rf433", "decode", *flag, str(FIXTURES / "noise.ook")]) == 2
    err = capsys.readouterr().err
    assert flag[0] in err and flag[1] in err
