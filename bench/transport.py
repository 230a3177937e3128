"""The transport, edge outbox → mosquitto → cloud sink, on loopback (one machine, one run).

(a) Ingest rate, three workloads: ``--small`` contacts without a clip (small messages, at
    least 20,000 so that ``mosquitto_sub``'s start-up does not dominate its time), ``--kb-contacts``
    contacts with a ``--clip-kb`` clip, and ``--wav-contacts`` contacts with a real
    ``--wav-seconds`` 16 kHz 16-bit mono WAV clip (60 s: 1.92 MB). Each contact has
    ``tests/wire_samples.py``'s shape (4 events, 3 tags). They are saved in an edge store and
    pushed by the real ``Publisher`` into a ``LocalBroker`` while three consumers are away with
    persistent sessions, so the broker queues the whole stream for each. Then each drains its
    queue alone, timed from its start to its last message: ``mosquitto_sub -C`` (the broker's
    own ceiling), the ``Sink`` on SQLite and on PostgreSQL (a throwaway cluster from
    ``tests/services.py``, fsync off). Prints contacts/s and clip MB/s, the ratio sink /
    mosquitto_sub and, with clips, sink clip MB/s / the disk's sequential write speed
    (``dd conv=fsync`` of the same number of bytes, in the same run).
(b) Latency. With a sink (SQLite) and the publisher running live, contacts are saved at
    ``--latency-rate`` per second; for each, from the moment ``Store.save_contact`` returned
    (committed) to the moment the sink's ``Ingest.handle_batch`` returned (committed) with it, both
    on this process's monotonic clock. Median and p99; and the same up to the moment a plain
    subscriber of the broker has the contact message (the device's and the broker's share).
(c) Bytes on the wire per contact-minute for each codec: the same short shift
    (``edge.scenario.busy_shift``, as ``bench/shift.py`` plays it) simulated with wav, flac and
    opus, published, and every MQTT payload counted by a subscriber; contact JSON + clip chunk
    frames over the contacts' total duration (clips carry pre/post roll on top).

Only loopback; everything lives in a temporary directory that is removed at the end.

    .venv/bin/python bench/transport.py [--small 20000] [--kb-contacts 200] [--clip-kb 64]
        [--wav-contacts 40] [--wav-seconds 60] [--latency-contacts 200] [--latency-rate 20]
        [--codec-minutes 12] [--no-postgres] [--only a|b|c]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_sink import Ingest, Outcome, Sink, SinkConfig
from cloud_sink.ingest import ClipKey, Result
from contract import wire as contract_wire
from edge.clock import SystemClock
from edge.config import Config, MqttSection
from edge.publish import wire
from edge.publish.mqtt import Publisher
from edge.records import ClipInfo, ContactRecord, EventRecord
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from provisioning.broker import LocalBroker

NS = 1_000_000_000
WAIT_S = 300.0
CONTACT_TOPIC = contract_wire.topic("+", "+", contract_wire.CONTACT)
CLIP_TOPIC = contract_wire.topic("+", "+", contract_wire.CLIP)
DEVICE, SITE = "cp-bench", "bench-site"
START_WALL_NS = 1_795_424_400 * NS  # 2026-11-23T09:00:00Z
REPO = Path(__file__).resolve().parents[1]


# -- the edge side ---------------------------------------------------------------------------


def wav_clip(seconds: float, rng: random.Random) -> bytes:
    """A real 16 kHz 16-bit mono WAV file of ``seconds``: a voice-band tone in noise."""
    frames = int(seconds * 16000)
    t = np.arange(frames) / 16000
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 1500, frames)
    samples = (3000 * np.sin(2 * np.pi * 220 * t) + noise).clip(-32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.tobytes())
    return out.getvalue()


def contact_with_clip(
    data_dir: Path, n: int, clip: int | bytes, rng: random.Random
) -> ContactRecord:
    """Contact ``n`` as ``tests/wire_samples.py`` shapes one: 65 s, arrival, receipt, a red
    press, departure, three tags; its clip is ``clip`` (bytes), or that many random bytes
    (none if 0)."""
    cid = f"{n:032x}"
    t0 = n * 100 * NS

    def event(i: int, kind: str, at_s: int, **more: Any) -> EventRecord:
        at = t0 + at_s * NS
        return EventRecord(f"{n:028x}{i:04x}", kind, at, START_WALL_NS + at, cid, **more)

    events = (
        event(0, "arrival", 10),
        event(1, "receipt", 50, receipt_id=f"R-{n}", data={"amount": 12.5}),
        event(2, "red", 60, button="red", role="red", gesture="short", duration_ns=NS // 10),
        event(3, "departure", 75),
    )
    clip_info = None
    if clip:
        data = clip if isinstance(clip, bytes) else rng.randbytes(clip)
        rel = f"clips/{cid}.wav"
        (data_dir / rel).write_bytes(data)
        clip_info = ClipInfo(
            contact_id=cid,
            path=rel,
            codec="wav",
            sample_rate=16000,
            start_index=(t0 + 7 * NS) * 16000 // NS,
            end_index=(t0 + 78 * NS) * 16000 // NS,
            start_ns=t0 + 7 * NS,
            end_ns=t0 + 78 * NS,
            sha256=hashlib.sha256(data).hexdigest(),
            bytes=len(data),
        )
    return ContactRecord(
        id=cid,
        mode="presence",
        start_ns=t0 + 10 * NS,
        end_ns=t0 + 75 * NS,
        start_wall_ns=START_WALL_NS + t0 + 10 * NS,
        end_wall_ns=START_WALL_NS + t0 + 75 * NS,
        ended_by="departure",
        tags=("negative", "not_positive", "productive"),
        events=events,
        clip=clip_info,
        clock_synced=True,
        boot_id="3c1e5a52-5b39-4a8e-9a39-6f0d7c1b2a11",
    )


def save(store: Store, rec: ContactRecord) -> None:
    """Save a contact with its outbox rows, as the edge's core does."""
    messages = [wire.contact_message(rec, DEVICE, SITE)]
    if rec.clip is not None:
        messages.append(wire.clip_message(rec.clip, DEVICE, SITE))
    if not store.save_contact(rec, messages):
        raise RuntimeError(f"contact {rec.id} was stored already")


