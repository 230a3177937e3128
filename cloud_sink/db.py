"""The sink's database connection: the one place for connection settings.

Rules:
- No URL: SQLite at ``<data dir>/sink.db``. ``sqlite:///PATH`` names another file;
  ``postgresql://...`` (or ``postgres://``) uses PostgreSQL through psycopg 3. Anything else is
  refused with :class:`DatabaseUrlError`.
- SQLite: WAL journal, ``synchronous=FULL``, foreign keys on, busy timeout 5 s, set on every
  connection; writes take the lock at their start (``BEGIN IMMEDIATE``), so two sinks on one
  file serialise instead of failing half-way.
- PostgreSQL: autocommit outside transactions (peewee's default), READ COMMITTED inside;
  concurrent writers are made safe by unique keys and ``ON CONFLICT``; rows that several
  workers write (devices, clips) are locked in one order, so that workers never deadlock on
  each other's rows: the devices' rows at a batch's end, sorted, and clips and sites on
  advisory locks taken at the start of a transaction, sorted (cloud_sink/ingest.py,
  cloud_sink/alerts.py).
- One connection per thread (peewee's thread-local state); :func:`transaction` is the only
  way the sink writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from peewee import Database, PostgresqlDatabase, SqliteDatabase

from contract.sql import Cursor
from contract.sql import execute as sql_execute

BUSY_TIMEOUT_MS: Final = 5_000
SQLITE_PRAGMAS: Final[tuple[tuple[str, str | int], ...]] = (
    ("journal_mode", "wal"),
    ("synchronous", "full"),  # a commit is our ack to the broker: it must survive power loss
    ("foreign_keys", "on"),
    ("busy_timeout", BUSY_TIMEOUT_MS),
)


class DatabaseUrlError(ValueError):
    """The --db URL names no engine the sink supports."""


def default_path(data_dir: Path) -> Path:
    return data_dir / "sink.db"


def open_database(url: str | None, data_dir: Path) -> Database:
    """Connect to ``url`` (default: SQLite in ``data_dir``); the caller runs migrations."""
    if url is None or url.startswith("sqlite:///"):
        path = default_path(data_dir) if url is None else Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        db: Database = SqliteDatabase(
            str(path), pragmas=SQLITE_PRAGMAS, timeout=BUSY_TIMEOUT_MS / 1000
        )
    elif url.startswith(("postgresql://", "postgres://")):
        db = PostgresqlDatabase(url.replace("postgres://", "postgresql://", 1))
    else:
        raise DatabaseUrlError(
            f"unsupported database URL {url!r}: use postgresql://USER@HOST:PORT/NAME, "
            "sqlite:///PATH, or leave --db out for SQLite in the data directory"
        )
    db.connect()
    return db


def is_sqlite(db: Database) -> bool:
    return isinstance(db, SqliteDatabase)


def execute_sql(db: Database, sql: str, params: Sequence[Any] = ()) -> Cursor:
    """Run raw SQL (placeholders: ``db.param``); returns the DB-API cursor (typed:
    :mod:`contract.sql`)."""
    return sql_execute(db, sql, params)


def rowcount(db: Database, query: Any) -> int:
    """Execute a peewee write query; how many rows it wrote (0 when ON CONFLICT skipped it)."""
    count: int = db.execute(query).rowcount  # type: ignore[no-untyped-call]
    return count


@contextmanager
def transaction(db: Database) -> Iterator[None]:
    """One write transaction: committed when the body returns, rolled back when it raises."""
    ctx: Any = db.atomic("IMMEDIATE") if is_sqlite(db) else db.atomic()
    with ctx:
        yield
