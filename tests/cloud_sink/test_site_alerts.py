"""Alerts in the sink: the devices' alerts stored once, site-level rules across devices at their
boundaries, and site alerts published on contactpoint/v1/<site>/_site/alert (real mosquitto)."""

from __future__ import annotations

import copy
import itertools
import json
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from peewee import Database

from cloud_sink import Sink, SinkConfig, wire
from cloud_sink.alerts import SiteAlerts, payload, stored_alerts, to_ns
from cloud_sink.db import open_database
from cloud_sink.ingest import Ingest, Outcome
from cloud_sink.migrations import migrate
from contract.alerts import AlertConfigError, AlertRule, Firing, alert_id, parse_rules
from contract.wire import iso
from provisioning.broker import LocalBroker
from tests.cloud_sink.helpers import (
    NS,
    SITE,
    FakeClock,
    TestClient,
    encode,
    golden,
    golden_bytes,
    new_id,
    topic,
    wait_until,
)

T0 = 1_795_424_400 * NS


@pytest.fixture
def db(db_url: str | None, data_dir: Path) -> Iterator[Database]:
    database = open_database(db_url, data_dir)
    migrate(database)
    yield database
    database.close()


def make_ingest(db: Database, data_dir: Path, rules: list[AlertRule]) -> tuple[Ingest, SiteAlerts]:
    ingest = Ingest(db, data_dir, clock=FakeClock())
    alerts = SiteAlerts(rules)
    ingest.on_stored = alerts.observe
    return ingest, alerts


def event(kind: str, at_s: float, device: str = "cp-0001", site: str = SITE) -> bytes:
    body: dict[str, Any] = {"id": new_id(), "kind": kind, "at": iso(T0 + round(at_s * NS))}
    return encode(
        {"schema": 1, "msg_id": new_id(), "kind": "event", "device": device, "site": site,
         "event": body}
    )  # fmt: skip


def send(ingest: Ingest, kind: str, at_s: float, device: str = "cp-0001") -> Outcome:
    return ingest.handle(topic("event", device=device), event(kind, at_s, device)).outcome


BURST = AlertRule(
    name="negative_burst", count="red", at_least=4, share_at_least=0.5, within_s=900, cooldown_s=900
)


# --- the wire ------------------------------------------------------------------------------


def test_golden_alert_parses() -> None:
    msg = wire.parse(topic("alert"), golden_bytes("alert.json"))
    assert isinstance(msg, wire.Message)
    assert isinstance(msg.body, wire.Alert)
    assert msg.body.body == golden("alert.json")["alert"]
    assert (msg.body.rule, msg.body.at) == ("negative_burst", "2026-11-23T09:09:50.000Z")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda a: a.update(id="nope"), "id"),
        (lambda a: a.pop("refs"), "field"),
        (lambda a: a.update(refs=[1]), "field"),
        (lambda a: a.update(count="4"), "field"),
        (lambda a: a.update(at="yesterday"), "field"),
    ],
)
def test_bad_alerts_are_rejected(change: Any, reason: str) -> None:
    msg = copy.deepcopy(golden("alert.json"))
    change(msg["alert"])
    parsed = wire.parse(topic("alert"), encode(msg))
    assert isinstance(parsed, wire.Rejected)
    assert parsed.reason == reason


def test_the_sinks_own_site_alerts_are_ignored_when_they_come_back() -> None:
    assert isinstance(wire.parse(wire.alert_topic(SITE), b"{}"), wire.Ignored)
    assert wire.alert_topic(SITE) == "contactpoint/v1/site-1/_site/alert"


def test_the_site_payload_has_the_device_alerts_shape() -> None:
    firing = golden("alert.json")["alert"]
    rule = AlertRule(name="negative_burst", count="red", at_least=4, share_at_least=0.5)
    f = Firing(
        alert_id("_site", "negative_burst", to_ns(firing["at"])), "negative_burst", "_site",
        to_ns(firing["at"]), to_ns(firing["window_start"]), 4, 4, 6, 0.6667, 0.5,
        tuple(firing["refs"]),
    )  # fmt: skip
    site = payload(f, SITE, "text")
    assert set(site["alert"]) == set(firing)
    assert site["alert"]["scope"] == "site"
    assert site["device"] == "_site"
    assert rule.share_of == ["green", "yellow", "red"]


# --- storing the devices' alerts -------------------------------------------------------------


