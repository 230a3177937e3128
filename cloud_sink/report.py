"""``contactpoint sink report``: the metrics per device, site, staff member, day or hour.

Rules:
- Input: every contact the sink stored (``Ingest.contacts()``) and every event outside a
  contact (receipts, surveys and force-majeure presses count wherever they happened).
- Period: ``start`` <= a contact's start (an event's time) < ``end``; either bound may be
  missing, and with neither the report covers everything. A bound without a time zone is read
  in the report's time zone, a bare date is midnight there.
- Groups (``by``): ``device`` (its id), ``site``, ``staff`` (the contact's ``staff``; unknown
  and events outside contacts without one: ``(unknown)``), ``day`` (``YYYY-MM-DD``) or
  ``hour`` (``YYYY-MM-DD HH:00``) of the start in the report's time zone; no ``by``: one group
  ``(all)``. Groups are sorted by key; the total over the whole period comes last.
- Times a device may send that no calendar can place never stop a report: a time whose
  local day is out of the calendar's range (year 1 with offset +14:00, year 9999 with
  -12:00) is grouped by day or hour under ``(time out of range)``; a time that is not ISO
  8601 with an offset (from a database an older sink wrote) under ``(unreadable time)``, and
  it is outside every period that has a bound.
- The metrics and their parameters are :mod:`cloud_sink.metrics`'s (definitions there); every
  label a person reads says what it divides by what (``Definition.formula``).
- ``--compliance``: the service-standard figures instead (share of checked contacts meeting
  each rule, per group: cloud_sink/speech/compliance.py).
- Formats: ``table`` (rich, for a terminal; each column headed by its name and formula),
  ``csv`` (one row per group and the total; ratios rounded to 4 decimals; empty cells for "no
  data"), ``json`` (keys of each group's ``metrics`` exactly
  :data:`cloud_sink.metrics.METRIC_KEYS`, plus the ``counts`` they come from and the
  ``definitions``: key -> formula; strict JSON) and ``png`` (a chart drawn with matplotlib's Agg
  backend: contacts served, the rating indices, the sales and coverage ratios with the
  force-majeure threshold; groups whose period is not meaningful are hatched and marked).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from peewee import Database

from cloud_sink.ingest import Ingest
from cloud_sink.metrics import (
    DEFINITIONS,
    METRIC_KEYS,
    TERSE_WORDS,
    Counts,
    Definition,
    Metrics,
    Parameters,
    count,
    metrics,
)
from cloud_sink.models import from_json

GROUPS: Final = ("device", "site", "staff", "day", "hour")
FORMATS: Final = ("table", "csv", "json", "png")
ALL: Final = "(all)"
UNKNOWN: Final = "(unknown)"
OUT_OF_RANGE: Final = "(time out of range)"
UNREADABLE: Final = "(unreadable time)"
CSV_DECIMALS: Final = 4
Progress = Callable[[int, int], None]


class ReportError(ValueError):
    """Bad report arguments; the message names the argument and the fix."""


def parse_when(text: str, tz: ZoneInfo, what: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is local time in ``tz``."""
    try:
        if len(text) == 10:
            stamp = datetime.combine(date.fromisoformat(text), time())
        else:
            stamp = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(
            f"{what} {text!r} is not an ISO 8601 date or time; write e.g. 2026-11-23 or "
            "2026-11-23T09:00 or 2026-11-23T09:00:00Z"
        ) from None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=tz)


def instant(iso: str) -> datetime | None:
    """The instant of a stored ISO 8601 time with an offset; None when it is not one."""
    try:
        stamp = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return stamp if stamp.utcoffset() is not None else None


def in_period(at: datetime | None, start: datetime | None, end: datetime | None) -> bool:
    """``start`` <= ``at`` < ``end``, a missing bound being no bound; an unreadable time (None)
    is only in the period without bounds."""
    if start is None and end is None:
        return True
    return at is not None and (start is None or at >= start) and (end is None or at < end)


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    counts: Counts
    metrics: Metrics

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "metrics": self.metrics.as_json(), "counts": self.counts.as_json()}


@dataclass(frozen=True, slots=True)
class Report:
    by: str | None
    start: datetime | None
    end: datetime | None
    tz: ZoneInfo
    params: Parameters
    rows: tuple[Row, ...]
    total: Row

    def as_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "from": None if self.start is None else self.start.isoformat(),
            "to": None if self.end is None else self.end.isoformat(),
            "timezone": self.tz.key,
            "parameters": {
                "correction_factor": self.params.correction_factor,
                "force_majeure_threshold": self.params.force_majeure_threshold,
            },
            "definitions": {d.key: d.formula for d in DEFINITIONS},
            "groups": [row.as_json() for row in self.rows],
            "total": self.total.as_json(),
        }


