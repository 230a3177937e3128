"""Clip files: accepted chunks, and whole clips assembled from them.

Rules:
- Layout under the data directory: ``incoming/<site>/<device>/<clip_id>/<seq>.chunk`` for
  accepted chunks, ``clips/<site>/<device>/<clip_id>.<ext>`` for verified clips,
  ``dead_letters/<sha256>.bin`` for the raw payload of a message whose ingest failed (named by
  its content: the same payload is kept once).
- Chunk bytes live in files, not in the database: the database stays small and the same on
  SQLite and PostgreSQL (no BLOB/BYTEA), and assembly is a plain concatenation. The database row
  is the record that a chunk was accepted; a file without a row is rewritten on redelivery.
- No id becomes a path unchecked: site/device must be valid names, clip ids 32 hex digits, seqs
  non-negative ints, extensions known; the resulting path must still lie under the root.
- Every file appears atomically: written to a temporary name in the same directory, fsynced,
  then renamed. A temporary name carries its writer's tag (``.<name>.@<tag>@<random>.tmp``,
  the tag derived from the worker's client id), so that a worker starting over a shared data
  directory removes only what is provably abandoned (:meth:`ClipStore.cleanup_temporaries`):
  its own previous run's temporaries, and any worker's older than a lease, never the files
  other live workers are writing. A clip is assembled into a temporary file, its size and
  sha256 verified, and only then renamed into place; a clip that fails is deleted and
  :class:`ClipCorruptError` raised.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cloud_sink.wire import EXTENSIONS, valid_id, valid_name
from contract.crashpoint import crashpoint

DEAD_LETTERS = "dead_letters"


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

    def chunk_path(self, site: str, device: str, clip_id: str, seq: int) -> Path:
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise UnsafeNameError(f"bad chunk seq {seq!r}")
        return self._clip_dir("incoming", site, device, clip_id) / f"{seq}.chunk"

    def clip_relpath(self, site: str, device: str, clip_id: str, codec: str) -> str:
        """The clip's path relative to the root (what the database stores)."""
        if codec not in EXTENSIONS:
            raise UnsafeNameError(f"unknown codec {codec!r}")
        path = self._clip_dir("clips", site, device, clip_id)
        return path.with_name(f"{clip_id}.{EXTENSIONS[codec]}").relative_to(self.root).as_posix()

    def put_chunk(self, site: str, device: str, clip_id: str, seq: int, data: bytes) -> None:
        target = self.chunk_path(site, device, clip_id, seq)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._write_atomically(target, [data])

    def assemble(
        self,
        site: str,
        device: str,
        clip_id: str,
        *,
        codec: str,
        seqs: Sequence[int],
        sha256: str,
        size: int,
    ) -> str:
        """Concatenate the chunks ``seqs`` (in that order), verify, move into place; return the
        relative path. Raises :class:`ClipCorruptError` (nothing left behind) when it does not
        verify, FileNotFoundError when a chunk file is missing."""
        rel = self.clip_relpath(site, device, clip_id, codec)
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        written = 0
        fd, tmp = self.temporary(target)
        try:
            with os.fdopen(fd, "wb") as out:
                for seq in seqs:
                    data = self.chunk_path(site, device, clip_id, seq).read_bytes()
                    digest.update(data)
                    written += len(data)
                    out.write(data)
                    crashpoint("sink.assemble.write")  # fault tests only: a no-op unless armed
                out.flush()
                os.fsync(out.fileno())
            if written != size or digest.hexdigest() != sha256:
                raise ClipCorruptError(
                    f"clip {clip_id}: assembled {written} bytes sha256 {digest.hexdigest()}, "
                    f"expected {size} bytes sha256 {sha256}"
                )
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return rel

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

    def drop_chunks(self, site: str, device: str, clip_id: str) -> None:
        shutil.rmtree(self._clip_dir("incoming", site, device, clip_id), ignore_errors=True)

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
