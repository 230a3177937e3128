"""contract.sql: typed raw SQL over a real peewee database (SQLite in memory)."""

from __future__ import annotations

from peewee import SqliteDatabase

from contract.sql import execute, rows, scalar


def test_values_are_bound_and_results_typed() -> None:
    db = SqliteDatabase(":memory:")
    execute(db, "CREATE TABLE t (k TEXT, v INTEGER)")
    hostile = "x'); DROP TABLE t; --"  # a parameter, never SQL text
    assert execute(db, "INSERT INTO t VALUES (?, ?)", (hostile, 7)).rowcount == 1
    execute(db, "INSERT INTO t VALUES (?, ?)", ("b", 8))
    assert rows(db, "SELECT k, v FROM t ORDER BY v") == [(hostile, 7), ("b", 8)]
    assert scalar(db, "SELECT COUNT(*) FROM t") == 2
    assert scalar(db, "SELECT v FROM t WHERE k = ?", ("missing",)) is None
