"""The store on real SQLite files: round trips, atomicity, migrations, settings."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from peewee import InterfaceError, SqliteDatabase

import edge.store.db as store_db
from edge._errors import UserError
from edge.clock import NS
from edge.records import ClipInfo, ContactRecord, EventRecord, OutboxMessage
from edge.store import (
    MIGRATIONS,
    IntegrityError,
    Migration,
    SchemaError,
    Store,
    StoreError,
    clean_contact,
    clean_event,
    connect,
    migrate,
    schema_version,
)
from edge.store.models import MODELS

WALL0 = 1_800_000_000 * NS


def counting_clock(start: int = WALL0, step: int = NS) -> Callable[[], int]:
    return itertools.count(start, step).__next__


def event(event_id: str, t_ns: int, contact_id: str | None = None, **fields: Any) -> EventRecord:
    return EventRecord(
        id=event_id,
        kind="press",
        t_ns=t_ns,
        wall_ns=WALL0 + t_ns,
        contact_id=contact_id,
        **fields,
    )


def contact(
    contact_id: str,
    start_s: int,
    *,
    boot_id: str = "boot-a",
    tags: tuple[str, ...] = ("negative", "productive"),
    with_clip: bool = True,
) -> ContactRecord:
    start, end = start_s * NS, (start_s + 30) * NS
    events = (
        # given out of time order on purpose: the store returns them by t_ns
        event(
            f"{contact_id}-e2",
            start + 20 * NS,
            contact_id,
            button="red",
            role="rating",
            gesture="short",
            duration_ns=80_000_000,
            via="rf433",
        ),
        event(
            f"{contact_id}-e1",
            start + 5 * NS,
            contact_id,
            role="receipt",
            receipt_id="R-17",
            data={"sum": 12.5, "items": ["tea", "cake"], "note": "café"},
        ),
        event(f"{contact_id}-e3", start + 25 * NS, contact_id, role="question", question=2),
    )
    clip = ClipInfo(
        contact_id=contact_id,
        path=f"clips/{contact_id}.flac",
        codec="flac",
        sample_rate=16_000,
        start_index=start_s * 16_000,
        end_index=(start_s + 30) * 16_000,
        start_ns=start,
        end_ns=end,
        sha256="ab" * 32,
        bytes=123_456,
        truncated=True,
        gaps=(
            (start_s * 16_000 + 100, start_s * 16_000 + 900),
            (start_s * 16_000 + 5_000, start_s * 16_000 + 5_001),
        ),
    )
    return ContactRecord(
        id=contact_id,
        mode="presence",
        start_ns=start,
        end_ns=end,
        start_wall_ns=WALL0 + start,
        end_wall_ns=WALL0 + end,
        ended_by="departure",
        tags=tags,
        events=events,
        clip=clip if with_clip else None,
        clock_synced=False,
        boot_id=boot_id,
    )


def message(msg_id: str, ref: str, kind: str = "contact") -> OutboxMessage:
    return OutboxMessage(msg_id, kind, ref, {"msg_id": msg_id, "ref": ref, "n": [1, 2]})


def by_time(rec: ContactRecord) -> ContactRecord:
    """What the store promises to return: the same contact, events in t order."""
    return replace(rec, events=tuple(sorted(rec.events, key=lambda e: e.t_ns)))


def table_counts(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as conn:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("contacts", "events", "tags", "clips", "outbox")
        }


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "edge.sqlite"  # the data directory does not exist yet


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store.open(db_path, clock=counting_clock()) as opened:
        yield opened


# Round trips


def test_full_contact_and_orphan_event_round_trip(store: Store) -> None:
    rec = contact("c1", 100, tags=("silent", "not_positive", "force_majeure"))
    orphan = event("o1", 400 * NS, button="yellow", data={"why": ["no contact open"]})

    assert store.save_contact(rec, [message("m1", "c1")])
    assert store.save_event(orphan, [message("m2", "o1", "event")])

    [back] = store.contacts()
    assert back == by_time(rec)
    assert back.tags == ("silent", "not_positive", "force_majeure")  # the order given
    assert back.clip is not None
    assert back.clip.missing_samples == 801
    assert store.orphan_events() == [orphan]


def test_contact_without_clip_tags_or_events(store: Store) -> None:
    bare = replace(contact("c1", 10, with_clip=False), tags=(), events=())

    assert store.save_contact(bare, [])

    assert store.contacts() == [bare]


def test_contacts_come_in_start_order_within_a_boot_and_boots_in_save_order(
    store: Store,
) -> None:
    # boot a: saved out of start order; boot b restarted the monotonic clock from zero
    a_late, a_early = contact("a2", 500), contact("a1", 100)
    b_first = contact("b1", 5, boot_id="boot-b")
    for rec in (a_late, a_early, b_first):
        assert store.save_contact(rec, [])

    assert [c.id for c in store.contacts()] == ["a1", "a2", "b1"]


def test_events_with_equal_times_keep_the_order_given(store: Store) -> None:
    base = contact("c1", 10, with_clip=False)
    same_t = tuple(event(f"c1-{name}", 12 * NS, "c1") for name in ("z", "a", "m"))

    assert store.save_contact(replace(base, events=same_t), [])

    assert [e.id for e in store.contacts()[0].events] == ["c1-z", "c1-a", "c1-m"]


# Atomicity and duplicates


def test_duplicate_contact_id_returns_false_and_changes_nothing(
    store: Store, db_path: Path
) -> None:
    first = contact("c1", 10)
    assert store.save_contact(first, [message("m1", "c1")])
    before = table_counts(db_path)

    again = replace(contact("c1", 99, tags=("other",)), mode="window")
    assert store.save_contact(again, [message("m2", "c1")]) is False

    assert table_counts(db_path) == before
    assert store.contacts() == [by_time(first)]
    assert [row.msg_id for row in store.outbox.pending()] == ["m1"]


def test_duplicate_orphan_event_returns_false_and_queues_nothing(store: Store) -> None:
    assert store.save_event(event("o1", 5), [message("m1", "o1", "event")])

    assert store.save_event(event("o1", 9), [message("m2", "o1", "event")]) is False

    assert store.orphan_events() == [event("o1", 5)]
    assert store.outbox.depth() == 1


def test_failing_outbox_insert_leaves_nothing_of_the_contact(store: Store, db_path: Path) -> None:
    assert store.save_contact(contact("c1", 10), [message("m1", "c1")])
    before = table_counts(db_path)

    # the second message of c2 reuses msg_id m1: the outbox insert fails after contact, events,
    # tags, clip and one outbox row of c2 were already written in the transaction
    with pytest.raises(IntegrityError):
        store.save_contact(contact("c2", 50), [message("m2", "c2"), message("m1", "c2")])

    assert table_counts(db_path) == before
    assert [c.id for c in store.contacts()] == ["c1"]
    assert [row.msg_id for row in store.outbox.pending()] == ["m1"]
    # the store is still usable: the corrected save goes through
    assert store.save_contact(contact("c2", 50), [message("m2", "c2")])
    assert store.integrity_check() == "ok"


def test_failing_orphan_event_outbox_leaves_no_event(store: Store) -> None:
    assert store.save_event(event("o1", 5), [message("m1", "o1", "event")])

    with pytest.raises(IntegrityError):
        store.save_event(event("o2", 6), [message("m1", "o2", "event")])

    assert [e.id for e in store.orphan_events()] == ["o1"]


def test_exception_inside_the_transaction_rolls_everything_back(
    store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(messages: object, created_ns: int) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(store_db, "add_messages", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        store.save_contact(contact("c1", 10), [message("m1", "c1")])
    monkeypatch.undo()

    assert set(table_counts(db_path).values()) == {0}
    assert store.integrity_check() == "ok"
    assert store.save_contact(contact("c1", 10), [message("m1", "c1")])
    assert [c.id for c in store.contacts()] == ["c1"]


def test_process_killed_inside_the_transaction_leaves_a_consistent_file(db_path: Path) -> None:
    with Store.open(db_path) as store:
        assert store.save_contact(contact("c1", 10), [message("m1", "c1")])
    before = table_counts(db_path)
    child = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        import edge.store.db as store_db
        from tests.edge.test_store import contact, message
        from pathlib import Path

        def die(messages, created_ns):
            os._exit(17)  # no commit, no rollback, no cleanup: like pulling the plug

        store_db.add_messages = die
        store = store_db.Store.open(Path({str(db_path)!r}))
        store.save_contact(contact("c2", 50), [message("m2", "c2")])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child], check=False, capture_output=True, timeout=60
    )
    assert result.returncode == 17, result.stderr.decode()

    with Store.open(db_path) as store:
        assert store.integrity_check() == "ok"
        assert [c.id for c in store.contacts()] == ["c1"]
        assert [row.msg_id for row in store.outbox.pending()] == ["m1"]
    assert table_counts(db_path) == before


def test_records_naming_another_contact_are_refused_before_writing(
    store: Store, db_path: Path
) -> None:
    rec = contact("c1", 10)
    stray_event = replace(rec, events=(*rec.events, event("x", 12 * NS, "c9")))
    assert rec.clip is not None
    stray_clip = replace(rec, clip=replace(rec.clip, contact_id="c9"))

    for bad in (stray_event, stray_clip):
        with pytest.raises(ValueError, match="c9"):
            store.save_contact(bad, [message("m1", "c1")])

    assert set(table_counts(db_path).values()) == {0}


def with_receipt(rec: ContactRecord, **fields: Any) -> ContactRecord:
    """``rec`` with its receipt event (``-e1``) changed."""
    return replace(
        rec, events=tuple(replace(e, **fields) if e.id.endswith("-e1") else e for e in rec.events)
    )


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"data": {"sum": float("nan")}}, "events[1].data.sum = nan: not a finite number"),
        ({"data": {"x": [1, float("inf")]}}, "events[1].data.x[1] = inf: not a finite number"),
        ({"data": {"when": object()}}, "events[1].data.when = <object"),
        ({"data": {7: "seven"}}, "events[1].data: key 7 is not text"),
        ({"receipt_id": "R-\ud800"}, "events[1].receipt_id = 'R-\\ud800': unpaired surrogate"),
    ],
)
def test_what_the_store_cannot_hold_is_refused_by_field_before_writing(
    store: Store, db_path: Path, fields: dict[str, Any], needle: str
) -> None:
    bad = with_receipt(contact("c1", 10), **fields)
    with pytest.raises(ValueError, match="contact c1") as refused:
        store.save_contact(bad, [message("m1", "c1")])
    assert needle in str(refused.value)
    orphan = replace(bad.events[1], contact_id=None)  # the receipt, outside any contact
    with pytest.raises(ValueError, match=f"event {orphan.id} cannot be stored"):
        store.save_event(orphan, [message("m2", orphan.id, "event")])
    nan_row = OutboxMessage("m3", "event", "o1", {"data": {"sum": float("nan")}})
    with pytest.raises(ValueError, match=r"outbox m3: payload\.data\.sum = nan"):
        store.save_event(event("o1", 5), [nan_row])
    assert set(table_counts(db_path).values()) == {0}


def test_clean_keeps_what_the_store_can_hold_and_says_what_it_changed(store: Store) -> None:
    rec = with_receipt(
        contact("c1", 10),
        receipt_id="R-\ud800",
        data={"sum": float("nan"), "n": [1, float("-inf")], "ok": "café", "deep": {"x": 1e999}},
    )
    clean, changes = clean_contact(rec)
    receipt = next(e for e in clean.events if e.id == "c1-e1")
    assert receipt.receipt_id == "R-\\ud800"  # spelled out, nothing lost
    assert receipt.data == {"n": [1, None], "ok": "café", "deep": {}}
    assert changes == [
        "events[1].receipt_id = 'R-\\ud800': unpaired surrogate (escaped)",
        "events[1].data.sum = nan: not a finite number (dropped)",
        "events[1].data.n[1] = -inf: not a finite number (dropped)",
        "events[1].data.deep.x = inf: not a finite number (dropped)",
    ]
    assert store.save_contact(clean, [message("m1", "c1")])
    assert store.contacts() == [by_time(clean)]
    assert clean_contact(clean) == (clean, [])  # a sound record is left as it is
    orphan, changes = clean_event(replace(rec.events[1], contact_id=None))
    assert orphan.data == receipt.data
    assert len(changes) == 4


def test_an_event_naming_an_unknown_contact_breaks_the_foreign_key(store: Store) -> None:
    with pytest.raises(IntegrityError):
        store.save_event(event("e1", 5, contact_id="nobody"), [message("m1", "e1", "event")])

    assert store.orphan_events() == []
    assert store.outbox.depth() == 0


def test_created_ns_comes_from_the_clock(db_path: Path) -> None:
    ticks = counting_clock(start=WALL0, step=7)
    with Store.open(db_path, clock=ticks) as store:
        store.save_contact(contact("c1", 10), [message("m1", "c1"), message("m2", "c1")])
        store.save_event(event("o1", 5), [message("m3", "o1", "event")])
        created = [row.created_ns for row in store.outbox.pending()]

    # one clock reading per transaction
    assert created == [WALL0, WALL0, WALL0 + 7]
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT created_ns FROM contacts").fetchall() == [(WALL0,)]


# Files, reopening, two stores


def test_reopen_keeps_data_and_outbox_state_without_migrating_again(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[list[int]] = []

    def spy(db: SqliteDatabase, path: Path) -> list[int]:
        result = migrate(db, path)
        applied.append(result)
        return result

    monkeypatch.setattr(store_db, "migrate", spy)
    with Store.open(db_path) as store:
        store.save_contact(contact("c1", 10), [message("m1", "c1")])
        store.save_event(event("o1", 5), [message("m2", "o1", "event")])
        first = store.outbox.pending()[0].seq
        store.outbox.mark_sent([first], WALL0)
        store.outbox.note_attempt(first + 1)

    with Store.open(db_path) as store:
        assert store.contacts() == [by_time(contact("c1", 10))]
        assert store.orphan_events() == [event("o1", 5)]
        [row] = store.outbox.pending()
        assert (row.msg_id, row.attempts) == ("m2", 1)

    assert applied == [[m.version for m in MIGRATIONS], []]


def test_two_stores_in_one_process_keep_their_own_data(tmp_path: Path) -> None:
    with Store.open(tmp_path / "a.sqlite") as a, Store.open(tmp_path / "b.sqlite") as b:
        assert a.save_contact(contact("ca", 10), [message("ma", "ca")])
        assert b.save_contact(contact("cb", 20), [message("mb", "cb")])
        assert a.save_event(event("oa", 1), [])

        assert [c.id for c in a.contacts()] == ["ca"]
        assert [c.id for c in b.contacts()] == ["cb"]
        assert [e.id for e in a.orphan_events()] == ["oa"]
        assert b.orphan_events() == []
        assert [r.msg_id for r in b.outbox.pending()] == ["mb"]


def test_a_closed_store_refuses_to_work(db_path: Path) -> None:
    store = Store.open(db_path)
    store.close()

    with pytest.raises(InterfaceError):
        store.contacts()


def test_settings_are_in_effect_on_the_connection(db_path: Path) -> None:
    db = connect(db_path)
    try:
        assert db.pragma("journal_mode") == "wal"
        assert db.pragma("synchronous") == 2  # FULL
        assert db.pragma("foreign_keys") == 1
        assert db.pragma("busy_timeout") == store_db.BUSY_TIMEOUT_MS
        assert db.pragma("journal_size_limit") == dict(store_db.PRAGMAS)["journal_size_limit"]
        assert db.pragma("cache_size") == -store_db.CACHE_KIB == -512  # KiB, not the 2 MiB default
    finally:
        db.close()
    # WAL is a property of the file: another connection sees it too
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_integrity_check_of_a_store_in_use(store: Store) -> None:
    store.save_contact(contact("c1", 10), [message("m1", "c1")])
    assert store.integrity_check() == "ok"


def test_a_file_that_is_not_a_database_is_refused_by_name(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is a text file, not SQLite " * 64)

    with pytest.raises(StoreError, match=r"edge\.sqlite") as caught:
        Store.open(db_path)
    assert isinstance(caught.value, UserError)


# Migrations


def test_a_new_file_gets_every_migration_and_matching_models(db_path: Path) -> None:
    Store.open(db_path).close()  # a fresh file with every migration
    db = connect(db_path)
    try:
        assert schema_version(db) == len(MIGRATIONS)
        for model in MODELS:
            table = model._meta.table_name
            in_file = {c.name for c in db.get_columns(table)}
            assert in_file == set(model._meta.columns), table
    finally:
        db.close()


def test_a_newer_schema_is_refused_with_file_versions_and_fix(db_path: Path) -> None:
    Store.open(db_path).close()  # a fresh file with every migration
    newer = len(MIGRATIONS) + 5
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")

    with pytest.raises(SchemaError) as caught:
        Store.open(db_path)

    text = str(caught.value)
    assert str(db_path) in text
    assert f"version {newer}" in text
    assert f"up to {len(MIGRATIONS)}" in text
    assert "install" in text
    assert isinstance(caught.value, UserError)
    with closing(sqlite3.connect(db_path)) as conn:  # refusing did not touch the file
        assert conn.execute("PRAGMA user_version").fetchone() == (newer,)


def test_migration_versions_are_numbered_from_one_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def _add_column(version: int, column: str) -> Migration:
    return Migration(version, f"test: add {column}", (f"ALTER TABLE contacts ADD {column} TEXT",))


def test_a_v1_file_is_upgraded_by_later_migrations_in_order(db_path: Path) -> None:
    with Store.open(db_path) as store:
        store.save_contact(contact("c1", 10), [message("m1", "c1")])
    n = len(MIGRATIONS)  # the shipped ones; the two below come after them
    v2 = Migration(n + 1, "test: note column", ("ALTER TABLE contacts ADD note TEXT",))
    # v3 depends on v2: it only works when applied after it
    v3 = Migration(n + 2, "test: fill note", ("UPDATE contacts SET note = 'v3 saw ' || id",))

    db = connect(db_path)
    try:
        assert migrate(db, db_path, (*MIGRATIONS, v2, v3)) == [n + 1, n + 2]
        assert schema_version(db) == n + 2
        assert migrate(db, db_path, (*MIGRATIONS, v2, v3)) == []
    finally:
        db.close()
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT id, note FROM contacts").fetchall() == [("c1", "v3 saw c1")]
    # the code of this release knows only version 1: the upgraded file is refused
    with pytest.raises(SchemaError):
        Store.open(db_path)


def test_a_failing_migration_is_rolled_back_alone(db_path: Path) -> None:
    Store.open(db_path).close()  # a fresh file with every migration
    n = len(MIGRATIONS)
    good = _add_column(n + 1, "note")
    bad = Migration(n + 2, "test: broken", ("ALTER TABLE contacts ADD other TEXT", "NOT SQL"))

    db = connect(db_path)
    try:
        with pytest.raises(Exception, match="syntax error"):
            migrate(db, db_path, (*MIGRATIONS, good, bad))
        assert schema_version(db) == n + 1
        columns = {c.name for c in db.get_columns("contacts")}
        assert "note" in columns
        assert "other" not in columns
    finally:
        db.close()


def test_migrations_out_of_order_are_rejected(db_path: Path) -> None:
    db = connect(db_path)
    try:
        n = len(MIGRATIONS)
        with pytest.raises(ValueError, match=f"expected {n + 1}"):
            migrate(db, db_path, (*MIGRATIONS, _add_column(n + 2, "note")))
        assert schema_version(db) == 0  # checked before anything was applied
    finally:
        db.close()
