"""open_backend: the real drivers behind one start/stop (no Pi), and the simulated remotes.

The pi backend runs the real driver code: gpiozero's mock pin factory for buttons and the
ranger, the real pigpio client against the pigpiod look-alike on loopback for the 433 MHz pin,
an ALSA ``file`` PCM fed in real time for the microphone, a pty for the RFLink stick. The
simulated radio is checked through the daemon's own OOK decoder. Every wait is bounded.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockTriggerPin

from edge.radio import Decoder
from hardware import (
    AudioPeriod,
    AudioSpec,
    BackendSpec,
    ButtonEdge,
    ButtonSpec,
    DeviceFault,
    Distance,
    HardwareError,
    HardwareEvent,
    LiveBackend,
    Nrf24Spec,
    RadioEdge,
    RangerSpec,
    RemoteCode,
    Rf433Spec,
    SerialSpec,
    SimPress,
    SimulatedBackend,
    World,
    open_backend,
    remote_key,
)
from hardware._remote import ev1527, to_edges
from hardware.alsa import AlsaMicrophone
from hardware.fake import SimButton, SimRadio, SimRflink
from hardware.gpiod_replay import GpiodReplay, pi5_chips
from hardware.gpiod_rx import GpiodRf433Receiver, KernelGpio
from hardware.netaudio import NetworkMicrophone
from hardware.pigpio_replay import PigpioReplayServer
from hardware.rf433 import Rf433Receiver
from hardware.serial_rx import RflinkReceiver
from hardware.ultrasonic import speed_of_sound
from tests.hardware.alsa_fixtures import FifoFeeder, capture_pcm, use_alsa_config
from tests.waiting import STALL_S

WAIT_S = STALL_S  # a bound for what should happen promptly: returns when it does
NS = 1_000_000_000
MS = 1_000_000
MASK = 0xFFFFFFFF
RF_GPIO = 27
RATE, FRAMES = 16000, 320
REMOTE_ID, REMOTE_KEY = 0x27FD4, 0x9  # one EV1527 remote key
KEY = f"ev1527:{REMOTE_ID << 4 | REMOTE_KEY:06x}"


class Sink:
    """Collects events from driver threads; waits are bounded."""

    def __init__(self) -> None:
        self.events: list[HardwareEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: HardwareEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, done: Callable[[list[HardwareEvent]], bool]) -> list[HardwareEvent]:
        with self._cond:
            assert self._cond.wait_for(lambda: done(self.events), WAIT_S), self.events[-5:]
            return list(self.events)

    def of(self, kind: type[HardwareEvent]) -> list[HardwareEvent]:
        with self._cond:
            return [e for e in self.events if isinstance(e, kind)]


def count(kind: type[HardwareEvent], n: int) -> Callable[[list[HardwareEvent]], bool]:
    return lambda events: sum(isinstance(e, kind) for e in events) >= n


def fault_of(part: str) -> Callable[[list[HardwareEvent]], bool]:
    return lambda events: any(isinstance(e, DeviceFault) and e.part == part for e in events)


@pytest.fixture
def backends() -> Iterator[list[LiveBackend]]:
    """Backends a test opened, stopped at its end whatever happened (before the pins reset)."""
    opened: list[LiveBackend] = []
    yield opened
    for backend in reversed(opened):
        backend.stop()


@pytest.fixture
def factories(
    monkeypatch: pytest.MonkeyPatch, mock_factory: MockFactory
) -> list[tuple[str, str, int]]:
    """Every backend gets the test's mock factory (so the test drives its pins); the names,
    hosts and ports the backends asked for are recorded."""
    asked: list[tuple[str, str, int]] = []

    def make(name: str, *, pigpio_host: str, pigpio_port: int, **_: object) -> MockFactory:
        asked.append((name, pigpio_host, pigpio_port))
        return mock_factory

    monkeypatch.setattr("hardware.gpio.make_pin_factory", make)
    return asked


@pytest.fixture
def pigpiod() -> Iterator[PigpioReplayServer]:
    with PigpioReplayServer() as server:
        yield server


@pytest.fixture
def rflink_pty() -> Iterator[tuple[int, str]]:
    """A pty: the receiver opens the returned path, the test writes lines to the master fd."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    yield master, path
    os.close(master)


def rflink_connected(backend: LiveBackend) -> None:
    """Wait (bounded) until the RFLink reader has opened its pty: lines written before are lost."""
    [rflink] = [d for d in backend.inventory.others if isinstance(d, RflinkReceiver)]
    deadline = time.monotonic() + WAIT_S
    while rflink.status.state != "connected":
        assert time.monotonic() < deadline, rflink.status
        time.sleep(0.005)


