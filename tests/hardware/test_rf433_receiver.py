"""Rf433Receiver end to end: the real pigpio client against the pigpiod look-alike on loopback.

Signals come from the simulated remote (hardware._remote); every wait is bounded.
"""

from __future__ import annotations

import itertools
import queue
import socket
from collections.abc import Iterator

import pigpio
import pytest

from hardware._api import Device, HardwareEvent, RadioEdge
from hardware._errors import HardwareError
from hardware._remote import ev1527, to_edges
from hardware.pigpio_replay import INPUT, NC, PigpioReplayServer
from hardware.rf433 import Rf433Receiver
from tests.waiting import STALL_S

WAIT = STALL_S  # a bound for what should happen promptly: returns when it does
MASK = 0xFFFFFFFF
GPIO = 27


@pytest.fixture
def server() -> Iterator[PigpioReplayServer]:
    with PigpioReplayServer(start_tick=2**32 - 30_000) as srv:
        yield srv


def receiver_for(
    server: PigpioReplayServer, watchdog_ms: int = 20, glitch_us: int = 0
) -> Rf433Receiver:
    """A receiver on the server whose clock stamps 1000, 1001, ... in callback order."""
    counter = itertools.count(1_000)
    return Rf433Receiver(
        GPIO,
        host="127.0.0.1",
        port=server.port,
        watchdog_ms=watchdog_ms,
        glitch_us=glitch_us,
        clock=lambda: next(counter),
    )


def test_ev1527_burst_arrives_as_exact_edges_then_a_watchdog(
    server: PigpioReplayServer,
) -> None:
    got: queue.Queue[HardwareEvent] = queue.Queue()
    receiver = receiver_for(server, watchdog_ms=20, glitch_us=80)
    receiver.start(got.put)
    try:
        # start() returns after the daemon acknowledged the whole setup
        assert server.mode(GPIO) == INPUT
        assert server.glitch_us(GPIO) == 80
        assert server.watchdog_ms(GPIO) == 20
        assert server.subscribed(GPIO)

        pulses = ev1527(0x5A3C1, 0x9, pulse_us=320, repeats=3)
        edges = to_edges(pulses, server.tick + 1_000)
        assert any(b[1] < a[1] for a, b in itertools.pairwise(edges))  # the burst wraps 2**32
        server.play(GPIO, edges)
        server.idle(25_000)  # silence after the last fall: one 20 ms watchdog

        expected = [
            RadioEdge(GPIO, level, tick, 1_000 + i) for i, (level, tick) in enumerate(edges)
        ]
        watchdog_tick = (edges[-1][1] + 20_000) & MASK
        expected.append(RadioEdge(GPIO, pigpio.TIMEOUT, watchdog_tick, 1_000 + len(edges)))
        assert [got.get(timeout=WAIT) for _ in expected] == expected
    finally:
        receiver.stop()


def test_no_daemon_at_the_port_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:  # bound, not listening: connections are refused
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        receiver = Rf433Receiver(GPIO, host="127.0.0.1", port=port)
        with pytest.raises(HardwareError, match=rf"127\.0\.0\.1:{port}.*pigpiod"):
            receiver.start(lambda event: None)
    assert capsys.readouterr().out == ""  # no pigpio banner on stdout
    receiver.stop()  # never started: nothing to do


def test_stop_is_idempotent_and_closes_the_notification(server: PigpioReplayServer) -> None:
    got: queue.Queue[HardwareEvent] = queue.Queue()
    receiver = receiver_for(server)
    receiver.start(got.put)
    receiver.stop()
    receiver.stop()
    assert server.wait_for(
        lambda s: s.received(NC) == 1 and s.notify_handles() == {} and s.watchdog_ms(GPIO) == 0,
        WAIT,
    )
    assert not server.subscribed(GPIO)  # so no edge can reach the sink any more
    server.play(GPIO, [(1, server.tick + 10)])
    # and it can be started again; the first edge it reports is the first after the restart
    receiver.start(got.put)
    try:
        server.play(GPIO, [(0, server.tick + 10)])
        assert got.get(timeout=WAIT) == RadioEdge(GPIO, 0, server.tick, 1_000)
    finally:
        receiver.stop()


def test_stop_after_the_daemon_went_away_does_not_raise() -> None:
    server = PigpioReplayServer()
    server.start()
    receiver = receiver_for(server)
    receiver.start(lambda event: None)
    server.stop()
    receiver.stop()


def test_is_a_device_and_validates_its_settings() -> None:
    assert isinstance(Rf433Receiver(GPIO), Device)
    with pytest.raises(ValueError, match="gpio"):
        Rf433Receiver(40)
    with pytest.raises(ValueError, match="watchdog_ms"):
        Rf433Receiver(GPIO, watchdog_ms=60_001)
    with pytest.raises(ValueError, match="glitch_us"):
        Rf433Receiver(GPIO, glitch_us=-1)
