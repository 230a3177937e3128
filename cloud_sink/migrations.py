"""Numbered schema migrations, recorded in a table so they work on SQLite and PostgreSQL alike.

Rules:
- ``MIGRATIONS[i]`` has version ``i + 1``; versions are contiguous and never renumbered, a
  shipped migration is never edited. Migrations are frozen SQL text, not derived from models.
- The SQL is portable except for two placeholders: ``{serial}`` (an auto-increment primary key)
  and ``{bool_false}``, filled in per engine, and a migration's ``sqlite`` and ``postgresql``
  statements, run on that engine only (full-text search: an FTS5 table, a GIN index). Times
  are BIGINT nanoseconds or ISO 8601 TEXT; JSON is TEXT; no BLOBs (clip bytes live in files) but
  one: a clip's chunk bitmap (``clips.received``: BLOB on SQLite, BYTEA on PostgreSQL).
- Applied versions are rows of ``schema_migrations``. Each migration runs in one transaction
  with its row; on PostgreSQL the transaction first takes an advisory lock and on SQLite it is
  ``BEGIN IMMEDIATE``, and the applied set is re-read under that lock, so two sinks starting
  together apply each migration once.
- A database with a version newer than the code knows is refused with :class:`SchemaError`.
- Only ``sink run`` creates a database (:func:`migrate` on a fresh one). The commands that read
  or annotate what a sink stored open it with :func:`open_existing`, which refuses a place
  holding no sink database (:class:`NoDatabaseError`) and creates nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from peewee import Database

from cloud_sink.db import default_path, execute_sql, is_sqlite, open_database, transaction


class SchemaError(RuntimeError):
    """The database was migrated by a newer sink than this one."""


class NoDatabaseError(RuntimeError):
    """A command that reads a sink's database was pointed at a place that holds none."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    sqlite: tuple[str, ...] = ()  # run after ``statements`` on SQLite only
    postgresql: tuple[str, ...] = ()  # ... on PostgreSQL only


_ADVISORY_LOCK_KEY: Final = 0x636F6E7461637470  # "contactp"

