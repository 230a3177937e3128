"""Releases side by side, an atomic switch, a health check and the rollback.

The layout (``/opt/contactpoint``, provisioning/card.py installs the first release)::

    releases/<version>/        a venv with contactpoint installed; complete once it holds
                               ``.release.json`` (written last, atomically)
    current -> releases/<v>    the link every unit starts through (ExecStart=.../current/bin/...)
    update.json                the update in progress or the last one (written atomically)

An update (:meth:`Updater.update`):

1. installs the new version into ``releases/<version>`` with pip (from a wheelhouse directory
   with ``--no-index``, or from the package index), then writes the marker;
2. switches ``current``: a new link ``current.new`` is renamed over ``current`` (rename(2)
   replaces it atomically: at every moment ``current`` names one complete release);
3. restarts the unit through a :class:`Supervisor` and waits for ``READY=1`` (systemd: a
   ``Type=notify`` unit's ``systemctl restart`` returns once the daemon said it or failed);
   ``attempts`` starts that fail or stay silent for ``ready_timeout_s`` each mean the release
   does not work;
4. then switches back to the previous release and starts it again (rolled back), or, when it
   came up, keeps it and removes the oldest releases beyond ``keep`` (never ``current`` nor the
   previous one).

``update.json`` says which step was reached. A power loss anywhere leaves ``current`` on a
complete release (the old one until the rename, the new one after it); the next
``contactpoint update`` (or the listener's start) first finishes what was interrupted: a
switched but unchecked release is checked and rolled back if it does not come up.

Crash points (contract/crashpoint.py) for the tests: ``update.install`` (pip done, marker not
written), ``update.switch`` (``current.new`` made, not renamed), ``update.start`` (switched,
before the start), ``update.rollback`` (the new release failed, before switching back) and
``update.prune`` (an old release's marker removed, its files not yet).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from contract.crashpoint import crashpoint
from edge._errors import UserError

log = logging.getLogger(__name__)

ROOT: Final = Path("/opt/contactpoint")
UNIT: Final = "contactpoint-edge.service"
RELEASES: Final = "releases"
CURRENT: Final = "current"
STATE: Final = "update.json"
LOCK: Final = ".update.lock"
MARKER: Final = ".release.json"
PACKAGE: Final = "contactpoint"
#: a release's version: a directory name and a pip version specifier
VERSION_PATTERN: Final = r"[0-9][0-9A-Za-z.+!_-]{0,63}"
_VERSION: Final = re.compile(VERSION_PATTERN)


class UpdateError(UserError):
    """The update could not be done; the message says why (``current`` is unchanged)."""


def check_version(version: str, field: str = "version") -> str:
    if _VERSION.fullmatch(version) is None or ".." in version:
        raise UpdateError(f"{field} {version[:80]!r}: not a version (e.g. 0.2.0)")
    return version


@dataclass(frozen=True, slots=True)
class Settings:
    root: Path = ROOT
    #: the unit to restart and watch
    unit: str = UNIT
    #: how long one start may take to say READY=1
    ready_timeout_s: float = 180.0
    #: starts of the new release before it is rolled back
    attempts: int = 3
    #: releases kept on disk (current and previous always)
    keep: int = 3
    #: the interpreter each release's venv is made with (Debian's: python3-systemd visible)
    python: str = "/usr/bin/python3"
    extras: str = "edge,pi"
    #: more pip install arguments (the tests: --no-deps)
    pip_args: tuple[str, ...] = ()


class Supervisor(Protocol):
    """Who runs the unit: systemd on a device (:class:`Systemd`)."""

    def start(self, timeout_s: float) -> str | None:
        """(Re)start the service from ``current``; None once it said ``READY=1`` within
        ``timeout_s``, else why it did not (it exited, failed, or stayed silent)."""
        ...


class Systemd:
    """The unit through systemctl. For a ``Type=notify`` unit ``systemctl restart`` waits until
    the daemon sent ``READY=1``, or fails when it exits first; a start that outlasts the time
    is stopped."""

    def __init__(self, unit: str, systemctl: str = "systemctl") -> None:
        self.unit = unit
        self.systemctl = systemctl

    def _run(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - systemctl with fixed arguments and the unit's name
            [self.systemctl, *args, self.unit],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def start(self, timeout_s: float) -> str | None:
        self._run("reset-failed")  # a unit past its start limit would refuse to start
        try:
            done = self._run("restart", timeout_s=timeout_s)
        except subprocess.TimeoutExpired:
            self._run("stop", "--no-block")
            return f"no READY=1 within {timeout_s:g} s"
        if done.returncode != 0:
            return f"systemctl restart {self.unit} failed: {done.stderr.strip()[-300:]}"
        state = self._run("is-active").stdout.strip()
        return None if state == "active" else f"{self.unit} is {state or 'not active'}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: written to a temporary file, fsynced, renamed over."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Releases:
    """The release directories and the ``current`` link under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / RELEASES
        self.current = root / CURRENT

    def path(self, version: str) -> Path:
        return self.dir / check_version(version)

    def complete(self, version: str) -> bool:
        return (self.path(version) / MARKER).is_file()

    def current_version(self) -> str | None:
        """The release ``current`` names; None when there is none (a first install)."""
        try:
            target = os.readlink(self.current)
        except OSError:
            return None
        return Path(target).name

    def installed(self) -> list[str]:
        """The complete releases, oldest first."""
        if not self.dir.is_dir():
            return []
        found: list[tuple[float, str]] = []
        for entry in self.dir.iterdir():
            marker = entry / MARKER
            if marker.is_file():
                found.append((marker.stat().st_mtime, entry.name))
        return [name for _, name in sorted(found)]

    def install(self, version: str, settings: Settings, find_links: Path | None) -> Path:
        """``releases/<version>``, installed (again, if an earlier try was interrupted). pip
        installs in place (its scripts name their venv's interpreter by path, so a venv cannot
        be moved); the marker written last makes the release complete."""
        release = self.path(version)
        if self.complete(version):
            return release
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(release, ignore_errors=True)
        self._run(
            [settings.python, "-m", "venv", "--system-site-packages", str(release)],
            "creating the release's venv",
        )
        pip = [str(release / "bin" / "python"), "-m", "pip", "install"]
        pip += ["--disable-pip-version-check", "--no-input", "--quiet", "--no-cache-dir"]
        if find_links is not None:
            pip += ["--no-index", "--find-links", str(find_links)]
        pip += [*settings.pip_args, f"{PACKAGE}[{settings.extras}]=={version}"]
        self._run(pip, f"installing {PACKAGE} {version}")
        if not (release / "bin" / PACKAGE).is_file():
            raise UpdateError(f"{release}: the install made no bin/{PACKAGE}")
        crashpoint("update.install")
        for dirpath, _dirs, _files in os.walk(release):  # the files are on disk before the mark
            _fsync_dir(Path(dirpath))
        write_atomic(release / MARKER, json.dumps({"version": version, "at": time.time()}))
        return release

    @staticmethod
    def _run(cmd: list[str], what: str) -> None:
        # the release's own interpreter and nothing else: a PYTHONPATH of the caller (a
        # development checkout, say) would let pip find the package there as "already
        # satisfied" and install nothing
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)  # noqa: S603 - our own argv
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise UpdateError(f"{what} failed: " + " / ".join(tail))

    def switch(self, version: str) -> None:
        """Point ``current`` at ``releases/<version>`` atomically (a complete release only)."""
        if not self.complete(version):
            raise UpdateError(f"release {version} is not complete: not switching to it")
        new = self.root / f"{CURRENT}.new"
        new.unlink(missing_ok=True)
        os.symlink(Path(RELEASES) / version, new)
        crashpoint("update.switch")
        os.replace(new, self.current)
        _fsync_dir(self.root)

    def remove(self, version: str) -> None:
        """Delete a release: its marker first, so a half-deleted one is never complete."""
        release = self.path(version)
        (release / MARKER).unlink(missing_ok=True)
        _fsync_dir(release)
        crashpoint("update.prune")
        shutil.rmtree(release, ignore_errors=True)

    def prune(self, keep: int, protect: set[str]) -> list[str]:
        """Remove the oldest releases beyond ``keep`` (never those in ``protect``) and the
        leftovers of interrupted installs; the removed versions."""
        removed: list[str] = []
        complete = self.installed()
        for version in [v for v in complete if v not in protect]:  # oldest first
            if len(complete) - len(removed) <= keep:
                break
            self.remove(version)
            removed.append(version)
        if self.dir.is_dir():
            for entry in self.dir.iterdir():
                if not (entry / MARKER).is_file() and entry.name not in protect:
                    shutil.rmtree(entry, ignore_errors=True)
        return removed