def test_a_device_alert_is_stored_once(db: Database, data_dir: Path) -> None:
    ingest, _ = make_ingest(db, data_dir, [])
    raw = golden("alert.json")
    assert ingest.handle(topic("alert"), encode(raw)).outcome is Outcome.STORED
    again = {**raw, "msg_id": new_id()}  # the same firing sent again (e.g. after a restart)
    assert ingest.handle(topic("alert"), encode(again)).outcome is Outcome.DUPLICATE
    (stored,) = stored_alerts(db)
    assert stored["id"] == raw["alert"]["id"]
    assert stored["device"] == "cp-0001"
    assert stored["text"] == raw["alert"]["text"]


def test_a_contacts_video_url_is_kept(db: Database, data_dir: Path) -> None:
    ingest, _ = make_ingest(db, data_dir, [])
    ingest.handle(topic("contact"), golden_bytes("contact.json"))
    (listed,) = ingest.contacts()
    assert listed["video_url"] == golden("contact.json")["contact"]["video_url"]
    assert listed["events"][2]["video_url"].endswith("t=1795424460")


# --- site rules across devices ---------------------------------------------------------------


def test_site_rule_counts_across_devices_and_fires_at_n(db: Database, data_dir: Path) -> None:
    ingest, alerts = make_ingest(db, data_dir, [BURST])
    send(ingest, "red", 0, "cp-0001")
    send(ingest, "red", 10, "cp-0002")
    send(ingest, "red", 20, "cp-0001")
    assert alerts.fired == []  # N - 1
    send(ingest, "red", 30, "cp-0002")
    (fired,) = alerts.fired
    assert (fired.count, fired.total, fired.scope) == (4, 4, "_site")
    assert fired.id == alert_id("_site", "negative_burst", T0 + 30 * NS)
    (row,) = stored_alerts(db)
    assert row["device"] == "_site"
    assert row["count"] == 4


def test_site_share_below_and_at_the_threshold(db: Database, data_dir: Path) -> None:
    ingest, alerts = make_ingest(db, data_dir, [BURST])
    for i in range(5):
        send(ingest, "green", i, f"cp-000{i % 2 + 1}")
    for i in range(4):
        send(ingest, "red", 10 + i, "cp-0003")
    assert alerts.fired == []  # 4 of 9 < 0.5
    send(ingest, "red", 20, "cp-0001")
    (fired,) = alerts.fired  # 5 of 10 = 0.5: at the threshold
    assert (fired.count, fired.total, fired.share) == (5, 10, 0.5)


def test_site_window_edge_and_cooldown(db: Database, data_dir: Path) -> None:
    rule = AlertRule(name="reds", count="red", at_least=2, within_s=60, cooldown_s=120)
    ingest, alerts = make_ingest(db, data_dir, [rule])
    send(ingest, "red", 0)
    send(ingest, "red", 60.001, "cp-0002")  # just outside the first one's window
    assert alerts.fired == []
    send(ingest, "red", 120.001)  # exactly 60 s after the second: inside
    assert [f.at_ns for f in alerts.fired] == [T0 + 120_001_000_000]
    send(ingest, "red", 200, "cp-0002")
    send(ingest, "red", 240.000, "cp-0002")  # cooldown lasts until 240.001
    assert len(alerts.fired) == 1
    send(ingest, "red", 240.001)  # at the cooldown's end, with two new reds in the window
    assert len(alerts.fired) == 2


def test_other_sites_do_not_count(db: Database, data_dir: Path) -> None:
    ingest, alerts = make_ingest(db, data_dir, [AlertRule(name="reds", count="red", at_least=2)])
    ingest.handle(topic("event", site="site-2", device="cp-9"), event("red", 0, "cp-9", "site-2"))
    send(ingest, "red", 1)
    assert alerts.fired == []


def test_a_redelivered_event_fires_nothing_twice(db: Database, data_dir: Path) -> None:
    ingest, alerts = make_ingest(
        db, data_dir, [AlertRule(name="reds", count="red", at_least=1, cooldown_s=0)]
    )
    raw = event("red", 5)
    ingest.handle(topic("event"), raw)
    assert ingest.handle(topic("event"), raw).outcome is Outcome.DUPLICATE
    assert len(alerts.fired) == 1
    assert len(stored_alerts(db)) == 1


def test_contact_tags_count_at_the_contacts_start(db: Database, data_dir: Path) -> None:
    ingest, alerts = make_ingest(
        db, data_dir, [AlertRule(name="neg", count="tag:negative", at_least=1)]
    )
    ingest.handle(topic("contact"), golden_bytes("contact.json"))
    (fired,) = alerts.fired
    assert fired.at_ns == to_ns(golden("contact.json")["contact"]["start"])


# --- delivery order, duplicates and restarts (site rules run on event time) ---------------------

