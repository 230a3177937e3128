"""The device database: the one place for SQLite settings, and the store built on them.

Rules:
- One writer: the daemon holds a single connection per file; writes run in ``BEGIN IMMEDIATE``
  transactions, so a transaction takes the write lock at its start, never half-way through.
- WAL journal, ``synchronous=FULL``, foreign keys on, a busy timeout and a WAL size limit are
  set on every connection (peewee applies ``PRAGMAS`` whenever it connects); the file must
  really be in WAL mode after connecting, otherwise opening fails loudly.
- Opening applies the pending migrations (:mod:`edge.store.migrations`).
- A contact is saved in ONE transaction with its events, tags, clip, outbox rows and route
  deliveries; an orphan event likewise with its outbox rows and route deliveries. An id that is
  already stored is not written again.
- The store is plain persistence: it writes what it is given. Which destinations get a contact
  is decided by the caller (the core, edge/app.py, through edge/routes/plan.py).
- Only what SQLite and JSON can hold is written (:mod:`edge.store.storable`): a record or
  payload with NaN, an infinity or an unpaired surrogate is refused, before anything is
  written, with a ValueError naming the field.
- Records go in and come out unchanged: a contact's events come back in ``t_ns`` order (ties in
  the order given), its tags in the order given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from peewee import SQL, DatabaseError, SqliteDatabase

from contract.crashpoint import crashpoint
from contract.sql import execute as sql_execute
from contract.sql import rows as sql_rows
from edge._errors import UserError
from edge.records import (
    POSTED,
    ClipInfo,
    ContactRecord,
    CrmEvent,
    EventRecord,
    OutboxMessage,
    RouteJob,
)
from edge.store.migrations import migrate
from edge.store.models import (
    ClipModel,
    ContactModel,
    EventModel,
    TagModel,
    bound,
    from_json,
    to_json,
    writing,
)
from edge.store.outbox import Outbox, add_messages
from edge.store.route_queue import RouteQueue, add_route_jobs
from edge.store.storable import check_json, check_record

BUSY_TIMEOUT_MS: Final = 5_000
CACHE_KIB: Final = 512
PRAGMAS: Final[tuple[tuple[str, str | int], ...]] = (
    # WAL: readers (the CLI, a backup) never block the writer and the writer never blocks them;
    # a commit appends to the -wal file instead of rewriting pages of the main file in place.
    ("journal_mode", "wal"),
    # FULL, not NORMAL: in WAL mode NORMAL stays consistent on power loss but may forget the
    # last commits. A Pi at a counter gets unplugged, and a committed contact plus its outbox
    # rows is our promise of delivery, so every commit syncs the WAL. One fsync per contact
    # (a few a minute) is cheap.
    ("synchronous", "full"),
    # Off by default in SQLite, per connection: without it the REFERENCES clauses are comments.
    ("foreign_keys", "on"),
    # Another process (the CLI, a backup) may hold a lock for a moment: wait, do not fail.
    ("busy_timeout", BUSY_TIMEOUT_MS),
    # After a checkpoint, truncate the -wal file back to 4 MiB so a burst does not keep
    # a large file on the SD card.
    ("journal_size_limit", 4 * 1024 * 1024),
    # SQLite's page cache, per connection: 512 KiB instead of the default 2 MiB (negative:
    # KiB). The device's file is small and its queries read recent rows by index; a page
    # not cached is a read from the kernel's page cache. 0.7-1.2 MiB less RSS on an 8-hour
    # shift (bench/README.md, memory, issue #14 fifth step).
    ("cache_size", -CACHE_KIB),
)


class StoreError(UserError):
    """The database file cannot be used as it is; the message names the file and the fix."""


def connect(path: Path) -> SqliteDatabase:
    """Open ``path`` (creating its directory and the file) with the settings above."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase(
        str(path),
        pragmas=PRAGMAS,
        timeout=BUSY_TIMEOUT_MS / 1000,
        # One connection shared by the threads of the daemon; the store serialises its use.
        thread_safe=False,
        check_same_thread=False,
        # Use after close() is a bug: fail instead of silently reconnecting.
        autoconnect=False,
    )
    try:
        db.connect()
        mode = str(db.journal_mode).lower()
    except DatabaseError as exc:
        db.close()
        raise StoreError(
            f"{path}: cannot open the database ({exc}). If this is not a contactpoint "
            "database, point the data directory elsewhere or move the file aside."
        ) from exc
    if mode != "wal":
        db.close()
        raise StoreError(
            f"{path}: SQLite refused WAL journal mode (got {mode!r}); put the data directory "
            "on a local, writable filesystem (not a network share)."
        )
    return db


