"""The outbox: every message that must leave the device is a row here before it is sent.

Rules:
- Rows are only added by the store, in the same transaction as the data they carry
  (:func:`add_messages`); there is no way to queue a message whose data was not committed.
- ``seq`` is the delivery order: ``pending()`` returns unsent rows in ascending ``seq``.
  Seqs are never reused (AUTOINCREMENT), so ``after_seq`` is a safe cursor.
- A row is marked sent only when the broker acknowledged it; marking is idempotent and the
  first acknowledgement time wins.
- Sent is not delivered: a row is *delivered* (``delivered_ns``) when the sink's receipt says
  it stored the message (docs/WIRE.md, "Delivery receipts"), or at its PUBACK when no receipt
  is expected (a ``route`` row for managers, a device with ``mqtt.delivery_receipts = false``,
  a clip whose file is gone). :meth:`Outbox.mark_delivered` is idempotent, the first time wins,
  and a row confirmed before its PUBACK was noted counts as sent too. Until then the row, and
  the clip file it names, is not the disk budget's or retention's to delete as delivered.
- ``created_ns``, ``sent_ns`` and ``delivered_ns`` are wall-clock nanoseconds: they must mean
  something after a reboot, when the monotonic clock starts again from zero.
- Delivered rows stay (for diagnosis) until ``purge_delivered()`` removes the old ones; a row
  that is only sent is never purged.
- After every transaction that added rows the store calls :meth:`Outbox.committed`, which calls
  whoever :meth:`Outbox.watch`-es (the publisher's wake-up): nobody polls the table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from peewee import SqliteDatabase, fn

from edge.records import OutboxMessage
from edge.store.models import OutboxModel, bound, from_json, to_json, writing

_CHUNK = 500  # stays far below SQLite's limit on bound parameters per statement


@dataclass(frozen=True, slots=True)
class Delivered:
    """Rows the sink confirmed, or that need no confirmation: by ``seq``, by ``msg_id``, and
    the ``clip`` rows of the clips named (a clip is confirmed as a whole, once verified)."""

    seqs: tuple[int, ...] = ()
    msg_ids: tuple[str, ...] = ()
    clip_ids: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.seqs or self.msg_ids or self.clip_ids)


@dataclass(frozen=True, slots=True)
class AwaitingRow:
    """A row the broker acknowledged and the sink has not confirmed yet (no payload)."""

    seq: int
    msg_id: str
    kind: str
    ref: str


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    msg_id: str
    kind: str
    ref: str
    payload: dict[str, Any]
    created_ns: int
    attempts: int


def add_messages(messages: Sequence[OutboxMessage], created_ns: int) -> None:
    """Append ``messages`` in the given order. Call inside the store's write transaction."""
    # One row per statement, so seq follows the order given.
    for m in messages:
        OutboxModel.insert(
            msg_id=m.msg_id,
            kind=m.kind,
            ref=m.ref,
            payload=to_json(m.payload),
            created_ns=created_ns,
        ).execute()


