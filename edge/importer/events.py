"""Events a CRM knows (a delivery handed over at 14:32), from a CSV or a JSON-lines file, or
posted to the device one at a time (``POST /event``, :mod:`edge.pos`; the same row checks,
:func:`parse_row`, then kept in the store until an import cuts their window).

Rules:
- ``.jsonl``, ``.ndjson`` and ``.json``: one JSON object per line (blank lines skipped); any
  other name: CSV with a header row, the delimiter guessed among ``,`` ``;`` and tab (an export
  from a spreadsheet in many locales uses ``;``), UTF-8 (a byte-order mark is skipped).
- Fields, under the names ``importer.columns`` gives: ``time`` (required: ISO 8601 — without
  a zone it is in ``importer.timezone`` — or Unix seconds), ``kind`` (lowercase letters,
  digits, ``_``; missing or empty: ``delivery``), ``order_id``, ``staff`` (at most 64
  characters), ``rating`` (mapped by ``importer.ratings`` to green/yellow/red; empty: none) and
  ``id``. A row without an id gets one made of its time, kind, order and staff, so the same
  export read twice gives the same ids.
- A bad row is a :class:`RowProblem` naming the file, its line number, the field, the value
  and the fix; the other rows are read. A row with the id of an earlier row is reported and
  skipped. A file that cannot be read at all raises :class:`~edge.UserError`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from contract.wire import MAX_STAFF_CHARS
from edge._errors import UserError
from edge.clock import NS
from edge.config import ImporterSection
from edge.records import CrmEvent

__all__ = [
    "CrmEvent",  # (defined with the records: the store keeps posted ones)
    "EventsFile",
    "EventsFileError",
    "RowProblem",
    "derived_id",
    "parse_row",
    "parse_time",
    "read_events",
    "seconds",
]

MAX_EVENTS_BYTES = 256 * 1024 * 1024
MAX_TEXT = 200
MAX_STAFF = MAX_STAFF_CHARS  # (the wire's limit)
DEFAULT_KIND = "delivery"
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    message: str


@dataclass(slots=True)
class EventsFile:
    path: Path
    events: list[CrmEvent] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)


class EventsFileError(UserError):
    """The events file cannot be read at all."""


def read_events(path: Path, cfg: ImporterSection) -> EventsFile:
    """Every event of ``path``; bad rows in :attr:`EventsFile.problems`."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_EVENTS_BYTES + 1)
    except OSError as exc:
        raise EventsFileError(
            f"{path}: cannot read the events file: {exc.strerror or exc}"
        ) from None
    if len(raw) > MAX_EVENTS_BYTES:
        raise EventsFileError(f"{path}: the events file is larger than {MAX_EVENTS_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EventsFileError(
            f"{path}: not UTF-8 text (byte {exc.start}); export the events as UTF-8"
        ) from None
    out = EventsFile(path)
    rows = (
        _json_rows(text, out)
        if path.suffix.lower() in _JSON_SUFFIXES
        else _csv_rows(path, text, cfg)
    )
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            event = parse_row(row, cfg, line=line, source=path.name)
        except ValueError as exc:
            out.problems.append(RowProblem(line, str(exc)))
            continue
        if event.id in seen:
            out.problems.append(
                RowProblem(
                    line,
                    f"id {event.id!r} was given on line {seen[event.id]} already; "
                    "this row is skipped",
                )
            )
            continue
        seen[event.id] = line
        out.events.append(event)
    return out


def _json_rows(text: str, out: EventsFile) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            out.problems.append(RowProblem(number, f"not a JSON object: {exc}"))
            continue
        if not isinstance(value, dict):
            out.problems.append(RowProblem(number, f"not a JSON object but {type(value).__name__}"))
            continue
        rows.append((number, value))
    return rows