class Store:
    """The local store of one database file. Open it with :meth:`open`."""

    def __init__(self, db: SqliteDatabase, path: Path, clock: Callable[[], int]) -> None:
        self._db = db
        self.path = path
        self._clock = clock
        self.outbox = Outbox(db)
        self.routes = RouteQueue(db)

    @classmethod
    def open(cls, path: Path, *, clock: Callable[[], int] = time.time_ns) -> Store:
        """Open (or create) ``path`` and migrate it. ``clock`` gives wall ns for ``created_ns``."""
        db = connect(path)
        try:
            migrate(db, path)
        except BaseException:
            db.close()
            raise
        return cls(db, path, clock)

    def _added(self, outbox: Sequence[OutboxMessage]) -> None:
        """After a commit: wake whoever watches the outbox (the publisher) if it got rows."""
        if outbox:
            self.outbox.committed()

    def close(self) -> None:
        with bound(self._db):  # for the lock: not while another thread is mid-transaction
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def save_contact(
        self,
        rec: ContactRecord,
        outbox: Sequence[OutboxMessage],
        routes: Sequence[RouteJob] = (),
    ) -> bool:
        """Write the contact, its events, tags, clip, ``outbox`` and route deliveries
        (``routes``, chosen by the caller: edge/routes/plan.py) in one transaction.

        Returns False, writing nothing, when a contact with this id is stored already.
        Raises ValueError when an event or the clip names another contact or a field cannot
        be stored (:mod:`edge.store.storable`), and
        ``peewee.IntegrityError`` (nothing written) when a row breaks a constraint,
        e.g. an event id or an outbox ``msg_id`` that exists already.
        """
        for event in rec.events:
            if event.contact_id != rec.id:
                raise ValueError(
                    f"event {event.id} of contact {rec.id} names contact {event.contact_id}"
                )
        if rec.clip is not None and rec.clip.contact_id != rec.id:
            raise ValueError(f"the clip of contact {rec.id} names contact {rec.clip.contact_id}")
        check_record(rec)
        created_ns = self._clock()
        _check_rows(routes, outbox)
        with writing(self._db):
            if ContactModel.select().where(ContactModel.id == rec.id).exists():
                return False
            ContactModel.insert(
                id=rec.id,
                mode=rec.mode,
                start_ns=rec.start_ns,
                end_ns=rec.end_ns,
                start_wall_ns=rec.start_wall_ns,
                end_wall_ns=rec.end_wall_ns,
                ended_by=rec.ended_by,
                clock_synced=rec.clock_synced,
                boot_id=rec.boot_id,
                created_ns=created_ns,
                video_url=rec.video_url,
                staff=rec.staff,
                clip_missing=rec.clip_missing,
                clock_stepped=rec.clock_stepped,
            ).execute()
            for event in rec.events:
                EventModel.insert(_event_fields(event)).execute()
            for position, tag in enumerate(rec.tags):
                TagModel.insert(contact_id=rec.id, position=position, tag=tag).execute()
            if rec.clip is not None:
                ClipModel.insert(_clip_fields(rec.clip)).execute()
            add_messages(outbox, created_ns)
            add_route_jobs(routes, created_ns)
            crashpoint("store.commit")  # fault tests only: a no-op unless armed
        self._added(outbox)
        return True

    def save_event(
        self,
        rec: EventRecord,
        outbox: Sequence[OutboxMessage],
        routes: Sequence[RouteJob] = (),
    ) -> bool:
        """Write one event (normally an orphan: ``contact_id`` None), ``outbox`` and route
        deliveries (``routes``, e.g. of the alerts it caused) atomically.

        Returns False, writing nothing, when an event with this id is stored already.
        An event naming a contact needs that contact stored (else ``peewee.IntegrityError``).
        """
        check_record(rec)
        _check_rows(routes, outbox)
        with writing(self._db):
            if EventModel.select().where(EventModel.id == rec.id).exists():
                return False
            EventModel.insert(_event_fields(rec)).execute()
            created_ns = self._clock()
            add_messages(outbox, created_ns)
            add_route_jobs(routes, created_ns)
        self._added(outbox)
        return True

    def save_routes(self, routes: Sequence[RouteJob], outbox: Sequence[OutboxMessage] = ()) -> int:
        """Queue route deliveries (e.g. of an alert) and their outbox rows atomically; return
        how many deliveries were new (one already queued for its destination is skipped)."""
        _check_rows(routes, outbox)
        with writing(self._db):
            created_ns = self._clock()
            add_messages(outbox, created_ns)
            added = add_route_jobs(routes, created_ns)
        self._added(outbox)
        return added

    def save_messages(self, outbox: Sequence[OutboxMessage]) -> None:
        """Write standalone outbox rows (e.g. an alert about data already stored), atomically."""
        check_json(outbox)
        with writing(self._db):
            add_messages(outbox, self._clock())
        self._added(outbox)

    def contacts(self) -> list[ContactRecord]:
        """All contacts with their events, tags and clip.

        Ordered by ``start_ns`` within a boot, boots in the order they were first saved:
        the monotonic clock starts from zero at every boot, so ``start_ns`` alone would put
        a contact of today before one of yesterday.
        """
        with bound(self._db), self._db.atomic():  # one snapshot of all four tables
            rows = list(ContactModel.select().order_by(_ROWID))
            events: dict[str, list[EventRecord]] = {}
            for e in (
                EventModel.select()
                .where(EventModel.contact_id.is_null(False))
                .order_by(EventModel.t_ns, _ROWID)
            ):
                events.setdefault(str(e.contact_id), []).append(_event_record(e))
            tags: dict[str, list[str]] = {}
            for t in TagModel.select().order_by(TagModel.contact_id, TagModel.position):
                tags.setdefault(t.contact_id, []).append(t.tag)
            clips = {c.contact_id: _clip_record(c) for c in ClipModel.select()}
        first_seen: dict[str, int] = {}
        for index, row in enumerate(rows):
            first_seen.setdefault(row.boot_id, index)
        rows.sort(key=lambda r: (first_seen[r.boot_id], r.start_ns, r.id))
        return [
            ContactRecord(
                id=r.id,
                mode=r.mode,
                start_ns=r.start_ns,
                end_ns=r.end_ns,
                start_wall_ns=r.start_wall_ns,
                end_wall_ns=r.end_wall_ns,
                ended_by=r.ended_by,
                tags=tuple(tags.get(r.id, ())),
                events=tuple(events.get(r.id, ())),
                clip=clips.get(r.id),
                clock_synced=r.clock_synced,
                boot_id=r.boot_id,
                video_url=r.video_url,
                staff=r.staff,
                clip_missing=r.clip_missing,
                clock_stepped=bool(r.clock_stepped),
            )
            for r in rows
        ]

    def orphan_events(self) -> list[EventRecord]:
        """Events outside any contact, in the order they were saved."""
        with bound(self._db):
            query = EventModel.select().where(EventModel.contact_id.is_null()).order_by(_ROWID)
            return [_event_record(e) for e in query]

    def stored_events(self, ids: Sequence[str]) -> dict[str, str | None]:
        """Which of the event ``ids`` are stored: id -> its contact's id (None: an orphan)."""
        found: dict[str, str | None] = {}
        with bound(self._db):
            for start in range(0, len(ids), 500):
                query: Any = (
                    EventModel.select(EventModel.id, EventModel.contact_id)
                    .where(EventModel.id.in_(list(ids[start : start + 500])))
                    .tuples()
                )
                found.update((str(i), None if c is None else str(c)) for i, c in query)
        return found

    # --- CRM events posted to the device (POST /event), for a later import ----------------------

    def post_event(self, event: CrmEvent, posted_ns: int) -> bool:
        """Keep a posted CRM event until an import cuts its window, in one transaction; False,
        writing nothing, when an event with its id was posted already (the CRM's id is the
        key: posting again is harmless). Called from the till's HTTP thread (the store's lock
        serialises it with the core)."""
        with writing(self._db):
            written = sql_execute(
                self._db,
                "INSERT INTO posted_events (id, wall_ns, kind, order_id, staff, rating, "
                "rating_value, posted_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (
                    event.id, event.wall_ns, event.kind, event.order_id, event.staff,
                    event.rating, event.rating_value, posted_ns,
                ),
            ).rowcount  # fmt: skip
        return bool(written)

    def posted_events(self) -> list[CrmEvent]:
        """The posted events no import has stored in a contact yet, in the order posted."""
        with bound(self._db):
            rows = sql_rows(
                self._db,
                "SELECT id, wall_ns, kind, order_id, staff, rating, rating_value "
                "FROM posted_events WHERE imported_ns IS NULL ORDER BY rowid",
            )
        return [
            CrmEvent(
                id=str(i), line=0, wall_ns=int(w), kind=str(k), order_id=o, staff=s,
                rating=r, rating_value=v, source=POSTED,
            )
            for i, w, k, o, s, r, v in rows
        ]  # fmt: skip

    def mark_posted_imported(self, ids: Sequence[str], at_wall_ns: int) -> int:
        """The posted events ``ids`` are in stored contacts now: no later import reads them."""
        marked = 0
        with writing(self._db):
            for start in range(0, len(ids), 500):
                part = list(ids[start : start + 500])
                marks = ", ".join("?" * len(part))
                marked += sql_execute(
                    self._db,
                    f"UPDATE posted_events SET imported_ns = ? WHERE imported_ns IS NULL "  # noqa: S608 - placeholders
                    f"AND id IN ({marks})",
                    (at_wall_ns, *part),
                ).rowcount
        return marked

    def integrity_check(self) -> str:
        """The result of ``PRAGMA integrity_check``: ``"ok"`` for a sound file."""
        with bound(self._db):
            rows = sql_rows(self._db, "PRAGMA integrity_check")
        return "\n".join(str(row[0]) for row in rows)

    def quick_check(self) -> str:
        """The result of ``PRAGMA quick_check`` (the cheaper check run at every start)."""
        with bound(self._db):
            rows = sql_rows(self._db, "PRAGMA quick_check")
        return "\n".join(str(row[0]) for row in rows)

    def clip_files(self) -> list[tuple[str, str, bool]]:
        """Every clip as (contact id, path relative to the data dir, delivered), oldest first.

        Delivered: no undelivered ``clip`` outbox row is left for it (the sink confirmed the
        verified clip, or the row was purged after that). Acknowledged by the broker is not
        enough: a broker that crashes may lose what it acknowledged."""
        sql = (
            "SELECT c.contact_id, c.path, NOT EXISTS (SELECT 1 FROM outbox o WHERE o.kind = "
            "'clip' AND o.ref = c.contact_id AND o.delivered_ns IS NULL) FROM clips c "
            "JOIN contacts k ON k.id = c.contact_id ORDER BY k.rowid"
        )
        with bound(self._db):
            return [(str(a), str(b), bool(c)) for a, b, c in sql_rows(self._db, sql)]

    def audio_on_disk(self) -> list[tuple[str, str, int, bool]]:
        """Clips whose audio retention has not deleted yet, oldest first: (contact id, path
        relative to the data dir, the contact's end wall ns, delivered). Delivered: the sink
        confirmed both the contact's and the clip's outbox rows (see :meth:`clip_files`)."""
        sql = (
            "SELECT c.contact_id, c.path, k.end_wall_ns, NOT EXISTS (SELECT 1 FROM outbox o "
            "WHERE o.kind IN ('contact', 'clip') AND o.ref = c.contact_id "
            "AND o.delivered_ns IS NULL) "
            "FROM clips c JOIN contacts k ON k.id = c.contact_id "
            "WHERE c.audio_deleted_at IS NULL ORDER BY k.rowid"
        )
        with bound(self._db):
            return [(str(a), str(b), int(c), bool(d)) for a, b, c, d in sql_rows(self._db, sql)]

    def audio_deleted(self) -> dict[str, int]:
        """contact id -> when retention deleted its clip's audio (wall ns), for listings."""
        with bound(self._db):
            query: Any = (
                ClipModel.select(ClipModel.contact_id, ClipModel.audio_deleted_at)
                .where(ClipModel.audio_deleted_at.is_null(False))
                .tuples()
            )
            rows: list[tuple[Any, ...]] = list(query)
        return {str(cid): int(at) for cid, at in rows}

    def mark_audio_deleted(self, contact_ids: Sequence[str], at_wall_ns: int) -> int:
        """Record that these clips' files were deleted by retention (rows already marked keep
        their time); how many rows were marked now."""
        marked = 0
        with writing(self._db):
            for start in range(0, len(contact_ids), 500):
                marked += (
                    ClipModel.update(audio_deleted_at=at_wall_ns)
                    .where(
                        ClipModel.contact_id.in_(list(contact_ids[start : start + 500]))
                        & ClipModel.audio_deleted_at.is_null()
                    )
                    .execute()
                )
        return marked

    def correct_clock(
        self,
        boot_id: str,
        wall_offset_ns: int,
        message: Callable[[ContactRecord], OutboxMessage],
    ) -> int:
        """The clock was synchronised: give the contacts of boot ``boot_id`` saved with an
        unsynchronised clock their true wall times (``monotonic + wall_offset_ns``, events
        too) and ``clock_synced``; in ONE transaction, a contact message still unsent is
        rewritten in place, and a new ``message`` is added for each (one already sent, or in
        flight right now, went out with the flagged times: the sink replaces them). Returns how
        many contacts were corrected."""
        with writing(self._db):
            ids = [
                str(row[0])
                for row in sql_rows(
                    self._db,
                    "SELECT id FROM contacts WHERE boot_id = ? AND clock_synced = 0",
                    (boot_id,),
                )
            ]
            if not ids:
                return 0
            for contact_id in ids:
                sql_execute(
                    self._db,
                    "UPDATE contacts SET start_wall_ns = start_ns + ?, end_wall_ns = end_ns + ?, "
                    "clock_synced = 1 WHERE id = ?",
                    (wall_offset_ns, wall_offset_ns, contact_id),
                )
                sql_execute(
                    self._db,
                    "UPDATE events SET wall_ns = t_ns + ? WHERE contact_id = ?",
                    (wall_offset_ns, contact_id),
                )
            wanted = set(ids)
            corrected = [r for r in self.contacts() if r.id in wanted]
            fresh: list[OutboxMessage] = []
            for record in corrected:
                msg = message(record)
                unsent = sql_rows(
                    self._db,
                    "SELECT seq, msg_id FROM outbox WHERE kind = 'contact' AND ref = ? "
                    "AND sent_ns IS NULL ORDER BY seq",
                    (record.id,),
                )
                for seq, msg_id in unsent:
                    payload = {**msg.payload, "msg_id": msg_id}
                    sql_execute(
                        self._db,
                        "UPDATE outbox SET payload = ? WHERE seq = ?",
                        (to_json(payload), seq),
                    )
                # also a new message: an unsent row may be in flight already with the old times
                fresh.append(msg)
            add_messages(fresh, self._clock())
        self._added(fresh)
        return len(ids)


