"""The pigpiod look-alike against the real pigpio client, raw sockets, gpiozero and its CLI.

Every wait is bounded (queue.get(timeout=...), server.wait_for(..., timeout)); only 127.0.0.1.
"""

from __future__ import annotations

import queue
import select
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pigpio
import pytest
from gpiozero import Button
from gpiozero.pins.pigpio import PiGPIOFactory

from hardware.pigpio_replay import (
    NB,
    NC,
    NOIB,
    PIGPIO_VERSION,
    TICK,
    PigpioReplayServer,
    parse_ook,
    pulses_to_edges,
)
from tests.waiting import STALL_S

ROOT = Path(__file__).resolve().parents[2]
WAIT = STALL_S  # a bound for what should happen promptly: returns when it does
MASK = 0xFFFFFFFF
CMD = struct.Struct("<IIII")
REPORT = struct.Struct("<HHII")
Edge = tuple[int, int, int]  # (gpio, level, tick) as the pigpio callback gets them


@pytest.fixture
def server() -> Iterator[PigpioReplayServer]:
    with PigpioReplayServer() as srv:
        yield srv


def connect(server: PigpioReplayServer) -> Any:
    pi = pigpio.pi("127.0.0.1", server.port, show_errors=False)
    assert pi.connected
    return pi


@pytest.fixture
def pi(server: PigpioReplayServer) -> Iterator[Any]:
    conn = connect(server)
    yield conn
    conn.stop()


def collect(pi: Any, gpio: int) -> queue.Queue[Edge]:
    got: queue.Queue[Edge] = queue.Queue()
    pi.callback(gpio, pigpio.EITHER_EDGE, lambda g, level, tick: got.put((g, level, tick)))
    return got


def take(got: queue.Queue[Edge], count: int) -> list[Edge]:
    return [got.get(timeout=WAIT) for _ in range(count)]


def alternating(start: int, steps: list[int]) -> list[tuple[int, int]]:
    """Edges rising first, each ``steps[i]`` µs after the previous one (ticks not wrapped)."""
    edges, tick = [], start
    for i, step in enumerate(steps):
        tick += step
        edges.append((1 - i % 2, tick))
    return edges


def raw_command(sock: socket.socket, cmd: int, p1: int = 0, p2: int = 0, ext: bytes = b"") -> int:
    sock.sendall(CMD.pack(cmd, p1, p2, len(ext)) + ext)
    reply = recv_exact(sock, CMD.size)
    echoed, res = reply[:12], CMD.unpack(reply)[3]
    assert echoed == CMD.pack(cmd, p1, p2, 0)[:12]
    return pigpio.u2i(res)  # type: ignore[no-any-return]


