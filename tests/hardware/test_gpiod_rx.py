"""GpiodRf433Receiver against recorded timings replayed as real ``gpiod.EdgeEvent`` objects.

The kernel's gpio-sim is not available here, so ``hardware.gpiod_replay`` stands behind the
``request_lines`` boundary: the receiver's own code finds the line, requests it, reads events in
batches and checks their sequence numbers exactly as on a Pi. Every wait is bounded.
"""

from __future__ import annotations

import queue
import sys
from collections.abc import Iterator
from datetime import timedelta

import gpiod
import pytest
from gpiod.line import Bias, Clock, Direction, Edge

from edge.radio import Decoder
from hardware import _remote as remote
from hardware._api import DeviceFault, HardwareEvent, RadioEdge
from hardware._errors import HardwareError
from hardware.gpiod_replay import GpiodReplay, pi4_chips, pi5_chips, pulses_to_edges_ns
from hardware.gpiod_rx import (
    CONSUMER,
    EVENT_BUFFER,
    GpiodRf433Receiver,
    find_line,
    header_chip,
    import_gpiod,
)

WAIT = 5.0
GPIO = 27
MASK = 0xFFFFFFFF
MS = 1_000_000


class Events:
    """The sink: events in arrival order, with bounded waits."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[HardwareEvent] = queue.SimpleQueue()
        self.got: list[HardwareEvent] = []

    def __call__(self, event: HardwareEvent) -> None:
        self.queue.put(event)

    def take(self, count: int) -> list[HardwareEvent]:
        out = [self.queue.get(timeout=WAIT) for _ in range(count)]
        self.got += out
        return out

    def radio(self, count: int) -> list[RadioEdge]:
        out = self.take(count)
        assert all(isinstance(e, RadioEdge) for e in out), out
        return [e for e in out if isinstance(e, RadioEdge)]

    def none_within(self, seconds: float) -> bool:
        try:
            self.got.append(self.queue.get(timeout=seconds))
        except queue.Empty:
            return True
        return False


@pytest.fixture
def replay() -> GpiodReplay:
    return GpiodReplay(pi4_chips())


@pytest.fixture
def receiver(replay: GpiodReplay) -> Iterator[GpiodRf433Receiver]:
    rx = GpiodRf433Receiver(GPIO, watchdog_ms=20, access=replay, clock=lambda: 7)
    yield rx
    rx.stop()


def expected_edges(edges: list[tuple[int, int]]) -> list[RadioEdge]:
    return [RadioEdge(GPIO, level, (t // 1000) & MASK, t) for level, t in edges]


def test_the_line_is_requested_as_the_radio_needs_it(
    replay: GpiodReplay, receiver: GpiodRf433Receiver
) -> None:
    receiver.start(Events())
    (request,) = replay.requests
    assert (request.path, request.offset) == ("/dev/gpiochip0", 27)
    settings = request.settings
    assert isinstance(settings, gpiod.LineSettings)
    assert settings.direction == Direction.INPUT
    assert settings.edge_detection == Edge.BOTH
    assert settings.bias == Bias.DISABLED  # no pull: the receiver drives DATA
    assert settings.debounce_period == timedelta(0)  # never the kernel's debounce on the radio
    assert settings.event_clock == Clock.MONOTONIC
    assert (request.buffer_size, request.consumer) == (EVENT_BUFFER, CONSUMER)


@pytest.mark.parametrize(
    ("chips", "where"),
    [
        (pi4_chips(), ("/dev/gpiochip0", 27)),
        (pi5_chips(new_kernel=True), ("/dev/gpiochip0", 27)),
        (pi5_chips(new_kernel=False), ("/dev/gpiochip4", 27)),
    ],
    ids=["pi4", "pi5-new-kernel", "pi5-old-kernel"],
)
def test_the_line_is_found_by_name_whatever_the_chip_numbering(
    chips: dict[str, list[str]], where: tuple[str, int]
) -> None:
    replay = GpiodReplay(chips)
    assert find_line(replay, GPIO) == where
    # the header chip for gpiozero's lgpio factory, by the same names
    assert header_chip(replay) == int(where[0].removeprefix("/dev/gpiochip"))


def test_a_pin_named_by_its_function_is_found_on_the_header_chip() -> None:
    # BCM 8 is "SPI_CE0_N" on a Pi 4: the header chip (lines named GPIO<offset>) has it at 8
    assert find_line(GpiodReplay(pi4_chips()), 8) == ("/dev/gpiochip0", 8)


def test_no_such_line_is_a_clear_error() -> None:
    replay = GpiodReplay({"/dev/gpiochip0": ["a", "b"], "/dev/gpiochip1": ["c"]})
    with pytest.raises(HardwareError, match=r"GPIO27.*gpiochip0 \(2 lines\).*gpiochip1.*'gpio'"):
        find_line(replay, GPIO)
    assert header_chip(replay) is None
    with pytest.raises(HardwareError, match="none found"):
        find_line(GpiodReplay({}), GPIO)


def test_edges_carry_the_kernels_timestamps_and_a_quiet_line_is_reported(
    replay: GpiodReplay, receiver: GpiodRf433Receiver
) -> None:
    events = Events()
    receiver.start(events)
    start = (1 << 32) * 1000 - 30 * MS  # the 32-bit µs tick wraps inside the burst
    replay.idle(start - replay.now_ns)
    edges = pulses_to_edges_ns(remote.ev1527(0x5A3C1, 0x9, 320, repeats=3), start)
    replay.play(edges)
    assert events.radio(len(edges)) == expected_edges(edges)
    assert any(e.tick_us < 1000 for e in events.got if isinstance(e, RadioEdge))  # wrapped
    replay.idle(5 * MS)  # quiet, but not for 20 ms yet
    assert events.none_within(0.2)
    replay.idle(30 * MS)
    watchdog = edges[-1][1] + 20 * MS
    assert events.radio(1) == [RadioEdge(GPIO, 2, (watchdog // 1000) & MASK, watchdog)]
    replay.idle(500 * MS)  # once per silence
    assert events.none_within(0.2)
    assert receiver.lost_edges == 0


def test_a_silence_read_late_is_reported_before_the_edge_that_ended_it(
    replay: GpiodReplay, receiver: GpiodRf433Receiver
) -> None:
    events = Events()
    receiver.start(events)
    t0 = replay.now_ns + MS
    # both edges are in the buffer before the reader looks (a stalled reader)
    replay.play([(1, t0), (0, t0 + 300_000), (1, t0 + 50 * MS)], keep_up=False)
    got = events.radio(4)
    assert [(e.level, e.t_ns) for e in got] == [
        (1, t0),
        (0, t0 + 300_000),
        (2, t0 + 300_000 + 20 * MS),  # from the timestamps, not from when it was read
        (1, t0 + 50 * MS),
    ]


def test_a_buffer_overflow_is_counted_voids_the_frame_and_is_reported_once(
    replay: GpiodReplay, receiver: GpiodRf433Receiver
) -> None:
    events = Events()
    receiver.start(events)
    t0 = replay.now_ns + MS
    noise = pulses_to_edges_ns(remote.noise(1500, seed=4, min_us=50, max_us=300), t0)
    replay.play(noise, keep_up=False)  # 3000 edges into a buffer of 1024
    (request,) = replay.requests
    dropped = len(noise) - EVENT_BUFFER
    assert request.dropped == dropped
    got = events.take(2 + EVENT_BUFFER)
    lost, fault = got[0], got[1]
    survivors = noise[dropped:]
    assert lost == RadioEdge(GPIO, 3, (survivors[0][1] // 1000) & MASK, survivors[0][1])
    assert isinstance(fault, DeviceFault)
    assert not fault.ok
    assert fault.part == "rf433"
    assert f"lost {dropped} edges" in fault.detail
    assert got[2:] == expected_edges(survivors)
    assert receiver.lost_edges == dropped
    # a second overflow soon after adds to the count without another fault
    more = pulses_to_edges_ns(remote.noise(600, 5, 50, 300), survivors[-1][1] + MS)
    replay.play(more, keep_up=False)
    got = events.take(1 + EVENT_BUFFER)
    assert isinstance(got[0], RadioEdge), got[:3]
    assert got[0].level == 3, got[:3]
    assert not any(isinstance(e, DeviceFault) for e in got)
    assert receiver.lost_edges == dropped + len(more) - EVENT_BUFFER
    # a second of edges with none lost: the fault clears
    calm = pulses_to_edges_ns([(1000, 15_000)] * 70, more[-1][1] + MS)  # 1.1 s, no silence
    replay.play(calm)
    got = events.take(len(calm) + 1)
    back = [e for e in got if isinstance(e, DeviceFault)]
    assert len(back) == 1
    assert back[0].ok
    assert "no edge lost" in back[0].detail


def test_lost_edges_never_make_a_code_and_the_next_press_decodes(
    replay: GpiodReplay, receiver: GpiodRf433Receiver
) -> None:
    events = Events()
    receiver.start(events)
    t0 = replay.now_ns + MS
    press = pulses_to_edges_ns(remote.ev1527(0x13579, 0x4, 320, repeats=4), t0)
    # the reader stalls in the middle of the press: 1024 edges fit, the rest push out the oldest
    replay.play(press[:30])
    flood = pulses_to_edges_ns(remote.noise(600, 2, 40, 80), press[29][1] + 100_000)
    replay.play(flood, keep_up=False)
    replay.idle(50 * MS)
    second = pulses_to_edges_ns(remote.ev1527(0x2468A, 0x1, 320, repeats=4), replay.now_ns + MS)
    replay.play(second)
    replay.idle(50 * MS)
    decoder = Decoder()
    codes = []
    while True:
        try:
            event = events.queue.get(timeout=0.5)
        except queue.Empty:
            break
        if isinstance(event, RadioEdge):
            codes += [d.code for d in decoder.feed(event.level, event.tick_us, event.t_ns)]
    assert receiver.lost_edges > 0
    assert codes == [0x2468A1]


def test_a_line_already_in_use_is_a_clear_error(replay: GpiodReplay) -> None:
    first = GpiodRf433Receiver(GPIO, access=replay)
    first.start(Events())
    second = GpiodRf433Receiver(GPIO, access=replay)
    try:
        with pytest.raises(HardwareError, match=r"GPIO27 \(/dev/gpiochip0 line 27\).*another"):
            second.start(Events())
    finally:
        first.stop()
        second.stop()


def test_stop_releases_the_line_is_idempotent_and_it_starts_again(
    replay: GpiodReplay, receiver: GpiodRf433Receiver
) -> None:
    events = Events()
    receiver.start(events)
    receiver.stop()
    receiver.stop()
    assert all(r.released for r in replay.requests)
    receiver.start(events)
    t0 = replay.now_ns + MS
    replay.play([(1, t0)])
    assert events.radio(1) == [RadioEdge(GPIO, 1, (t0 // 1000) & MASK, t0)]
    assert len(replay.requests) == 2


def test_missing_bindings_are_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # the import itself fails
    with pytest.raises(HardwareError, match=r"contactpoint\[pi\].*rf433.backend = 'pigpio'"):
        import_gpiod()


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="gpio"):
        GpiodRf433Receiver(64)
    with pytest.raises(ValueError, match="watchdog_ms"):
        GpiodRf433Receiver(GPIO, watchdog_ms=-1)
