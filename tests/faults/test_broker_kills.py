"""kill -9 of the broker: mosquitto writes its persistence file only every
``autosave_interval``, so a power cut loses what it acknowledged since the last save. The device
keeps every message (and its clip file) until the sink's delivery receipt says it is stored, and
sends again what stays unconfirmed (docs/WIRE.md, "Delivery receipts"), so nothing is lost.

The broker here saves once an hour: killed right after the device got its PUBACKs and before
the sink (away at that moment) took the messages, it forgets all of them."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge.clock import NS, FakeClock
from edge.config import MqttSection
from edge.publish import wire
from edge.publish.mqtt import Publisher
from edge.records import ClipInfo, ContactRecord, EventRecord
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME
from edge.store import Store
from provisioning.broker import LocalBroker
from tests.faults.harness import (
    DEVICE,
    SITE,
    broker_kill_cycles,
    delivery,
    running_sink,
)
from tests.waiting import wait_for
from tests.wire_samples import CLIP, CONTACT, START

CONTACTS = 6
CLIP_BYTES = 20_000  # five chunks of 4 KiB each


@pytest.fixture
def forgetful_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker that persists its state only once an hour (and at a clean stop)."""
    with LocalBroker(tmp_path / "broker", autosave_interval_s=3600) as running:
        yield running


def hex_id(prefix: int, n: int) -> str:
    return f"{prefix:08x}{n:024x}"


def saved_contacts(store: Store, data: Path) -> dict[str, ClipInfo | None]:
    """CONTACTS contacts with a clip file each, and as many events outside contacts."""
    clips: dict[str, ClipInfo | None] = {}
    for n in range(CONTACTS):
        cid = hex_id(0xC0DE, n)
        audio = random.Random(n).randbytes(CLIP_BYTES)
        rel = f"clips/{cid}.wav"
        (data / "clips").mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(audio)
        clip = replace(
            CLIP,
            contact_id=cid,
            path=rel,
            sha256=hashlib.sha256(audio).hexdigest(),
            bytes=len(audio),
        )
        events = tuple(
            EventRecord(
                id=hex_id(0xE0E0, 10 * n + k),
                kind=kind,
                t_ns=(100 * n + k) * NS,
                wall_ns=START + (100 * n + k) * NS,
                contact_id=cid,
            )
            for k, kind in enumerate(("arrival", "departure"))
        )
        record: ContactRecord = replace(CONTACT, id=cid, events=events, clip=clip)
        messages = [
            wire.contact_message(record, DEVICE, SITE),
            wire.clip_message(clip, DEVICE, SITE),
        ]
        assert store.save_contact(record, messages)
        orphan = EventRecord(
            id=hex_id(0x0E0E, n), kind="receipt", t_ns=(100 * n + 50) * NS,
            wall_ns=START + (100 * n + 50) * NS,
        )  # fmt: skip
        assert store.save_event(orphan, [wire.event_message(orphan, DEVICE, SITE)])
        clips[cid] = clip
    return clips


def publisher(store: Store, data: Path, broker_url: str, **settings: Any) -> Publisher:
    cfg = MqttSection(
        broker=broker_url,
        chunk_bytes=4096,
        backoff_min_s=0.05,
        backoff_max_s=0.3,
        **settings,
    )
    return Publisher(
        cfg,
        device=DEVICE,
        site=SITE,
        data_dir=data,
        store=store,
        version="9.9.9",
        clock=FakeClock(START, synced=True),
    )


def sink_events(sink_data: Path) -> list[str]:
    with sqlite3.connect(f"file:{sink_data / 'sink.db'}?mode=ro", uri=True, timeout=5) as db:
        return [eid for (eid,) in db.execute("SELECT id FROM events WHERE device = ?", (DEVICE,))]


def test_a_broker_killed_after_its_pubacks_loses_nothing(
    forgetful_broker: LocalBroker, tmp_path: Path
) -> None:
    broker = forgetful_broker
    data, sink_data = tmp_path / "edge", tmp_path / "sink"
    with running_sink(broker.url, sink_data):
        pass  # the sink has its persistent session, and is away when the device publishes
    store = Store.open(data / STORE_NAME)
    pub = publisher(
        store,
        data,
        broker.url,
        receipt_timeout_s=1.0,
        receipt_timeout_max_s=2.0,
        receipt_max_resends=1000,
    )
    try:
        clips = saved_contacts(store, data)
        rows = len(store.outbox.pending(limit=1000))
        pub.start()
        wait_for(lambda: store.outbox.depth() == 0, "the broker's PUBACK for every row")
        assert store.outbox.undelivered() == rows  # acknowledged is not delivered
        broker.kill()  # a power cut: the queue it held for the sink is gone
        broker.start()
        with running_sink(broker.url, sink_data) as sink:
            wait_for(
                lambda: delivery(data, sink_data, clips).lost == 0,
                "every contact in the sink with its verified clip",
                progress=sink.stats,
            )
            wait_for(lambda: store.outbox.undelivered() == 0, "the sink's receipts")
            duplicates_dropped = sink.stats().get("duplicate", 0)
        result = delivery(data, sink_data, clips)
        assert (result.produced, result.delivered, result.lost, result.duplicated) == (
            CONTACTS,
            CONTACTS,
            0,
            0,
        )
        events = sink_events(sink_data)
        assert len(events) == len(set(events)) == 3 * CONTACTS  # 2 in each contact + 1 outside
        stats = pub.stats
        assert stats.rows_resent >= rows  # everything went again: the broker had lost it all
        assert stats.rows_delivered == rows
        assert stats.awaiting == 0
        assert duplicates_dropped >= 0
    finally:
        pub.stop()
        store.close()


def test_broker_kills_in_cycles_while_a_shift_plays_lose_and_duplicate_nothing(
    forgetful_broker: LocalBroker, tmp_path: Path
) -> None:
    """The soak's scenario 4 (bench/soak.py), short: the broker is killed whenever rows are
    acknowledged by it and not yet confirmed by the sink."""
    figures = broker_kill_cycles(
        forgetful_broker,
        tmp_path,
        busy_shift(0.25, seed=4),
        rng=random.Random(4),
        speed=150,
        max_kills=4,
    )
    result = figures.delivery
    assert figures.kills == 4
    assert figures.at_risk >= 1  # some kills really came between PUBACK and receipt
    assert result.produced >= 8
    assert (result.lost, result.duplicated, result.missing) == (0, 0, [])
    assert result.delivered == result.produced
