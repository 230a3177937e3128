"""Wired push buttons on GPIO pins, and the choice of gpiozero pin factory.

Rules:

- The pin factory is made in one place, :func:`make_pin_factory`, from a name. Anything that
  stops it from opening becomes a :class:`HardwareError` naming the factory, the underlying
  exception and the fix.
- The lgpio factory is given the chip that carries the 40-pin header, found by its line names
  (``GPIO<n>``, :func:`~hardware.gpiod_rx.header_chip`) when libgpiod's bindings are there.
  gpiozero 2.0 guesses it from the board revision: gpiochip4 only for the Pi 5 itself, so on
  boards it does not know (Pi 500, CM5) with a kernel that numbers RP1 gpiochip4 it would open
  the SoC's chip 0 and no button would ever fire. Without the bindings, or when no chip names
  its lines so, gpiozero's own guess stands.
- A :class:`GpioButton` reports every raw edge as a :class:`ButtonEdge`: no debouncing and no
  hold detection here (gpiozero's ``bounce_time`` is None, ``when_held`` is unused). The daemon
  debounces and tells short from long presses using the timestamps.
- ``pressed`` is the logical state. With the internal pull-up (button wired to ground), pressed
  means low; with the pull-down, pressed means high. ``active_high`` overrides this (for example
  a normally-closed switch on a pull-up), and is required when the pin floats
  (``pull_up=None``, external resistor).
- Timestamps: gpiozero does not pass the edge time to ``when_activated``, so the edge is stamped
  with the injected ``clock`` when gpiozero's callback runs. The latency of that callback depends
  on the factory (it was not measured here): with the mock factory the callback is synchronous;
  lgpio, RPi.GPIO and native call back from their own edge thread; pigpio calls back from its
  client thread after the daemon's notification crosses a socket. Expect milliseconds, or more
  under load. The daemon's debounce (tens of ms) and long press (seconds) can absorb that; edges
  of a bounce burst may arrive close together.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gpiozero import DigitalInputDevice, Factory

from hardware._api import ButtonEdge, EventSink
from hardware._errors import HardwareError
from hardware.gpiod_rx import KernelGpio, LineAccess, header_chip

FactoryName = Literal["lgpio", "pigpio", "rpigpio", "native", "mock"]
FACTORY_NAMES: tuple[FactoryName, ...] = ("lgpio", "pigpio", "rpigpio", "native", "mock")


@dataclass(frozen=True, slots=True)
class _LocalFactory:
    """A factory that talks to this machine's GPIO directly."""

    module: str
    cls: str
    needs: str  # what must be importable
    install: str  # how to get it
    check: str  # what to check when it is there but cannot open the GPIO


_LOCAL: dict[str, _LocalFactory] = {
    "lgpio": _LocalFactory(
        "gpiozero.pins.lgpio",
        "LGPIOFactory",
        "lgpio",
        "pip install lgpio (or apt install python3-lgpio)",
        "run on a Raspberry Pi with /dev/gpiochip* readable by this user (group 'gpio')",
    ),
    "rpigpio": _LocalFactory(
        "gpiozero.pins.rpigpio",
        "RPiGPIOFactory",
        "RPi.GPIO",
        "apt install python3-rpi.gpio (Pi 4 and older; on a Pi 5 use 'lgpio')",
        "RPi.GPIO runs only on a Raspberry Pi 4 or older; use 'lgpio' on a Pi 5",
    ),
    "native": _LocalFactory(
        "gpiozero.pins.native",
        "NativeFactory",
        "gpiozero.pins.native",
        "reinstall gpiozero",
        "run on a Raspberry Pi 4 or older with /dev/gpiomem readable; use 'lgpio' on a Pi 5",
    ),
}


def lgpio_chip(access: LineAccess | None = None) -> int | None:
    """The gpiochip number to give gpiozero's lgpio factory: the header chip found by line
    names, or None to let gpiozero guess (no bindings, no such chip, no GPIO at all)."""
    try:
        return header_chip(access if access is not None else KernelGpio())
    except (HardwareError, OSError):
        return None


