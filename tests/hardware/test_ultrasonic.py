"""HC-SR04 driver: exact physics as pure functions, the driver through gpiozero's mock pins."""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPin, MockTriggerPin
from gpiozero.pins.pi import PiPin

from hardware._api import DeviceFault, Distance, HardwareEvent, RangeSensor
from hardware._errors import HardwareError
from hardware.ultrasonic import (
    MIN_INTERVAL_S,
    UltrasonicRanger,
    echo_to_distance,
    next_ping_time,
    speed_of_sound,
    valid_distance,
)
from tests.hardware.conftest import scripted_clock
from tests.waiting import STALL_S

TRIG, ECHO = 23, 24
WAIT_S = STALL_S  # a bound for what should happen promptly: returns when it does


# --- physics ------------------------------------------------------------------------------


def test_speed_of_sound() -> None:
    assert speed_of_sound(0.0) == 331.3
    assert speed_of_sound(20.0) == pytest.approx(343.2, abs=0.1)  # the textbook value
    assert speed_of_sound(-273.15) == 0.0


def test_echo_to_distance_exact() -> None:
    # 10 ms round trip at 0 °C: 331.3 m/s * 0.01 s / 2
    assert echo_to_distance(0.01, 0.0) == pytest.approx(1.6565, rel=1e-12)
    for meters in (0.02, 0.5, 1.5, 4.0):
        for temperature in (-10.0, 20.0, 35.0):
            echo_s = 2 * meters / (331.3 * math.sqrt(1 + temperature / 273.15))
            assert echo_to_distance(echo_s, temperature) == pytest.approx(meters, rel=1e-12)


def test_warmer_air_reads_the_same_echo_farther() -> None:
    ratio = echo_to_distance(0.005, 35.0) / echo_to_distance(0.005, 0.0)
    assert ratio == pytest.approx(math.sqrt(308.15 / 273.15), rel=1e-12)


def test_next_ping_stays_on_the_grid_keeps_the_sensor_cycle_and_never_bursts() -> None:
    # on time: the next slot of the grid
    assert next_ping_time(10.0, last_trigger=10.001, now=10.04, interval_s=0.1) == 10.0 + 0.1
    # a ping 50 ms late: the grid holds, but the trigger pulses stay 60 ms apart
    assert next_ping_time(10.0, last_trigger=10.05, now=10.09, interval_s=0.1) == 10.05 + 0.06
    # a thread stalled for 2 s: start again now, no burst of catch-up pings
    assert next_ping_time(10.0, last_trigger=10.001, now=12.0, interval_s=0.1) == 12.0


def test_valid_range_is_2_cm_to_4_m() -> None:
    assert valid_distance(0.0199) is None
    assert valid_distance(0.02) == 0.02
    assert valid_distance(4.0) == 4.0
    assert valid_distance(4.0001) is None
    assert valid_distance(-1.0) is None
    assert valid_distance(1.2, max_distance_m=1.0) is None


# --- pins for the driver tests ---------------------------------------------------------------


class StampedEchoPin(MockPin):  # type: ignore[misc]
    """An echo pin whose edges carry chosen ticks (as lgpio's kernel timestamps would)."""

    def drive_at(self, state: bool, ticks: float) -> None:
        if self._change_state(state) and self._when_changed is not None:
            PiPin._call_when_changed(self, ticks, state)


class ChosenEchoTrigger(MockPin):  # type: ignore[misc]
    """A trigger pin answering each ping with an echo of exactly ``echo_s`` (or none)."""

    def __init__(
        self, factory: Any, info: Any, echo_pin: StampedEchoPin, echo_s: float | None
    ) -> None:
        super().__init__(factory, info)
        self.echo_pin = echo_pin
        self.echo_s = echo_s
        self.fall = True  # False: the echo rises and stays high
        self.ping_times: list[float] = []

    @property
    def pings(self) -> int:
        return len(self.ping_times)

    def _set_state(self, value: bool) -> None:
        super()._set_state(value)
        if value:
            self.ping_times.append(time.monotonic())
            if self.echo_s is not None:
                self.echo_pin.drive_at(True, 0.0)
                if self.fall:
                    self.echo_pin.drive_at(False, self.echo_s)


class BrokenTrigger(MockPin):  # type: ignore[misc]
    def _set_state(self, value: bool) -> None:
        if value:
            raise OSError("GPIO write failed")
        super()._set_state(value)


