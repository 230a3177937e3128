"""Alerts, video links and Home Assistant discovery through the real pipeline and a real
mosquitto: what a manager's subscriber sees."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import jinja2
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cloud_sink import wire as sink_wire
from edge.clock import NS
from edge.config import Config
from edge.publish import discovery, wire
from edge.scenario import load_scenario
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from provisioning.broker import LocalBroker
from tests.waiting import wait_for

START = 1_795_424_400 * NS  # 2026-11-23T09:00:00Z
SCENARIO = """
start = "2026-11-23T09:00:00Z"
duration = 150.0
[[customers]]
arrive = 10.0
leave = 60.0
distance_m = 0.5
[[presses]]
at = 30.0
button = "red"
[[presses]]
at = 100.0
button = "red"
[[presses]]
at = 110.0
button = "red"
[[presses]]
at = 120.0
button = "red"
[[presses]]
at = 130.0
button = "green"
"""
TEMPLATE = "https://nvr.local/archive?camera={camera}&t={time}"


class Subscriber:
    """Records every message on the given filters (retained ones included)."""

    def __init__(self, port: int, *filters: str) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in filters])
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", port, 30)
        client.loop_start()
        self.client = client
        wait_for(self._subscribed.is_set, "the test subscriber to subscribe")

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[paho.MQTTMessage]], bool], what: str) -> None:
        """Until ``predicate`` holds for the messages so far, as long as messages keep coming."""

        def holds() -> bool:
            with self._cond:
                return predicate(self.messages)

        wait_for(
            holds,
            what,
            progress=lambda: len(self.messages),
            seen=lambda: [m.topic for m in list(self.messages)],
            poll_s=0.01,
        )

    def on(self, topic: str) -> list[paho.MQTTMessage]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def config() -> Config:
    return Config.from_dict(
        {
            "audio": {"enabled": False},
            "video": {"url_template": TEMPLATE, "camera": "7", "offset_s": -2},
            "homeassistant": {"enabled": True},
        }
    )


@pytest.fixture
def played(tmp_path: Path, broker: LocalBroker) -> Iterator[tuple[Path, Subscriber, list[Any]]]:
    sub = Subscriber(broker.port, "contactpoint/v1/#", "homeassistant/#")
    path = tmp_path / "scenario.toml"
    path.write_text(SCENARIO)
    cfg = config()
    hooked: list[Any] = []
    data = tmp_path / "data"
    try:
        scenario = load_scenario(path, cfg)
        run_simulation(cfg, scenario, path, data, broker=broker.url, on_alert=hooked.append)
        yield data, sub, hooked
    finally:
        sub.close()


def test_an_alert_is_published_and_parses_on_the_sink_side(
    played: tuple[Path, Subscriber, list[Any]],
) -> None:
    data, sub, hooked = played
    topic = wire.topic("site-1", "cp-0001", "alert")
    sub.wait_for(lambda ms: any(m.topic == topic for m in ms), "the alert")
    (msg,) = sub.on(topic)
    parsed = sink_wire.parse(msg.topic, bytes(msg.payload))
    assert isinstance(parsed, sink_wire.Message)
    assert isinstance(parsed.body, sink_wire.Alert)
    alert = parsed.body.body
    assert (alert["rule"], alert["count"], alert["total"], alert["share"]) == (
        "negative_burst", 4, 4, 1.0,
    )  # fmt: skip
    assert alert["at"] == "2026-11-23T09:02:00.000Z"  # the fourth red, at t = 120 s
    # the routes' hook saw the same alert, after it was committed
    assert [a["alert"]["id"] for a in hooked] == [alert["id"]]
    # the red events it names are the stored ones
    with closing(Store.open(data / STORE_NAME)) as store:
        reds = [e.id for c in store.contacts() for e in c.events if e.kind == "red"]
        reds += [e.id for e in store.orphan_events() if e.kind == "red"]
    assert alert["refs"] == reds


def test_the_alert_row_is_written_with_the_event_that_caused_it(
    played: tuple[Path, Subscriber, list[Any]],
) -> None:
    data, _, _ = played
    with closing(sqlite3.connect(data / STORE_NAME)) as db:
        rows = db.execute("SELECT seq, kind, ref, created_ns, sent_ns FROM outbox ORDER BY seq")
        outbox = rows.fetchall()
    kinds = [kind for _, kind, _, _, _ in outbox]
    assert kinds.count("alert") == 1
    i = kinds.index("alert")
    cause = outbox[i - 1]
    assert cause[1] == "event"
    assert cause[3] == outbox[i][3]
    assert all(sent is not None for *_, sent in outbox)  # everything acknowledged


def test_contacts_and_events_carry_video_links(
    played: tuple[Path, Subscriber, list[Any]],
) -> None:
    data, sub, _ = played
    with closing(Store.open(data / STORE_NAME)) as store:
        (contact,) = store.contacts()
        orphans = store.orphan_events()
    shifted = (contact.start_wall_ns - 2 * NS) // NS
    assert contact.video_url == f"https://nvr.local/archive?camera=7&t={shifted}"
    for event in [*contact.events, *orphans]:
        assert (
            event.video_url == f"https://nvr.local/archive?camera=7&t={(event.wall_ns // NS) - 2}"
        )
    # and on the wire, as the sink stores it
    topic = wire.topic("site-1", "cp-0001", "contact")
    sub.wait_for(lambda ms: any(m.topic == topic for m in ms), "the contact")
    parsed = sink_wire.parse(topic, bytes(sub.on(topic)[0].payload))
    assert isinstance(parsed, sink_wire.Message)
    assert isinstance(parsed.body, sink_wire.Contact)
    assert parsed.body.video_url == contact.video_url
    assert parsed.body.events[0].body["video_url"] == contact.events[0].video_url


def render(template: str, payload: bytes | bytearray) -> str:
    """A value template as Home Assistant renders it (Jinja2, ``value_json`` the payload)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(value_json=json.loads(payload))


