"""Clip files: partial clips written chunk by chunk, and whole clips verified from them.

Rules:
- Layout under the data directory: ``incoming/<site>/<device>/<clip_id>.part`` for a clip being
  received, ``clips/<site>/<device>/<clip_id>.<ext>`` for verified clips,
  ``dead_letters/<sha256>.bin`` for the raw payload of a message whose ingest failed (named by
  its content: the same payload is kept once).
- One partial file per clip, no file per chunk: it is made the clip's announced size when it is
  first opened (:meth:`ClipStore.open_partial`), sparse, and every chunk is written at its
  offset (:func:`write_at`, a positional write). Sparse, not preallocated: a clip costs the disk
  only the chunks that came, so a sender claiming clips of the largest size with one chunk each
  cannot reserve the sink's disk (a full disk fails that chunk's write with ENOSPC: the chunk is
  not recorded, the broker delivers it again). Writing a chunk again writes the same bytes at
  the same place, so any worker sharing the data directory may write any chunk of any clip,
  any number of times. The bytes are made durable (:func:`sync`, and the directory when the
  file was created) before the transaction that records the chunk commits: the database row
  (the chunk's bit in ``clips.received``) is the record that a chunk is here.
- Chunk bytes live in files, not in the database: the database stays small and the same on
  SQLite and PostgreSQL. A clip whose chunks are all recorded is verified from its partial file
  (:meth:`ClipStore.verify`: size and sha256 of the whole), then moved into place
  (:meth:`ClipStore.finish`, the one step a different clip store replaces); one that does not
  verify raises :class:`ClipCorruptError`.
- No id becomes a path unchecked: site/device must be valid names, clip ids 32 hex digits,
  extensions known; the resulting path must still lie under the root.
- Every other file appears atomically: written to a temporary name in the same directory,
  fsynced, then renamed. A temporary name carries its writer's tag
  (``.<name>.@<tag>@<random>.tmp``, the tag derived from the worker's client id), so that a
  worker starting over a shared data directory removes only what is provably abandoned
  (:meth:`ClipStore.cleanup_temporaries`): its own previous run's temporaries, and any worker's
  older than a lease, never the files other live workers are writing. Partial files are no
  temporaries: several workers write into them; they go when their clip is finished, reset,
  expired or deleted by retention.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cloud_sink.wire import EXTENSIONS, valid_id, valid_name
from contract.crashpoint import crashpoint
from contract.wire import valid_sha256

DEAD_LETTERS = "dead_letters"
READ_BLOCK: Final = 1024 * 1024


class ClipCorruptError(Exception):
    """The assembled clip's size or sha256 is not the one announced."""


class UnsafeNameError(ValueError):
    """An id that must not become part of a path."""


def owner_tag(owner: str) -> str:
    """The tag of a writer's temporary files: a client id may hold any character."""
    return hashlib.sha256(owner.encode("utf-8", "backslashreplace")).hexdigest()[:12]