def dead_port() -> tuple[socket.socket, int]:
    """A loopback port that refuses connections (bound, not listening) while the socket lives."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def live(backend: BackendSpec, backends: list[LiveBackend]) -> LiveBackend:
    opened = open_backend(backend)
    assert isinstance(opened, LiveBackend)
    backends.append(opened)
    return opened


def decode(edges: list[RadioEdge], decoder: Decoder | None = None) -> list[str]:
    decoder = decoder or Decoder()
    return [
        f"{code.protocol}:{code.hex}"
        for e in edges
        for code in decoder.feed(e.level, e.tick_us, e.t_ns)
    ]


BUTTONS = (ButtonSpec("green", 5), ButtonSpec("red", 13))


# -- the pi backend --------------------------------------------------------------------------------


def test_pi_backend_runs_every_real_driver_and_releases_everything_at_stop(  # noqa: PLR0917
    mock_factory: MockFactory,
    factories: list[tuple[str, str, int]],
    backends: list[LiveBackend],
    pigpiod: PigpioReplayServer,
    rflink_pty: tuple[int, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    distance = 0.7
    echo = mock_factory.pin(24)
    mock_factory.pin(
        23, pin_class=MockTriggerPin, echo_pin=echo, echo_time=2 * distance / speed_of_sound(20)
    )
    feeder = FifoFeeder(tmp_path / "mic.fifo", RATE, FRAMES)
    conf = tmp_path / "asound.conf"
    conf.write_text(capture_pcm("testmic", tmp_path / "mic.fifo"))
    use_alsa_config(monkeypatch, conf)
    feeder.start()
    master, port = rflink_pty
    spec = BackendSpec(
        backend="pi",
        buttons=BUTTONS,
        ranger=RangerSpec(23, 24, interval_s=0.06),
        audio=AudioSpec(RATE, FRAMES, device="testmic"),
        rf433=Rf433Spec(RF_GPIO, watchdog_ms=20, glitch_us=0, backend="pigpio"),
        serial=SerialSpec(port),
        pin_factory="mock",
        pigpio_host="127.0.0.1",
        pigpio_port=pigpiod.port,
    )
    try:
        backend = live(spec, backends)
        assert factories == [("mock", "127.0.0.1", pigpiod.port)]  # one factory for all pins
        assert [b.name for b in backend.inventory.buttons] == ["green", "red"]
        sink = Sink()
        backend.start(sink)
        assert backend.faults == []

        mock_factory.pin(13).drive_low()  # pull-up: pressed pulls the pin to ground
        mock_factory.pin(13).drive_high()
        presses = sink.wait_for(count(ButtonEdge, 2))
        assert [(e.button, e.pressed) for e in presses if isinstance(e, ButtonEdge)] == [
            ("red", True),
            ("red", False),
        ]

        played = to_edges(ev1527(REMOTE_ID, REMOTE_KEY, repeats=4), pigpiod.tick + 1_000)
        pigpiod.play(RF_GPIO, played)
        pigpiod.idle(30_000)  # the watchdog reports the silence after the burst
        sink.wait_for(count(RadioEdge, len(played) + 1))
        radio = [e for e in sink.of(RadioEdge) if isinstance(e, RadioEdge)]
        assert [(e.level, e.tick_us) for e in radio[: len(played)]] == played
        assert radio[len(played)].level == 2
        assert decode(radio) == [KEY]

        rflink_connected(backend)
        line = f"20;3A;EV1527;ID={REMOTE_ID:06x};SWITCH={REMOTE_KEY:02x};CMD=ON;\r\n"
        os.write(master, line.encode())
        sink.wait_for(count(RemoteCode, 1))
        [code] = sink.of(RemoteCode)
        assert isinstance(code, RemoteCode)
        assert remote_key(code.protocol, code.code) == KEY

        sink.wait_for(count(AudioPeriod, 5))
        periods = [e for e in sink.of(AudioPeriod) if isinstance(e, AudioPeriod)]
        assert [p.start_index for p in periods[:5]] == [k * FRAMES for k in range(5)]

        # the mock times its echo with sleep(), which only overshoots (more on a busy machine):
        # wait for a reading as accurate as the driver; none may read short
        def measured(e: HardwareEvent) -> float | None:
            return e.meters if isinstance(e, Distance) else None

        sink.wait_for(lambda events: any((measured(e) or 9.0) <= distance + 0.05 for e in events))
        readings = [m for e in sink.of(Distance) if (m := measured(e)) is not None]
        assert min(readings) >= distance - 0.01

        backend.stop()
        backend.stop()  # idempotent
        assert pigpiod.wait_for(lambda s: not s.subscribed(RF_GPIO), WAIT_S)
        mic = backend.inventory.audio
        assert isinstance(mic, AlsaMicrophone)
        assert mic.status.state == "stopped"
    finally:
        feeder.close()

    # the pins are free again (a claimed one would be a GPIOPinInUse fault): a second backend
    # claims them, and only it hears the button
    second = live(replace(spec, audio=None, rf433=None, serial=None), backends)
    again = Sink()
    second.start(again)
    assert second.faults == []
    before = len(sink.events)
    mock_factory.pin(5).drive_low()
    [edge] = [e for e in again.wait_for(count(ButtonEdge, 1)) if isinstance(e, ButtonEdge)]
    assert (edge.button, edge.pressed) == ("green", True)
    assert len(sink.events) == before


def test_a_device_that_cannot_start_is_reported_and_the_others_run(
    mock_factory: MockFactory,
    factories: list[tuple[str, str, int]],
    backends: list[LiveBackend],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    use_alsa_config(monkeypatch, tmp_path / "absent.conf")  # no such capture device
    taken, port = dead_port()
    with taken:
        spec = BackendSpec(
            backend="pi",
            buttons=(*BUTTONS, ButtonSpec("seller")),  # a button without a pin
            audio=AudioSpec(RATE, FRAMES, device="nosuchmic"),
            rf433=Rf433Spec(RF_GPIO, backend="pigpio"),
            nrf24=Nrf24Spec(),  # no /dev/spidev0.0 here
            pin_factory="mock",
            pigpio_host="127.0.0.1",
            pigpio_port=port,
        )
        backend = live(spec, backends)
        sink = Sink()
        backend.start(sink)
    assert {(f.part, f.ok) for f in backend.faults} == {
        ("seller", False),
        ("rf433", False),
        ("nrf24", False),
    }
    assert f"127.0.0.1:{port}" in next(f.detail for f in backend.faults if f.part == "rf433")
    assert "SPI" in next(f.detail for f in backend.faults if f.part == "nrf24")
    # the microphone retries on its own thread and reports its outage itself
    events = sink.wait_for(fault_of("microphone"))
    mic = next(e for e in events if isinstance(e, DeviceFault) and e.part == "microphone")
    assert not mic.ok
    assert "nosuchmic" in mic.detail
    assert all(f in sink.events for f in backend.faults)  # every start failure reached the sink

    mock_factory.pin(5).drive_low()
    [edge] = [e for e in sink.wait_for(count(ButtonEdge, 1)) if isinstance(e, ButtonEdge)]
    assert (edge.button, edge.pressed) == ("green", True)


def test_the_radio_is_read_through_gpiod_by_default(
    backends: list[LiveBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the kernel's GPIO chips are a replay: real gpiod.EdgeEvent objects behind request_lines
    replay = GpiodReplay(pi5_chips(new_kernel=False))
    monkeypatch.setattr("hardware.gpiod_rx.KernelGpio", lambda: replay)
    backend = live(BackendSpec(backend="pi", rf433=Rf433Spec(RF_GPIO)), backends)
    [receiver] = backend.inventory.edges
    assert isinstance(receiver, GpiodRf433Receiver)
    sink = Sink()
    backend.start(sink)
    assert backend.faults == []
    assert receiver.line == ("/dev/gpiochip4", RF_GPIO)  # a Pi 5 on an older kernel
    edges = [
        (level, tick * 1000)
        for level, tick in to_edges(ev1527(REMOTE_ID, REMOTE_KEY, repeats=4), 10**9)
    ]
    replay.play(edges)
    replay.idle(30 * MS)
    sink.wait_for(count(RadioEdge, len(edges) + 1))
    radio = [e for e in sink.of(RadioEdge) if isinstance(e, RadioEdge)]
    assert [(e.level, e.t_ns) for e in radio[: len(edges)]] == edges  # the kernel's stamps
    assert decode(radio) == [KEY]
    backend.stop()
    assert all(r.released for r in replay.requests)


def test_without_gpio_chips_the_gpiod_radio_is_a_fault_naming_what_to_check(
    backends: list[LiveBackend], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("hardware.gpiod_rx.KernelGpio", lambda: KernelGpio(tmp_path))
    backend = live(BackendSpec(backend="pi", rf433=Rf433Spec(RF_GPIO)), backends)
    sink = Sink()
    backend.start(sink)
    [fault] = backend.faults
    assert (fault.part, fault.ok) == ("rf433", False)
    assert "no GPIO line named GPIO27" in fault.detail
    assert "none found" in fault.detail


def test_the_radio_backend_is_chosen_by_name() -> None:
    spec = BackendSpec(backend="pi", rf433=Rf433Spec(RF_GPIO, backend="pigpio"))
    opened = open_backend(spec)
    assert isinstance(opened, LiveBackend)
    assert [type(d) for d in opened.inventory.edges] == [Rf433Receiver]
    with pytest.raises(HardwareError, match=r"unknown radio backend 'lgpio'.*'gpiod'.*'pigpio'"):
        open_backend(replace(spec, rf433=Rf433Spec(RF_GPIO, backend="lgpio")))


def test_a_pin_factory_that_cannot_open_disables_only_the_gpio_parts(
    rflink_pty: tuple[int, str], backends: list[LiveBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    master, port = rflink_pty
    taken, dead = dead_port()
    with taken:
        spec = BackendSpec(
            backend="pi",
            buttons=BUTTONS,
            ranger=RangerSpec(23, 24),
            serial=SerialSpec(port),
            pin_factory="pigpio",
            pigpio_host="127.0.0.1",
            pigpio_port=dead,
        )
        backend = live(spec, backends)
    capsys.readouterr()  # pigpio prints a banner when no daemon answers
    assert backend.inventory.buttons == []
    assert backend.inventory.ranger is None
    sink = Sink()
    backend.start(sink)
    assert [f.part for f in backend.faults] == ["green", "red", "ranger"]
    assert all("pigpio" in f.detail for f in backend.faults)
    rflink_connected(backend)
    os.write(master, b"20;01;NewKaku;ID=cac142;SWITCH=3;CMD=OFF;\n")
    [code] = [e for e in sink.wait_for(count(RemoteCode, 1)) if isinstance(e, RemoteCode)]
    assert remote_key(code.protocol, code.code) == "newkaku:cac142-3-off"


def test_settings_a_driver_refuses_are_configuration_errors(mock_factory: MockFactory) -> None:
    with pytest.raises(HardwareError, match=r"microphone.*sample_rate"):
        open_backend(BackendSpec("pi", audio=AudioSpec(44100, FRAMES)))
    with pytest.raises(HardwareError, match=r"unknown pin factory 'gpiod'"):
        open_backend(BackendSpec("pi", buttons=BUTTONS, pin_factory="gpiod"))
    with pytest.raises(HardwareError, match=r"ranger.*interval"):
        open_backend(BackendSpec("pi", ranger=RangerSpec(23, 24, 0.01), pin_factory="mock"))
    with pytest.raises(HardwareError, match="'simulated', 'pi'"):
        open_backend(BackendSpec("esp32"))


def test_a_stream_url_as_audio_device_opens_the_network_microphone() -> None:
    url = "rtsp://admin:S3cret-pw@127.0.0.1:1/live"
    backend = open_backend(BackendSpec("pi", audio=AudioSpec(8000, 800, device=url)))
    assert isinstance(backend, LiveBackend)
    mic = backend.inventory.audio
    assert isinstance(mic, NetworkMicrophone)
    assert (mic.sample_rate, mic.device) == (8000, "rtsp://***@127.0.0.1:1/live")
    alsa = open_backend(BackendSpec("pi", audio=AudioSpec(8000, 800, device="plughw:CARD=Mic")))
    assert isinstance(alsa, LiveBackend)
    assert isinstance(alsa.inventory.audio, AlsaMicrophone)
    with pytest.raises(HardwareError, match=r"microphone: stream URL 'rtmp://\*\*\*@127"):
        open_backend(BackendSpec("pi", audio=AudioSpec(8000, 800, device="rtmp" + url[4:])))


def test_a_stream_url_without_pyav_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed: importing it fails
    monkeypatch.delitem(sys.modules, "hardware.netaudio", raising=False)
    url = "rtsp://admin:S3cret-pw@127.0.0.1:1/live"
    with pytest.raises(HardwareError) as err:
        open_backend(BackendSpec("pi", audio=AudioSpec(RATE, FRAMES, device=url)))
    text = str(err.value)
    assert "needs PyAV" in text
    assert "pip install 'contactpoint[camera]'" in text
    assert "rtsp://***@127.0.0.1:1/live" in text
    assert "S3cret" not in text


# -- simulated 433 MHz remotes ---------------------------------------------------------------------


def rf_world(*presses: SimPress, noise: float = 0.0) -> World:
    return World(presses=list(presses), rf_noise_edges_per_s=noise)


def rf_press(at_s: float, hold_s: float, code: str = KEY) -> SimPress:
    return SimPress("green", round(at_s * NS), round(hold_s * NS), via="rf433", code=code)


def radio_edges(radio: SimRadio, until_s: float) -> list[RadioEdge]:
    return [e for e in radio.emit_until(round(until_s * NS)) if isinstance(e, RadioEdge)]


@pytest.mark.parametrize("seed", range(4))
def test_a_held_key_in_receiver_noise_decodes_once(seed: int) -> None:
    press = rf_press(3.0, 1.0)
    radio = SimRadio(rf_world(press), RF_GPIO, seed=seed, noise_edges_per_s=2000)
    decoder = Decoder()
    edges = radio_edges(radio, 8.0)
    assert len(edges) > 8 * 1500  # mostly noise
    got = [c for e in edges for c in decoder.feed(e.level, e.tick_us, e.t_ns)]
    assert [f"{c.protocol}:{c.hex}" for c in got] == [KEY]
    # confirmed on the second frame (one frame is ~40 ms), not at the release
    assert press.at_ns < got[0].t_ns < press.at_ns + 200 * MS


def test_two_presses_are_two_events_and_other_remote_families_decode() -> None:
    keys = ["pt2262:155555", "rcswitch2:abcd", "rcswitch6:0f0f1"]
    presses = [rf_press(1.0 + 2 * i, 0.3, key) for i, key in enumerate([KEY, KEY, *keys])]
    radio = SimRadio(rf_world(*presses), RF_GPIO, seed=5)
    assert decode(radio_edges(radio, 12.0)) == [KEY, KEY, *keys]


def test_noise_alone_decodes_to_nothing() -> None:
    radio = SimRadio(rf_world(), RF_GPIO, seed=11, noise_edges_per_s=3000)
    decoder = Decoder()
    edges = radio_edges(radio, 20.0)
    assert len(edges) > 20 * 2500
    assert decode(edges, decoder) == []
    assert sum(decoder.stats.values()) > 0  # frames were seen and rejected


def test_ticks_wrap_at_2_pow_32_like_pigpio_and_a_watchdog_follows_the_burst() -> None:
    start_tick = 2**32 - 500_000  # the counter wraps 0.5 s into the simulation
    press = rf_press(0.2, 1.0)
    radio = SimRadio(rf_world(press), RF_GPIO, seed=3, start_tick_us=start_tick)
    edges = radio_edges(radio, 3.0)
    assert any(b.tick_us < a.tick_us for a, b in itertools.pairwise(edges))  # it wrapped
    for a, b in itertools.pairwise(edges):  # tick differences are the time differences
        assert (b.tick_us - a.tick_us) & MASK == b.t_ns // 1000 - a.t_ns // 1000
    assert all(e.tick_us == (start_tick + e.t_ns // 1000) & MASK for e in edges)
    assert decode(edges) == [KEY]
    *_, last, watchdog = edges
    assert (last.level, watchdog.level) == (0, 2)
    assert watchdog.t_ns - last.t_ns == 20 * MS
    # the remote kept sending for the whole hold
    assert press.at_ns + press.hold_ns <= last.t_ns < press.at_ns + press.hold_ns + 100 * MS


def test_the_simulated_radio_is_deterministic_per_seed() -> None:
    world = rf_world(rf_press(0.5, 0.2), noise=500)
    one = radio_edges(SimRadio(world, RF_GPIO, seed=9, noise_edges_per_s=500), 2.0)
    two = SimRadio(world, RF_GPIO, seed=9, noise_edges_per_s=500)
    assert one == radio_edges(two, 1.0) + radio_edges(two, 2.0)  # also in steps
    assert one != radio_edges(SimRadio(world, RF_GPIO, seed=10, noise_edges_per_s=500), 2.0)


def test_keys_no_remote_sends_are_refused() -> None:
    for key in ["ev1527:155555", "pt2262:27fd49", "rcswitch1:27fd49", "nec:01", "ev1527:xyz"]:
        with pytest.raises(ValueError, match="remote key"):
            SimRadio(rf_world(rf_press(1, 0.1, key)), RF_GPIO, seed=0)


# -- simulated RFLink ------------------------------------------------------------------------------


def test_rflink_prints_repeats_and_the_driver_parser_reports_one_key() -> None:
    press = SimPress("green", 2 * NS, NS, via="serial", code=KEY)
    rflink = SimRflink(World(presses=[press]), seed=1)
    line = re.compile(rf"^20;[0-9A-F]{{2}};EV1527;ID={REMOTE_ID:06x};SWITCH={REMOTE_KEY:02x};")
    assert len(rflink.lines) >= 1000 // 130  # repeated while held, every 90-130 ms
    assert all(line.match(text) for _, text in rflink.lines)
    counters = [int(text.split(";")[1], 16) for _, text in rflink.lines]
    assert all((b - a) % 256 == 1 for a, b in itertools.pairwise(counters))
    codes = [e for e in rflink.emit_until(5 * NS) if isinstance(e, RemoteCode)]
    assert len(codes) == 1
    assert codes[0].t_ns == rflink.lines[0][0]
    # the same remote heard by the GPIO receiver gives the same key
    radio = SimRadio(rf_world(replace(press, via="rf433")), RF_GPIO, seed=1)
    assert (
        [remote_key(codes[0].protocol, codes[0].code)] == decode(radio_edges(radio, 5.0)) == [KEY]
    )


def test_rflink_presses_after_the_repeat_window_are_new_presses() -> None:
    presses = [
        SimPress("green", 1 * NS, 200 * MS, via="serial", code=KEY),
        SimPress("green", 3 * NS, 200 * MS, via="serial", code=KEY),
        SimPress("red", 5 * NS, 200 * MS, via="serial", code="newkaku:cac142-3-off"),
    ]
    rflink = SimRflink(World(presses=presses), seed=2, repeat_window_s=0.5)
    codes = [e for e in rflink.emit_until(10 * NS) if isinstance(e, RemoteCode)]
    assert [remote_key(c.protocol, c.code) for c in codes] == [KEY, KEY, "newkaku:cac142-3-off"]
    with pytest.raises(ValueError, match="RFLink"):
        SimRflink(World(presses=[replace(presses[0], code="pt2262:055555")]), seed=0)


# -- the simulated backend -------------------------------------------------------------------------


def test_simulated_backend_routes_each_press_to_the_receiver_that_hears_it() -> None:
    world = World(
        presses=[
            SimPress("green", 1 * NS, 100 * MS, bounces=0),
            SimPress("red", 2 * NS, 500 * MS, via="rf433", code=KEY),
            SimPress("request", 4 * NS, 300 * MS, via="serial", code="ev1527:0000a1"),
            SimPress("request", 7 * NS, 300 * MS, via="serial", code="ev1527:0000a1"),
        ]
    )
    spec = BackendSpec("simulated", buttons=(ButtonSpec("green"), ButtonSpec("red")), world=world)
    backend = open_backend(spec)
    assert isinstance(backend, SimulatedBackend)
    [radio] = backend.inventory.edges
    assert isinstance(radio, SimRadio)
    assert radio.gpio == RF_GPIO
    assert [type(d) for d in backend.inventory.others] == [SimRflink]
    assert all(isinstance(b, SimButton) for b in backend.inventory.buttons)
    sink = Sink()
    backend.start(sink)
    events = backend.advance_to(6 * NS)
    assert sink.events == events  # started: the sink hears what advance_to returns
    backend.stop()
    later = backend.advance_to(8 * NS)  # the RFLink stick prints again, unheard by the sink
    assert later
    assert sink.events == events
    assert [e.t_ns for e in events] == sorted(e.t_ns for e in events)
    buttons = [(e.button, e.pressed) for e in events if isinstance(e, ButtonEdge)]
    assert buttons == [("green", True), ("green", False)]  # the remote press is no wired edge
    assert decode([e for e in events if isinstance(e, RadioEdge)]) == [KEY]
    assert [(e.protocol, e.code) for e in events if isinstance(e, RemoteCode)] == [
        ("ev1527", "0000a1")
    ]


def test_a_simulated_press_without_a_usable_code_is_a_hardware_error() -> None:
    world = World(presses=[SimPress("red", NS, NS, via="rf433")])
    with pytest.raises(HardwareError, match=r"simulated rf433.*no code"):
        open_backend(BackendSpec("simulated", world=world))
    world = World(presses=[SimPress("red", NS, NS, via="serial", code="pt2262:055555")])
    with pytest.raises(HardwareError, match="simulated rflink"):
        open_backend(BackendSpec("simulated", serial=SerialSpec("/dev/null"), world=world))
