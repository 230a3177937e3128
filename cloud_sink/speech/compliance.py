"""Compliance with the service standards per staff member, site, device or day: the figures of
``contactpoint sink report --compliance``.

Rules:
- A contact counts for a rule when its transcript was checked against that rule
  (``standard_checks``); the figure is ``met / checked`` (the share of checked contacts
  meeting the rule), per group and in total. Contacts are those of the report's period, grouped
  as the report groups them (``(unknown)`` staff included).
- Formats: ``table`` (one line per group and rule), ``csv`` (group, rule, checked, met,
  share rounded to 4 decimals) and ``json`` (strict JSON: ``{"by", "groups": [{"key",
  "rules": {rule: {"checked", "met", "share"}}}], "total"}``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from peewee import Database

from cloud_sink.models import tables

Figures = dict[str, dict[str, list[int]]]  # group -> rule -> [checked, met]


def checks(db: Database) -> dict[tuple[str, str], dict[str, bool]]:
    """(device, contact id) -> rule -> passed."""
    t = tables(db).standard_checks
    found: dict[tuple[str, str], dict[str, bool]] = {}
    for device, contact_id, rule, passed in t.select(
        t.device, t.contact_id, t.rule, t.passed
    ).tuples():
        found.setdefault((device, contact_id), {})[rule] = bool(passed)
    return found


def figures(
    contacts: Iterable[Mapping[str, Any]],
    checked: Mapping[tuple[str, str], Mapping[str, bool]],
    *,
    by: str | None,
    start: datetime | None,
    end: datetime | None,
    tz: ZoneInfo,
) -> tuple[Figures, dict[str, list[int]]]:
    from cloud_sink.report import ALL, _key, in_period, instant

    groups: Figures = {}
    total: dict[str, list[int]] = {}
    for contact in contacts:
        outcome = checked.get((str(contact["device"]), str(contact["id"])))
        at = instant(str(contact["start"]))
        if not outcome or not in_period(at, start, end):
            continue
        key = _key(by, contact, at, tz) if by else ALL
        for rule, passed in outcome.items():
            for into in (groups.setdefault(key, {}), total):
                cell = into.setdefault(rule, [0, 0])
                cell[0] += 1
                cell[1] += int(passed)
    return groups, total


def _share(cell: list[int]) -> float | None:
    return cell[1] / cell[0] if cell[0] else None


def render(by: str | None, groups: Figures, total: dict[str, list[int]], fmt: str) -> str:
    rows = [(key, groups[key]) for key in sorted(groups)] + [("(total)", total)]
    if fmt == "json":

        def part(rules: dict[str, list[int]]) -> dict[str, Any]:
            return {r: {"checked": c[0], "met": c[1], "share": _share(c)}
                    for r, c in sorted(rules.items())}  # fmt: skip

        doc = {
            "by": by,
            "definition": "share = contacts meeting the rule / contacts checked against it",
            "groups": [{"key": k, "rules": part(r)} for k, r in rows[:-1]],
            "total": part(total),
        }
        return json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([by or "group", "rule", "checked", "met", "share"])
        for key, rules in rows:
            for rule, cell in sorted(rules.items()):
                share = _share(cell)
                writer.writerow([key, rule, cell[0], cell[1],
                                 "" if share is None else round(share, 4)])  # fmt: skip
        return buffer.getvalue()
    lines = [f"compliance with the service standards (share = met / checked), by {by or 'all'}"]
    width = max([len(k) for k, _ in rows] + [10])
    for key, rules in rows:
        for rule, cell in sorted(rules.items()):
            share = _share(cell)
            shown = "–" if share is None else f"{share:.1%}"
            lines.append(f"{key:<{width}}  {rule:<20} {cell[1]:>6} / {cell[0]:<6} {shown:>7}")
    if len(rows) == 1 and not total:
        lines.append("no checked transcripts in the period (sink transcribe --rules FILE)")
    return "\n".join(lines) + "\n"
