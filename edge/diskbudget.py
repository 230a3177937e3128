"""The disk budget: the device's data (clips + store) stays inside ``storage.max_bytes``, and a
full disk (ENOSPC) is handled the same way.

Rules:
- Usage is the size of every file under ``clips/`` plus the store's files (``<db>``, ``-wal``,
  ``-shm``). :meth:`DiskBudget.enforce` runs after every saved clip; over the budget it deletes
  clip files, oldest contact first: delivered clips first (the sink has them); then, only with
  ``storage.delete_undelivered``, the oldest clips not yet delivered. Nothing else is deleted:
  contacts, events and their outbox rows stay (an undelivered contact is still sent, its clip
  row is finished by the publisher as missing), and the small JSON sidecars stay.
- Each deleted clip is counted and raised as an alarm (``clips_deleted_delivered`` /
  ``clips_deleted_undelivered``) in the status message; a budget that cannot be met (nothing
  left that may be deleted) raises ``disk_full`` once per attempt.
- :meth:`DiskBudget.on_disk_full` is what a writer calls when the OS said ENOSPC: it raises
  ``disk_full`` and frees at least one clip's worth (the same order); True if anything was
  freed, so the writer may try once more.
- Never raises for a file it cannot delete or measure (logged): capture goes on.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from edge.config import StorageSection
from edge.health import Health
from edge.store import Store

log = logging.getLogger(__name__)


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC from the OS, or SQLite's "database or disk is full"."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "disk is full" in str(exc) or "disk full" in str(exc)


class DiskBudget:
    def __init__(
        self, cfg: StorageSection, store: Store, data_dir: Path, health: Health, clips_dir: str
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.data_dir = data_dir
        self.clips_dir = data_dir / clips_dir
        self.health = health
        self.deleted_delivered = 0
        self.deleted_undelivered = 0

    def usage(self) -> int:
        """Bytes used by clips and the store now."""
        total = 0
        if self.clips_dir.is_dir():
            with os.scandir(self.clips_dir) as entries:
                for entry in entries:
                    try:
                        if entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(f"{self.store.path}{suffix}").st_size
            except OSError:
                continue
        return total

    def enforce(self) -> int:
        """Delete clips until usage is within ``max_bytes``; return the bytes freed."""
        if self.cfg.max_bytes <= 0:
            return 0
        over = self.usage() - self.cfg.max_bytes
        if over <= 0:
            return 0
        freed = self._free(over)
        if freed < over:
            self.health.alarm(
                "disk_full",
                f"{self.usage()} bytes used, budget {self.cfg.max_bytes}: nothing more may be "
                "deleted (storage.delete_undelivered is "
                f"{'on' if self.cfg.delete_undelivered else 'off'})",
            )
        return freed

    def on_disk_full(self, what: str = "a write", need: int = 1) -> bool:
        """The OS refused ``what`` with ENOSPC: free ``need`` bytes (at least one clip, by the
        rules above); True if anything went."""
        self.health.alarm("disk_full", f"no space left on the device for {what}")
        return self._free(max(1, need)) > 0

    def _free(self, need: int) -> int:
        freed = 0
        try:
            clips = self.store.clip_files()
        except Exception:  # the store itself may be unable to answer on a full disk
            log.exception("cannot list the clips to free space")
            return 0
        rounds = [True, False] if self.cfg.delete_undelivered else [True]
        for delivered_round in rounds:
            for contact_id, rel, delivered in clips:
                if freed >= need:
                    return freed
                if delivered != delivered_round:
                    continue
                path = self.data_dir / rel
                try:
                    size = path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    continue  # deleted before
                except OSError as exc:
                    log.warning("cannot delete clip %s: %s", path, exc)
                    continue
                freed += size
                kind = "clips_deleted_delivered" if delivered else "clips_deleted_undelivered"
                if delivered:
                    self.deleted_delivered += 1
                else:
                    self.deleted_undelivered += 1
                self.health.alarm(kind, f"clip of contact {contact_id} deleted ({size} bytes)")
        return freed
