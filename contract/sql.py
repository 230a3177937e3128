"""Raw SQL with types: the one typed door to a database driver's ``execute_sql``.

peewee carries no type hints, so every ``db.execute_sql(...)`` call was an untyped call (and an
``Any`` cursor) in strict mypy. Here the database and its cursor are typed structurally
(:class:`SqlDatabase`, :class:`Cursor`: what DB-API 2 guarantees and peewee's ``Database``
provides), so the device's store and the sink call :func:`execute` / :func:`rows` /
:func:`scalar` and get typed results, with no ``type: ignore`` anywhere.

Rules: placeholders are the database's (``?`` on SQLite, ``%s`` on PostgreSQL: peewee's
``db.param``); values are always bound as parameters, never formatted into the SQL text.
"""

from collections.abc import Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    """The part of a DB-API 2 cursor we use."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...


class SqlDatabase(Protocol):
    """What :func:`execute` needs of a database: peewee's ``Database.execute_sql``."""

    def execute_sql(self, sql: str, params: Sequence[Any] = ..., /) -> Cursor: ...


def execute(db: SqlDatabase, sql: str, params: Sequence[Any] = ()) -> Cursor:
    """Run ``sql`` with ``params`` bound; the DB-API cursor."""
    return db.execute_sql(sql, params)


def rows(db: SqlDatabase, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Every row of a query, as tuples."""
    return [tuple(row) for row in execute(db, sql, params).fetchall()]


def scalar(db: SqlDatabase, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row (None when there is no row)."""
    row = execute(db, sql, params).fetchone()
    return None if row is None else row[0]
