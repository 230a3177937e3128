"""The API's reads of the sink's database, every one inside a site scope.

Rules:
- Every query takes the caller's :class:`~cloud_sink.api.accounts.Principal` and adds its
  sites to the WHERE clause: a row of another site is never read, so it cannot leak and
  answers as "not found" (404), exactly like a row that does not exist.
- Contacts are sorted by (start, device, id); the cursor is that triple of the last row
  returned, URL-safe base64 of JSON, so a page is an index range on ``contacts_site_order``
  / ``contacts_start``, however deep.
- A page is read in two steps in one statement: the keys (start, device, id) of the rows that
  pass every filter, sorted and limited, then those rows. On PostgreSQL the first step reads
  only the covering index ``contacts_site_order`` (it holds mode, ended_by and staff) and the
  indexes of tags and clips, never the contacts table itself (migration 8, bench/api.py).
- Times (``start``, ``end``) are compared as the wire's UTC text (``2026-11-23T09:00:10.000Z``,
  lexically ordered); a bound with an offset or in the caller's zone is converted first.
- Filters, all given ones must hold: site, device, staff, mode, ended_by (each one value),
  ``tags_all`` (every one), ``tags_any`` (at least one), ``tags_none`` (none of them),
  ``reason`` (a manager ticked it), ``has_audio`` (a verified clip whose audio is still kept),
  ``text`` (the contact's transcript holds every word, in any inflected form: the search of
  ``sink contacts --text``, cloud_sink/speech/search.py). On PostgreSQL words held by
  ``TEXT_PER_ROW_FROM`` transcripts or more are tested per contact walked (a probe by key),
  fewer are found through the full-text index and joined.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from peewee import Database

from cloud_sink.api.accounts import Principal
from cloud_sink.db import execute_sql, is_sqlite
from cloud_sink.models import from_json

MAX_LIMIT: Final = 500
#: PostgreSQL: from this many matching transcripts on, a ``text`` filter tests each contact
#: walked in time order instead of joining every match (bench/README.md, "api")
TEXT_PER_ROW_FROM = 2000


class QueryError(ValueError):
    """A bad filter value; ``field`` names it, the message says the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def wire_time(moment: datetime) -> str:
    """``moment`` as the wire writes times (UTC, milliseconds, ``Z``)."""
    stamp = moment.astimezone(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class ContactFilter:
    site: str | None = None
    device: str | None = None
    staff: str | None = None
    mode: str | None = None
    ended_by: str | None = None
    tags_all: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    reason: str | None = None
    has_audio: bool | None = None
    text: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def encode_cursor(start: str, device: str, contact_id: str) -> str:
    raw = json.dumps([start, device, contact_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = None
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, str) and "\x00" not in v for v in value)
    ):
        raise QueryError(
            "cursor", "cursor is not one this API returned: pass next_cursor of the last page"
        )
    return value[0], value[1], value[2]


class _Where:
    def __init__(self, db: Database) -> None:
        self.p = db.param
        self.parts: list[str] = []
        self.args: list[Any] = []

    def add(self, sql: str, *args: Any) -> None:
        self.parts.append(sql.replace("?", self.p))
        self.args.extend(args)

    def sql(self) -> str:
        return " AND ".join(self.parts) if self.parts else "1=1"


def _scope(where: _Where, who: Principal, column: str) -> None:
    if not who.all_sites:
        sites = sorted(who.sites)
        where.add(f"{column} IN ({', '.join('?' for _ in sites)})", *sites)


_AUDIO: Final = (
    "EXISTS (SELECT 1 FROM clips k WHERE k.device = c.device AND k.clip_id = c.id "
    "AND k.complete AND k.audio_deleted_at IS NULL{fence})"
)
# PostgreSQL: "OFFSET 0" keeps the EXISTS a filter probing the partial index clips_audio row by
# row. Without it the planner turns it into a join, proves it unique by the clips' primary key
# and multiplies the selectivities of device and id as if unrelated: 15 rows expected where
# 4,918 of a site's 49,407 match, so it hash-joins and sorts the whole site (262 ms at 1 M
# contacts) instead of walking the site's index until the page is full (4 ms).
_PG_FENCE: Final = " OFFSET 0"


