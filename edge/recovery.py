"""Surviving a corrupt store: detect it at start, move it aside, start fresh, re-index the clips.

Rules:
- Every contact also leaves a small JSON *sidecar* next to its clips, ``clips/<id>.json``: the
  whole record (monotonic and wall times, events, tags, clip metadata), written atomically
  (temporary file, fsync, rename) BEFORE the contact's store transaction. A sidecar whose
  contact never committed (power lost in between) is harmless; a committed contact always has
  its sidecar. It holds no audio.
- At start :func:`open_store` opens the store and runs ``PRAGMA quick_check``. A file SQLite
  cannot open as a database, or whose check is not ``ok``, is corrupt: the database and its
  ``-wal``/``-shm`` are renamed ``<name>.corrupt-<UTC time>[-wal|-shm]`` (kept for diagnosis,
  never deleted by us), a fresh store is created and the caller gets the reason, raises the
  ``store_corrupt`` alarm and calls :func:`reindex`. A store written by a NEWER release
  (``SchemaError``) or on a filesystem without WAL is not corruption: those errors propagate.
- :func:`reindex` saves every sidecar's contact again, with its outbox rows: the clip when its
  file is still there with the recorded size and sha256, else the contact without a clip. The
  sink deduplicates contacts and clips it already has. A sidecar that cannot be used
  (unreadable, not a record, refused by the store) is skipped; a value no store can hold
  (NaN, an unpaired surrogate, as older releases wrote them) is dropped or spelled out and the
  contact saved; both are counted in the ``store_corrupt`` alarm and raised as ``bad_record``.
  Lost for good: events outside contacts and which rows had been delivered (everything
  re-indexed is sent again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from peewee import DatabaseError

from edge.audio.clipper import CLIPS_DIR
from edge.audio.encode import PARTIAL_SUFFIX
from edge.health import Health
from edge.publish import wire
from edge.records import ClipInfo, ContactRecord, EventRecord
from edge.store import IntegrityError, Store, StoreError, clean_contact

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"


def sidecar_path(data_dir: Path, contact_id: str) -> Path:
    return data_dir / CLIPS_DIR / f"{contact_id}{SIDECAR_SUFFIX}"


def record_to_json(record: ContactRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


def record_from_json(data: dict[str, Any]) -> ContactRecord:
    """A record from its sidecar; keys this release does not know are ignored."""

    def known(cls: type[Any], values: dict[str, Any]) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in values.items() if k in names}

    clip = data.get("clip")
    fields = known(ContactRecord, data)
    fields["tags"] = tuple(data.get("tags", ()))
    fields["events"] = tuple(EventRecord(**known(EventRecord, e)) for e in data.get("events", ()))
    if clip is not None:
        clip_fields = known(ClipInfo, clip)
        clip_fields["gaps"] = tuple((int(a), int(b)) for a, b in clip.get("gaps", ()))
        fields["clip"] = ClipInfo(**clip_fields)
    return ContactRecord(**fields)


def write_sidecar(data_dir: Path, record: ContactRecord) -> None:
    """Write the record's sidecar atomically as strict JSON (raises OSError, e.g. on a full
    disk, and ValueError for NaN or an infinity: clean the record first)."""
    target = sidecar_path(data_dir, record.id)
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(record_to_json(record), separators=(",", ":"), allow_nan=False).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_DB_ERRORS = (DatabaseError, sqlite3.DatabaseError)  # peewee wraps some, raw cursors raise others


def _corruption(exc: BaseException) -> bool:
    if isinstance(exc, _DB_ERRORS):
        return True
    return isinstance(exc, StoreError) and isinstance(exc.__cause__, _DB_ERRORS)


def open_store(path: Path, *, clock: Callable[[], int] = time.time_ns) -> tuple[Store, str | None]:
    """Open the store; a corrupt one is moved aside and replaced by a fresh one.

    Returns (store, None), or (fresh store, what was wrong and where the old file went)."""
    try:
        store = Store.open(path, clock=clock)
    except (StoreError, *_DB_ERRORS) as exc:
        if not _corruption(exc):
            raise
        reason = str(exc)
    else:
        try:
            check = store.quick_check()
        except _DB_ERRORS as exc:
            check = str(exc)
        if check == "ok":
            return store, None
        store.close()
        reason = f"quick_check: {check.splitlines()[0] if check else 'failed'}"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, f"{aside}{suffix}")
    log.error(
        "store %s is corrupt (%s): moved aside to %s, starting a fresh one", path, reason, aside
    )
    return Store.open(path, clock=clock), f"{reason}; moved aside to {aside.name}"


@dataclasses.dataclass(slots=True)
class Reindexed:
    """What :func:`reindex` did."""

    contacts: int = 0  # saved again
    with_clip: int = 0  # of them with their clip
    cleaned: list[str] = dataclasses.field(default_factory=list)  # saved without a bad value
    skipped: list[str] = dataclasses.field(default_factory=list)  # "<file> (why)": not saved

    def summary(self, limit: int = 5) -> str:
        text = (
            f"re-indexed {self.contacts} contact(s) from their sidecars, {self.with_clip} with clip"
        )
        if self.cleaned:
            text += (
                f"; {len(self.cleaned)} of them without values no store can hold "
                f"({', '.join(self.cleaned[:limit])}{', …' if len(self.cleaned) > limit else ''})"
            )
        if self.skipped:
            more = f"; … and {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
            text += (
                f"; {len(self.skipped)} sidecar(s) skipped: "
                + "; ".join(self.skipped[:limit])
                + more
            )
        return text


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:119] + "…"


def reindex(store: Store, data_dir: Path, device: str, site: str) -> Reindexed:
    """Save the contact of every sidecar again (see the module notes). A sidecar that cannot
    be used (unreadable, not a record, a record the store refuses) is skipped and reported;
    a value no store can hold (NaN, an unpaired surrogate: older releases wrote them) is
    dropped or spelled out (:func:`edge.store.clean_contact`) and the contact saved."""
    done = Reindexed()
    clips_dir = data_dir / CLIPS_DIR
    if not clips_dir.is_dir():
        return done
    sidecars = sorted(
        (
            p
            for p in clips_dir.iterdir()
            if p.suffix == SIDECAR_SUFFIX and not p.name.startswith(".")
        ),
        key=lambda p: p.stat().st_mtime_ns,
    )
    for sidecar in sidecars:
        try:
            record = record_from_json(json.loads(sidecar.read_bytes()))
            record, changes = clean_contact(record)
            if record.clip is not None and not _clip_intact(data_dir, record.clip):
                record = dataclasses.replace(record, clip=None)
            outbox = [wire.contact_message(record, device, site)]
            if record.clip is not None:
                outbox.append(wire.clip_message(record.clip, device, site))
            saved = store.save_contact(record, outbox)
        except _UNUSABLE as exc:
            log.warning("sidecar %s skipped: %s", sidecar, exc)
            done.skipped.append(f"{sidecar.name} ({_short(exc)})")
            continue
        if changes:
            log.warning("contact %s re-indexed without: %s", record.id, "; ".join(changes))
        if saved:
            done.contacts += 1
            done.with_clip += record.clip is not None
            if changes:
                done.cleaned.append(record.id)
    return done


#: a sidecar that cannot be used: unreadable, not JSON, not a record, refused by the store
#: (a value that does not fit a column, a broken constraint: edge/store/storable.py)
_UNUSABLE = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    OverflowError,
    IntegrityError,
)


def _clip_intact(data_dir: Path, clip: ClipInfo) -> bool:
    path = (data_dir / clip.path).resolve()
    if not path.is_relative_to(data_dir.resolve()):
        return False
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
            size = f.tell()
    except OSError:
        return False
    return size == clip.bytes and digest.hexdigest() == clip.sha256


def recovered(
    store: Store, data_dir: Path, *, device: str, site: str, health: Health, reason: str
) -> None:
    """After :func:`open_store` replaced a corrupt store: raise the alarm and re-index."""
    done = reindex(store, data_dir, device, site)
    health.alarm("store_corrupt", f"{reason}; {done.summary()}")
    bad = len(done.cleaned) + len(done.skipped)
    if bad:
        health.alarm("bad_record", f"store recovery: {done.summary()}", bad)
