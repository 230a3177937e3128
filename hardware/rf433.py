"""A 433 MHz OOK receiver's data pin, read through the pigpio daemon's edge callbacks.

Rules:

- ``start()`` connects with ``pigpio.pi(host, port)``. That call does not raise when no daemon
  answers (it only sets ``connected=False``), so the driver checks ``connected`` and raises
  :class:`HardwareError` naming ``host:port`` and the fix. A pigpio error while setting the pin
  up also becomes a :class:`HardwareError`, after the connection is closed.
- Pin setup: input mode; the daemon's glitch filter when ``glitch_us`` > 0 (pigpio ignores level
  changes shorter than that); a watchdog of ``watchdog_ms`` so that the end of a burst is
  reported as level 2 (``pigpio.TIMEOUT``) instead of waiting for the next noise edge.
- The callback only stamps and forwards: ``RadioEdge(gpio, level, tick_us, t_ns=clock())`` with
  pigpio's level (0, 1, or 2 = watchdog timeout) and its unsigned 32-bit microsecond tick.
- Threads: pigpio calls the callback on its notification thread (one daemon thread per
  ``pigpio.pi`` connection, started by the pigpio module), one edge at a time in the daemon's
  order. The sink runs on that thread, so it must be quick and thread-safe (a ``queue.put``);
  an exception from the sink ends pigpio's thread and with it all further edges.
- ``stop()`` cancels the callback, clears the watchdog and closes the connection (which sends
  the daemon NC, closing the notification handle); it is idempotent and never raises for a
  daemon that has already gone away.
- Known limit of pigpio 1.78: if the daemon dies while started, pigpio's notification thread
  spins on the closed socket until ``stop()`` (measured here: ~0.3 CPU-seconds per second). No
  edge arrives meanwhile; a supervisor should notice and restart the device.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Callable
from typing import Any

import pigpio

from hardware._api import EventSink, RadioEdge
from hardware._errors import HardwareError

MAX_WATCHDOG_MS = 60_000  # pigpio's limit for set_watchdog
MAX_GLITCH_US = 300_000  # pigpio's limit for set_glitch_filter


class Rf433Receiver:
    """Reports every level change of a receiver's data pin as a :class:`RadioEdge`."""

    def __init__(
        self,
        gpio: int,
        *,
        host: str = "localhost",
        port: int = 8888,
        watchdog_ms: int = 20,
        glitch_us: int = 0,
        clock: Callable[[], int] = time.monotonic_ns,
        name: str = "rf433",
    ) -> None:
        if not 0 <= gpio <= 31:
            raise ValueError(f"{name}: pigpio reports edges on gpio 0..31, not {gpio}")
        if not 0 <= watchdog_ms <= MAX_WATCHDOG_MS:
            raise ValueError(f"{name}: watchdog_ms must be 0..{MAX_WATCHDOG_MS}, not {watchdog_ms}")
        if not 0 <= glitch_us <= MAX_GLITCH_US:
            raise ValueError(f"{name}: glitch_us must be 0..{MAX_GLITCH_US}, not {glitch_us}")
        self.name = name
        self.gpio = gpio
        self.host = host
        self.port = port
        self.watchdog_ms = watchdog_ms
        self.glitch_us = glitch_us
        self._clock = clock
        self._pi: Any = None  # pigpio.pi while started
        self._callback: Any = None
        self._sink: EventSink | None = None

    def start(self, sink: EventSink) -> None:
        """Connect to the daemon, set the pin up and start reporting edges to ``sink``."""
        if self._pi is not None:
            raise RuntimeError(f"{self.name}: already started")
        where = f"{self.host}:{self.port}"
        pi = pigpio.pi(self.host, self.port, show_errors=False)
        if not pi.connected:
            raise HardwareError(
                f"{self.name}: cannot connect to the pigpio daemon at {where}. Start it on the "
                "Pi with 'sudo systemctl enable --now pigpiod' (for another host or port, run "
                "pigpiod with -p PORT and without -l / with -n HOST), or fix rf433 host/port "
                "in the config."
            )
        self._sink = sink
        try:
            pi.set_mode(self.gpio, pigpio.INPUT)
            if self.glitch_us:
                pi.set_glitch_filter(self.gpio, self.glitch_us)
            pi.set_watchdog(self.gpio, self.watchdog_ms)
            self._callback = pi.callback(self.gpio, pigpio.EITHER_EDGE, self._on_edge)
        except (pigpio.error, OSError, struct.error) as exc:
            with contextlib.suppress(OSError):
                pi.stop()
            self._sink = None
            raise HardwareError(
                f"{self.name}: pigpio daemon at {where} refused to set up gpio {self.gpio}: "
                f"{exc}. Check the gpio number (BCM numbering, 0..31) in the config."
            ) from exc
        self._pi = pi

    def _on_edge(self, gpio: int, level: int, tick: int) -> None:
        """pigpio's callback, on pigpio's notification thread: stamp and forward, nothing else."""
        sink = self._sink
        if sink is not None:
            sink(RadioEdge(gpio, level, tick, self._clock()))

    def stop(self) -> None:
        """Cancel the callback, clear the watchdog and close the connection. Idempotent."""
        pi, self._pi = self._pi, None
        callback, self._callback = self._callback, None
        self._sink = None
        if pi is None:
            return
        try:
            if callback is not None:
                callback.cancel()
            pi.set_watchdog(self.gpio, 0)
        except (pigpio.error, OSError, struct.error):
            pass  # the daemon went away (struct.error: it closed mid-reply): nothing to undo
        finally:
            with contextlib.suppress(OSError):
                pi.stop()
