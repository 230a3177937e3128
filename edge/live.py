"""Today's live counters for the device's status message: a small pure object.

The core feeds it every contact and every event outside a contact as they are saved
(:meth:`TodayCounters.add_contact`, :meth:`TodayCounters.add_event`); the publisher's thread
reads :meth:`TodayCounters.snapshot` when it builds the retained ``status`` (hence the lock).

"Today" is the local date in ``staff.timezone``: a contact counts on the day it *started*, an
event on the day it happened; the counters start from zero when the first thing of a new day
arrives or a snapshot is asked for on a new day. Something of an earlier day that is saved
late (a contact open across midnight) no longer changes today's counters.

The counts and metrics are those of the sink (``cloud_sink/metrics.py``, which holds the
definitions; the two modules may not import each other), with the device's own copy of the
parameters (config section ``metrics``): served contacts are the presence contacts, or every
contact when there is none; positive / negative / silent / productive are served contacts with
that tag; receipts, surveys (seller's short press) and force majeure (long press) are events
wherever they happened (a contact with two receipts counts two); visitors are the presence
contacts. Personal conversion is receipts / contacts served (Личная Конверсия: sales per
contact), the productive share productive contacts / contacts served.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from edge.records import ContactRecord, EventRecord

NS = 1_000_000_000
_RATED = ("positive", "negative", "silent", "productive")
_EVENTS = {"receipt": "receipts", "seller_short": "surveys", "seller_long": "force_majeure"}


def _ratio(numerator: float, denominator: int) -> float | None:
    return None if denominator == 0 else round(numerator / denominator, 4)


class TodayCounters:
    def __init__(
        self, tz: ZoneInfo, correction_factor: float = 0.5, force_majeure_threshold: float = 0.1
    ) -> None:
        self.tz = tz
        self.k = correction_factor
        self.threshold = force_majeure_threshold
        self._lock = threading.Lock()
        self._day: date | None = None
        self._presence: Counter[str] = Counter()  # tag counts among presence contacts
        self._all: Counter[str] = Counter()  # tag counts among all contacts
        self._events: Counter[str] = Counter()

    def _local_day(self, wall_ns: int) -> date:
        return datetime.fromtimestamp(wall_ns // NS, self.tz).date()

    def _roll(self, day: date) -> bool:
        """Move to ``day`` if it is later; False if ``day`` is an earlier one (too late)."""
        if self._day is not None and day < self._day:
            return False
        if day != self._day:
            self._day = day
            self._presence.clear()
            self._all.clear()
            self._events.clear()
        return True

    def add_contact(self, rec: ContactRecord) -> None:
        with self._lock:
            if not self._roll(self._local_day(rec.start_wall_ns)):
                return
            pools = [self._all, self._presence] if rec.mode == "presence" else [self._all]
            for pool in pools:
                pool["contacts"] += 1
                pool.update(tag for tag in _RATED if tag in rec.tags)
            self._events.update(_EVENTS[e.kind] for e in rec.events if e.kind in _EVENTS)

    def add_event(self, rec: EventRecord) -> None:
        """An event outside any contact."""
        if rec.kind not in _EVENTS:
            return
        with self._lock:
            if self._roll(self._local_day(rec.wall_ns)):
                self._events[_EVENTS[rec.kind]] += 1

    def snapshot(self, now_wall_ns: int) -> dict[str, Any]:
        """Today's counters and metrics, as the status message carries them."""
        with self._lock:
            self._roll(self._local_day(now_wall_ns))
            if self._day is None:
                raise RuntimeError("the day was not rolled")
            pool = self._presence if self._presence["contacts"] else self._all
            served = pool["contacts"]
            positive, negative, silent = pool["positive"], pool["negative"], pool["silent"]
            receipts, surveys = self._events["receipts"], self._events["surveys"]
            force = self._events["force_majeure"]
            visitors = self._presence["contacts"]
            level = _ratio(force, surveys)
            too_much = force > 0 and (surveys == 0 or force / surveys > self.threshold)
            return {
                "date": self._day.isoformat(),
                "served": served,
                "positive": positive,
                "negative": negative,
                "silent": silent,
                "productive": pool["productive"],
                "receipts": receipts,
                "surveys": surveys,
                "force_majeure": force,
                "visitors": visitors,
                "support_index": _ratio(positive, served),
                "dissatisfaction_index": _ratio(negative, served),
                "staff_dissatisfaction_index": _ratio(negative + self.k * silent, served),
                "loyalty_index": _ratio(positive - negative - self.k * silent, served),
                "personal_conversion": _ratio(receipts, served),
                "productive_share": _ratio(pool["productive"], served),
                "exact_conversion": _ratio(surveys, receipts),
                "visitor_coverage": _ratio(surveys, visitors),
                "force_majeure_level": level,
                "meaningful": not too_much,
            }
