"""Site-level alerts: the device's sliding-window rules, evaluated over ALL devices of a site.

The algorithm is the device's (``edge/alerts.py``; the layout rule keeps the packages apart, so
it is written again here, in the same shape and with the same boundaries):

- Observations: every event (keys: its kind, and ``question:N``) at its time, every contact
  (keys: ``contact`` and ``tag:<tag>``) at its start.
- A rule fires at the time ``t`` of a new observation carrying its ``count`` key when, among the
  site's observations with ``t - within_s <= time <= t`` and after the rule's last firing,
  at least ``at_least`` carry ``count`` and (if ``share_at_least``) they are at least that share
  (exact fractions) of those carrying a ``share_of`` key. Cooldown: quiet while
  ``t < last + cooldown_s``. The alert id is a digest of (``_site``, rule, t): stable.
- Rules come from the ``[[alerts.rules]]`` tables of the sink's ``--config`` file (same keys as
  the device's ``alerts.rules``); a bad rule is refused naming the rule, the key and the fix.
- The sink checks them inside the transaction that stores a contact or an event (the
  ``Ingest.on_stored`` hook), reading the window from the database, so several workers and a
  restart see the same history. A firing is a row of ``alerts`` (scope ``_site``), unique per id;
  :meth:`SiteAlerts.publish_pending` sends unpublished rows on
  ``contactpoint/v1/<site>/_site/alert`` and marks them published.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Final

from peewee import Database

from cloud_sink import wire
from cloud_sink.db import rowcount, transaction
from cloud_sink.models import from_json, tables, to_json

NS: Final = 1_000_000_000
MAX_REFS: Final = 50
EVENT_KINDS: Final = (
    "green", "yellow", "red", "request", "seller_short", "seller_long", "question", "receipt",
    "arrival", "departure",
)  # fmt: skip
RATINGS: Final = ("green", "yellow", "red")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class AlertConfigError(ValueError):
    """An ``[[alerts.rules]]`` entry is wrong; the message names it and the fix."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    count: str
    at_least: int
    share_at_least: float | None = None
    share_of: tuple[str, ...] = RATINGS
    within_s: float = 900.0
    cooldown_s: float = 900.0


@dataclass(frozen=True, slots=True)
class Observation:
    at_ns: int
    ref: str
    keys: frozenset[str]


@dataclass(frozen=True, slots=True)
class Firing:
    id: str
    rule: str
    scope: str
    at_ns: int
    window_start_ns: int
    count: int
    at_least: int
    total: int | None
    share: float | None
    share_at_least: float | None
    refs: tuple[str, ...]


# --- the pure core ----------------------------------------------------------------------------


def alert_id(scope: str, rule: str, at_ns: int) -> str:
    return hashlib.sha256(f"{scope}|{rule}|{at_ns}".encode()).hexdigest()[:32]


def check(
    rule: Rule, seen: Iterable[Observation], at_ns: int, *, scope: str, last_fired_ns: int | None
) -> Firing | None:
    if last_fired_ns is not None and at_ns < last_fired_ns + round(rule.cooldown_s * NS):
        return None
    start = at_ns - round(rule.within_s * NS)
    window = [
        o
        for o in seen
        if start <= o.at_ns <= at_ns and (last_fired_ns is None or o.at_ns > last_fired_ns)
    ]
    counted = sorted((o for o in window if rule.count in o.keys), key=lambda o: o.at_ns)
    if len(counted) < rule.at_least:
        return None
    total: int | None = None
    share: float | None = None
    if rule.share_at_least is not None:
        of = set(rule.share_of)
        total = sum(1 for o in window if o.keys & of)
        if total == 0 or Fraction(len(counted), total) < Fraction(str(rule.share_at_least)):
            return None
        share = round(len(counted) / total, 4)
    return Firing(
        alert_id(scope, rule.name, at_ns), rule.name, scope, at_ns, start, len(counted),
        rule.at_least, total, share, rule.share_at_least,
        tuple(o.ref for o in counted[:MAX_REFS]),
    )  # fmt: skip


def event_keys(kind: str, question: Any = None) -> frozenset[str]:
    if kind == "question" and isinstance(question, int):
        return frozenset((kind, f"question:{question}"))
    return frozenset((kind,))


def contact_keys(tags: Iterable[str]) -> frozenset[str]:
    return frozenset(["contact", *(f"tag:{t}" for t in tags)])


# --- times --------------------------------------------------------------------------------------


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(stamp: str) -> int:
    """Wall-clock ns of an ISO 8601 time with a zone (exact to the microsecond)."""
    return (datetime.fromisoformat(stamp) - _EPOCH) // timedelta(microseconds=1) * 1000


def iso(ns: int) -> str:
    """The edge's format (lexically ordered): ``2026-11-23T09:00:10.000Z``."""
    seconds, rest = divmod(ns, NS)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1_000_000:03d}Z"


# --- rules from the config file -----------------------------------------------------------------

_RULE_KEYS: Final = (
    "name", "count", "at_least", "share_at_least", "share_of", "within_s", "cooldown_s",
)  # fmt: skip


