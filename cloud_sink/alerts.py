"""Site-level alerts: the device's alert rules, evaluated over ALL devices of a site.

Rules:
- The rule model and the engine are the contract's (``contract/alerts.py``), the code the
  devices run too: observations (events at their time, contacts at their start), windows on
  event time, checked for every window that holds a newly stored observation, oldest first,
  so the order the devices deliver in does not matter (but an alert is never withdrawn: a
  window that fired before a late observation of it arrived does not count it again);
  firings cover their window and are ``cooldown_s`` apart; the alert id is a digest of
  (``_site``, rule, firing time): stable.
- Rules come from the ``[[alerts.rules]]`` tables of the sink's ``--config`` file (the same
  keys as the device's ``alerts.rules``, :func:`contract.alerts.parse_rules`); a bad rule is
  refused naming the rule, the key and the fix.
- The sink checks them inside the transaction that stores a contact or an event (the
  ``Ingest.on_stored`` hook), reading the site's observations and the rule's earlier firings
  from the database, so a late device, a duplicate delivery (stored once) and a restart all
  see the same history. Workers storing for one site take turns: on PostgreSQL the check
  first takes the site's transaction-scoped advisory lock, so a worker waits for another's
  commit and then reads its rows (READ COMMITTED); on SQLite a write transaction holds the
  database's one write lock from its start. A firing is a row of ``alerts`` (scope
  ``_site``), unique per id; :meth:`SiteAlerts.publish_pending` sends unpublished rows on
  ``contactpoint/v1/<site>/_site/alert`` and marks them published.
- Device offline (:class:`DeviceWatch`): a site alert of rule ``device_offline`` (scope
  ``_site``, column ``device`` the device) is raised when a device's status says offline (its
  last will, or a clean goodbye) or when nothing came from it for ``offline_after_s`` (the
  worker's sweep, every ``check_every_s``); one active alert per device at a time. Its id is
  :func:`~contract.alerts.alert_id` of (``_site:<device>``, rule, time it went offline):
  stable. Any later message from the device but an offline status clears it: the row gets
  ``cleared_ns`` and ``alert.cleared_at``, and is published once more (a new ``msg_id``) so
  that the managers see it return.
- Compliance (:class:`ComplianceAlerts`, rules ``[[alerts.compliance]]``, the contract's
  :class:`~contract.alerts.ComplianceRule` and engine): whenever a contact's transcript is
  checked against the service standards (``sink transcribe``, ``sink standards``), inside that
  transaction and under the site's lock, the figure of each rule watching one of the checked
  standards is computed for the contact's site (``per = "site"``) or its staff member at that
  site (``per = "staff"``; a contact with no staff is in no staff figure) from the stored
  checks, and the rule's alert raised or cleared: one active alert per (site, rule, staff) at a
  time, a site alert (scope ``_site``, ``device`` NULL) whose body carries ``alert.compliance``
  (the standard, the staff member, the threshold, the window, checked/met/share); cleared like
  ``device_offline`` (``cleared_ns``, ``alert.cleared_at``, ``alert.compliance.recovered``,
  published once more with a new ``msg_id``). Its id is :func:`~contract.alerts.alert_id` of
  (``_site:compliance:<staff>``, rule, raise time).
- Publishing: :meth:`SiteAlerts.publish_pending` looks for unpublished site alerts whenever
  this process stored one, and every ``look_every_s`` in any case: compliance alerts are
  stored by ``sink transcribe``, another process, and ``sink run`` publishes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from peewee import Database

from cloud_sink import wire
from cloud_sink.db import execute_sql, is_sqlite, rowcount, transaction
from cloud_sink.models import from_json, tables, to_json
from contract.alerts import (
    NS,
    AlertRule,
    Checked,
    ComplianceFigure,
    ComplianceRule,
    Firing,
    Observation,
    Span,
    alert_id,
    compliance_change,
    compliance_window,
    contact_keys,
    describe,
    describe_compliance,
    evaluate,
    event_keys,
)
from contract.wire import AlertMessage, alert_message, iso

_LOCK: Final = "contactpoint.site_alerts:"  # + site: the PostgreSQL advisory lock of a site

# --- times --------------------------------------------------------------------------------------


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(stamp: str) -> int:
    """Wall-clock ns of an ISO 8601 time with a zone (exact to the microsecond)."""
    return (datetime.fromisoformat(stamp) - _EPOCH) // timedelta(microseconds=1) * 1000


# --- in the sink ------------------------------------------------------------------------------


def payload(firing: Firing, site: str, text: str) -> AlertMessage:
    """The message published on ``contactpoint/v1/<site>/_site/alert`` (docs/WIRE.md): the
    contract's alert message, ``device`` ``_site`` and ``msg_id`` the alert's id."""
    return alert_message(firing, text, device=wire.SITE_SCOPE, site=site, msg_id=firing.id)


@dataclass
class SiteAlerts:
    """Checks the rules for a site whenever a contact or event of it is stored."""

    rules: Sequence[AlertRule]
    fired: list[Firing] = field(default_factory=list)  # this process, for logs and tests
    dirty: bool = True  # rows may wait to be published (True at start: leftovers of a crash)
    #: look for rows another process stored (compliance alerts) at least this often
    look_every_s: float = 5.0
    _looked_ns: int | None = None

    def lock_sites(self, db: Database, sites: Iterable[str]) -> None:
        """Ingest's ``lock_sites`` hook: a batch takes the locks :meth:`observe` will take, all
        of them at its start and sorted by site, so that :meth:`observe` (in message order)
        only takes them again (advisory locks stack within a transaction) and two workers'
        batches over the same sites in opposite orders take turns instead of deadlocking."""
        if not self.rules or is_sqlite(db):
            return
        for site in sorted(set(sites)):
            execute_sql(db, "SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK + site,))

    def observe(self, db: Database, msg: wire.Message, now_ns: int) -> list[Firing]:
        """Ingest's ``on_stored`` hook: runs inside the storing transaction."""
        new = _observations_of(msg)
        if not self.rules or not new:
            return []
        if not is_sqlite(db):  # (SQLite: every write transaction holds the one lock already)
            execute_sql(db, "SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK + msg.site,))
        t = tables(db)
        earliest = min(o.at_ns for o in new)
        latest = max(o.at_ns for o in new)
        within = max(round(r.within_s * NS) for r in self.rules)
        reach = max(round(max(r.within_s, r.cooldown_s) * NS) for r in self.rules)
        # every window holding a new observation, and what those windows hold
        seen = site_observations(db, msg.site, earliest - within, latest + within)
        out: list[Firing] = []
        for rule in self.rules:
            fired = _fired(t, msg.site, rule.name, earliest - reach, latest + within + reach)
            for firing in evaluate(rule, seen, new, scope=wire.SITE_SCOPE, fired=fired):
                text = describe(firing, rule, f"site {msg.site}")
                body = payload(firing, msg.site, text)
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
        due = self._looked_ns is None or now_ns - self._looked_ns >= self.look_every_s * NS
        if not (self.dirty or due):
            return 0
        self._looked_ns = now_ns
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
            with transaction(db):  # only the version published: another process may have
                # changed the row meanwhile (cleared it), and that version is still to go
                a.update({a.published_ns: now_ns}).where(
                    (a.site == site)
                    & (a.scope == wire.SITE_SCOPE)
                    & (a.id == alert_id_)
                    & (a.body == body)
                ).execute()
            sent += 1
        self.dirty = False
        return sent


OFFLINE_RULE: Final = "device_offline"


@dataclass
class DeviceWatch:
    """Raises and clears the ``device_offline`` site alerts (see the module notes)."""

    offline_after_s: float | None  # None: only a status that says offline raises it
    alerts: SiteAlerts  # publishes them (its ``dirty`` flag is set on every change)
    changes: list[tuple[str, str, bool]] = field(default_factory=list)  # (device, id, raised)

    def seen(self, db: Database, site: str, device: str, status: wire.Status | None,
             now_ns: int) -> None:  # fmt: skip
        """Ingest's ``on_seen`` hook (inside the storing transaction): a stored message."""
        if status is not None and not status.online:
            self._raise(db, site, device, now_ns, "its status says offline (last will)")
        else:
            self._clear(db, device, now_ns)

    def offline(self, db: Database, devices: Sequence[str]) -> set[str]:
        """Ingest's ``seen_matters`` hook: which of ``devices`` have an active offline alert,
        in one query (one SQL text for any number of devices). For any other device,
        :meth:`seen` without a status clears nothing, so it need not run."""
        if not devices:
            return set()
        listed: object = list(devices)
        among = "= ANY(%s)"
        if is_sqlite(db):
            among, listed = "IN (SELECT value FROM json_each(?))", json.dumps(listed)
        rows = execute_sql(
            db,
            f"SELECT DISTINCT device FROM alerts WHERE rule = {db.param} "  # noqa: S608 - ours
            f"AND cleared_ns IS NULL AND device {among}",
            (OFFLINE_RULE, listed),
        ).fetchall()
        return {str(row[0]) for row in rows}

    def sweep(self, db: Database, now_ns: int) -> int:
        """Raise the alert for every device silent longer than ``offline_after_s``."""
        if self.offline_after_s is None:
            return 0
        limit = now_ns - round(self.offline_after_s * NS)
        p = db.param
        silent = execute_sql(
            db,
            "SELECT d.site, d.device, d.last_seen_ns FROM devices d "  # noqa: S608 - placeholders
            f"WHERE d.last_seen_ns < {p} AND NOT EXISTS (SELECT 1 FROM alerts a WHERE "
            f"a.device = d.device AND a.rule = {p} AND a.cleared_ns IS NULL)",
            (limit, OFFLINE_RULE),
        ).fetchall()
        raised = 0
        for site, device, last_seen in silent:
            with transaction(db):
                silent_s = (now_ns - int(last_seen)) / NS
                why = f"nothing from it for {silent_s:.0f} s (since {iso(int(last_seen))})"
                raised += self._raise(db, str(site), str(device), now_ns, why)
        return raised

    def _active(self, db: Database, device: str) -> tuple[str, str, str] | None:
        a = tables(db).alerts
        row = (
            a.select(a.site, a.id, a.body)
            .where((a.device == device) & (a.rule == OFFLINE_RULE) & a.cleared_ns.is_null())
            .order_by(a.at_iso.desc())
            .tuples()
            .first()
        )
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    def _raise(self, db: Database, site: str, device: str, now_ns: int, why: str) -> int:
        if not is_sqlite(db):  # workers take turns per site (as observe does)
            execute_sql(db, "SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK + site,))
        if self._active(db, device) is not None:
            return 0
        scope = f"{wire.SITE_SCOPE}:{device}"
        firing = Firing(
            id=alert_id(scope, OFFLINE_RULE, now_ns), rule=OFFLINE_RULE, scope=wire.SITE_SCOPE,
            at_ns=now_ns, window_start_ns=now_ns, count=1, at_least=1, total=None, share=None,
            share_at_least=None, refs=(device,),
        )  # fmt: skip
        body = payload(firing, site, f"device {device} of site {site} is offline: {why}")
        stored = rowcount(
            db,
            tables(db).alerts.insert(
                site=site, scope=wire.SITE_SCOPE, id=firing.id, rule=OFFLINE_RULE,
                at_iso=iso(now_ns), body=to_json(body), received_ns=now_ns, device=device,
            ).on_conflict_ignore(),
        )  # fmt: skip
        if stored:
            self.changes.append((device, firing.id, True))
            self.alerts.dirty = True
        return stored

    def _clear(self, db: Database, device: str, now_ns: int) -> None:
        active = self._active(db, device)
        if active is None:
            return
        site, id_, raw = active
        body = from_json(raw)
        body["msg_id"] = alert_id(f"{wire.SITE_SCOPE}:{device}:cleared", OFFLINE_RULE, now_ns)
        body["alert"]["cleared_at"] = iso(now_ns)
        body["alert"]["text"] = f"{body['alert']['text']}; back at {iso(now_ns)}"
        a = tables(db).alerts
        cleared = a.update(
            {a.cleared_ns: now_ns, a.body: to_json(body), a.published_ns: None}
        ).where(
            (a.site == site)
            & (a.scope == wire.SITE_SCOPE)
            & (a.id == id_)
            & a.cleared_ns.is_null()  # another worker's batch of the device may clear it first
        )
        if not rowcount(db, cleared):
            return
        self.changes.append((device, id_, False))
        self.alerts.dirty = True


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


def _fired(t: Any, site: str, rule: str, from_ns: int, to_ns_: int) -> list[Span]:
    """What the rule's stored site alerts ending between the two times cover."""
    a = t.alerts
    rows = (
        a.select(a.at_iso, a.body)
        .where(
            (a.site == site)
            & (a.scope == wire.SITE_SCOPE)
            & (a.rule == rule)
            & (a.at_iso >= iso(from_ns))
            & (a.at_iso <= iso(to_ns_))
        )
        .tuples()
    )
    out = []
    for at, body in rows:
        start = from_json(body).get("alert", {}).get("window_start")
        end_ns = to_ns(at)
        out.append(Span(to_ns(start) if isinstance(start, str) else end_ns, end_ns))
    return out


def stored_alerts(db: Database, site: str | None = None) -> list[dict[str, Any]]:
    """Every stored alert (devices' and the site's), oldest first, as listed by the CLI."""
    a = tables(db).alerts
    query = a.select(a.site, a.scope, a.body, a.device, a.cleared_ns).order_by(a.at_iso, a.scope)
    if site is not None:
        query = query.where(a.site == site)
    out = []
    for row_site, scope, body, device, cleared in query.tuples():
        alert = dict(from_json(body).get("alert", {}))
        row = {**alert, "site": row_site, "device": device or scope}
        if device is not None or "compliance" in alert:  # active until cleared
            row["active"] = cleared is None
        out.append(row)
    return out


# --- compliance ---------------------------------------------------------------------------------


@dataclass
class ComplianceAlerts:
    """Raises and clears the compliance alerts (see the module notes)."""

    rules: Sequence[ComplianceRule]
    changes: list[tuple[str, str | None, str, bool]] = field(default_factory=list)
    # (rule, staff, alert id, raised): this process, for logs and tests

    def checked(
        self,
        db: Database,
        *,
        site: str,
        staff: str | None,
        standards: Sequence[str],
        now_ns: int,
    ) -> None:
        """A contact of ``site`` served by ``staff`` was checked against ``standards`` (inside
        the transaction that stored its checks)."""
        watched = [r for r in self.rules if r.standard in standards]
        if not watched:
            return
        if not is_sqlite(db):  # workers take turns per site (as SiteAlerts.observe does)
            execute_sql(db, "SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK + site,))
        for rule in watched:
            if rule.per == "staff" and staff is None:
                continue
            self.update(db, rule, site, staff if rule.per == "staff" else None, now_ns)

    def update_all(self, db: Database, now_ns: int) -> None:
        """Every rule's figure for every site (and staff member) with checks, e.g. after
        ``sink standards`` checked every transcript again (inside the caller's transaction)."""
        for rule in self.rules:
            who = "c.staff" if rule.per == "staff" else "NULL"
            groups = execute_sql(
                db,
                f"SELECT DISTINCT c.site, {who} FROM standard_checks s JOIN contacts c "  # noqa: S608 - no user text
                f"ON c.device = s.device AND c.id = s.contact_id WHERE s.rule = {db.param}",
                (rule.standard,),
            ).fetchall()
            for site, staff in sorted(groups, key=lambda g: (str(g[0]), str(g[1]))):
                if rule.per == "staff" and staff is None:
                    continue
                if not is_sqlite(db):
                    execute_sql(
                        db, "SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK + str(site),)
                    )
                self.update(db, rule, str(site), None if staff is None else str(staff), now_ns)

    def update(
        self, db: Database, rule: ComplianceRule, site: str, staff: str | None, now_ns: int
    ) -> None:
        """Compute the rule's figure for (site, staff) and raise or clear its alert."""
        figure = compliance_window(rule, _checks(db, rule, site, staff))
        active = _active_compliance(db, site, rule.name, staff)
        change = compliance_change(rule, figure, active=active is not None)
        if figure is None or change is None:
            return
        if change == "raise":
            self._raise(db, rule, site=site, staff=staff, figure=figure, now_ns=now_ns)
        elif active is not None:
            self._clear(
                db, rule, site=site, staff=staff, active=active, figure=figure, now_ns=now_ns
            )

    def _raise(
        self,
        db: Database,
        rule: ComplianceRule,
        *,
        site: str,
        staff: str | None,
        figure: ComplianceFigure,
        now_ns: int,
    ) -> None:
        share = round(float(figure.share), 4)
        firing = Firing(
            id=alert_id(f"{wire.SITE_SCOPE}:compliance:{staff or ''}", rule.name, now_ns),
            rule=rule.name, scope=wire.SITE_SCOPE, at_ns=now_ns, window_start_ns=figure.from_ns,
            count=figure.met, at_least=rule.needed, total=figure.checked, share=share,
            share_at_least=None, refs=figure.failed,
        )  # fmt: skip
        where = f"site {site}" + (f", staff {staff}" if staff is not None else "")
        body: dict[str, Any] = dict(payload(firing, site, describe_compliance(rule, figure, where)))
        body["alert"] = {
            **body["alert"],
            "compliance": {
                "standard": rule.standard, "per": rule.per, "staff": staff,
                "below": rule.below, "clear_at": rule.clear_level, "last": rule.last,
                "within_s": rule.within_s, "checked": figure.checked, "met": figure.met,
                "share": share, "window_end": iso(figure.to_ns),
            },
        }  # fmt: skip
        stored = rowcount(
            db,
            tables(db).alerts.insert(
                site=site, scope=wire.SITE_SCOPE, id=firing.id, rule=rule.name,
                at_iso=iso(now_ns), body=to_json(body), received_ns=now_ns,
            ).on_conflict_ignore(),
        )  # fmt: skip
        if stored:
            self.changes.append((rule.name, staff, firing.id, True))

    def _clear(
        self,
        db: Database,
        rule: ComplianceRule,
        *,
        site: str,
        staff: str | None,
        active: tuple[str, dict[str, Any]],
        figure: ComplianceFigure,
        now_ns: int,
    ) -> None:
        id_, body = active
        share = round(float(figure.share), 4)
        body["msg_id"] = alert_id(
            f"{wire.SITE_SCOPE}:compliance:{staff or ''}:cleared", rule.name, now_ns
        )
        alert = body["alert"]
        alert["cleared_at"] = iso(now_ns)
        alert["compliance"]["recovered"] = {
            "checked": figure.checked, "met": figure.met, "share": share,
            "window_end": iso(figure.to_ns),
        }  # fmt: skip
        alert["text"] = (
            f"{alert['text']}; back to {float(figure.share):.0%} ({figure.met} of "
            f"{figure.checked}) at {iso(now_ns)}"
        )
        a = tables(db).alerts
        a.update({a.cleared_ns: now_ns, a.body: to_json(body), a.published_ns: None}).where(
            (a.site == site) & (a.scope == wire.SITE_SCOPE) & (a.id == id_)
        ).execute()
        self.changes.append((rule.name, staff, id_, False))


def _checks(db: Database, rule: ComplianceRule, site: str, staff: str | None) -> list[Checked]:
    """The stored checks of ``rule.standard`` for contacts of ``site`` (and ``staff``) that its
    window can hold: the newest ``last`` by start, or those within ``within_s`` of the newest."""
    p = db.param
    where = f"c.site = {p} AND s.rule = {p}" + (f" AND c.staff = {p}" if staff is not None else "")
    args: list[Any] = [site, rule.standard] + ([staff] if staff is not None else [])
    base = (
        "SELECT c.start_iso, c.id, s.passed FROM standard_checks s JOIN contacts c "  # noqa: S608 - placeholders
        f"ON c.device = s.device AND c.id = s.contact_id WHERE {where}"
    )
    if rule.last is not None:
        sql = f"{base} ORDER BY c.start_iso DESC, c.id DESC LIMIT {int(rule.last)}"
        rows = execute_sql(db, sql, args).fetchall()
    else:
        newest = execute_sql(
            db,
            "SELECT MAX(c.start_iso) FROM standard_checks s JOIN contacts c "  # noqa: S608 - placeholders
            f"ON c.device = s.device AND c.id = s.contact_id WHERE {where}",
            args,
        ).fetchone()
        if newest is None or newest[0] is None:
            return []
        start = iso(to_ns(str(newest[0])) - round((rule.within_s or 0) * NS))
        rows = execute_sql(db, f"{base} AND c.start_iso >= {p}", [*args, start]).fetchall()
    return [Checked(to_ns(str(at)), str(ref), bool(passed)) for at, ref, passed in rows]


def _active_compliance(
    db: Database, site: str, rule: str, staff: str | None
) -> tuple[str, dict[str, Any]] | None:
    """The rule's active (not cleared) alert for (site, staff): its id and body."""
    a = tables(db).alerts
    rows = (
        a.select(a.id, a.body)
        .where(
            (a.site == site) & (a.scope == wire.SITE_SCOPE) & (a.rule == rule)
            & a.cleared_ns.is_null()
        )
        .tuples()
    )  # fmt: skip
    for id_, raw in rows:
        body = from_json(raw)
        if body.get("alert", {}).get("compliance", {}).get("staff") == staff:
            return str(id_), body
    return None
