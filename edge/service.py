"""The device daemon under systemd (``Type=notify``, ``WatchdogSec=``): what it tells the
service manager, and when (provisioning/systemd/contactpoint-edge.service).

:meth:`Supervisor.beat` is called by the core loop on every turn, after the loop has taken the
inbox and ticked the core; nothing else sends a ping, so a stuck core loop stops them by itself.

- ``READY=1`` once, at the first beat after the store is open, the backend started and (when the
  device records audio) the first audio period has reached the core. A microphone that never
  delivers keeps the unit "activating" until systemd's start timeout: audio is the product.
- ``WATCHDOG=1`` every half ``WatchdogSec`` (``$WATCHDOG_USEC``), and only while the audio
  capture makes progress too: if no audio period has reached the core for ``stall`` (the lesser
  of ``audio.stall_s`` and the ping interval, on the core's clock, so a busy machine that
  delays the loop does not look like a stall) the pings stop — systemd then restarts the
  daemon — and the status says so. They start again when audio comes back before that.
- ``STATUS=`` a one-line summary (contacts today, outbox depth, faults, a stalled capture),
  looked at when something was written or a part failed, else every ``status_every_s``, and
  sent when it changed.
- ``STOPPING=1`` with ``EXTEND_TIMEOUT_USEC`` when the daemon drains after SIGTERM (or after
  a scenario), for as long as the drain may take.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from contract.service import Notifier, watchdog_interval_s
from edge.app import Core
from edge.clock import NS, seconds_to_ns

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(
        self,
        notifier: Notifier,
        *,
        audio: bool,
        stall_s: float,
        ping_every_s: float | None = None,
        status_every_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``audio``: the device records audio (the capture must progress); ``ping_every_s``:
        the ping interval (default: half of ``$WATCHDOG_USEC``; None: no watchdog)."""
        self.notifier = notifier
        self.audio = audio
        self.ping_every_s = ping_every_s if ping_every_s is not None else watchdog_interval_s()
        stall = stall_s if self.ping_every_s is None else min(stall_s, self.ping_every_s)
        self.stall_ns = seconds_to_ns(stall)
        self.status_every_s = status_every_s
        self._monotonic = monotonic
        self.ready = False
        self.stalled = False
        self.pings = 0
        self._next_ping = 0.0
        self._next_status = 0.0
        self._status = ""
        self._key = (0, 0)

    def due_in_s(self, core: Core) -> float:
        """Seconds until :meth:`beat` has something to do on time: the periodic status, and the
        watchdog ping while the capture progresses. ``inf`` without systemd's notification
        socket, before ``READY`` (it waits for the first audio period, an inbox item) and for
        held pings (an audio period ends the stall)."""
        if not self.notifier.enabled or not self.ready:
            return math.inf
        due = self._next_status
        if self.ping_every_s is not None and self._capturing(core):
            due = min(due, self._next_ping)
        return max(0.0, due - self._monotonic())

    def beat(self, core: Core) -> None:
        """One turn of the core loop has completed."""
        if not self.notifier.enabled:
            return
        now = self._monotonic()
        capturing = self._capturing(core)
        if not self.ready:
            if self.audio and core.counters.audio_periods == 0:
                return
            self.ready = True
            self._status = self.summary(core)
            self._next_status = now + self.status_every_s
            self.notifier.ready(self._status)
            log.info("ready: %s", self._status)
        if capturing == self.stalled:  # the capture stalled, or came back
            self.stalled = not capturing
            if self.stalled:
                log.warning(
                    "audio capture stalled: no audio period for %.1f s; watchdog pings held",
                    (core.clock.monotonic_ns() - core.audio_seen_ns) / NS,
                    extra={"FAULT": "audio_capture"},
                )
            else:
                log.warning("audio capture back; watchdog pings resume")
            self._next_status = now  # say it now
        key = (core.counters.saved, len(core.counters.faults))
        if now >= self._next_status or key != self._key:  # a contact written, a fault
            self._key = key
            self._next_status = now + self.status_every_s
            status = self.summary(core)
            if status != self._status:
                self._status = status
                self.notifier.status(status)
        if self.ping_every_s is not None and capturing and now >= self._next_ping:
            self._next_ping = now + self.ping_every_s
            self.notifier.watchdog()
            self.pings += 1

    def stopping(self, core: Core, drain_s: float) -> None:
        """The daemon stops and drains for up to ``drain_s`` seconds."""
        self.notifier.stopping(drain_s + 10.0, f"stopping: {self.summary(core)}")

    def _capturing(self, core: Core) -> bool:
        if not self.audio:
            return True
        if core.counters.audio_periods == 0:
            return False
        return core.clock.monotonic_ns() - core.audio_seen_ns <= self.stall_ns

    def summary(self, core: Core) -> str:
        """One line: contacts today, outbox depth, faults, a stalled capture."""
        today = core.today.snapshot(core.clock.wall_ns(core.clock.monotonic_ns()))
        try:
            depth = str(core.store.outbox.depth())
        except Exception as exc:  # noqa: BLE001 - a status line never stops the loop
            depth = f"unknown ({type(exc).__name__})"
        faults = sorted(core.health.faults)
        if self.stalled:
            faults.append("audio capture stalled")
        return (
            f"{today['served']} contacts today, outbox {depth}, "
            f"faults: {', '.join(faults) if faults else 'none'}"
        )
