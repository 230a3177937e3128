"""What the update tests run releases with: real wheels, real venvs, and systemd's part of the
notify protocol played by :class:`NotifySupervisor`.

- :func:`tiny_wheel` builds a ``contactpoint`` wheel of any version whose ``contactpoint``
  command says ``READY=1`` on ``$NOTIFY_SOCKET`` and stays up (until its parent is gone),
  exits 1 at once (a release that crashes at start), or stays up silent (a hung start);
- :func:`project_wheel` builds the project's own wheel (``pip wheel --no-deps .``);
- :class:`NotifySupervisor` starts ``<root>/current/bin/contactpoint ARGS`` through the link,
  as systemd does with the unit's ``ExecStart``, with a bound datagram ``NOTIFY_SOCKET``, and
  waits for the child's ``READY=1``, its exit, or the time: nothing is assumed, the child
  either sends it or not.

``python -m tests.edge.update_support ROOT WHEELHOUSE VERSION KEEP`` runs one update with it
(the crash-point test kills that process at chosen steps).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.update.releases import CURRENT, Settings, Updater

ROOT = Path(__file__).resolve().parents[2]

_GOOD = """import os, socket, sys, time

def main():
    if sys.argv[1:] == ["--version"]:
        print("contactpoint @VERSION@ (tiny)")
        return
    parent = os.getppid()
    address = os.environ.get("NOTIFY_SOCKET")
    if address:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"READY=1\\nSTATUS=tiny @VERSION@", address)
    while os.getppid() == parent:
        time.sleep(0.05)
"""

_HANG = """import os, time

def main():
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.05)
"""

_CRASH = """import sys

def main():
    print("tiny @VERSION@: cannot start", file=sys.stderr)
    sys.exit(1)
"""


def _pip_wheel(project: Path, out: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--wheel-dir", str(out), str(project)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip


def tiny_wheel(out: Path, version: str, *, mode: str = "good") -> None:
    """A ``contactpoint-<version>`` wheel in ``out``: ``good`` (READY=1), ``crash`` (exits 1
    at start) or ``hang`` (runs, never says READY=1)."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "contactpoint"\nversion = "{version}"\n'
            "[project.optional-dependencies]\nedge = []\npi = []\n"
            '[project.scripts]\ncontactpoint = "cp_tiny:main"\n'
            '[tool.setuptools]\npy-modules = ["cp_tiny"]\n'
        )
        source = {"good": _GOOD, "crash": _CRASH, "hang": _HANG}[mode]
        (project / "cp_tiny.py").write_text(source.replace("@VERSION@", version))
        _pip_wheel(project, out)


def project_wheel(out: Path) -> None:
    """The project's own wheel, built from this checkout."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", "build", ".mypy_cache", ".ruff_cache",
            ".pytest_cache"))  # fmt: skip
        _pip_wheel(Path(tmp), out)


def dev_site_packages() -> str:
    """The test interpreter's site-packages: the real daemon's dependencies for a release
    installed with ``--no-deps`` (not its own contactpoint: an editable install's path hook
    is only read from a site directory, not from ``PYTHONPATH``)."""
    import sysconfig

    return sysconfig.get_paths()["purelib"]


class NotifySupervisor:
    """systemd's part for one unit: start through ``current``, wait for ``READY=1``."""

    def __init__(self, root: Path, args: list[str], *, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="sdu")  # short: AF_UNIX paths hold 107 bytes
        self.address = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.address)
        self.sock.settimeout(0.1)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        self.env.update(env or {})
        self.env["NOTIFY_SOCKET"] = self.address
        self.proc: subprocess.Popen[bytes] | None = None
        #: (the release started, None for READY=1 or why not) for every start
        self.starts: list[tuple[str, str | None]] = []
        #: every notify message received
        self.messages: list[str] = []
        self.log = Path(self.dir) / "child.log"

    def _drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.messages.append(self.sock.recv(65536).decode())
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(0.1)

    def start(self, timeout_s: float) -> str | None:
        self.stop()
        self._drain()
        release = Path(os.readlink(self.root / CURRENT)).name
        exe = self.root / CURRENT / "bin" / "contactpoint"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), *self.args], env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout_s
        problem: str | None = None
        while True:
            try:
                message = self.sock.recv(65536).decode()
            except TimeoutError:
                message = ""
            if message:
                self.messages.append(message)
                if "READY=1" in message.split("\n"):
                    break
            code = self.proc.poll()
            if code is not None:
                problem = f"exited with status {code} before READY=1"
                break
            if time.monotonic() > deadline:
                self.stop()
                problem = f"no READY=1 within {timeout_s:g} s"
                break
        self.starts.append((release, problem))
        return problem

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def settings(root: Path, keep: int = 3, attempts: int = 3, ready_s: float = 60.0) -> Settings:
    return Settings(
        root=root,
        ready_timeout_s=ready_s,
        attempts=attempts,
        keep=keep,
        python=sys.executable,
        pip_args=("--no-deps",),
    )


def main(argv: list[str]) -> int:
    root, wheelhouse, version, keep = Path(argv[0]), Path(argv[1]), argv[2], int(argv[3])
    supervisor = NotifySupervisor(root, [])
    try:
        outcome = Updater(settings(root, keep=keep), supervisor).update(version, wheelhouse)
    finally:
        supervisor.close()
    print(json.dumps({"result": outcome.result, "version": outcome.version}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