def recv_exact(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(WAIT)
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        assert chunk, "server closed the connection"
        buf += chunk
    return buf


def raw_pair(server: PigpioReplayServer) -> tuple[socket.socket, socket.socket, int]:
    """A control socket and an in-band notification socket, as pigpio.pi opens them."""
    control = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    notify = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    handle = raw_command(notify, NOIB)
    assert handle >= 0
    return control, notify, handle


# -- commands -------------------------------------------------------------------------------


def test_handshake_and_commands_answer() -> None:
    with PigpioReplayServer(start_tick=123_456, hw_revision=0x9000C1) as server:
        pi = connect(server)
        try:
            assert pi.get_current_tick() == 123_456
            assert pi.get_hardware_revision() == 0x9000C1
            assert pi.get_pigpio_version() == PIGPIO_VERSION
            assert list(server.notify_handles().values()) == [0]  # NOIB done, nothing watched
            pi.set_mode(17, pigpio.OUTPUT)
            assert pi.get_mode(17) == pigpio.OUTPUT
            pi.write(17, 1)
            assert pi.read(17) == 1
            assert server.level(17) == 1
            pi.set_mode(5, pigpio.INPUT)
            pi.set_pull_up_down(5, pigpio.PUD_UP)
            assert pi.read(5) == 1
            assert pi.read_bank_1() == 1 << 17 | 1 << 5
            pi.set_pull_up_down(5, pigpio.PUD_DOWN)
            assert pi.read(5) == 0
            pi.set_glitch_filter(5, 150)
            assert server.glitch_us(5) == 150
            server.idle(1000)
            assert pi.get_current_tick() == 124_456
        finally:
            pi.stop()


def test_bad_arguments_answer_pigpio_errors(pi: Any) -> None:
    with pytest.raises(pigpio.error, match=pigpio.error_text(pigpio.PI_BAD_GPIO)):
        pi.set_mode(60, pigpio.INPUT)
    with pytest.raises(pigpio.error, match=pigpio.error_text(pigpio.PI_BAD_WDOG_TIMEOUT)):
        pi.set_watchdog(27, 60_001)
    with pytest.raises(pigpio.error, match=pigpio.error_text(pigpio.PI_BAD_LEVEL)):
        pi.write(4, 2)
    assert pi.read(4) == 0  # the connection is still in step


def test_unknown_command_answers_an_error_instead_of_hanging(
    server: PigpioReplayServer, pi: Any
) -> None:
    with pytest.raises(pigpio.error, match="unknown command"):
        pi.get_PWM_dutycycle(4)
    assert pi.get_current_tick() == server.tick
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        # an unknown extended command: its extension bytes are consumed, the stream stays aligned
        assert raw_command(sock, 200, 1, 2, ext=b"abcdef") == pigpio.PI_UNKNOWN_COMMAND
        assert raw_command(sock, TICK) == server.tick


# -- notifications ------------------------------------------------------------------------------


def test_callback_gets_exactly_the_played_edges_in_order_across_the_tick_wrap() -> None:
    start = 2**32 - 1_000
    with PigpioReplayServer(start_tick=start) as server:
        pi = connect(server)
        try:
            got = collect(pi, 27)
            edges = alternating(start, [300, 350, 330, 1_050, 320, 990])
            assert edges[0][1] < 2**32 < edges[-1][1]  # the scenario crosses the wrap
            server.play(27, edges)
            server.watchdog_fire(27, 77)  # a marker: nothing may arrive before it
            expected = [(27, level, tick & MASK) for level, tick in edges]
            assert take(got, len(edges) + 1) == [*expected, (27, pigpio.TIMEOUT, 77)]
            assert server.tick == edges[-1][1] & MASK
        finally:
            pi.stop()


def test_watchdog_reports_timeout_after_silence(server: PigpioReplayServer, pi: Any) -> None:
    pi.set_watchdog(27, 20)
    got = collect(pi, 27)
    server.play(27, [(1, 1_000), (0, 1_500)])
    server.idle(45_000)  # silence from tick 1_500 to 46_500: timeouts at 21_500 and 41_500
    server.play(27, [(1, 50_000), (0, 50_400)])
    server.idle(19_000)  # not long enough for another timeout
    server.watchdog_fire(27, 99)
    assert take(got, 7) == [
        (27, 1, 1_000),
        (27, 0, 1_500),
        (27, pigpio.TIMEOUT, 21_500),
        (27, pigpio.TIMEOUT, 41_500),
        (27, 1, 50_000),
        (27, 0, 50_400),
        (27, pigpio.TIMEOUT, 99),
    ]
    pi.set_watchdog(27, 0)
    assert server.wait_for(lambda s: s.watchdog_ms(27) == 0, WAIT)


def test_a_bitmask_for_another_gpio_receives_nothing(server: PigpioReplayServer, pi: Any) -> None:
    got = collect(pi, 22)
    server.play(27, alternating(0, [100, 200, 300]))
    server.watchdog_fire(27, 700)
    server.play(22, [(1, 800)])
    assert take(got, 1) == [(22, 1, 800)]


def test_reports_carry_sequence_flags_tick_and_the_levels_of_all_gpios(
    server: PigpioReplayServer,
) -> None:
    control, notify, handle = raw_pair(server)
    with control, notify:
        server.set_level(5, 1)  # not watched, but its level shows in every report
        assert raw_command(control, NB, handle, 1 << 27) == 0
        server.play(27, [(1, 10), (1, 20), (0, 30)])  # the repeated level is no change
        server.watchdog_fire(27, 40)
        reports = [REPORT.unpack(recv_exact(notify, REPORT.size)) for _ in range(3)]
        assert reports == [
            (0, 0, 10, 1 << 5 | 1 << 27),
            (1, 0, 30, 1 << 5),
            (2, 0x20 | 27, 40, 1 << 5),
        ]
        assert raw_command(control, NB, handle + 1, 1) == pigpio.PI_BAD_HANDLE


def test_close_notification_from_the_client_is_seen(server: PigpioReplayServer) -> None:
    pi = connect(server)
    collect(pi, 27)
    assert server.subscribed(27)
    pi.stop()
    assert server.wait_for(lambda s: s.received(NC) == 1 and s.notify_handles() == {}, WAIT)


# -- gpiozero --------------------------------------------------------------------------------


def test_gpiozero_button_sees_levels_driven_from_the_server(server: PigpioReplayServer) -> None:
    # The line already reads high when the client connects (the pull-up of a previous run, or
    # an external one): pigpio's client takes its reference levels (BR1) at connect time, and a
    # change before the callback is registered (NB) is reported to nobody, so a line that only
    # went high with gpiozero's own pull-up would make the client miss the first press.
    server.set_level(17, 1)
    factory = PiGPIOFactory(host="127.0.0.1", port=server.port)
    try:
        button = Button(17, pin_factory=factory)  # pull-up: released reads high
        try:
            events: queue.Queue[str] = queue.Queue()
            button.when_pressed = lambda: events.put("pressed")
            button.when_released = lambda: events.put("released")
            assert not button.is_pressed
            server.set_level(17, 0)
            assert events.get(timeout=WAIT) == "pressed"
            assert button.is_pressed
            server.set_level(17, 1)
            assert events.get(timeout=WAIT) == "released"
            assert not button.is_pressed
        finally:
            button.close()
    finally:
        factory.close()
    assert server.wait_for(lambda s: s.notify_handles() == {}, WAIT)


# -- robustness ------------------------------------------------------------------------------


def test_clients_vanishing_mid_stream_do_not_hurt_the_server(server: PigpioReplayServer) -> None:
    control, notify, handle = raw_pair(server)
    with control:
        assert raw_command(control, NB, handle, 1 << 27) == 0
        notify.close()  # gone without NC, while reports are flowing
        server.play(27, alternating(0, [50] * 2_000))
    half = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    half.sendall(CMD.pack(TICK, 0, 0, 0)[:7])  # half a command, then gone
    half.close()
    assert server.wait_for(lambda s: s.notify_handles() == {}, WAIT)
    pi = connect(server)
    try:
        got = collect(pi, 27)
        server.play(27, [(1, server.tick + 10)])
        assert take(got, 1) == [(27, 1, server.tick)]
    finally:
        pi.stop()


def test_stop_closes_every_socket_and_is_idempotent() -> None:
    server = PigpioReplayServer()
    server.start()
    port = server.port
    control, notify, _ = raw_pair(server)
    with control, notify:
        server.stop()
        for sock in (control, notify):
            ready, _, _ = select.select([sock], [], [], WAIT)
            assert ready
            assert sock.recv(16) == b""
        server.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()


def test_play_rejects_ticks_going_backwards(server: PigpioReplayServer) -> None:
    server.play(27, [(1, 5_000)])
    with pytest.raises(ValueError, match="before the current tick"):
        server.play(27, [(0, 4_000)])


# -- the .ook demo tool ------------------------------------------------------------------------

OOK = """;pulse data
;version 1
;timescale 1us
;ook 3 pulses
300 900
900 300
300 9000
;end
;ook 2 pulses
400 800
400 9600
;end
"""


def test_parse_ook_reads_packets_and_timescale() -> None:
    assert parse_ook(OOK) == [[(300, 900), (900, 300), (300, 9000)], [(400, 800), (400, 9600)]]
    assert parse_ook(";pulse data\n;timescale 10us\n3 9\n") == [[(30, 90)]]
    with pytest.raises(ValueError, match="line 3"):
        parse_ook(";pulse data\n1 2\nthree 4\n")
    with pytest.raises(ValueError, match="pulse data"):
        parse_ook("1 2\n")


def test_pulses_to_edges_rise_then_fall_and_wrap() -> None:
    edges, end = pulses_to_edges([(300, 900), (900, 300)], 2**32 - 500)
    assert edges == [(1, 2**32 - 500), (0, 2**32 - 200), (1, 700), (0, 1_600)]
    assert end == 2**32 - 500 + 2_400


def test_cli_replays_an_ook_file_to_the_client_that_subscribes(tmp_path: Path) -> None:
    capture = tmp_path / "remote.ook"
    capture.write_text(OOK)
    args = ["--gpio", "27", "--port", "0", "--pause-ms", "30", "--once"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hardware.pigpio_replay", str(capture), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "the replay tool printed nothing"
        port = int(proc.stdout.readline().split(":")[-1].split()[0])
        pi = pigpio.pi("127.0.0.1", port, show_errors=False)
        assert pi.connected
        try:
            pi.set_watchdog(27, 20)
            got = collect(pi, 27)
            # the expectation, from the file: packet 1 starts at tick 0 and lasts 11_700 µs, then
            # 30 ms of pause; packet 2 starts right after; 20 ms after each last fall a timeout
            first, end1 = pulses_to_edges([(300, 900), (900, 300), (300, 9000)], 0)
            second, _ = pulses_to_edges([(400, 800), (400, 9600)], end1 + 30_000)
            expected = [(27, level, tick) for level, tick in first]
            expected.append((27, pigpio.TIMEOUT, first[-1][1] + 20_000))
            expected += [(27, level, tick) for level, tick in second]
            expected.append((27, pigpio.TIMEOUT, second[-1][1] + 20_000))
            assert take(got, len(expected)) == expected
        finally:
            pi.stop()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
