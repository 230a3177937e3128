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


def contact_message(
    contact_id: str | None = None, msg_id: str | None = None, *, clip: Clip | None = None
) -> dict[str, Any]:
    """The golden contact message, optionally as another contact (ids rewritten), optionally
    announcing ``clip`` (its id, size and sha256; a clip's identity is its contact's)."""
    if clip is not None:
        contact_id = clip.id
    msg = copy.deepcopy(golden("contact.json"))
    if clip is not None:
        msg["contact"]["clip"].update(sha256=clip.sha256, bytes=len(clip.data), codec="wav")
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


# -- poison: JSON that Python reads but no database, file or log can hold --------------------------

#: raw JSON tokens (as they travel, not Python values): json.loads reads each without complaint
POISON_TOKENS: dict[str, bytes] = {
    "surrogate": b'"\\ud800"',  # a lone high surrogate: UTF-8 cannot encode it
    "low-surrogate": b'"x\\udfff"',
    "infinity": b"1e400",  # read as float('inf')
    "minus-infinity": b"-1e400",
    "huge-int": b"9" * 400,  # an int no database column holds (and float() overflows on)
    "int-2**64": str(2**64).encode(),
}


def with_token(msg: dict[str, Any], path: tuple[str | int, ...], token: bytes) -> bytes:
    """``msg`` as JSON with the value at ``path`` replaced by the raw ``token``."""
    marker = "@@poison@@"
    doc = copy.deepcopy(msg)
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = marker
    raw = json.dumps(doc).encode()
    assert raw.count(f'"{marker}"'.encode()) == 1
    return raw.replace(f'"{marker}"'.encode(), token)


#: where the poison goes: a path inside each kind of message (a field the parser checks, and
#: one it keeps as sent)
POISON_PLACES: list[tuple[str, tuple[str | int, ...]]] = [
    ("contact", ("contact", "mode")),
    ("contact", ("contact", "duration_s")),
    ("contact", ("contact", "events", 1, "receipt_id")),
    ("event", ("event", "data")),
    ("event", ("event", "kind")),
    ("status", ("status", "version")),
    ("status", ("status", "outbox_depth")),
]


def poison_message(kind: str, path: tuple[str | int, ...], token: bytes) -> bytes:
    msg = (
        contact_message()
        if kind == "contact"
        else event_message()
        if kind == "event"
        else golden(f"{kind}.json")
    )
    return with_token(msg, path, token)


def run_piped(argv: list[str], reader: str, cwd: Path) -> tuple[int, str]:
    """Run ``contactpoint ARGV`` (``python -m provisioning.main``) with its standard output
    piped into a reader that stops early: ``head`` (``| head -n 1``: reads the first line and
    exits) or ``gone`` (a process that exits before the first byte is written, so the very
    first write finds no reader).
    Returns (exit code, standard error)."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "provisioning.main", *argv]
    if reader == "head":
        writer = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert writer.stdout is not None
        head = subprocess.Popen(["head", "-n", "1"], stdin=writer.stdout, stdout=subprocess.PIPE)
        writer.stdout.close()  # only head reads it now: when head exits, the pipe is closed
        first, _ = head.communicate(timeout=120)
        assert head.returncode == 0
        assert len(first.splitlines()) == 1
    else:
        read_end, write_end = os.pipe()
        subprocess.run(["true"], stdin=read_end, check=True, timeout=60)  # closes at once
        os.close(read_end)  # no reader is left
        writer = subprocess.Popen(command, cwd=cwd, stdout=write_end, stderr=subprocess.PIPE)
        os.close(write_end)
    _, err = writer.communicate(timeout=120)
    return writer.returncode, err.decode()
