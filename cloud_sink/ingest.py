"""Idempotent ingest: parsed messages → rows, a batch of them in one transaction.

Rules:
- A message that does not parse becomes a ``dead_letters`` row (topic, reason, detail, the first
  256 bytes of the payload with non-printable bytes escaped, size, received time) and a counter;
  nothing else is written.
- JSON messages are deduplicated on (device, msg_id) in ``messages``; a contact additionally on
  (device, contact id) and an event on (device, event id), so the same contact sent again under
  a new msg_id is still stored once. A contact is stored with its tags and events.
- Status messages (retained, and the device's last will) update the device row in the order
  they arrive; every accepted message updates the device's site and last-seen time.
- Clip chunks are deduplicated on (device, clip_id, seq). A clip's size, sha256 and codec are
  the ones its contact announced (``contact.clip``): a chunk that claims others is a dead letter
  (``clip_mismatch``), and a clip row made from an earlier chunk header that the contact
  contradicts is reset (its chunks dropped, asked for again). Before the contact is there, the
  first chunk header seen creates the clip row; a later header that disagrees about total, size,
  sha256 or codec is a dead letter. A chunk whose size or sha256 is wrong is discarded (dead
  letter ``chunk_corrupt``), but its clip is still known, so the missing chunk will be asked
  for again.
- What a sender can claim is bounded by :class:`Limits` (sink config): a clip larger than
  ``max_clip_bytes`` or in more than ``max_chunks`` chunks is a dead letter (``too_large``).
- Chunk bytes are written to their file before the transaction commits; the caller acks the
  broker only after :meth:`Ingest.handle_batch` returns (the batch committed).
- A batch (:meth:`Ingest.handle_batch`) is one transaction; each message in it runs in a savepoint
  of its own. On PostgreSQL it first takes the advisory lock of every device it holds messages
  of, in one order (sorted keys), as the clip check does for its clips: workers sharing a
  stream take turns per device instead of deadlocking on rows written in different orders.
  No single message stops the stream. Any exception while a message is stored rolls its
  savepoint back; then the message becomes a dead letter (reason ``integrity`` for a constraint or
  data error, else ``ingest_error``, with the exception) and its whole raw payload (bounded by the
  parser's limits) is kept under ``dead_letters/`` in the data directory. Only errors that may pass
  (the database or the disk: peewee's ``OperationalError``/``InterfaceError``, ``OSError``)
  propagate, rolling the whole batch back, so that the caller acks none of it and the broker
  delivers the batch again; the same message failing that way ``max_attempts`` times in a row is
  dead-lettered too, except a full, read-only or failing disk (ENOSPC, EDQUOT, EROFS, EIO), which is
  nobody's message: that one is redelivered until the disk is fixed. If even the dead letter cannot
  be written (the database is down) the error propagates.
- A clip whose chunks are all there is assembled after the commit (:meth:`Ingest.assemble`):
  verified, moved into place, then marked complete. A clip that does not verify loses all its
  chunks and is asked for again in full.
- :meth:`Ingest.check_clips_step` (the worker calls it in small steps between messages, a pass
  every ``check_every_s``) looks at up to ``limit`` incomplete clips after a cursor: it
  assembles clips that have all their chunks (two workers may each have committed one of the
  last chunks); dead-letters (``clip_expired``) and forgets a clip still incomplete
  ``clip_expire_after_ns`` after its first chunk (chunk rows and files dropped; a chunk that
  comes later starts it afresh); and, for a clip that got no chunk for ``resend_after_ns``,
  returns a resend request for its missing seqs as ranges, at most ``max_requests`` times per
  clip. A request names only the first ranges that fit :data:`wire.MAX_RESEND_BYTES`, and
  finding them reads the clip's present seqs in order without building the list of missing
  ones, so a clip claiming many chunks costs neither memory nor a packet the broker refuses.
- Delivery receipts (cloud_sink/receipts.py): after its commit, :meth:`Ingest.handle` names in
  ``Result.receipt`` what the device may now forget: a JSON message stored or already stored
  (by msg_id; not a status, not a dead letter), or the clip of a chunk that arrives after the
  clip is complete. A clip that becomes complete is announced to ``on_clip_complete``.
- Times in the database are wall-clock nanoseconds from the injected ``clock``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from peewee import Database, DataError, IntegrityError, InterfaceError, OperationalError, fn

from cloud_sink import wire
from cloud_sink.db import execute_sql, is_sqlite, rowcount, transaction
from cloud_sink.models import Tables, from_json, tables, to_json
from cloud_sink.receipts import Confirm
from cloud_sink.storage import ClipCorruptError, ClipStore
from contract.crashpoint import crashpoint
from contract.wire import parse_topic

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
#: the disk is full, read-only or failing: no message's fault, so never a dead letter
_ENVIRONMENT: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


#: the class (first key) of the devices' PostgreSQL advisory locks ("cpdv")
_DEVICE_LOCKS: Final = 0x63706476


def _device_lock_key(device: str) -> int:
    """A device's advisory lock key: 32 bits of its name's sha256, signed (a PostgreSQL int)."""
    return int.from_bytes(
        hashlib.sha256(device.encode("utf-8", "backslashreplace")).digest()[:4], "big", signed=True
    )


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


def _gaps(present: Iterable[int], total: int) -> Iterator[tuple[int, int]]:
    """The inclusive ranges of 0..total-1 missing from ``present`` (ascending, no repeats)."""
    expected = 0
    for seq in present:
        if seq >= total:
            break
        if seq > expected:
            yield expected, seq - 1
        expected = seq + 1
    if expected < total:
        yield expected, total - 1


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
        # Called inside the transaction just before commit; a test raises here to play a crash.
        self.before_commit: Callable[[str], None] | None = None
        # Called inside the transaction after a contact or event was stored (site alerts).
        self.on_stored: Callable[[Database, wire.Message, int], object] | None = None
        # Called after a clip was verified and marked complete (its delivery receipt).
        self.on_clip_complete: Callable[[ClipKey], object] | None = None
        # Deletes a clip's object (its s3:// location) after a commit that dropped the clip
        # (cloud_sink/objects.py); None: no object storage configured
        self.drop_object: Callable[[str], None] | None = None
        # every stored message of a device, in its transaction: (db, site, device, its status
        # or None, now); the device offline alerts (cloud_sink.alerts.DeviceWatch)
        self.on_seen: Callable[[Database, str, str, wire.Status | None, int], object] | None = None

    # -- messages ---------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> Result:
        """Ingest one message: :meth:`handle_batch` of one."""
        return self.handle_batch([(topic, payload)])[0]

    def handle_batch(self, messages: Sequence[tuple[str, bytes]]) -> list[Result]:
        """Ingest ``(topic, payload)`` messages in one transaction, each in a savepoint of its
        own; return their results in order once the transaction committed. A message that
        fails is rolled back to its savepoint and dead-lettered, the others are kept. Raises
        only when nothing was committed and the whole batch must be redelivered (see the
        module notes: a passing error, or a dead letter itself cannot be written)."""
        now = self.clock()
        self._after_commit.clear()
        results: list[Result] = []
        try:
            with transaction(self.db):
                self._lock_devices(t.device for topic, _ in messages if (t := parse_topic(topic)))
                for topic, payload in messages:
                    results.append(self._isolated(topic, payload, now))
        except BaseException:
            self._after_commit.clear()  # rolled back: the files stay with their rows
            raise
        for remove in self._after_commit:
            remove()
        self._after_commit.clear()
        self.counters.bump("batch")
        for (topic, payload), result in zip(messages, results, strict=True):
            if self._attempts:
                self._attempts.pop(_digest(topic, payload), None)
            self.counters.bump(result.outcome.value)
        return results

    def _lock_devices(self, devices: Iterable[str]) -> None:
        """PostgreSQL: take the transaction's advisory lock of each device, all of them before
        any row is written and in one order for every worker (sorted keys), so that workers
        whose batches share devices take turns per device instead of deadlocking on the rows
        they write (the device row, its clips, ...) in different orders. SQLite: nothing (a
        write transaction holds the database's one lock from its start)."""
        if is_sqlite(self.db):
            return
        for key in sorted({_device_lock_key(device) for device in devices}):
            execute_sql(self.db, "SELECT pg_advisory_xact_lock(%s, %s)", (_DEVICE_LOCKS, key))

    def _isolated(self, topic: str, payload: bytes, now: int) -> Result:
        """One message of a batch, in its own savepoint."""
        mark = len(self._after_commit)
        try:
            with self.db.atomic():  # a savepoint inside the batch's transaction
                return self._handle(topic, payload, now)
        except Exception as exc:  # noqa: BLE001 - no single message may stop the sink
            del self._after_commit[mark:]  # its removals went with its savepoint
            return self._failed(topic, payload, exc, now)

    def _handle(self, topic: str, payload: bytes, now: int) -> Result:
        parsed = wire.parse(topic, payload)
        if isinstance(parsed, wire.Ignored):
            return Result(Outcome.IGNORED)
        if isinstance(parsed, wire.Rejected):
            with transaction(self.db):
                self._dead_letter(topic, payload, parsed.reason, parsed.detail, now)
            return Result(Outcome.DEAD_LETTER)
        with transaction(self.db):
            if isinstance(parsed, wire.Chunk):
                result = self._chunk(topic, payload, parsed, now)
                if self.on_seen is not None and result.outcome is Outcome.STORED:
                    self.on_seen(self.db, parsed.site, parsed.device, None, now)
            else:
                result = Result(self._message(parsed, now))
                if (
                    self.on_stored is not None
                    and result.outcome is Outcome.STORED
                    and isinstance(parsed.body, wire.Contact | wire.Event)
                ):
                    self.on_stored(self.db, parsed, now)
                if self.on_seen is not None and result.outcome is Outcome.STORED:
                    status = parsed.body if isinstance(parsed.body, wire.Status) else None
                    self.on_seen(self.db, parsed.site, parsed.device, status, now)
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
        """After the commit: what the device may now forget, if anything."""
        if result.outcome not in (Outcome.STORED, Outcome.DUPLICATE):
            return result
        if isinstance(parsed, wire.Message):
            if parsed.kind == "status":
                return result
            return replace(result, receipt=Confirm(parsed.site, parsed.device, parsed.msg_id))
        if result.outcome is Outcome.DUPLICATE:  # a chunk of a clip that may be complete
            clips = self.t.clips
            complete = (
                clips.select(clips.clip_id)
                .where(
                    (clips.device == parsed.device)
                    & (clips.clip_id == parsed.clip_id)
                    & (clips.complete == True)  # noqa: E712 - SQL, not Python
                )
                .exists()
            )
            if complete:
                confirm = Confirm(parsed.site, parsed.device, clip_id=parsed.clip_id)
                return replace(result, receipt=confirm)
        return result

    def _clip_complete(self, key: ClipKey) -> bool:
        if self.on_clip_complete is not None:
            self.on_clip_complete(key)
        return True

    def _dead_letter(self, topic: str, payload: bytes, reason: str, detail: str, now: int) -> None:
        self.t.dead_letters.insert(
            topic=_text(topic[:1024]),
            reason=reason,
            detail=_text(detail[:2000]),
            head=printable(payload[:HEAD_BYTES]),
            payload_bytes=len(payload),
            received_ns=now,
        ).execute()
        self.counters.bump(f"dead_letter.{reason}")

    def _seen(self, device: str, site: str, now: int) -> None:
        d = self.t.devices
        d.insert(device=device, site=site, first_seen_ns=now, last_seen_ns=now).on_conflict(
            conflict_target=[d.device], update={d.site: site, d.last_seen_ns: now}
        ).execute()

    def _message(self, msg: wire.Message, now: int) -> Outcome:
        fresh = rowcount(
            self.db,
            self.t.messages.insert(
                device=msg.device, msg_id=msg.msg_id, kind=msg.kind, received_ns=now
            ).on_conflict_ignore(),
        )
        if not fresh:
            return Outcome.DUPLICATE
        self._seen(msg.device, msg.site, now)
        body = msg.body
        if isinstance(body, wire.Contact):
            return self._contact(msg, body, now)
        if isinstance(body, wire.Event):
            added = self._events(msg.device, [body], now)
            return Outcome.STORED if added else Outcome.DUPLICATE
        if isinstance(body, wire.Alert):
            return self._alert(msg, body, now)
        d = self.t.devices
        d.update(
            {
                d.online: body.online,
                d.version: body.version,
                d.boot_id: body.boot_id,
                d.outbox_depth: body.outbox_depth,
                d.free_disk_bytes: body.free_disk_bytes,
                d.clock_synced: body.clock_synced,
                d.status_at: body.at,
            }
        ).where(d.device == msg.device).execute()
        return Outcome.STORED

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
        fresh = rowcount(
            self.db,
            self.t.contacts.insert(
                device=msg.device,
                id=c.id,
                site=msg.site,
                msg_id=msg.msg_id,
                start_iso=c.start,
                end_iso=c.end,
                duration_s=c.duration_s,
                ended_by=c.ended_by,
                mode=c.mode,
                clip=None if c.clip is None else to_json(c.clip),
                clock_synced=c.clock_synced,
                boot_id=c.boot_id,
                received_ns=now,
                video_url=c.video_url,
                staff=c.staff,
            ).on_conflict_ignore(),
        )
        if not fresh:
            outcome = self._clock_correction(msg.device, c)
            if outcome is Outcome.STORED:
                self._reconcile_clip(msg.site, msg.device, c, now)
            return outcome
        self._reconcile_clip(msg.site, msg.device, c, now)
        if c.tags:
            self.t.tags.insert(
                [
                    {"device": msg.device, "contact_id": c.id, "pos": i, "tag": tag}
                    for i, tag in enumerate(c.tags)
                ]
            ).execute()
        self._events(msg.device, list(c.events), now)
        return Outcome.STORED

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
        self.counters.bump("clock_corrected")
        return Outcome.STORED

    def _events(self, device: str, events: list[wire.Event], now: int) -> int:
        added = 0
        for pos, e in enumerate(events):
            added += rowcount(
                self.db,
                self.t.events.insert(
                    device=device,
                    id=e.id,
                    contact_id=e.contact_id,
                    pos=pos,
                    kind=e.kind,
                    at_iso=e.at,
                    body=to_json(e.body),
                    received_ns=now,
                ).on_conflict_ignore(),
            )
        return added

    # -- clips ------------------------------------------------------------------------------

    def _chunk(self, topic: str, payload: bytes, ch: wire.Chunk, now: int) -> Result:
        self._seen(ch.device, ch.site, now)
        limits = self.limits
        if ch.clip_bytes > limits.max_clip_bytes or ch.total > limits.max_chunks:
            detail = (
                f"clip {ch.clip_id} claims {ch.clip_bytes} bytes in {ch.total} chunks; this sink "
                f"takes at most {limits.max_clip_bytes} bytes in {limits.max_chunks} chunks "
                "(sink config max_clip_bytes, max_chunks)"
            )
            self._dead_letter(topic, payload, "too_large", detail, now)
            return Result(Outcome.DEAD_LETTER)
        claim = (ch.clip_bytes, ch.clip_sha256, ch.codec)
        announced = self._announced(ch.device, ch.clip_id)
        if announced is not None and claim != announced:
            detail = f"chunk {ch.seq} claims {_shown(claim)}, its contact announced " + _shown(
                announced
            )
            self._dead_letter(topic, payload, "clip_mismatch", detail, now)
            return Result(Outcome.DEAD_LETTER)
        clips, chunks = self.t.clips, self.t.chunks
        clips.insert(
            device=ch.device,
            clip_id=ch.clip_id,
            site=ch.site,
            codec=ch.codec,
            sample_rate=ch.sample_rate,
            total=ch.total,
            clip_bytes=ch.clip_bytes,
            clip_sha256=ch.clip_sha256,
            first_seen_ns=now,
            quiet_since_ns=now,
            resend_requests=0,
            complete=False,
        ).on_conflict_ignore().execute()
        row = self._clip_row(ch.device, ch.clip_id)
        if row.get("audio_deleted_at") is not None:
            return Result(Outcome.DUPLICATE)  # retention deleted its audio: never again
        where = (chunks.device == ch.device) & (chunks.clip_id == ch.clip_id)
        if announced is not None and _identity(row) != announced:
            # the row came from an earlier chunk header that the contact contradicts
            self._reset_clip(row, announced, ch.total, now)
            row = self._clip_row(ch.device, ch.clip_id)
        elif (
            row["total"] != ch.total
            and _identity(row) == claim
            and not bool(row["complete"])
            and not chunks.select(chunks.seq).where(where).exists()
        ):  # the chunk count is the device's, and no chunk was kept under the old one yet
            clips.update({clips.total: ch.total}).where(
                (clips.device == ch.device) & (clips.clip_id == ch.clip_id)
            ).execute()
            row = self._clip_row(ch.device, ch.clip_id)
        known = (row["total"], row["clip_bytes"], row["clip_sha256"], row["codec"])
        if known != (ch.total, ch.clip_bytes, ch.clip_sha256, ch.codec):
            detail = f"chunk {ch.seq} says {ch.total}/{ch.clip_bytes}/{ch.codec}, clip {known}"
            self._dead_letter(topic, payload, "clip_mismatch", detail, now)
            return Result(Outcome.DEAD_LETTER)
        if bool(row["complete"]):
            return Result(Outcome.DUPLICATE)
        problem = ch.corruption()
        if problem is not None:
            self._dead_letter(topic, payload, "chunk_corrupt", problem, now)
            return Result(Outcome.DEAD_LETTER)
        if chunks.select(chunks.seq).where(where & (chunks.seq == ch.seq)).exists():
            return Result(Outcome.DUPLICATE)
        self.store.put_chunk(ch.site, ch.device, ch.clip_id, ch.seq, ch.data)
        fresh = rowcount(
            self.db,
            chunks.insert(
                device=ch.device,
                clip_id=ch.clip_id,
                seq=ch.seq,
                byte_offset=ch.offset,
                size=ch.size,
                sha256=ch.chunk_sha256,
                received_ns=now,
            ).on_conflict_ignore(),
        )
        if not fresh:
            return Result(Outcome.DUPLICATE)
        clips.update({clips.quiet_since_ns: now}).where(
            (clips.device == ch.device) & (clips.clip_id == ch.clip_id)
        ).execute()
        have = chunks.select(fn.COUNT(chunks.seq)).where(where).scalar()
        ready = ClipKey(ch.site, ch.device, ch.clip_id) if have == ch.total else None
        return Result(Outcome.STORED, ready)

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
        clips = self.t.clips
        row = (
            clips.select()
            .where((clips.device == device) & (clips.clip_id == contact.id))
            .dicts()
            .first()
        )
        if row is None or row.get("audio_deleted_at") is not None:
            return
        if _identity(row) != announced:
            self._reset_clip(row, announced, row["total"], now)

    def _reset_clip(
        self, row: dict[str, Any], announced: tuple[int, str, str], total: int, now: int
    ) -> None:
        """Give a clip the size, sha256 and codec its contact announced; what it held under the
        old ones (chunks, or an assembled file) is dropped and will be asked for again."""
        clips, chunks = self.t.clips, self.t.chunks
        device, clip_id, site = row["device"], row["clip_id"], row["site"]
        dropped = rowcount(
            self.db,
            chunks.delete().where((chunks.device == device) & (chunks.clip_id == clip_id)),
        )
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
            }
        ).where((clips.device == device) & (clips.clip_id == clip_id)).execute()
        detail = (
            f"clip {clip_id}: chunk headers claimed {_shown(_identity(row))}, its contact "
            f"announced {_shown(announced)}; {dropped} chunk(s)"
            f"{' and the assembled file' if row['path'] else ''} dropped, asked for again"
        )
        self._dead_letter(wire.clip_topic(site, device), b"", "clip_mismatch", detail, now)
        self._after_commit.append(lambda: self.store.drop_chunks(site, device, clip_id))
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
        """Assemble, verify and mark complete a clip whose chunks are all there; True if the
        clip is complete afterwards."""
        row = self._clip_row(key.device, key.clip_id)
        if bool(row["complete"]):
            return self._clip_complete(key)
        chunks = self.t.chunks
        parts = list(
            chunks.select(chunks.seq, chunks.byte_offset, chunks.size)
            .where((chunks.device == key.device) & (chunks.clip_id == key.clip_id))
            .order_by(chunks.seq)
            .tuples()
        )
        if [seq for seq, _, _ in parts] != list(range(row["total"])):
            return False
        offsets = [offset for _, offset, _ in parts]
        expected = [sum(size for _, _, size in parts[:i]) for i in range(len(parts))]
        try:
            if offsets != expected:
                raise ClipCorruptError(f"clip {key.clip_id}: chunk offsets {offsets} != {expected}")
            rel = self.store.assemble(
                key.site,
                key.device,
                key.clip_id,
                codec=row["codec"],
                seqs=[seq for seq, _, _ in parts],
                sha256=row["clip_sha256"],
                size=row["clip_bytes"],
            )
        except (ClipCorruptError, FileNotFoundError):
            if bool(self._clip_row(key.device, key.clip_id)["complete"]):
                # another worker finished it (and removed the chunk files)
                return self._clip_complete(key)
            self._forget_chunks(key)
            self.counters.bump("clip_corrupt")
            return False
        crashpoint("sink.assemble")  # fault tests only: file in place, not yet marked complete
        clips = self.t.clips
        with transaction(self.db):
            clips.update(
                {clips.complete: True, clips.path: rel, clips.completed_ns: self.clock()}
            ).where(
                (clips.device == key.device)
                & (clips.clip_id == key.clip_id)
                & (clips.complete == False)  # noqa: E712 - SQL, not Python
            ).execute()
        self.store.drop_chunks(key.site, key.device, key.clip_id)
        self.counters.bump("clip_complete")
        return self._clip_complete(key)

    def _forget_chunks(self, key: ClipKey) -> None:
        chunks = self.t.chunks
        with transaction(self.db):
            chunks.delete().where(
                (chunks.device == key.device) & (chunks.clip_id == key.clip_id)
            ).execute()
        self.store.drop_chunks(key.site, key.device, key.clip_id)

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
        clips, chunks = self.t.clips, self.t.chunks
        ready: list[ClipKey] = []
        expired: list[ClipKey] = []
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
            self._lock_devices(row["device"] for row in rows)  # as a batch does, before writing
            for row in rows:
                key = ClipKey(row["site"], row["device"], row["clip_id"])
                where = (clips.device == key.device) & (clips.clip_id == key.clip_id)
                have = (
                    chunks.select(fn.COUNT(chunks.seq))
                    .where((chunks.device == key.device) & (chunks.clip_id == key.clip_id))
                    .scalar()
                )
                if have >= row["total"]:
                    ready.append(key)
                elif expire_ns is not None and now - row["first_seen_ns"] >= expire_ns:
                    expired.append(key)
                    self._expire(row, have, now)
                elif (
                    now - row["quiet_since_ns"] >= resend_after_ns
                    and row["resend_requests"] < max_requests
                ):
                    requests.append(ResendRequest(key, self._missing(key, row["total"])))
                    clips.update(
                        {
                            clips.quiet_since_ns: now,
                            clips.resend_requests: row["resend_requests"] + 1,
                        }
                    ).where(where).execute()
        for key in expired:
            self.store.drop_chunks(key.site, key.device, key.clip_id)
        for key in ready:
            self.assemble(key)
        self.counters.bump("resend_request", len(requests))
        self.counters.bump("clip_expired", len(expired))
        cursor = (rows[-1]["device"], rows[-1]["clip_id"]) if len(rows) == limit else None
        return requests, cursor

    def _missing(self, key: ClipKey, total: int) -> tuple[tuple[int, int], ...]:
        """The first missing ranges that fit a resend request, read off the present seqs in
        order (a cursor, never a list of every missing seq)."""
        chunks = self.t.chunks
        cursor = self.db.execute(  # type: ignore[no-untyped-call]
            chunks.select(chunks.seq)
            .where((chunks.device == key.device) & (chunks.clip_id == key.clip_id))
            .order_by(chunks.seq)
        )
        try:
            return tuple(wire.fit_ranges(_gaps((int(r[0]) for r in cursor), total)))
        finally:
            cursor.close()

    def _expire(self, row: dict[str, Any], have: int, now: int) -> None:
        """Forget an incomplete clip that is too old (inside the check's transaction)."""
        clips, chunks = self.t.clips, self.t.chunks
        device, clip_id = row["device"], row["clip_id"]
        chunks.delete().where((chunks.device == device) & (chunks.clip_id == clip_id)).execute()
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