def chosen_echo(factory: MockFactory, echo_s: float | None) -> ChosenEchoTrigger:
    echo = factory.pin(ECHO, pin_class=StampedEchoPin)
    trigger: ChosenEchoTrigger = factory.pin(
        TRIG, pin_class=ChosenEchoTrigger, echo_pin=echo, echo_s=echo_s
    )
    return trigger


@pytest.fixture
def rangers(mock_factory: MockFactory) -> Iterator[list[UltrasonicRanger]]:
    """Rangers a test started; stopped before the mock factory is reset."""
    started: list[UltrasonicRanger] = []
    yield started
    for ranger in started:
        ranger.stop()


def run(rangers: list[UltrasonicRanger], ranger: UltrasonicRanger) -> queue.Queue[HardwareEvent]:
    events: queue.Queue[HardwareEvent] = queue.Queue()
    ranger.start(events.put)
    rangers.append(ranger)
    return events


def take(events: queue.Queue[HardwareEvent], n: int) -> list[HardwareEvent]:
    return [events.get(timeout=WAIT_S) for _ in range(n)]


def meters(events: list[HardwareEvent]) -> list[float | None]:
    assert all(isinstance(e, Distance) for e in events)
    return [e.meters for e in events if isinstance(e, Distance)]


# --- the driver --------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, 35.0])
def test_chosen_echo_width_gives_the_exact_distance_and_clock_stamps(
    mock_factory: MockFactory, rangers: list[UltrasonicRanger], temperature: float
) -> None:
    chosen_echo(mock_factory, echo_s=0.007)
    clock = itertools.count(111, 111).__next__  # the thread may stamp more before stop()
    ranger = UltrasonicRanger(
        TRIG,
        ECHO,
        interval_s=0.06,
        temperature_c=temperature,
        pin_factory=mock_factory,
        clock=clock,
    )
    got = take(run(rangers, ranger), 2)
    ranger.stop()
    expected = 331.3 * math.sqrt(1 + temperature / 273.15) * 0.007 / 2
    assert [e.t_ns for e in got if isinstance(e, Distance)] == [111, 222]
    assert meters(got) == [pytest.approx(expected, rel=1e-12)] * 2


@pytest.mark.parametrize(
    ("echo_s", "max_distance_m"),
    [
        (0.038, 4.0),  # HC-SR04 with nothing in front: a ~38 ms pulse, ~6.5 m
        (0.00005, 4.0),  # 0.86 cm: closer than the sensor can measure
        (2 * 1.5 / 343.42, 1.0),  # 1.5 m, beyond the configured maximum
    ],
)
def test_out_of_range_echoes_read_none(
    mock_factory: MockFactory,
    rangers: list[UltrasonicRanger],
    echo_s: float,
    max_distance_m: float,
) -> None:
    chosen_echo(mock_factory, echo_s)
    ranger = UltrasonicRanger(
        TRIG, ECHO, interval_s=0.06, max_distance_m=max_distance_m, pin_factory=mock_factory
    )
    assert meters(take(run(rangers, ranger), 1)) == [None]


@pytest.mark.parametrize("distance", [0.5, 1.5])
def test_gpiozero_mock_trigger_pin_reads_within_tolerance(
    mock_factory: MockFactory, rangers: list[UltrasonicRanger], distance: float
) -> None:
    echo = mock_factory.pin(ECHO)
    mock_factory.pin(
        TRIG, pin_class=MockTriggerPin, echo_pin=echo, echo_time=2 * distance / speed_of_sound(20)
    )
    ranger = UltrasonicRanger(TRIG, ECHO, interval_s=0.06, pin_factory=mock_factory)
    events = run(rangers, ranger)
    # The mock times the echo with sleep(), which only overshoots, by more on a busy machine:
    # a reading may be high or (echo later than the timeout) missing, never low. Read until one
    # is as accurate as the driver itself (up to 20 cycles, 1.2 s).
    readings: list[float] = []
    while len(readings) < 20 and not (readings and readings[-1] <= distance + 0.05):
        (reading,) = meters(take(events, 1))
        readings.append(math.inf if reading is None else reading)
    assert readings[-1] <= distance + 0.05, readings
    assert min(readings) >= distance - 0.01, readings


def test_no_echo_reads_none_after_the_timeout(
    mock_factory: MockFactory, rangers: list[UltrasonicRanger]
) -> None:
    chosen_echo(mock_factory, echo_s=None)  # the echo pin never rises
    ranger = UltrasonicRanger(TRIG, ECHO, interval_s=0.06, pin_factory=mock_factory)
    started = time.monotonic()
    got = take(run(rangers, ranger), 1)
    elapsed = time.monotonic() - started
    assert meters(got) == [None]
    assert elapsed >= ranger.timeout_s
    assert ranger.timeout_s == pytest.approx(2 * 4.0 / speed_of_sound(20.0) + 0.02)


