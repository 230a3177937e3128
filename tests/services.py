"""Real services the tests start for themselves, on loopback and free ports."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from provisioning.broker import free_port


class PostgresUnavailableError(RuntimeError):
    pass


def postgres_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailableError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: scripts/test installs the "
        "'postgresql' package"
    )


class PostgresCluster:
    """A throwaway PostgreSQL cluster in a temporary directory (trust auth, loopback only).

    PostgreSQL refuses to run as root, so as root the cluster runs as the 'postgres' user."""

    def __init__(self) -> None:
        # not under pytest's tmp_path: that is private to root, and the server may run as postgres
        self.base = Path(tempfile.mkdtemp(prefix="contactpoint-pg-"))
        self.bindir = postgres_bindir()
        self.port = free_port()
        self.data = self.base / "pgdata"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailableError(
                    "running as root and there is no 'postgres' user"
                ) from None
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise PostgresUnavailableError(f"{args[0]} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            shutil.chown(self.base, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.base / "postgres.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    def create_database(self, name: str) -> str:
        self._run(
            str(self.bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            name,
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"
