"""The sink under systemd (``Type=notify``, ``WatchdogSec=``; provisioning/systemd/
contactpoint-sink.service): what ``contactpoint sink run`` tells the service manager.

:meth:`SinkSupervisor.turn` runs on the sink's worker thread at every turn of its loop, so a
stuck worker stops the pings. ``READY=1`` at the first turn (the database is open and migrated
by then; the broker may still be out of reach: the sink keeps trying and the status says so);
``WATCHDOG=1`` every half ``WatchdogSec``; ``STATUS=`` whether the subscription is up and the
ingest counts, when it changes (at most every ``status_every_s``); ``STOPPING=1`` with
``EXTEND_TIMEOUT_USEC`` when asked to stop. A turn waits at most the reconnect back-off
(``backoff_max_s``), so ``WatchdogSec`` must be well above it (the unit's is).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cloud_sink.consumer import Sink
from contract.service import Notifier, watchdog_interval_s


class SinkSupervisor:
    def __init__(
        self,
        notifier: Notifier,
        *,
        ping_every_s: float | None = None,
        status_every_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.ping_every_s = ping_every_s if ping_every_s is not None else watchdog_interval_s()
        self.status_every_s = status_every_s
        self._monotonic = monotonic
        self.ready = False
        self._next_ping = 0.0
        self._next_status = 0.0
        self._status = ""

    def turn(self, sink: Sink) -> None:
        if not self.notifier.enabled:
            return
        now = self._monotonic()
        if not self.ready:
            self.ready = True
            self._status = self.summary(sink)
            self._next_status = now + self.status_every_s
            self.notifier.ready(self._status)
        elif now >= self._next_status:
            self._next_status = now + self.status_every_s
            status = self.summary(sink)
            if status != self._status:
                self._status = status
                self.notifier.status(status)
        if self.ping_every_s is not None and now >= self._next_ping:
            self._next_ping = now + self.ping_every_s
            self.notifier.watchdog()

    def stopping(self, drain_s: float = 10.0) -> None:
        """Asked to stop (from the signal handler: it takes no lock)."""
        self.notifier.stopping(drain_s + 5.0, "stopping")

    @staticmethod
    def summary(sink: Sink) -> str:
        state = "subscribed" if sink.subscribed.is_set() else f"waiting for {sink.config.broker}"
        stats = sink.stats()
        counts = ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "nothing yet"
        return f"{state}; {counts}"