def test_an_echo_still_high_skips_the_ping(
    mock_factory: MockFactory, rangers: list[UltrasonicRanger]
) -> None:
    trigger = chosen_echo(mock_factory, echo_s=0.005)
    trigger.fall = False  # the first echo never ends
    ranger = UltrasonicRanger(TRIG, ECHO, interval_s=0.06, pin_factory=mock_factory)
    events = run(rangers, ranger)
    assert meters(take(events, 2)) == [None, None]
    assert trigger.pings == 1  # the second cycle saw the echo high and did not trigger


def test_pings_keep_the_interval_without_bursts(
    mock_factory: MockFactory, rangers: list[UltrasonicRanger]
) -> None:
    trigger = chosen_echo(mock_factory, echo_s=0.005)
    ranger = UltrasonicRanger(TRIG, ECHO, interval_s=0.08, pin_factory=mock_factory)
    started = time.monotonic()
    take(run(rangers, ranger), 4)
    assert trigger.pings >= 4
    assert trigger.ping_times[3] - started >= 3 * 0.08 - 0.001  # each due time is on the grid


def test_interval_below_the_sensor_cycle_is_refused(mock_factory: MockFactory) -> None:
    with pytest.raises(ValueError, match=r"interval_s=0.05 is too short.*0.06"):
        UltrasonicRanger(TRIG, ECHO, interval_s=0.05, pin_factory=mock_factory)
    assert UltrasonicRanger(TRIG, ECHO, interval_s=MIN_INTERVAL_S, pin_factory=mock_factory)
    with pytest.raises(ValueError, match=r"max_distance_m=4\.5"):
        UltrasonicRanger(TRIG, ECHO, max_distance_m=4.5, pin_factory=mock_factory)


def test_stop_joins_the_thread_and_releases_the_pins(
    mock_factory: MockFactory, rangers: list[UltrasonicRanger]
) -> None:
    trigger = chosen_echo(mock_factory, echo_s=0.005)
    first = UltrasonicRanger(TRIG, ECHO, interval_s=0.06, pin_factory=mock_factory, name="one")
    take(run(rangers, first), 1)
    first.stop()
    first.stop()
    assert "ultrasonic-one" not in {t.name for t in threading.enumerate()}
    pings = trigger.pings
    second = UltrasonicRanger(TRIG, ECHO, interval_s=0.06, pin_factory=mock_factory, name="two")
    assert meters(take(run(rangers, second), 1)) == [pytest.approx(echo_to_distance(0.005, 20))]
    assert trigger.pings == pings + 1


def test_a_pin_in_use_gives_a_clear_error_and_leaves_nothing_claimed(
    mock_factory: MockFactory, rangers: list[UltrasonicRanger]
) -> None:
    chosen_echo(mock_factory, echo_s=0.005)
    run(rangers, UltrasonicRanger(TRIG, ECHO, pin_factory=mock_factory))
    other = UltrasonicRanger(25, ECHO, pin_factory=mock_factory, name="other")
    with pytest.raises(
        HardwareError, match=r"ranger 'other' cannot open trigger GPIO25 / echo GPIO24 \(GPIOPin"
    ):
        other.start(lambda event: None)
    # the trigger claimed before the echo failed was released: another ranger can take it
    run(rangers, UltrasonicRanger(25, 26, pin_factory=mock_factory, name="third"))


def test_a_gpio_failure_is_reported_as_a_fault(
    mock_factory: MockFactory, rangers: list[UltrasonicRanger]
) -> None:
    mock_factory.pin(TRIG, pin_class=BrokenTrigger)
    ranger = UltrasonicRanger(TRIG, ECHO, pin_factory=mock_factory, clock=scripted_clock(42))
    (event,) = take(run(rangers, ranger), 1)
    assert isinstance(event, DeviceFault)
    assert (event.part, event.ok, event.t_ns) == ("ranger", False, 42)
    assert "OSError: GPIO write failed" in event.detail


def test_ranger_is_a_range_sensor(mock_factory: MockFactory) -> None:
    ranger: RangeSensor = UltrasonicRanger(TRIG, ECHO, pin_factory=mock_factory)
    assert ranger.interval_s == 0.1
