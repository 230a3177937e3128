"""The route queue: one durable queue per route destination, in the device database.

Rules:
- Rows are added by the store in the transaction that stores what they carry
  (:func:`add_route_jobs`), so a contact that was committed is never missing its deliveries.
- A destination's rows are delivered in ``id`` order; a row is *open* until it is marked done
  (the destination accepted it) or failed (the destination refused it for good: a dead letter,
  kept with its error for a person to look at).
- ``delivery_id`` is stable across retries and restarts: a delivery repeated after a crash
  between the destination's acceptance and :meth:`RouteQueue.mark_done` carries the same id,
  so the receiver can deduplicate it.
- The same (destination, kind, ref) is queued once: adding it again is a no-op.
- Writers (the route workers) go through the store's lock, each write its own short
  ``BEGIN IMMEDIATE`` transaction; times are wall-clock nanoseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import SqliteDatabase, fn

from edge.records import RouteJob
from edge.store.models import RouteJobModel, bound, from_json, to_json, writing

_MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class RouteRow:
    id: int
    delivery_id: str
    destination: str
    kind: str
    ref: str
    payload: dict[str, Any]
    created_ns: int
    attempts: int
    last_error: str


@dataclass(frozen=True, slots=True)
class RouteCounts:
    open: int = 0
    done: int = 0
    failed: int = 0


def add_route_jobs(jobs: Sequence[RouteJob], created_ns: int) -> int:
    """Queue ``jobs`` in the given order; return how many were new. Call inside the store's
    write transaction."""
    added = 0
    for job in jobs:
        queued = RouteJobModel.select().where(
            RouteJobModel.destination == job.destination,
            RouteJobModel.kind == job.kind,
            RouteJobModel.ref == job.ref,
        )
        if queued.exists():
            continue
        RouteJobModel.insert(
            delivery_id=job.delivery_id,
            destination=job.destination,
            kind=job.kind,
            ref=job.ref,
            payload=to_json(job.payload),
            created_ns=created_ns,
        ).execute()
        added += 1
    return added


def _open(destination: str | None = None) -> Any:
    where = RouteJobModel.done_ns.is_null() & RouteJobModel.failed_ns.is_null()
    if destination is not None:
        where &= RouteJobModel.destination == destination
    return where


class RouteQueue:
    """Read and settle the route queue of one store's database."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def next(self, destination: str) -> RouteRow | None:
        """The oldest open row of ``destination``."""
        with bound(self._db):
            row = (
                RouteJobModel.select().where(_open(destination)).order_by(RouteJobModel.id).first()
            )
            return None if row is None else _row(row)

    def open_rows(self, destination: str | None = None, limit: int = 100) -> list[RouteRow]:
        with bound(self._db):
            query = RouteJobModel.select().where(_open(destination)).order_by(RouteJobModel.id)
            return [_row(r) for r in query.limit(limit)]

    def failed_rows(self, destination: str | None = None, limit: int = 100) -> list[RouteRow]:
        with bound(self._db):
            where = RouteJobModel.failed_ns.is_null(False)
            if destination is not None:
                where &= RouteJobModel.destination == destination
            query = RouteJobModel.select().where(where).order_by(RouteJobModel.id)
            return [_row(r) for r in query.limit(limit)]

    def mark_done(self, row_id: int, done_ns: int) -> bool:
        """The destination accepted row ``row_id``; False if it was settled already."""
        return self._settle(row_id, done_ns=done_ns)

    def mark_failed(self, row_id: int, error: str, failed_ns: int) -> bool:
        """The destination refused row ``row_id`` for good; False if it was settled already."""
        return self._settle(row_id, failed_ns=failed_ns, last_error=error[:_MAX_ERROR])

    def note_failure(self, row_id: int, error: str) -> None:
        """One more attempt of row ``row_id`` failed for a reason that may pass."""
        with writing(self._db):
            RouteJobModel.update(
                attempts=RouteJobModel.attempts + 1, last_error=error[:_MAX_ERROR]
            ).where(RouteJobModel.id == row_id).execute()

    def depth(self, destination: str | None = None) -> int:
        """How many rows are open (of ``destination``, or of all)."""
        with bound(self._db):
            count = RouteJobModel.select(fn.COUNT(RouteJobModel.id)).where(_open(destination))
            return int(count.scalar() or 0)

    def counts(self) -> dict[str, RouteCounts]:
        """Open, done and failed rows per destination."""
        with bound(self._db):
            query: Any = (
                RouteJobModel.select(
                    RouteJobModel.destination,
                    fn.SUM(RouteJobModel.done_ns.is_null() & RouteJobModel.failed_ns.is_null()),
                    fn.SUM(RouteJobModel.done_ns.is_null(False)),
                    fn.SUM(RouteJobModel.failed_ns.is_null(False)),
                )
                .group_by(RouteJobModel.destination)
                .tuples()
            )
            rows: list[tuple[Any, ...]] = list(query)
        return {
            str(dest): RouteCounts(int(o or 0), int(d or 0), int(f or 0)) for dest, o, d, f in rows
        }

    def _settle(self, row_id: int, **fields: Any) -> bool:
        with writing(self._db):
            changed = (
                RouteJobModel.update(attempts=RouteJobModel.attempts + 1, **fields)
                .where(RouteJobModel.id == row_id, _open())
                .execute()
            )
        return bool(changed)


def _row(r: RouteJobModel) -> RouteRow:
    return RouteRow(
        id=r.id,
        delivery_id=r.delivery_id,
        destination=r.destination,
        kind=r.kind,
        ref=r.ref,
        payload=from_json(r.payload),
        created_ns=r.created_ns,
        attempts=r.attempts,
        last_error=r.last_error,
    )
