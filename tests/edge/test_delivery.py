"""The delivery state machine of an outbox row, with an injected clock: pending -> sent (the
broker's PUBACK) -> delivered (the sink's receipt); a receipt that is late sends the row again
once it may have been lost (a reconnect, or a later row confirmed), with a doubling wait, and a
row that had every resend waits for the next connection."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.clock import NS
from edge.publish import wire
from edge.publish.delivery import INF, AwaitingReceipts
from edge.records import OutboxMessage
from edge.store import Delivered, Store

WALL0 = 1_800_000_000 * NS


class Clock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def tracker(timeout_s: float = 10.0, max_s: float = 35.0, resends: int = 3) -> AwaitingReceipts:
    return AwaitingReceipts(timeout_s, max_s, resends)


def test_a_late_row_goes_again_once_a_later_one_is_confirmed(clock: Clock) -> None:
    t = tracker()
    t.connected(clock())
    t.sent(1, "m1", clock())
    t.sent(2, "clip:c2", clock())
    t.sent(3, "m3", clock())
    clock.advance(9.9)
    assert t.due(clock()) == ([], [])
    assert t.held == 0
    clock.advance(0.1)
    # late, but nothing says they were lost: the broker holds them for a sink away or busy
    assert t.due(clock()) == ([], [])
    assert t.held == 3
    assert t.confirm(["m1", "unknown"]) == [1]  # the sink is reading: it has reached row 1
    assert t.due(clock()) == ([], [])
    assert t.held == 2
    assert 1 not in t
    # the sink confirmed row 3, sent after row 2: it has passed row 2 without confirming it
    assert t.confirm(["m3"]) == [3]
    assert t.due(clock()) == ([2], [])
    assert t.held == 0
    assert t.due(clock()) == ([], [])  # once: it waits for that send's PUBACK
    assert t.next_deadline() == INF
    t.sent(2, "clip:c2", clock(), resend=True)  # PUBACK of the resend
    assert t.next_deadline() == clock() + 20.0  # the wait doubled
    assert t.confirm(["clip:c2"]) == [2]
    assert len(t) == 0


def test_a_new_connection_means_what_was_sent_before_may_be_lost(clock: Clock) -> None:
    t = tracker()
    t.connected(clock())  # the first connection
    t.sent(1, "m1", clock())
    clock.advance(10)
    assert t.due(clock()) == ([], [])
    assert t.held == 1
    t.connected(clock())  # the broker went away and came back (a restart loses messages)
    t.sent(2, "m2", clock())  # sent on the new connection: nothing says it is lost
    assert t.due(clock()) == ([1], [])
    clock.advance(10)
    assert t.due(clock()) == ([], [])
    assert t.held == 1


def test_waits_double_up_to_the_cap_then_the_row_is_given_up(clock: Clock) -> None:
    t = tracker(timeout_s=10, max_s=35, resends=3)
    t.sent(7, "m7", clock())
    t.sent(8, "m8", clock())
    assert t.confirm(["m8"]) == [8]  # sent after 7: every late wait of 7 counts as a loss
    waits = []
    sent_at = clock()
    while True:
        clock.advance(t.next_deadline() - clock())
        again, dropped = t.due(clock())
        waits.append(clock() - sent_at)
        if dropped:
            assert (again, dropped) == ([], [7])
            break
        assert again == [7]
        clock.advance(1.0)  # its PUBACK comes a second later
        sent_at = clock()
        t.sent(7, "m7", sent_at, resend=True)
        t.sent(9, "m9", clock())  # ... and a newer row, which the sink confirms
        assert t.confirm(["m9"]) == [9]
    assert waits == [10, 20, 35, 35]  # 10, doubled, capped at 35; given up after 3 resends
    assert t.given_up == 1
    assert len(t) == 1
    clock.advance(10_000)
    assert t.due(clock()) == ([], [])  # given up: no more resends on this connection
    t.connected(clock())  # the first connection counted here: nothing changes
    assert t.given_up == 1
    # a new connection (a restarted broker may have lost it): another round
    assert t.connected(clock()) == 1
    assert t.given_up == 0
    assert t.next_deadline() == clock() + 10
    clock.advance(10)
    assert t.due(clock()) == ([7], [])
    # and a receipt ends it whatever its state
    assert t.confirm(["m7"]) == [7]
    assert t.given_up == 0


def test_a_lost_connection_makes_rows_being_resent_due_again(clock: Clock) -> None:
    t = tracker()
    t.connected(clock())
    t.sent(1, "m1", clock())
    t.sent(2, "m2", clock())
    t.connected(clock())  # a reconnect: both may be lost
    clock.advance(10)
    assert t.due(clock()) == ([1, 2], [])
    t.sent(1, "m1", clock(), resend=True)  # only row 1's PUBACK came before the link broke
    clock.advance(1)
    t.requeue(clock())
    t.connected(clock())
    assert t.due(clock()) == ([2], [])  # row 2 goes again on the next connection
    assert t.next_deadline() == clock() - 1 + 20  # row 1 waits for its receipt as usual


def test_a_row_confirmed_while_being_resent_is_not_tracked_again(clock: Clock) -> None:
    t = tracker()
    t.sent(3, "m3", clock())
    t.connected(clock())
    t.connected(clock())
    clock.advance(10)
    assert t.due(clock()) == ([3], [])
    assert t.confirm(["m3"]) == [3]  # the first send's receipt was only late
    t.sent(3, "m3", clock(), resend=True)  # the resend's PUBACK
    assert len(t) == 0
    t.forget([3, 99])  # harmless
    assert len(t) == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        AwaitingReceipts(0, 10, 3)
    with pytest.raises(ValueError, match="max_resends"):
        AwaitingReceipts(1, 10, -1)
    assert AwaitingReceipts(30, 5, 1).timeout_max_s == 30  # the cap is never below the timeout


# --- the same machine over a real store: what the publisher does with both ----------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "edge.sqlite", clock=itertools.count(WALL0, NS).__next__) as s:
        yield s


def queue(store: Store, msg_id: str, kind: str, ref: str) -> int:
    store.save_messages([OutboxMessage(msg_id, kind, ref, {"msg_id": msg_id})])
    return store.outbox.pending(limit=1000)[-1].seq


def test_outbox_rows_from_pending_to_sent_to_delivered_with_a_resend(
    store: Store, clock: Clock
) -> None:
    """The publisher's loop, step by step: PUBACK marks sent and starts the wait; a late
    receipt sends the row again (read back from the store); a receipt marks it delivered."""
    t = tracker(timeout_s=5, max_s=60, resends=5)
    contact = queue(store, "a" * 32, "contact", "c1")
    clip = queue(store, "b" * 32, "clip", "c1")
    route = queue(store, "c" * 32, "route", "c1")
    assert store.outbox.depth() == 3
    assert store.outbox.undelivered() == 3

    # every row's PUBACK: sent; a route row takes no receipt, the others wait for one
    store.outbox.mark_sent([contact, clip, route], WALL0 + NS)
    for row in store.outbox.awaiting():
        key = wire.receipt_key(row.kind, row.msg_id, row.ref)
        if key is None:
            store.outbox.mark_delivered(Delivered(seqs=(row.seq,)), WALL0 + NS)
        else:
            t.sent(row.seq, key, clock())
    assert store.outbox.depth() == 0
    assert store.outbox.undelivered() == 2
    assert len(t) == 2

    # the sink confirms the contact only; the clip's receipt is late, and a new connection
    # says it may have been lost (a broker restart): it goes again
    receipt = wire.Receipt(msg_ids=("a" * 32,), clip_ids=())
    assert t.confirm(receipt.keys) == [contact]
    store.outbox.mark_delivered(Delivered(msg_ids=receipt.msg_ids), WALL0 + 2 * NS)
    clock.advance(5)
    assert t.due(clock()) == ([], [])
    assert t.held == 1
    t.connected(clock())
    t.connected(clock())
    again, _ = t.due(clock())
    assert [r.msg_id for r in store.outbox.undelivered_rows(again)] == ["b" * 32]
    t.sent(clip, "clip:c1", clock(), resend=True)  # its PUBACK

    # the sink verified the clip: the receipt names it by its clip id
    receipt = wire.Receipt(msg_ids=(), clip_ids=("c1",))
    assert t.confirm(receipt.keys) == [clip]
    store.outbox.mark_delivered(Delivered(clip_ids=receipt.clip_ids), WALL0 + 9 * NS)
    assert store.outbox.undelivered() == 0
    assert len(t) == 0
    clock.advance(1000)
    assert t.due(clock()) == ([], [])
