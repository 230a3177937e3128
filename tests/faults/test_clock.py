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

from edge.app import Core
from edge.clock import NS, FakeClock, SystemClock
from edge.config import Config
from edge.events import Contact
from edge.health import Health
from edge.publish import wire
from edge.publish.wire import contact_json, iso
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from provisioning.broker import LocalBroker
from tests.faults.harness import config_dict, running_sink
from tests.waiting import wait_for

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
    cfg = Config.from_dict(config_dict("mqtt://127.0.0.1:1"))
    run_simulation(cfg, SHIFT, tmp_path / "s.toml", tmp_path, clock=wrong_clock(hours))
    check_edge_store(tmp_path)


@pytest.mark.parametrize("hours", HOURS)
def test_the_sink_gets_true_times_and_order_after_the_sync(
    broker: LocalBroker, tmp_path: Path, hours: int
) -> None:
    edge = tmp_path / "edge"
    edge.mkdir()
    cfg = Config.from_dict(config_dict(broker.url))
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
        wait_for(
            lambda: sink.stats().get("clock_corrected", 0) >= 3,
            "3 contacts with corrected times in the sink",
            progress=sink.stats,
        )
        check_edge_store(edge)
        with Store.open(edge / STORE_NAME) as store:
            by_id = {c.id: c for c in store.contacts()}
        with sqlite3.connect(tmp_path / "sink" / "sink.db") as db:
            wait_for(
                lambda: db.execute("SELECT COUNT(*) FROM contacts").fetchone()[0] == 13,
                "the shift's 13 contacts in the sink",
                progress=sink.stats,
            )
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


# --- steps of a synchronised clock ------------------------------------------------------------

HOUR = 3600 * NS
STEP_BACK_AT, STEP_FORWARD_AT = 300 * NS, 600 * NS


class Machine:
    """The clocks of a machine for :class:`SystemClock`: monotonic time moves only when told to;
    the wall clock is monotonic time plus an offset that NTP (the test) may step."""

    def __init__(self, wall_at_zero_ns: int) -> None:
        self.mono = 0
        self.offset = wall_at_zero_ns

    def wall(self) -> int:
        return self.mono + self.offset


def stepping_core(tmp_path: Path, machine: Machine, threshold_s: float = 2.0) -> Core:
    cfg = Config.from_dict(
        config_dict("mqtt://127.0.0.1:1", clock={"step_threshold_s": threshold_s})
    )
    clock = SystemClock(
        wall_now=machine.wall, monotonic_now=lambda: machine.mono, synced=lambda: True
    )
    store = Store.open(tmp_path / STORE_NAME)
    return Core(cfg, clock, store, tmp_path, audio=False)


def contact(cid: str, start_s: float, end_s: float) -> Contact:
    return Contact(cid, "presence", round(start_s * NS), round(end_s * NS), "departure")