def test_home_assistant_discovery_configs_point_at_real_status_fields(
    played: tuple[Path, Subscriber, list[Any]], broker: LocalBroker
) -> None:
    _, _, _ = played
    cfg = config()
    status_topic = wire.topic("site-1", "cp-0001", "status")
    alert_topic = wire.topic("site-1", "cp-0001", "alert")
    # a new subscriber gets what Home Assistant gets on start: the retained messages
    late = Subscriber(broker.port, "homeassistant/#", status_topic)
    try:
        sensors = {
            f"homeassistant/sensor/cp-0001/{f.replace('.', '_')}/config": f
            for f in cfg.homeassistant.sensors
        }
        online = "homeassistant/binary_sensor/cp-0001/online/config"
        event = "homeassistant/event/cp-0001/alert/config"
        late.wait_for(
            lambda ms: (
                {*sensors, online, event} <= {m.topic for m in ms}
                and any(m.topic == status_topic for m in ms)
            ),
            "the retained discovery configs and status",
        )
        status_msg = late.on(status_topic)[-1]
        status = json.loads(status_msg.payload)
        assert discovery.missing_fields(status, cfg.homeassistant.sensors) == []
        assert status["status"]["online"] is False  # the publisher said goodbye
        for topic, field in sorted(sensors.items()):
            (msg,) = late.on(topic)
            assert msg.retain
            config_ = json.loads(msg.payload)
            assert "object_id" not in config_  # deprecated by Home Assistant 2025.10
            assert config_["state_topic"] == config_["availability_topic"] == status_topic
            node: Any = status["status"]
            for part in field.split("."):
                node = node[part]
            assert render(config_["value_template"], status_msg.payload) == str(node)
            assert render(config_["availability_template"], status_msg.payload) == "offline"
            oid = field.replace(".", "_")
            assert config_["unique_id"] == f"contactpoint_cp-0001_{oid}"
            assert config_["default_entity_id"] == f"sensor.contactpoint_cp_0001_{oid}"
            assert config_["device"]["identifiers"] == ["contactpoint_cp-0001"]
        # the connectivity sensor shows offline as its state, not as "unavailable"
        (msg,) = late.on(online)
        connectivity = json.loads(msg.payload)
        assert connectivity["device_class"] == "connectivity"
        assert "availability_topic" not in connectivity
        assert connectivity["state_topic"] == status_topic
        state = render(connectivity["value_template"], status_msg.payload)
        assert state == connectivity["payload_off"] != connectivity["payload_on"]
        online_status = status_msg.payload.replace(b'"online":false', b'"online":true')
        assert render(connectivity["value_template"], online_status) == connectivity["payload_on"]
        assert connectivity["default_entity_id"] == "binary_sensor.contactpoint_cp_0001_online"
    finally:
        late.close()
    # the alert event: its template turns the real alert message into an event of its rule
    (msg,) = late.on(event)
    alert_cfg = json.loads(msg.payload)
    assert alert_cfg["state_topic"] == alert_topic
    assert alert_cfg["event_types"] == [rule.name for rule in cfg.alerts.rules]
    assert alert_cfg["default_entity_id"] == "event.contactpoint_cp_0001_alert"
    (alert_msg,) = played[1].on(alert_topic)
    fired = json.loads(render(alert_cfg["value_template"], alert_msg.payload))
    assert fired["event_type"] == "negative_burst"
    assert fired["event_type"] in alert_cfg["event_types"]
    assert fired["count"] == 4
    assert fired["text"] == json.loads(alert_msg.payload)["alert"]["text"]


def test_missing_fields_names_what_the_status_lacks() -> None:
    status = {"status": {"outbox_depth": 0, "today": {"served": 1}}}
    fields = ["outbox_depth", "today.served", "today.nope", "free_disk_bytes"]
    assert discovery.missing_fields(status, fields) == ["today.nope", "free_disk_bytes"]
