"""Device offline alerts: raised when a device's last will fires (its connection killed) or when it
stays silent past ``offline_after_s``, cleared when it is back, stored like the site alerts and
published on contactpoint/v1/<site>/_site/alert (real mosquitto)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cloud_sink import Sink, SinkConfig
from cloud_sink.alerts import OFFLINE_RULE, stored_alerts
from cloud_sink.db import open_database
from provisioning.broker import LocalBroker
from tests.cloud_sink.helpers import (
    SITE,
    FakeClock,
    TestClient,
    encode,
    golden,
    new_id,
    topic,
    wait_until,
)
from tests.waiting import STALL_S


def status(device: str, *, online: bool) -> bytes:
    msg: dict[str, Any] = golden("status.json")
    msg.update(msg_id=new_id(), device=device)
    msg["status"]["online"] = online
    return encode(msg)


def alerts_of(sink: Sink) -> list[dict[str, Any]]:
    db = open_database(sink.config.db_url, sink.config.data_dir)
    try:
        return [a for a in stored_alerts(db) if a["rule"] == OFFLINE_RULE]
    finally:
        db.close()


class Device:
    """A device's MQTT connection with its last will (retained status, online=false)."""

    def __init__(self, port: int, device: str) -> None:
        self.device = device
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=device, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.will_set(topic("status", device=device), status(device, online=False), 1, True)
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()

    def online(self) -> None:
        info = self.client.publish(
            topic("status", device=self.device), status(self.device, online=True), 1, True
        )
        info.wait_for_publish(timeout=STALL_S)
        assert info.is_published()

    def kill(self) -> None:
        """Cut the TCP connection without a DISCONNECT: the broker sends the last will."""
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()


@pytest.fixture
def manager(broker: LocalBroker) -> Iterator[TestClient]:
    client = TestClient(broker.port)
    client.subscribe("contactpoint/v1/+/_site/alert")
    yield client
    client.close()


def next_alert(manager: TestClient) -> dict[str, Any]:
    got_topic, raw = manager.next_message()
    assert got_topic == f"contactpoint/v1/{SITE}/_site/alert"
    body: dict[str, Any] = json.loads(raw)
    return body


def test_last_will_raises_the_alert_and_the_status_clears_it(
    broker: LocalBroker, manager: TestClient, tmp_path: Path
) -> None:
    config = SinkConfig(broker=broker.url, data_dir=tmp_path / "sink", offline_after_s=3600)
    sink = Sink(config).start()
    device = Device(broker.port, "cp-0007")
    back = TestClient(broker.port)
    try:
        wait_until(sink.subscribed.is_set, "the sink's subscription")
        device.online()
        wait_until(lambda: sink.stats().get("stored", 0) >= 1, "the online status stored")
        assert alerts_of(sink) == []
        device.kill()
        wait_until(lambda: len(alerts_of(sink)) == 1, "the offline alert after the last will")
        (row,) = alerts_of(sink)
        assert row["device"] == "cp-0007"
        assert row["active"] is True
        assert "last will" in row["text"]
        raised = next_alert(manager)
        assert raised["alert"]["rule"] == OFFLINE_RULE
        assert raised["alert"]["refs"] == ["cp-0007"]
        assert raised["alert"]["id"] == row["id"]
        assert "cleared_at" not in raised["alert"]
        # back: its retained status says online again
        back.publish(topic("status", device="cp-0007"), status("cp-0007", online=True))
        wait_until(lambda: alerts_of(sink)[0]["active"] is False, "the alert cleared")
        cleared = next_alert(manager)
        assert cleared["alert"]["id"] == raised["alert"]["id"]  # the same alert, ...
        assert cleared["msg_id"] != raised["msg_id"]
        assert cleared["alert"]["cleared_at"]
        assert len(alerts_of(sink)) == 1  # ... stored once
    finally:
        back.close()
        sink.stop()


def test_a_silent_device_gets_the_alert_after_the_timeout(
    broker: LocalBroker, manager: TestClient, tmp_path: Path
) -> None:
    clock = FakeClock()
    config = SinkConfig(
        broker=broker.url, data_dir=tmp_path / "sink", offline_after_s=300, check_every_s=1
    )
    sink = Sink(config, clock=clock).start()
    device = TestClient(broker.port)
    try:
        wait_until(sink.subscribed.is_set, "the sink's subscription")
        device.publish(topic("status", device="cp-0008"), status("cp-0008", online=True))
        wait_until(lambda: sink.stats().get("stored", 0) >= 1, "the status stored")
        clock.advance(299)  # not yet: silent for less than offline_after_s
        turns = sink.stats().get("stored", 0)
        device.publish(topic("event", device="cp-0009"), event_bytes("cp-0009"))
        wait_until(lambda: sink.stats().get("stored", 0) > turns, "another device's event")
        assert alerts_of(sink) == []
        clock.advance(2)
        wait_until(lambda: len(alerts_of(sink)) == 1, "the silence alert")
        (row,) = alerts_of(sink)
        assert row["device"] == "cp-0008"
        assert row["active"]
        assert "nothing from it" in row["text"]
        assert next_alert(manager)["alert"]["refs"] == ["cp-0008"]
        clock.advance(600)  # still silent: still one alert, for each device that is
        wait_until(lambda: len(alerts_of(sink)) == 2, "cp-0009 silent too")
        assert sorted(a["device"] for a in alerts_of(sink)) == ["cp-0008", "cp-0009"]
        # any message from it clears it
        device.publish(topic("event", device="cp-0008"), event_bytes("cp-0008"))
        wait_until(
            lambda: (
                {a["device"]: a["active"] for a in alerts_of(sink)}
                == {"cp-0008": False, "cp-0009": True}
            ),
            "cp-0008's alert cleared",
        )
    finally:
        sink.stop()
        device.close()


def event_bytes(device: str) -> bytes:
    msg: dict[str, Any] = golden("event.json")
    msg.update(msg_id=new_id(), device=device)
    msg["event"]["id"] = new_id()
    return encode(msg)


def test_offline_after_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="offline_after_s = 0"):
        Sink(SinkConfig(broker="mqtt://127.0.0.1:1", data_dir=tmp_path, offline_after_s=0))
