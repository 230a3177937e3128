"""Named crash points for the fault suite (the sink's copy: cloud_sink imports nothing of edge).

Production never sets ``CONTACTPOINT_CRASH_AT``; then :func:`crashpoint` returns at once. The
fault tests start ``contactpoint sink run`` with e.g. ``CONTACTPOINT_CRASH_AT=sink.commit@40``
to die inside the 40th ingest transaction (chunk file written, rows not committed, message not
acked) or ``sink.assemble@2`` (the second clip's file in place, not yet marked complete).

Format: ``NAME`` (the first time) or ``NAME@N`` (the N-th time the point is reached).
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
