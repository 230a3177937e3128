"""Named crash points for the fault suite: the process kills itself (SIGKILL) at a chosen spot.

Production never sets ``CONTACTPOINT_CRASH_AT``; then :func:`crashpoint` returns at once and the
code paths around it are the ones that always run. The fault tests start the daemon with, e.g.,
``CONTACTPOINT_CRASH_AT=store.commit@3`` to die just before the third contact transaction
commits — a deterministic way to hit "inside the store transaction" or "during a clip write",
which a randomly timed ``kill -9`` rarely does.

Format: ``NAME`` (the first time the point is reached) or ``NAME@N`` (the N-th time).
Points: ``store.commit`` (inside a contact's transaction: every row written, not committed),
``clip.write`` (a clip's temporary file fully written, before its fsync and rename) and
``clip.write.failed`` (the OS refused a clip's write, e.g. a full disk: the temporary file is
half written and not yet removed).
"""

from __future__ import annotations

import os
import signal

ENV = "CONTACTPOINT_CRASH_AT"


def _parse(spec: str) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.partition("@")
    return name, int(count) if count else 1


_TARGET = _parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}


def crashpoint(name: str) -> None:
    """SIGKILL this process if ``name`` is the armed point and its count is reached."""
    if _TARGET is None or _TARGET[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)
