"""Managers' commands: ``sink annotate``, ``sink reasons``, ``sink alerts``.

Rules:
- The checklist of reasons and the site alert rules come from the same TOML file as the
  ``[sink]`` table (``--config``): ``[[reasons]]`` and ``[[alerts.rules]]``.
- ``sink annotate`` ticks reasons for one contact (who: ``--by``, default the login name);
  ``sink reasons`` counts them per site and site/device/day, as a table, CSV or JSON;
  ``sink alerts`` lists the stored alerts (the devices' and the site-level ones).
- Errors the user can fix print one line on stderr and exit 2 (the caller's guard); a place
  holding no sink database is one (`cloud_sink.migrations.open_existing`: nothing is created).
"""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import json
import time
import tomllib
from pathlib import Path
from typing import Any

from cloud_sink.alerts import SiteAlerts, stored_alerts
from cloud_sink.migrations import open_existing
from cloud_sink.reasons import Reason, annotate, count, parse_reasons
from contract.alerts import parse_rules


def read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None


def reasons_from(path: Path | None) -> list[Reason]:
    return parse_reasons(read_toml(path), str(path))


def site_alerts_from(path: Path | None) -> SiteAlerts | None:
    """The site alert rules of ``--config`` (None: the file has none)."""
    rules = parse_rules(read_toml(path), str(path))
    return SiteAlerts(rules) if rules else None


def add_commands(sub: Any, guarded: Any) -> None:
    """Register the managers' commands on ``sink``'s subparsers (``guarded`` wraps handlers)."""
    ann = sub.add_parser("annotate", help="tick reasons for dissatisfaction on a contact")
    ann.add_argument("contact", metavar="CONTACT_ID", help="contact id (or a unique prefix)")
    ann.add_argument("--data", type=Path, required=True, help="data directory")
    ann.add_argument("--db", help="postgresql://... (default: SQLite in --data)")
    ann.add_argument("--config", type=Path, help="TOML file with the [[reasons]] checklist")
    ann.add_argument(
        "--reason", action="append", default=[], metavar="CODE", help="a reason code (repeat)"
    )
    ann.add_argument("--note", default="", help="free text")
    ann.add_argument("--by", help="who annotates (default: the login name)")
    ann.add_argument("--device", help="the device, when two devices used the same contact id")
    ann.set_defaults(handler=guarded(_annotate))

    rep = sub.add_parser("reasons", help="count reasons for dissatisfaction per period and site")
    rep.add_argument("--data", type=Path, required=True, help="data directory")
    rep.add_argument("--db", help="postgresql://... (default: SQLite in --data)")
    rep.add_argument("--config", type=Path, help="TOML file with the [[reasons]] checklist")
    rep.add_argument("--from", dest="start", help="contacts starting at or after (ISO date/time)")
    rep.add_argument("--to", dest="end", help="contacts starting before (ISO date/time)")
    rep.add_argument("--by", choices=("site", "device", "day"), default="site")
    rep.add_argument("--format", choices=("table", "csv", "json"), default="table")
    rep.set_defaults(handler=guarded(reasons_command))

    alerts = sub.add_parser("alerts", help="list the alerts the sink stored")
    alerts.add_argument("--data", type=Path, required=True, help="data directory")
    alerts.add_argument("--db", help="postgresql://... (default: SQLite in --data)")
    alerts.add_argument("--site", help="only this site")
    alerts.add_argument("--json", action="store_true", help="one JSON object per line")
    alerts.set_defaults(handler=guarded(_alerts))


def _annotate(args: argparse.Namespace) -> int:
    allowed = reasons_from(args.config)
    db = open_existing(args.db, args.data)
    try:
        done = annotate(
            db,
            args.contact,
            args.reason,
            allowed=allowed,
            note=args.note,
            by=args.by or getpass.getuser(),
            now_ns=time.time_ns(),
            device=args.device,
        )
    finally:
        db.close()
    print(f"{done.device}/{done.contact_id}: {', '.join(done.reasons)} (by {done.by})")
    return 0


def reasons_command(args: argparse.Namespace) -> int:
    """``sink reasons``; also what ``sink report --reasons`` should run."""
    labels = reasons_from(args.config)
    db = open_existing(args.db, args.data)
    try:
        rows = count(db, by=args.by, start=args.start, end=args.end, reasons=labels)
    finally:
        db.close()
    print(render(rows, args.by, args.format), end="")
    return 0


def render(rows: list[dict[str, Any]], by: str, fmt: str) -> str:
    columns = ["site", "reason", "label", "contacts"] if by == "site" else [
        "site", by, "reason", "label", "contacts",
    ]  # fmt: skip
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: r[k] for k in columns} for r in rows)
        return out.getvalue()
    if not rows:
        return "no annotated contacts in this period\n"
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines.append("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        lines.append("  ".join(str(r[c]).ljust(widths[c]) for c in columns))
    return "\n".join(lines) + "\n"


def _alerts(args: argparse.Namespace) -> int:
    db = open_existing(args.db, args.data)
    try:
        rows = stored_alerts(db, args.site)
    finally:
        db.close()
    for alert in rows:
        if args.json:
            print(json.dumps(alert, ensure_ascii=False))
        else:
            print(f"{alert['at']}  {alert['site']}/{alert['device']}  {alert.get('text', '')}")
    return 0
