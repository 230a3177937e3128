"""The sink against a real mosquitto, on SQLite and PostgreSQL: delivery, redelivery, sharing."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from peewee import OperationalError

from cloud_sink import Sink, SinkConfig
from cloud_sink.db import open_database
from cloud_sink.ingest import Ingest
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
    topic,
    wait_until,
)
from tests.waiting import wait_for

MakeSink = Callable[..., Sink]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_sink(
    broker: LocalBroker, data_dir: Path, db_url: str | None, clock: FakeClock
) -> Iterator[MakeSink]:
    """Build and start sinks on the test's broker and database; all are stopped at the end."""
    started: list[Sink] = []

    def make(**overrides: Any) -> Sink:
        settings: dict[str, Any] = {
            "broker": broker.url, "data_dir": data_dir, "db_url": db_url,
            "backoff_min_s": 0.05, "backoff_max_s": 0.2, "check_every_s": 1.0,
            "resend_after_s": 5.0,
        }  # fmt: skip
        settings.update(overrides)
        sink = Sink(SinkConfig(**settings), clock=clock).start()
        started.append(sink)
        wait_for(sink.subscribed.is_set, "the sink to subscribe")
        return sink

    yield make
    for sink in started:
        sink.stop()


@pytest.fixture
def db(db_url: str | None, data_dir: Path) -> Iterator[Ingest]:
    """A reader on its own connection; the sinks migrate the database before it is queried."""
    database = open_database(db_url, data_dir)
    yield Ingest(database, data_dir)
    database.close()


@pytest.fixture
def client(broker: LocalBroker) -> Iterator[TestClient]:
    c = TestClient(broker.port)
    yield c
    c.close()


def count(db: Ingest, table: str) -> int:
    n: int = getattr(db.t, table).select().count()
    return n


def test_golden_payloads_arrive_once(make_sink: MakeSink, client: TestClient, db: Ingest) -> None:
    make_sink()
    client.publish(topic("contact"), golden_bytes("contact.json"))
    client.publish(topic("contact"), golden_bytes("contact.json"))  # QoS 1 may deliver twice
    client.publish(topic("event"), golden_bytes("event.json"))
    client.publish(topic("status"), golden_bytes("status.json"), retain=True)
    contact = golden("contact.json")["contact"]
    wait_until(lambda: count(db, "messages") == 3, "three distinct messages")
    status_at = golden("status.json")["status"]["at"]
    wait_until(lambda: [d["status_at"] for d in db.devices()] == [status_at], "the status")
    assert count(db, "contacts") == 1
    assert count(db, "events") == len(contact["events"]) + 1
    assert count(db, "tags") == len(contact["tags"])
    assert list(db.contacts()) == [{**contact, "device": DEVICE, "site": SITE, "audio": None}]
    assert db.devices()[0]["outbox_depth"] == golden("status.json")["status"]["outbox_depth"]


def test_bad_messages_are_dead_letters_and_the_sink_goes_on(
    make_sink: MakeSink, client: TestClient, db: Ingest
) -> None:
    sink = make_sink()
    mismatch = contact_message()
    mismatch["site"] = "site-9"
    future = contact_message()
    future["schema"] = 2
    bad = [
        (topic("contact"), b"\x00garbage", "json"),
        (topic("contact"), b"{" * (300 * 1024), "too_large"),
        (topic("contact"), encode(future), "schema"),
        (topic("contact"), encode(mismatch), "mismatch"),
    ]
    for where, payload, _ in bad:
        client.publish(where, payload)
    client.publish(topic("event"), golden_bytes("event.json"))
    wait_until(lambda: count(db, "events") == 1, "the good event after the bad ones")
    assert [d["reason"] for d in db.dead_letters()] == [reason for _, _, reason in bad]
    assert sink.stats().get("ingest_error", 0) == 0