def at(core: Core, machine: Machine, t_s: float) -> None:
    """Monotonic time reaches ``t_s``; the core's once-a-second checks run on the way."""
    while machine.mono < round(t_s * NS):
        machine.mono = min(machine.mono + NS // 2, round(t_s * NS))
        core.tick(machine.mono)


def test_a_step_of_a_synchronised_clock_is_detected_re_anchored_and_flagged(
    tmp_path: Path,
) -> None:
    machine = Machine(TRUE_START)
    core = stepping_core(tmp_path, machine)
    try:
        at(core, machine, 60)
        before = core.contact_record(contact("before", 10, 50), None)
        assert (before.clock_stepped, before.start_wall_ns) == (False, TRUE_START + 10 * NS)

        machine.offset -= HOUR  # NTP steps the wall clock back an hour, mid-shift
        at(core, machine, 62)
        assert core.health.count("clock_stepped") == 1
        assert "clock" in core.health.faults
        assert "-3600" in core.health.faults["clock"]
        straddling = contact("straddling", 55, 70)
        at(core, machine, 80)
        between = core.contact_record(contact("between", 65, 75), None)
        assert between.clock_stepped
        assert between.clock_synced
        assert between.start_wall_ns == TRUE_START - HOUR + 65 * NS  # follows the new clock
        assert wire.contact_json(between)["clock_stepped"] is True

        machine.offset += HOUR  # and forward again
        at(core, machine, 100)
        assert core.health.count("clock_stepped") == 2
        assert "clock" not in core.health.faults  # back on the boot's reference time
        assert core.contact_record(straddling, None).clock_stepped  # spans the step back
        # began under the stepped clock, saved after the step forward: spans that step
        assert core.contact_record(contact("saved-late", 70, 78), None).clock_stepped
        at(core, machine, 120)
        after = core.contact_record(contact("after", 101, 110), None)
        assert (after.clock_stepped, after.start_wall_ns) == (False, TRUE_START + 101 * NS)
        assert "clock_stepped" not in wire.contact_json(after)
    finally:
        core.store.close()


def test_a_small_slew_or_the_first_sync_is_not_a_step(tmp_path: Path) -> None:
    machine = Machine(TRUE_START)
    core = stepping_core(tmp_path, machine, threshold_s=2.0)
    try:
        at(core, machine, 10)
        machine.offset += 1_500_000_000  # below the threshold: not a step
        at(core, machine, 20)
        assert core.health.count("clock_stepped") == 0
        assert not core.contact_record(contact("a", 12, 18), None).clock_stepped
    finally:
        core.store.close()
    clock = wrong_clock(5)  # not synchronised at start: the jump at the sync is expected
    cfg = Config.from_dict(config_dict("mqtt://127.0.0.1:1"))
    cores: list[Core] = []
    run_simulation(
        cfg, SHIFT, tmp_path / "s.toml", tmp_path / "sim", clock=clock, core_hook=cores.append
    )
    assert cores[0].health.count("clock_stepped") == 0
    with Store.open(tmp_path / "sim" / STORE_NAME) as store:
        assert not any(c.clock_stepped for c in store.contacts())


def test_a_shift_with_the_clock_stepped_back_and_forward_flags_the_contacts_in_between(
    tmp_path: Path,
) -> None:
    clock = FakeClock(TRUE_START, synced=True, boot="stepping")
    clock.schedule_step(STEP_BACK_AT, -HOUR)
    clock.schedule_step(STEP_FORWARD_AT, HOUR)
    cores: list[Core] = []
    faults_seen: list[set[str]] = []

    def seen(health: Health) -> None:
        faults_seen.append(set(health.faults))

    cfg = Config.from_dict(config_dict("mqtt://127.0.0.1:1"))
    run_simulation(
        cfg,
        SHIFT,
        tmp_path / "s.toml",
        tmp_path,
        clock=clock,
        core_hook=cores.append,
        on_health=seen,
    )
    with Store.open(tmp_path / STORE_NAME) as store:
        contacts = store.contacts()
        payloads = {r.ref: r.payload["contact"] for r in store.outbox.of_kind("contact")}
    detected = NS  # a step is seen at the next check, at most a second later
    classes = {"before": 0, "between": 0, "after": 0}
    for c in contacts:
        offset = c.start_wall_ns - c.start_ns
        assert offset in (TRUE_START, TRUE_START - HOUR)  # stamped with the clock of the moment
        assert all(e.wall_ns - e.t_ns == offset for e in c.events)
        assert c.clock_synced  # it was synchronised all along: the flag says what happened
        assert payloads[c.id].get("clock_stepped", False) is c.clock_stepped
        spans_the_steps = c.start_ns <= STEP_FORWARD_AT and c.end_ns >= STEP_BACK_AT
        if offset == TRUE_START - HOUR or spans_the_steps:
            assert c.clock_stepped, c
            classes["between"] += 1
        elif c.end_ns < STEP_BACK_AT:  # saved before the step (else stamped an hour early)
            assert not c.clock_stepped, c
            classes["before"] += 1
        elif c.start_ns > STEP_FORWARD_AT + detected:
            assert not c.clock_stepped, c
            classes["after"] += 1
    assert min(classes.values()) >= 2, classes
    health = cores[0].health
    assert health.count("clock_stepped") == 2
    assert any("clock" in seen for seen in faults_seen)  # raised while the clock was off
    assert "clock" not in health.faults  # and cleared when it came back
