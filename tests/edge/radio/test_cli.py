"""``contactpoint rf433 decode/listen`` and ``learn`` through the real command line: captures
from tests/fixtures/rf433, and a receiver read through gpiod from a replay of real
``gpiod.EdgeEvent`` objects behind ``request_lines``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from edge.config import load_config
from hardware._remote import ev1527, to_edges
from hardware.gpiod_replay import GpiodReplay, pi4_chips
from provisioning.main import main

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
    assert frames
    assert len(frames) == len(reasons)
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
    assert flag[0] in err
    assert flag[1] in err


# -- listen and learn on the gpiod backend (the default) -------------------------------------


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> GpiodReplay:
    """The kernel's GPIO chips, as a replay of real gpiod.EdgeEvent objects (a Pi 4)."""
    replay = GpiodReplay(pi4_chips())
    monkeypatch.setattr("hardware.gpiod_rx.KernelGpio", lambda: replay)
    return replay


def press(replay: GpiodReplay, id20: int, key: int) -> None:
    """Wait until the receiver holds the line, then send one key press and let it go quiet."""
    assert replay.wait_for(lambda r: any(not q.released for q in r.requests), timeout=10)
    start = replay.now_ns + 1_000_000
    edges = [(lv, t * 1000) for lv, t in to_edges(ev1527(id20, key, 320, repeats=4), 0)]
    replay.play([(lv, start + t) for lv, t in edges])
    replay.idle(50_000_000)


def in_thread(argv: list[str]) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(main(argv)))
    thread.start()
    return thread, result


def test_listen_reads_the_receiver_through_gpiod_by_default(
    kernel: GpiodReplay, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "device.toml"
    config.write_text("[rf433]\nenabled = true\ngpio = 27\n")
    thread, result = in_thread(
        ["rf433", "listen", "--config", str(config), "--count", "1", "--timeout", "20"]
    )
    press(kernel, 0x4C7A2, 0xE)  # a door contact opening
    thread.join(20)
    assert result == [0]
    (line,) = capsys.readouterr().out.splitlines()
    got = json.loads(line)
    assert (got["remote_key"], got["via"], got["state"]) == ("ev1527:4c7a2e", "rf433", "open")
    assert all(q.released for q in kernel.requests)  # listen released the line


def test_learn_with_backend_gpiod_overrides_a_pigpio_config(
    kernel: GpiodReplay, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "device.toml"
    config.write_text("[rf433]\nenabled = true\nbackend = 'pigpio'\ngpio = 27\n")
    argv = ["learn", "red", "--config", str(config), "--timeout", "20", "--backend", "gpiod"]
    thread, result = in_thread(argv)
    press(kernel, 0x4C7A2, 0xE)
    thread.join(20)
    assert result == [0]
    out = capsys.readouterr().out
    assert "'ev1527:4c7a2e'" in out
    assert "'open' state" in out
    red = load_config(config).button_for_code("ev1527:4c7a2e")
    assert red is not None
    assert red.role == "red"
    assert load_config(config).rf433.backend == "pigpio"  # the override is not written


def test_listen_without_gpio_chips_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("hardware.gpiod_rx.KernelGpio", lambda: GpiodReplay({}))
    config = tmp_path / "device.toml"
    config.write_text("[rf433]\nenabled = true\n")
    assert main(["rf433", "listen", "--config", str(config), "--timeout", "20"]) == 2
    assert "rf433: no GPIO line named GPIO27" in capsys.readouterr().err
