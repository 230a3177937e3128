"""Named crash points for the fault suite: the process kills itself (SIGKILL) at a chosen spot.

Production never sets ``CONTACTPOINT_CRASH_AT``; then :func:`crashpoint` returns at once and the
code paths around it are the ones that always run. The fault tests (tests/faults/harness.py)
and the soak (bench/soak.py) start a process with, e.g., ``CONTACTPOINT_CRASH_AT=store.commit@3``
to die just before the third contact transaction commits: a deterministic way to hit "inside
the store transaction" or "during a clip write", which a randomly timed ``kill -9`` rarely does.

Format: ``NAME`` (the first time the point is reached) or ``NAME@N`` (the N-th time, N >= 1);
anything else is refused when the module is imported, naming the variable and the format.
Points on the device: ``store.commit`` (inside a contact's transaction: every row written, not
committed), ``clip.write`` (a clip's temporary file fully written, before its fsync and rename)
and ``clip.write.failed`` (the OS refused a clip's write, e.g. a full disk: the temporary file
is half written and not yet removed). In the sink: ``sink.commit`` (inside an ingest
transaction: chunk written into its clip's partial file, rows not committed, message not
acked), ``sink.assemble.write`` (a clip's partial file verified, not yet moved into place) and
``sink.assemble`` (the clip's file in place, not yet marked complete).
"""

from __future__ import annotations

import os
import signal
from typing import Final

ENV: Final = "CONTACTPOINT_CRASH_AT"


def parse(spec: str) -> tuple[str, int] | None:
    """``NAME`` or ``NAME@N`` as (name, N); None for an empty spec."""
    if not spec:
        return None
    name, at, count = spec.partition("@")
    if not name or (at and not (count.isdigit() and int(count) >= 1)):
        raise ValueError(f"{ENV}={spec!r}: use NAME or NAME@N with N >= 1, e.g. store.commit@3")
    return name, int(count) if count else 1


_TARGET = parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}


def crashpoint(name: str) -> None:
    """SIGKILL this process if ``name`` is the armed point and its count is reached."""
    if _TARGET is None or _TARGET[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)
