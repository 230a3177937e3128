"""Idempotent ingest: parsed messages → rows, a batch of them in one transaction.

Rules:
- A message that does not parse becomes a ``dead_letters`` row (topic, reason, detail, the first
  256 bytes of the payload with non-printable bytes escaped, size, received time) and a counter;
  nothing else is written.
- JSON messages are deduplicated on (device, msg_id) in ``messages``; a contact additionally on
  (device, contact id) and an event on (device, event id), so the same contact sent again under
  a new msg_id is still stored once. A contact is stored with its tags and events.
- Status messages (retained, and the device's last will) update the device row in the order
  they arrive (the device's last status of a batch is the one written); every accepted message
  updates the device's site and last-seen time (the batch has one time; a row only moves
  forward: an older time than the row's leaves it alone). The device rows are written at the
  batch's end, all in one statement on PostgreSQL, in the order of the devices' names, and
  then ``on_seen`` runs for each device: once per status message and once for each run of its
  other messages, in the order of its messages. A device that has no row yet gets one at the
  batch's start (the site alerts find a device's events by its row's site).
- Clip chunks are deduplicated on (device, clip_id, seq): the chunk's bit in the clip row's
  bitmap (``clips.received``, with ``received_count``). A clip's size, sha256 and codec are
  the ones its contact announced (``contact.clip``): a chunk that claims others is a dead letter
  (``clip_mismatch``), and a clip row made from an earlier chunk header that the contact
  contradicts is reset (its chunks dropped, asked for again). Before the contact is there, the
  first chunk header seen creates the clip row; a later header that disagrees about total, size,
  sha256 or codec is a dead letter. A chunk whose size or sha256 is wrong is discarded (dead
  letter ``chunk_corrupt``), but its clip is still known, so the missing chunk will be asked
  for again.
- What a sender can claim is bounded by :class:`Limits` (sink config): a clip larger than
  ``max_clip_bytes`` or in more than ``max_chunks`` chunks is a dead letter (``too_large``).
- Chunks straight into place: a chunk's bytes are written at its offset into its clip's one
  partial file (:class:`ClipStore`, sparse; opened once per batch). At the batch's end,
  inside its transaction, every partial file written is made durable, then each clip's row is
  read locked (``FOR UPDATE`` on PostgreSQL; SQLite's write lock is the batch's), in one order
  so that workers never wait in a circle, and the new bits are set with one UPDATE per clip.
  So a bit set means the bytes are durable; a crash before the commit leaves the bytes without
  a bit, and the chunk is delivered again (or asked for) and written again. The caller acks the
  broker only after :meth:`Ingest.handle_batch` returns (the batch committed).
- Workers sharing a stream (PostgreSQL) never wait for each other in a circle: a batch first
  takes the advisory lock of every clip it may create or change (its chunks' clips and the
  clips its contacts announce), in one order (sorted keys, one statement), as the clip check
  does for its clips; then the locks of its sites that the site alerts take per stored message
  (``lock_sites``), sorted by name; then the rows of its new devices, sorted. The rows every
  message touches, the devices', are written only at the batch's end, sorted, and held from
  there to the commit, so batches over the same devices run at once and wait for each other
  only there (batches over the same clip, or the same new device, take turns). Rows of
  messages, contacts and events are new rows: two batches meet on one only when both hold the
  same message (a redelivery), and the second then finds it stored.
- Open clips are cached by (device, clip id): a chunk of a cached clip costs no query of its
  own. The cache is only a cache: what a batch recorded is checked against the locked row (a
  clip another worker completed, reset or expired meanwhile: a duplicate with its receipt, a
  dead letter, a fresh row), and it is dropped when a batch or a message rolls back.
- A batch (:meth:`Ingest.handle_batch`) is one transaction. It is tried first with no savepoints;
  when a message fails there, that attempt is rolled back and the batch runs again with each
  message in a savepoint of its own (an error that passed meanwhile then costs no redelivery).
  No single message stops the stream. Any exception while a
  message is stored rolls its savepoint back; then the message becomes a dead letter (reason
  ``integrity`` for a constraint or data error, else ``ingest_error``, with the exception) and its
  whole raw payload (bounded by the parser's limits) is kept under ``dead_letters/`` in the data
  directory. Only errors that may pass (the database or the disk: peewee's
  ``OperationalError``/``InterfaceError``, ``OSError``) propagate, rolling the whole batch back, so
  that the caller acks none of it and the broker delivers the batch again; the same message failing
  that way ``max_attempts`` times in a row is dead-lettered too, except a full, read-only or
  failing disk (ENOSPC, EDQUOT, EROFS, EIO), which is nobody's message: that one is redelivered
  until the disk is fixed. If even the dead letter cannot be written (the database is down) the
  error propagates.
- A clip whose bits are all set is finished after the commit (:meth:`Ingest.assemble`): its
  partial file verified (size, whole sha256), moved into place (:meth:`ClipStore.finish`), then
  marked complete; a file already in place and right (a crash between the move and the mark)
  is marked complete too. A clip that does not verify, or whose partial file is gone, loses all
  its bits and is asked for again in full; it is never marked complete.
- :meth:`Ingest.check_clips_step` (the worker calls it in small steps between messages, a pass
  every ``check_every_s``) looks at up to ``limit`` incomplete clips after a cursor: it assembles
  clips that have all their chunks (two workers may each have committed one of the last chunks);
  dead-letters (``clip_expired``) and forgets a clip still incomplete ``clip_expire_after_ns``
  after its first chunk (its row and partial file dropped; a chunk that comes later starts it
  afresh); and, for a clip that got no chunk for ``resend_after_ns``, returns a resend request for
  its missing seqs as ranges, at most ``max_requests`` times per clip. A request names only the
  first ranges that fit :data:`wire.MAX_RESEND_BYTES`, and finding them reads the clip's bitmap in
  order without building the list of missing ones, so a clip claiming many chunks costs neither
  memory nor a packet the broker refuses.
- Delivery receipts (cloud_sink/receipts.py): after its commit, :meth:`Ingest.handle` names in
  ``Result.receipt`` what the device may now forget: a JSON message stored or already stored
  (by msg_id; not a status, not a dead letter), or the clip of a chunk that arrives after the
  clip is complete. A clip that becomes complete is announced to ``on_clip_complete``.
- Times in the database are wall-clock nanoseconds from the injected ``clock``.
- The hot path's statements are SQL text made once per engine (:class:`_Statements`, run
  through :mod:`contract.sql`; a contact's tags and events with one multi-row INSERT each):
  building them with peewee cost more than running them. peewee builds the rare ones.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Final

from peewee import Database, DataError, IntegrityError, InterfaceError, OperationalError, fn

from cloud_sink import wire
from cloud_sink.db import execute_sql, is_sqlite, rowcount, transaction
from cloud_sink.models import Tables, from_json, tables, to_json
from cloud_sink.receipts import Confirm
from cloud_sink.storage import ClipCorruptError, ClipStore, sync, write_at
from contract.crashpoint import crashpoint
from contract.sql import execute

log = logging.getLogger(__name__)

HEAD_BYTES: Final = 256
NS: Final = 1_000_000_000
#: what the worker looks at in one :meth:`Ingest.check_clips_step`
CHECK_BATCH: Final = 50


@dataclass(frozen=True, slots=True)
class Limits:
    """What a sender may claim, and how long the sink keeps trying (``SinkConfig`` sets them).

    The defaults fit the device's defaults with room to spare: a 15-minute contact (its
    ``max_duration_s``) plus rolls as 16 kHz 16-bit WAV is ~29 MB; chunks are at least 1 KiB."""

    max_clip_bytes: int = 64 * 1024 * 1024
    max_chunks: int = 64 * 1024
    clip_expire_after_ns: int | None = 24 * 3600 * NS  # None: incomplete clips never expire
    max_attempts: int = 5  # a message failing this often in a row with a passing error


DEFAULT_LIMITS: Final = Limits()


def _text(value: str) -> str:
    """A string any database takes: no NUL, no lone surrogate."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _digest(topic: str, payload: bytes) -> bytes:
    return hashlib.sha256(topic.encode("utf-8", "backslashreplace") + b"\x00" + payload).digest()


