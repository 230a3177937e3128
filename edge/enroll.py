"""Enrollment by claim, the device's side (the service: provisioning/enroll.py; the protocol:
contract/enroll.py).

At start, :func:`ensure_enrolled` returns the configuration with the broker account to use:

- credentials stored by an earlier enrollment (``mqtt.credentials`` in the data directory,
  0600) are used as they are;
- else, with a claim token (``mqtt.claim_file``, by default ``claim.token`` in the data
  directory) and no ``mqtt.password_file`` configured, the device connects with the fleet's
  claim account, sends its identity (serial from /proc/cpuinfo or the device tree, model,
  version), the token and an X25519 public key (its private key is kept in
  ``enroll.key`` with its client id, 0600, until enrolled, so a restart does not make it a
  stranger), and repeats the request until the reply comes (a broker restart or manual
  approval only make it wait). The credentials come sealed to its key; they are stored 0600,
  then the token file is deleted;
- else the configuration is returned unchanged.

The sealing (edge/sealing.py) is libsodium's sealed box through PyNaCl (in the ``edge``
extra): the device has no ``cryptography``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract import enroll as proto
from contract.cli import UserError
from edge import __version__, sealing
from edge.config import Config

log = logging.getLogger(__name__)

CREDENTIALS = "mqtt.credentials"  # in the data directory
PASSWORD = "mqtt.password"  # noqa: S105 - a file name in the data directory
CLAIM = "claim.token"


#: while enrolling the daemon asks systemd for this much more start time at every wait (µs)
WAIT_EXTEND_US = 60_000_000
KEY = "enroll.key"  # the private key while the device enrolls (0600; kept over restarts)


class EnrollError(UserError):
    """Enrollment was refused or cannot be tried; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Identity:
    serial: str
    model: str
    version: str


def identity(
    cpuinfo: Path = Path("/proc/cpuinfo"),
    device_tree: Path = Path("/proc/device-tree"),
) -> Identity:
    """The board's serial and model: /proc/cpuinfo's ``Serial``/``Model`` lines, else the
    device tree's ``serial-number``/``model``, else the machine id."""
    fields: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass

    def tree(name: str) -> str:
        try:
            return (device_tree / name).read_bytes().rstrip(b"\0").decode(errors="replace")
        except OSError:
            return ""

    serial = fields.get("serial") or tree("serial-number")
    if not serial:
        try:
            serial = Path("/etc/machine-id").read_text().strip()
        except OSError:
            serial = "unknown"
    model = fields.get("model") or tree("model") or "unknown"
    return Identity(serial=serial[:64], model=model[:200], version=__version__)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def with_credentials(cfg: Config, data_dir: Path) -> Config | None:
    """``cfg`` using the stored credentials; None when there are none."""
    stored = data_dir / CREDENTIALS
    if not stored.exists():
        return None
    creds = json.loads(stored.read_text(encoding="utf-8"))
    mqtt_cfg = cfg.mqtt.replace(username=creds["username"], password_file=creds["password_file"])
    return cfg.replace(mqtt=mqtt_cfg)


def claim_file(cfg: Config, data_dir: Path) -> Path:
    return Path(cfg.mqtt.claim_file) if cfg.mqtt.claim_file else data_dir / CLAIM