def publisher(
    broker: LocalBroker, store: Store, data_dir: Path, device: str, site: str
) -> Publisher:
    cfg = MqttSection(
        broker=broker.url, status_interval_s=3600, backoff_min_s=0.05, backoff_max_s=0.5
    )
    return Publisher(
        cfg,
        device=device,
        site=site,
        data_dir=data_dir,
        store=store,
        version="bench",
        clock=SystemClock(),
    )


# -- the sink side ---------------------------------------------------------------------------


class Tracker(Ingest):
    """The sink's ingest, also noting when contacts are committed and clips completed.

    Installed in place of ``Sink.ingest`` (the Sink has no hook for it)."""

    def __init__(self, sink: Sink, contacts: int, clips: int, *, stamp_ids: bool) -> None:
        super().__init__(sink.db, sink.config.data_dir, clock=sink.clock)
        self.want_contacts, self.want_clips = contacts, clips
        self.stamp_ids = stamp_ids
        self.got_contacts = 0
        self.got_clips = 0
        self.committed: dict[str, int] = {}  # contact id -> monotonic ns after its commit
        self.done = threading.Event()
        self.done_at = 0.0  # perf_counter

    def handle_batch(self, messages: Sequence[tuple[str, bytes]]) -> list[Result]:
        results = super().handle_batch(messages)
        for (topic, payload), result in zip(messages, results, strict=True):
            self._note(topic, payload, result)
        return results

    def handle(self, topic: str, payload: bytes) -> Result:
        if hasattr(Ingest, "handle_batch"):  # it calls handle_batch: noted there
            return super().handle(topic, payload)
        result = super().handle(topic, payload)  # a sink from before batches (before/after)
        self._note(topic, payload, result)
        return result

    def _note(self, topic: str, payload: bytes, result: Result) -> None:
        if result.outcome is Outcome.STORED and topic.endswith("/contact"):
            now = time.monotonic_ns()
            self.got_contacts += 1
            if self.stamp_ids:
                self.committed[json.loads(payload)["contact"]["id"]] = now
            self._check()

    def assemble(self, key: ClipKey) -> bool:
        before = self.counters.snapshot().get("clip_complete", 0)
        ok = super().assemble(key)
        self.got_clips += self.counters.snapshot().get("clip_complete", 0) - before
        self._check()
        return ok

    def _check(self) -> None:
        enough = self.got_contacts >= self.want_contacts and self.got_clips >= self.want_clips
        if enough and not self.done.is_set():
            self.done_at = time.perf_counter()
            self.done.set()