THREE_REDS = AlertRule(name="reds", count="red", at_least=3, within_s=900, cooldown_s=0)
#: reds at 30 s and 130 s from one device and at 40 s from another
REDS = (("cp-0001", 30.0), ("cp-0001", 130.0), ("cp-0002", 40.0))


def red(device: str, at_s: float) -> tuple[bytes, str]:
    """An event message and its event id."""
    raw = event("red", at_s, device)
    return raw, json.loads(raw)["event"]["id"]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_a_site_rule_fires_once_whatever_order_devices_deliver_in(
    db: Database, data_dir: Path, order: tuple[int, ...]
) -> None:
    ingest, alerts = make_ingest(db, data_dir, [THREE_REDS])
    ids = {}
    for i in order:
        device, at_s = REDS[i]
        raw, ids[at_s] = red(device, at_s)
        assert ingest.handle(topic("event", device=device), raw).outcome is Outcome.STORED
    (fired,) = alerts.fired
    assert fired.id == alert_id("_site", "reds", T0 + 130 * NS)  # at the third red in event time
    assert (fired.count, fired.window_start_ns) == (3, T0 + (130 - 900) * NS)
    assert fired.refs == (ids[30.0], ids[40.0], ids[130.0])
    (row,) = stored_alerts(db)
    assert (row["id"], row["count"]) == (fired.id, 3)


def test_a_late_device_completes_a_window_that_ends_before_the_newest_red(
    db: Database, data_dir: Path
) -> None:
    ingest, alerts = make_ingest(db, data_dir, [THREE_REDS])
    send(ingest, "red", 30, "cp-0001")
    send(ingest, "red", 130, "cp-0001")
    send(ingest, "red", 1000, "cp-0001")  # its window (100 s .. 1000 s) holds one red
    assert alerts.fired == []
    send(ingest, "red", 40, "cp-0002")  # late: only the windows ending at 40 s and 130 s hold it
    (fired,) = alerts.fired
    assert (fired.at_ns, fired.count) == (T0 + 130 * NS, 3)


def test_a_duplicate_delivery_does_not_count_twice(db: Database, data_dir: Path) -> None:
    ingest, alerts = make_ingest(db, data_dir, [THREE_REDS])
    send(ingest, "red", 30, "cp-0001")
    raw, event_id = red("cp-0002", 40)
    assert ingest.handle(topic("event", device="cp-0002"), raw).outcome is Outcome.STORED
    again = json.loads(raw)
    assert ingest.handle(topic("event", device="cp-0002"), raw).outcome is Outcome.DUPLICATE
    again["msg_id"] = new_id()  # the same event under a new message id (the device resent it)
    resent = ingest.handle(topic("event", device="cp-0002"), encode(again)).outcome
    assert resent is Outcome.DUPLICATE
    assert alerts.fired == []  # two reds, not three
    send(ingest, "red", 130, "cp-0001")
    (fired,) = alerts.fired
    assert fired.count == 3
    assert event_id in fired.refs


def test_a_sink_restart_does_not_fire_the_same_alert_again(
    db_url: str | None, tmp_path: Path
) -> None:
    data_dir = tmp_path / "sink"

    def start() -> tuple[Database, Ingest, SiteAlerts]:
        database = open_database(db_url, data_dir)
        migrate(database)
        ingest, alerts = make_ingest(database, data_dir, [THREE_REDS])
        return database, ingest, alerts

    database, ingest, alerts = start()
    send(ingest, "red", 30, "cp-0001")
    send(ingest, "red", 130, "cp-0001")
    database.close()
    database, ingest, alerts = start()  # a restart between the deliveries
    raw, _ = red("cp-0002", 40)
    ingest.handle(topic("event", device="cp-0002"), raw)
    (first,) = alerts.fired
    database.close()
    database, ingest, alerts = start()
    # the broker redelivers (the ack was lost with the process), a fourth red comes in: the
    # three reds are reported already; the window ending at 135 s holds only one new red
    assert ingest.handle(topic("event", device="cp-0002"), raw).outcome is Outcome.DUPLICATE
    send(ingest, "red", 135, "cp-0003")
    try:
        assert alerts.fired == []
        assert [a["id"] for a in stored_alerts(database)] == [first.id]
    finally:
        database.close()


