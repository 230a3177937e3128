"""Audio retention in the sink: clip audio older than ``retention_audio_days`` is deleted.

Rules:
- Age: a clip is as old as its contact's end (``contacts.end_iso``); a clip whose contact never
  arrived counts from when its first chunk did (``clips.first_seen_ns``).
- A verified clip: its file (or its object, when ``clips.location`` names one: the ``objects``
  given, cloud_sink/objects.py) is deleted, then the row is marked ``audio_deleted_at``
  (migration 4). A clip in object storage without ``objects`` is an error for that clip (it
  stays, unmarked, and is tried again). An incomplete clip: its partial file and chunk bits are
  dropped and the row is marked, so ingest ignores its chunks from then on and no resend is
  asked for. Contacts, events, tags and the clip rows (sizes, sha256) stay: reports keep
  working without the audio, and ``sink contacts`` says when the audio went
  (:func:`deleted_audio`: ``audio_deleted_at``).
- :func:`due` is the pure decision (injected "now"); :func:`enforce` carries it out and is
  idempotent (a marked clip is never looked at again; a file already gone is fine).
- No path is built from an unchecked id: files are found through :class:`ClipStore`, which
  validates names and keeps every path under the data directory.
- The worker runs it every ``retention_interval_s`` (``SinkConfig``); ``contactpoint sink
  retention --data DIR`` runs it on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from peewee import Database

from cloud_sink.db import transaction
from cloud_sink.models import tables
from cloud_sink.objects import ObjectStoreError, S3Clips
from cloud_sink.storage import ClipStore, UnsafeNameError
from cloud_sink.wire import EXTENSIONS

NS = 1_000_000_000
NS_PER_DAY = 86_400 * NS


@dataclass(frozen=True, slots=True)
class ClipAge:
    site: str
    device: str
    clip_id: str
    complete: bool
    path: str | None  # relative to the data directory, for a verified clip
    location: str | None  # s3://BUCKET/KEY once it is in object storage
    recorded_ns: int  # the contact's end, or the first chunk's arrival
    sha256: str = ""  # the clip's announced sha256 (names its partial file while incomplete)


@dataclass(slots=True)
class RetentionResult:
    deleted: int = 0  # verified clip files removed
    dropped_incomplete: int = 0  # incomplete clips whose chunks were dropped
    already_gone: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def marked(self) -> int:
        return self.deleted + self.dropped_incomplete + self.already_gone


def due(clips: list[ClipAge], now_ns: int, audio_days: float | None) -> list[ClipAge]:
    if audio_days is None:
        return []
    cutoff = now_ns - round(audio_days * NS_PER_DAY)
    return [c for c in clips if c.recorded_ns <= cutoff]


def _ns(iso: str) -> int | None:
    try:
        stamp = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return int(stamp.timestamp()) * NS + stamp.microsecond * 1000


def candidates(db: Database) -> list[ClipAge]:
    """Every clip whose audio retention has not deleted yet."""
    t = tables(db)
    clips, contacts = t.clips, t.contacts
    ends = {
        (device, contact_id): end_iso
        for device, contact_id, end_iso in contacts.select(
            contacts.device, contacts.id, contacts.end_iso
        ).tuples()
    }
    out: list[ClipAge] = []
    for row in clips.select().where(clips.audio_deleted_at.is_null()).dicts():
        end = ends.get((row["device"], row["clip_id"]))
        recorded = _ns(end) if end is not None else None
        out.append(
            ClipAge(
                site=row["site"],
                device=row["device"],
                clip_id=row["clip_id"],
                complete=bool(row["complete"]),
                path=row["path"],
                location=row["location"],
                sha256=row["clip_sha256"],
                recorded_ns=recorded if recorded is not None else int(row["first_seen_ns"]),
            )
        )
    return out


def deleted_audio(db: Database) -> dict[tuple[str, str], int]:
    """(device, clip id) -> when retention deleted that clip's audio (wall ns), for listings."""
    clips = tables(db).clips
    return {
        (device, clip_id): int(at)
        for device, clip_id, at in clips.select(clips.device, clips.clip_id, clips.audio_deleted_at)
        .where(clips.audio_deleted_at.is_null(False))
        .tuples()
    }


def enforce(
    db: Database,
    data_dir: Path,
    audio_days: float | None,
    now_ns: int,
    objects: S3Clips | None = None,
) -> RetentionResult:
    """Delete the audio :func:`due` picks and mark the clips (``objects``: where the clips
    kept in object storage are deleted)."""
    result = RetentionResult()
    if audio_days is None:
        return result
    store = ClipStore(data_dir)
    t = tables(db)
    for clip in due(candidates(db), now_ns, audio_days):
        try:
            if clip.complete and clip.location is not None:
                if objects is None:
                    raise ObjectStoreError(
                        f"is kept in object storage ({clip.location}): give the [s3] table "
                        "of the sink config to delete it"
                    )
                objects.delete_location(clip.location)
                result.deleted += 1
            elif clip.complete and clip.path is not None:
                expected = store.clip_relpath(
                    clip.site, clip.device, clip.clip_id, _codec_of(clip.path)
                )
                if expected != clip.path:
                    raise UnsafeNameError(f"stored path {clip.path!r} is not {expected!r}")
                try:
                    (store.root / expected).unlink()
                    result.deleted += 1
                except FileNotFoundError:
                    result.already_gone += 1
            else:
                store.drop_partial(clip.site, clip.device, clip.clip_id, clip.sha256)
                result.dropped_incomplete += 1
        except (UnsafeNameError, OSError, ObjectStoreError) as exc:
            result.errors.append(f"clip {clip.device}/{clip.clip_id}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - the storage failed (boto3's errors): next run
            result.errors.append(f"clip {clip.device}/{clip.clip_id}: object storage: {exc}")
            continue
        where = (t.clips.device == clip.device) & (t.clips.clip_id == clip.clip_id)
        with transaction(db):
            t.clips.update({t.clips.audio_deleted_at: now_ns}).where(
                where & t.clips.audio_deleted_at.is_null()
            ).execute()
            if not clip.complete:
                t.clips.update({t.clips.received: None, t.clips.received_count: 0}).where(
                    where
                ).execute()
            uploaded = t.clips.select(t.clips.location).where(where).scalar()
        if not clip.complete:  # a chunk written while we were at it
            store.drop_partial(clip.site, clip.device, clip.clip_id, clip.sha256)
        if uploaded is not None and uploaded != clip.location:  # uploaded while we were at it
            _delete_late_object(objects, uploaded, clip, result)
    return result


def _delete_late_object(
    objects: S3Clips | None, location: str, clip: ClipAge, result: RetentionResult
) -> None:
    try:
        if objects is None:
            raise ObjectStoreError(f"uploaded meanwhile to {location}: give the [s3] table")
        objects.delete_location(location)
    except Exception as exc:  # noqa: BLE001 - reported; the object is named in the error
        result.errors.append(f"clip {clip.device}/{clip.clip_id}: {exc}")


def _codec_of(path: str) -> str:
    """The codec whose extension ``path`` has (wire.EXTENSIONS maps codec -> extension)."""
    suffix = path.rsplit(".", 1)[-1]
    for codec, ext in EXTENSIONS.items():
        if ext == suffix:
            return codec
    raise UnsafeNameError(f"unknown clip extension in {path!r}")