def printable(raw: bytes) -> str:
    """Printable ASCII kept, every other byte as ``\\xNN`` (PostgreSQL text holds no NUL)."""
    return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in raw)


class Counters:
    """Named counts, bumped by the worker thread and read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    DEAD_LETTER = "dead_letter"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class ClipKey:
    site: str
    device: str
    clip_id: str


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    ready: ClipKey | None = None  # a clip whose chunks are all there: assemble after the ack
    receipt: Confirm | None = None  # committed: what the device may forget (docs/WIRE.md)


@dataclass(frozen=True, slots=True)
class ResendRequest:
    clip: ClipKey
    ranges: tuple[tuple[int, int], ...]  # inclusive (first, last) ranges of missing seqs

    @property
    def topic(self) -> str:
        return wire.resend_topic(self.clip.site, self.clip.device)

    @property
    def payload(self) -> bytes:
        return wire.resend_payload(self.clip.clip_id, self.ranges)


#: errors that may pass by themselves (the database or the disk), so worth a redelivery
_PASSING: Final = (OperationalError, InterfaceError, OSError)
_MAX_TRACKED: Final = 1024  # failing messages whose attempts are counted
_ROWS_PER_INSERT: Final = 64  # rows of one multi-row INSERT (a contact's events, tags)
_MAX_CACHED: Final = 4096  # clip rows remembered (a few hundred bytes each)
_MAX_KNOWN: Final = 100_000  # devices known to have a row (rows are never deleted)
#: the disk is full, read-only or failing: no message's fault, so never a dead letter
_ENVIRONMENT: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


#: the class (first key) of the clips' PostgreSQL advisory locks ("cpcl")
_CLIP_LOCKS: Final = 0x6370636C


def _clip_lock_key(device: str, clip_id: str) -> int:
    """A clip's advisory lock key: 32 bits of the sha256 of its device and id, signed (a
    PostgreSQL int; two clips sharing a key only wait for each other)."""
    name = f"{device}\x00{clip_id}".encode("utf-8", "backslashreplace")
    return int.from_bytes(hashlib.sha256(name).digest()[:4], "big", signed=True)


def _clips_of(parsed: Iterable[wire.Parsed]) -> Iterator[tuple[str, str]]:
    """The clips a batch may create or change rows of: its chunks' and its contacts' that
    announce one (a clip's id is its contact's)."""
    for m in parsed:
        match m:
            case wire.Chunk():
                yield m.device, m.clip_id
            case wire.Message(body=wire.Contact(id=contact_id, clip=clip)) if clip is not None:
                yield m.device, contact_id


def _announcement(clip: Any) -> tuple[int, str, str] | None:
    """(bytes, sha256, codec) from a contact's ``clip`` object, or None if it does not say."""
    if not isinstance(clip, dict):
        return None
    size, sha256, codec = clip.get("bytes"), clip.get("sha256"), clip.get("codec")
    if (
        not isinstance(codec, str)
        or type(size) is not int
        or not 0 <= size <= wire.MAX_CLIP_BYTES
        or not isinstance(sha256, str)
        or len(sha256) != 64
        or codec not in wire.EXTENSIONS
    ):
        return None
    return size, sha256, str(codec)


def _identity(row: dict[str, Any]) -> tuple[int, str, str]:
    return int(row["clip_bytes"]), str(row["clip_sha256"]), str(row["codec"])


def _shown(identity: tuple[int, str, str]) -> str:
    size, sha256, codec = identity
    return f"{size} bytes sha256 {sha256[:16]}... {codec}"


