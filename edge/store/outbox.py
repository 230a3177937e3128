"""The outbox: every message that must leave the device is a row here before it is sent.

Rules:
- Rows are only added by the store, in the same transaction as the data they carry
  (:func:`add_messages`); there is no way to queue a message whose data was not committed.
- ``seq`` is the delivery order: ``pending()`` returns unsent rows in ascending ``seq``.
  Seqs are never reused (AUTOINCREMENT), so ``after_seq`` is a safe cursor.
- A row is marked sent only when the broker acknowledged it; marking is idempotent and the
  first acknowledgement time wins.
- ``created_ns`` and ``sent_ns`` are wall-clock nanoseconds: they must mean something after a
  reboot, when the monotonic clock starts again from zero.
- Sent rows stay (for diagnosis) until ``purge_sent()`` removes the old ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import SqliteDatabase, fn

from edge.records import OutboxMessage
from edge.store.models import OutboxModel, bound, from_json, to_json, writing

_CHUNK = 500  # stays far below SQLite's limit on bound parameters per statement


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

    def depth(self) -> int:
        """How many rows are waiting to be sent."""
        with bound(self._db):
            count = (
                OutboxModel.select(fn.COUNT(OutboxModel.seq))
                .where(OutboxModel.sent_ns.is_null())
                .scalar()
            )
            return int(count or 0)

    def purge_sent(self, older_than_ns: int) -> int:
        """Delete rows sent before ``older_than_ns`` (wall ns); return how many went."""
        with bound(self._db):
            deleted = (
                OutboxModel.delete()
                .where(OutboxModel.sent_ns.is_null(False), OutboxModel.sent_ns < older_than_ns)
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