def _valid_key(key: str) -> bool:
    head, _, rest = key.partition(":")
    if key == "contact" or key in EVENT_KINDS:
        return True
    if head == "question":
        return rest.isdigit()
    return head == "tag" and _NAME.fullmatch(rest) is not None


def parse_rules(doc: dict[str, Any], source: str) -> list[Rule]:
    """The ``[[alerts.rules]]`` of a parsed TOML document (none: no site alerts)."""
    section = doc.get("alerts", {})
    if not isinstance(section, dict) or set(section) - {"rules"}:
        raise AlertConfigError(f"{source}: [alerts] takes only [[alerts.rules]] tables")
    raw = section.get("rules", [])
    if not isinstance(raw, list):
        raise AlertConfigError(f"{source}: alerts.rules must be a list of tables")
    rules: list[Rule] = []
    for i, entry in enumerate(raw):
        rules.append(_rule(entry, f"{source}: alerts.rules[{i}]"))
    names = [r.name for r in rules]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise AlertConfigError(f"{source}: alert rule names must be unique: {', '.join(twice)}")
    return rules


def _rule(entry: Any, where: str) -> Rule:
    if not isinstance(entry, dict):
        raise AlertConfigError(f"{where}: must be a table")
    for key in entry:
        if key not in _RULE_KEYS:
            close = difflib.get_close_matches(key, _RULE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise AlertConfigError(
                f"{where}: unknown key {key!r}{hint}; keys: {', '.join(_RULE_KEYS)}"
            )
    for key in ("name", "count", "at_least"):
        if key not in entry:
            raise AlertConfigError(f"{where}: missing {key!r}")
    name, count, at_least = entry["name"], entry["count"], entry["at_least"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise AlertConfigError(f"{where}.name = {name!r}: use lower-case letters, digits, - and _")
    keys = [count, *entry.get("share_of", RATINGS)]
    for key in keys:
        if not isinstance(key, str) or not _valid_key(key):
            raise AlertConfigError(
                f"{where}: {key!r} is not something to count; allowed: an event kind "
                f"({', '.join(EVENT_KINDS)}, question:N), 'contact' or 'tag:<tag>'"
            )
    if isinstance(at_least, bool) or not isinstance(at_least, int) or not at_least >= 1:
        raise AlertConfigError(f"{where}.at_least = {at_least!r}: a whole number >= 1")
    share = entry.get("share_at_least")
    if share is not None and (
        isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1
    ):
        raise AlertConfigError(f"{where}.share_at_least = {share!r}: a number in (0, 1]")
    seconds = {}
    for key, default in (("within_s", 900.0), ("cooldown_s", 900.0)):
        value = entry.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise AlertConfigError(f"{where}.{key} = {value!r}: seconds, a number >= 0")
        seconds[key] = float(value)
    if seconds["within_s"] < 1:
        raise AlertConfigError(f"{where}.within_s = {seconds['within_s']!r}: at least 1 s")
    return Rule(
        name=name,
        count=count,
        at_least=at_least,
        share_at_least=None if share is None else float(share),
        share_of=tuple(keys[1:]),
        **seconds,
    )


# --- in the sink ------------------------------------------------------------------------------


def payload(firing: Firing, site: str, text: str) -> dict[str, Any]:
    """The message published on ``contactpoint/v1/<site>/_site/alert`` (docs/WIRE.md)."""
    return {
        "schema": wire.SCHEMA,
        "msg_id": firing.id,
        "kind": "alert",
        "device": wire.SITE_SCOPE,
        "site": site,
        "alert": {
            "id": firing.id,
            "rule": firing.rule,
            "scope": "site",
            "at": iso(firing.at_ns),
            "window_start": iso(firing.window_start_ns),
            "count": firing.count,
            "at_least": firing.at_least,
            "total": firing.total,
            "share": firing.share,
            "share_at_least": firing.share_at_least,
            "refs": list(firing.refs),
            "text": text,
        },
    }


def describe(firing: Firing, rule: Rule, site: str) -> str:
    span = f"{rule.within_s / 60:g} min" if rule.within_s >= 60 else f"{rule.within_s:g} s"
    text = f"{rule.name}: {firing.count} x {rule.count} within {span} at site {site}"
    if firing.share is not None and firing.total is not None:
        text += f" ({firing.count} of {firing.total}, {firing.share:.0%})"
    return text


@dataclass
class SiteAlerts:
    """Checks the rules for a site whenever a contact or event of it is stored."""

    rules: Sequence[Rule]
    fired: list[Firing] = field(default_factory=list)  # this process, for logs and tests
    dirty: bool = True  # rows may wait to be published (True at start: leftovers of a crash)

    def observe(self, db: Database, msg: wire.Message, now_ns: int) -> list[Firing]:
        """Ingest's ``on_stored`` hook: runs inside the storing transaction."""
        new = _observations_of(msg)
        if not self.rules or not new:
            return []
        t = tables(db)
        horizon = max(round(r.within_s * NS) for r in self.rules)
        latest = max(o.at_ns for o in new)
        earliest = min(o.at_ns for o in new)
        seen = site_observations(db, msg.site, earliest - horizon, latest)
        out: list[Firing] = []
        for rule in self.rules:
            for obs in sorted(new, key=lambda o: o.at_ns):
                if rule.count not in obs.keys:
                    continue
                firing = check(
                    rule, seen, obs.at_ns, scope=wire.SITE_SCOPE,
                    last_fired_ns=_last_fired(t, msg.site, rule.name),
                )  # fmt: skip
                if firing is None:
                    continue
                body = payload(firing, msg.site, describe(firing, rule, msg.site))
                stored = rowcount(
                    db,
                    t.alerts.insert(
                        site=msg.site, scope=wire.SITE_SCOPE, id=firing.id, rule=rule.name,
                        at_iso=iso(firing.at_ns), body=to_json(body), received_ns=now_ns,
                    ).on_conflict_ignore(),
                )  # fmt: skip
                if stored:
                    out.append(firing)
        self.fired.extend(out)
        self.dirty = self.dirty or bool(out)
        return out

    def publish_pending(
        self, db: Database, publish: Callable[[str, bytes], bool], now_ns: int
    ) -> int:
        """Hand unpublished site alerts to ``publish(topic, payload)`` (True = taken); mark
        those taken. Returns how many were published."""
        if not self.dirty:
            return 0
        t = tables(db)
        a = t.alerts
        rows = list(
            a.select(a.site, a.id, a.body)
            .where(a.published_ns.is_null() & (a.scope == wire.SITE_SCOPE))
            .order_by(a.at_iso)
            .tuples()
        )
        sent = 0
        for site, alert_id_, body in rows:
            raw = json.dumps(from_json(body), separators=(",", ":"), ensure_ascii=False).encode()
            if not publish(wire.alert_topic(site), raw):
                return sent  # dirty stays set: tried again on the next round
            with transaction(db):
                a.update({a.published_ns: now_ns}).where(
                    (a.site == site) & (a.scope == wire.SITE_SCOPE) & (a.id == alert_id_)
                ).execute()
            sent += 1
        self.dirty = False
        return sent


def _observations_of(msg: wire.Message) -> list[Observation]:
    body = msg.body
    if isinstance(body, wire.Contact):
        out = [Observation(to_ns(body.start), body.id, contact_keys(body.tags))]
        out.extend(
            Observation(to_ns(e.at), e.id, event_keys(e.kind, e.body.get("question")))
            for e in body.events
        )
        return out
    if isinstance(body, wire.Event):
        return [
            Observation(to_ns(body.at), body.id, event_keys(body.kind, body.body.get("question")))
        ]
    return []


def site_observations(db: Database, site: str, from_ns: int, to_ns_: int) -> list[Observation]:
    """Every contact and event of ``site`` between the two times (inclusive), from the DB."""
    t = tables(db)
    lo, hi = iso(from_ns), iso(to_ns_)
    c, tg, e, d = t.contacts, t.tags, t.events, t.devices
    out: list[Observation] = []
    tags: dict[tuple[str, str], list[str]] = {}
    contacts = list(
        c.select(c.device, c.id, c.start_iso)
        .where((c.site == site) & (c.start_iso >= lo) & (c.start_iso <= hi))
        .tuples()
    )
    if contacts:
        for device, contact_id, tag in (
            tg.select(tg.device, tg.contact_id, tg.tag)
            .join(c, on=(c.device == tg.device) & (c.id == tg.contact_id))
            .where((c.site == site) & (c.start_iso >= lo) & (c.start_iso <= hi))
            .tuples()
        ):
            tags.setdefault((device, contact_id), []).append(tag)
    for device, contact_id, start in contacts:
        keys = contact_keys(tags.get((device, contact_id), []))
        out.append(Observation(to_ns(start), contact_id, keys))
    for event_id, kind, at, body in (
        e.select(e.id, e.kind, e.at_iso, e.body)
        .join(d, on=d.device == e.device)
        .where((d.site == site) & (e.at_iso >= lo) & (e.at_iso <= hi))
        .tuples()
    ):
        question = from_json(body).get("question") if kind == "question" else None
        out.append(Observation(to_ns(at), event_id, event_keys(kind, question)))
    return out


def _last_fired(t: Any, site: str, rule: str) -> int | None:
    a = t.alerts
    row = (
        a.select(a.at_iso)
        .where((a.site == site) & (a.scope == wire.SITE_SCOPE) & (a.rule == rule))
        .order_by(a.at_iso.desc())
        .limit(1)
        .tuples()
        .first()
    )
    return None if row is None else to_ns(row[0])


def stored_alerts(db: Database, site: str | None = None) -> list[dict[str, Any]]:
    """Every stored alert (devices' and the site's), oldest first, as listed by the CLI."""
    a = tables(db).alerts
    query = a.select(a.site, a.scope, a.body).order_by(a.at_iso, a.scope)
    if site is not None:
        query = query.where(a.site == site)
    out = []
    for row_site, scope, body in query.tuples():
        alert = dict(from_json(body).get("alert", {}))
        out.append({**alert, "site": row_site, "device": scope})
    return out
