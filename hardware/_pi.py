"""The real-hardware backend: the devices a :class:`~hardware.BackendSpec` names, on real drivers.

Rules:

- ONE gpiozero pin factory (:func:`~hardware.gpio.make_pin_factory`) serves every wired button
  and the ultrasonic ranger. It is made only when one of them is configured, and closed by
  :meth:`LiveBackend.stop` after the devices on it.
- Settings a driver refuses (``ValueError``: a rate, an interval, a pin out of range) and an
  unknown pin factory are configuration errors: :func:`open_pi` raises :class:`HardwareError`
  naming the part. Hardware that is missing or broken is not an error: it becomes a
  :class:`DeviceFault` and the rest keeps running.
- The microphone is ALSA's, or a network stream (:mod:`hardware.netaudio`, PyAV imported only
  then) when ``audio.device`` is a URL; a URL this build cannot read is a configuration error.
- A pin factory that cannot be opened (no GPIO chip, pigpiod not running) disables only the parts
  on it; each gets a fault. So does a button without a pin.
- The 433 MHz receiver is read by its own backend, ``spec.rf433.backend``: ``gpiod``
  (:class:`~hardware.gpiod_rx.GpiodRf433Receiver`, the kernel's edge timestamps; the default)
  or ``pigpio`` (:class:`~hardware.rf433.Rf433Receiver`, pigpiod's callbacks). Another name is a
  configuration error.
- :meth:`LiveBackend.start` reports those faults into the sink first, then starts every device in
  inventory order (buttons, radio pins, serial/nRF24 receivers, ranger, microphone). A device
  whose ``start()`` raises is stopped again, reported as ``DeviceFault(part, ok=False, detail,
  t_ns)`` and listed in ``faults``; the others start regardless. Devices that retry by themselves
  (microphone, RFLink) report their own outages from their threads and never raise here.
- :meth:`LiveBackend.stop` stops the started devices in reverse order (one that raises is logged
  and the rest still stop), then closes the pin factory. Idempotent.
- A driver's module (and its library: gpiozero, alsaaudio, pigpio, pyserial) is imported only
  when a configured part needs it, so a device loads the code of the parts it has, and a
  simulation none of them (issue #14, ``bench/memory.py``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hardware._api import AudioSource, Device, DeviceFault, EventSink, Inventory
from hardware._errors import HardwareError
from hardware._streamurl import is_stream_url, redact

if TYPE_CHECKING:
    from gpiozero import Factory

    from hardware import AudioSpec, BackendSpec

log = logging.getLogger(__name__)

Clock = Callable[[], int]


class LiveBackend:
    """Real devices, started together and stopped in reverse; failures reported, not raised."""

    def __init__(
        self,
        inventory: Inventory,
        *,
        pin_factory: Factory | None = None,
        unavailable: Iterable[tuple[str, str]] = (),
        clock: Clock = time.monotonic_ns,
    ) -> None:
        self.inventory = inventory
        self.pin_factory = pin_factory
        self.faults: list[DeviceFault] = []  # start failures, in the order they were reported
        self._unavailable = list(unavailable)  # (part, why) known before start
        self._clock = clock
        self._started: list[Device] = []
        self._state = "new"

    def start(self, sink: EventSink) -> None:
        """Start every device with ``sink``; report each one that cannot start (once only)."""
        if self._state != "new":
            raise RuntimeError(f"LiveBackend cannot start: it is {self._state}")
        self._state = "started"
        for part, why in self._unavailable:
            self._fault(sink, part, why)
        for device in self.inventory.all():
            try:
                device.start(sink)
            except Exception as exc:  # noqa: BLE001 - a part that fails to start is reported
                with contextlib.suppress(Exception):
                    device.stop()  # release whatever it claimed before failing
                detail = str(exc) if isinstance(exc, HardwareError) else _describe(exc)
                self._fault(sink, device.name, detail)
                continue
            self._started.append(device)

    def stop(self) -> None:
        """Stop the started devices in reverse order, then close the pin factory. Idempotent."""
        self._state = "stopped"
        started, self._started = self._started, []
        for device in reversed(started):
            try:
                device.stop()
            except Exception:
                log.exception("%s: stop failed", device.name)
        factory, self.pin_factory = self.pin_factory, None
        if factory is not None:
            try:
                factory.close()
            except Exception:
                log.exception("closing the GPIO pin factory failed")

    def _fault(self, sink: EventSink, part: str, detail: str) -> None:
        log.warning("%s: %s", part, detail)
        fault = DeviceFault(part, False, detail, self._clock())
        self.faults.append(fault)
        sink(fault)


def open_pi(spec: BackendSpec, *, clock: Clock = time.monotonic_ns) -> LiveBackend:
    """Build (not start) the real devices ``spec`` names."""
    unavailable: list[tuple[str, str]] = []
    factory: Factory | None = None
    gpio_parts = [b.name for b in spec.buttons if b.pin is not None]
    if spec.ranger is not None:
        gpio_parts.append("ranger")
    if gpio_parts:
        from hardware import gpio

        if spec.pin_factory not in gpio.FACTORY_NAMES:
            names = ", ".join(gpio.FACTORY_NAMES)
            raise HardwareError(f"unknown pin factory {spec.pin_factory!r}: choose one of {names}")
        try:
            factory = gpio.make_pin_factory(
                spec.pin_factory,
                pigpio_host=spec.pigpio_host,
                pigpio_port=spec.pigpio_port,
            )
        except HardwareError as exc:
            unavailable.extend((part, str(exc)) for part in gpio_parts)
    try:
        inventory = _inventory(spec, factory, unavailable, clock)
    except BaseException:
        if factory is not None:
            factory.close()
        raise
    return LiveBackend(inventory, pin_factory=factory, unavailable=unavailable, clock=clock)


def _inventory(
    spec: BackendSpec, factory: Factory | None, unavailable: list[tuple[str, str]], clock: Clock
) -> Inventory:
    inventory = Inventory()
    for button in spec.buttons:
        if button.pin is None:
            unavailable.append((button.name, "no GPIO pin configured for this button"))
        elif factory is not None:
            from hardware.gpio import GpioButton

            with _configuring(button.name):
                inventory.buttons.append(
                    GpioButton(
                        button.name,
                        button.pin,
                        pull_up=button.pull_up,
                        active_high=button.active_high,
                        pin_factory=factory,
                        clock=clock,
                    )
                )
    if spec.rf433 is not None:
        radio = spec.rf433
        with _configuring("rf433"):
            if radio.backend == "gpiod":
                from hardware.gpiod_rx import GpiodRf433Receiver

                inventory.edges.append(
                    GpiodRf433Receiver(radio.gpio, watchdog_ms=radio.watchdog_ms, clock=clock)
                )
            elif radio.backend == "pigpio":
                from hardware.rf433 import Rf433Receiver

                inventory.edges.append(
                    Rf433Receiver(
                        radio.gpio,
                        host=spec.pigpio_host,
                        port=spec.pigpio_port,
                        watchdog_ms=radio.watchdog_ms,
                        glitch_us=radio.glitch_us,
                        clock=clock,
                    )
                )
            else:
                raise HardwareError(
                    f"rf433: unknown radio backend {radio.backend!r}: choose 'gpiod' (the "
                    "kernel's GPIO character device, every Pi) or 'pigpio' (pigpiod, not on "
                    "the Pi 5)"
                )
    if spec.serial is not None:
        from hardware.serial_rx import RflinkReceiver

        with _configuring("rflink"):
            inventory.others.append(
                RflinkReceiver(
                    spec.serial.port,
                    baudrate=spec.serial.baudrate,
                    repeat_window_s=spec.serial.repeat_window_s,
                    clock=clock,
                )
            )
    if spec.nrf24 is not None:
        n = spec.nrf24
        from hardware.nrf24 import Nrf24Buttons

        with _configuring("nrf24"):
            inventory.others.append(
                Nrf24Buttons(n.ce_pin, n.csn, channel=n.channel, address=n.address, clock=clock)
            )
    if spec.ranger is not None and factory is not None:
        r = spec.ranger
        from hardware.ultrasonic import UltrasonicRanger

        with _configuring("ranger"):
            inventory.ranger = UltrasonicRanger(
                r.trigger_pin,
                r.echo_pin,
                interval_s=r.interval_s,
                temperature_c=r.temperature_c,
                max_distance_m=r.max_distance_m,
                pin_factory=factory,
                clock=clock,
            )
    if spec.audio is not None:
        a = spec.audio
        with _configuring("microphone"):
            if is_stream_url(a.device):
                inventory.audio = _network_microphone(a, clock)
            else:
                from hardware.alsa import AlsaMicrophone

                inventory.audio = AlsaMicrophone(
                    a.device, sample_rate=a.sample_rate, period_frames=a.period_frames, clock=clock
                )
    return inventory


def _network_microphone(a: AudioSpec, clock: Clock) -> AudioSource:
    """The audio device is a stream URL: PyAV (an optional extra) reads it."""
    try:
        from hardware.netaudio import NetworkMicrophone
    except ImportError as exc:
        raise HardwareError(
            f"microphone: audio.device {redact(a.device)!r} is a stream URL, which needs PyAV "
            f"({exc.msg}); install it with: pip install 'contactpoint[camera]'"
        ) from None
    ca_file = None if a.ca_file is None else Path(a.ca_file)
    return NetworkMicrophone(
        a.device,
        sample_rate=a.sample_rate,
        period_frames=a.period_frames,
        ca_file=ca_file,
        clock=clock,
    )


@contextlib.contextmanager
def _configuring(part: str) -> Iterator[None]:
    """A setting a driver refuses (``ValueError``) becomes a configuration error of ``part``."""
    try:
        yield
    except ValueError as exc:
        raise HardwareError(f"{part}: {exc}") from exc


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