def sink_config(broker: LocalBroker, data_dir: Path, db_url: str | None, group: str) -> SinkConfig:
    return SinkConfig(broker=broker.url, data_dir=data_dir, db_url=db_url, group=group)


def open_session(cfg: SinkConfig) -> None:
    """Connect once and leave: the broker keeps the session and queues for it."""
    sink = Sink(cfg).start()
    try:
        if not sink.subscribed.wait(10):
            raise RuntimeError(f"sink {cfg.group} did not subscribe")
    finally:
        sink.stop()


def mosquitto_sub(broker: LocalBroker, *extra: str) -> list[str]:
    return [
        "mosquitto_sub",
        "-h",
        "127.0.0.1",
        "-p",
        str(broker.port),
        "-V",
        "mqttv5",
        "-c",
        "-x",
        "3600",
        "-i",
        "bench-mosquitto-sub",
        "-q",
        "1",
        "-t",
        CONTACT_TOPIC,
        "-t",
        CLIP_TOPIC,
        *extra,
    ]


class PahoAlone:
    """paho-mqtt receiving as the sink's worker does (MQTT 5, persistent session, QoS 1,
    manual acks, ``loop()`` then ``loop_read()`` while messages keep coming) and doing nothing
    else: the ceiling of one Python worker's receive loop, without ingest."""

    def __init__(self, broker: LocalBroker, client_id: str) -> None:
        self.broker, self.got = broker, 0
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: self.subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.got += 1
        client.ack(msg.mid, msg.qos)

    def _connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self.broker.port, clean_start=False, properties=props)

    def open_session(self) -> None:
        self._connect()
        self.client.subscribe([(CONTACT_TOPIC, 1), (CLIP_TOPIC, 1)])
        deadline = time.monotonic() + 10
        while not self.subscribed.is_set() and time.monotonic() < deadline:
            self.client.loop(timeout=0.05)
        self.client.disconnect()

    def drain(self, n: int) -> float:
        """Seconds from connecting until ``n`` messages arrived."""
        t0 = time.perf_counter()
        self._connect()
        deadline = time.monotonic() + WAIT_S
        while self.got < n and time.monotonic() < deadline:
            self.client.loop(timeout=0.05)
            before = -1
            while before != self.got and self.got < n:  # read on while messages keep coming
                before = self.got
                self.client.loop_read()
        took = time.perf_counter() - t0
        self.client.disconnect()
        if self.got < n:
            raise RuntimeError(f"paho alone: {self.got}/{n} messages in {WAIT_S} s")
        return took


# -- (a) ingest rate -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drain:
    name: str
    seconds: float


def bench_ingest(work: Path, broker: LocalBroker, args: argparse.Namespace) -> None:
    rng = random.Random(1)
    workloads: list[tuple[str, int, int | bytes]] = [
        ("small", args.small, 0),
        (f"{args.clip_kb}kib", args.kb_contacts, args.clip_kb * 1024),
        ("wav", args.wav_contacts, wav_clip(args.wav_seconds, rng)),
    ]
    for label, n, clip in workloads:
        if n > 0:
            ingest_workload(work / f"a-{label}", broker, args, label=label, n=n, clip=clip)


