"""Ingest on SQLite and PostgreSQL, without MQTT: rows, idempotence, dead letters, clips."""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from peewee import Database, OperationalError

from cloud_sink import wire
from cloud_sink.alerts import OFFLINE_RULE, DeviceWatch, SiteAlerts, stored_alerts
from cloud_sink.db import execute_sql, open_database, transaction
from cloud_sink.ingest import ClipKey, Ingest, Outcome
from cloud_sink.migrations import MIGRATIONS, SchemaError, migrate
from cloud_sink.models import COLUMNS, to_json
from cloud_sink.storage import ClipStore, UnsafeNameError
from tests.cloud_sink.helpers import (
    DEVICE,
    SITE,
    Clip,
    FakeClock,
    contact_message,
    encode,
    event_message,
    golden,
    golden_bytes,
    new_id,
    topic,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(db_url: str | None, data_dir: Path) -> Iterator[Database]:
    database = open_database(db_url, data_dir)
    migrate(database)
    yield database
    database.close()


@pytest.fixture
def ingest(db: Database, data_dir: Path, clock: FakeClock) -> Ingest:
    return Ingest(db, data_dir, clock=clock)


def count(ingest: Ingest, table: str) -> int:
    n: int = getattr(ingest.t, table).select().count()
    return n


def received(ingest: Ingest, clip: Clip) -> int:
    """How many of the clip's chunks its row records (the bits set)."""
    c = ingest.t.clips
    n = c.select(c.received_count).where((c.device == DEVICE) & (c.clip_id == clip.id)).scalar()
    return int(n or 0)


def partials(data_dir: Path) -> list[Path]:
    """The partial clip files under the data directory."""
    return sorted((data_dir / "incoming").rglob("*.part"))


def test_golden_messages_make_the_expected_rows(ingest: Ingest) -> None:
    for kind in ("contact", "event", "status"):
        assert ingest.handle(topic(kind), golden_bytes(f"{kind}.json")).outcome is Outcome.STORED
    contact = golden("contact.json")["contact"]
    assert count(ingest, "contacts") == 1
    assert count(ingest, "messages") == 3
    assert count(ingest, "events") == len(contact["events"]) + 1  # + the orphan event
    tags = [r["tag"] for r in ingest.t.tags.select().order_by(ingest.t.tags.pos)]
    assert tags == contact["tags"]
    (device,) = ingest.devices()
    status = golden("status.json")["status"]
    assert (device["device"], device["site"]) == (DEVICE, SITE)
    assert bool(device["online"]) is status["online"]
    assert device["outbox_depth"] == status["outbox_depth"]
    assert device["free_disk_bytes"] == status["free_disk_bytes"]
    assert bool(device["clock_synced"]) is status["clock_synced"]
    assert device["version"] == status["version"]


def test_listing_is_the_golden_contact_plus_origin(ingest: Ingest) -> None:
    ingest.handle(topic("contact"), golden_bytes("contact.json"))
    expected = {**golden("contact.json")["contact"], "device": DEVICE, "site": SITE, "audio": None}
    assert list(ingest.contacts()) == [expected]


def test_the_same_message_twice_is_one_row(ingest: Ingest) -> None:
    payload = golden_bytes("contact.json")
    assert ingest.handle(topic("contact"), payload).outcome is Outcome.STORED
    assert ingest.handle(topic("contact"), payload).outcome is Outcome.DUPLICATE
    # the same contact again under a new msg_id (e.g. re-sent after the edge's store restarted)
    again = contact_message(msg_id=new_id())
    assert ingest.handle(topic("contact"), encode(again)).outcome is Outcome.DUPLICATE
    event = encode(event_message())
    assert ingest.handle(topic("event"), event).outcome is Outcome.STORED
    assert ingest.handle(topic("event"), event).outcome is Outcome.DUPLICATE
    assert count(ingest, "contacts") == 1
    assert count(ingest, "tags") == len(golden("contact.json")["contact"]["tags"])
    assert count(ingest, "events") == len(golden("contact.json")["contact"]["events"]) + 1
    assert count(ingest, "messages") == 3
    assert ingest.counters.snapshot()["duplicate"] == 3


def test_duplicates_within_one_batch_and_across_batches_are_stored_once(ingest: Ingest) -> None:
    """One batch holding a message twice (and one stored before): on PostgreSQL the batch's
    messages go into ``messages`` in one statement; the first of two is the stored one."""
    old = (topic("event"), encode(event_message()))
    assert ingest.handle(*old).outcome is Outcome.STORED
    contact, status = (
        (topic("contact"), golden_bytes("contact.json")),
        status_bytes(DEVICE, online=True),
    )
    results = ingest.handle_batch(
        [contact, old, contact, (topic("status"), status), (topic("status"), status)]
    )
    assert [r.outcome for r in results] == [
        Outcome.STORED, Outcome.DUPLICATE, Outcome.DUPLICATE, Outcome.STORED, Outcome.DUPLICATE,
    ]  # fmt: skip
    assert results[1].receipt is not None  # a duplicate is confirmed too
    assert (count(ingest, "messages"), count(ingest, "contacts"), count(ingest, "events")) == (
        3, 1, 1 + len(golden("contact.json")["contact"]["events"]),
    )  # fmt: skip


def test_bad_messages_become_dead_letters(ingest: Ingest) -> None:
    other_device = contact_message()
    other_device["device"] = "cp-0002"
    unknown_schema = contact_message()
    unknown_schema["schema"] = 2
    sent = [
        (topic("contact"), b"{oops", "json"),
        (topic("contact"), b"x" * (wire.MAX_JSON_BYTES + 10), "too_large"),
        (topic("contact"), encode(unknown_schema), "schema"),
        (topic("contact"), encode(other_device), "mismatch"),
        (topic("clip"), b"not a frame", "frame"),
    ]
    for where, payload, _ in sent:
        assert ingest.handle(where, payload).outcome is Outcome.DEAD_LETTER
    letters = ingest.dead_letters()
    assert [d["reason"] for d in letters] == [reason for _, _, reason in sent]
    assert [d["topic"] for d in letters] == [where for where, _, _ in sent]
    assert [d["payload_bytes"] for d in letters] == [len(p) for _, p, _ in sent]
    assert letters[0]["head"] == "{oops"
    assert len(letters[1]["head"]) == 256
    assert count(ingest, "contacts") == 0
    assert count(ingest, "messages") == 0
    counters = ingest.counters.snapshot()
    assert sum(v for k, v in counters.items() if k.startswith("dead_letter.")) == len(sent)


def test_status_then_last_will_marks_the_device_offline(ingest: Ingest) -> None:
    ingest.handle(topic("status"), golden_bytes("status.json"))
    will = copy.deepcopy(golden("status.json"))
    will["msg_id"] = new_id()
    will["status"]["online"] = False
    ingest.handle(topic("status"), encode(will))
    (device,) = ingest.devices()
    assert bool(device["online"]) is False


def status_bytes(device: str, *, online: bool, **fields: Any) -> bytes:
    msg = copy.deepcopy(golden("status.json"))
    msg.update(msg_id=new_id(), device=device)
    msg["status"].update(online=online, **fields)
    return encode(msg)


def event_of(device: str, site: str = SITE) -> tuple[str, bytes]:
    msg = event_message()
    msg.update(device=device, site=site)
    return topic("event", site, device), encode(msg)


def test_a_batch_writes_its_devices_rows_at_its_end_with_on_seen_in_message_order(
    ingest: Ingest, clock: FakeClock
) -> None:
    calls: list[tuple[str, str, bool | None]] = []
    ingest.on_seen = lambda _db, site, device, status, _now: calls.append(
        (device, site, None if status is None else status.online)
    )
    dev1, dev2 = "cp-seen-1", "cp-seen-2"
    results = ingest.handle_batch(
        [
            event_of(dev2),
            (topic("status", SITE, dev1), status_bytes(dev1, online=True)),
            event_of(dev1),
            event_of(dev1),
            (topic("status", SITE, dev1), status_bytes(dev1, online=False)),
            event_of(dev1, "site-2"),  # the device moved: its row takes its last site
        ]
    )
    assert {r.outcome for r in results} == {Outcome.STORED}
    # per device in the order of its messages (one call for each run of non-status ones);
    # the devices one after the other
    assert calls == [
        (dev1, SITE, True),
        (dev1, SITE, None),
        (dev1, SITE, False),
        (dev1, "site-2", None),
        (dev2, SITE, None),
    ]
    rows = {row["device"]: row for row in ingest.devices()}
    assert bool(rows[dev1]["online"]) is False  # its last status
    assert rows[dev1]["site"] == "site-2"
    assert rows[dev1]["last_seen_ns"] == rows[dev2]["last_seen_ns"] == clock.now
    assert rows[dev2]["online"] is None  # no status of it yet


def test_a_device_row_only_moves_forward_in_time(ingest: Ingest, clock: FakeClock) -> None:
    """Another worker's batch that began earlier and commits later leaves a newer row be."""
    ingest.handle_batch([event_of("cp-fwd", "site-new")])
    later = clock.now
    clock.advance(-5)  # a batch with an older time
    ingest.handle_batch([event_of("cp-fwd", "site-old")])
    (row,) = ingest.devices()
    assert (row["site"], row["last_seen_ns"]) == ("site-new", later)
    clock.advance(10)
    ingest.handle_batch([event_of("cp-fwd", "site-old")])
    (row,) = ingest.devices()
    assert (row["site"], row["last_seen_ns"]) == ("site-old", clock.now)


def test_only_devices_with_an_offline_alert_get_on_seen_for_their_messages(
    ingest: Ingest, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeviceWatch.offline (``seen_matters``) asks once per batch which devices have an
    active offline alert; a message of one of them clears it (once), the others cost nothing."""
    watch = DeviceWatch(None, SiteAlerts([]))
    asked: list[list[str]] = []

    def offline(db_: Database, devices: Sequence[str]) -> set[str]:
        asked.append(list(devices))
        return watch.offline(db_, devices)

    ingest.on_seen, ingest.seen_matters = watch.seen, offline
    will = (topic("status", SITE, "cp-off-1"), status_bytes("cp-off-1", online=False))
    ingest.handle_batch([will, event_of("cp-off-2")])
    assert asked == [["cp-off-2"]]  # a device with a status in the batch is not asked about
    ((device, alert_id, raised),) = watch.changes
    assert (device, raised) == ("cp-off-1", True)
    assert watch.offline(db, ["cp-off-1", "cp-off-2", "cp-off-3"]) == {"cp-off-1"}
    ingest.handle_batch([event_of("cp-off-2"), event_of("cp-off-1"), event_of("cp-off-1")])
    assert asked[-1] == ["cp-off-1", "cp-off-2"]
    assert watch.changes[1:] == [("cp-off-1", alert_id, False)]  # cleared once
    assert watch.offline(db, ["cp-off-1", "cp-off-2"]) == set()
    ingest.handle_batch([event_of("cp-off-1")])
    assert len(watch.changes) == 2
    # another worker's batch read the alert as active before this one's clearing committed:
    # its clearing changes nothing (and is not published again)
    (alert,) = [a for a in stored_alerts(db) if a["rule"] == OFFLINE_RULE]
    stale = (SITE, alert_id, to_json({"alert": {"text": "stale"}}))
    monkeypatch.setattr(watch, "_active", lambda _db, _device: stale)
    with transaction(db):
        watch.seen(db, SITE, "cp-off-1", None, ingest.clock() + 1)
    assert len(watch.changes) == 2
    assert [a for a in stored_alerts(db) if a["rule"] == OFFLINE_RULE] == [alert]


def _clip_file(data_dir: Path, clip: Clip) -> Path:
    return data_dir / "clips" / SITE / DEVICE / f"{clip.id}.wav"


def test_clip_out_of_order_with_a_duplicate_is_assembled(ingest: Ingest, data_dir: Path) -> None:
    clip = Clip(os.urandom(2500), chunk_size=1000)
    ingest.handle(topic("contact"), encode(contact_message(clip=clip)))
    results = [ingest.handle(topic("clip"), clip.frame(seq)) for seq in (2, 0, 2, 1)]
    assert [r.outcome for r in results] == [
        Outcome.STORED, Outcome.STORED, Outcome.DUPLICATE, Outcome.STORED,
    ]  # fmt: skip
    assert [r.ready for r in results[:3]] == [None, None, None]
    key = results[3].ready
    assert key == ClipKey(SITE, DEVICE, clip.id)
    assert not _clip_file(data_dir, clip).exists()  # not before it is assembled and verified
    assert ingest.assemble(key)
    path = _clip_file(data_dir, clip)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == clip.sha256
    assert partials(data_dir) == []  # the partial file became the clip
    (listed,) = ingest.contacts()
    assert listed["audio"] == str(path)
    assert ingest.verified_clip_count() == 1
    # a chunk arriving after completion changes nothing
    assert ingest.handle(topic("clip"), clip.frame(0)).outcome is Outcome.DUPLICATE
    assert received(ingest, clip) == clip.total


def test_corrupt_chunk_is_discarded_and_asked_for_again(
    ingest: Ingest, data_dir: Path, clock: FakeClock
) -> None:
    clip = Clip(os.urandom(3000), chunk_size=1000)
    ingest.handle(topic("clip"), clip.frame(0))
    assert ingest.handle(topic("clip"), clip.frame(1, corrupt=True)).outcome is Outcome.DEAD_LETTER
    assert ingest.handle(topic("clip"), clip.frame(2)).ready is None
    assert received(ingest, clip) == 2
    assert [d["reason"] for d in ingest.dead_letters()] == ["chunk_corrupt"]
    (partial,) = partials(data_dir)  # one file per clip, its size: 2nd chunk not in it
    assert partial.read_bytes() == clip.chunk(0) + bytes(1000) + clip.chunk(2)

    resend_after = 30 * 1_000_000_000
    clock.advance(29)
    assert ingest.check_clips(resend_after) == []  # not quiet long enough yet
    clock.advance(1)
    (request,) = ingest.check_clips(resend_after)
    assert request.ranges == ((1, 1),)
    assert request.topic == topic("cmd/resend")
    assert wire.parse(request.topic, request.payload) == wire.Ignored()
    assert ingest.check_clips(resend_after) == []  # asked just now

    result = ingest.handle(topic("clip"), clip.frame(1))
    assert result.ready is not None
    assert ingest.assemble(result.ready)
    assert hashlib.sha256(_clip_file(data_dir, clip).read_bytes()).hexdigest() == clip.sha256


def test_clip_that_does_not_verify_is_asked_for_in_full(
    ingest: Ingest, data_dir: Path, clock: FakeClock
) -> None:
    clip = Clip(os.urandom(2000), chunk_size=1000)
    clip.sha256 = "0" * 64  # every chunk is right, the announced whole is not
    ingest.handle(topic("clip"), clip.frame(0))
    result = ingest.handle(topic("clip"), clip.frame(1))
    assert result.ready is not None
    assert not ingest.assemble(result.ready)
    assert not _clip_file(data_dir, clip).exists()
    assert list(_clip_file(data_dir, clip).parent.glob("*")) == []  # no temporary file left
    assert received(ingest, clip) == 0
    clock.advance(61)
    (request,) = ingest.check_clips(60 * 1_000_000_000)
    assert request.ranges == ((0, 1),)


def test_check_assembles_a_clip_whose_last_chunks_raced(ingest: Ingest, data_dir: Path) -> None:
    clip = Clip(os.urandom(1500), chunk_size=1000)
    for seq in range(clip.total):
        ingest.handle(topic("clip"), clip.frame(seq))  # results dropped: nobody assembled
    assert ingest.check_clips(10**18) == []
    assert _clip_file(data_dir, clip).exists()
    assert ingest.verified_clip_count() == 0  # no contact for it yet
    ingest.handle(topic("contact"), encode(contact_message(clip=clip)))
    assert ingest.verified_clip_count() == 1


def test_chunk_disagreeing_with_its_clip_is_a_dead_letter(ingest: Ingest) -> None:
    clip = Clip(os.urandom(2000), chunk_size=1000)
    other = Clip(clip.data + b"x", chunk_size=1000, clip_id=clip.id)  # same id, 3 chunks
    ingest.handle(topic("clip"), clip.frame(0))
    assert ingest.handle(topic("clip"), other.frame(1)).outcome is Outcome.DEAD_LETTER
    assert [d["reason"] for d in ingest.dead_letters()] == ["clip_mismatch"]
    assert received(ingest, clip) == 1


def test_a_failure_before_commit_leaves_nothing(ingest: Ingest) -> None:
    def crash(_topic: str) -> None:
        raise OperationalError("database is locked")  # may pass: the message comes again

    ingest.before_commit = crash
    with pytest.raises(OperationalError):
        ingest.handle(topic("contact"), golden_bytes("contact.json"))
    assert [count(ingest, t) for t in ("messages", "contacts", "events", "tags", "devices")] == [
        0, 0, 0, 0, 0,
    ]  # fmt: skip
    ingest.before_commit = None
    assert ingest.handle(topic("contact"), golden_bytes("contact.json")).outcome is Outcome.STORED


def test_a_message_failing_inside_a_batch_is_dead_lettered_alone(ingest: Ingest) -> None:
    def refuse_contacts(where: str) -> None:
        if where == topic("contact"):
            raise ValueError("this contact cannot be stored")  # not passing: a dead letter

    ingest.before_commit = refuse_contacts
    first, last = encode(event_message()), encode(event_message())
    results = ingest.handle_batch(
        [
            (topic("event"), first),
            (topic("contact"), golden_bytes("contact.json")),
            (topic("event"), last),
        ]
    )
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.DEAD_LETTER, Outcome.STORED]
    assert [count(ingest, t) for t in ("messages", "events", "contacts", "tags")] == [2, 2, 0, 0]
    [dead] = ingest.dead_letters()
    assert (dead["topic"], dead["reason"]) == (topic("contact"), "ingest_error")
    assert "this contact cannot be stored" in dead["detail"]
    counts = ingest.counters.snapshot()
    assert counts["batch"] == 1
    # tried without savepoints first, then again with them: each thing counted once
    assert counts["batch_redone"] == 1
    assert counts["dead_letter.ingest_error"] == 1
    assert (counts["stored"], counts["dead_letter"]) == (2, 1)


def test_a_batch_that_fails_nowhere_uses_no_savepoint(ingest: Ingest, db: Database) -> None:
    statements: list[str] = []
    real: Any = db.execute_sql

    def counting(sql: str, params: Any = None) -> Any:
        statements.append(sql)
        return real(sql, params)

    db.execute_sql = counting  # type: ignore[method-assign]
    try:
        results = ingest.handle_batch([(topic("event"), encode(event_message()))] * 2)
    finally:
        db.execute_sql = real  # type: ignore[method-assign]
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.DUPLICATE]
    assert [s for s in statements if "SAVEPOINT" in s] == []
    assert "batch_redone" not in ingest.counters.snapshot()


def test_a_passing_error_inside_a_batch_commits_none_of_it(ingest: Ingest) -> None:
    def locked(where: str) -> None:
        if where == topic("contact"):
            raise OperationalError("database is locked")  # may pass: the batch comes again

    batch = [
        (topic("event"), encode(event_message())),
        (topic("contact"), golden_bytes("contact.json")),
        (topic("event"), encode(event_message())),
    ]
    ingest.before_commit = locked
    with pytest.raises(OperationalError):
        ingest.handle_batch(batch)
    assert [count(ingest, t) for t in ("messages", "events", "contacts", "dead_letters")] == [
        0, 0, 0, 0,
    ]  # fmt: skip
    ingest.before_commit = None
    assert [r.outcome for r in ingest.handle_batch(batch)] == [Outcome.STORED] * 3
    assert [r.outcome for r in ingest.handle_batch(batch)] == [Outcome.DUPLICATE] * 3
    assert count(ingest, "contacts") == 1


def test_migrations_are_recorded_once_and_match_the_models(db: Database) -> None:
    assert migrate(db) == []
    rows = execute_sql(db, "SELECT version FROM schema_migrations").fetchall()
    assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
    for table, columns in COLUMNS.items():
        assert {c.name for c in db.get_columns(table)} == set(columns), table


def test_a_newer_database_is_refused(db: Database) -> None:
    execute_sql(db, "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')")
    with pytest.raises(SchemaError, match="99"):
        migrate(db)


@pytest.mark.parametrize(
    "args",
    [
        ("..", DEVICE, "a" * 32, "a" * 64),
        (SITE, "cp/../../x", "a" * 32, "a" * 64),
        (SITE, DEVICE, "../" + "a" * 29, "a" * 64),
        (SITE, DEVICE, "a" * 32, "../" + "a" * 61),
    ],
)
def test_no_id_becomes_a_path_unchecked(tmp_path: Path, args: tuple[str, str, str, str]) -> None:
    with pytest.raises(UnsafeNameError):
        ClipStore(tmp_path).open_partial(*args, 1)
    assert list(tmp_path.iterdir()) == []
