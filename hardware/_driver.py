"""What every threaded driver shares: hand events to the sink safely, report faults."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from hardware._api import DeviceFault, EventSink, HardwareEvent

log = logging.getLogger(__name__)


class EmittingDevice:
    """Mixin for a driver with a reader thread.

    After ``stop()`` has set ``_stop`` (under ``_emit_lock``) the sink is never called again,
    and an exception from the sink is logged, never allowed to kill the reader thread.
    """

    name: str
    _clock: Callable[[], int]
    _sink: EventSink | None
    _stop: threading.Event
    _emit_lock: threading.Lock
    _reopen_interval_s: float

    def _keep_open(
        self,
        open_: Callable[[], Any],
        serve: Callable[[Any], None],
        close: Callable[[Any], None],
        errors: tuple[type[BaseException], ...],
        lost: Callable[[BaseException], None],
    ) -> None:
        """The reader thread's loop: open the device (``open_`` reports why and returns None
        while it cannot), serve it until it fails with one of ``errors`` (``lost`` reports that),
        then try again every ``_reopen_interval_s``; the device is closed when the loop ends."""
        handle: Any = None
        try:
            while not self._stop.is_set():
                if handle is None:
                    handle = open_()
                    if handle is None:
                        self._stop.wait(self._reopen_interval_s)
                        continue
                try:
                    serve(handle)
                except errors as exc:
                    close(handle)
                    handle = None
                    lost(exc)
                    self._stop.wait(self._reopen_interval_s)
        finally:
            if handle is not None:
                close(handle)

    def _fault(self, ok: bool, detail: str) -> None:
        (log.info if ok else log.warning)("%s: %s", self.name, detail)
        self._emit(DeviceFault(self.name, ok, detail, self._clock()))

    def _emit(self, event: HardwareEvent) -> None:
        with self._emit_lock:
            if self._stop.is_set() or self._sink is None:
                return
            try:
                self._sink(event)
            except Exception:
                log.exception("%s: the event sink raised", self.name)