_ROWID = SQL("rowid")  # insertion order of a table


def _check_rows(routes: Sequence[RouteJob], outbox: Sequence[OutboxMessage]) -> None:
    """Refuse (ValueError naming the field) payloads that are not JSON, before writing."""
    check_json(outbox)
    check_json([OutboxMessage(r.delivery_id, r.kind, r.ref, r.payload) for r in routes])


def _event_fields(rec: EventRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "contact_id": rec.contact_id,
        "kind": rec.kind,
        "t_ns": rec.t_ns,
        "wall_ns": rec.wall_ns,
        "button": rec.button,
        "role": rec.role,
        "gesture": rec.gesture,
        "duration_ns": rec.duration_ns,
        "question": rec.question,
        "via": rec.via,
        "receipt_id": rec.receipt_id,
        "data": to_json(rec.data),
        "video_url": rec.video_url,
        "staff": rec.staff,
    }


def _event_record(row: EventModel) -> EventRecord:
    return EventRecord(
        id=row.id,
        kind=row.kind,
        t_ns=row.t_ns,
        wall_ns=row.wall_ns,
        contact_id=row.contact_id,
        button=row.button,
        role=row.role,
        gesture=row.gesture,
        duration_ns=row.duration_ns,
        question=row.question,
        via=row.via,
        receipt_id=row.receipt_id,
        data=from_json(row.data),
        video_url=row.video_url,
        staff=row.staff,
    )


def _clip_fields(clip: ClipInfo) -> dict[str, Any]:
    return {
        "contact_id": clip.contact_id,
        "path": clip.path,
        "codec": clip.codec,
        "sample_rate": clip.sample_rate,
        "start_index": clip.start_index,
        "end_index": clip.end_index,
        "start_ns": clip.start_ns,
        "end_ns": clip.end_ns,
        "sha256": clip.sha256,
        "bytes": clip.bytes,
        "truncated": clip.truncated,
        "gaps": to_json([[start, end] for start, end in clip.gaps]),
    }


def _clip_record(row: ClipModel) -> ClipInfo:
    return ClipInfo(
        contact_id=row.contact_id,
        path=row.path,
        codec=row.codec,
        sample_rate=row.sample_rate,
        start_index=row.start_index,
        end_index=row.end_index,
        start_ns=row.start_ns,
        end_ns=row.end_ns,
        sha256=row.sha256,
        bytes=row.bytes,
        truncated=row.truncated,
        gaps=tuple((int(start), int(end)) for start, end in from_json(row.gaps)),
    )
