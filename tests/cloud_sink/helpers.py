"""Test helpers: payload builders (the frame layout replicated from docs/WIRE.md, not imported
from edge), a fake wall clock, a bounded wait, and a paho test client."""

from __future__ import annotations

import copy
import hashlib
import json
import queue
import struct
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.waiting import STALL_S, wait_for

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "wire"
DEVICE, SITE = "cp-0001", "site-1"
NS = 1_000_000_000


def golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text(encoding="utf-8"))
    return data


def golden_bytes(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def topic(kind: str, site: str = SITE, device: str = DEVICE) -> str:
    return f"contactpoint/v1/{site}/{device}/{kind}"


def encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def new_id() -> str:
    return uuid.uuid4().hex


def contact_message(contact_id: str | None = None, msg_id: str | None = None) -> dict[str, Any]:
    """The golden contact message, optionally as another contact (ids rewritten)."""
    msg = copy.deepcopy(golden("contact.json"))
    if msg_id is not None:
        msg["msg_id"] = msg_id
    if contact_id is not None:
        c = msg["contact"]
        c["id"] = contact_id
        for event in c["events"]:
            event["id"] = new_id()
            event["contact_id"] = contact_id
    return msg


def event_message(event_id: str | None = None, msg_id: str | None = None) -> dict[str, Any]:
    msg = copy.deepcopy(golden("event.json"))
    msg["msg_id"] = msg_id or new_id()
    msg["event"]["id"] = event_id or new_id()
    return msg


def chunk_frame(
    *,
    clip_id: str,
    seq: int,
    total: int,
    offset: int,
    data: bytes,
    clip_sha256: str,
    clip_bytes: int,
    codec: str = "wav",
    device: str = DEVICE,
    site: str = SITE,
    chunk_sha256: str | None = None,
    header_extra: dict[str, Any] | None = None,
) -> bytes:
    """``b"CPC1" | uint32 BE length | JSON header | data``, as docs/WIRE.md describes."""
    header = {
        "schema": 1,
        "msg_id": f"{clip_id}.{seq}",
        "kind": "clip_chunk",
        "device": device,
        "site": site,
        "clip_id": clip_id,
        "seq": seq,
        "total": total,
        "offset": offset,
        "size": len(data),
        "chunk_sha256": chunk_sha256 or hashlib.sha256(data).hexdigest(),
        "clip_sha256": clip_sha256,
        "clip_bytes": clip_bytes,
        "codec": codec,
        "sample_rate": 16000,
        **(header_extra or {}),
    }
    raw = json.dumps(header).encode()
    return b"CPC1" + struct.pack(">I", len(raw)) + raw + data


class Clip:
    """A clip's bytes cut into frames."""

    def __init__(self, data: bytes, chunk_size: int, clip_id: str | None = None) -> None:
        self.data = data
        self.id = clip_id or new_id()
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.offsets = list(range(0, len(data), chunk_size))
        self.chunk_size = chunk_size

    @property
    def total(self) -> int:
        return len(self.offsets)

    def chunk(self, seq: int) -> bytes:
        offset = self.offsets[seq]
        return self.data[offset : offset + self.chunk_size]

    def frame(self, seq: int, *, corrupt: bool = False) -> bytes:
        data = self.chunk(seq)
        sha = hashlib.sha256(data).hexdigest()
        if corrupt:  # a bit flipped in transit: the header's sha256 no longer matches
            data = bytes([data[0] ^ 0x01]) + data[1:]
        return chunk_frame(
            clip_id=self.id, seq=seq, total=self.total, offset=self.offsets[seq], data=data,
            clip_sha256=self.sha256, clip_bytes=len(self.data), chunk_sha256=sha,
        )  # fmt: skip


class FakeClock:
    """Wall-clock nanoseconds that move only when told."""

    def __init__(self, start_ns: int = 1_795_424_400 * NS) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * NS)


def wait_until(
    predicate: Callable[[], bool],
    what: str,
    timeout_s: float = STALL_S,
    *,
    progress: Callable[[], Any] | None = None,
) -> None:
    """Poll ``predicate`` until it holds (tests/waiting.py): fail once ``progress`` has not
    moved for ``timeout_s`` (without ``progress``: after ``timeout_s``)."""
    wait_for(predicate, what, progress=progress, stall_s=timeout_s, poll_s=0.02)


class TestClient:
    """A paho client for the tests: publishes with QoS 1 (waiting for the broker's ack) and
    collects what it subscribed to."""

    __test__ = False

    def __init__(self, port: int, client_id: str = "") -> None:
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{new_id()[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_message = lambda _c, _u, msg: self.received.put(
            (msg.topic, bytes(msg.payload))
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=STALL_S)
        assert info.is_published(), f"broker did not ack a publish on {topic}"

    def subscribe(self, topic_filter: str) -> None:
        done: queue.Queue[bool] = queue.Queue()
        self.client.on_subscribe = lambda *_args: done.put(True)
        self.client.subscribe(topic_filter, qos=1)
        done.get(timeout=STALL_S)

    def next_message(self, timeout_s: float = STALL_S) -> tuple[str, bytes]:
        return self.received.get(timeout=timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
