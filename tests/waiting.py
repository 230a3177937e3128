"""Waiting in tests: on progress, never on a fixed number of seconds.

A test that waits "30 s, then counts" fails on a busy machine while the thing it waits for is
still working. Here a wait goes on as long as a progress measure keeps moving (a counter, a row
count, a file size) and fails only when that measure has not moved for ``stall_s`` or when the
generous overall cap ``cap_s`` is reached; the failure says what was awaited, what was seen
last and which of the two limits ended the wait.

    wait_for(lambda: rows() == 13, "13 contacts in the sink",
             progress=lambda: sink.stats(), seen=lambda: f"{rows()} rows")

Without ``progress`` nothing can be seen moving, so the wait is one stall: it fails after
``stall_s`` (or the cap, if smaller). That is for things that happen once or not at all (a
subscription, a retained message, a process that should start listening).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STALL_S = 60.0  # nothing moved for this long: stuck, not slow
CAP_S = 600.0  # however much still moves, a test gives up here
POLL_S = 0.05


class WaitError(AssertionError):
    """A wait ended without its condition: progress stalled or the cap was reached."""


class Watch:
    """Tracks one wait: :meth:`expired` says why it should end (``None``: keep waiting).

    For loops that do more than poll (toggle a broker, sample a depth) and still must not wait
    forever; :func:`wait_for` is the plain case."""

    def __init__(
        self,
        what: str,
        *,
        progress: Callable[[], Any] | None = None,
        seen: Callable[[], Any] | None = None,
        stall_s: float = STALL_S,
        cap_s: float = CAP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self._clock = clock
        self._progress = progress
        self._seen = seen
        self.stall_s = stall_s
        self.cap_s = cap_s
        self.started = clock()
        self._moved_at = self.started
        self._last: Any = progress() if progress is not None else None
        self.moves = 0

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def poll(self) -> None:
        """Sample the progress measure; a change restarts the stall timer."""
        if self._progress is None:
            return
        value = self._progress()
        if value != self._last:
            self._last = value
            self._moved_at = self._clock()
            self.moves += 1

    def expired(self) -> str | None:
        """Sample progress; the reason the wait is over, or ``None`` to keep waiting."""
        self.poll()
        now = self._clock()
        if now - self.started >= self.cap_s:
            return f"gave up at the cap of {self.cap_s:g} s ({self.moves} moves of progress)"
        if now - self._moved_at >= self.stall_s:
            if self._progress is None:
                return f"not reached within {self.stall_s:g} s (no progress measure)"
            return f"no progress for {self.stall_s:g} s"
        return None

    def failure(self, reason: str) -> WaitError:
        parts = [f"waited {self.elapsed:.1f} s for {self.what}: {reason}"]
        if self._seen is None and self._progress is not None:
            parts.append(f"progress last at {self._last!r}")
        elif self._seen is not None:
            try:
                parts.append(f"seen: {self._seen()}")
            except Exception as exc:  # noqa: BLE001 - the report must not hide the failure it reports
                parts.append(f"seen: (could not be read: {exc!r})")
        return WaitError("; ".join(parts))

    def check(self) -> None:
        """Raise :class:`WaitError` if the wait is over."""
        reason = self.expired()
        if reason is not None:
            raise self.failure(reason)


def wait_for(
    condition: Callable[[], object],
    what: str,
    *,
    progress: Callable[[], Any] | None = None,
    seen: Callable[[], Any] | None = None,
    stall_s: float = STALL_S,
    cap_s: float = CAP_S,
    poll_s: float = POLL_S,
    abort: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Poll ``condition`` until it is true; the seconds waited.

    ``progress``: a cheap callable whose value changes while the awaited work goes on (compared
    with ``!=``); the wait fails once it has not changed for ``stall_s``. ``seen``: what the
    failure message shows (defaults to the last progress value). ``abort``: an event that ends
    the wait at once with a failure (a test that is already failing stops its helper threads).
    """
    watch = Watch(what, progress=progress, seen=seen, stall_s=stall_s, cap_s=cap_s, clock=clock)
    pause = abort or threading.Event()
    while not condition():
        if abort is not None and abort.is_set():
            raise watch.failure("aborted: the test is ending")
        watch.check()
        pause.wait(poll_s)
    return watch.elapsed


def wait_exit(
    process: subprocess.Popen[bytes],
    what: str,
    *,
    progress: Callable[[], Any] | None = None,
    seen: Callable[[], Any] | None = None,
    stall_s: float = STALL_S,
    cap_s: float = CAP_S,
) -> int:
    """Wait for ``process`` to exit while ``progress`` moves; its exit code. On a stall or the
    cap the process is killed (and reaped) before the failure is raised."""
    try:
        wait_for(
            lambda: process.poll() is not None,
            what,
            progress=progress,
            seen=seen,
            stall_s=stall_s,
            cap_s=cap_s,
        )
    except WaitError:
        reap(process)
        raise
    return int(process.returncode)


def join(
    thread: threading.Thread,
    what: str,
    *,
    progress: Callable[[], Any] | None = None,
    seen: Callable[[], Any] | None = None,
    stall_s: float = STALL_S,
    cap_s: float = CAP_S,
) -> None:
    """Join ``thread`` while ``progress`` moves; fail (leaving it be) on a stall or the cap."""
    wait_for(
        lambda: not thread.is_alive(),
        what,
        progress=progress,
        seen=seen,
        stall_s=stall_s,
        cap_s=cap_s,
    )
    thread.join()


def reap(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process`` if it still runs and collect its exit status (no zombie left)."""
    if process.poll() is None:
        process.kill()
    process.wait()


def tree_state(root: Path) -> tuple[int, int, int]:
    """(files, bytes, newest modification in ns) under ``root``: a progress measure for a
    process that writes there (a database rewritten in place changes only its time)."""
    files = size = newest = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                stat = os.stat(os.path.join(dirpath, name))
            except OSError:  # removed while walking (a temporary file renamed into place)
                continue
            files += 1
            size += stat.st_size
            newest = max(newest, stat.st_mtime_ns)
    return files, size, newest


def child_processes(parent: int | None = None) -> dict[int, str]:
    """The direct children of ``parent`` (this process), running or exited and not yet
    collected: pid -> command line (Linux /proc)."""
    parent = os.getpid() if parent is None else parent
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after it
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid != parent:
                continue
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        found[int(entry)] = command or stat[stat.index("(") : stat.rindex(")") + 1]
    return found


def reap_children(known: set[int]) -> dict[int, str]:
    """SIGKILL and collect every child of this process that is not in ``known`` (those were
    there before); what was found, pid -> command line."""
    strays = {pid: cmd for pid, cmd in child_processes().items() if pid not in known}
    for pid in strays:
        with contextlib.suppress(ProcessLookupError):  # exited already: a zombie
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # collected meanwhile by its Popen
            os.waitpid(pid, 0)
    return strays