def ensure_enrolled(
    cfg: Config,
    data_dir: Path,
    stop: threading.Event,
    *,
    who: Identity | None = None,
    retry_s: float = 10.0,
    on_wait: Callable[[str], object] | None = None,
) -> Config:
    """The configuration to run with (see the module's text). Returns early, unchanged, when
    ``stop`` is set while waiting."""
    enrolled = with_credentials(cfg, data_dir)
    if enrolled is not None:
        return enrolled
    token_path = claim_file(cfg, data_dir)
    if cfg.mqtt.password_file or not token_path.exists():
        return cfg
    token = token_path.read_text(encoding="utf-8").strip()
    if not token:
        raise EnrollError(f"{token_path} is empty: put the fleet's claim token in it")
    # the same key and client id after a restart: a pending request, or a reply the device
    # did not live to store, stays its own
    key_file = data_dir / KEY
    if not key_file.exists():
        client_id = proto.CLIENT_ID_PREFIX + secrets.token_hex(12)
        kept = {"key": sealing.b64(sealing.new_key_pair()[0]), "client_id": client_id}
        _write_private(key_file, json.dumps(kept))
    try:
        kept = json.loads(key_file.read_text(encoding="utf-8"))
        private = sealing.unb64(kept["key"], f"{key_file}: key")
        client_id = str(kept["client_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EnrollError(f"{key_file} is damaged ({exc}): delete it to start over") from None
    enrollment = Enrollment(
        cfg, token, who or identity(), private, client_id, retry_s=retry_s, on_wait=on_wait
    )
    creds = enrollment.run(stop)
    if creds is None:
        return cfg
    password_file = data_dir / PASSWORD
    _write_private(password_file, creds["password"])
    record = {"username": creds["username"], "password_file": str(password_file)}
    _write_private(data_dir / CREDENTIALS, json.dumps(record))
    token_path.unlink(missing_ok=True)
    key_file.unlink(missing_ok=True)
    log.info("enrolled as %s", creds["username"])
    done = with_credentials(cfg, data_dir)
    if done is None:
        raise RuntimeError("credentials stored but not read back")
    return done


class Enrollment:
    """One device asking until it has an answer."""

    def __init__(
        self,
        cfg: Config,
        token: str,
        who: Identity,
        private_key: bytes,
        client_id: str,
        *,
        retry_s: float = 10.0,
        on_wait: Callable[[str], object] | None = None,
    ) -> None:
        m = re.fullmatch(r"(mqtts?)://([^/:\s]+):(\d+)", cfg.mqtt.broker)
        if m is None:
            raise EnrollError(f"mqtt.broker {cfg.mqtt.broker!r}: write mqtt://HOST:PORT")
        self._host, self._port, self._tls = m.group(2), int(m.group(3)), m.group(1) == "mqtts"
        self.client_id = client_id
        self._private, public = private_key, sealing.public_key(private_key)
        self._request = json.dumps(
            {
                "v": 1,
                "token": token,
                "name": cfg.device.id,
                "site": cfg.device.site,
                "serial": who.serial,
                "model": who.model,
                "version": who.version,
                "key": sealing.b64(public),
            }
        ).encode()
        self._cfg = cfg
        self._retry_s = retry_s
        self._on_wait = on_wait
        self._answer: dict[str, Any] | None = None
        self._wake = threading.Event()
        self.requests = 0  # requests published (tests watch it)

    def _client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        client.username_pw_set(proto.CLAIM_USER, proto.CLAIM_PASSWORD)
        if self._tls:
            client.tls_set(ca_certs=self._cfg.mqtt.ca_file or None)
        client.reconnect_delay_set(1, 5)
        client.on_connect = self._connected
        client.on_subscribe = self._subscribed
        client.on_message = self._message
        return client

    def _connected(
        self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if not rc.is_failure:
            client.subscribe(proto.reply_topic(self.client_id), qos=1)

    def _subscribed(
        self, client: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        if codes and not codes[0].is_failure:
            self.requests += 1
            client.publish(proto.request_topic(self.client_id), self._request, qos=1)

    def _message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            answer = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(answer, dict):
            self._answer = answer
            self._wake.set()

    def run(self, stop: threading.Event) -> dict[str, str] | None:
        client = self._client()
        client.connect_async(self._host, self._port, keepalive=15)
        client.loop_start()
        try:
            while not stop.is_set():
                self._wake.wait(self._retry_s)
                self._wake.clear()
                answer, self._answer = self._answer, None
                status = answer.get("status") if answer else None
                if status == "enrolled" and answer is not None:
                    return self._open(answer)
                if status == "refused" and answer is not None:
                    raise EnrollError(
                        f"enrollment refused: {answer.get('reason', '(no reason)')}: ask the "
                        "fleet's operator for a valid claim token"
                    )
                if self._on_wait is not None:
                    self._on_wait("waiting for approval" if status else "waiting for the broker")
                if status == "pending":
                    stop.wait(self._retry_s)
                if client.is_connected():  # ask again (pending, or the reply was lost)
                    self.requests += 1
                    client.publish(proto.request_topic(self.client_id), self._request, qos=1)
            return None
        finally:
            client.disconnect()
            client.loop_stop()

    def _open(self, answer: dict[str, Any]) -> dict[str, str]:
        try:
            plain = sealing.open_sealed(self._private, answer.get("sealed"), self.client_id)
            creds = json.loads(plain)
        except ValueError as exc:
            raise EnrollError(f"the enrollment reply cannot be opened: {exc}") from None
        if not isinstance(creds.get("username"), str) or not isinstance(creds.get("password"), str):
            raise EnrollError("the enrollment reply lacks username or password")
        return {"username": creds["username"], "password": creds["password"]}