def test_clip_in_chunks_recovers_a_corrupt_chunk_by_resend(
    make_sink: MakeSink, client: TestClient, db: Ingest, data_dir: Path, clock: FakeClock
) -> None:
    sink = make_sink()
    client.subscribe("contactpoint/v1/+/+/cmd/resend")  # not cmd/delivered, which may come first
    clip = Clip(os.urandom(5000), chunk_size=1024)
    assert clip.total == 5
    client.publish(topic("contact"), encode(contact_message(clip=clip)))
    for seq, corrupt in [(3, False), (0, False), (2, True), (4, False), (0, False), (1, False)]:
        client.publish(topic("clip"), clip.frame(seq, corrupt=corrupt))
    c = db.t.clips
    kept = c.select(c.received_count).where(c.clip_id == clip.id)
    wait_until(lambda: kept.scalar() == 4, "the four good chunks")
    assert [d["reason"] for d in db.dead_letters()] == ["chunk_corrupt"]
    assert db.verified_clip_count() == 0
    (pending,) = db.contacts()
    assert pending["audio"] is None

    clock.advance(6)  # past resend_after_s: the next periodic check asks for chunk 2
    where, payload = client.next_message()
    assert where == topic("cmd/resend")
    assert json.loads(payload) == {"clip_id": clip.id, "ranges": [[2, 2]], "seqs": [2]}

    client.publish(topic("clip"), clip.frame(2))
    wait_until(lambda: db.verified_clip_count() == 1, "the verified clip")
    (listed,) = db.contacts()
    assert listed["audio"] == str(data_dir / "clips" / SITE / DEVICE / f"{clip.id}.wav")
    assert hashlib.sha256(Path(listed["audio"]).read_bytes()).hexdigest() == clip.sha256
    assert sink.stats().get("ignored", 0) == 0  # its own command was not delivered to it


def test_messages_sent_while_the_sink_is_away_arrive_once(
    make_sink: MakeSink, client: TestClient, db: Ingest
) -> None:
    make_sink().stop()
    events = [encode(event_message()) for _ in range(5)]
    for payload in events:
        client.publish(topic("event"), payload)
    client.publish(topic("contact"), golden_bytes("contact.json"))
    sink = make_sink()
    wait_until(lambda: count(db, "messages") == len(events) + 1, "everything sent meanwhile")
    assert count(db, "events") == len(events) + len(golden("contact.json")["contact"]["events"])
    assert count(db, "contacts") == 1
    assert sink.stats().get("duplicate", 0) == 0


def test_a_sink_killed_mid_ingest_gets_the_message_again(
    make_sink: MakeSink, client: TestClient, db: Ingest
) -> None:
    sink = make_sink()
    calls: list[str] = []

    def crash_once(where: str) -> None:
        calls.append(where)
        if len(calls) <= 2:  # the batch's first try, then its try with savepoints
            raise OperationalError("database is locked")  # passes: delivered again

    sink.ingest.before_commit = crash_once
    client.publish(topic("contact"), golden_bytes("contact.json"))
    wait_until(lambda: count(db, "contacts") == 1, "the redelivered contact")
    assert calls == [topic("contact")] * 3  # delivered again after the failure
    assert sink.stats()["ingest_error"] == 1
    assert count(db, "messages") == 1
    assert count(db, "events") == len(golden("contact.json")["contact"]["events"])


def test_an_error_that_passes_at_once_costs_no_redelivery(
    make_sink: MakeSink, client: TestClient, db: Ingest
) -> None:
    """A batch tried without savepoints fails on a message: it runs again at once, each message
    in a savepoint; an error that has passed meanwhile stores it then, with no redelivery."""
    sink = make_sink()
    calls: list[str] = []

    def crash_once(where: str) -> None:
        calls.append(where)
        if len(calls) == 1:
            raise OperationalError("database is locked")

    sink.ingest.before_commit = crash_once
    client.publish(topic("contact"), golden_bytes("contact.json"))
    wait_until(lambda: count(db, "contacts") == 1, "the contact")
    assert calls == [topic("contact")] * 2
    assert sink.stats().get("ingest_error", 0) == 0
    assert sink.stats()["batch_redone"] == 1
    assert count(db, "messages") == 1


def test_an_unacked_message_goes_to_the_next_sink(
    make_sink: MakeSink, client: TestClient, db: Ingest
) -> None:
    dying = make_sink(max_ingest_attempts=1000)  # it gives up on this sink, not the message

    def always_crash(where: str) -> None:
        raise OperationalError("disk I/O error")  # every time, on this sink only

    dying.ingest.before_commit = always_crash
    client.publish(topic("event"), golden_bytes("event.json"))
    wait_until(lambda: dying.stats().get("ingest_error", 0) >= 1, "the failed ingest")
    dying.stop()
    assert count(db, "events") == 0
    make_sink()
    wait_until(lambda: count(db, "events") == 1, "the event at the next sink")
    assert count(db, "messages") == 1


