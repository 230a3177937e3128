"""The publisher against a real mosquitto on loopback: order, PUBACK-only marking, clips,
broker restarts, status and last will, resend requests, refused PUBACKs, MQTT 3.1.1."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.clock import NS, FakeClock
from edge.config import MqttSection
from edge.publish import mqtt as mqtt_module
from edge.publish import wire
from edge.publish._link import resolve
from edge.publish.mqtt import LinkConfigError, Publisher, backoff_delay
from edge.records import ClipInfo, ContactRecord, EventRecord
from edge.store import OutboxRow, Store
from provisioning.broker import LocalBroker, free_port
from tests.waiting import wait_for
from tests.wire_samples import CLIP, CONTACT, DEVICE, ORPHAN, SITE

ALL = f"contactpoint/v1/{SITE}/{DEVICE}/#"
STATUS = wire.topic(SITE, DEVICE, "status")


# --- helpers -------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` until it holds (tests/waiting.py: a generous bound, for things that
    happen once); fail naming ``what``."""
    wait_for(predicate, what, poll_s=0.01)


def drained(pub: Publisher) -> bool:
    """Until the outbox is empty, as long as the publisher keeps publishing or acknowledging."""
    wait_for(
        lambda: pub.drain(0.1),
        "the outbox to drain",
        progress=lambda: pub.stats,  # published, acknowledged, in flight, reconnects ...
    )
    return True


