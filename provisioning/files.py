"""Writing provisioning files: secrets born 0600, everything atomic.

Rules:
- A secret (password, private key, password-file hashes) is created with mode 0600 from its
  first byte: the temporary file is opened with ``O_CREAT | O_EXCL`` and mode 0600, so no
  umask and no race can make it readable by others, then renamed over the target.
- Every file appears atomically (temporary name in the same directory, fsync, rename, fsync of
  the directory): a power cut leaves the old file or the new one, never half of either.
- Public files (certificates, config snippets) are 0644.
- A file for another service (the broker's password file, ACL and TLS key) can be given to its
  user (``owner``: uid, gid) before it appears; only root can do that (:func:`service_owner`).
"""

from __future__ import annotations

import os
import pwd
import secrets
from pathlib import Path
from typing import Final

SECRET_MODE: Final = 0o600
PUBLIC_MODE: Final = 0o644


Owner = tuple[int, int]  # uid, gid


def write_secret(path: Path, data: bytes | str, *, owner: Owner | None = None) -> Path:
    """Write ``data`` to ``path`` with mode 0600 (owned by ``owner`` if given), atomically."""
    return _write(path, data, SECRET_MODE, owner)


def write_public(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` with mode 0644, atomically."""
    return _write(path, data, PUBLIC_MODE, None)


def service_owner(user: str) -> Owner | None:
    """(uid, gid) of system user ``user`` when this process can give files to it (it runs as
    root and the user exists), else None."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _write(path: Path, data: bytes | str, mode: int, owner: Owner | None) -> Path:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fchmod(out.fileno(), mode)  # O_CREAT's mode is masked by the umask: be exact
            if owner is not None:
                os.fchown(out.fileno(), *owner)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def mode_of(path: Path) -> int:
    """The permission bits of ``path`` (e.g. ``0o600``)."""
    return path.stat().st_mode & 0o777