class Outbox:
    """Read and acknowledge the outbox of one store's database."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._watchers: list[Callable[[], None]] = []
        self._watchers_lock = threading.Lock()

    def watch(self, on_rows: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_rows()`` after every commit that added rows (on the writer's thread; it
        must be quick and thread-safe: the publisher's wake-up); returns the call that stops
        it. The publisher waits on this instead of polling the table."""
        with self._watchers_lock:
            self._watchers.append(on_rows)

        def unwatch() -> None:
            with self._watchers_lock:
                if on_rows in self._watchers:
                    self._watchers.remove(on_rows)

        return unwatch

    def committed(self) -> None:
        """New rows were committed (the store calls this after the transaction)."""
        with self._watchers_lock:
            watchers = list(self._watchers)
        for on_rows in watchers:
            on_rows()

    def of_kind(self, kind: str) -> list[OutboxRow]:
        """Every row of one kind, sent or not, in seq order (what the device has said)."""
        with bound(self._db):
            query = OutboxModel.select().where(OutboxModel.kind == kind).order_by(OutboxModel.seq)
            return [_row(r) for r in query]

    def pending(self, limit: int = 100, after_seq: int = 0) -> list[OutboxRow]:
        """Up to ``limit`` unsent rows with ``seq > after_seq``, in seq order."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        with bound(self._db):
            query = (
                OutboxModel.select()
                .where(OutboxModel.sent_ns.is_null(), OutboxModel.seq > after_seq)
                .order_by(OutboxModel.seq)
                .limit(limit)
            )
            return [_row(r) for r in query]

    def mark_sent(self, seqs: Sequence[int], sent_ns: int) -> int:
        """Mark rows acknowledged; return how many were newly marked (already sent: ignored)."""
        marked = 0
        with writing(self._db):
            for start in range(0, len(seqs), _CHUNK):
                chunk = list(seqs[start : start + _CHUNK])
                marked += (
                    OutboxModel.update(sent_ns=sent_ns)
                    .where(OutboxModel.seq.in_(chunk), OutboxModel.sent_ns.is_null())
                    .execute()
                )
        return marked

    def note_attempt(self, seq: int) -> None:
        """Count one more delivery attempt of row ``seq`` (no-op for an unknown seq)."""
        with bound(self._db):
            OutboxModel.update(attempts=OutboxModel.attempts + 1).where(
                OutboxModel.seq == seq
            ).execute()

    def mark_delivered(self, delivered: Delivered, at_ns: int) -> int:
        """Mark rows delivered (see the module notes); return how many were newly marked.
        Unknown seqs, msg_ids and clip ids are ignored; a row also unsent counts as sent now."""
        what = (
            (OutboxModel.seq, list(delivered.seqs), None),
            (OutboxModel.msg_id, list(delivered.msg_ids), None),
            (OutboxModel.ref, list(delivered.clip_ids), "clip"),
        )
        marked = 0
        with bound(self._db), self._db.atomic("IMMEDIATE"):
            for column, values, kind in what:
                for start in range(0, len(values), _CHUNK):
                    where = column.in_(values[start : start + _CHUNK])
                    if kind is not None:
                        where &= OutboxModel.kind == kind
                    marked += (
                        OutboxModel.update(
                            delivered_ns=at_ns, sent_ns=fn.COALESCE(OutboxModel.sent_ns, at_ns)
                        )
                        .where(where, OutboxModel.delivered_ns.is_null())
                        .execute()
                    )
        return marked

    def awaiting(self) -> list[AwaitingRow]:
        """Every row sent and not yet delivered, in seq order (what waits for a receipt)."""
        with bound(self._db):
            query = (
                OutboxModel.select(
                    OutboxModel.seq, OutboxModel.msg_id, OutboxModel.kind, OutboxModel.ref
                )
                .where(OutboxModel.delivered_ns.is_null(), OutboxModel.sent_ns.is_null(False))
                .order_by(OutboxModel.seq)
            )
            return [AwaitingRow(r.seq, r.msg_id, r.kind, r.ref) for r in query]

    def undelivered_rows(self, seqs: Sequence[int]) -> list[OutboxRow]:
        """The rows among ``seqs`` that are not delivered yet, in seq order (to send again)."""
        found: list[OutboxRow] = []
        with bound(self._db):
            for start in range(0, len(seqs), _CHUNK):
                query = OutboxModel.select().where(
                    OutboxModel.seq.in_(list(seqs[start : start + _CHUNK])),
                    OutboxModel.delivered_ns.is_null(),
                )
                found.extend(_row(r) for r in query)
        return sorted(found, key=lambda r: r.seq)

    def undelivered(self) -> int:
        """How many rows are not delivered yet (unsent, or sent and waiting for a receipt)."""
        with bound(self._db):
            count = (
                OutboxModel.select(fn.COUNT(OutboxModel.seq))
                .where(OutboxModel.delivered_ns.is_null())
                .scalar()
            )
            return int(count or 0)

    def depth(self) -> int:
        """How many rows are waiting to be sent."""
        with bound(self._db):
            count = (
                OutboxModel.select(fn.COUNT(OutboxModel.seq))
                .where(OutboxModel.sent_ns.is_null())
                .scalar()
            )
            return int(count or 0)

    def purge_delivered(self, older_than_ns: int) -> int:
        """Delete rows delivered before ``older_than_ns`` (wall ns); return how many went.
        A row only sent (acknowledged by the broker, not confirmed by the sink) stays."""
        with bound(self._db):
            deleted = (
                OutboxModel.delete()
                .where(
                    OutboxModel.delivered_ns.is_null(False),
                    OutboxModel.delivered_ns < older_than_ns,
                )
                .execute()
            )
            return int(deleted)


def _row(r: OutboxModel) -> OutboxRow:
    return OutboxRow(
        seq=r.seq,
        msg_id=r.msg_id,
        kind=r.kind,
        ref=r.ref,
        payload=from_json(r.payload),
        created_ns=r.created_ns,
        attempts=r.attempts,
    )