def _csv_rows(path: Path, text: str, cfg: ImporterSection) -> list[tuple[int, dict[str, Any]]]:
    sample = text[:8192]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise EventsFileError(f"{path}: line 1: not a CSV header: {exc}") from None
    header = [h.strip() for h in header]
    if cfg.columns.time not in header:
        raise EventsFileError(
            f"{path}: line 1: no column {cfg.columns.time!r} (the event's time); the header "
            f"has {', '.join(repr(h) for h in header) or 'nothing'}; name the time column with "
            "importer.columns.time"
        )
    rows = []
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rows.append((line, {"\0error": f"not a CSV row: {exc}"}))
            continue
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(header):
            rows.append((line, {"\0error": f"{len(values)} fields, the header has {len(header)}"}))
            continue
        rows.append((line, dict(zip(header, values, strict=False))))
    return rows


def _text(row: dict[str, Any], key: str, what: str, limit: int = MAX_TEXT) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{what} ({key!r}) must be text, not {type(value).__name__}")
    text = str(value).strip()
    if not text:
        return None
    if len(text) > limit or any(ord(c) < 32 or "\ud800" <= c <= "\udfff" for c in text):
        raise ValueError(
            f"{what} ({key!r}) {text[:80]!r} must be at most {limit} characters of valid "
            "Unicode without control characters"
        )
    return text


def parse_time(value: object, zone: ZoneInfo) -> int:
    """Wall ns of an ISO 8601 time (no zone: ``zone``) or Unix seconds; ValueError if neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = datetime.fromisoformat(
                    text.replace("Z", "+00:00") if text.endswith("Z") else text
                )
            except ValueError:
                raise ValueError(
                    f"{text[:80]!r} is neither ISO 8601 (e.g. 2026-11-24T14:32:10+03:00) nor "
                    "Unix seconds"
                ) from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=zone)
            return round(when.timestamp() * 1e6) * 1000
    if not math.isfinite(seconds) or not 0 < seconds < 4e9:
        raise ValueError(f"{value!r} is not a plausible Unix time in seconds")
    return round(seconds * 1e6) * 1000


def parse_row(
    row: dict[str, Any], cfg: ImporterSection, *, line: int = 0, source: str = ""
) -> CrmEvent:
    """The event of one row (a CSV row, a JSON line, or the body of ``POST /event``): the one
    definition of the fields and their checks. Raises ValueError naming the field (under its
    ``importer.columns`` name), the value and the fix."""
    if "\0error" in row:
        raise ValueError(str(row["\0error"]))
    c = cfg.columns
    raw_time = row.get(c.time)
    if raw_time is None or (isinstance(raw_time, str) and not raw_time.strip()):
        raise ValueError(f"time ({c.time!r}) is missing; every event needs its time")
    try:
        wall_ns = parse_time(raw_time, ZoneInfo(cfg.timezone))
    except ValueError as exc:
        raise ValueError(f"time ({c.time!r}) {exc}") from None
    kind = (_text(row, c.kind, "kind") or DEFAULT_KIND).lower()
    if not _KIND.fullmatch(kind):
        raise ValueError(
            f"kind ({c.kind!r}) {kind[:80]!r} must be a lowercase word (letters, digits, _), "
            "e.g. delivery"
        )
    order_id = _text(row, c.order_id, "order id")
    staff = _text(row, c.staff, "staff", MAX_STAFF)
    rating_value = _text(row, c.rating, "rating")
    rating = None
    if rating_value is not None:
        rating = cfg.ratings.colour(rating_value)
        if rating is None:
            r = cfg.ratings
            raise ValueError(
                f"rating ({c.rating!r}) {rating_value!r} is not a known rating; green: "
                f"{', '.join(r.green)}; yellow: {', '.join(r.yellow)}; red: {', '.join(r.red)} "
                "(importer.ratings)"
            )
    given = _text(row, c.id, "id")
    if given is None:
        given = "row:" + "|".join([str(wall_ns), kind, order_id or "", staff or ""])
    return CrmEvent(
        id=given,
        line=line,
        wall_ns=wall_ns,
        kind=kind,
        order_id=order_id,
        staff=staff,
        rating=rating,
        rating_value=rating_value,
        source=source,
    )


def derived_id(*parts: str) -> str:
    """A 32-hex-digit id (the wire's id form) that is the same for the same parts."""
    digest = hashlib.sha256("\0".join(("contactpoint-import", *parts)).encode())
    return digest.hexdigest()[:32]


def seconds(wall_ns: int) -> float:
    return wall_ns / NS