def load(db: Database, data_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every stored contact and every event outside a contact (with its device and site)."""
    ingest = Ingest(db, data_dir)
    contacts = list(ingest.contacts())
    t = ingest.t
    sites = {
        row["device"]: row["site"] for row in t.devices.select(t.devices.device, t.devices.site)
    }
    events = [
        {**from_json(body), "device": device, "site": sites.get(device, UNKNOWN)}
        for device, body in t.events.select(t.events.device, t.events.body)
        .where(t.events.contact_id.is_null())
        .order_by(t.events.at_iso)
        .tuples()
    ]
    return contacts, events


def _key(by: str | None, item: Mapping[str, Any], at: datetime | None, tz: ZoneInfo) -> str:
    if by is None:
        return ALL
    if by in ("device", "site"):
        return str(item.get(by) or UNKNOWN)
    if by == "staff":
        return str(item.get("staff") or UNKNOWN)
    if at is None:
        return UNREADABLE
    try:
        local = at.astimezone(tz)
    except OverflowError:  # the local day is before year 1 or after year 9999
        return OUT_OF_RANGE
    return local.strftime("%Y-%m-%d") if by == "day" else local.strftime("%Y-%m-%d %H:00")


def build(
    contacts: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]] = (),
    *,
    by: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    tz: ZoneInfo | None = None,
    params: Parameters | None = None,
    progress: Progress | None = None,
) -> Report:
    """Group, filter and compute (see the module rules)."""
    if by is not None and by not in GROUPS:
        raise ReportError(f"--by {by!r}: allowed: {', '.join(GROUPS)}")
    if start is not None and end is not None and end <= start:
        raise ReportError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    tz = tz or ZoneInfo("UTC")
    params = params or Parameters()
    items = list(contacts)
    loose = list(events)
    total = len(items) + len(loose)
    step = max(1, total // 100)
    grouped: dict[str, tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]] = {}
    every: tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]] = ([], [])
    done = 0
    for kind, rows in ((0, items), (1, loose)):
        for item in rows:
            done += 1
            if progress is not None and done % step == 0:
                progress(done, total)
            at = instant(str(item["start"] if kind == 0 else item["at"]))
            if not in_period(at, start, end):
                continue
            key = _key(by, item, at, tz)
            grouped.setdefault(key, ([], []))[kind].append(item)
            every[kind].append(item)
    if progress is not None:
        progress(total, total)

    def row(key: str, parts: tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]) -> Row:
        counts = count(*parts)
        return Row(key, counts, metrics(counts, params))

    return Report(
        by=by,
        start=start,
        end=end,
        tz=tz,
        params=params,
        rows=tuple(row(key, grouped[key]) for key in sorted(grouped)) if by else (),
        total=row(ALL, every),
    )


# --- rendering -------------------------------------------------------------------------------

_BY_KEY: Final[dict[str, Definition]] = {d.key: d for d in DEFINITIONS}


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _all_rows(report: Report) -> list[Row]:
    return [*report.rows, report.total]


def render_table(report: Report, width: int | None = None) -> str:
    from rich.console import Console
    from rich.table import Table

    period = (
        f"{report.start.isoformat() if report.start else 'the beginning'} – "
        f"{report.end.isoformat() if report.end else 'now'}"
    )
    table = Table(
        title=f"metrics by {report.by or 'period'} ({period}, {report.tz.key})",
        caption=f"{TERSE_WORDS}; k = {report.params.correction_factor:g}, T = "
        f"{report.params.force_majeure_threshold:g}; – = no data",
    )
    table.add_column(report.by or "group")
    for d in DEFINITIONS:
        table.add_column(d.header, justify="right", no_wrap=True)
    for row in report.rows:
        values = row.metrics.as_json()
        table.add_row(row.key, *(_cell(values[k]) for k in METRIC_KEYS))
    values = report.total.as_json()["metrics"]
    table.add_row("(all)", *(_cell(values[k]) for k in METRIC_KEYS), style="bold")
    out = io.StringIO()
    Console(file=out, width=width or 160, color_system=None, soft_wrap=False).print(table)
    return out.getvalue()


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report.by or "group", *METRIC_KEYS])
    for row in _all_rows(report):
        values = row.metrics.as_json()
        writer.writerow(
            [row.key, *("" if values[k] is None else _csv_value(values[k]) for k in METRIC_KEYS)]
        )
    return out.getvalue()


def _csv_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(round(value, CSV_DECIMALS)) if isinstance(value, float) else str(value)


def render_json(report: Report) -> str:
    return json.dumps(report.as_json(), ensure_ascii=False, allow_nan=False, indent=2) + "\n"


_RATINGS: Final = (
    (_BY_KEY["support_index"], "#2e7d32"),
    (_BY_KEY["dissatisfaction_index"], "#c62828"),
    (_BY_KEY["staff_dissatisfaction_index"], "#ef6c00"),
    (_BY_KEY["loyalty_index"], "#1565c0"),
)
_SALES: Final = (
    (_BY_KEY["personal_conversion"], "#6a1b9a"),
    (_BY_KEY["productive_share"], "#ad1457"),
    (_BY_KEY["exact_conversion"], "#00838f"),
    (_BY_KEY["visitor_coverage"], "#9e9d24"),
    (_BY_KEY["force_majeure_level"], "#5d4037"),
)


def render_png(report: Report, path: Path) -> None:
    """A readable chart of the report, written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    rows = list(report.rows) or [report.total]
    labels = [row.key for row in rows]
    n = len(rows)
    positions = list(range(n))
    fig_width = min(30.0, max(14.0, 0.9 * n + 8))  # the legends name each formula: room
    fig, axes = plt.subplots(3, 1, figsize=(fig_width, 11), sharex=True, layout="constrained")
    try:
        served_ax, ratings_ax, sales_ax = axes
        title = f"contactpoint metrics by {report.by or 'period'}"
        if report.start or report.end:
            title += (
                f"  ({report.start.isoformat() if report.start else '…'} – "
                f"{report.end.isoformat() if report.end else '…'})"
            )
        fig.suptitle(title, fontsize=14)
        served = [row.metrics.contacts_served for row in rows]
        bars = served_ax.bar(positions, served, color="#546e7a")
        served_ax.bar_label(bars, fontsize=9)
        served_ax.set_ylabel("contacts served")
        served_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        served_ax.margins(y=0.15)
        for ax, series, ylabel in (
            (ratings_ax, _RATINGS, "share of contacts served"),
            (sales_ax, _SALES, "ratio"),
        ):
            width = 0.8 / len(series)
            for i, (d, color) in enumerate(series):
                values = [getattr(row.metrics, d.key) for row in rows]
                xs = [p - 0.4 + width * (i + 0.5) for p in positions]
                drawn = ax.bar(
                    xs,
                    [0.0 if v is None else v for v in values],
                    width,
                    label=d.label,
                    color=color,
                    edgecolor="white",
                )
                for patch, row in zip(drawn.patches, rows, strict=True):
                    if not row.metrics.meaningful:
                        patch.set_hatch("//")
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_ylabel(ylabel)
            handles: list[Any] = [Patch(color=color, label=d.label) for d, color in series]
            if ax is sales_ax:
                handles.append(
                    Line2D([], [], color="#5d4037", linestyle="--", label="force-majeure threshold")
                )
            handles.append(
                Patch(facecolor="#bdbdbd", hatch="//", edgecolor="white", label="not meaningful")
            )
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        ratings_ax.set_ylim(-1.05, 1.05)
        sales_ax.axhline(
            report.params.force_majeure_threshold,
            color="#5d4037",
            linestyle="--",
            linewidth=1,
        )
        for p, row in zip(positions, rows, strict=True):
            if not row.metrics.meaningful:
                ratings_ax.annotate(
                    "not meaningful",
                    (p, 1.0),
                    ha="center",
                    va="top",
                    fontsize=8,
                    color="#b71c1c",
                )
        tilted = n > 6 or max(len(label) for label in labels) > 12
        sales_ax.set_xticks(
            positions, labels, rotation=30 if tilted else 0, ha="right" if tilted else "center"
        )
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)


