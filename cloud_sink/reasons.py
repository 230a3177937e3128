"""Reasons for dissatisfaction: the managers' checklist, annotations of contacts, counts.

Rules:
- The checklist is the ``[[reasons]]`` tables (``code``, ``label``) of the sink's ``--config``
  file; without any, :data:`DEFAULT_REASONS`. Codes are unique, lower-case words.
- An annotation is one row per ticked reason with the contact, the note, who and when
  (``annotations``, migration 2); annotating again adds rows, nothing is overwritten.
- A contact is named by its id, or by a prefix of at least 6 characters that names exactly
  one contact; ``device`` narrows it when two devices used the same id.
- An unknown reason or contact is a :class:`ReasonError` that lists what is allowed.
- Counts: per reason, the number of distinct contacts that have it, grouped by site, device or
  day (of the contact's start, UTC) and site; ``start``/``end`` bound the contact's start
  (``start <= t < end``, ISO dates or times).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from peewee import Database

from cloud_sink.db import transaction
from cloud_sink.models import tables

GroupBy = Literal["site", "device", "day"]
_CODE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MIN_PREFIX: Final = 6


class ReasonError(ValueError):
    """Bad input to annotate or count; the message says what is allowed."""


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    label: str


DEFAULT_REASONS: Final[tuple[Reason, ...]] = (
    Reason("rude", "Staff were rude or inattentive"),
    Reason("long_wait", "Long wait or queue"),
    Reason("not_available", "Product or service not available"),
    Reason("price_payment", "Price or payment problem"),
    Reason("no_help", "Staff could not answer or help"),
    Reason("equipment", "Equipment failure (card terminal, till)"),
    Reason("other", "Other (see the note)"),
)


def parse_reasons(doc: dict[str, Any], source: str) -> list[Reason]:
    """The ``[[reasons]]`` of a parsed TOML document; the defaults when there are none."""
    raw = doc.get("reasons")
    if raw is None:
        return list(DEFAULT_REASONS)
    if not isinstance(raw, list) or not raw:
        raise ReasonError(f"{source}: reasons must be a non-empty list of [[reasons]] tables")
    out: list[Reason] = []
    for i, entry in enumerate(raw):
        where = f"{source}: reasons[{i}]"
        if not isinstance(entry, dict):
            raise ReasonError(f"{where}: must be a table with code and label")
        extra = sorted(set(entry) - {"code", "label"})
        if extra:
            raise ReasonError(f"{where}: unknown key(s) {', '.join(extra)}; keys: code, label")
        code, label = entry.get("code"), entry.get("label", "")
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise ReasonError(
                f"{where}.code = {code!r}: lower-case letters, digits, '-' and '_' (e.g. "
                "'long_wait')"
            )
        if not isinstance(label, str) or len(label) > 200:
            raise ReasonError(f"{where}.label: text of at most 200 characters")
        if any(r.code == code for r in out):
            raise ReasonError(f"{where}: code {code!r} appears twice")
        out.append(Reason(code, label or code))
    return out


def _allowed(reasons: Sequence[Reason]) -> str:
    return ", ".join(f"{r.code} ({r.label})" for r in reasons)


@dataclass(frozen=True, slots=True)
class Annotated:
    device: str
    contact_id: str
    reasons: tuple[str, ...]
    note: str
    by: str
    at_ns: int


def find_contact(db: Database, contact: str, device: str | None = None) -> tuple[str, str]:
    """(device, id) of the one contact ``contact`` names (an id or a unique prefix)."""
    c = tables(db).contacts
    if len(contact) < MIN_PREFIX:
        raise ReasonError(f"contact id {contact!r}: give the id or at least {MIN_PREFIX} chars")
    where = c.id.startswith(contact.lower())
    if device is not None:
        where &= c.device == device
    found = [(str(d), str(i)) for d, i in c.select(c.device, c.id).where(where).limit(10).tuples()]
    exact = [row for row in found if row[1] == contact.lower()]
    if len(exact) == 1:
        return exact[0]
    if not found:
        scope = f" of device {device}" if device else ""
        raise ReasonError(
            f"no contact{scope} with id {contact!r} in the sink's database; "
            "'contactpoint sink contacts --data DIR' lists them"
        )
    if len(found) > 1:
        names = ", ".join(f"{d}/{i}" for d, i in found)
        raise ReasonError(
            f"{contact!r} names {len(found)} contacts ({names}): give the whole id or --device"
        )
    return found[0]


def annotate(
    db: Database,
    contact: str,
    reasons: Sequence[str],
    *,
    allowed: Sequence[Reason],
    note: str = "",
    by: str,
    now_ns: int,
    device: str | None = None,
) -> Annotated:
    """Store the ticked ``reasons`` (codes) for one contact."""
    if not reasons:
        raise ReasonError(f"tick at least one --reason; allowed: {_allowed(allowed)}")
    codes = {r.code for r in allowed}
    for code in reasons:
        if code not in codes:
            raise ReasonError(f"unknown reason {code!r}; allowed: {_allowed(allowed)}")
    if "\x00" in note or "\x00" in by:
        raise ReasonError("note and name must not contain NUL characters")
    unique = tuple(dict.fromkeys(reasons))
    a = tables(db).annotations
    with transaction(db):
        found_device, contact_id = find_contact(db, contact, device)
        a.insert(
            [
                {
                    "device": found_device, "contact_id": contact_id, "reason": code,
                    "note": note, "by_name": by, "at_ns": now_ns,
                }
                for code in unique
            ]
        ).execute()  # fmt: skip
    return Annotated(found_device, contact_id, unique, note, by, now_ns)


def _bound(text: str | None, name: str) -> str | None:
    """An ISO date or time as the lexically comparable text of contacts.start_iso."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReasonError(
            f"--{name} {text!r} is not an ISO date or time (e.g. 2026-11-23 or "
            "2026-11-23T09:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = moment.astimezone(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def count(
    db: Database,
    *,
    by: GroupBy = "site",
    start: str | None = None,
    end: str | None = None,
    reasons: Sequence[Reason] = DEFAULT_REASONS,
) -> list[dict[str, Any]]:
    """Rows ``{site, group, reason, label, contacts}``, sorted by site, group, count desc."""
    t = tables(db)
    a, c = t.annotations, t.contacts
    lo, hi = _bound(start, "from"), _bound(end, "to")
    query = a.select(a.device, a.contact_id, a.reason, c.site, c.start_iso).join(
        c, on=(c.device == a.device) & (c.id == a.contact_id)
    )
    if lo is not None:
        query = query.where(c.start_iso >= lo)
    if hi is not None:
        query = query.where(c.start_iso < hi)
    groups: dict[tuple[str, str, str], set[tuple[str, str]]] = {}
    for device, contact_id, reason, site, start_iso in query.tuples():
        group = {"site": site, "device": device, "day": start_iso[:10]}[by]
        groups.setdefault((site, group, reason), set()).add((device, contact_id))
    labels = {r.code: r.label for r in reasons}
    rows: list[dict[str, Any]] = [
        {
            "site": site,
            by: group,
            "reason": reason,
            "label": labels.get(reason, reason),
            "contacts": len(contacts),
        }
        for (site, group, reason), contacts in groups.items()
    ]
    rows.sort(key=lambda r: (str(r["site"]), str(r[by]), -int(r["contacts"]), str(r["reason"])))
    return rows


def annotations_of(db: Database, device: str, contact_id: str) -> list[dict[str, Any]]:
    a = tables(db).annotations
    query = (
        a.select(a.reason, a.note, a.by_name, a.at_ns)
        .where((a.device == device) & (a.contact_id == contact_id))
        .order_by(a.id)
    )
    return [
        {"reason": reason, "note": note, "by": by, "at_ns": at_ns}
        for reason, note, by, at_ns in query.tuples()
    ]
