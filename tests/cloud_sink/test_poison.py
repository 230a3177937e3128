"""One message must never stop the sink: poison published as raw bytes through a real mosquitto
to the real consumer, on SQLite and PostgreSQL. Later messages are stored, the poison is a dead
letter with its reason, and neither a restart nor a retained poison status stalls a sink."""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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
    encode,
    event_message,
    golden,
    poison_message,
    topic,
    wait_until,
    with_token,
)

MakeSink = Callable[..., Sink]
SURROGATE = b'"\\ud800"'


@pytest.fixture
def make_sink(broker: LocalBroker, data_dir: Path, db_url: str | None) -> Iterator[MakeSink]:
    started: list[Sink] = []

    def make(**overrides: Any) -> Sink:
        settings: dict[str, Any] = {
            "broker": broker.url, "data_dir": data_dir, "db_url": db_url,
            "backoff_min_s": 0.05, "backoff_max_s": 0.2, "check_every_s": 1.0,
        }  # fmt: skip
        settings.update(overrides)
        sink = Sink(SinkConfig(**settings), clock=FakeClock()).start()
        started.append(sink)
        assert sink.subscribed.wait(10), "the sink did not subscribe"
        return sink

    yield make
    for sink in started:
        sink.stop()


@pytest.fixture
def db(db_url: str | None, data_dir: Path) -> Iterator[Ingest]:
    database = open_database(db_url, data_dir)
    yield Ingest(database, data_dir)
    database.close()


@pytest.fixture
def client(broker: LocalBroker) -> Iterator[TestClient]:
    c = TestClient(broker.port)
    yield c
    c.close()


def stored_events(db: Ingest) -> set[str]:
    return {row["id"] for row in db.t.events.select(db.t.events.id).dicts()}


def wait_for_event(db: Ingest, event_id: str) -> None:
    wait_until(lambda: event_id in stored_events(db), f"event {event_id}")


def alert_with_rule(rule: str) -> bytes:
    msg = golden("alert.json")
    msg["alert"]["rule"] = rule
    return encode(msg)


def schema_as_float() -> bytes:
    return with_token(event_message(), ("schema",), b"1.0")


#: (topic kind, raw payload, dead-letter reason): each passed the parser before, then the
#: database write (or the parser itself) raised, the message was never acked and came back
POISON: list[tuple[str, bytes, str]] = [
    ("contact", poison_message("contact", ("contact", "mode"), SURROGATE), "json"),
    ("event", poison_message("event", ("event", "data"), b"1e400"), "json"),
    ("contact", poison_message("contact", ("contact", "duration_s"), b"9" * 400), "json"),
    ("event", poison_message("event", ("event", "via"), b'"ok\\udc00"'), "json"),
    ("event", schema_as_float(), "schema"),
    # random hex does not compress: PostgreSQL refuses an index row this large, every time
    ("alert", alert_with_rule(os.urandom(60_000).hex()), "field"),
]
RETAINED_POISON = poison_message("status", ("status", "version"), SURROGATE)


def test_poison_is_dead_lettered_and_the_stream_goes_on_across_restarts(
    make_sink: MakeSink, client: TestClient, db: Ingest
) -> None:
    client.publish(topic("status"), RETAINED_POISON, retain=True)  # waits for every new sink
    sink = make_sink()
    for kind, payload, _ in POISON:
        client.publish(topic(kind), payload)
    first = event_message()
    client.publish(topic("event"), encode(first))
    wait_until(lambda: first["event"]["id"] in stored_events(db), "the good event after poison")
    dead = [(d["topic"], d["reason"]) for d in db.dead_letters()]
    assert dead == [(topic("status"), "json")] + [(topic(k), r) for k, _, r in POISON]
    surrogate = db.dead_letters()[0]
    assert "surrogate" in surrogate["detail"]
    assert surrogate["head"].startswith('{"schema": 1')
    assert sink.stats().get("ingest_error", 0) == 0
    sink.stop()

    for client_id in (None, "contactpoint-sink-fresh"):  # a restart, and a sink never seen
        again = make_sink(client_id=client_id)
        later = event_message()
        client.publish(topic("event"), encode(later))
        wait_for_event(db, later["event"]["id"])
        again.stop()
    reasons = [d["reason"] for d in db.dead_letters()]
    # the retained status came with each new subscription, and was refused each time
    assert reasons.count("json") == 1 + 4 + 2
    assert db.t.devices.select().where(db.t.devices.version.is_null(False)).count() == 0


