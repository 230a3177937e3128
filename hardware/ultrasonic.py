"""HC-SR04 ultrasonic ranger: one reading per cycle, timed on gpiozero pins.

Rules:

- Every ``interval_s`` (at least 0.06 s, the sensor's shortest measurement cycle, kept between
  two trigger pulses even when a ping runs late) the driver sends a trigger pulse of at least
  10 µs and measures how long the echo pin stays high. It reports one :class:`Distance` per
  cycle, stamped with the injected clock when the reading is complete (up to one echo timeout
  after the ping), so events enter the daemon's queue in time order. No smoothing here: the
  daemon filters.
- ``Distance(None)`` when no usable echo came back: the echo pin never rose or fell within the
  timeout (the round trip at ``max_distance_m`` plus :data:`ECHO_SLACK_S`), was still high from
  the previous ping, or the distance is outside the valid range (2 cm up to ``max_distance_m``,
  at most 4 m). An HC-SR04 that hears nothing holds its echo high for about 38 ms, which reads
  as about 6.5 m and so falls outside the range.
- Physics, as pure functions: the speed of sound is 331.3 * sqrt(1 + T/273.15) m/s at T °C,
  distance = echo time * speed / 2.
- The echo width comes from the pin factory's own edge ticks (``Factory.ticks_diff``): pigpio
  and lgpio stamp edges at the source (daemon or kernel), which is as precise as this hardware
  allows; the other factories stamp at callback time.
- If the GPIO fails during a cycle, the driver reports a :class:`DeviceFault` and its thread ends.

Why not gpiozero's ``DistanceSensor``: it smooths readings (median of 9 by default) in its own
sampling thread, so the first value takes about 0.6 s and no reading is one cycle; a missing echo
is dropped or clamped to ``max_distance`` rather than reported, so "no echo" cannot be told apart
from "far away"; it uses a fixed 343.26 m/s (no temperature); and it signals trouble with
warnings (it warns on every factory but pigpio). Own timing on two gpiozero devices is a few lines
and keeps gpiozero's pin handling and every factory.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from gpiozero import Factory, InputDevice, OutputDevice

from hardware._api import DeviceFault, Distance, EventSink
from hardware._errors import HardwareError

MIN_RANGE_M = 0.02
MAX_RANGE_M = 4.0
MIN_INTERVAL_S = 0.06
TRIGGER_PULSE_S = 10e-6
#: Waiting time beyond the round trip at max range: the sensor's delay before raising the echo
#: (its 40 kHz burst takes 0.2 ms) plus callback latency.
ECHO_SLACK_S = 0.02


def speed_of_sound(temperature_c: float) -> float:
    """Speed of sound in dry air (m/s) at ``temperature_c`` degrees Celsius."""
    return 331.3 * math.sqrt(1.0 + temperature_c / 273.15)


def echo_to_distance(echo_s: float, temperature_c: float) -> float:
    """Distance (m) to the reflector for an echo pulse of ``echo_s`` seconds (a round trip)."""
    return echo_s * speed_of_sound(temperature_c) / 2.0


def next_ping_time(due: float, last_trigger: float, now: float, interval_s: float) -> float:
    """When the next ping is due (monotonic seconds).

    One ``interval_s`` after the previous due time, so a slightly late ping does not shift the
    schedule; if that is already past, now (a stalled thread does not catch up in a burst); and
    never sooner than :data:`MIN_INTERVAL_S` after the last trigger pulse.
    """
    return max(due + interval_s, now, last_trigger + MIN_INTERVAL_S)


def valid_distance(meters: float, max_distance_m: float = MAX_RANGE_M) -> float | None:
    """``meters`` if the sensor can measure it (2 cm up to ``max_distance_m``), else None."""
    return meters if MIN_RANGE_M <= meters <= max_distance_m else None


class UltrasonicRanger:
    """An HC-SR04 on a trigger and an echo pin (implements RangeSensor)."""

    def __init__(
        self,
        trigger_pin: int,
        echo_pin: int,
        *,
        interval_s: float = 0.1,
        temperature_c: float = 20.0,
        max_distance_m: float = MAX_RANGE_M,
        pin_factory: Factory,
        clock: Callable[[], int] = time.monotonic_ns,
        name: str = "ranger",
    ) -> None:
        if interval_s < MIN_INTERVAL_S:
            raise ValueError(
                f"ultrasonic interval_s={interval_s} is too short: the HC-SR04 needs at least "
                f"{MIN_INTERVAL_S} s per measurement cycle"
            )
        if not MIN_RANGE_M < max_distance_m <= MAX_RANGE_M:
            raise ValueError(
                f"ultrasonic max_distance_m={max_distance_m} must be within "
                f"({MIN_RANGE_M}, {MAX_RANGE_M}] m"
            )
        self.name = name
        self.trigger_pin = trigger_pin
        self.echo_pin = echo_pin
        self.interval_s = interval_s
        self.temperature_c = temperature_c
        self.max_distance_m = max_distance_m
        self.timeout_s = 2.0 * max_distance_m / speed_of_sound(temperature_c) + ECHO_SLACK_S
        self._factory = pin_factory
        self._clock = clock
        self._trigger: OutputDevice | None = None
        self._echo: InputDevice | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._armed = False
        self._last_trigger = -math.inf  # monotonic seconds of the last trigger pulse
        self._rise: object = None  # factory ticks of the echo edges of the current ping
        self._fall: object = None
        self._fell = threading.Event()

    def start(self, sink: EventSink) -> None:
        """Claim both pins and start pinging from a driver thread."""
        if self._thread is not None:
            raise RuntimeError(f"ranger {self.name!r} is already started")
        try:
            self._trigger = OutputDevice(
                self.trigger_pin, initial_value=False, pin_factory=self._factory
            )
            self._echo = InputDevice(self.echo_pin, pull_up=False, pin_factory=self._factory)
            self._echo.pin.edges = "both"
            self._echo.pin.bounce = None
            self._echo.pin.when_changed = self._on_echo
        except Exception as exc:
            self._close_devices()
            raise HardwareError(
                f"ranger {self.name!r} cannot open trigger GPIO{self.trigger_pin} / echo "
                f"GPIO{self.echo_pin} ({type(exc).__name__}: {exc}): check the pin numbers "
                "and that nothing else uses them"
            ) from exc
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(sink,), name=f"ultrasonic-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop pinging, join the thread and release the pins; safe to call more than once."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self.interval_s + self.timeout_s + 1.0)
        self._close_devices()

    def _close_devices(self) -> None:
        echo, self._echo = self._echo, None
        trigger, self._trigger = self._trigger, None
        if echo is not None:
            echo.pin.when_changed = None
            echo.close()
        if trigger is not None:
            trigger.close()

    def _run(self, sink: EventSink) -> None:
        due = time.monotonic()
        while not self._stopping.is_set():
            try:
                meters = self._ping()
            except Exception as exc:  # noqa: BLE001 - a ranger fault is reported, ranging goes on
                if not self._stopping.is_set():
                    detail = f"ultrasonic ping failed ({type(exc).__name__}: {exc})"
                    sink(DeviceFault(self.name, False, detail, self._clock()))
                return
            sink(Distance(meters, self._clock()))
            now = time.monotonic()
            due = next_ping_time(due, self._last_trigger, now, self.interval_s)
            self._stopping.wait(due - now)

    def _ping(self) -> float | None:
        trigger, echo = self._trigger, self._echo
        if trigger is None or echo is None:
            raise RuntimeError("the ranger is not started")
        if echo.pin.state:
            return None  # still high from the previous ping: the sensor ignores a trigger now
        with self._lock:
            self._rise = self._fall = None
            self._fell.clear()
            self._armed = True
        self._last_trigger = time.monotonic()
        trigger.on()
        time.sleep(TRIGGER_PULSE_S)
        trigger.off()
        self._fell.wait(self.timeout_s)
        with self._lock:
            self._armed = False
            rise, fall = self._rise, self._fall
        if rise is None or fall is None:
            return None
        echo_s = float(self._factory.ticks_diff(fall, rise))
        return valid_distance(echo_to_distance(echo_s, self.temperature_c), self.max_distance_m)

    def _on_echo(self, ticks: object, state: int) -> None:
        with self._lock:
            if not self._armed:
                return
            if state:
                if self._fall is None:
                    self._rise = ticks
            elif self._rise is not None and self._fall is None:
                self._fall = ticks
                self._fell.set()