def test_two_workers_storing_at_once_see_each_others_reds(
    postgres_url: str, tmp_path: Path
) -> None:
    # Two ingest workers (one PostgreSQL connection each) store the two reds of a burst at
    # the same time: the second must wait for the first's commit, or neither sees the other.
    database = open_database(postgres_url, tmp_path / "sink")
    migrate(database)
    rule = AlertRule(name="reds", count="red", at_least=2, cooldown_s=0)
    first, _ = make_ingest(database, tmp_path / "sink", [rule])
    second, _ = make_ingest(database, tmp_path / "sink", [rule])
    inside, go = threading.Event(), threading.Event()

    def hold(topic_: str) -> None:  # the first worker, about to commit
        inside.set()
        assert go.wait(30), "never released"

    first.before_commit = hold
    done: list[Outcome] = []

    def worker(ingest: Ingest, device: str, at_s: float) -> None:
        try:
            done.append(send(ingest, "red", at_s, device))
        finally:
            database.close()  # this thread's connection

    one = threading.Thread(target=worker, args=(first, "cp-0001", 30))
    two = threading.Thread(target=worker, args=(second, "cp-0002", 40))
    try:
        one.start()
        assert inside.wait(30), "the first worker never reached its commit"
        two.start()
        wait_until(
            lambda: not two.is_alive() or waiting_for_a_lock(postgres_url) > 0,
            "the second worker to finish or to wait",
        )
    finally:
        go.set()
        one.join(30)
        two.join(30)
    try:
        assert done.count(Outcome.STORED) == 2
        (row,) = stored_alerts(database)
        assert (row["count"], row["at"]) == (2, iso(T0 + 40 * NS))
    finally:
        database.close()


def waiting_for_a_lock(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
        return int(row[0]) if row else 0


# --- rules from the config file ---------------------------------------------------------------


def test_rules_are_read_from_the_config_file() -> None:
    doc = tomllib.loads(
        """
[sink]
broker = "mqtt://127.0.0.1:1883"
[[alerts.rules]]
name = "negative_burst"
count = "red"
at_least = 4
share_at_least = 0.5
within_s = 900
"""
    )
    assert parse_rules(doc, "sink.toml") == [BURST]
    assert parse_rules({}, "sink.toml") == []


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"count": "rde"}, "'rde' is not something to count"),
        ({"at_least": 0}, r"alerts.rules\[0\].at_least = 0"),
        ({"share_at_least": 2}, "share_at_least = 2"),
        ({"within": 60}, "unknown key 'within' \\(did you mean 'within_s'\\?\\)"),
        ({"name": "Bad Name"}, "name = 'Bad Name'"),
    ],
)
def test_bad_rules_name_the_key(rule: dict[str, Any], message: str) -> None:
    entry = {"name": "x", "count": "red", "at_least": 2, **rule}
    with pytest.raises(AlertConfigError, match=message):
        parse_rules({"alerts": {"rules": [entry]}}, "sink.toml")


# --- end to end with a broker -----------------------------------------------------------------


def test_the_sink_publishes_site_alerts(broker: LocalBroker, tmp_path: Path) -> None:
    manager = TestClient(broker.port)
    device = TestClient(broker.port)
    manager.subscribe("contactpoint/v1/+/_site/alert")
    config = SinkConfig(broker=broker.url, data_dir=tmp_path / "sink", check_every_s=0.1)
    sink = Sink(
        config, alerts=SiteAlerts([AlertRule(name="reds", count="red", at_least=3)])
    ).start()
    try:
        wait_until(sink.subscribed.is_set, "the sink's subscription")
        for i, dev in enumerate(("cp-0001", "cp-0002", "cp-0001")):
            device.publish(topic("event", device=dev), event("red", i, dev))
        got_topic, raw = manager.next_message()
        assert got_topic == "contactpoint/v1/site-1/_site/alert"
        body = json.loads(raw)
        assert body["kind"] == "alert"
        assert body["device"] == "_site"
        assert body["alert"]["count"] == 3
        assert body["alert"]["scope"] == "site"
        assert body["msg_id"] == body["alert"]["id"]
        wait_until(lambda: sink.stats().get("stored", 0) >= 3, "three stored events")
        # its own alert comes back through the wildcard and is ignored, not a dead letter
        wait_until(lambda: sink.stats().get("ignored", 0) >= 1, "the sink's own alert back")
        assert not any(k.startswith("dead_letter") for k in sink.stats())
    finally:
        sink.stop()
        manager.close()
        device.close()
    db = open_database(None, tmp_path / "sink")
    try:
        (row,) = stored_alerts(db)
        a = tables_alerts_published(db)
        assert row["device"] == "_site"
        assert a == [True]
    finally:
        db.close()


def tables_alerts_published(db: Database) -> list[bool]:
    from cloud_sink.models import tables

    a = tables(db).alerts
    return [r is not None for (r,) in a.select(a.published_ns).tuples()]
