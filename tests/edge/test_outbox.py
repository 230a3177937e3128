"""The outbox on a real SQLite file: delivery order, acknowledgement, housekeeping."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import edge.store.outbox as outbox_module
from edge.clock import NS
from edge.records import ContactRecord, EventRecord, OutboxMessage
from edge.store import AwaitingRow, Delivered, OutboxRow, Store

WALL0 = 1_800_000_000 * NS


def contact(contact_id: str, start_s: int) -> ContactRecord:
    start = start_s * NS
    return ContactRecord(
        id=contact_id,
        mode="window",
        start_ns=start,
        end_ns=start + 60 * NS,
        start_wall_ns=WALL0 + start,
        end_wall_ns=WALL0 + start + 60 * NS,
        ended_by="window",
        tags=("request",),
        events=(),
        clip=None,
        clock_synced=True,
        boot_id="b",
    )


def orphan(event_id: str, t_s: int) -> EventRecord:
    return EventRecord(id=event_id, kind="receipt", t_ns=t_s * NS, wall_ns=WALL0 + t_s * NS)


def message(msg_id: str, ref: str, kind: str = "contact") -> OutboxMessage:
    return OutboxMessage(msg_id, kind, ref, {"msg_id": msg_id, "body": {"ref": ref}})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    clock = itertools.count(WALL0, NS).__next__
    with Store.open(tmp_path / "edge.sqlite", clock=clock) as opened:
        yield opened


def fill(store: Store) -> list[str]:
    """Contacts and orphan events interleaved; returns the msg ids in the order queued."""
    assert store.save_contact(contact("c1", 10), [message("c1-contact", "c1")])
    assert store.save_event(orphan("o1", 20), [message("o1-event", "o1", "event")])
    assert store.save_contact(
        contact("c2", 30), [message("c2-contact", "c2"), message("c2-clip", "c2", "clip")]
    )
    assert store.save_event(orphan("o2", 40), [message("o2-event", "o2", "event")])
    return ["c1-contact", "o1-event", "c2-contact", "c2-clip", "o2-event"]


def test_pending_returns_rows_in_the_order_they_were_queued(store: Store) -> None:
    queued = fill(store)

    rows = store.outbox.pending()

    assert [r.msg_id for r in rows] == queued
    seqs = [r.seq for r in rows]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert rows[3] == OutboxRow(
        seq=rows[3].seq,
        msg_id="c2-clip",
        kind="clip",
        ref="c2",
        payload={"msg_id": "c2-clip", "body": {"ref": "c2"}},
        created_ns=rows[2].created_ns,  # the same transaction as c2's contact message
        attempts=0,
    )
    assert rows[0].created_ns < rows[1].created_ns < rows[2].created_ns


def test_pending_pages_with_limit_and_after_seq(store: Store) -> None:
    queued = fill(store)

    first = store.outbox.pending(limit=2)
    rest = store.outbox.pending(limit=10, after_seq=first[-1].seq)

    assert [r.msg_id for r in first] == queued[:2]
    assert [r.msg_id for r in rest] == queued[2:]
    assert store.outbox.pending(after_seq=rest[-1].seq) == []
    with pytest.raises(ValueError, match="limit"):
        store.outbox.pending(limit=0)


def test_mark_sent_is_idempotent_and_depth_counts_unsent_rows(store: Store) -> None:
    queued = fill(store)
    seqs = [r.seq for r in store.outbox.pending()]
    assert store.outbox.depth() == len(queued)

    assert store.outbox.mark_sent([seqs[0], seqs[2]], WALL0 + 100 * NS) == 2
    assert store.outbox.mark_sent([seqs[0], seqs[2]], WALL0 + 200 * NS) == 0  # redelivered ack
    assert store.outbox.mark_sent([seqs[2], seqs[3], 999_999], WALL0 + 300 * NS) == 1

    assert store.outbox.depth() == len(queued) - 3
    assert [r.msg_id for r in store.outbox.pending()] == [queued[1], queued[4]]
    assert store.outbox.mark_sent([], WALL0) == 0


def test_mark_sent_works_through_long_lists_in_chunks(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "_CHUNK", 2)
    queued = fill(store)
    seqs = [r.seq for r in store.outbox.pending()]
    store.outbox.mark_sent(seqs[1:2], WALL0)

    # five seqs in three statements, one of them already sent
    assert store.outbox.mark_sent(seqs, WALL0 + NS) == len(queued) - 1
    assert store.outbox.depth() == 0


def test_note_attempt_counts_per_row(store: Store) -> None:
    fill(store)
    first, second = store.outbox.pending(limit=2)

    store.outbox.note_attempt(first.seq)
    store.outbox.note_attempt(first.seq)
    store.outbox.note_attempt(second.seq)
    store.outbox.note_attempt(999_999)  # unknown: nothing happens

    attempts = {r.msg_id: r.attempts for r in store.outbox.pending()}
    assert attempts[first.msg_id] == 2
    assert attempts[second.msg_id] == 1
    assert sum(attempts.values()) == 3


def test_purge_removes_only_rows_delivered_before_the_cutoff(store: Store) -> None:
    queued = fill(store)
    seqs = [r.seq for r in store.outbox.pending()]
    store.outbox.mark_sent(seqs[:4], WALL0 + 50 * NS)
    store.outbox.mark_delivered(Delivered(seqs=tuple(seqs[:2])), WALL0 + 100 * NS)
    store.outbox.mark_delivered(Delivered(seqs=(seqs[2],)), WALL0 + 300 * NS)
    # a late duplicate receipt keeps the first time
    store.outbox.mark_delivered(Delivered(seqs=tuple(seqs[:2])), WALL0 + 500 * NS)

    assert store.outbox.purge_delivered(older_than_ns=WALL0 + 200 * NS) == 2
    assert store.outbox.purge_delivered(older_than_ns=WALL0 + 200 * NS) == 0
    assert store.outbox.purge_delivered(older_than_ns=WALL0 + 10_000 * NS) == 1

    # sent but not confirmed by the sink (seqs[3]), and unsent rows, are never purged
    assert [r.seq for r in store.outbox.awaiting()] == [seqs[3]]
    assert [r.msg_id for r in store.outbox.pending()] == queued[4:]
    assert store.outbox.undelivered() == 2


def test_seqs_are_not_reused_after_the_newest_rows_were_purged(store: Store) -> None:
    fill(store)
    rows = store.outbox.pending()
    store.outbox.mark_delivered(Delivered(seqs=tuple(r.seq for r in rows)), WALL0)
    assert store.outbox.purge_delivered(WALL0 + 1) == len(rows)

    store.save_event(orphan("o9", 90), [message("late", "o9", "event")])

    [late] = store.outbox.pending()
    assert late.seq > rows[-1].seq
    assert store.outbox.pending(after_seq=rows[-1].seq) == [late]


def test_outbox_state_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite"
    with Store.open(path) as store:
        queued = fill(store)
        rows = store.outbox.pending()
        store.outbox.mark_sent([rows[1].seq], WALL0)
        store.outbox.note_attempt(rows[0].seq)

    with Store.open(path) as store:
        again = store.outbox.pending()
        assert [r.msg_id for r in again] == [m for m in queued if m != queued[1]]
        assert again[0] == replace(rows[0], attempts=1)
        assert store.outbox.depth() == len(queued) - 1


# --- delivery receipts: sent is not delivered -----------------------------------------------


def test_sent_rows_wait_for_the_sinks_receipt_by_msg_id_or_clip(store: Store) -> None:
    queued = fill(store)
    seqs = {r.msg_id: r.seq for r in store.outbox.pending()}
    store.outbox.mark_sent(list(seqs.values())[:4], WALL0 + 10 * NS)

    assert store.outbox.depth() == 1  # o2-event is not sent yet
    assert store.outbox.undelivered() == len(queued)  # acknowledged by the broker only
    assert store.outbox.awaiting() == [
        AwaitingRow(seqs[m], m, kind, ref)
        for m, kind, ref in [
            ("c1-contact", "contact", "c1"),
            ("o1-event", "event", "o1"),
            ("c2-contact", "contact", "c2"),
            ("c2-clip", "clip", "c2"),
        ]
    ]
    # a receipt names messages by msg_id and clips by clip id; an unknown one is ignored
    receipt = Delivered(msg_ids=("c1-contact", "nope"), clip_ids=("c2", "c1"))
    assert store.outbox.mark_delivered(receipt, WALL0 + 20 * NS) == 2
    assert store.outbox.mark_delivered(receipt, WALL0 + 30 * NS) == 0  # a repeated receipt
    assert [r.msg_id for r in store.outbox.awaiting()] == ["o1-event", "c2-contact"]
    # only the clip row of c2 was confirmed by its clip id, not c2's contact message
    assert [r.msg_id for r in store.outbox.undelivered_rows(list(seqs.values()))] == [
        "o1-event",
        "c2-contact",
        "o2-event",
    ]
    # a receipt that overtook the PUBACK (o2-event went, the connection dropped before its
    # acknowledgement was noted): delivered, and so sent, at the receipt's time
    assert store.outbox.mark_delivered(Delivered(msg_ids=("o2-event",)), WALL0 + 40 * NS) == 1
    assert store.outbox.depth() == 0
    assert store.outbox.undelivered() == 2
    assert store.outbox.mark_sent([seqs["o2-event"]], WALL0 + 50 * NS) == 0  # already sent
    with sqlite3.connect(store.path) as raw:
        times = dict(
            raw.execute("SELECT msg_id, delivered_ns FROM outbox WHERE delivered_ns IS NOT NULL")
        )
    assert times == {
        "c1-contact": WALL0 + 20 * NS,
        "c2-clip": WALL0 + 20 * NS,  # the first receipt's time stays
        "o2-event": WALL0 + 40 * NS,
    }


def test_rows_acknowledged_before_the_upgrade_count_as_delivered(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite"
    with Store.open(path) as store:
        fill(store)
        first, second = store.outbox.pending()[:2]
        store.outbox.mark_sent([first.seq], WALL0)
    with sqlite3.connect(path) as raw:  # back to the file an older release left
        raw.execute("DROP INDEX outbox_undelivered")
        raw.execute("ALTER TABLE outbox DROP COLUMN delivered_ns")
        raw.execute("DROP TABLE posted_events")  # and migration 8's table, made later
        raw.execute("PRAGMA user_version = 6")
    with Store.open(path) as store:  # migration 7
        assert store.outbox.awaiting() == []  # that release forgot them on PUBACK: so do we
        assert store.outbox.undelivered() == 4
        assert store.outbox.pending()[0] == second
