"""The daemon and the installer's tools through their real code paths: the pigpio client against
a pigpiod-compatible server on loopback, gpiozero mock pins, a real mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

import hardware.gpio
from edge.config import load_config
from edge.daemon import run_live
from edge.events import Press
from edge.simulate import STORE_NAME
from edge.store import Store
from hardware._remote import ev1527, to_edges
from hardware.pigpio_replay import PigpioReplayServer
from provisioning.broker import LocalBroker
from provisioning.main import main
from tests.waiting import STALL_S, join, wait_for

ROOT = Path(__file__).resolve().parents[2]
GPIO = 27
LISTEN_S = "120"  # the tools wait this long for a key: they return as soon as it comes


@pytest.fixture
def pigpiod() -> Iterator[PigpioReplayServer]:
    with PigpioReplayServer() as server:
        yield server


def press_remote(server: PigpioReplayServer, id20: int, key: int) -> None:
    """Wait for a client to watch the pin, then send one key press (a burst of frames)."""
    assert server.wait_for(lambda s: s.subscribed(GPIO), timeout=STALL_S)
    server.play(GPIO, to_edges(ev1527(id20, key, pulse_us=320, repeats=4), server.tick + 1000))
    server.idle(50_000)  # silence: the watchdog closes the last frame


def in_thread(target: Callable[[], int]) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(target()))
    thread.start()
    return thread, result


def write_config(path: Path, server: PigpioReplayServer, extra: str = "") -> Path:
    path.write_text(
        "# the counter by the door\n"
        f"[hardware]\npigpio_host = '127.0.0.1'\npigpio_port = {server.port}\n"
        f"[rf433]\nenabled = true\nbackend = 'pigpio'\ngpio = {GPIO}\n" + extra
    )
    return path


def test_rf433_decode_prints_each_fixtures_expected_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fixtures = sorted((ROOT / "tests" / "fixtures" / "rf433").glob("*.ook"))
    assert len(fixtures) > 10
    for ook in fixtures:
        assert main(["rf433", "decode", str(ook)]) == 0
        got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        expected_file = ook.with_name(ook.name.replace(".ook", ".expected.jsonl"))
        expected = [json.loads(line) for line in expected_file.read_text().splitlines()]
        assert got == expected, ook.name


def test_rf433_listen_decodes_the_live_receiver(
    pigpiod: PigpioReplayServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "device.toml", pigpiod)
    thread, result = in_thread(
        lambda: main(
            ["rf433", "listen", "--config", str(config), "--count", "1", "--timeout", LISTEN_S]
        )
    )
    press_remote(pigpiod, 0x27FD4, 0x9)
    join(thread, "the command to get the key")
    assert result == [0]
    (line,) = capsys.readouterr().out.splitlines()
    code = json.loads(line)
    assert code["remote_key"] == "ev1527:27fd49"
    assert code["via"] == "rf433"
    assert (code["id"], code["key"]) == ("27fd4", 9)
    assert code["button"] is None  # not bound yet


def test_learn_binds_the_pressed_key_and_keeps_comments(
    pigpiod: PigpioReplayServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "device.toml", pigpiod)
    thread, result = in_thread(
        lambda: main(["learn", "red", "--config", str(config), "--timeout", LISTEN_S])
    )
    press_remote(pigpiod, 0x12345, 0x3)
    join(thread, "the command to get the key")
    assert result == [0]
    out = capsys.readouterr().out
    assert "press the remote key for red" in out
    assert "'ev1527:123453'" in out
    assert "still wired on GPIO13" in out
    assert "--wireless-only" in out
    text = config.read_text()
    assert text.startswith("# the counter by the door\n")
    cfg = load_config(config)
    red = cfg.button_for_code("ev1527:123453")
    assert red is not None
    assert red.role == "red"
    assert (red.vias, red.pin) == (("gpio", "rf433"), 13)  # the wired button stays wired
    assert len(cfg.buttons) == 5  # the defaults were written out, the code bound to red


def test_learn_wireless_only_gives_up_the_pin(
    pigpiod: PigpioReplayServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "device.toml", pigpiod)
    argv = ["learn", "red", "--config", str(config), "--timeout", LISTEN_S, "--wireless-only"]
    thread, result = in_thread(lambda: main(argv))
    press_remote(pigpiod, 0x12345, 0x3)
    join(thread, "the command to get the key")
    assert result == [0]
    assert "still wired" not in capsys.readouterr().out
    red = load_config(config).button_for_code("ev1527:123453")
    assert red is not None
    assert red.vias == ("rf433",)
    assert not red.wired


def test_learn_without_a_receiver_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "device.toml"
    config.write_text("")
    assert main(["learn", "red", "--config", str(config), "--timeout", "1"]) == 2
    assert "no remote receiver is enabled" in capsys.readouterr().err


def test_edge_run_plays_a_scenario_to_a_broker(
    broker: LocalBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "device.toml"
    config.write_text(f"[mqtt]\nbroker = '{broker.url}'\n[receipts]\nport = 0\n")
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'start = "2026-11-23T09:00:00Z"\nduration = 40.0\n'
        "[[customers]]\narrive = 5.0\nleave = 20.0\n"
    )
    data = tmp_path / "data"
    code = main(
        [
            "edge",
            "run",
            "--config",
            str(config),
            "--scenario",
            str(scenario),
            "--speed",
            "50",
            "--data",
            str(data),
        ]
    )
    assert code == 0
    assert "1 contacts" in capsys.readouterr().out
    with Store.open(data / STORE_NAME) as store:
        assert len(store.contacts()) == 1
        assert store.outbox.depth() == 0


def test_edge_run_needs_a_scenario_on_simulated_hardware(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "device.toml"
    config.write_text("")
    assert main(["edge", "run", "--config", str(config), "--data", str(tmp_path)]) == 2
    assert "--scenario" in capsys.readouterr().err


def test_live_daemon_on_real_drivers(
    broker: LocalBroker,
    pigpiod: PigpioReplayServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """backend 'pi': gpiozero buttons on mock pins, the 433 MHz receiver through the real
    pigpio client; no microphone (audio off), no ultrasonic sensor (presence mode off)."""
    factory = MockFactory()
    monkeypatch.setattr(hardware.gpio, "make_pin_factory", lambda *a, **k: factory)
    config = write_config(
        tmp_path / "device.toml",
        pigpiod,
        f"[mqtt]\nbroker = '{broker.url}'\n[audio]\nenabled = false\n"
        "[contacts]\nmodes = ['window', 'survey']\n[receipts]\nenabled = false\n"
        "[[buttons]]\nname = 'red'\nrole = 'red'\npin = 13\n"
        "[[buttons]]\nname = 'request-remote'\nrole = 'request'\nvia = 'rf433'\n"
        "code = 'ev1527:27fd49'\n",
    )
    cfg = load_config(config)
    cfg = cfg.replace(hardware=cfg.hardware.replace(backend="pi"))
    presses: list[Press] = []  # the presses as the core gets them, to know when to stop
    stop = threading.Event()
    data = tmp_path / "data"
    result: list[object] = []
    daemon = threading.Thread(
        target=lambda: result.append(run_live(cfg, data, stop=stop, on_press=presses.append))
    )
    daemon.start()
    try:
        pin = factory.pin(13)
        wait_for(lambda: pin.state == 1, "the button's pull-up")
        pin.drive_low()  # the wired red button: nobody at the counter
        time.sleep(0.2)  # held for 200 ms of real time: the debouncer measures real edges
        pin.drive_high()
        press_remote(pigpiod, 0x27FD4, 0x9)  # the request remote: a 60 s + 60 s window
        wait_for(lambda: len(presses) == 2, "both presses in the core", seen=lambda: presses)
    finally:
        stop.set()
        join(daemon, "the daemon to stop")
    assert result, "the daemon did not stop"
    with Store.open(data / STORE_NAME) as store:
        orphans = [(e.kind, e.via) for e in store.orphan_events()]
        contacts = store.contacts()
        depth = store.outbox.depth()
    assert orphans == []
    (window,) = contacts
    assert window.mode == "window"
    assert window.ended_by == "shutdown"
    # the red press came a moment before the request press: inside its window, so its event
    assert [(e.kind, e.via) for e in window.events] == [("red", "gpio"), ("request", "rf433")]
    assert "negative" in window.tags
    assert depth == 0  # delivered to the broker before exiting


#: what the daemon never uses: the sink and the sink's libraries (nor any provisioning module
#: but ``provisioning.main``, the front door every command starts from); and what this run
#: (WAV clips, simulated hardware, no routes, enrolled) does not need (issue #14): the FLAC/Opus
#: encoder, the example-config writer, the drivers' libraries, the enrollment's crypto, the
#: route destinations' protocols; numpy (the ring, the capture and the simulated speech are
#: plain bytes and memoryviews: numpy is for FLAC/Opus, imports and the sink's analyses).
#: pydantic is the sink API's only: the config is msgspec's
NOT_ON_THE_DEVICE_PATH = {"cloud_sink", "cryptography", "matplotlib", "fastapi", "uvicorn"}
NOT_ON_THE_DEVICE_PATH |= {"pydantic", "pydantic_core", "annotated_types"}
NOT_ON_THIS_RUN = {"soundfile", "tomlkit", "gpiozero", "alsaaudio", "pigpio", "serial", "nacl"}
NOT_ON_THIS_RUN |= {"smtplib", "ftplib", "rich", "edge.routes.mail", "edge.routes.ftp"}
NOT_ON_THIS_RUN |= {"edge.routes.telegram", "edge.routes.webhook", "hardware.alsa"}
NOT_ON_THIS_RUN |= {"numpy", "edge.importer"}


def test_edge_run_loads_neither_the_sink_nor_the_provisioning_tools(
    broker: LocalBroker, tmp_path: Path
) -> None:
    # bench/memory.py measures what the daemon's imports cost; this says which must stay out
    config = tmp_path / "device.toml"
    config.write_text(f"[mqtt]\nbroker = '{broker.url}'\n[receipts]\nport = 0\n")
    argv = ["edge", "run", "--config", str(config), "--scenario", str(_scenario(tmp_path))]
    argv += ["--speed", "50", "--data", str(tmp_path / "data")]
    stdout, modules = _run_listing_modules(argv)
    assert "1 contacts" in stdout
    assert {"edge.simulate", "edge.audio.encode", "paho.mqtt.client"} <= set(modules)  # it ran
    assert "msgspec" in modules  # the config and the scenario were validated, not by pydantic
    assert _unwanted(modules) == []


def test_simulate_loads_neither_numpy_nor_what_edge_run_leaves_out(tmp_path: Path) -> None:
    argv = ["simulate", str(_scenario(tmp_path)), "--data", str(tmp_path / "data")]
    stdout, modules = _run_listing_modules(argv)
    assert "1 contacts" in stdout
    assert {"edge.simulate", "edge.audio.encode", "hardware._speech"} <= set(modules)  # it ran
    assert len(list((tmp_path / "data" / "clips").glob("*.wav"))) == 1
    # simulate prints its summary with rich
    assert _unwanted({m for m in modules if m.split(".")[0] != "rich"}) == []


def _scenario(tmp_path: Path) -> Path:
    """A customer who presses a button: a contact with a clip, simulated speech, a bounce."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'start = "2026-11-23T09:00:00Z"\nduration = 40.0\n'
        "[[customers]]\narrive = 5.0\nleave = 20.0\n"
        '[[presses]]\nat = 12.0\nbutton = "green"\n'
    )
    return scenario


def _run_listing_modules(argv: list[str]) -> tuple[str, set[str]]:
    """Run the CLI with ``argv`` in a fresh interpreter: its stdout, and the modules it loaded."""
    code = (
        "import json, sys\n"
        "from provisioning.main import main\n"
        f"code = main({argv!r})\n"
        "print('MODULES', json.dumps(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=STALL_S * 4,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    stdout, _, listed = done.stdout.rpartition("MODULES ")
    return stdout, set(json.loads(listed))


def _unwanted(modules: set[str]) -> list[str]:
    return sorted(
        m
        for m in modules
        if m.split(".")[0] in NOT_ON_THE_DEVICE_PATH | NOT_ON_THIS_RUN
        or m in NOT_ON_THIS_RUN
        or (m.startswith("provisioning.") and m != "provisioning.main")
    )
