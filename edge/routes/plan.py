"""Which destinations get a contact or an alert: the rules of ``[routes]``, pure.

A rule matches a contact when its ``kinds`` include ``contact``, the contact has one of its
``tags`` (or ``tags`` is empty), none of its ``unless_tags``, and its mode is in ``modes`` (or
``modes`` is empty). For an alert (``kinds`` including ``alert``) ``tags`` and ``unless_tags``
name alert rules and ``modes`` is not looked at. A destination named by several matching rules
gets the item once. MQTT destinations become outbox rows (the publisher sends them, acked like
everything else); the others become rows of the route queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge.config import RoutesSection
from edge.publish import wire
from edge.records import ContactRecord, OutboxMessage, RouteJob


def destinations(
    cfg: RoutesSection, kind: str, tags: Sequence[str], mode: str | None = None
) -> list[str]:
    """The destination names for an item, in the order the rules first name them."""
    chosen: list[str] = []
    have = set(tags)
    for rule in cfg.rules:
        if kind not in rule.kinds:
            continue
        if rule.tags and not have.intersection(rule.tags):
            continue
        if have.intersection(rule.unless_tags):
            continue
        if kind == "contact" and rule.modes and mode not in rule.modes:
            continue
        chosen.extend(name for name in rule.to if name not in chosen)
    return chosen


def jobs(
    cfg: RoutesSection,
    kind: str,
    ref: str,
    body: Mapping[str, Any],
    names: Sequence[str],
    *,
    device: str,
    site: str,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> tuple[list[RouteJob], list[OutboxMessage]]:
    """The queue rows and outbox rows that deliver ``body`` to ``names``."""
    mqtt = {m.name for m in cfg.mqtt}
    payload = {"device": device, "site": site, kind: body}
    queued: list[RouteJob] = []
    outbox: list[OutboxMessage] = []
    for name in names:
        if name in mqtt:
            outbox.append(wire.route_message(name, kind, ref, body, device=device, site=site))
        else:
            queued.append(RouteJob(new_id(), name, kind, ref, payload))
    return queued, outbox


def for_contact(
    cfg: RoutesSection, record: ContactRecord, *, device: str, site: str
) -> tuple[list[RouteJob], list[OutboxMessage]]:
    """What routing a freshly closed contact takes: save it with the contact."""
    names = destinations(cfg, "contact", record.tags, record.mode)
    if not names:
        return [], []
    body = wire.contact_json(record)
    return jobs(cfg, "contact", record.id, body, names, device=device, site=site)


def for_alert(
    cfg: RoutesSection, alert_id: str, rule: str, body: dict[str, Any], *, device: str, site: str
) -> tuple[list[RouteJob], list[OutboxMessage]]:
    """What routing an alert takes (``body``: the wire alert object, with its ``text``); save
    it with :meth:`edge.store.Store.save_routes`."""
    names = destinations(cfg, "alert", [rule])
    return jobs(cfg, "alert", alert_id, body, names, device=device, site=site)


def plan_routes(
    cfg: RoutesSection,
    record: ContactRecord | None,
    outbox: Sequence[OutboxMessage],
    *,
    device: str,
    site: str,
) -> tuple[list[RouteJob], list[OutboxMessage]]:
    """Everything routing adds to one save: the deliveries of a contact (``record``; None for
    an orphan event) and of every alert among the ``outbox`` rows saved with it, as queue rows
    and extra outbox rows. The caller (the core) hands both to the store, which writes them in
    the transaction that saves the contact or event."""
    queued: list[RouteJob] = []
    extra: list[OutboxMessage] = []
    if record is not None:
        queued, extra = for_contact(cfg, record, device=device, site=site)
    for message in outbox:
        body = message.payload.get("alert")
        if message.kind != "alert" or not isinstance(body, dict):
            continue
        more, more_extra = for_alert(
            cfg, message.ref, str(body.get("rule", "")), body, device=device, site=site
        )
        queued += more
        extra += more_extra
    return queued, extra