def render(report: Report, fmt: str, out: Path | None) -> str | None:
    """Render ``report``: the text for ``table``/``csv``/``json`` (also written to ``out`` when
    given); ``png`` is written to ``out`` (required) and returns None."""
    if fmt not in FORMATS:
        raise ReportError(f"--format {fmt!r}: allowed: {', '.join(FORMATS)}")
    if fmt == "png":
        if out is None:
            raise ReportError("--format png needs --out FILE.png (a chart is not terminal text)")
        render_png(report, out)
        return None
    text = {"table": render_table, "csv": render_csv, "json": render_json}[fmt](report)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    return text


# --- the command -----------------------------------------------------------------------------

LONG_REPORT: Final = 2000  # items: above this a terminal gets a progress bar


def add_command(sub: Any, guarded: Callable[[Callable[[Any], int]], Callable[[Any], int]]) -> None:
    """Register ``sink report`` on ``sink``'s subparsers (``guarded`` wraps the handler)."""
    rep = sub.add_parser("report", help="the metrics per device, site, staff member, day or hour")
    rep.add_argument("--data", type=Path, required=True, help="data directory")
    rep.add_argument("--db", help="postgresql://... (default: SQLite in --data)")
    rep.add_argument("--from", dest="start", help="contacts starting at or after (ISO date/time)")
    rep.add_argument("--to", dest="end", help="contacts starting before (ISO date/time)")
    rep.add_argument("--by", choices=GROUPS, help="one row per device, site, staff, day or hour")
    rep.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    rep.add_argument("--out", type=Path, help="write to FILE (required for png)")
    rep.add_argument("--config", type=Path, help="TOML file with a [report] table")
    rep.add_argument("--tz", help="time zone of days, hours and bare times (default: UTC)")
    rep.add_argument(
        "--correction-factor", type=float, help="share of silent customers counted as unhappy"
    )
    rep.add_argument(
        "--force-majeure-threshold",
        type=float,
        help="force-majeure level above which a period is not meaningful",
    )
    rep.add_argument(
        "--reasons",
        action="store_true",
        help="count reasons for dissatisfaction instead (as 'sink reasons'; --by site|device|day)",
    )
    rep.add_argument(
        "--compliance",
        action="store_true",
        help="compliance with the service standards instead: the share of checked contacts "
        "meeting each rule (sink transcribe --rules; table, csv or json)",
    )
    rep.set_defaults(handler=guarded(report_command))


