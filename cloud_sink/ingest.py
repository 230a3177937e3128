"""Idempotent ingest: one parsed message → rows, in one transaction.

Rules:
- A message that does not parse becomes a ``dead_letters`` row (topic, reason, detail, the first
  256 bytes of the payload with non-printable bytes escaped, size, received time) and a counter;
  nothing else is written.
- JSON messages are deduplicated on (device, msg_id) in ``messages``; a contact additionally on
  (device, contact id) and an event on (device, event id), so the same contact sent again under
  a new msg_id is still stored once. A contact is stored with its tags and events.
- Status messages (retained, and the device's last will) update the device row in the order
  they arrive; every accepted message updates the device's site and last-seen time.
- Clip chunks are deduplicated on (device, clip_id, seq). The first chunk header seen creates
  the clip row; a later header that disagrees about total, size, sha256 or codec is a dead
  letter. A chunk whose size or sha256 is wrong is discarded (dead letter ``chunk_corrupt``),
  but its clip is still known, so the missing chunk will be asked for again.
- Chunk bytes are written to their file before the transaction commits; the caller acks the
  broker only after :meth:`Ingest.handle` returns. An integrity or data error (a constraint the
  parser did not foresee) becomes a dead letter, so it cannot be redelivered forever; any other
  error propagates: nothing is committed and the message must not be acked.
- A clip whose chunks are all there is assembled after the commit (:meth:`Ingest.assemble`):
  verified, moved into place, then marked complete. A clip that does not verify loses all its
  chunks and is asked for again in full.
- :meth:`Ingest.check_clips` (called periodically) assembles clips that have all their chunks
  (two workers may each have committed one of the last chunks) and, for a clip that got no chunk
  for ``resend_after_ns``, returns a resend request for its missing seqs, at most
  ``max_requests`` times per clip.
- Delivery receipts (cloud_sink/receipts.py): after its commit, :meth:`Ingest.handle` names in
  ``Result.receipt`` what the device may now forget: a JSON message stored or already stored
  (by msg_id; not a status, not a dead letter), or the clip of a chunk that arrives after the
  clip is complete. A clip that becomes complete is announced to ``on_clip_complete``.
- Times in the database are wall-clock nanoseconds from the injected ``clock``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from peewee import Database, DataError, IntegrityError, fn

from cloud_sink import wire
from cloud_sink._crashpoint import crashpoint
from cloud_sink.db import rowcount, transaction
from cloud_sink.models import Tables, from_json, tables, to_json
from cloud_sink.receipts import Confirm
from cloud_sink.storage import ClipCorruptError, ClipStore

HEAD_BYTES: Final = 256


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
    seqs: tuple[int, ...]

    @property
    def topic(self) -> str:
        return wire.resend_topic(self.clip.site, self.clip.device)

    @property
    def payload(self) -> bytes:
        return wire.resend_payload(self.clip.clip_id, list(self.seqs))


class Ingest:
    """Writes messages into one database and clip files under one data directory."""

    def __init__(
        self, db: Database, data_dir: Path, *, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self.store = ClipStore(data_dir)
        self.t: Tables = tables(db)
        self.clock = clock
        self.counters = Counters()
        # Called inside the transaction just before commit; a test raises here to play a crash.
        self.before_commit: Callable[[str], None] | None = None
        # Called inside the transaction after a contact or event was stored (site alerts).
        self.on_stored: Callable[[Database, wire.Message, int], object] | None = None
        # Called after a clip was verified and marked complete (its delivery receipt).
        self.on_clip_complete: Callable[[ClipKey], object] | None = None

    # -- messages ---------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> Result:
        """Ingest one message. Raises only when nothing was committed and it must be redelivered."""
        parsed = wire.parse(topic, payload)
        now = self.clock()
        if isinstance(parsed, wire.Ignored):
            self.counters.bump("ignored")
            return Result(Outcome.IGNORED)
        if isinstance(parsed, wire.Rejected):
            with transaction(self.db):
                self._dead_letter(topic, payload, parsed.reason, parsed.detail, now)
            return Result(Outcome.DEAD_LETTER)
        try:
            with transaction(self.db):
                if isinstance(parsed, wire.Chunk):
                    result = self._chunk(topic, payload, parsed, now)
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
        except (IntegrityError, DataError) as exc:  # redelivering it would fail the same way
            with transaction(self.db):
                self._dead_letter(topic, payload, "integrity", str(exc), now)
            return Result(Outcome.DEAD_LETTER)
        self.counters.bump(result.outcome.value)
        return self._with_receipt(parsed, result)

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
            topic=topic[:1024],
            reason=reason,
            detail=detail[:2000],
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
            return self._clock_correction(msg.device, c)
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
        known = (row["total"], row["clip_bytes"], row["clip_sha256"], row["codec"])
        if known != (ch.total, ch.clip_bytes, ch.clip_sha256, ch.codec):
            detail = f"chunk {ch.seq} says {ch.total}/{ch.clip_bytes}/{ch.codec}, clip {known}"
            self._dead_letter(topic, payload, "clip_mismatch", detail, now)
            return Result(Outcome.DEAD_LETTER)
        if bool(row["complete"]) or row.get("audio_deleted_at") is not None:
            return Result(Outcome.DUPLICATE)  # (retention deleted its audio: never again)
        problem = ch.corruption()
        if problem is not None:
            self._dead_letter(topic, payload, "chunk_corrupt", problem, now)
            return Result(Outcome.DEAD_LETTER)
        where = (chunks.device == ch.device) & (chunks.clip_id == ch.clip_id)
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
        """Assemble clips that have all their chunks; return resend requests for clips quiet for
        ``resend_after_ns`` (and record that they were asked)."""
        now = self.clock()
        clips, chunks = self.t.clips, self.t.chunks
        ready: list[ClipKey] = []
        requests: list[ResendRequest] = []
        with transaction(self.db):
            rows = list(
                clips.select().where(
                    (clips.complete == False)  # noqa: E712
                    & clips.audio_deleted_at.is_null()  # retention dropped it: ask for nothing
                )
            )
            for row in rows:
                key = ClipKey(row["site"], row["device"], row["clip_id"])
                present = {
                    seq
                    for (seq,) in chunks.select(chunks.seq)
                    .where((chunks.device == key.device) & (chunks.clip_id == key.clip_id))
                    .tuples()
                }
                missing = tuple(s for s in range(row["total"]) if s not in present)
                if not missing:
                    ready.append(key)
                elif (
                    now - row["quiet_since_ns"] >= resend_after_ns
                    and row["resend_requests"] < max_requests
                ):
                    requests.append(ResendRequest(key, missing))
                    clips.update(
                        {
                            clips.quiet_since_ns: now,
                            clips.resend_requests: row["resend_requests"] + 1,
                        }
                    ).where((clips.device == key.device) & (clips.clip_id == key.clip_id)).execute()
        for key in ready:
            self.assemble(key)
        self.counters.bump("resend_request", len(requests))
        return requests

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
        audio = {
            (device, clip_id): str(self.data_dir / path)
            for device, clip_id, path in t.clips.select(
                t.clips.device, t.clips.clip_id, t.clips.path
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
