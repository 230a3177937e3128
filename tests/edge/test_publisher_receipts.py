"""The publisher and the sink's delivery receipts, against a real mosquitto: a row stays
undelivered until a receipt names it, goes again when the receipt is late, is given up (kept,
alarm) after its resends and tried again on the next connection; rows that take no receipt are
delivered on their PUBACK; rows left waiting by a previous run are tracked again."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from edge.config import MqttSection
from edge.publish import wire
from edge.publish.mqtt import Publisher
from provisioning.broker import LocalBroker
from tests.edge.test_publisher import (
    STATUS,
    Rig,
    Sink,
    contact,
    orphan,
    save_contact,
    save_event,
    status_of,
    wait_until,
    write_clip,
)
from tests.wire_samples import DEVICE, SITE

RECEIPTS = wire.receipt_topic(SITE, DEVICE)


class Device(Rig):
    """The test publisher's rig, with the alarms it raises kept."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.alarms: list[tuple[str, str]] = []

    def start(self, broker_url: str, **cfg: Any) -> Publisher:
        settings = {
            "broker": broker_url, "chunk_bytes": 1024, "backoff_min_s": 0.05,
            "backoff_max_s": 0.2, "receipt_timeout_s": 0.3, "receipt_timeout_max_s": 0.6,
            "receipt_max_resends": 1000, **cfg,
        }  # fmt: skip
        pub = Publisher(
            MqttSection(**settings),
            device=DEVICE,
            site=SITE,
            data_dir=self.data_dir,
            store=self.store,
            version="9.9.9",
            clock=self.clock,
            free_disk=lambda: 1,
            alarm=lambda kind, detail: self.alarms.append((kind, detail)),
        )
        self.publishers.append(pub)
        pub.start()
        return pub


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    d = Device(tmp_path)
    yield d
    d.close()


def receipt(msg_ids: list[str], clips: list[str], **change: Any) -> bytes:
    body = {"schema": 1, "kind": "delivered", "device": DEVICE, "site": SITE}
    return json.dumps({**body, "msg_ids": msg_ids, "clips": clips, **change}).encode()


def confirm(sink: Sink, payload: bytes) -> None:
    """Publish a receipt as the sink would (the test's subscriber plays the sink)."""
    assert sink.client.publish(RECEIPTS, payload, qos=1).rc == paho.MQTT_ERR_SUCCESS


def copies(sink: Sink, kind: str) -> Callable[[], int]:
    return lambda: len(sink.on(kind))


def test_rows_wait_for_their_receipt_and_go_again_while_it_is_late(
    device: Device, broker: LocalBroker
) -> None:
    clip = write_clip(device.data_dir, 1, 2500)  # three chunks
    save_contact(device.store, contact(1, clip))
    save_event(device.store, orphan(2))
    rows = device.store.outbox.pending()
    sink = device.sink(broker.port)
    pub = device.start(broker.url)
    wait_until(lambda: device.store.outbox.depth() == 0, "the broker's PUBACKs")
    assert device.store.outbox.undelivered() == 3  # acknowledged, not confirmed
    wait_until(lambda: copies(sink, "contact")() >= 2, "the contact sent again")
    wait_until(lambda: copies(sink, "clip")() >= 6, "the whole clip sent again")
    assert pub.stats.rows_resent >= 3 and pub.stats.rows_sent == 3

    by_kind = {r.kind: r.msg_id for r in rows}
    confirm(sink, receipt([by_kind["contact"], by_kind["event"]], [clip.contact_id]))
    wait_until(lambda: device.store.outbox.undelivered() == 0, "the receipt noted")
    wait_until(lambda: pub.stats.awaiting == 0, "nothing waiting")
    assert pub.stats.rows_delivered == 3 and pub.stats.receipts == 1
    seen = {kind: copies(sink, kind)() for kind in ("contact", "event", "clip")}
    # a later row's resend proves time passed: the confirmed ones did not go again
    save_event(device.store, orphan(3))
    pub.notify()
    wait_until(lambda: copies(sink, "event")() >= seen["event"] + 2, "the new event sent again")
    assert copies(sink, "contact")() == seen["contact"]
    assert copies(sink, "clip")() == seen["clip"]


