"""A real, small filesystem that the tests fill up: a tmpfs mounted for the test.

Mounting needs root (or CAP_SYS_ADMIN). Where that is impossible the test is skipped with the
reason; ``tests/edge/test_encode.py`` proves the same write path without privileges through a
file-size limit (``RLIMIT_FSIZE``) in a subprocess.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILLER = "filler"


@contextlib.contextmanager
def small_tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_bytes`` on ``path`` for the body; unmount it afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    except FileNotFoundError:
        pytest.skip("no 'mount' command here: a real full filesystem cannot be made")
    if result.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs ({result.stderr.strip() or result.returncode}): that needs "
            "root or CAP_SYS_ADMIN; tests/edge/test_encode.py covers the clip write path on a "
            "file-size limit instead"
        )
    try:
        yield path
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, check=False, timeout=30)
        if done.returncode != 0:  # a file still open (a process we killed): detach it anyway
            subprocess.run(["umount", "-l", str(path)], check=True, timeout=30)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave_bytes: int) -> Path:
    """Fill the filesystem of ``path`` with a real file until the OS says ENOSPC, then give
    back ``leave_bytes`` (whole pages); return the file (delete it to make room again)."""
    filler = path / FILLER
    block = b"\xa5" * 65536
    with filler.open("wb", buffering=0) as out:
        try:
            while out.write(block):
                pass
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    page = os.sysconf("SC_PAGE_SIZE")
    keep = max(0, filler.stat().st_size - -(-leave_bytes // page) * page)
    os.truncate(filler, keep)
    return filler