@dataclass(frozen=True, slots=True)
class Outcome:
    #: installed | rolled_back | failed | current (already running that version)
    result: str
    version: str
    previous: str | None
    detail: str = ""


class Updater:
    """One device's updates: install, switch, check, roll back (see the module's text)."""

    def __init__(self, settings: Settings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.releases = Releases(settings.root)
        self.state_path = settings.root / STATE

    def state(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _set(self, step: str, version: str, previous: str | None, detail: str = "") -> None:
        body = {"step": step, "version": version, "previous": previous, "detail": detail}
        write_atomic(self.state_path, json.dumps({**body, "at": time.time()}))

    def _healthy(self) -> str | None:
        problem = "not started"
        for attempt in range(1, self.settings.attempts + 1):
            found = self.supervisor.start(self.settings.ready_timeout_s)
            if found is None:
                return None
            problem = found
            log.warning("start %d of %d failed: %s", attempt, self.settings.attempts, problem)
        return f"{self.settings.attempts} starts, none ready: {problem}"

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One update at a time (the updater's unit and a ``contactpoint update`` by hand)."""
        self.settings.root.mkdir(parents=True, exist_ok=True)
        with (self.settings.root / LOCK).open("a") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UpdateError(
                    f"another update is running ({self.settings.root / LOCK} is locked)"
                ) from None
            yield

    def update(self, version: str, find_links: Path | None = None) -> Outcome:
        """Install ``version`` (from ``find_links``, a wheelhouse, or the package index), switch
        to it, and keep it if it comes up, else roll back."""
        check_version(version)
        with self._lock():
            self._resume()
            return self._update(version, find_links)

    def _update(self, version: str, find_links: Path | None) -> Outcome:
        previous = self.releases.current_version()
        if previous == version and self.releases.complete(version):
            return Outcome("current", version, previous, "already the current release")
        self._set("installing", version, previous)
        try:
            self.releases.install(version, self.settings, find_links)
        except UpdateError as exc:
            self._set("failed", version, previous, str(exc))
            return Outcome("failed", version, previous, str(exc))
        self._set("switching", version, previous)
        self.releases.switch(version)
        self._set("starting", version, previous)
        crashpoint("update.start")
        return self._check(version, previous)

    def _check(self, version: str, previous: str | None) -> Outcome:
        problem = self._healthy()
        if problem is None:
            self._set("done", version, previous)
            self._prune(version, previous)
            log.info("updated to %s (from %s)", version, previous)
            return Outcome("installed", version, previous)
        if previous is None or not self.releases.complete(previous):
            self._set("failed", version, previous, problem)
            return Outcome("failed", version, previous, f"{problem}; no release to go back to")
        log.error("release %s does not come up (%s): back to %s", version, problem, previous)
        self._set("rolling_back", version, previous, problem)
        crashpoint("update.rollback")
        return self._roll_back(version, previous, problem)

    def _roll_back(self, version: str, previous: str, problem: str) -> Outcome:
        self.releases.switch(previous)
        back = self._healthy()
        detail = problem if back is None else f"{problem}; {previous} again: {back}"
        self._set("rolled_back", version, previous, detail)
        self._prune(previous, None)
        return Outcome("rolled_back", version, previous, detail)

    def _prune(self, current: str, previous: str | None) -> None:
        protect = {current} if previous is None else {current, previous}
        for version in self.releases.prune(self.settings.keep, protect):
            log.info("removed release %s", version)

    def resume(self) -> Outcome | None:
        """Finish an update a power loss or a kill interrupted; None when there was none."""
        with self._lock():
            return self._resume()

    def _resume(self) -> Outcome | None:
        state = self.state()
        step, version, previous = state.get("step"), state.get("version"), state.get("previous")
        if not isinstance(version, str) or step not in (
            "installing", "switching", "starting", "rolling_back"
        ):  # fmt: skip
            return None
        prev = previous if isinstance(previous, str) else None
        log.warning("finishing the interrupted update to %s (it was %s)", version, step)
        current = self.releases.current_version()
        if step == "rolling_back" and prev is not None:
            return self._roll_back(version, prev, str(state.get("detail", "")))
        if current == version:  # switched: check it, as the update would have
            return self._check(version, prev)
        # not switched: the old release runs as before; the new one is removed
        self._set("failed", version, prev, f"interrupted while {step}")
        if version != prev:
            self.releases.prune(self.settings.keep, {r for r in (current, prev) if r})
        return Outcome("failed", version, prev, f"interrupted while {step}")