def test_a_sink_without_receipts_costs_bounded_resends_and_says_so(
    device: Device, broker: LocalBroker
) -> None:
    save_event(device.store, orphan(1))
    sink = device.sink(broker.port, persistent=True)  # it hears what goes while it reconnects
    pub = device.start(broker.url, receipt_max_resends=2)
    wait_until(lambda: bool(device.alarms), "the 'undelivered' alarm")
    [(kind, detail)] = device.alarms
    assert kind == "undelivered"
    assert "after 2 resend(s)" in detail and "no receipt at all since the start" in detail
    assert copies(sink, "event")() == 3  # sent once and again twice, then no more
    stats = pub.stats
    assert (stats.rows_sent, stats.rows_resent, stats.awaiting, stats.given_up) == (1, 2, 1, 1)
    assert device.store.outbox.undelivered() == 1  # kept on the device
    pub.refresh_status()
    sink.wait_for(
        lambda ms: any(
            status_of(m)["status"].get("delivery", {}).get("given_up") == 1
            for m in ms
            if m.topic == STATUS
        ),
        "the status saying so",
    )
    status = [status_of(m)["status"] for m in sink.on("status")][-1]
    assert status["delivery"] == {
        "receipts": True, "sent": 1, "delivered": 0, "awaiting": 1, "resent": 2, "given_up": 1,
    }  # fmt: skip
    # a new connection (the broker restarted and may have lost it): one more round, bounded
    broker.restart()
    wait_until(lambda: len(device.alarms) == 2, "given up again")
    assert pub.stats.rows_resent == 4 and pub.stats.given_up == 1
    wait_until(lambda: copies(sink, "event")() >= 5, "the second round at the sink")


def test_rows_that_take_no_receipt_are_delivered_on_their_puback(
    device: Device, broker: LocalBroker
) -> None:
    gone = write_clip(device.data_dir, 1, 2000)
    (device.data_dir / gone.path).unlink()  # the disk budget took it: nothing to deliver
    save_contact(device.store, contact(1, gone))
    route = wire.route_message("managers", "contact", "r1", {"id": "r1"}, device=DEVICE, site=SITE)
    device.store.save_messages([route])
    device.sink(broker.port)
    pub = device.start(broker.url)
    wait_until(lambda: device.store.outbox.depth() == 0, "the PUBACKs")
    wait_until(lambda: device.store.outbox.undelivered() == 1, "clip and route delivered")
    [waiting] = device.store.outbox.awaiting()
    assert waiting.kind == "contact"  # only the contact waits for the sink
    assert pub.stats.clips_missing == 1 and pub.stats.rows_delivered == 2


def test_without_receipts_the_puback_delivers_as_before(
    device: Device, broker: LocalBroker
) -> None:
    """A device talking to a sink older than receipts: ``delivery_receipts = false``."""
    clip = write_clip(device.data_dir, 1, 2000)
    save_contact(device.store, contact(1, clip))
    save_event(device.store, orphan(2))
    sink = device.sink(broker.port)
    pub = device.start(broker.url, delivery_receipts=False)
    wait_until(lambda: device.store.outbox.undelivered() == 0, "everything delivered")
    assert pub.stats.rows_delivered == pub.stats.rows_sent == 3 and pub.stats.awaiting == 0
    pub.refresh_status()
    sink.wait_for(
        lambda ms: any(
            status_of(m)["status"].get("delivery", {}).get("delivered") == 3
            for m in ms
            if m.topic == STATUS
        ),
        "the status",
    )
    assert [status_of(m)["status"]["delivery"]["receipts"] for m in sink.on("status")][-1] is False


def test_a_bad_receipt_is_ignored_and_counted(device: Device, broker: LocalBroker) -> None:
    save_event(device.store, orphan(1))
    [row] = device.store.outbox.pending()
    sink = device.sink(broker.port)
    pub = device.start(broker.url)
    wait_until(lambda: device.store.outbox.depth() == 0, "the PUBACK")
    confirm(sink, b"not json")
    confirm(sink, receipt([row.msg_id], [], device="cp-0002"))  # someone else's
    wait_until(lambda: pub.stats.receipts_rejected == 2, "both refused")
    assert device.store.outbox.undelivered() == 1 and "cp-0002" in pub.stats.last_error
    confirm(sink, receipt([row.msg_id], []))
    wait_until(lambda: device.store.outbox.undelivered() == 0, "the good one noted")


def test_rows_a_previous_run_left_waiting_are_sent_again_after_the_timeout(
    device: Device, broker: LocalBroker
) -> None:
    save_event(device.store, orphan(1))
    save_event(device.store, orphan(2))
    first, second = device.store.outbox.pending()
    device.store.outbox.mark_sent([first.seq, second.seq], 1)  # acknowledged before a restart
    sink = device.sink(broker.port)
    pub = device.start(broker.url)
    wait_until(lambda: copies(sink, "event")() == 2, "both sent again")
    assert pub.stats.rows_sent == 0 and pub.stats.rows_resent == 2
    confirm(sink, receipt([first.msg_id, second.msg_id], []))
    wait_until(lambda: device.store.outbox.undelivered() == 0, "the receipt noted")