def zone(name: str) -> ZoneInfo:
    from zoneinfo import ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(
            f"time zone {name!r} is not an IANA time zone; use e.g. UTC or Europe/Berlin"
        ) from None


def report_command(args: Any) -> int:
    import sys

    from cloud_sink.migrations import open_existing

    if args.reasons:
        from cloud_sink import manage

        if args.by not in (None, "site", "device", "day") or args.format == "png":
            raise ReportError("--reasons counts by site, device or day, as table, csv or json")
        args.by = args.by or "site"
        return manage.reasons_command(args)
    from cloud_sink.config import load_sink_file

    settings = load_sink_file(args.config).report  # the [report] table, or its defaults
    tz = zone(args.tz or settings.timezone)
    try:
        params = Parameters(
            correction_factor=float(
                args.correction_factor
                if args.correction_factor is not None
                else settings.correction_factor
            ),
            force_majeure_threshold=float(
                args.force_majeure_threshold
                if args.force_majeure_threshold is not None
                else settings.force_majeure_threshold
            ),
        )
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    start = None if args.start is None else parse_when(args.start, tz, "--from")
    end = None if args.end is None else parse_when(args.end, tz, "--to")
    if args.format == "png" and args.out is None:
        raise ReportError("--format png needs --out FILE.png (a chart is not terminal text)")
    if getattr(args, "compliance", False) and args.format == "png":
        raise ReportError("--compliance is a table, csv or json")
    db = open_existing(args.db, args.data)
    try:
        contacts, events = load(db, args.data)
        if getattr(args, "compliance", False):
            from cloud_sink.speech import compliance

            groups, total = compliance.figures(
                contacts, compliance.checks(db), by=args.by, start=start, end=end, tz=tz
            )
            shown = compliance.render(args.by, groups, total, args.format)
            if args.out is not None:
                args.out.write_text(shown, encoding="utf-8")
            else:
                sys.stdout.write(shown)
            return 0
    finally:
        db.close()
    size = len(contacts) + len(events)
    if sys.stderr.isatty() and size > LONG_REPORT:
        from rich.progress import Progress as Bar

        with Bar(transient=True) as bar:
            task = bar.add_task("computing", total=size)
            report = build(
                contacts,
                events,
                by=args.by,
                start=start,
                end=end,
                tz=tz,
                params=params,
                progress=lambda done, _total: bar.update(task, completed=done),
            )
    else:
        report = build(contacts, events, by=args.by, start=start, end=end, tz=tz, params=params)
    text = render(report, args.format, args.out)
    if text is not None and args.out is None:
        sys.stdout.write(text)
    elif args.out is not None:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