def _filtered(db: Database, who: Principal, f: ContactFilter) -> _Where:
    w = _Where(db)
    _scope(w, who, "c.site")
    for column, value in (
        ("c.site", f.site), ("c.device", f.device), ("c.staff", f.staff), ("c.mode", f.mode),
        ("c.ended_by", f.ended_by),
    ):  # fmt: skip
        if value is not None:
            w.add(f"{column} = ?", value)
    if f.start is not None:
        w.add("c.start_iso >= ?", wire_time(f.start))
    if f.end is not None:
        w.add("c.start_iso < ?", wire_time(f.end))
    tag = "EXISTS (SELECT 1 FROM tags t WHERE t.device = c.device AND t.contact_id = c.id AND "
    for name in f.tags_all:
        w.add(tag + "t.tag = ?)", name)
    if f.tags_any:
        w.add(tag + f"t.tag IN ({', '.join('?' for _ in f.tags_any)}))", *f.tags_any)
    if f.tags_none:
        w.add("NOT " + tag + f"t.tag IN ({', '.join('?' for _ in f.tags_none)}))", *f.tags_none)
    if f.reason is not None:
        w.add(
            "EXISTS (SELECT 1 FROM annotations a WHERE a.device = c.device "
            "AND a.contact_id = c.id AND a.reason = ?)",
            f.reason,
        )
    if f.has_audio is not None:
        audio = _AUDIO.format(fence="" if is_sqlite(db) else _PG_FENCE)
        w.add(audio if f.has_audio else "NOT " + audio)
    if f.text is not None:
        from cloud_sink.speech import search  # pymorphy3 only when text is given

        words = search.words_of(f.text)
        if not words:
            raise QueryError("text", f"text {f.text!r} holds no word to search for: give words")
        per_row = not is_sqlite(db) and search.at_least(db, words, TEXT_PER_ROW_FROM)
        condition, args = search.contact_condition(db, words, "c.device", "c.id", per_row=per_row)
        w.parts.append(condition)  # (its own placeholders are the engine's)
        w.args.extend(args)
    return w


_COLUMNS: Final = (
    "c.device, c.id, c.site, c.start_iso, c.end_iso, c.duration_s, c.ended_by, c.mode, "
    "c.staff, c.video_url, c.clip"
)


def previous(
    db: Database, who: Principal, f: ContactFilter, start: str, device: str, contact_id: str
) -> dict[str, Any] | None:
    """The contact just before (start, device, id) in the filter, None at the beginning."""
    w = _filtered(db, who, f)
    w.add(  # (the first bound alone lets the database walk the start index from there)
        "c.start_iso <= ? AND (c.start_iso < ? OR (c.start_iso = ? AND (c.device < ? OR "
        "(c.device = ? AND c.id < ?))))",
        start, start, start, device, device, contact_id,
    )  # fmt: skip
    sql = (
        f"SELECT {_COLUMNS} FROM contacts c WHERE {w.sql()} "
        "ORDER BY c.start_iso DESC, c.device DESC, c.id DESC LIMIT 1"
    )
    rows = execute_sql(db, sql, w.args).fetchall()
    return _items(db, rows)[0] if rows else None


