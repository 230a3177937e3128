"""peewee models of the newest schema (the tables themselves are built by ``migrations``).

Rules:
- The models are bound to no database: every use goes through :func:`bound`, which binds them
  to one store's database for the duration of a call. Several stores (files) can live in one
  process; a module lock serialises the calls, because a binding is class-level state.
- Columns mirror the SQL of the migrations one to one (a test compares them). Foreign keys and
  checks live in that SQL; the models declare plain columns so nothing is lazily loaded.
- JSON columns are TEXT, written and read with :func:`to_json` and :func:`from_json`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from peewee import (
    AutoField,
    BooleanField,
    CompositeKey,
    DatabaseError,
    DatabaseProxy,
    IntegerField,
    Model,
    SqliteDatabase,
    TextField,
)

# Never initialised: a query outside bound() fails with "Cannot use uninitialized Proxy".
_UNBOUND = DatabaseProxy()
_LOCK = threading.RLock()


class _Base(Model):
    class Meta:
        database = _UNBOUND


class ContactModel(_Base):
    id = TextField(primary_key=True)
    mode = TextField()
    start_ns = IntegerField()
    end_ns = IntegerField()
    start_wall_ns = IntegerField()
    end_wall_ns = IntegerField()
    ended_by = TextField()
    clock_synced = BooleanField()
    boot_id = TextField()
    created_ns = IntegerField()
    video_url = TextField(null=True)  # migration 2
    staff = TextField(null=True)  # migration 4
    clip_missing = TextField(null=True)  # migration 6
    clock_stepped = BooleanField(default=False)  # migration 6

    class Meta:
        table_name = "contacts"


class EventModel(_Base):
    id = TextField(primary_key=True)
    contact_id = TextField(null=True)  # NULL: an orphan event, outside any contact
    kind = TextField()
    t_ns = IntegerField()
    wall_ns = IntegerField()
    button = TextField(null=True)
    role = TextField(null=True)
    gesture = TextField(null=True)
    duration_ns = IntegerField(null=True)
    question = IntegerField(null=True)
    via = TextField(null=True)
    receipt_id = TextField(null=True)
    data = TextField()  # JSON object
    video_url = TextField(null=True)  # migration 2
    staff = TextField(null=True)  # migration 4

    class Meta:
        table_name = "events"


class TagModel(_Base):
    contact_id = TextField()
    position = IntegerField()  # the order the tags were given in
    tag = TextField()

    class Meta:
        table_name = "tags"
        primary_key = CompositeKey("contact_id", "position")


class ClipModel(_Base):
    contact_id = TextField(primary_key=True)
    path = TextField()
    codec = TextField()
    sample_rate = IntegerField()
    start_index = IntegerField()
    end_index = IntegerField()
    start_ns = IntegerField()
    end_ns = IntegerField()
    sha256 = TextField()
    bytes = IntegerField()
    truncated = BooleanField()
    gaps = TextField()  # JSON list of [start, end) sample index pairs
    audio_deleted_at = IntegerField(null=True)  # audio retention: wall ns the file was deleted

    class Meta:
        table_name = "clips"


class OutboxModel(_Base):
    seq = AutoField()  # the delivery order
    msg_id = TextField(unique=True)
    kind = TextField()
    ref = TextField()
    payload = TextField()  # JSON object
    created_ns = IntegerField()
    sent_ns = IntegerField(null=True)  # NULL: not acknowledged by the broker yet
    attempts = IntegerField(default=0)
    delivered_ns = IntegerField(null=True)  # migration 7; NULL: the sink has not confirmed it

    class Meta:
        table_name = "outbox"


class RouteJobModel(_Base):  # migration 3
    id = AutoField()  # the delivery order within a destination
    delivery_id = TextField(unique=True)  # stable across retries: receivers deduplicate by it
    destination = TextField()
    kind = TextField()  # contact | alert
    ref = TextField()  # the contact's or alert's id
    payload = TextField()  # JSON object
    created_ns = IntegerField()
    attempts = IntegerField(default=0)
    last_error = TextField(default="")
    done_ns = IntegerField(null=True)  # wall ns the destination accepted it
    failed_ns = IntegerField(null=True)  # wall ns it was refused for good (a dead letter)

    class Meta:
        table_name = "route_queue"


MODELS: tuple[type[Model], ...] = (
    ContactModel,
    EventModel,
    TagModel,
    ClipModel,
    OutboxModel,
    RouteJobModel,
)


@contextmanager
def bound(db: SqliteDatabase) -> Iterator[None]:
    """Bind the models to ``db`` for the body of the ``with`` (and hold the store lock)."""
    with _LOCK, db.bind_ctx(MODELS, bind_refs=False, bind_backrefs=False):
        yield


@contextmanager
def writing(db: SqliteDatabase) -> Iterator[None]:
    """:func:`bound` and a ``BEGIN IMMEDIATE`` write transaction for the body of the ``with``.

    A COMMIT that SQLite refuses (``database or disk is full``, ``disk I/O error``) is rolled
    back by SQLite itself, so peewee's rollback then fails with "no transaction is active";
    the error raised is the one that made the transaction fail (callers look at it: a full
    disk is waited out, see edge/diskbudget.py)."""
    try:
        with bound(db), db.atomic("IMMEDIATE"):
            yield
    except DatabaseError as exc:
        failure: BaseException = exc
        while "no transaction is active" in str(failure) and failure.__context__ is not None:
            failure = failure.__context__
        if failure is exc:
            raise
        raise failure from None


def to_json(value: Any) -> str:
    """Compact JSON text; NaN and infinities are refused (they are not JSON)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def from_json(text: str) -> Any:
    return json.loads(text)