class Sink:
    """A test subscriber (QoS 1) that records every message it gets."""

    def __init__(
        self,
        port: int,
        topic: str = ALL,
        *,
        client_id: str = "test-sink",
        persistent: bool = False,
    ) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._topic = topic
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        client.reconnect_delay_set(1, 1)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600 if persistent else 0
        client.connect("127.0.0.1", port, 30, clean_start=not persistent, properties=props)
        client.loop_start()
        self.client = client
        wait_for(self._subscribed.is_set, "the test sink to subscribe")

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        client.subscribe(self._topic, qos=1)

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[paho.MQTTMessage]], bool], what: str
    ) -> list[paho.MQTTMessage]:
        """Until ``predicate`` holds for the messages so far, as long as messages keep coming."""

        def holds() -> bool:
            with self._cond:
                return predicate(self.messages)

        wait_for(
            holds,
            what,
            progress=lambda: len(self.messages),
            seen=lambda: [m.topic for m in list(self.messages)],
            poll_s=0.01,
        )
        with self._cond:
            return list(self.messages)

    def on(self, kind: str) -> list[paho.MQTTMessage]:
        with self._cond:
            return [m for m in self.messages if m.topic == wire.topic(SITE, DEVICE, kind)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def frame(payload: bytes | bytearray) -> tuple[dict[str, Any], bytes]:
    assert payload[:4] == wire.CHUNK_MAGIC
    (length,) = struct.unpack(">I", payload[4:8])
    header: dict[str, Any] = json.loads(payload[8 : 8 + length])
    return header, bytes(payload[8 + length :])


def chunk_seqs(messages: list[paho.MQTTMessage]) -> set[int]:
    return {frame(m.payload)[0]["seq"] for m in messages}


def orphan(n: int) -> EventRecord:
    return replace(ORPHAN, id=f"e{n:031d}", t_ns=ORPHAN.t_ns + n * NS)


def contact(n: int, clip: ClipInfo | None = None) -> ContactRecord:
    return replace(CONTACT, id=f"c{n:031d}", events=(), clip=clip)


def write_clip(data_dir: Path, n: int, size: int, *, rel: str | None = None) -> ClipInfo:
    data = random.Random(n).randbytes(size)
    rel = rel or f"clips/c{n:031d}.wav"
    path = data_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return replace(
        CLIP,
        contact_id=f"c{n:031d}",
        path=rel,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=size,
    )


def save_event(store: Store, rec: EventRecord) -> None:
    assert store.save_event(rec, [wire.event_message(rec, DEVICE, SITE)])


def save_contact(store: Store, rec: ContactRecord) -> None:
    messages = [wire.contact_message(rec, DEVICE, SITE)]
    if rec.clip is not None:
        messages.append(wire.clip_message(rec.clip, DEVICE, SITE))
    assert store.save_contact(rec, messages)


class Rig:
    """A store, a data dir and a factory for started publishers that are stopped at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir()
        self.store = Store.open(self.data_dir / "contactpoint.db")
        self.clock = FakeClock(synced=False)
        self.publishers: list[Publisher] = []
        self.sinks: list[Sink] = []

    def publisher(
        self,
        broker_url: str,
        *,
        start: bool = True,
        on_acked: Callable[[list[int]], None] | None = None,
        **cfg: Any,
    ) -> Publisher:
        settings = {
            "broker": broker_url,
            "chunk_bytes": 1024,
            "backoff_min_s": 0.05,
            "backoff_max_s": 0.2,
            **cfg,
        }
        pub = Publisher(
            MqttSection(**settings),
            device=DEVICE,
            site=SITE,
            data_dir=self.data_dir,
            store=self.store,
            version="9.9.9",
            clock=self.clock,
            on_acked=on_acked,
            free_disk=lambda: 123_456_789,
        )
        self.publishers.append(pub)
        if start:
            pub.start()
        return pub

    def sink(self, port: int, topic: str = ALL, **kwargs: Any) -> Sink:
        sink = Sink(port, topic, **kwargs)
        self.sinks.append(sink)
        return sink

    def close(self) -> None:
        for pub in self.publishers:
            pub.stop()
        for sink in self.sinks:
            sink.close()
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def status_of(msg: paho.MQTTMessage) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(msg.payload)
    return payload


# --- the reconnect schedule (pure) ---------------------------------------------------------


def test_backoff_grows_is_capped_and_jittered_within_bounds() -> None:
    lo, hi = 0.5, 30.0
    low = [backoff_delay(a, lo, hi, lambda: 0.0) for a in range(12)]
    high = [backoff_delay(a, lo, hi, lambda: 0.999999) for a in range(12)]
    assert low == sorted(low)
    assert high == sorted(high)
    assert low[0] == lo
    assert high[3] > high[2] > high[1] > high[0]
    assert max(high) <= hi
    assert high[-1] == pytest.approx(hi)
    rng = random.Random(7)
    for attempt in range(40):
        delays = {backoff_delay(attempt, lo, hi, rng.random) for _ in range(50)}
        assert all(lo <= d <= hi for d in delays)
        ceiling = min(hi, lo * 2**attempt)
        assert all(d >= ceiling / 2 for d in delays)  # jitter over the upper half only
        if ceiling > lo:
            assert len(delays) > 1  # really jittered


def test_backoff_with_max_below_min_waits_min_and_rejects_negative_attempts() -> None:
    assert backoff_delay(5, 2.0, 0.5, lambda: 0.7) == 2.0
    with pytest.raises(ValueError):
        backoff_delay(-1, 0.5, 1.0, random.random)


# --- configuration errors (no broker) ------------------------------------------------------


def test_bad_ca_file_is_named(rig: Rig, tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(LinkConfigError, match=r"mqtt\.ca_file: .*ca\.pem"):
        rig.publisher("mqtts://127.0.0.1:8883", start=False, ca_file=str(bad))
    with pytest.raises(LinkConfigError, match=r"mqtt\.ca_file: .*absent\.pem does not exist"):
        resolve(MqttSection(broker="mqtts://h:1", ca_file=str(tmp_path / "absent.pem")))


def test_bad_client_certificate_and_misplaced_tls_are_named(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("garbage\n")
    with pytest.raises(LinkConfigError, match=r"client\.pem"):
        resolve(MqttSection(broker="mqtts://h:1", cert_file=str(cert)))
    with pytest.raises(LinkConfigError, match=r"use mqtts://"):
        resolve(MqttSection(broker="mqtt://h:1", cert_file=str(cert)))


def test_password_comes_from_its_file_and_is_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-value\n")
    link = resolve(MqttSection(username="dev", password_file=str(secret)))
    assert link.password == "s3cret-value"
    assert "s3cret" not in repr(link)
    assert "s3cret" not in str(link)
    missing = tmp_path / "nope"
    with pytest.raises(LinkConfigError, match=r"mqtt\.password_file: .*nope") as err:
        resolve(MqttSection(username="dev", password_file=str(missing)))
    assert "s3cret" not in str(err.value)


# --- against mosquitto ---------------------------------------------------------------------


def test_rows_leave_in_seq_order_on_their_topics(rig: Rig, broker: LocalBroker) -> None:
    save_event(rig.store, orphan(1))
    save_event(rig.store, orphan(2))
    save_contact(rig.store, contact(3))
    save_event(rig.store, orphan(4))
    rows = rig.store.outbox.pending()
    sink = rig.sink(broker.port)
    acked: list[int] = []

    def on_acked(seqs: list[int]) -> None:
        acked.extend(seqs)
        rig.store.outbox.mark_sent(seqs, 1)

    pub = rig.publisher(broker.url, on_acked=on_acked)
    assert drained(pub)
    got = sink.wait_for(lambda ms: len([m for m in ms if m.topic != STATUS]) >= 4, "4 rows")
    data = [m for m in got if m.topic != STATUS]
    assert [json.loads(m.payload)["msg_id"] for m in data] == [r.msg_id for r in rows]
    for msg, row in zip(data, rows, strict=True):
        assert msg.topic == wire.topic(SITE, DEVICE, row.kind)
        assert json.loads(msg.payload) == row.payload
    assert sorted(acked) == [r.seq for r in rows]
    assert rig.store.outbox.depth() == 0
    assert pub.stats.published == 4
    assert pub.stats.acked == 4
    assert pub.stats.failed == 0


def test_nothing_is_marked_before_the_puback(rig: Rig, broker: LocalBroker) -> None:
    acked: list[int] = []

    def on_acked(seqs: list[int]) -> None:
        acked.extend(seqs)
        rig.store.outbox.mark_sent(seqs, 1)

    pub = rig.publisher(broker.url, on_acked=on_acked)
    wait_until(lambda: pub.connected, "the publisher to connect")
    process = broker._process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)  # the broker reads nothing, acknowledges nothing
    try:
        for n in range(3):
            save_event(rig.store, orphan(n))
        seqs = [r.seq for r in rig.store.outbox.pending()]
        pub.notify()
        wait_until(lambda: pub.stats.published == 3, "3 publishes on the wire")
        assert acked == []
        assert rig.store.outbox.depth() == 3
        assert pub.stats.inflight == 3
    finally:
        os.kill(process.pid, signal.SIGCONT)
    assert drained(pub)
    assert sorted(acked) == seqs


def test_broker_down_at_start_then_up(rig: Rig, broker: LocalBroker) -> None:
    broker.stop()
    save_event(rig.store, orphan(1))
    pub = rig.publisher(broker.url)
    wait_until(lambda: "cannot reach" in pub.stats.last_error, "a failed connection attempt")
    assert rig.store.outbox.depth() == 1
    assert not pub.connected
    broker.start()
    assert drained(pub)
    assert pub.stats.acked == 1


def test_clip_travels_in_chunks_that_reassemble(rig: Rig, broker: LocalBroker) -> None:
    clip = write_clip(rig.data_dir, 5, 5000)
    save_contact(rig.store, contact(5, clip))
    sink = rig.sink(broker.port)
    pub = rig.publisher(broker.url)
    assert drained(pub)
    total = -(-5000 // 1024)
    got = sink.wait_for(lambda ms: len(sink.on("clip")) >= total, "all chunks")
    assert next(m.topic for m in got if m.topic != STATUS).endswith("/contact")  # contact first
    parts = sorted((frame(m.payload) for m in sink.on("clip")), key=lambda p: p[0]["seq"])
    assert [h["seq"] for h, _ in parts] == list(range(total))
    body = b"".join(data for _, data in parts)
    assert hashlib.sha256(body).hexdigest() == clip.sha256
    assert len(body) == clip.bytes
    for header, data in parts:
        assert header["msg_id"] == f"{clip.contact_id}.{header['seq']}"
        assert header["offset"] == header["seq"] * 1024
        assert header["size"] == len(data)
        assert header["total"] == total
        assert header["clip_bytes"] == 5000
        assert header["chunk_sha256"] == hashlib.sha256(data).hexdigest()
        assert (header["device"], header["site"], header["clip_id"]) == (
            DEVICE,
            SITE,
            clip.contact_id,
        )
    assert rig.store.outbox.depth() == 0


def test_broker_restart_mid_clip_loses_nothing(rig: Rig, broker: LocalBroker) -> None:
    size, chunk = 400 * 1024, 1024
    clip = write_clip(rig.data_dir, 6, size)
    save_contact(rig.store, contact(6, clip))
    save_event(rig.store, orphan(7))
    sink = rig.sink(broker.port, client_id="restart-sink", persistent=True)
    pub = rig.publisher(broker.url, inflight=2, chunk_bytes=chunk)
    wait_until(lambda: pub.stats.acked >= 20, "the clip to be under way")
    broker.stop()
    assert pub.stats.acked < 1 + size // chunk  # really mid-clip
    assert rig.store.outbox.depth() >= 2
    broker.start()
    assert drained(pub)
    sink.wait_for(
        lambda ms: (
            chunk_seqs(sink.on("clip")) == set(range(size // chunk)) and bool(sink.on("event"))
        ),
        "every chunk and the event after the clip",
    )
    assert len(sink.on("contact")) >= 1
    assert pub.stats.reconnects >= 1
    assert rig.store.outbox.depth() == 0


def test_retained_status_online_on_connect(rig: Rig, broker: LocalBroker) -> None:
    save_event(rig.store, orphan(1))
    first = rig.sink(broker.port, STATUS, client_id="first")
    rig.publisher(broker.url, start=True, on_acked=lambda seqs: None)  # the row stays queued
    first.wait_for(lambda ms: any(status_of(m)["status"]["online"] for m in ms), "online")
    later = rig.sink(broker.port, STATUS, client_id="later")
    (msg,) = later.wait_for(lambda ms: len(ms) >= 1, "the retained status")
    assert msg.retain
    payload = status_of(msg)
    assert (payload["kind"], payload["device"], payload["site"]) == ("status", DEVICE, SITE)
    status = payload["status"]
    assert status["online"] is True
    assert status["version"] == "9.9.9"
    assert status["outbox_depth"] == 1
    assert status["free_disk_bytes"] == 123_456_789
    assert status["clock_synced"] is False
    assert status["boot_id"] == rig.clock.boot_id()


def test_last_will_says_offline_when_the_link_dies(rig: Rig, broker: LocalBroker) -> None:
    sink = rig.sink(broker.port, STATUS)
    pub = rig.publisher(broker.url)
    sink.wait_for(lambda ms: any(status_of(m)["status"]["online"] for m in ms), "online")
    client = pub._client
    assert client is not None
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)  # no DISCONNECT: the broker must publish the will
    got = sink.wait_for(
        lambda ms: any(not status_of(m)["status"]["online"] for m in ms), "the last will"
    )
    will = next(m for m in got if not status_of(m)["status"]["online"])
    assert status_of(will)["device"] == DEVICE
    sink.wait_for(lambda ms: status_of(ms[-1])["status"]["online"], "online again")
    wait_until(lambda: pub.stats.reconnects == 1, "the reconnect to be counted")


def test_clean_stop_publishes_offline(rig: Rig, broker: LocalBroker) -> None:
    sink = rig.sink(broker.port, STATUS)
    pub = rig.publisher(broker.url)
    sink.wait_for(lambda ms: any(status_of(m)["status"]["online"] for m in ms), "online")
    pub.stop()
    sink.wait_for(lambda ms: not status_of(ms[-1])["status"]["online"], "offline")


def test_mqtt311_mode_delivers_rows_and_status(rig: Rig, broker: LocalBroker) -> None:
    clip = write_clip(rig.data_dir, 8, 2048)
    save_contact(rig.store, contact(8, clip))
    sink = rig.sink(broker.port)
    pub = rig.publisher(broker.url, protocol="3.1.1")
    assert drained(pub)
    sink.wait_for(
        lambda ms: len(sink.on("clip")) == 2 and bool(sink.on("status")), "clip and status"
    )
    assert len(sink.on("contact")) == 1
    assert rig.store.outbox.depth() == 0


def test_resend_request_republishes_those_chunks_only(rig: Rig, broker: LocalBroker) -> None:
    clip = write_clip(rig.data_dir, 9, 3000)
    save_contact(rig.store, contact(9, clip))
    sink = rig.sink(broker.port)
    pub = rig.publisher(broker.url)
    assert drained(pub)
    sink.wait_for(lambda ms: len(sink.on("clip")) == 3, "the first 3 chunks")
    first = {frame(m.payload)[0]["seq"]: m.payload for m in sink.on("clip")}
    resend = wire.resend_topic(SITE, DEVICE)
    for bad in (
        b"not json",
        json.dumps({"clip_id": "../../../etc/passwd", "seqs": [0]}).encode(),
        json.dumps({"clip_id": clip.contact_id, "seqs": [3]}).encode(),  # out of range
    ):
        sink.client.publish(resend, bad, qos=1)
    sink.client.publish(resend, json.dumps({"clip_id": clip.contact_id, "seqs": [2, 0]}), qos=1)
    sink.wait_for(lambda ms: len(sink.on("clip")) >= 5, "2 resent chunks")
    again = sink.on("clip")[3:]
    assert len(again) == 2  # the rejected requests, handled before, sent nothing
    assert sorted(frame(m.payload)[0]["seq"] for m in again) == [0, 2]
    assert all(m.payload == first[frame(m.payload)[0]["seq"]] for m in again)
    assert pub.stats.resends == 1
    assert pub.stats.resends_rejected == 3


def test_resend_request_as_ranges_from_a_newer_sink(rig: Rig, broker: LocalBroker) -> None:
    """The sink asks in ranges (``[first, last]``, inclusive); bad ranges send nothing."""
    clip = write_clip(rig.data_dir, 10, 5000)  # 5 chunks of 1 KiB
    save_contact(rig.store, contact(10, clip))
    sink = rig.sink(broker.port)
    pub = rig.publisher(broker.url)
    assert drained(pub)
    sink.wait_for(lambda ms: len(sink.on("clip")) == 5, "the first 5 chunks")
    resend = wire.resend_topic(SITE, DEVICE)
    for bad in (
        {"clip_id": clip.contact_id, "ranges": [[3, 5]]},  # past the last chunk
        {"clip_id": clip.contact_id, "ranges": [[2, 1]]},  # backwards
        {"clip_id": clip.contact_id, "ranges": [[-1, 0]]},
        {"clip_id": clip.contact_id, "ranges": [1, 2]},  # not pairs
    ):
        sink.client.publish(resend, json.dumps(bad), qos=1)
    request = {"clip_id": clip.contact_id, "ranges": [[0, 0], [2, 3]]}
    sink.client.publish(resend, json.dumps(request), qos=1)
    sink.wait_for(lambda ms: len(sink.on("clip")) >= 8, "3 resent chunks")
    again = sink.on("clip")[5:]
    assert sorted(frame(m.payload)[0]["seq"] for m in again) == [0, 2, 3]
    assert pub.stats.resends == 1
    assert pub.stats.resends_rejected == 4


def test_refused_puback_leaves_the_row_unsent(rig: Rig, tmp_path: Path) -> None:
    root = f"contactpoint/v1/{SITE}/{DEVICE}"
    acl = tmp_path / "acl"
    acl.write_text(
        f"topic readwrite {root}/contact\n"
        f"topic readwrite {root}/status\n"
        f"topic readwrite {root}/cmd/resend\n"
        "topic read contactpoint/v1/#\n"  # event: not allowed to write
    )
    with LocalBroker(tmp_path / "acl-broker", extra=f"acl_file {acl}") as broker:
        save_event(rig.store, orphan(1))
        save_contact(rig.store, contact(2))
        event_seq, contact_seq = (r.seq for r in rig.store.outbox.pending())
        pub = rig.publisher(broker.url)
        wait_until(lambda: pub.stats.failed == 1 and pub.stats.acked == 1, "one refusal")
        assert not pub.drain(0.3)
        assert [r.seq for r in rig.store.outbox.pending()] == [event_seq]
        assert contact_seq not in [r.seq for r in rig.store.outbox.pending()]
        assert "Not authorized" in pub.stats.last_error
        pub.stop()


def test_missing_or_escaping_clip_does_not_block_the_queue(
    rig: Rig, broker: LocalBroker, tmp_path: Path
) -> None:
    gone = write_clip(rig.data_dir, 10, 1500)
    (rig.data_dir / gone.path).unlink()
    outside = write_clip(tmp_path, 11, 1500, rel="outside.wav")
    escaping = replace(outside, path="../outside.wav")  # a real file, but not in the data dir
    save_contact(rig.store, contact(10, gone))
    save_contact(rig.store, contact(11, escaping))
    save_event(rig.store, orphan(12))
    sink = rig.sink(broker.port)
    pub = rig.publisher(broker.url)
    assert drained(pub)
    sink.wait_for(lambda ms: len(sink.on("event")) == 1, "the event after the clips")
    assert len(sink.on("contact")) == 2
    assert sink.on("clip") == []
    assert pub.stats.clips_missing == 2


def _tls_material(tmp: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    files = {n: tmp / n for n in ("ca.key", "ca.pem", "server.key", "server.pem")}
    files |= {"client.key": tmp / "client.key", "client.pem": tmp / "client.pem"}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str | Path) -> None:
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", files["ca.key"], "-out", files["ca.pem"],
        "-days", "1", "-subj", "/CN=test-ca")  # fmt: skip
    san = tmp / "san.ext"
    san.write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("server", "127.0.0.1"), ("client", DEVICE)):
        csr = tmp / f"{name}.csr"
        run("req", *ec, "-keyout", files[f"{name}.key"], "-out", csr, "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", csr, "-CA", files["ca.pem"], "-CAkey", files["ca.key"],
            "-CAcreateserial", "-out", files[f"{name}.pem"], "-days", "1",
            "-extfile", san)  # fmt: skip
    return files


def test_tls_with_client_certificate_and_password(rig: Rig, tmp_path: Path) -> None:
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed")
    pki = tmp_path / "pki"
    pki.mkdir()
    tls = _tls_material(pki)
    users = pki / "users"
    subprocess.run([passwd, "-b", "-c", str(users), "dev", "right"], check=True)
    good, wrong = pki / "good", pki / "wrong"
    good.write_text("right\n")
    wrong.write_text("wrong\n")
    port = free_port()
    extra = "\n".join(
        [
            f"password_file {users}",
            f"listener {port} 127.0.0.1",
            f"cafile {tls['ca.pem']}",
            f"certfile {tls['server.pem']}",
            f"keyfile {tls['server.key']}",
            "require_certificate true",
        ]
    )
    save_event(rig.store, orphan(1))
    with LocalBroker(tmp_path / "tls-broker", extra=extra):
        settings: dict[str, Any] = {
            "ca_file": str(tls["ca.pem"]),
            "cert_file": str(tls["client.pem"]),
            "key_file": str(tls["client.key"]),
            "username": "dev",
        }
        url = f"mqtts://127.0.0.1:{port}"
        refused = rig.publisher(url, password_file=str(wrong), **settings)
        wait_until(lambda: "refused the connection" in refused.stats.last_error, "a refusal")
        refused.stop()
        assert rig.store.outbox.depth() == 1
        assert "wrong" not in refused.stats.last_error
        pub = rig.publisher(url, password_file=str(good), **settings)
        assert drained(pub)
        pub.stop()


def test_status_is_refreshed_with_the_current_depth(rig: Rig, broker: LocalBroker) -> None:
    sink = rig.sink(broker.port, STATUS)
    rig.publisher(broker.url, status_interval_s=1, on_acked=lambda seqs: None)
    (first,) = sink.wait_for(lambda ms: len(ms) >= 1, "the first status")
    assert status_of(first)["status"]["outbox_depth"] == 0
    save_event(rig.store, orphan(1))  # published, acknowledged, but never marked (hook)
    got = sink.wait_for(lambda ms: len(ms) >= 2, "a refreshed status")
    assert status_of(got[1])["status"]["outbox_depth"] == 1
    assert status_of(got[1])["msg_id"] != status_of(first)["msg_id"]


# --- waking: no polling (issue #13) -------------------------------------------------------------


class _FrozenTime:
    """The publisher module's ``time`` with its monotonic clock stopped: no deadline of the
    publisher ever passes, so whatever it does happens because something woke it."""

    def __init__(self) -> None:
        self._now = time.monotonic()

    def monotonic(self) -> float:
        return self._now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_a_committed_row_goes_out_at_once_without_a_notify_nor_a_poll(
    rig: Rig, broker: LocalBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's commit wakes the publisher (Outbox.watch): the row is published with the
    publisher's clock stopped (so no poll period can ever come round) and nobody calling
    ``notify()``; before, the row waited for the next outbox poll."""
    monkeypatch.setattr(mqtt_module, "time", _FrozenTime())
    reads: list[int] = []
    pending = rig.store.outbox.pending

    def counted(limit: int = 100, after_seq: int = 0) -> list[OutboxRow]:
        rows = pending(limit, after_seq)
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(rig.store.outbox, "pending", counted)
    sink = rig.sink(broker.port)
    rig.publisher(broker.url)
    sink.wait_for(lambda ms: any(m.topic == STATUS for m in ms), "the status on connect")
    wait_until(lambda: bool(reads), "the publisher's first read of the (empty) outbox")
    save_event(rig.store, orphan(1))  # committed: no notify() from here
    sink.wait_for(lambda ms: len(rig_events(ms)) == 1, "the event, woken by the commit")
    save_contact(rig.store, contact(2))
    sink.wait_for(
        lambda ms: any(m.topic == wire.topic(SITE, DEVICE, "contact") for m in ms), "the contact"
    )


def rig_events(messages: list[paho.MQTTMessage]) -> list[paho.MQTTMessage]:
    return [m for m in messages if m.topic == wire.topic(SITE, DEVICE, "event")]


def test_stop_ends_an_idle_publisher_at_once(
    rig: Rig, broker: LocalBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its clock stopped nothing is ever due, so only the wake-up of ``stop()`` ends the
    wait: the thread ends (and says goodbye: status offline) well within the join."""
    monkeypatch.setattr(mqtt_module, "time", _FrozenTime())
    sink = rig.sink(broker.port)
    pub = rig.publisher(broker.url, keepalive_s=600)  # its keep-alive timer: 150 s away
    sink.wait_for(lambda ms: any(m.topic == STATUS for m in ms), "the status on connect")
    wait_until(lambda: pub.connected, "the connection")
    thread = pub._thread
    assert thread is not None
    pub.stop(timeout_s=30.0)
    assert not thread.is_alive()
    sink.wait_for(
        lambda ms: any(m.topic == STATUS and not status_of(m)["status"]["online"] for m in ms),
        "the offline status of a clean stop",
    )
