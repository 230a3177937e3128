"""Numbered schema migrations, applied in order when the database is opened.

Rules:
- ``MIGRATIONS[i]`` has version ``i + 1``; versions are contiguous from 1 and never renumbered.
  A shipped migration is never edited: a change to the schema is a new migration at the end.
- The schema version is ``PRAGMA user_version`` (0 = empty file). Each migration runs in its own
  ``BEGIN IMMEDIATE`` transaction together with the bump of ``user_version``, so a migration is
  either applied and recorded, or neither; the version is re-read inside the transaction, so a
  second process opening the same file at the same moment does not apply it twice.
- Migrations are frozen SQL text, not ``create_tables()`` from the models: the models describe
  the newest schema, while migration 1 must build the very same tables forever.
- A file whose version is newer than the code knows is refused with :class:`SchemaError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from peewee import SqliteDatabase

from contract.sql import execute as sql_execute
from edge._errors import UserError


class SchemaError(UserError):
    """The database was written by a newer contactpoint than this one."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_V1_INITIAL = Migration(
    1,
    "initial schema: contacts, events, tags, clips, outbox",
    (
        """CREATE TABLE contacts (
            id TEXT NOT NULL PRIMARY KEY,
            mode TEXT NOT NULL,
            start_ns INTEGER NOT NULL,
            end_ns INTEGER NOT NULL,
            start_wall_ns INTEGER NOT NULL,
            end_wall_ns INTEGER NOT NULL,
            ended_by TEXT NOT NULL,
            clock_synced INTEGER NOT NULL CHECK (clock_synced IN (0, 1)),
            boot_id TEXT NOT NULL,
            created_ns INTEGER NOT NULL
        )""",
        """CREATE TABLE events (
            id TEXT NOT NULL PRIMARY KEY,
            contact_id TEXT REFERENCES contacts (id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            t_ns INTEGER NOT NULL,
            wall_ns INTEGER NOT NULL,
            button TEXT,
            role TEXT,
            gesture TEXT,
            duration_ns INTEGER,
            question INTEGER,
            via TEXT,
            receipt_id TEXT,
            data TEXT NOT NULL DEFAULT '{}'
        )""",
        # A contact's events in time order; contact_id IS NULL finds the orphans.
        "CREATE INDEX events_contact_t ON events (contact_id, t_ns)",
        """CREATE TABLE tags (
            contact_id TEXT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            tag TEXT NOT NULL,
            PRIMARY KEY (contact_id, position),
            UNIQUE (contact_id, tag)
        )""",
        """CREATE TABLE clips (
            contact_id TEXT NOT NULL PRIMARY KEY REFERENCES contacts (id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            codec TEXT NOT NULL,
            sample_rate INTEGER NOT NULL,
            start_index INTEGER NOT NULL,
            end_index INTEGER NOT NULL,
            start_ns INTEGER NOT NULL,
            end_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            truncated INTEGER NOT NULL CHECK (truncated IN (0, 1)),
            gaps TEXT NOT NULL DEFAULT '[]'
        )""",
        # AUTOINCREMENT: a seq is never reused, even after purge_sent() deleted the newest rows,
        # so "everything after seq N" stays a valid cursor for the publisher.
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            msg_id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            ref TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_ns INTEGER NOT NULL,
            sent_ns INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0
        )""",
        # pending() and depth() read only unsent rows, in seq order.
        "CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_ns IS NULL",
    ),
)

_V2_VIDEO_LINKS = Migration(
    2,
    "video links: contacts.video_url, events.video_url",
    (
        "ALTER TABLE contacts ADD COLUMN video_url TEXT",
        "ALTER TABLE events ADD COLUMN video_url TEXT",
    ),
)

_V3_ROUTE_QUEUE = Migration(
    3,
    "routing by tag: route_queue, one durable queue per destination",
    (
        # One row per (destination, contact or alert), written in the transaction that stores
        # what it carries. AUTOINCREMENT: ids are the delivery order and are never reused.
        """CREATE TABLE route_queue (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            delivery_id TEXT NOT NULL UNIQUE,
            destination TEXT NOT NULL,
            kind TEXT NOT NULL,
            ref TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_ns INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT '',
            done_ns INTEGER,
            failed_ns INTEGER,
            UNIQUE (destination, kind, ref)
        )""",
        # A destination's worker reads only its open rows, oldest first.
        """CREATE INDEX route_queue_open ON route_queue (destination, id)
            WHERE done_ns IS NULL AND failed_ns IS NULL""",
    ),
)

_V4_STAFF = Migration(
    4,
    "staff attribution: contacts.staff, events.staff (who was on duty; NULL = unknown)",
    ("ALTER TABLE contacts ADD COLUMN staff TEXT", "ALTER TABLE events ADD COLUMN staff TEXT"),
)

_V5_AUDIO_RETENTION = Migration(
    5,
    "audio retention: clips.audio_deleted_at (wall ns the clip file was deleted by retention)",
    ("ALTER TABLE clips ADD COLUMN audio_deleted_at INTEGER",),
)

_V6_CONTACT_FLAGS = Migration(
    6,
    "contact flags: contacts.clip_missing (why no clip), contacts.clock_stepped",
    (
        "ALTER TABLE contacts ADD COLUMN clip_missing TEXT",
        "ALTER TABLE contacts ADD COLUMN clock_stepped INTEGER NOT NULL DEFAULT 0 "
        "CHECK (clock_stepped IN (0, 1))",
    ),
)

_V7_DELIVERY_RECEIPTS = Migration(
    7,
    "delivery receipts: outbox.delivered_ns (the sink confirmed it stored the message)",
    (
        "ALTER TABLE outbox ADD COLUMN delivered_ns INTEGER",
        # Rows acknowledged before this version were forgotten on PUBACK, as that release did;
        # they count as delivered rather than all being sent again after the upgrade.
        "UPDATE outbox SET delivered_ns = sent_ns WHERE sent_ns IS NOT NULL",
        # Rows waiting for their receipt (and the unsent ones), for the publisher at start and
        # for the retention and disk budget questions "is this delivered?".
        "CREATE INDEX outbox_undelivered ON outbox (seq) WHERE delivered_ns IS NULL",
    ),
)

_V8_POSTED_EVENTS = Migration(
    8,
    "posted CRM events: posted_events, kept until an import cuts their window",
    (
        # One row per CRM event posted to the device's HTTP input (POST /event), keyed by the
        # CRM's id (a second post of it changes nothing); imported_ns is set once an import
        # stored the contact holding it (NULL: not yet, or no recording covered it so far).
        """CREATE TABLE posted_events (
            id TEXT NOT NULL PRIMARY KEY,
            wall_ns INTEGER NOT NULL,
            kind TEXT NOT NULL,
            order_id TEXT,
            staff TEXT,
            rating TEXT,
            rating_value TEXT,
            posted_ns INTEGER NOT NULL,
            imported_ns INTEGER
        )""",
        "CREATE INDEX posted_events_pending ON posted_events (wall_ns) WHERE imported_ns IS NULL",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (
    _V1_INITIAL,
    _V2_VIDEO_LINKS,
    _V3_ROUTE_QUEUE,
    _V4_STAFF,
    _V5_AUDIO_RETENTION,
    _V6_CONTACT_FLAGS,
    _V7_DELIVERY_RECEIPTS,
    _V8_POSTED_EVENTS,
)


def schema_version(db: SqliteDatabase) -> int:
    return int(db.user_version)


def migrate(
    db: SqliteDatabase, path: Path, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Bring the schema of ``db`` (the file ``path``) up to date; return the versions applied."""
    for number, migration in enumerate(migrations, start=1):
        if migration.version != number:
            raise ValueError(
                f"migration {migration.name!r} has version {migration.version}, "
                f"expected {number}: versions must run 1, 2, 3 ... in order"
            )
    known = len(migrations)
    found = schema_version(db)
    if found > known:
        raise SchemaError(
            f"{path}: the database has schema version {found}, but this contactpoint knows "
            f"versions up to {known} only. It was written by a newer release: install that "
            "release (or newer) again, or move the file aside to start with an empty database."
        )
    applied: list[int] = []
    for migration in migrations[found:]:
        with db.atomic("IMMEDIATE"):
            if schema_version(db) >= migration.version:
                continue  # another process applied it while we waited for the lock
            for statement in migration.statements:
                sql_execute(db, statement)
            db.pragma("user_version", migration.version)
        applied.append(migration.version)
    return applied
