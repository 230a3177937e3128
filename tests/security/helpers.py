"""Helpers of the security tests: mosquitto run on the files `contactpoint provision` wrote, and
an MQTT 5 client that reports the broker's answers (CONNACK, SUBACK and PUBACK reason codes)."""

from __future__ import annotations

import os
import pwd
import queue
import re
import shutil
import ssl
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from provisioning import identity
from provisioning.broker import LocalBroker, free_port
from tests.waiting import STALL_S

WAIT_S = STALL_S  # generous: returns as soon as the answer is there


def broker_host_dir(prefix: str = "contactpoint-broker-") -> Path:
    """A temporary directory standing for the broker host's ``/etc/mosquitto/contactpoint``:
    outside pytest's private tmp_path (0700), so that mosquitto, which drops to its own user
    when started as root, can reach it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class InstalledBroker:
    """mosquitto run on the broker files as a broker host runs them.

    The files are provisioned with ``--broker-dir`` and ``--broker-root`` both ``root`` (see
    :func:`broker_host_dir`). ``contactpoint.conf`` goes into ``conf.d/`` under a main
    configuration like Debian's (persistence, logging, ``include_dir``; no ``user`` line, so
    mosquitto started as root drops to ``mosquitto``, as it does there). The one rewrite: its
    ``listener <port>`` line becomes ``listener <free port> 127.0.0.1``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        generated = (root / identity.BROKER_CONF).read_text()
        installed, count = re.subn(
            r"^listener \d+$", f"listener {self.port} 127.0.0.1", generated, flags=re.M
        )
        assert count == 1, f"expected one listener line in:\n{generated}"
        home = root / "host"
        (home / "conf.d").mkdir(parents=True, exist_ok=True)
        (home / "conf.d" / identity.BROKER_CONF).write_text(installed)
        data = home / "data"
        data.mkdir(exist_ok=True)
        if os.geteuid() == 0:  # the broker writes its persistence file as its own user
            entry = pwd.getpwnam(identity.DEFAULT_BROKER_USER)
            os.chown(data, entry.pw_uid, entry.pw_gid)
        main = "\n".join(
            [
                "persistence true",
                f"persistence_location {data}/",
                "autosave_interval 1",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                f"include_dir {home / 'conf.d'}",
            ]
        )
        self.broker = LocalBroker(home, self.port, conf=main + "\n")

    @property
    def log(self) -> str:
        return (self.root / "host" / "mosquitto.log").read_text(errors="replace")

    def __enter__(self) -> InstalledBroker:
        self.broker.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.broker.stop()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def tls_listener(port: int, certs: Path, *, require_certificate: bool) -> str:
    """mosquitto lines for a TLS listener on loopback (server.crt/.key and ca.crt in certs)."""
    return "\n".join(
        [
            f"listener {port} 127.0.0.1",
            f"cafile {certs / 'ca.crt'}",
            f"certfile {certs / 'server.crt'}",
            f"keyfile {certs / 'server.key'}",
            f"require_certificate {'true' if require_certificate else 'false'}",
        ]
    )


@dataclass
class Answer:
    reason: ReasonCode

    @property
    def failed(self) -> bool:
        return bool(self.reason.is_failure)

    def __str__(self) -> str:
        return str(self.reason)


class Client:
    """A paho MQTT 5 client on its own network thread; every call waits (bounded) for the
    broker's answer and returns it."""

    def __init__(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        client_id: str | None = None,
        session_expiry_s: int = 0,
    ) -> None:
        """``session_expiry_s`` > 0: a persistent session (clean start false) that the broker
        keeps that long; 0: clean start, the session ends with the connection."""
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        self._subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self._pubacks: dict[int, queue.Queue[ReasonCode]] = {}
        self._lock = threading.Lock()
        self.session_expiry_s = session_expiry_s
        self.disconnects = 0  # the broker (or the network) ended the connection
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda _c, _u, m: self.received.put((m.topic, bytes(m.payload)))
        self.client.on_disconnect = self._on_disconnect
        self.port = port

    def connect(self) -> Answer:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        clean = self.session_expiry_s == 0
        self.client.connect(
            "127.0.0.1", self.port, keepalive=30, clean_start=clean, properties=props
        )
        self.client.loop_start()
        return Answer(self._connack.get(timeout=WAIT_S))

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> Answer:
        with self._lock:
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            box = self._pubacks.setdefault(info.mid, queue.Queue())
        return Answer(box.get(timeout=WAIT_S))

    def subscribe(self, topic_filter: str) -> Answer:
        self.client.subscribe(topic_filter, qos=1)
        return Answer(self._subacks.get(timeout=WAIT_S)[0])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connack.put(reason)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.disconnects += 1

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._subacks.put(reasons)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            box = self._pubacks.setdefault(mid, queue.Queue())
        box.put(reason)
