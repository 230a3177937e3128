"""Delivery receipts, sink side: after its commit the sink confirms to the device what it stored
(also again, for a duplicate), never a status or a dead letter; a clip once it is verified.
Without MQTT (ingest on SQLite and PostgreSQL, the batching) and through a real mosquitto."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peewee import Database

from cloud_sink import Sink, SinkConfig, wire
from cloud_sink.consumer import MAX_UNACKED
from cloud_sink.db import open_database
from cloud_sink.ingest import ClipKey, Ingest, Outcome
from cloud_sink.migrations import migrate
from cloud_sink.receipts import Confirm, Receipts
from provisioning.broker import LocalBroker
from tests.cloud_sink.helpers import (
    DEVICE,
    SITE,
    Clip,
    FakeClock,
    TestClient,
    contact_message,
    encode,
    event_message,
    golden,
    golden_bytes,
    new_id,
    topic,
)
from tests.waiting import wait_for

RECEIPTS = topic("cmd/delivered")


@pytest.fixture
def db(db_url: str | None, data_dir: Path) -> Iterator[Database]:
    database = open_database(db_url, data_dir)
    migrate(database)
    yield database
    database.close()


@pytest.fixture
def ingest(db: Database, data_dir: Path) -> Ingest:
    return Ingest(db, data_dir, clock=FakeClock())


# --- what ingest confirms ------------------------------------------------------------------


def test_stored_and_duplicate_messages_are_confirmed_status_and_dead_letters_not(
    ingest: Ingest,
) -> None:
    contact = golden("contact.json")
    first = ingest.handle(topic("contact"), encode(contact))
    again = ingest.handle(topic("contact"), encode(contact))  # the device sent it again
    assert (first.outcome, again.outcome) == (Outcome.STORED, Outcome.DUPLICATE)
    assert first.receipt == again.receipt == Confirm(SITE, DEVICE, msg_id=contact["msg_id"])
    # the same contact under a new msg_id (a clock correction, a re-indexed store): that id
    renamed = {**contact, "msg_id": new_id()}
    assert ingest.handle(topic("contact"), encode(renamed)).receipt == Confirm(
        SITE, DEVICE, msg_id=renamed["msg_id"]
    )
    event = event_message()
    assert ingest.handle(topic("event"), encode(event)).receipt == Confirm(
        SITE, DEVICE, msg_id=event["msg_id"]
    )
    alert = golden("alert.json")
    assert ingest.handle(topic("alert"), encode(alert)).receipt == Confirm(
        SITE, DEVICE, msg_id=alert["msg_id"]
    )
    assert ingest.handle(topic("status"), golden_bytes("status.json")).receipt is None
    future = {**contact_message(), "schema": 2}
    dead = ingest.handle(topic("contact"), encode(future))
    assert (dead.outcome, dead.receipt) == (Outcome.DEAD_LETTER, None)
    assert ingest.handle(topic("cmd/resend"), b"{}").receipt is None  # ignored


def test_a_clip_is_confirmed_when_verified_and_for_every_chunk_after(ingest: Ingest) -> None:
    completed: list[ClipKey] = []
    ingest.on_clip_complete = completed.append
    clip = Clip(os.urandom(3000), 1024)
    results = [ingest.handle(topic("clip"), clip.frame(seq)) for seq in range(clip.total)]
    assert [r.receipt for r in results] == [None] * clip.total  # chunks alone confirm nothing
    ready = results[-1].ready
    assert ready is not None
    assert completed == []
    assert ingest.assemble(ready)
    assert completed == [ClipKey(SITE, DEVICE, clip.id)]
    # the device did not hear it and sends the clip again: every chunk confirms the clip
    again = ingest.handle(topic("clip"), clip.frame(1))
    assert (again.outcome, again.receipt) == (
        Outcome.DUPLICATE,
        Confirm(SITE, DEVICE, clip_id=clip.id),
    )
    assert ingest.assemble(ready)
    assert len(completed) == 2


def test_a_duplicate_chunk_of_an_incomplete_clip_confirms_nothing(ingest: Ingest) -> None:
    clip = Clip(os.urandom(3000), 1024)
    ingest.handle(topic("clip"), clip.frame(0))
    again = ingest.handle(topic("clip"), clip.frame(0))
    assert (again.outcome, again.receipt) == (Outcome.DUPLICATE, None)


def test_check_clips_confirms_what_it_assembles(ingest: Ingest) -> None:
    completed: list[ClipKey] = []
    ingest.on_clip_complete = completed.append
    clip = Clip(os.urandom(2500), 1024)
    for seq in range(clip.total):
        ingest.handle(topic("clip"), clip.frame(seq))  # nobody assembles after the last one
    assert ingest.check_clips(resend_after_ns=10**12) == []
    assert completed == [ClipKey(SITE, DEVICE, clip.id)]


# --- batching (pure) -----------------------------------------------------------------------


class Seconds:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def payloads(messages: list[tuple[str, bytes]]) -> list[tuple[str, dict[str, Any]]]:
    return [(t, json.loads(p)) for t, p in messages]


def test_receipts_are_batched_per_device_within_the_linger_time() -> None:
    clock = Seconds()
    r = Receipts(linger_s=0.2, clock=clock)
    assert not r.due()
    assert r.take() == []
    r.add(Confirm(SITE, DEVICE, msg_id="a" * 32))
    r.add(Confirm(SITE, DEVICE, msg_id="a" * 32))  # said once
    r.add(Confirm(SITE, DEVICE, clip_id="c" * 32))
    r.add(Confirm(SITE, "cp-0002", msg_id="b" * 32))
    clock.now = 0.19
    assert len(r) == 3
    assert not r.due()
    clock.now = 0.2
    assert r.due()
    assert payloads(r.take()) == [
        (
            RECEIPTS,
            {"schema": 1, "kind": "delivered", "device": DEVICE, "site": SITE,
             "msg_ids": ["a" * 32], "clips": ["c" * 32]},
        ),
        (
            topic("cmd/delivered", device="cp-0002"),
            {"schema": 1, "kind": "delivered", "device": "cp-0002", "site": SITE,
             "msg_ids": ["b" * 32], "clips": []},
        ),
    ]  # fmt: skip
    assert len(r) == 0
    assert not r.due()


def test_a_full_batch_goes_at_once_in_messages_of_bounded_size() -> None:
    r = Receipts(linger_s=3600, clock=Seconds())
    ids = [f"{n:032x}" for n in range(wire.MAX_RECEIPT_IDS + 5)]
    for i in ids:
        r.add(Confirm(SITE, DEVICE, msg_id=i))
    assert r.due()  # no need to wait: a message is full
    sent = payloads(r.take())
    assert [len(body["msg_ids"]) for _, body in sent] == [wire.MAX_RECEIPT_IDS, 5]
    assert [i for _, body in sent for i in body["msg_ids"]] == ids


def test_the_receipt_payload_is_golden() -> None:
    expected = golden("delivered.json")
    raw = wire.receipt_payload(SITE, DEVICE, expected["msg_ids"], expected["clips"])
    assert json.loads(raw) == expected
    assert wire.receipt_topic(SITE, DEVICE) == RECEIPTS


# --- through a real broker -----------------------------------------------------------------


@pytest.fixture
def sink(broker: LocalBroker, data_dir: Path, db_url: str | None) -> Iterator[Sink]:
    config = SinkConfig(
        broker=broker.url, data_dir=data_dir, db_url=db_url, backoff_min_s=0.05,
        backoff_max_s=0.2, check_every_s=1.0,
    )  # fmt: skip
    running = Sink(config).start()
    assert running.subscribed.wait(10), "the sink did not subscribe"
    yield running
    running.stop()


def next_receipt(device: TestClient) -> dict[str, Any]:
    where, payload = device.next_message()
    assert where == RECEIPTS
    body: dict[str, Any] = json.loads(payload)
    return body


def test_the_sink_publishes_receipts_after_its_commit(sink: Sink, broker: LocalBroker) -> None:
    device = TestClient(broker.port)
    try:
        device.subscribe(RECEIPTS)
        contact = golden("contact.json")
        device.publish(topic("status"), golden_bytes("status.json"))  # no receipt for this
        device.publish(topic("contact"), encode({**contact_message(), "schema": 2}))  # dead
        device.publish(topic("contact"), encode(contact))
        assert next_receipt(device)["msg_ids"] == [contact["msg_id"]]
        device.publish(topic("contact"), encode(contact))  # again: a receipt again
        assert next_receipt(device)["msg_ids"] == [contact["msg_id"]]
        clip = Clip(os.urandom(5000), 2048)
        for seq in range(clip.total):
            device.publish(topic("clip"), clip.frame(seq))
        assert next_receipt(device) == {
            "schema": 1, "kind": "delivered", "device": DEVICE, "site": SITE,
            "msg_ids": [], "clips": [clip.id],
        }  # fmt: skip
        device.publish(topic("clip"), clip.frame(0))
        assert next_receipt(device)["clips"] == [clip.id]
        # the sink counts a receipt after publishing it: the device may have it first
        wait_for(lambda: sink.stats()["receipts_sent"] >= 4, "the sink to count its 4 receipts")
        assert device.received.empty()
    finally:
        device.close()


def test_draining_a_backlog_keeps_no_receipt_waiting_for_its_puback(
    broker: LocalBroker, data_dir: Path, db_url: str | None
) -> None:
    """mosquitto answers a resumed session's own publishes only after it has sent that session
    its whole queued backlog. The worker kept every QoS 1 receipt it sent meanwhile (in the
    client, until the PUBACK): its memory grew with the backlog. Past ``MAX_UNACKED`` they go
    with QoS 0; the devices still get every receipt, while the backlog drains."""
    config = SinkConfig(
        broker=broker.url, data_dir=data_dir, db_url=db_url, client_id="sink-backlog"
    )  # fmt: skip
    first = Sink(config).start()  # its session: the broker queues for it from now on
    assert first.subscribed.wait(10), "the sink did not subscribe"
    first.stop()
    devices = [f"cp-{n:04d}" for n in range(150)]
    sent: set[str] = set()
    watcher = TestClient(broker.port)
    try:
        watcher.subscribe(topic("cmd/delivered", site="+", device="+"))
        infos = []
        for round_ in range(12):
            for device in devices:
                msg = {**event_message(), "device": device}
                sent.add(msg["msg_id"])
                infos.append(watcher.client.publish(topic("event", device=device), encode(msg), 1))
            del round_
        for info in infos:
            info.wait_for_publish(30)
        sink = Sink(config)
        sink.receipts = Receipts(linger_s=0.01)  # receipts go early in the drain, however fast
        client: Any = sink._client  # the paho client: what it keeps until a PUBACK
        publish = client.publish
        kept: list[int] = []

        def counted(*args: Any, **kwargs: Any) -> Any:
            info = publish(*args, **kwargs)
            kept.append(len(client._out_messages))
            return info

        client.publish = counted
        confirmed: set[str] = set()

        def all_confirmed() -> bool:
            while not watcher.received.empty():
                _, payload = watcher.received.get()
                confirmed.update(json.loads(payload)["msg_ids"])
            return confirmed >= sent

        with sink:
            wait_for(all_confirmed, "a receipt for every message of the backlog", cap_s=120)
            stats = sink.stats()
        assert stats["stored"] == len(sent)
        assert stats.get("receipts_sent_qos0", 0) > 0, "the broker acked at once: not the case"
        assert max(kept) <= MAX_UNACKED, f"the client kept up to {max(kept)} receipts"
    finally:
        watcher.close()