def test_a_backlog_is_ingested_in_batches(
    make_sink: MakeSink, client: TestClient, db: Ingest
) -> None:
    make_sink().stop()  # the session is there: the broker keeps what comes meanwhile
    payloads = [encode(event_message()) for _ in range(300)]
    for payload in payloads:
        client.publish(topic("event"), payload)
    sink = make_sink(batch_max_messages=50)
    wait_until(lambda: sink.stats().get("stored", 0) == len(payloads), "the backlog")
    stats = sink.stats()
    assert count(db, "events") == len(payloads)
    assert len(payloads) / 50 <= stats["batch"] < len(payloads), stats  # batched, none over 50
    assert stats.get("duplicate", 0) == 0
    assert stats.get("ingest_error", 0) == 0


def test_two_sinks_in_a_group_share_the_stream(
    make_sink: MakeSink, client: TestClient, db: Ingest
) -> None:
    sinks = [make_sink(group="g", client_id=f"contactpoint-sink-g-{n}") for n in range(2)]
    payloads = [encode(event_message()) for _ in range(20)]
    for payload in payloads + payloads:  # every message twice
        client.publish(topic("event"), payload)

    def handled(sink: Sink) -> int:
        stats = sink.stats()
        return stats.get("stored", 0) + stats.get("duplicate", 0)

    wait_until(lambda: sum(handled(s) for s in sinks) >= 2 * len(payloads), "every delivery")
    for sink in sinks:
        sink.stop()
    # each delivery went to one of the two (a plain subscription would give each sink all 40)
    assert sum(handled(s) for s in sinks) == 2 * len(payloads)
    assert count(db, "events") == len(payloads)
    assert count(db, "messages") == len(payloads)
    assert all(handled(s) > 0 for s in sinks), [s.stats() for s in sinks]  # shared, not copied


def test_mqtt_3_1_1_with_a_persistent_session(
    make_sink: MakeSink, client: TestClient, db: Ingest
) -> None:
    make_sink(protocol="3.1.1").stop()
    client.publish(topic("event"), golden_bytes("event.json"))
    make_sink(protocol="3.1.1")
    wait_until(lambda: count(db, "events") == 1, "the event sent while away")


def test_what_comes_before_a_chunk_commits_before_the_chunk_files_are_synced(
    make_sink: MakeSink, client: TestClient, db: Ingest
) -> None:
    """A contact and its clip's chunks in one batch: the contact's transaction does not wait
    for the chunk files' fdatasync; it is its own, committed (and acked) first."""
    first = make_sink()
    first.stop()  # the session is there: the broker keeps what comes meanwhile
    clip = Clip(os.urandom(6000), 2048)
    contact = contact_message(clip=clip)
    client.publish(topic("event"), encode(event_message()))
    client.publish(topic("contact"), encode(contact))
    for seq in range(clip.total):
        client.publish(topic("clip"), clip.frame(seq))
    client.publish(topic("event"), encode(event_message()))
    sink = Sink(first.config)  # not started yet: a spy on its batches first
    batches: list[list[str]] = []
    handle_batch = sink.ingest.handle_batch

    def noted(messages: Any) -> Any:
        batches.append([t.rsplit("/", 1)[1] for t, _ in messages])
        return handle_batch(messages)

    sink.ingest.handle_batch = noted  # type: ignore[method-assign]  # the spy
    with sink:
        wait_for(lambda: sink.verified_clip_count() == 1, "the clip, assembled")
        wait_for(lambda: sink.stats().get("stored", 0) >= 3, "the contact and both events")
    kinds = [k for b in batches for k in b]
    assert kinds == ["event", "contact", "clip", "clip", "clip", "event"]
    for batch in batches:  # a chunk either starts its transaction or is not in it
        assert "clip" not in batch or batch[0] == "clip", batches
    assert count(db, "contacts") == 1


def test_a_stop_asked_before_the_loop_runs_ends_it(
    broker: LocalBroker, data_dir: Path, db_url: str | None
) -> None:
    """``sink run`` takes SIGTERM while it opens its database: the stop is asked for before
    ``run_forever``, which must not forget it (it used to clear it and run on)."""
    sink = Sink(SinkConfig(broker=broker.url, data_dir=data_dir, db_url=db_url))
    sink.request_stop()
    loop = threading.Thread(target=sink.run_forever, daemon=True)
    loop.start()
    loop.join(60)
    alive = loop.is_alive()
    if alive:
        sink.request_stop()
        loop.join(60)
    assert not alive, "run_forever ran on after a stop asked for before it"
    assert not sink.subscribed.is_set()