def test_a_message_that_cannot_be_stored_is_a_dead_letter_with_its_payload(
    make_sink: MakeSink, client: TestClient, db: Ingest, data_dir: Path
) -> None:
    """Past the parser, storing fails every time (here: a file stands where the device's
    directory of partial clip files must go). After ``max_ingest_attempts`` deliveries the
    message is a dead letter with the exception and its whole payload kept; the messages
    behind it flow."""
    blocker = data_dir / "incoming" / SITE / DEVICE
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"a file, not a directory")
    sink = make_sink(max_ingest_attempts=3)
    clip = Clip(os.urandom(3000), chunk_size=1000)
    client.publish(topic("clip"), clip.frame(0))
    good = event_message()
    client.publish(topic("event"), encode(good))
    wait_until(lambda: good["event"]["id"] in stored_events(db), "the event behind the chunk")
    (dead,) = db.dead_letters()
    assert (dead["topic"], dead["reason"]) == (topic("clip"), "ingest_error")
    assert "failed 3 times in a row" in dead["detail"], dead["detail"]
    kept = re.search(r"payload kept in (\S+)", dead["detail"])
    assert kept is not None, dead["detail"]
    assert (data_dir / kept.group(1)).read_bytes() == clip.frame(0)
    assert sink.stats()["ingest_error"] == 2  # delivered three times: two retries, one letter
    assert db.t.clips.select().count() == 0  # nothing half-stored


@pytest.fixture
def full_disk(data_dir: Path) -> Iterator[Path]:
    """A real, full filesystem (a 256 KiB tmpfs, filled) where the sink keeps partial clips.
    Mounting needs root: CI and the developers' machines run the tests as root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    incoming = data_dir / "incoming"
    incoming.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(incoming)], check=True)
    filler = incoming / "filler"
    try:
        with filler.open("wb", buffering=0) as out:
            try:
                while True:
                    out.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC  # noqa: PT017 - filling a disk ends only in ENOSPC
        yield filler
    finally:
        subprocess.run(["umount", "-l", str(incoming)], check=False)


def test_a_full_disk_is_never_blamed_on_the_message(
    make_sink: MakeSink, client: TestClient, db: Ingest, full_disk: Path, data_dir: Path
) -> None:
    """ENOSPC is the disk's fault, not the chunk's: however often it fails, the chunk is
    redelivered (never a dead letter), and once there is room it is stored, and so is what
    waited behind it."""
    sink = make_sink(max_ingest_attempts=2)
    clip = Clip(os.urandom(3000), chunk_size=1000)
    client.publish(topic("clip"), clip.frame(0))
    good = event_message()
    client.publish(topic("event"), encode(good))
    wait_until(lambda: sink.stats().get("ingest_error", 0) >= 4, "several failed deliveries")
    assert db.dead_letters() == []
    assert good["event"]["id"] not in stored_events(db)  # in order: it waits behind the chunk
    full_disk.unlink()  # room again
    wait_until(lambda: good["event"]["id"] in stored_events(db), "the event, after the chunk")
    c = db.t.clips
    assert c.select(c.received_count).where(c.clip_id == clip.id).scalar() == 1
    partial = db.store.partial_path(SITE, DEVICE, clip.id, clip.sha256)
    assert partial.read_bytes()[:1000] == clip.chunk(0)
    assert db.dead_letters() == []
