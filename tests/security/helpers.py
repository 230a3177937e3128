"""Helpers of the security tests: a secured broker built from provisioned files, and an MQTT 5
client that reports the broker's answers (CONNACK, SUBACK and PUBACK reason codes)."""

from __future__ import annotations

import queue
import ssl
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

WAIT_S = 5.0


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
    ) -> None:
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        self._subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self._pubacks: dict[int, queue.Queue[ReasonCode]] = {}
        self._lock = threading.Lock()
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
        self.port = port

    def connect(self) -> Answer:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
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
