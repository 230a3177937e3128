"""Alerts on the device: its contacts and events as observations of the one alert engine.

Rules:
- The rules, their evaluation and the alert ids are the contract's (``contract/alerts.py``),
  the same code the sink runs for site alerts; this module only turns the device's records
  into observations: a saved contact (itself at its start, and its events) or an orphan event.
- A contact reaches the evaluator when it is saved, which is after it ended and its clip was
  cut; an orphan event is saved at once. So observations arrive out of event-time order, and
  the evaluator is told how late they can be (:func:`edge.app.alert_lateness_s`).
"""

from __future__ import annotations

from contract.alerts import Observation, contact_keys, event_keys
from edge.records import ContactRecord, EventRecord

__all__ = ["observations"]


def observations(item: ContactRecord | EventRecord) -> list[Observation]:
    """A saved contact (itself and its events) or an orphan event, as observations."""
    if isinstance(item, EventRecord):
        return [Observation(item.wall_ns, item.id, event_keys(item.kind, item.question))]
    out = [Observation(item.start_wall_ns, item.id, contact_keys(item.tags))]
    out.extend(Observation(e.wall_ns, e.id, event_keys(e.kind, e.question)) for e in item.events)
    return out
