"""What the daemon wants the central side to know about its own health: alarms and faults.

Rules:
- An *alarm* is something that happened and cost something: clips deleted to stay inside the
  disk budget (``clips_deleted_delivered``, ``clips_deleted_undelivered``), the disk full
  (``disk_full``), a corrupt store moved aside (``store_corrupt``), contacts saved without
  their full audio because capture stalled (``audio_stalled``), a save that had to wait
  (``save_failed``), the synchronised wall clock stepped (``clock_stepped``), a record with a
  value no store can hold (NaN, an unpaired surrogate: saved without it) or refused by the
  store (``bad_record``), messages the sink did not confirm after every resend
  (``undelivered``, see edge/publish/delivery.py). Each kind is counted since the daemon
  started; its ``detail`` is the latest one.
- A *fault* is a part that is failing now (microphone, ranger, a button, a receiver; the disk
  too full for clips, ``storage``; the wall clock off its earlier time after a step,
  ``clock``); it is cleared when the part reports it is back.
- Thread-safe: the core loop raises them, the publisher thread reads :meth:`Health.snapshot`
  for the status message (``status.alarms`` and ``status.faults`` on the wire). ``on_change``,
  given at construction, is called after every change (the runtime has the publisher refresh
  the retained status at once); an error there is logged, never raised.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ALARM_KINDS: tuple[str, ...] = (
    "clips_deleted_delivered",
    "clips_deleted_undelivered",
    "disk_full",
    "store_corrupt",
    "audio_stalled",
    "save_failed",
    "clock_stepped",
    "bad_record",
    "undelivered",
)


@dataclass(slots=True)
class _Alarm:
    count: int
    detail: str


class Health:
    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._alarms: dict[str, _Alarm] = {}
        self._faults: dict[str, str] = {}
        self._on_change = on_change

    def alarm(self, kind: str, detail: str, count: int = 1) -> None:
        """Raise alarm ``kind`` (one of :data:`ALARM_KINDS`) ``count`` more times."""
        if kind not in ALARM_KINDS:
            raise ValueError(f"unknown alarm kind {kind!r}; expected one of {ALARM_KINDS}")
        if count < 1:
            return
        log.warning("alarm %s (+%d): %s", kind, count, detail, extra={"FAULT": kind})
        with self._lock:
            current = self._alarms.get(kind)
            self._alarms[kind] = _Alarm((current.count if current else 0) + count, detail)
        self._changed()

    def fault(self, part: str, ok: bool, detail: str) -> None:
        """A part failed (``ok`` False) or came back (True)."""
        with self._lock:
            if ok:
                changed = self._faults.pop(part, None) is not None
            else:
                changed = self._faults.get(part) != detail
                self._faults[part] = detail
        if changed:
            self._changed()

    def count(self, kind: str) -> int:
        with self._lock:
            alarm = self._alarms.get(kind)
            return alarm.count if alarm else 0

    @property
    def faults(self) -> dict[str, str]:
        with self._lock:
            return dict(self._faults)

    def snapshot(self) -> dict[str, Any]:
        """``{"alarms": [{kind, count, detail}], "faults": [{part, detail}]}``, sorted."""
        with self._lock:
            return {
                "alarms": [
                    {"kind": kind, "count": a.count, "detail": a.detail}
                    for kind, a in sorted(self._alarms.items())
                ],
                "faults": [
                    {"part": part, "detail": detail}
                    for part, detail in sorted(self._faults.items())
                ],
            }

    def _changed(self) -> None:
        callback = self._on_change
        if callback is not None:
            try:
                callback()
            except Exception:  # a status refresh must never break the core loop
                log.exception("health change callback failed")