def make_pin_factory(
    name: FactoryName,
    *,
    pigpio_host: str = "localhost",
    pigpio_port: int = 8888,
    gpio_access: LineAccess | None = None,
) -> Factory:
    """Open the gpiozero pin factory called ``name``, or raise a :class:`HardwareError`."""
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if name == "pigpio":
        return _pigpio_factory(pigpio_host, pigpio_port)
    spec = _LOCAL.get(name)
    if spec is None:
        raise HardwareError(
            f"unknown pin factory {name!r}: choose one of {', '.join(FACTORY_NAMES)}"
        )
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise HardwareError(
            f"pin factory {name!r}: {spec.needs} is not installed ({exc}): {spec.install}"
        ) from exc
    except Exception as exc:  # RPi.GPIO raises RuntimeError on import off a Pi
        raise HardwareError(
            f"pin factory {name!r}: {spec.needs} cannot be loaded "
            f"({type(exc).__name__}: {exc}): {spec.check}"
        ) from exc
    chip = lgpio_chip(gpio_access) if name == "lgpio" else None
    where = "" if chip is None else f" on gpiochip{chip}"
    try:
        if chip is not None:
            return getattr(module, spec.cls)(chip=chip)
        return getattr(module, spec.cls)()
    except Exception as exc:
        raise HardwareError(
            f"pin factory {name!r} cannot open the GPIO{where} ({type(exc).__name__}: {exc}): "
            f"{spec.check}"
        ) from exc


def _pigpio_factory(host: str, port: int) -> Factory:
    # pigpio.pi() does not raise when no daemon answers (it prints a banner and leaves
    # connected=False); gpiozero's PiGPIOFactory checks the socket and raises OSError.
    from gpiozero.pins.pigpio import PiGPIOFactory

    try:
        return PiGPIOFactory(host=host, port=port)
    except OSError as exc:
        raise HardwareError(
            f"pin factory 'pigpio': pigpiod not reachable at {host}:{port} ({exc}): "
            "start it with 'sudo pigpiod' (or 'sudo systemctl enable --now pigpiod')"
        ) from exc
    except Exception as exc:
        raise HardwareError(
            f"pin factory 'pigpio': pigpiod at {host}:{port} failed "
            f"({type(exc).__name__}: {exc}): check that it runs on a Raspberry Pi"
        ) from exc


class GpioButton:
    """A push button on one GPIO pin, reporting every raw edge (implements ButtonInput)."""

    def __init__(
        self,
        name: str,
        pin: int,
        *,
        pull_up: bool | None = True,
        active_high: bool | None = None,
        pin_factory: Factory,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if pull_up is None and active_high is None:
            raise ValueError(
                f"button {name!r}: a floating pin (pull_up=None) needs active_high=True/False"
            )
        self.name = name
        self.pin = pin
        self._pull_up = pull_up
        self._active_high = active_high
        # gpiozero derives the active level from the pull; a contrary active_high inverts it.
        self._invert = pull_up is not None and active_high is not None and active_high == pull_up
        self._factory = pin_factory
        self._clock = clock
        self._sink: EventSink | None = None
        self._device: DigitalInputDevice | None = None

    def start(self, sink: EventSink) -> None:
        """Claim the pin and report its edges to ``sink`` from gpiozero's callback thread."""
        if self._device is not None:
            raise RuntimeError(f"button {self.name!r} is already started")
        try:
            device = DigitalInputDevice(
                self.pin,
                pull_up=self._pull_up,
                active_state=self._active_high if self._pull_up is None else None,
                bounce_time=None,
                pin_factory=self._factory,
            )
        except Exception as exc:
            raise HardwareError(
                f"button {self.name!r} cannot open GPIO{self.pin} "
                f"({type(exc).__name__}: {exc}): check the pin number and that no other "
                "program or button uses it"
            ) from exc
        self._sink = sink
        device.when_activated = self._on_activated
        device.when_deactivated = self._on_deactivated
        self._device = device

    def stop(self) -> None:
        """Release the pin; safe to call more than once."""
        device, self._device = self._device, None
        self._sink = None
        if device is not None:
            device.when_activated = None
            device.when_deactivated = None
            device.close()

    def _on_activated(self) -> None:
        self._emit(not self._invert)

    def _on_deactivated(self) -> None:
        self._emit(self._invert)

    def _emit(self, pressed: bool) -> None:
        t_ns = self._clock()
        sink = self._sink
        if sink is not None:
            sink(ButtonEdge(self.name, pressed, t_ns))