_BOOKKEEPING: Final = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER NOT NULL PRIMARY KEY,
    name TEXT NOT NULL
)"""

_V1 = Migration(
    1,
    "initial schema: devices, messages, contacts, events, tags, clips, chunks, dead letters",
    (
        """CREATE TABLE devices (
            device TEXT NOT NULL PRIMARY KEY,
            site TEXT NOT NULL,
            first_seen_ns BIGINT NOT NULL,
            last_seen_ns BIGINT NOT NULL,
            online BOOLEAN,
            version TEXT,
            boot_id TEXT,
            outbox_depth BIGINT,
            free_disk_bytes BIGINT,
            clock_synced BOOLEAN,
            status_at TEXT
        )""",
        # (device, msg_id) once: the key that makes QoS 1 redeliveries harmless.
        """CREATE TABLE messages (
            device TEXT NOT NULL,
            msg_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            received_ns BIGINT NOT NULL,
            PRIMARY KEY (device, msg_id)
        )""",
        """CREATE TABLE contacts (
            device TEXT NOT NULL,
            id TEXT NOT NULL,
            site TEXT NOT NULL,
            msg_id TEXT NOT NULL,
            start_iso TEXT NOT NULL,
            end_iso TEXT NOT NULL,
            duration_s DOUBLE PRECISION NOT NULL,
            ended_by TEXT NOT NULL,
            mode TEXT NOT NULL,
            clip TEXT,
            clock_synced BOOLEAN NOT NULL,
            boot_id TEXT NOT NULL,
            received_ns BIGINT NOT NULL,
            PRIMARY KEY (device, id)
        )""",
        "CREATE INDEX contacts_start ON contacts (start_iso)",
        # No foreign key to contacts: an event message naming an unknown contact must not turn
        # into an integrity error redelivered forever. pos orders a contact's events.
        """CREATE TABLE events (
            device TEXT NOT NULL,
            id TEXT NOT NULL,
            contact_id TEXT,
            pos INTEGER NOT NULL,
            kind TEXT NOT NULL,
            at_iso TEXT NOT NULL,
            body TEXT NOT NULL,
            received_ns BIGINT NOT NULL,
            PRIMARY KEY (device, id)
        )""",
        "CREATE INDEX events_contact ON events (device, contact_id, pos)",
        """CREATE TABLE tags (
            device TEXT NOT NULL,
            contact_id TEXT NOT NULL,
            pos INTEGER NOT NULL,
            tag TEXT NOT NULL,
            PRIMARY KEY (device, contact_id, pos),
            FOREIGN KEY (device, contact_id) REFERENCES contacts (device, id) ON DELETE CASCADE
        )""",
        """CREATE TABLE clips (
            device TEXT NOT NULL,
            clip_id TEXT NOT NULL,
            site TEXT NOT NULL,
            codec TEXT NOT NULL,
            sample_rate INTEGER NOT NULL,
            total INTEGER NOT NULL,
            clip_bytes BIGINT NOT NULL,
            clip_sha256 TEXT NOT NULL,
            first_seen_ns BIGINT NOT NULL,
            quiet_since_ns BIGINT NOT NULL,
            resend_requests INTEGER NOT NULL DEFAULT 0,
            complete BOOLEAN NOT NULL DEFAULT {bool_false},
            path TEXT,
            completed_ns BIGINT,
            PRIMARY KEY (device, clip_id)
        )""",
        "CREATE INDEX clips_incomplete ON clips (complete, quiet_since_ns)",
        """CREATE TABLE chunks (
            device TEXT NOT NULL,
            clip_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            byte_offset BIGINT NOT NULL,
            size BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            received_ns BIGINT NOT NULL,
            PRIMARY KEY (device, clip_id, seq),
            FOREIGN KEY (device, clip_id) REFERENCES clips (device, clip_id) ON DELETE CASCADE
        )""",
        """CREATE TABLE dead_letters (
            id {serial},
            topic TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            head TEXT NOT NULL,
            payload_bytes BIGINT NOT NULL,
            received_ns BIGINT NOT NULL
        )""",
    ),
)

_V2 = Migration(
    2,
    "alerts, annotations (reasons for dissatisfaction), contacts.video_url",
    (
        "ALTER TABLE contacts ADD COLUMN video_url TEXT",
        # A device's alerts (scope = its id) and the sink's own site-level ones (scope '_site');
        # id is the alert's stable id, so the same firing is stored once.
        """CREATE TABLE alerts (
            site TEXT NOT NULL,
            scope TEXT NOT NULL,
            id TEXT NOT NULL,
            rule TEXT NOT NULL,
            at_iso TEXT NOT NULL,
            body TEXT NOT NULL,
            received_ns BIGINT NOT NULL,
            published_ns BIGINT,
            PRIMARY KEY (site, scope, id)
        )""",
        "CREATE INDEX alerts_rule_at ON alerts (site, scope, rule, at_iso)",
        # One row per reason a manager ticked for a contact.
        """CREATE TABLE annotations (
            id {serial},
            device TEXT NOT NULL,
            contact_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            note TEXT NOT NULL,
            by_name TEXT NOT NULL,
            at_ns BIGINT NOT NULL,
            FOREIGN KEY (device, contact_id) REFERENCES contacts (device, id) ON DELETE CASCADE
        )""",
        "CREATE INDEX annotations_contact ON annotations (device, contact_id)",
    ),
)

_V3 = Migration(
    3,
    "staff attribution: contacts.staff (who served the contact; NULL = unknown)",
    (
        "ALTER TABLE contacts ADD COLUMN staff TEXT",
        "CREATE INDEX contacts_staff ON contacts (staff)",
    ),
)

_V4 = Migration(
    4,
    "audio retention: clips.audio_deleted_at (ns the clip's audio was deleted by retention)",
    ("ALTER TABLE clips ADD COLUMN audio_deleted_at BIGINT",),
)

_V5 = Migration(
    5,
    "the HTTP API's accounts: API tokens, users, browser sessions, the clip-listening audit log",
    (
        # token_sha256: the token itself is shown once and never stored; sites: JSON list
        # (empty = every site); times in ns, expires_ns/revoked_ns NULL = never/not revoked.
        """CREATE TABLE api_tokens (
            id {serial},
            token_sha256 TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            sites TEXT NOT NULL,
            created_ns BIGINT NOT NULL,
            expires_ns BIGINT,
            revoked_ns BIGINT
        )""",
        """CREATE TABLE api_users (
            name TEXT NOT NULL PRIMARY KEY,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            sites TEXT NOT NULL,
            created_ns BIGINT NOT NULL,
            changed_ns BIGINT NOT NULL
        )""",
        # the session id is the cookie's value: only its sha256 is stored
        """CREATE TABLE api_sessions (
            id_sha256 TEXT NOT NULL PRIMARY KEY,
            user_name TEXT NOT NULL,
            csrf TEXT NOT NULL,
            created_ns BIGINT NOT NULL,
            expires_ns BIGINT NOT NULL,
            FOREIGN KEY (user_name) REFERENCES api_users (name) ON DELETE CASCADE
        )""",
        """CREATE TABLE audit_log (
            id {serial},
            who TEXT NOT NULL,
            action TEXT NOT NULL,
            device TEXT NOT NULL,
            contact_id TEXT NOT NULL,
            site TEXT NOT NULL,
            remote TEXT NOT NULL,
            at_ns BIGINT NOT NULL
        )""",
        "CREATE INDEX audit_log_at ON audit_log (at_ns)",
        "CREATE INDEX contacts_site_start ON contacts (site, start_iso)",
    ),
)

_V6 = Migration(
    6,
    "speech analytics: transcripts (claimed by lease), their full-text index, standard checks",
    (
        # One row per verified clip a transcribe worker claimed: state 'claimed' (worker and
        # lease_until_ns say by whom and until when), 'done' or 'failed' (error, retried after
        # lease_until_ns while attempts < the configured maximum). words: JSON
        # [[word, start_s, end_s, confidence], ...]; search_text: the words and their lemmas.
        """CREATE TABLE transcripts (
            device TEXT NOT NULL,
            clip_id TEXT NOT NULL,
            state TEXT NOT NULL,
            worker TEXT NOT NULL,
            lease_until_ns BIGINT NOT NULL,
            attempts INTEGER NOT NULL,
            engine TEXT,
            model TEXT,
            language TEXT,
            text TEXT,
            words TEXT,
            search_text TEXT,
            audio_s DOUBLE PRECISION,
            elapsed_s DOUBLE PRECISION,
            error TEXT,
            done_ns BIGINT,
            PRIMARY KEY (device, clip_id)
        )""",
        "CREATE INDEX transcripts_state ON transcripts (state, lease_until_ns)",
        # A contact's outcome per service-standard rule, and where in the clip each match is.
        """CREATE TABLE standard_checks (
            device TEXT NOT NULL,
            contact_id TEXT NOT NULL,
            rule TEXT NOT NULL,
            passed BOOLEAN NOT NULL,
            tag TEXT,
            checked_ns BIGINT NOT NULL,
            PRIMARY KEY (device, contact_id, rule)
        )""",
        """CREATE TABLE standard_matches (
            device TEXT NOT NULL,
            contact_id TEXT NOT NULL,
            rule TEXT NOT NULL,
            pos INTEGER NOT NULL,
            phrase TEXT NOT NULL,
            heard TEXT NOT NULL,
            start_s DOUBLE PRECISION NOT NULL,
            end_s DOUBLE PRECISION NOT NULL,
            score DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (device, contact_id, rule, pos)
        )""",
    ),
    sqlite=(
        "CREATE VIRTUAL TABLE transcripts_fts USING fts5(device UNINDEXED, clip_id UNINDEXED, "
        "body, tokenize = 'porter unicode61 remove_diacritics 2')",
    ),
    postgresql=(
        "CREATE INDEX transcripts_search ON transcripts USING GIN ((to_tsvector('russian', "
        "coalesce(search_text, '')) || to_tsvector('english', coalesce(search_text, ''))))",
    ),
)

_V7 = Migration(
    7,
    "device offline alerts: alerts.device (the device a sink-made alert is about), cleared_ns",
    (
        # NULL for rule alerts; the device of a device_offline alert (scope '_site'), and when
        # that alert was cleared (ns; NULL = still active)
        "ALTER TABLE alerts ADD COLUMN device TEXT",
        "ALTER TABLE alerts ADD COLUMN cleared_ns BIGINT",
        "CREATE INDEX alerts_device ON alerts (device, rule, cleared_ns)",
    ),
)

_V8 = Migration(
    8,
    "clips in object storage: clips.location (NULL = the file at clips.path in the data "
    "directory; s3://BUCKET/KEY = that object)",
    (
        "ALTER TABLE clips ADD COLUMN location TEXT",
        # the uploader's question: verified clips still only in the data directory
        "CREATE INDEX clips_pending_upload ON clips (completed_ns) "
        "WHERE location IS NULL AND path IS NOT NULL AND audio_deleted_at IS NULL",
    ),
)

_V9 = Migration(
    9,
    "contact list speed: covering (site, start, device, id) index, contacts by device and "
    "start, tags by contact and tag, clips with audio",
    (
        # a page of GET /api/v1/contacts in (start, device, id) order, walked per site or per
        # device; a tag filter and has_audio probe these indexes alone (cloud_sink/api/queries.py)
        "CREATE INDEX contacts_device_start ON contacts (device, start_iso)",
        "CREATE INDEX tags_contact_tag ON tags (device, contact_id, tag)",
        "CREATE INDEX clips_audio ON clips (device, clip_id) "
        "WHERE complete AND audio_deleted_at IS NULL",
        "DROP INDEX contacts_site_start",
    ),
    # mode, ended_by and staff are in the index, so those filters need not read the row:
    # PostgreSQL as INCLUDE columns, SQLite (which has no INCLUDE) as trailing key columns
    sqlite=(
        "CREATE INDEX contacts_site_order ON contacts "
        "(site, start_iso, device, id, mode, ended_by, staff)",
    ),
    postgresql=(
        "CREATE INDEX contacts_site_order ON contacts (site, start_iso, device, id) "
        "INCLUDE (mode, ended_by, staff)",
    ),
)

_V10 = Migration(
    10,
    "clip chunks straight into place: clips.received (a bitmap of the chunks here), "
    "received_count; the chunks table goes",
    (
        # a clip being received when this runs had its chunks as files and rows: they are asked
        # for again (the device keeps a clip until its receipt)
        "ALTER TABLE clips ADD COLUMN received_count INTEGER NOT NULL DEFAULT 0",
        "DROP TABLE chunks",
    ),
    # bit seq % 8 of byte seq // 8 is set once chunk seq's bytes are durable in the partial file
    sqlite=("ALTER TABLE clips ADD COLUMN received BLOB",),
    postgresql=("ALTER TABLE clips ADD COLUMN received BYTEA",),
)

MIGRATIONS: Final[tuple[Migration, ...]] = (
    _V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10,
)  # fmt: skip


def _render(db: Database, sql: str) -> str:
    if is_sqlite(db):
        return sql.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT", bool_false="0")
    return sql.format(serial="BIGSERIAL PRIMARY KEY", bool_false="FALSE")


def _lock(db: Database) -> None:
    if not is_sqlite(db):
        execute_sql(db, "SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))


def applied(db: Database) -> set[int]:
    cursor = execute_sql(db, "SELECT version FROM schema_migrations")
    return {int(row[0]) for row in cursor.fetchall()}


def migrate(db: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the pending migrations in order; return the versions applied now."""
    with transaction(db):
        _lock(db)
        execute_sql(db, _BOOKKEEPING)
    known = {m.version for m in migrations}
    newer = sorted(applied(db) - known)
    if newer:
        raise SchemaError(
            f"the database has schema version {newer[-1]}, newer than this sink knows "
            f"({max(known)}): upgrade contactpoint"
        )
    done: list[int] = []
    for migration in migrations:
        with transaction(db):
            _lock(db)
            if migration.version in applied(db):
                continue
            extra = migration.sqlite if is_sqlite(db) else migration.postgresql
            for statement in (*migration.statements, *extra):
                execute_sql(db, _render(db, statement))
            execute_sql(
                db,
                f"INSERT INTO schema_migrations (version, name) VALUES ({db.param}, {db.param})",  # noqa: S608 - placeholders
                (migration.version, migration.name),
            )
        done.append(migration.version)
    return done


def open_existing(url: str | None, data_dir: Path) -> Database:
    """The database a sink created (``sink run``) at ``url`` / in ``data_dir``, its schema
    brought up to date; :class:`NoDatabaseError` when there is none (nothing is created)."""
    if url is None or url.startswith("sqlite:///"):
        path = default_path(data_dir) if url is None else Path(url.removeprefix("sqlite:///"))
        where = str(path)
        if not path.is_file():
            raise NoDatabaseError(
                f"no sink database at {where}: 'contactpoint sink run --data {data_dir}' creates "
                "it; check --data (or --db)"
            )
    else:
        parts = urlsplit(url)
        where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"  # no password
    db = open_database(url, data_dir)
    try:
        if not db.table_exists("schema_migrations") or not applied(db):
            raise NoDatabaseError(
                f"{where} holds no sink database (no schema): 'contactpoint sink run' creates it; "
                "check --data (or --db)"
            )
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db