def disk_write_s(path: Path, size: int) -> float:
    """Seconds ``dd`` takes to write ``size`` bytes sequentially and fsync them."""
    t0 = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={-(-size // 2**20)}", "conv=fsync"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    took = time.perf_counter() - t0
    path.unlink()
    return took


def ingest_workload(
    work: Path,
    broker: LocalBroker,
    args: argparse.Namespace,
    *,
    label: str,
    n: int,
    clip: int | bytes,
) -> None:
    sys.path.insert(0, str(REPO))  # tests/ is not an installed package
    from tests.services import PostgresCluster, PostgresUnavailableError

    work.mkdir(parents=True)
    clip_bytes = len(clip) if isinstance(clip, bytes) else clip
    pg: PostgresCluster | None = None
    sinks: dict[str, SinkConfig] = {
        "sink SQLite": sink_config(broker, work / "sink-sqlite", None, f"b-sqlite-{label}")
    }
    pg_note = "skipped (--no-postgres)"
    if not args.no_postgres:
        try:
            pg = PostgresCluster()
            pg.start()
            url = pg.create_database("bench_ingest")
            sinks["sink PostgreSQL"] = sink_config(broker, work / "sink-pg", url, f"b-pg-{label}")
            pg_note = ""
        except PostgresUnavailableError as exc:
            pg_note = f"skipped: {exc}"
            pg = None
    try:
        for cfg in sinks.values():
            open_session(cfg)
        subprocess.run(mosquitto_sub(broker, "-E"), check=True, stdout=subprocess.DEVNULL)
        alone = PahoAlone(broker, f"bench-paho-{label}")
        alone.open_session()

        edge = work / "edge-a"
        (edge / "clips").mkdir(parents=True)
        rng = random.Random(1)
        with Store.open(edge / STORE_NAME) as store:
            for i in range(n):
                save(store, contact_with_clip(edge, i + 1, clip, rng))
            pub = publisher(broker, store, edge, DEVICE, SITE)
            t0 = time.perf_counter()
            pub.start()
            drained = pub.drain(WAIT_S)
            publish_s = time.perf_counter() - t0
            stats = pub.stats
            pub.stop()
        if not drained:
            raise RuntimeError(f"the publisher did not drain in {WAIT_S} s: {stats}")
        chunks = n * wire.chunk_count(clip_bytes, MqttSection().chunk_bytes) if clip_bytes else 0
        messages = n + chunks
        clip_mb = n * clip_bytes / 1e6
        what = "no clip" if not clip_bytes else f"a {clip_bytes / 1e6:.2f} MB clip each"
        if isinstance(clip, bytes):
            what += f" ({args.wav_seconds:g}-s 16 kHz WAV)"
        print(
            f"(a) ingest [{label}]: {n:,} contacts, {what} = {messages:,} MQTT messages, "
            f"{clip_mb:.1f} MB of clip audio; queued in the broker for each consumer, then "
            "drained by each alone"
        )
        print(
            f"    (the edge Publisher pushed them in {publish_s:.2f} s: "
            f"{n / publish_s:,.0f} contacts/s, {stats.published / publish_s:,.0f} msg/s)"
        )

        wall0 = time.perf_counter()
        subprocess.run(
            mosquitto_sub(broker, "-C", str(messages), "-W", str(int(WAIT_S))),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        results = [Drain("mosquitto_sub", time.perf_counter() - wall0)]
        results.append(Drain("paho alone", alone.drain(messages)))
        for name, cfg in sinks.items():
            sink = Sink(cfg)
            tracker = Tracker(sink, n, n if clip_bytes else 0, stamp_ids=False)
            sink.ingest = tracker
            t0 = time.perf_counter()
            sink.start()
            ok = tracker.done.wait(WAIT_S)
            sink.stop()
            if not ok:
                raise RuntimeError(
                    f"{name}: {tracker.got_contacts}/{n} contacts, "
                    f"{tracker.got_clips} clips in {WAIT_S} s"
                )
            results.append(Drain(name, tracker.done_at - t0))
        disk_mb_s = clip_mb / disk_write_s(work / "dd.bin", n * clip_bytes) if clip_bytes else 0
        ceiling = results[0].seconds
        for r in results:
            ratio = "" if r is results[0] else f"  / mosquitto_sub = {ceiling / r.seconds:.3f}"
            if disk_mb_s and r.name.startswith("sink"):
                ratio += f"  clip MB/s / disk = {clip_mb / r.seconds / disk_mb_s:.3f}"
            print(
                f"    {r.name:<16} {r.seconds:6.2f} s  {messages / r.seconds:9,.0f} msg/s  "
                f"{n / r.seconds:9,.0f} contacts/s  {clip_mb / r.seconds:7.1f} clip MB/s{ratio}"
            )
        if disk_mb_s:
            print(f"    disk (dd conv=fsync, same bytes) {disk_mb_s:7.1f} MB/s")
        if pg_note:
            print(f"    sink PostgreSQL  {pg_note}")
    finally:
        if pg is not None:
            pg.stop()


# -- (b) latency -----------------------------------------------------------------------------


def bench_latency(work: Path, broker: LocalBroker, args: argparse.Namespace) -> None:
    n, clip_bytes = args.latency_contacts, args.clip_kb * 1024
    cfg = sink_config(broker, work / "sink-latency", None, "bench-latency")
    sink = Sink(cfg)
    tracker = Tracker(sink, n, n if clip_bytes else 0, stamp_ids=True)
    sink.ingest = tracker
    edge = work / "edge-b"
    (edge / "clips").mkdir(parents=True)
    rng = random.Random(2)
    records = [contact_with_clip(edge, 1_000_000 + i, clip_bytes, rng) for i in range(n)]
    committed: dict[str, int] = {}
    sink.start()
    subscriber = PayloadCounter(broker, SITE, DEVICE)  # when each contact left the broker
    try:
        if not sink.subscribed.wait(10):
            raise RuntimeError("the latency sink did not subscribe")
        with Store.open(edge / STORE_NAME) as store:
            pub = publisher(broker, store, edge, DEVICE, SITE)
            pub.start()
            try:
                due = time.perf_counter()
                for rec in records:
                    due += 1 / args.latency_rate
                    save(store, rec)  # the commit wakes the publisher (Outbox.watch)
                    committed[rec.id] = time.monotonic_ns()
                    time.sleep(max(0.0, due - time.perf_counter()))
                ok = tracker.done.wait(WAIT_S)
            finally:
                pub.stop()
    finally:
        sink.stop()
        subscriber.close()
    if not ok:
        raise RuntimeError(f"latency: {tracker.got_contacts}/{n} contacts arrived in {WAIT_S} s")
    ms = np.array([(tracker.committed[c] - t) / 1e6 for c, t in committed.items()])
    out = np.array([(subscriber.arrived[c] - t) / 1e6 for c, t in committed.items()])
    print(
        f"(b) latency, edge commit -> sink commit, {n} contacts (each with a {args.clip_kb} KiB "
        f"clip) at {args.latency_rate:g}/s, publisher and sink (SQLite) live:"
    )
    print(
        f"    median {np.median(ms):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, "
        f"min {ms.min():.1f} ms, max {ms.max():.1f} ms"
    )
    print(
        f"    of which edge commit -> a plain subscriber has the contact (the device's part and "
        f"the broker's): median {np.median(out):.1f} ms, p99 {np.percentile(out, 99):.1f} ms"
    )


# -- (c) bytes per contact-minute --------------------------------------------------------------


class PayloadCounter:
    """A subscriber that adds up MQTT payload bytes by topic kind (the last topic level)."""

    def __init__(self, broker: LocalBroker, site: str, device: str) -> None:
        self.bytes: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self.arrived: dict[str, int] = {}  # contact id -> monotonic ns of its first arrival
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._topic = wire.topic(site, device, "+")
        self._client.connect("127.0.0.1", broker.port)
        self._client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("the counting subscriber did not subscribe")

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        client.subscribe(self._topic, qos=1)

    def _on_subscribe(self, *_: Any) -> None:
        self.ready.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        at = time.monotonic_ns()
        kind = msg.topic.rsplit("/", 1)[-1]
        with self._lock:
            self.bytes[kind] += len(msg.payload)
            self.messages[kind] += 1
            if kind == contract_wire.CONTACT:
                self.arrived.setdefault(json.loads(msg.payload)["contact"]["id"], at)

    def count(self, kind: str) -> int:
        with self._lock:
            return self.messages[kind]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def bench_codecs(work: Path, broker: LocalBroker, args: argparse.Namespace) -> None:
    scenario = busy_shift(args.codec_minutes / 60)
    print(
        f"(c) bytes on the wire per contact-minute: the same {args.codec_minutes:g}-minute "
        f"busy shift (edge.scenario.busy_shift) simulated with each codec, every MQTT payload "
        "counted"
    )
    for codec in ("wav", "flac", "opus"):
        cfg = Config.from_dict({"audio": {"codec": codec}})
        data = work / f"codec-{codec}"
        data.mkdir()
        run_simulation(cfg, scenario, data / "scenario.toml", data)
        with Store.open(data / STORE_NAME) as store:
            contacts = store.contacts()
            orphans = len(store.orphan_events())
            chunk_bytes = MqttSection().chunk_bytes
            chunks = sum(
                wire.chunk_count(c.clip.bytes, chunk_bytes) for c in contacts if c.clip is not None
            )
            clip_file_bytes = sum(c.clip.bytes for c in contacts if c.clip is not None)
            counter = PayloadCounter(broker, cfg.device.site, cfg.device.id)
            pub = publisher(broker, store, data, cfg.device.id, cfg.device.site)
            pub.start()
            try:
                drained = pub.drain(WAIT_S)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and (
                    counter.count("contact") < len(contacts)
                    or counter.count("clip") < chunks
                    or counter.count("event") < orphans
                ):
                    time.sleep(0.02)
            finally:
                stats = pub.stats
                pub.stop()
                counter.close()
        if not drained or counter.count("clip") < chunks:
            raise RuntimeError(
                f"{codec}: not everything arrived: {dict(counter.messages)}, "
                f"{chunks} chunks expected; publisher {stats}"
            )
        minutes = sum(c.end_ns - c.start_ns for c in contacts) / NS / 60
        json_b, chunk_b = counter.bytes["contact"], counter.bytes["clip"]
        per_min = (json_b + chunk_b) / minutes
        print(
            f"    {codec:<5} {per_min / 1e6:6.3f} MB per contact-minute  "
            f"(contact JSON {json_b / minutes / 1e3:.1f} kB + chunk frames "
            f"{chunk_b / minutes / 1e6:.3f} MB; framing {chunk_b / clip_file_bytes - 1:.2%} over "
            f"the clip files; {len(contacts)} contacts, {minutes:.1f} contact-min, "
            f"{counter.messages['clip']} chunks; orphan events {counter.bytes['event']:,} B)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=20_000, help="(a) contacts without a clip")
    parser.add_argument("--kb-contacts", type=int, default=200, help="(a) contacts, --clip-kb")
    parser.add_argument("--clip-kb", type=int, default=64, help="(a, b) clip size in KiB, 0: none")
    parser.add_argument("--wav-contacts", type=int, default=40, help="(a) contacts with a WAV")
    parser.add_argument("--wav-seconds", type=float, default=60.0, help="(a) WAV clip length")
    parser.add_argument("--latency-contacts", type=int, default=200, help="(b) contacts")
    parser.add_argument("--latency-rate", type=float, default=20.0, help="(b) contacts per s")
    parser.add_argument("--codec-minutes", type=float, default=12.0, help="(c) shift length")
    parser.add_argument("--no-postgres", action="store_true", help="(a) SQLite sink only")
    parser.add_argument("--only", choices=["a", "b", "c"], help="run one part")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cp-bench-transport-"))
    try:
        with LocalBroker(work / "broker") as broker:
            if args.only in (None, "a"):
                bench_ingest(work, broker, args)
            if args.only in (None, "b"):
                bench_latency(work, broker, args)
            if args.only in (None, "c"):
                bench_codecs(work, broker, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
