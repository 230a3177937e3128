"""A local mosquitto broker: its configuration and, for the demo and the tests, its process.

On a real site the broker is installed and configured by provisioning; ``LocalBroker`` runs one
on loopback with a configuration written here (persistence on, so QoS 1 sessions survive a
restart; queue limits raised, since mosquitto's defaults drop messages silently) or one given
to it whole (the tests run the files ``contactpoint provision`` writes).
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerError(Exception):
    """The broker could not be started; the message says what is missing."""


def find_mosquitto() -> str:
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise BrokerError(
        "mosquitto is not installed: run scripts/setup, or 'sudo apt-get install mosquitto' "
        "(or pass --broker mqtt://HOST:PORT to use a broker you already have)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    port: int
    data_dir: Path
    host: str = "127.0.0.1"
    persistence: bool = True
    max_queued_messages: int = 100_000  # per client; mosquitto's default (1000) drops silently
    max_packet_size: int = 1_048_576
    allow_anonymous: bool = True
    extra: str = ""  # more configuration lines (TLS, password_file, acl_file …)
    #: seconds between saves of the persistence file; what a kill -9 loses is what arrived since
    #: the last save (tests of broker crashes set it long: everything since the start is lost)
    autosave_interval_s: int = 1

    def render(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.data_dir}/",
            f"autosave_interval {self.autosave_interval_s}",
            f"max_queued_messages {self.max_queued_messages}",
            "max_inflight_messages 100",
            f"max_packet_size {self.max_packet_size}",
            "persistent_client_expiration 7d",
            f"user {getpass.getuser()}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if self.extra:
            lines.append(self.extra)
        return "\n".join(lines) + "\n"


class LocalBroker:
    """A mosquitto process on loopback; ``stop``/``start`` keep its persisted sessions."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        extra: str = "",
        allow_anonymous: bool = True,
        conf: str | None = None,
        autosave_interval_s: int = 1,
    ) -> None:
        """``conf``: run this configuration text as it is instead of one rendered here (it
        must listen on ``port`` on loopback)."""
        self.data_dir = data_dir
        self._conf = conf
        self.config = BrokerConfig(
            port=port or free_port(),
            data_dir=data_dir,
            extra=extra,
            allow_anonymous=allow_anonymous,
            autosave_interval_s=autosave_interval_s,
        )
        self._binary = find_mosquitto()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def url(self) -> str:
        return f"mqtt://{self.config.host}:{self.config.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(self._conf or self.config.render(), encoding="utf-8")
        log = (self.data_dir / "mosquitto.log").open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - the broker binary, our own arguments
            [self._binary, "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = (self.data_dir / "mosquitto.log").read_text(errors="replace")[-2000:]
                raise BrokerError(
                    f"mosquitto exited with code {self._process.returncode}: {tail.strip()}"
                )
            try:
                with socket.create_connection((self.config.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """A clean stop (SIGTERM): mosquitto saves its persistence file."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: what a power cut does to the broker."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
