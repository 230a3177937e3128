"""Clock trouble: the device starts with a wall clock hours wrong (either way) and NTP corrects
it later. Durations come from the monotonic clock and stay right; contacts saved before the
sync are flagged ``clock_synced = false`` and, at the sync, corrected from their monotonic time
(same boot): their unsent messages are rewritten in place, and each is sent again (the sink
replaces the flagged times). The sink's order by start time is then the true order."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edge.clock import NS, FakeClock
from edge.config import Config
from edge.publish.wire import contact_json, iso
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from provisioning.broker import LocalBroker
from tests.faults.harness import config_dict, running_sink, wait_for

SHIFT = busy_shift(0.25, seed=3)
TRUE_START = SHIFT.start_wall_ns
SYNC_AT_NS = 500 * NS  # NTP answers 500 s after boot: about half the contacts are before it
HOURS = [5, -7]  # the clock starts 5 h ahead / 7 h behind


def wrong_clock(hours: int) -> FakeClock:
    clock = FakeClock(TRUE_START + hours * 3600 * NS, synced=False, boot=f"boot{hours}")
    clock.schedule_sync(SYNC_AT_NS, TRUE_START)
    return clock


def check_edge_store(data: Path) -> None:
    with Store.open(data / STORE_NAME) as store:
        contacts = store.contacts()
        rows = store.outbox.pending(limit=1000)
    assert len(contacts) == 13
    assert sum(c.start_ns < SYNC_AT_NS for c in contacts) >= 3  # some were saved before the sync
    for c in contacts:
        assert c.clock_synced
        assert (c.start_wall_ns, c.end_wall_ns) == (TRUE_START + c.start_ns, TRUE_START + c.end_ns)
        assert all(e.wall_ns == TRUE_START + e.t_ns for e in c.events)
    unsent = {r.ref: r.payload["contact"] for r in rows if r.kind == "contact"}
    for c in contacts:  # what is still to be sent carries the corrected times
        if c.id in unsent:
            assert unsent[c.id] == contact_json(c)


@pytest.mark.parametrize("hours", HOURS)
def test_contacts_saved_before_the_sync_are_corrected_in_the_outbox(
    tmp_path: Path, hours: int
) -> None:
    cfg = Config.model_validate(config_dict("mqtt://127.0.0.1:1"))
    run_simulation(cfg, SHIFT, tmp_path / "s.toml", tmp_path, clock=wrong_clock(hours))
    check_edge_store(tmp_path)


@pytest.mark.parametrize("hours", HOURS)
def test_the_sink_gets_true_times_and_order_after_the_sync(
    broker: LocalBroker, tmp_path: Path, hours: int
) -> None:
    edge = tmp_path / "edge"
    edge.mkdir()
    cfg = Config.model_validate(config_dict(broker.url))
    with running_sink(broker.url, tmp_path / "sink") as sink:
        run_simulation(  # paced: contacts before the sync are delivered before it happens
            cfg,
            SHIFT,
            edge / "s.toml",
            edge,
            broker=broker.url,
            clock=wrong_clock(hours),
            realtime=True,
            speed=400,
        )
        wait_for(lambda: sink.stats().get("clock_corrected", 0) >= 3, 20, "corrections")
        check_edge_store(edge)
        with Store.open(edge / STORE_NAME) as store:
            by_id = {c.id: c for c in store.contacts()}
        with sqlite3.connect(tmp_path / "sink" / "sink.db") as db:
            wait_for(lambda: db.execute("SELECT COUNT(*) FROM contacts").fetchone()[0] == 13, 20)
            rows = db.execute(
                "SELECT id, start_iso, end_iso, clock_synced FROM contacts ORDER BY start_iso"
            ).fetchall()
            events = db.execute("SELECT contact_id, id, at_iso, body FROM events").fetchall()
    true_order = sorted(by_id.values(), key=lambda c: c.start_ns)
    assert [r[1] for r in rows] == [iso(TRUE_START + c.start_ns) for c in true_order]
    for cid, start, end, synced in rows:
        c = by_id[cid]
        assert (start, end, bool(synced)) == (
            iso(TRUE_START + c.start_ns),
            iso(TRUE_START + c.end_ns),
            True,
        )
        duration = (c.end_ns - c.start_ns) / NS
        assert contact_json(c)["duration_s"] == round(duration, 3)
    truth = {e.id: iso(e.wall_ns) for c in by_id.values() for e in c.events}
    for _, eid, at, body in events:
        assert at == truth[eid] == json.loads(body)["at"]