class ClipStore:
    def __init__(self, root: Path, owner: str = "") -> None:
        """``owner``: the worker writing here (its client id): tags its temporary files."""
        self.root = root.resolve()
        self.tag = owner_tag(owner)

    def temporary(self, target: Path) -> tuple[int, str]:
        """A new temporary file (fd, path) next to ``target``, tagged with this writer."""
        return tempfile.mkstemp(
            prefix=f".{target.name}.@{self.tag}@", suffix=".tmp", dir=target.parent
        )

    def _inside(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts).resolve()
        if not path.is_relative_to(self.root):
            raise UnsafeNameError(f"path escapes the data directory: {parts!r}")
        return path

    def _clip_dir(self, top: str, site: str, device: str, clip_id: str) -> Path:
        if not (valid_name(site) and valid_name(device) and valid_id(clip_id)):
            raise UnsafeNameError(f"unsafe clip name {site!r}/{device!r}/{clip_id!r}")
        return self._inside(top, site, device, clip_id)

    def partial_path(self, site: str, device: str, clip_id: str, sha256: str) -> Path:
        """Where a clip is written while its chunks arrive. The name carries the clip's
        announced sha256: a clip whose identity changes (its contact corrects the chunk
        headers) starts a file of its own, and the old one goes after the commit."""
        if not valid_sha256(sha256):
            raise UnsafeNameError(f"bad clip sha256 {sha256!r}")
        here = self._clip_dir("incoming", site, device, clip_id)
        return here.with_name(f"{clip_id}-{sha256[:16]}.part")

    def clip_relpath(self, site: str, device: str, clip_id: str, codec: str) -> str:
        """The clip's path relative to the root (what the database stores)."""
        if codec not in EXTENSIONS:
            raise UnsafeNameError(f"unknown codec {codec!r}")
        path = self._clip_dir("clips", site, device, clip_id)
        return path.with_name(f"{clip_id}.{EXTENSIONS[codec]}").relative_to(self.root).as_posix()

    def open_partial(
        self, site: str, device: str, clip_id: str, sha256: str, size: int
    ) -> tuple[int, bool]:
        """The clip's partial file open for positional writes (fd, created now), ``size`` bytes
        long and sparse: only the chunks written take space."""
        path = self.partial_path(site, device, clip_id, sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            fd, created = os.open(path, flags | os.O_EXCL, 0o644), True
        except FileExistsError:
            fd, created = os.open(path, flags, 0o644), False
        try:
            if os.fstat(fd).st_size != size:  # new, or left from an earlier identity of the clip
                os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return fd, created

    def sync_created(self, site: str, device: str) -> None:
        """Make newly created partial files' names durable (their directory's entries)."""
        _fsync_dir(self._inside("incoming", site, device))

    def verify(self, site: str, device: str, clip_id: str, *, size: int, sha256: str) -> Path:
        """The partial file, checked against the clip's announced size and sha256. Raises
        :class:`ClipCorruptError` when it does not match, FileNotFoundError when it is gone."""
        path = self.partial_path(site, device, clip_id, sha256)
        digest = hashlib.sha256()
        with path.open("rb") as f:
            have = os.fstat(f.fileno()).st_size
            while block := f.read(READ_BLOCK):
                digest.update(block)
        if have != size or digest.hexdigest() != sha256:
            raise ClipCorruptError(
                f"clip {clip_id}: partial file of {have} bytes sha256 {digest.hexdigest()}, "
                f"expected {size} bytes sha256 {sha256}"
            )
        crashpoint("sink.assemble.write")  # fault tests only: verified, not yet in place
        return path

    def finish(self, verified: Path, rel: str) -> str:
        """Move a verified clip file into place at ``rel`` (relative to the root); return
        ``rel``. The one step another clip store (object storage) replaces."""
        target = self._inside(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(verified, target)
        _fsync_dir(target.parent)
        return rel

    def verified_in_place(self, rel: str, *, size: int, sha256: str) -> bool:
        """Is the clip already in place at ``rel`` and right (an earlier :meth:`finish` whose
        completion was not recorded: a crash, or another worker)?"""
        digest = hashlib.sha256()
        try:
            with self._inside(rel).open("rb") as f:
                have = os.fstat(f.fileno()).st_size
                while block := f.read(READ_BLOCK):
                    digest.update(block)
        except FileNotFoundError:
            return False
        return have == size and digest.hexdigest() == sha256

    def cleanup_temporaries(self, lease_s: float) -> int:
        """Remove the temporary files an interrupted write or assembly left (at start): this
        writer's own (its previous run was killed: no run of it is writing them now), and
        any writer's not touched for ``lease_s`` seconds (abandoned). A temporary file another
        live worker is writing into the shared directory is left alone."""
        removed = 0
        own = f"@{self.tag}@"
        stale_before = time.time() - lease_s
        for top in ("incoming", "clips", DEAD_LETTERS):
            base = self.root / top
            if not base.is_dir():
                continue
            for entry in base.rglob(".*.tmp"):
                try:
                    info = entry.lstat()
                except FileNotFoundError:  # its writer finished meanwhile
                    continue
                if not entry.is_file() or (own not in entry.name and info.st_mtime > stale_before):
                    continue
                entry.unlink(missing_ok=True)
                removed += 1
        return removed

    def keep_dead_payload(self, payload: bytes) -> str:
        """Keep a dead-lettered message's raw payload; its path relative to the root."""
        name = f"{hashlib.sha256(payload).hexdigest()}.bin"
        target = self._inside(DEAD_LETTERS, name)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            self._write_atomically(target, [payload])
        return f"{DEAD_LETTERS}/{name}"

    def remove(self, relpath: str) -> None:
        """Delete a file the database names (relative to the root), if it is there."""
        self._inside(relpath).unlink(missing_ok=True)

    def drop_partial(self, site: str, device: str, clip_id: str, sha256: str) -> None:
        """Delete a clip's partial file, if it is there."""
        self.partial_path(site, device, clip_id, sha256).unlink(missing_ok=True)

    def _write_atomically(self, target: Path, parts: Sequence[bytes]) -> None:
        fd, tmp = self.temporary(target)
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    out.write(part)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)


def write_at(fd: int, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of the open file ``fd`` (no seek: workers share nothing)."""
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def sync(fd: int) -> None:
    """Make what was written to ``fd`` durable (its size was set when it was opened; the
    blocks a write into a hole allocated are what ``fdatasync`` makes durable with it)."""
    os.fdatasync(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