def _gaps(received: bytes | None, total: int) -> Iterator[tuple[int, int]]:
    """The inclusive ranges of 0..total-1 whose bit in ``received`` (bit ``seq % 8`` of byte
    ``seq // 8``) is not set, ascending; a byte at a time where it can."""
    bitmap = received or b""
    start: int | None = None  # the missing range under way
    for byte_at in range(0, (total + 7) // 8):
        value = bitmap[byte_at] if byte_at < len(bitmap) else 0
        base = byte_at * 8
        if value == 0xFF or (value == 0 and start is not None):
            if value == 0xFF and start is not None:
                yield start, base - 1
                start = None
            continue
        for bit in range(8):
            seq = base + bit
            if seq >= total:
                break
            if value >> bit & 1:
                if start is not None:
                    yield start, seq - 1
                    start = None
            elif start is None:
                start = seq
    if start is not None:
        yield start, total - 1


def _missing(received: bytes | None, total: int) -> tuple[tuple[int, int], ...]:
    """The first missing ranges that fit a resend request, read off the bitmap in order
    (never a list of every missing seq)."""
    return tuple(wire.fit_ranges(_gaps(received, total)))


class _RedoIsolatedError(Exception):
    """A message failed in a batch tried without savepoints: run it again with them."""


@dataclass(frozen=True, slots=True)
class _ClipFacts:
    """What a clip row said when this worker last read it (the cache of open clips)."""

    known: tuple[int, int, str, str]  # total, bytes, sha256, codec
    complete: bool
    deleted: bool  # retention deleted its audio


@dataclass(frozen=True, slots=True)
class _Taken:
    """A chunk of the batch, its bytes written, its bit not yet recorded."""

    index: int  # its message's place in the batch
    topic: str
    payload: bytes
    chunk: wire.Chunk
    written: bool


class _Batch:
    """What a batch defers to its end: chunk bits, device rows, the open partial files."""

    def __init__(self, *, done: bool = False) -> None:
        self.done = done  # committed or rolled back: counts go straight to the counters
        self.bumps: list[str] = []  # counts to make when it commits
        self.index = 0  # the message being ingested
        #: PostgreSQL, tried without savepoints: the (device, msg_id) of its messages that
        #: the batch's one INSERT INTO messages stored (None: each message inserts its own)
        self.fresh: set[tuple[str, str]] | None = None
        self.chunks: list[_Taken] = []
        self.rows: list[tuple[str, str]] = []  # (device, site) of each accepted message
        #: (device, site, its status or None) of each stored message: ``on_seen`` at the end
        self.seen: list[tuple[str, str, wire.Status | None]] = []
        self._files: dict[tuple[str, str, str], tuple[int, bool, str]] = {}
        self._synced: set[tuple[str, str, str]] = set()

    def marks(self) -> tuple[int, int, int, int]:
        """Where its lists stand (a message's savepoint rolls them back to that)."""
        return len(self.chunks), len(self.rows), len(self.seen), len(self.bumps)

    def roll_back(self, marks: tuple[int, int, int, int]) -> None:
        del self.chunks[marks[0] :]
        del self.rows[marks[1] :]
        del self.seen[marks[2] :]
        del self.bumps[marks[3] :]

    def devices(self) -> tuple[dict[str, str], dict[str, wire.Status]]:
        """Each device's site (its last message's) and its last status in the batch."""
        sites = dict(self.rows)
        statuses = {device: status for device, _, status in self.seen if status is not None}
        return sites, statuses

    def seen_calls(self) -> dict[str, list[tuple[str, wire.Status | None]]]:
        """Each device's ``on_seen`` calls in the order of its messages: one per status
        message, one (the site of the last) for each run of other messages."""
        calls: dict[str, list[tuple[str, wire.Status | None]]] = {}
        for device, site, status in self.seen:
            of = calls.setdefault(device, [])
            if status is None and of and of[-1][1] is None:
                of[-1] = (site, None)
            else:
                of.append((site, status))
        return calls

    def write(self, store: ClipStore, ch: wire.Chunk) -> None:
        """Write a chunk at its offset in its clip's partial file (opened once per batch); it
        is made durable by the next :meth:`sync`."""
        key = (ch.device, ch.clip_id, ch.clip_sha256)
        entry = self._files.get(key)
        if entry is None:
            fd, created = store.open_partial(
                ch.site, ch.device, ch.clip_id, ch.clip_sha256, ch.clip_bytes
            )
            entry = self._files[key] = (fd, created, ch.site)
        write_at(entry[0], ch.offset, ch.data)
        self._synced.discard(key)

    def sync(self, store: ClipStore) -> None:
        """Make every byte written so far durable (and the names of new partial files)."""
        dirs: set[tuple[str, str]] = set()
        for key, (fd, created, site) in self._files.items():
            if key in self._synced:
                continue
            sync(fd)
            self._synced.add(key)
            if created:
                dirs.add((site, key[0]))
        for site, device in sorted(dirs):
            store.sync_created(site, device)

    def close(self) -> None:
        for fd, _, _ in self._files.values():
            os.close(fd)
        self._files.clear()


@dataclass(frozen=True, slots=True)
class _Statements:
    """The hot path's statements as SQL text for one engine (peewee builds the rest)."""

    message: str
    seen: str
    status: str
    contact: str
    tag: str
    event: str
    dead_letter: str
    clip: str
    lock: str
    record: str
    messages: str | None  # every message of a batch in one statement (PostgreSQL)
    new_devices: str  # rows for the devices of a batch that have none yet


def _statements(db: Database) -> _Statements:
    def insert(table: str, columns: str, tail: str = "ON CONFLICT DO NOTHING") -> str:
        marks = ", ".join([db.param] * len(columns.split(",")))
        return f"INSERT INTO {table} ({columns}) VALUES ({marks}) {tail}"  # noqa: S608 - ours

    p = db.param
    # a device's row only moves forward: a batch of another worker that began earlier and
    # commits later leaves a newer last-seen time (and its site) alone
    newer = (
        "ON CONFLICT (device) DO UPDATE SET site = excluded.site, "
        "last_seen_ns = excluded.last_seen_ns WHERE excluded.last_seen_ns > devices.last_seen_ns "
        "OR (excluded.last_seen_ns = devices.last_seen_ns AND excluded.site <> devices.site)"
    )
    if is_sqlite(db):  # one row a statement (in-process: no round trip to save)
        seen = insert("devices", "device, site, first_seen_ns, last_seen_ns", newer)
        new_devices = insert("devices", "device, site, first_seen_ns, last_seen_ns")
    else:  # every device of the batch in one statement, one text for any number of them,
        # the rows written (and so locked) in the order of their keys
        rows = (
            "INSERT INTO devices (device, site, first_seen_ns, last_seen_ns) "
            "SELECT d, s, %s, %s FROM unnest(%s::text[], %s::text[]) AS u(d, s) ORDER BY d "
        )
        seen, new_devices = rows + newer, rows + "ON CONFLICT DO NOTHING"
    messages = (
        None
        if is_sqlite(db)
        else "INSERT INTO messages (device, msg_id, kind, received_ns) "
        "SELECT d, m, k, %s FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(d, m, k) "
        "ORDER BY d, m ON CONFLICT DO NOTHING RETURNING device, msg_id"
    )
    return _Statements(
        messages=messages,
        new_devices=new_devices,
        message=insert("messages", "device, msg_id, kind, received_ns"),
        seen=seen,
        status=(
            f"UPDATE devices SET online = {p}, version = {p}, boot_id = {p}, "  # noqa: S608
            f"outbox_depth = {p}, free_disk_bytes = {p}, clock_synced = {p}, "
            f"status_at = {p} WHERE device = {p}"
        ),
        contact=insert(
            "contacts",
            "device, id, site, msg_id, start_iso, end_iso, duration_s, ended_by, mode, clip, "
            "clock_synced, boot_id, received_ns, video_url, staff",
        ),
        tag=insert("tags", "device, contact_id, pos, tag", ""),
        event=insert("events", "device, id, contact_id, pos, kind, at_iso, body, received_ns"),
        dead_letter=insert(
            "dead_letters", "topic, reason, detail, head, payload_bytes, received_ns", ""
        ),
        clip=insert(
            "clips",
            "device, clip_id, site, codec, sample_rate, total, clip_bytes, clip_sha256, "
            "first_seen_ns, quiet_since_ns",
        ),
        lock=(
            "SELECT total, clip_bytes, clip_sha256, codec, complete, audio_deleted_at, "  # noqa: S608
            "received, received_count FROM clips "
            f"WHERE device = {p} AND clip_id = {p}{'' if is_sqlite(db) else ' FOR UPDATE'}"
        ),
        record=(
            f"UPDATE clips SET received = {p}, received_count = {p}, quiet_since_ns = {p} "  # noqa: S608
            f"WHERE device = {p} AND clip_id = {p}"
        ),
    )


class Ingest:
    """Writes messages into one database and clip files under one data directory."""

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        *,
        clock: Callable[[], int] = time.time_ns,
        limits: Limits = Limits(),
        owner: str = "",
    ) -> None:
        """``owner``: the worker (its client id), whose tag its temporary files carry."""
        self.db = db
        self.data_dir = data_dir
        self.store = ClipStore(data_dir, owner)
        self.t: Tables = tables(db)
        self.clock = clock
        self.limits = limits
        self.counters = Counters()
        self._attempts: dict[bytes, int] = {}  # failing messages (digest) -> attempts so far
        self._after_commit: list[Callable[[], None]] = []  # file removals the commit allows
        self._sql = _statements(db)
        self._multi: dict[tuple[str, int], str] = {}  # multi-row INSERTs by (one row's, rows)
        self._batch = _Batch(done=True)  # what the batch under way defers to its end
        self._clips: dict[tuple[str, str], _ClipFacts] = {}  # open clips, (device, clip id)
        self._known: set[str] = set()  # devices whose row a committed batch saw or made
        # Called inside the transaction just before commit; a test raises here to play a crash.
        self.before_commit: Callable[[str], None] | None = None
        # Called inside the transaction after a contact or event was stored (site alerts).
        self.on_stored: Callable[[Database, wire.Message, int], object] | None = None
        # Called at a batch's start, after its devices' locks, with the sites of its messages:
        # whatever on_stored locks per site it must lock here first, all in one order
        self.lock_sites: Callable[[Database, Iterable[str]], object] | None = None
        # Called after a clip was verified and marked complete (its delivery receipt).
        self.on_clip_complete: Callable[[ClipKey], object] | None = None
        # Deletes a clip's object (its s3:// location) after a commit that dropped the clip
        # (cloud_sink/objects.py); None: no object storage configured
        self.drop_object: Callable[[str], None] | None = None
        # every stored message of a device, in its transaction: (db, site, device, its status
        # or None, now); the device offline alerts (cloud_sink.alerts.DeviceWatch)
        self.on_seen: Callable[[Database, str, str, wire.Status | None, int], object] | None = None
        # which of these devices' messages without a status need ``on_seen`` (one query per
        # batch; DeviceWatch.offline: the devices with an active offline alert); None: all
        self.seen_matters: Callable[[Database, Sequence[str]], set[str]] | None = None

    # -- messages ---------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> Result:
        """Ingest one message: :meth:`handle_batch` of one."""
        return self.handle_batch([(topic, payload)])[0]

    def handle_batch(self, messages: Sequence[tuple[str, bytes]]) -> list[Result]:
        """Ingest ``(topic, payload)`` messages in one transaction, each in a savepoint of its
        own; return their results in order once the transaction committed. A message that
        fails is rolled back to its savepoint and dead-lettered, the others are kept. Raises
        only when nothing was committed and the whole batch must be redelivered (see the
        module notes: a passing error, or a dead letter itself cannot be written).

        A batch is first tried without the savepoints (two statements per message less); if a
        message fails there, that attempt is rolled back whole and the batch run again, each
        message in its savepoint."""
        now = self.clock()
        parsed = [wire.parse(topic, payload) for topic, payload in messages]  # never raises
        try:
            results = self._run_batch(messages, parsed, now, isolated=False)
        except _RedoIsolatedError as redo:
            self.counters.bump("batch_redone")
            log.info("batch of %d redone a message at a time: %s", len(messages), redo.__cause__)
            results = self._run_batch(messages, parsed, now, isolated=True)
        for remove in self._after_commit:
            remove()
        self._after_commit.clear()
        if len(self._known) > _MAX_KNOWN:
            self._known.clear()
        self._known.update(m.device for m in parsed if isinstance(m, wire.Message | wire.Chunk))
        self.counters.bump("batch")
        for name in self._batch.bumps:
            self.counters.bump(name)
        for (topic, payload), result in zip(messages, results, strict=True):
            if self._attempts:
                self._attempts.pop(_digest(topic, payload), None)
            self.counters.bump(result.outcome.value)
        return results

    def _lock_clips(self, clips: Iterable[tuple[str, str]]) -> None:
        """PostgreSQL: take the transaction's advisory lock of each clip (device, clip id), all
        of them before any row is written and in one order for every worker (sorted keys), in
        one statement, so that batches that create or change the same clip rows in different
        orders take turns per clip instead of deadlocking. SQLite: nothing (a write
        transaction holds the database's one lock from its start)."""
        if is_sqlite(self.db):
            return
        keys = sorted({_clip_lock_key(device, clip_id) for device, clip_id in clips})
        if keys:
            execute_sql(
                self.db,
                "SELECT COUNT(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int[]) AS u(k)",
                (_CLIP_LOCKS, keys),  # unnest hands the keys over in the array's order
            )

    def _run_batch(
        self,
        messages: Sequence[tuple[str, bytes]],
        parsed: Sequence[wire.Parsed],
        now: int,
        *,
        isolated: bool,
    ) -> list[Result]:
        """One attempt at a batch: its transaction, committed when this returns."""
        self._after_commit.clear()
        batch = self._batch = _Batch()
        results: list[Result] = []
        try:
            with transaction(self.db):
                self._lock_clips(_clips_of(parsed))
                if self.lock_sites is not None:
                    self.lock_sites(
                        self.db, (m.site for m in parsed if isinstance(m, wire.Message))
                    )
                self._new_devices(parsed, now)
                if not isolated:  # (isolated, a message's row goes with its savepoint)
                    self._insert_messages(batch, parsed, now)
                for (topic, payload), message in zip(messages, parsed, strict=True):
                    batch.index = len(results)
                    if isolated:
                        results.append(self._isolated(topic, payload, message, now))
                    else:
                        results.append(self._optimistic(topic, payload, message, now))
                self._flush(batch, results, now)
        except BaseException:
            self._after_commit.clear()  # rolled back: the files stay with their rows
            self._clips.clear()  # what it learnt may have been rolled back with it
            raise
        finally:
            batch.close()
            batch.done = True
        return results

    def _optimistic(self, topic: str, payload: bytes, parsed: wire.Parsed, now: int) -> Result:
        """One message of a batch tried without a savepoint: any failure redoes the batch."""
        try:
            return self._handle(topic, payload, parsed, now, len(self._batch.chunks))
        except Exception as exc:
            raise _RedoIsolatedError from exc

    def _isolated(self, topic: str, payload: bytes, parsed: wire.Parsed, now: int) -> Result:
        """One message of a batch, in its own savepoint."""
        batch = self._batch
        removals, marks = len(self._after_commit), batch.marks()
        db = self.db
        execute(db, "SAVEPOINT message")  # inside the batch's transaction (peewee's atomic()
        try:  # would name each one anew: a uuid and its SQL text per message)
            result = self._handle(topic, payload, parsed, now, len(batch.chunks))
        except Exception as exc:  # noqa: BLE001 - no single message may stop the sink
            execute(db, "ROLLBACK TO SAVEPOINT message")
            execute(db, "RELEASE SAVEPOINT message")
            del self._after_commit[removals:]  # its removals went with its savepoint
            batch.roll_back(marks)
            self._clips.clear()  # it may have cached a clip row its savepoint took back
            return self._failed(topic, payload, exc, now)
        execute(db, "RELEASE SAVEPOINT message")
        return result

    def _bump(self, name: str) -> None:
        """Count ``name``: when the batch under way commits, or now outside a batch."""
        if self._batch.done:
            self.counters.bump(name)
        else:
            self._batch.bumps.append(name)

    def _handle(
        self, topic: str, payload: bytes, parsed: wire.Parsed, now: int, chunks_before: int
    ) -> Result:
        if isinstance(parsed, wire.Ignored):
            return Result(Outcome.IGNORED)
        if isinstance(parsed, wire.Rejected):
            self._dead_letter(topic, payload, parsed.reason, parsed.detail, now)
            return Result(Outcome.DEAD_LETTER)
        if isinstance(parsed, wire.Chunk):
            result = self._chunk(topic, payload, parsed, now)
            # a chunk taken (its outcome is decided with its bit, at the end of the batch)
            # counts as a stored message of its device
            if len(self._batch.chunks) > chunks_before:
                self._batch.seen.append((parsed.device, parsed.site, None))
        else:
            result = Result(self._message(parsed, now))
            if (
                self.on_stored is not None
                and result.outcome is Outcome.STORED
                and isinstance(parsed.body, wire.Contact | wire.Event)
            ):
                self.on_stored(self.db, parsed, now)
        if self.before_commit is not None:
            self.before_commit(topic)
        crashpoint("sink.commit")  # fault tests only: a no-op unless armed
        return self._with_receipt(parsed, result)

    def _failed(self, topic: str, payload: bytes, exc: Exception, now: int) -> Result:
        """A message whose ingest raised (its savepoint rolled back): raise again to have the
        batch redelivered (a passing error, fewer than ``max_attempts`` times), else
        dead-letter it (inside the batch's transaction)."""
        if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT:
            raise exc  # the disk, not the message: delivered again until it is fixed
        key = _digest(topic, payload)
        attempts = self._attempts.get(key, 0) + 1
        if isinstance(exc, _PASSING) and attempts < self.limits.max_attempts:
            if len(self._attempts) >= _MAX_TRACKED:
                self._attempts.clear()
            self._attempts[key] = attempts
            raise exc
        self._attempts.pop(key, None)
        reason = "integrity" if isinstance(exc, IntegrityError | DataError) else "ingest_error"
        detail = f"{type(exc).__name__}: {exc}"
        if attempts > 1:
            detail = f"{detail} (failed {attempts} times in a row)"
        try:
            kept = self.store.keep_dead_payload(payload[: wire.MAX_FRAME_BYTES])
            detail = f"{detail}; payload kept in {kept}"
        except OSError as write_error:  # the disk: still record that the message was refused
            detail = f"{detail}; payload not kept: {write_error}"
        log.warning("message on %s dead-lettered: %s", topic[:200], detail, exc_info=exc)
        with transaction(self.db):
            self._dead_letter(topic, payload, reason, detail, now)
        return Result(Outcome.DEAD_LETTER)

    def _with_receipt(self, parsed: wire.Message | wire.Chunk, result: Result) -> Result:
        """After the commit: what the device may now forget, if anything (a chunk's is
        decided with its bit, :meth:`_flush_clip`)."""
        if result.outcome not in (Outcome.STORED, Outcome.DUPLICATE):
            return result
        if isinstance(parsed, wire.Message) and parsed.kind != "status":
            return replace(result, receipt=Confirm(parsed.site, parsed.device, parsed.msg_id))
        return result

    def _clip_complete(self, key: ClipKey) -> bool:
        if self.on_clip_complete is not None:
            self.on_clip_complete(key)
        return True

    def _dead_letter(self, topic: str, payload: bytes, reason: str, detail: str, now: int) -> None:
        execute(
            self.db,
            self._sql.dead_letter,
            (
                _text(topic[:1024]),
                reason,
                _text(detail[:2000]),
                printable(payload[:HEAD_BYTES]),
                len(payload),
                now,
            ),
        )
        self._bump(f"dead_letter.{reason}")

    def _seen(self, device: str, site: str) -> None:
        """The device's row is to get this site and the batch's time, at the batch's end."""
        self._batch.rows.append((device, site))

    def _new_devices(self, parsed: Sequence[wire.Parsed], now: int) -> None:
        """At a batch's start, a row for each of its devices that has none yet (the site
        alerts find a device's events by its row's site; an existing row is neither changed
        nor locked here, a new one is locked by its INSERT, in the order of the keys). Devices
        an earlier batch of this worker committed are known to have one: no statement."""
        known = self._known
        sites = {
            m.device: m.site
            for m in parsed
            if isinstance(m, wire.Message | wire.Chunk) and m.device not in known
        }
        self._device_rows(self._sql.new_devices, sites, now)

    def _device_rows(self, sql: str, sites: dict[str, str], now: int) -> None:
        """Write the rows of ``sites``' devices (site, the batch's time) with ``sql``
        (:attr:`_Statements.new_devices` or ``seen``), in the order of their names: one
        statement a device on SQLite, one for all of them on PostgreSQL."""
        if not sites:
            return
        db, ordered = self.db, sorted(sites)
        if is_sqlite(db):
            for device in ordered:
                execute(db, sql, (device, sites[device], now, now))
        else:
            execute(db, sql, (now, now, ordered, [sites[d] for d in ordered]))

    def _insert_messages(self, batch: _Batch, parsed: Sequence[wire.Parsed], now: int) -> None:
        """PostgreSQL: every message of the batch into ``messages`` in one statement (one SQL
        text for any number of them, the rows in the order of their keys); the ones it
        stored are the batch's fresh ones, the others duplicates."""
        sql = self._sql.messages
        msgs = [m for m in parsed if isinstance(m, wire.Message)]
        if sql is None or not msgs:
            return
        columns = ([m.device for m in msgs], [m.msg_id for m in msgs], [m.kind for m in msgs])
        stored = execute(self.db, sql, (now, *columns)).fetchall()
        batch.fresh = {(str(device), str(msg_id)) for device, msg_id in stored}

    def _message(self, msg: wire.Message, now: int) -> Outcome:
        sql, db, fresh = self._sql, self.db, self._batch.fresh
        if fresh is None:
            if not execute(db, sql.message, (msg.device, msg.msg_id, msg.kind, now)).rowcount:
                return Outcome.DUPLICATE
        elif (msg.device, msg.msg_id) in fresh:
            fresh.discard((msg.device, msg.msg_id))  # the same message again: a duplicate
        else:
            return Outcome.DUPLICATE
        body = msg.body
        if isinstance(body, wire.Status):
            self._status(msg.site, msg.device, body, now)
            return Outcome.STORED
        self._seen(msg.device, msg.site)
        self._batch.seen.append((msg.device, msg.site, None))  # its on_seen: at the batch's end
        if isinstance(body, wire.Contact):
            return self._contact(msg, body, now)
        if isinstance(body, wire.Event):
            added = self._events(msg.device, [body], now)
            return Outcome.STORED if added else Outcome.DUPLICATE
        return self._alert(msg, body, now)

    def _status(self, site: str, device: str, body: wire.Status, now: int) -> None:
        """A status message: written into the device's row at the batch's end (the device's
        last status of the batch, so the order of its status messages stays), ``on_seen``
        with it there too, in order with the device's other messages. (The parser refused
        what a row cannot hold: NUL bytes, unpaired surrogates, numbers beyond 64 bits.)"""
        self._seen(device, site)
        self._batch.seen.append((device, site, body))

    def _write_devices(self, batch: _Batch, now: int) -> None:
        """The end of a batch: the rows of its devices (site, last-seen time, last status) in
        the order of their names, so that every worker takes the row locks in one order and
        holds them only from here to the commit; then ``on_seen`` for each device's messages
        in their order (the devices by site, then name; with ``seen_matters``, only those
        with a status in the batch or for which it says a call matters)."""
        sites, statuses = batch.devices()
        if not sites:
            return
        db, sql = self.db, self._sql
        self._device_rows(sql.seen, sites, now)
        for device in sorted(statuses):
            body = statuses[device]
            execute(
                db,
                sql.status,
                (
                    body.online, body.version, body.boot_id, body.outbox_depth,
                    body.free_disk_bytes, body.clock_synced, body.at, device,
                ),
            )  # fmt: skip
        if self.on_seen is None:
            return
        calls = batch.seen_calls()
        if self.seen_matters is not None:
            quiet = sorted(d for d, of in calls.items() if all(st is None for _, st in of))
            matters = self.seen_matters(db, quiet) if quiet else set()
            for device in quiet:
                if device not in matters:
                    del calls[device]
        # by site, then device: the site locks the offline alerts take come in one order too
        for device in sorted(calls, key=lambda d: (calls[d][0][0], d)):
            for site, status in calls[device]:
                self.on_seen(db, site, device, status, now)

    def _alert(self, msg: wire.Message, a: wire.Alert, now: int) -> Outcome:
        """A device's alert, once per (site, device, alert id): the id is stable per firing."""
        whole = {"schema": wire.SCHEMA, "msg_id": msg.msg_id, "kind": msg.kind,
                 "device": msg.device, "site": msg.site, "alert": a.body}  # fmt: skip
        fresh = rowcount(
            self.db,
            self.t.alerts.insert(
                site=msg.site, scope=msg.device, id=a.id, rule=a.rule, at_iso=a.at,
                body=to_json(whole), received_ns=now,
            ).on_conflict_ignore(),
        )  # fmt: skip
        return Outcome.STORED if fresh else Outcome.DUPLICATE

    def _contact(self, msg: wire.Message, c: wire.Contact, now: int) -> Outcome:
        db, sql = self.db, self._sql
        clip = None if c.clip is None else to_json(c.clip)
        fresh = execute(
            db,
            sql.contact,
            (
                msg.device, c.id, msg.site, msg.msg_id, c.start, c.end, c.duration_s,
                c.ended_by, c.mode, clip, c.clock_synced, c.boot_id, now, c.video_url, c.staff,
            ),
        ).rowcount  # fmt: skip
        if not fresh:
            outcome = self._clock_correction(msg.device, c)
            if outcome is Outcome.STORED:
                self._reconcile_clip(msg.site, msg.device, c, now)
            return outcome
        if c.clip is not None:
            self._reconcile_clip(msg.site, msg.device, c, now)
        if c.tags:
            self._insert_rows(sql.tag, [(msg.device, c.id, i, t) for i, t in enumerate(c.tags)])
        if c.events:
            rows = [
                (msg.device, e.id, e.contact_id, pos, e.kind, e.at, to_json(e.body), now)
                for pos, e in enumerate(c.events)
            ]
            self._insert_rows(sql.event, rows)
        return Outcome.STORED

    def _insert_rows(self, one_row: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows in one statement (a multi-row VALUES: one round trip to PostgreSQL, where an
        ``executemany`` costs a pipeline's sync), at most :data:`_ROWS_PER_INSERT` at a time."""
        for at in range(0, len(rows), _ROWS_PER_INSERT):
            part = rows[at : at + _ROWS_PER_INSERT]
            key = (one_row, len(part))
            sql = self._multi.get(key)
            if sql is None:
                head, _, rest = one_row.partition(" VALUES ")
                marks, _, tail = rest.partition(") ")
                sql = self._multi[key] = (
                    f"{head} VALUES {', '.join([marks + ')'] * len(part))} {tail}"
                )
            execute(self.db, sql, [value for row in part for value in row])

    def _clock_correction(self, device: str, c: wire.Contact) -> Outcome:
        """The same contact again, now with a synchronised clock, replaces wall times that were
        taken from an unsynchronised one (the device corrects them when its clock syncs, see
        docs/RELIABILITY.md); anything else about a stored contact is never rewritten."""
        t = self.t.contacts
        where = (t.device == device) & (t.id == c.id) & (t.clock_synced == False)  # noqa: E712
        if not c.clock_synced or not t.select(t.id).where(where).exists():
            return Outcome.DUPLICATE
        t.update(
            {
                t.start_iso: c.start,
                t.end_iso: c.end,
                t.clip: None if c.clip is None else to_json(c.clip),
                t.clock_synced: True,
            }
        ).where(where).execute()
        e = self.t.events
        for event in c.events:
            e.update({e.at_iso: event.at, e.body: to_json(event.body)}).where(
                (e.device == device) & (e.id == event.id)
            ).execute()
        self._bump("clock_corrected")
        return Outcome.STORED

    def _events(self, device: str, events: list[wire.Event], now: int) -> int:
        """Store events (each once per device and id); how many were new."""
        added = 0
        for pos, e in enumerate(events):
            row = (device, e.id, e.contact_id, pos, e.kind, e.at, to_json(e.body), now)
            added += execute(self.db, self._sql.event, row).rowcount
        return added

    # -- clips ------------------------------------------------------------------------------

    def _chunk(self, topic: str, payload: bytes, ch: wire.Chunk, now: int) -> Result:
        """Check a chunk against its clip and write its bytes at their offset in the clip's
        partial file; whether it is new (its bit) is decided at the end of the batch
        (:meth:`_flush_clip`), which replaces the provisional result returned here."""
        self._seen(ch.device, ch.site)
        limits = self.limits
        if ch.clip_bytes > limits.max_clip_bytes or ch.total > limits.max_chunks:
            detail = (
                f"clip {ch.clip_id} claims {ch.clip_bytes} bytes in {ch.total} chunks; this sink "
                f"takes at most {limits.max_clip_bytes} bytes in {limits.max_chunks} chunks "
                "(sink config max_clip_bytes, max_chunks)"
            )
            self._dead_letter(topic, payload, "too_large", detail, now)
            return Result(Outcome.DEAD_LETTER)
        claim = (ch.total, ch.clip_bytes, ch.clip_sha256, ch.codec)
        facts = self._clips.get((ch.device, ch.clip_id))
        if facts is None or facts.known != claim:  # not cached, or another worker changed it
            loaded = self._load_clip(topic, payload, ch, now)
            if isinstance(loaded, Result):
                return loaded
            facts = loaded
        if facts.deleted:
            return Result(Outcome.DUPLICATE)  # retention deleted its audio: never again
        problem = ch.corruption()
        if problem is not None:
            self._dead_letter(topic, payload, "chunk_corrupt", problem, now)
            return Result(Outcome.DEAD_LETTER)
        batch = self._batch
        written = False
        if not facts.complete:  # a complete clip has no partial file any more
            batch.write(self.store, ch)
            written = True
        batch.chunks.append(_Taken(batch.index, topic, payload, ch, written))
        return Result(Outcome.STORED)  # provisional

    def _load_clip(
        self, topic: str, payload: bytes, ch: wire.Chunk, now: int
    ) -> _ClipFacts | Result:
        """The clip row of a chunk whose clip is not cached (made from the chunk's header if
        there is none yet, corrected by its contact's announcement); a dead letter when the
        chunk disagrees with either."""
        self._clips.pop((ch.device, ch.clip_id), None)
        claim = (ch.clip_bytes, ch.clip_sha256, ch.codec)
        announced = self._announced(ch.device, ch.clip_id)
        if announced is not None and claim != announced:
            detail = f"chunk {ch.seq} claims {_shown(claim)}, its contact announced " + _shown(
                announced
            )
            self._dead_letter(topic, payload, "clip_mismatch", detail, now)
            return Result(Outcome.DEAD_LETTER)
        self._insert_clip(ch, now)
        clips = self.t.clips
        row = self._clip_row(ch.device, ch.clip_id)
        if row.get("audio_deleted_at") is not None:
            return self._cache(row)
        if announced is not None and _identity(row) != announced:
            # the row came from an earlier chunk header that the contact contradicts
            self._reset_clip(row, announced, ch.total, now)
            row = self._clip_row(ch.device, ch.clip_id)
        elif (
            row["total"] != ch.total
            and _identity(row) == claim
            and not bool(row["complete"])
            and not row["received_count"]
        ):  # the chunk count is the device's, and no chunk was kept under the old one yet
            clips.update({clips.total: ch.total, clips.received: None}).where(
                (clips.device == ch.device) & (clips.clip_id == ch.clip_id)
            ).execute()
            row = self._clip_row(ch.device, ch.clip_id)
        known = (row["total"], row["clip_bytes"], row["clip_sha256"], row["codec"])
        if known != (ch.total, ch.clip_bytes, ch.clip_sha256, ch.codec):
            detail = f"chunk {ch.seq} says {ch.total}/{ch.clip_bytes}/{ch.codec}, clip {known}"
            self._dead_letter(topic, payload, "clip_mismatch", detail, now)
            return Result(Outcome.DEAD_LETTER)
        return self._cache(row)

    def _insert_clip(self, ch: wire.Chunk, now: int) -> None:
        """The clip's row from a chunk header, unless it is there."""
        execute(
            self.db,
            self._sql.clip,
            (
                ch.device, ch.clip_id, ch.site, ch.codec, ch.sample_rate, ch.total,
                ch.clip_bytes, ch.clip_sha256, now, now,
            ),
        )  # fmt: skip

    def _cache(self, row: dict[str, Any]) -> _ClipFacts:
        """Remember what a clip row said (a cache: checked against the row, locked, when the
        batch records its chunks)."""
        facts = _ClipFacts(
            known=(int(row["total"]), *_identity(row)),
            complete=bool(row["complete"]),
            deleted=row.get("audio_deleted_at") is not None,
        )
        if len(self._clips) >= _MAX_CACHED:
            self._clips.pop(next(iter(self._clips)))
        self._clips[(str(row["device"]), str(row["clip_id"]))] = facts
        return facts

    def _flush(self, batch: _Batch, results: list[Result], now: int) -> None:
        """The end of a batch, inside its transaction: the devices its messages came from
        (their rows and ``on_seen``, in one order), then every clip it wrote chunks of: the
        bytes made durable, then the chunks' bits recorded (in one order: workers never wait
        for each other in a circle)."""
        self._write_devices(batch, now)
        if not batch.chunks:
            return
        batch.sync(self.store)
        by_clip: dict[tuple[str, str], list[_Taken]] = {}
        for taken in batch.chunks:
            by_clip.setdefault((taken.chunk.device, taken.chunk.clip_id), []).append(taken)
        for key in sorted(by_clip):
            self._flush_clip(batch, by_clip[key], results, now)

    def _flush_clip(
        self, batch: _Batch, taken: list[_Taken], results: list[Result], now: int
    ) -> None:
        """Record a batch's chunks of one clip in its row, locked (the bytes are durable)."""
        first = taken[0].chunk
        device, clip_id, site = first.device, first.clip_id, first.site
        row = self._lock_clip(device, clip_id)
        if row is None:  # expired meanwhile (another worker): a chunk starts it afresh
            self._insert_clip(first, now)
            row = self._lock_clip(device, clip_id)
            assert row is not None  # noqa: S101 - inserted just now, in this transaction
        total, clip_bytes, sha256, codec, complete, deleted, received, count = row
        known = (int(total), int(clip_bytes), str(sha256), str(codec))
        bits = int.from_bytes(received or b"", "little")
        added = 0
        late: list[_Taken] = []
        stray: set[str] = set()  # partial files written under an identity that is not the row's
        for t in taken:
            ch = t.chunk
            if (ch.total, ch.clip_bytes, ch.clip_sha256, ch.codec) != known:
                detail = f"chunk {ch.seq} says {ch.total}/{ch.clip_bytes}/{ch.codec}, clip {known}"
                self._dead_letter(t.topic, t.payload, "clip_mismatch", detail, now)
                results[t.index] = Result(Outcome.DEAD_LETTER)
                if t.written and ch.clip_sha256 != sha256:
                    stray.add(ch.clip_sha256)
            elif complete or deleted or bits >> ch.seq & 1:
                confirm = Confirm(site, device, clip_id=clip_id) if complete else None
                results[t.index] = Result(Outcome.DUPLICATE, receipt=confirm)
            else:
                bits |= 1 << ch.seq
                added += 1
                if not t.written:  # cached as complete, it is not: write it now
                    late.append(t)
        self._clips[(device, clip_id)] = _ClipFacts(known, bool(complete), deleted is not None)
        if (complete or deleted) and any(t.written for t in taken):
            stray.add(str(sha256))
        for sha in sorted(stray):  # written on a cache that did not know yet: nobody needs it
            self._after_commit.append(partial(self.store.drop_partial, site, device, clip_id, sha))
        if not added:
            return
        if late:
            for t in late:
                batch.write(self.store, t.chunk)
            batch.sync(self.store)
        count = int(count) + added
        execute(
            self.db,
            self._sql.record,
            (bits.to_bytes((int(total) + 7) // 8, "little"), count, now, device, clip_id),
        )
        ready = ClipKey(site, device, clip_id) if count >= int(total) else None
        for t in reversed(taken):  # the chunk that completed it announces it
            if results[t.index].outcome is Outcome.STORED:
                results[t.index] = Result(Outcome.STORED, ready)
                ready = None  # the clip is announced once

    def _lock_clip(self, device: str, clip_id: str) -> tuple[Any, ...] | None:
        """The clip row's chunk state, locked until the batch commits (PostgreSQL: FOR UPDATE;
        SQLite: the batch holds the database's write lock already)."""
        row = execute(self.db, self._sql.lock, (device, clip_id)).fetchone()
        return None if row is None else tuple(row)

    def _announced(self, device: str, clip_id: str) -> tuple[int, str, str] | None:
        """(bytes, sha256, codec) of the clip as its contact announced it, if the contact is
        here and its ``clip`` object says so (a clip id is its contact's id)."""
        c = self.t.contacts
        raw = c.select(c.clip).where((c.device == device) & (c.id == clip_id)).scalar()
        return None if raw is None else _announcement(from_json(raw))

    def _reconcile_clip(self, site: str, device: str, contact: wire.Contact, now: int) -> None:
        """A contact just stored (or corrected): a clip row made from chunk headers that
        disagree with what it announces is reset."""
        announced = None if contact.clip is None else _announcement(contact.clip)
        if announced is None:
            return
        p = self.db.param  # the usual case first, in one plain statement: a row that agrees
        # (or none yet, the contact before its chunks) needs no peewee query built
        known = execute(
            self.db,
            "SELECT clip_bytes, clip_sha256, codec, audio_deleted_at FROM clips "  # noqa: S608
            f"WHERE device = {p} AND clip_id = {p}",
            (device, contact.id),
        ).fetchone()
        if (
            known is None
            or known[3] is not None
            or _identity({"clip_bytes": known[0], "clip_sha256": known[1], "codec": known[2]})
            == announced
        ):
            return
        clips = self.t.clips  # it disagrees: the whole row, for the reset (same transaction)
        row = (
            clips.select()
            .where((clips.device == device) & (clips.clip_id == contact.id))
            .dicts()
            .first()
        )
        if row is not None:
            self._reset_clip(row, announced, row["total"], now)

    def _reset_clip(
        self, row: dict[str, Any], announced: tuple[int, str, str], total: int, now: int
    ) -> None:
        """Give a clip the size, sha256 and codec its contact announced; what it held under the
        old ones (chunks, or an assembled file) is dropped and will be asked for again."""
        clips = self.t.clips
        device, clip_id, site = row["device"], row["clip_id"], row["site"]
        self._clips.pop((device, clip_id), None)
        dropped = int(row["received_count"] or 0)
        clip_bytes, sha256, codec = announced
        clips.update(
            {
                clips.clip_bytes: clip_bytes,
                clips.clip_sha256: sha256,
                clips.codec: codec,
                clips.total: total,
                clips.complete: False,
                clips.path: None,
                clips.location: None,
                clips.completed_ns: None,
                clips.quiet_since_ns: now,
                clips.resend_requests: 0,
                clips.received: None,
                clips.received_count: 0,
            }
        ).where((clips.device == device) & (clips.clip_id == clip_id)).execute()
        detail = (
            f"clip {clip_id}: chunk headers claimed {_shown(_identity(row))}, its contact "
            f"announced {_shown(announced)}; {dropped} chunk(s)"
            f"{' and the assembled file' if row['path'] else ''} dropped, asked for again"
        )
        self._dead_letter(wire.clip_topic(site, device), b"", "clip_mismatch", detail, now)
        old_sha = str(row["clip_sha256"])
        if old_sha != sha256:  # the partial file under the new identity is another one
            self._after_commit.append(
                lambda: self.store.drop_partial(site, device, clip_id, old_sha)
            )
        if row.get("location") and self.drop_object is not None:
            location, drop = str(row["location"]), self.drop_object
            self._after_commit.append(lambda: drop(location))
        elif row["path"]:
            path = str(row["path"])
            self._after_commit.append(lambda: self.store.remove(path))

    def _clip_row(self, device: str, clip_id: str) -> dict[str, Any]:
        clips = self.t.clips
        row: dict[str, Any] = (
            clips.select().where((clips.device == device) & (clips.clip_id == clip_id)).get()
        )
        return row

    def assemble(self, key: ClipKey) -> bool:
        """Verify a clip whose chunks are all recorded, move it into place and mark it
        complete; True if the clip is complete afterwards."""
        row = self._clip_row(key.device, key.clip_id)
        if bool(row["complete"]):
            return self._clip_complete(key)
        if int(row["received_count"]) < int(row["total"]):
            return False
        size, sha256, codec = _identity(row)
        rel = self.store.clip_relpath(key.site, key.device, key.clip_id, codec)
        try:
            verified = self.store.verify(
                key.site, key.device, key.clip_id, size=size, sha256=sha256
            )
            self.store.finish(verified, rel)
        except (ClipCorruptError, FileNotFoundError):
            if bool(self._clip_row(key.device, key.clip_id)["complete"]):
                return self._clip_complete(key)  # another worker finished it
            if not self.store.verified_in_place(rel, size=size, sha256=sha256):
                self._forget_chunks(key, sha256)
                self.counters.bump("clip_corrupt")
                return False
            # in place and right, not marked complete: a crash (or another worker) between
            # the move and the mark
        crashpoint("sink.assemble")  # fault tests only: file in place, not yet marked complete
        clips = self.t.clips
        with transaction(self.db):
            clips.update(
                {clips.complete: True, clips.path: rel, clips.completed_ns: self.clock()}
            ).where(
                (clips.device == key.device)
                & (clips.clip_id == key.clip_id)
                & (clips.clip_sha256 == sha256)
                & (clips.complete == False)  # noqa: E712 - SQL, not Python
            ).execute()
        self._clips.pop((key.device, key.clip_id), None)
        self.counters.bump("clip_complete")
        return self._clip_complete(key)

    def _forget_chunks(self, key: ClipKey, sha256: str) -> None:
        """A clip that did not verify: every chunk is asked for again (its partial file stays,
        the resent chunks overwrite it)."""
        clips = self.t.clips
        self._clips.pop((key.device, key.clip_id), None)
        with transaction(self.db):
            clips.update({clips.received: None, clips.received_count: 0}).where(
                (clips.device == key.device)
                & (clips.clip_id == key.clip_id)
                & (clips.clip_sha256 == sha256)
                & (clips.complete == False)  # noqa: E712 - SQL, not Python
            ).execute()

    def check_clips(self, resend_after_ns: int, max_requests: int = 10) -> list[ResendRequest]:
        """One whole pass of :meth:`check_clips_step` over every incomplete clip."""
        requests: list[ResendRequest] = []
        after: tuple[str, str] | None = None
        while True:
            step, after = self.check_clips_step(resend_after_ns, max_requests, after=after)
            requests.extend(step)
            if after is None:
                return requests

    def check_clips_step(
        self,
        resend_after_ns: int,
        max_requests: int = 10,
        *,
        after: tuple[str, str] | None = None,
        limit: int = CHECK_BATCH,
    ) -> tuple[list[ResendRequest], tuple[str, str] | None]:
        """Look at up to ``limit`` incomplete clips after ``after`` (device, clip id): assemble
        the ones whose chunks are all there, expire the ones too old, and return resend
        requests for the ones quiet for ``resend_after_ns`` (recording that they were asked).
        Returns the requests and the cursor for the next step (None: the pass is over)."""
        now = self.clock()
        expire_ns = self.limits.clip_expire_after_ns
        clips = self.t.clips
        ready: list[ClipKey] = []
        expired: list[tuple[ClipKey, str]] = []
        requests: list[ResendRequest] = []
        with transaction(self.db):
            query = clips.select().where(
                (clips.complete == False)  # noqa: E712
                & clips.audio_deleted_at.is_null()  # retention dropped it: ask for nothing
            )
            if after is not None:
                query = query.where(
                    (clips.device > after[0])
                    | ((clips.device == after[0]) & (clips.clip_id > after[1]))
                )
            rows = list(query.order_by(clips.device, clips.clip_id).limit(limit).dicts())
            self._lock_clips((row["device"], row["clip_id"]) for row in rows)  # as a batch does
            for row in rows:
                key = ClipKey(row["site"], row["device"], row["clip_id"])
                where = (clips.device == key.device) & (clips.clip_id == key.clip_id)
                have = int(row["received_count"])
                if have >= row["total"]:
                    ready.append(key)
                elif expire_ns is not None and now - row["first_seen_ns"] >= expire_ns:
                    expired.append((key, str(row["clip_sha256"])))
                    self._expire(row, have, now)
                elif (
                    now - row["quiet_since_ns"] >= resend_after_ns
                    and row["resend_requests"] < max_requests
                ):
                    missing = _missing(row["received"], int(row["total"]))
                    requests.append(ResendRequest(key, missing))
                    clips.update(
                        {
                            clips.quiet_since_ns: now,
                            clips.resend_requests: row["resend_requests"] + 1,
                        }
                    ).where(where).execute()
        for key, sha256 in expired:
            self._clips.pop((key.device, key.clip_id), None)
            self.store.drop_partial(key.site, key.device, key.clip_id, sha256)
        for key in ready:
            self.assemble(key)
        self.counters.bump("resend_request", len(requests))
        self.counters.bump("clip_expired", len(expired))
        cursor = (rows[-1]["device"], rows[-1]["clip_id"]) if len(rows) == limit else None
        return requests, cursor

    def _expire(self, row: dict[str, Any], have: int, now: int) -> None:
        """Forget an incomplete clip that is too old (inside the check's transaction)."""
        clips = self.t.clips
        device, clip_id = row["device"], row["clip_id"]
        clips.delete().where((clips.device == device) & (clips.clip_id == clip_id)).execute()
        age_s = (now - row["first_seen_ns"]) / NS
        limit_s = (self.limits.clip_expire_after_ns or 0) / NS
        detail = (
            f"clip {clip_id}: {have} of {row['total']} chunks after {age_s:.0f} s, "
            f"{row['resend_requests']} resend request(s); incomplete clips expire after "
            f"{limit_s:.0f} s (sink config clip_expire_after_s): its chunks were dropped"
        )
        self._dead_letter(wire.clip_topic(row["site"], device), b"", "clip_expired", detail, now)

    # -- queries ----------------------------------------------------------------------------

    def contacts(self) -> Iterator[dict[str, Any]]:
        """Every contact as ``sink contacts --json`` prints it, oldest first."""
        t = self.t
        tags: dict[tuple[str, str], list[str]] = {}
        for device, contact_id, tag in (
            t.tags.select(t.tags.device, t.tags.contact_id, t.tags.tag)
            .order_by(t.tags.device, t.tags.contact_id, t.tags.pos)
            .tuples()
        ):
            tags.setdefault((device, contact_id), []).append(tag)
        events: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for device, contact_id, body in (
            t.events.select(t.events.device, t.events.contact_id, t.events.body)
            .where(t.events.contact_id.is_null(False))
            .order_by(t.events.device, t.events.contact_id, t.events.pos)
            .tuples()
        ):
            events.setdefault((device, contact_id), []).append(from_json(body))
        audio = {  # the file under the data directory, or the object (clips.location)
            (device, clip_id): location or str(self.data_dir / path)
            for device, clip_id, path, location in t.clips.select(
                t.clips.device, t.clips.clip_id, t.clips.path, t.clips.location
            )
            .where((t.clips.complete == True) & t.clips.audio_deleted_at.is_null())  # noqa: E712
            .tuples()
        }
        for row in t.contacts.select().order_by(
            t.contacts.start_iso, t.contacts.device, t.contacts.id
        ):
            key = (row["device"], row["id"])
            contact = wire.contact_json(
                id=row["id"],
                start=row["start_iso"],
                end=row["end_iso"],
                duration_s=float(row["duration_s"]),
                ended_by=row["ended_by"],
                mode=row["mode"],
                tags=tags.get(key, []),
                events=events.get(key, []),
                clip=None if row["clip"] is None else from_json(row["clip"]),
                clock_synced=bool(row["clock_synced"]),
                boot_id=row["boot_id"],
                video_url=row["video_url"],
                staff=row["staff"],
            )
            yield wire.listed(contact, device=row["device"], site=row["site"], audio=audio.get(key))

    def verified_clip_count(self) -> int:
        """How many contacts have a verified clip file."""
        c, k = self.t.contacts, self.t.clips
        count: int = (
            c.select(fn.COUNT(c.id))
            .join(k, on=(k.device == c.device) & (k.clip_id == c.id))
            .where(k.complete == True)  # noqa: E712
            .scalar()
        )
        return count

    def dead_letters(self) -> list[dict[str, Any]]:
        d = self.t.dead_letters
        return list(d.select().order_by(d.id))

    def devices(self) -> list[dict[str, Any]]:
        d = self.t.devices
        return list(d.select().order_by(d.device))