def contacts_page(
    db: Database, who: Principal, f: ContactFilter, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of contacts and the cursor of the next (None at the end)."""
    w = _filtered(db, who, f)
    if cursor is not None:
        start, device, contact_id = decode_cursor(cursor)
        w.add(  # (the first bound alone lets the database walk the start index from there)
            "c.start_iso >= ? AND (c.start_iso > ? OR (c.start_iso = ? AND (c.device > ? OR "
            "(c.device = ? AND c.id > ?))))",
            start, start, start, device, device, contact_id,
        )  # fmt: skip
    sql = (
        f"SELECT {_COLUMNS} FROM (SELECT c.start_iso, c.device, c.id FROM contacts c "
        f"WHERE {w.sql()} ORDER BY c.start_iso, c.device, c.id LIMIT {int(limit) + 1}) k "
        "JOIN contacts c ON c.device = k.device AND c.id = k.id "
        "ORDER BY k.start_iso, k.device, k.id"
    )
    rows = execute_sql(db, sql, w.args).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows and more else None
    return _items(db, rows), None if last is None else encode_cursor(last[3], last[0], last[1])


def _items(db: Database, rows: list[Any]) -> list[dict[str, Any]]:
    keys = [(str(r[0]), str(r[1])) for r in rows]
    tags = _tags_of(db, keys)
    reasons = _reasons_of(db, keys)
    audio = _audio_of(db, keys)
    return [
        {
            "device": r[0], "id": r[1], "site": r[2], "start": r[3], "end": r[4],
            "duration_s": _finite(r[5]), "ended_by": r[6], "mode": r[7], "staff": r[8],
            "video_url": r[9], "tags": tags.get((r[0], r[1]), []),
            "reasons": reasons.get((r[0], r[1]), []), "has_clip": r[10] is not None,
            "has_audio": (r[0], r[1]) in audio,
        }
        for r in rows
    ]  # fmt: skip


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _keyed(db: Database, sql: str, keys: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
    if not keys:
        return []
    p = db.param
    match = " OR ".join(f"(device = {p} AND contact_id = {p})" for _ in keys)
    args = [v for key in keys for v in key]
    return list(execute_sql(db, sql.format(match=match), args).fetchall())


def _tags_of(db: Database, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    sql = "SELECT device, contact_id, tag FROM tags WHERE {match} ORDER BY device, contact_id, pos"
    for device, contact_id, tag in _keyed(db, sql, keys):
        out.setdefault((device, contact_id), []).append(tag)
    return out


def _reasons_of(db: Database, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    sql = "SELECT device, contact_id, reason FROM annotations WHERE {match} ORDER BY id"
    for device, contact_id, reason in _keyed(db, sql, keys):
        codes = out.setdefault((device, contact_id), [])
        if reason not in codes:
            codes.append(reason)
    return out


def _audio_of(db: Database, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    p = db.param
    match = " OR ".join(f"(device = {p} AND clip_id = {p})" for _ in keys)
    sql = (
        f"SELECT device, clip_id FROM clips WHERE ({match}) AND complete = {p} "
        "AND audio_deleted_at IS NULL"
    )
    args = [v for key in keys for v in key] + [True]
    return {(str(d), str(i)) for d, i in execute_sql(db, sql, args).fetchall()}


def contact_row(
    db: Database, who: Principal, device: str, contact_id: str
) -> dict[str, Any] | None:
    """The stored contact (scope checked), None when absent or of another site."""
    w = _Where(db)
    w.add("c.device = ?", device)
    w.add("c.id = ?", contact_id)
    _scope(w, who, "c.site")
    row = execute_sql(
        db,
        "SELECT c.device, c.id, c.site, c.start_iso, c.end_iso, c.duration_s, c.ended_by, "
        "c.mode, c.staff, c.video_url, c.clip, c.clock_synced, c.boot_id FROM contacts c "
        f"WHERE {w.sql()}",
        w.args,
    ).fetchone()
    if row is None:
        return None
    key = [(device, contact_id)]
    p = db.param
    events = [
        from_json(body)
        for (body,) in execute_sql(
            db,
            f"SELECT body FROM events WHERE device = {p} AND contact_id = {p} ORDER BY pos",
            (device, contact_id),
        ).fetchall()
    ]
    annotations = [
        {"reason": r, "note": n, "by": b, "at_ns": int(a)}
        for r, n, b, a in execute_sql(
            db,
            "SELECT reason, note, by_name, at_ns FROM annotations WHERE device = "
            f"{p} AND contact_id = {p} ORDER BY id",
            (device, contact_id),
        ).fetchall()
    ]
    clip = clip_row(db, device, contact_id)
    return {
        "device": row[0], "id": row[1], "site": row[2], "start": row[3], "end": row[4],
        "duration_s": _finite(row[5]), "ended_by": row[6], "mode": row[7], "staff": row[8],
        "video_url": row[9], "clip": None if row[10] is None else from_json(row[10]),
        "clock_synced": bool(row[11]), "boot_id": row[12],
        "tags": _tags_of(db, key).get((device, contact_id), []), "events": events,
        "annotations": annotations,
        "audio": None if clip is None else {
            "codec": clip["codec"], "sample_rate": clip["sample_rate"],
            "bytes": clip["clip_bytes"], "sha256": clip["clip_sha256"],
            "complete": clip["complete"], "deleted_at_ns": clip["audio_deleted_at"],
            "available": clip["complete"] and clip["audio_deleted_at"] is None,
        },
    }  # fmt: skip


def clip_row(db: Database, device: str, clip_id: str) -> dict[str, Any] | None:
    p = db.param
    row = execute_sql(
        db,
        "SELECT codec, sample_rate, clip_bytes, clip_sha256, complete, path, audio_deleted_at, "
        f"location FROM clips WHERE device = {p} AND clip_id = {p}",
        (device, clip_id),
    ).fetchone()
    if row is None:
        return None
    return {
        "codec": row[0], "sample_rate": int(row[1]), "clip_bytes": int(row[2]),
        "clip_sha256": row[3], "complete": bool(row[4]), "path": row[5],
        "audio_deleted_at": None if row[6] is None else int(row[6]),
        "location": row[7],
    }  # fmt: skip


def devices(
    db: Database, who: Principal, now_ns: int, offline_after_s: float
) -> list[dict[str, Any]]:
    """Every device in scope with its retained status and whether it counts as online."""
    w = _Where(db)
    _scope(w, who, "site")
    rows = execute_sql(
        db,
        "SELECT device, site, first_seen_ns, last_seen_ns, online, version, boot_id, "
        f"outbox_depth, free_disk_bytes, clock_synced, status_at FROM devices WHERE {w.sql()} "
        "ORDER BY site, device",
        w.args,
    ).fetchall()
    out = []
    for r in rows:
        last_seen = int(r[3])
        silent = (now_ns - last_seen) / 1e9
        reported = None if r[4] is None else bool(r[4])
        out.append(
            {
                "device": r[0], "site": r[1], "first_seen_ns": int(r[2]), "last_seen_ns": last_seen,
                "reported_online": reported,
                "online": bool(reported) and silent < offline_after_s,
                "silent_s": round(max(silent, 0.0), 3), "version": r[5], "boot_id": r[6],
                "outbox_depth": r[7], "free_disk_bytes": r[8],
                "clock_synced": None if r[9] is None else bool(r[9]), "status_at": r[10],
            }
        )  # fmt: skip
    return out


def last_ingest_ns(db: Database) -> int | None:
    row = execute_sql(db, "SELECT MAX(received_ns) FROM messages").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def scoped_sites(db: Database, who: Principal) -> list[str]:
    w = _Where(db)
    _scope(w, who, "site")
    rows = execute_sql(
        db, f"SELECT DISTINCT site FROM devices WHERE {w.sql()} ORDER BY site", w.args
    )
    return [str(r[0]) for r in rows.fetchall()]
