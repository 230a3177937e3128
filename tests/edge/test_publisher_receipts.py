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

from edge.config import Config, MqttSection
from edge.publish import wire
from edge.publish.mqtt import Publisher
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, DeliveryError, run_simulation
from edge.store import Store
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
from tests.faults.harness import config_dict
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


def test_rows_wait_for_their_receipt_and_go_again_once_the_sink_passed_them(
    device: Device, broker: LocalBroker
) -> None:
    clip = write_clip(device.data_dir, 1, 2500)  # three chunks
    save_contact(device.store, contact(1, clip))
    save_event(device.store, orphan(2))
    rows = {r.kind: r.msg_id for r in device.store.outbox.pending()}
    sink = device.sink(broker.port)
    pub = device.start(broker.url)
    wait_until(lambda: device.store.outbox.depth() == 0, "the broker's PUBACKs")
    assert device.store.outbox.undelivered() == 3  # acknowledged, not confirmed
    wait_until(lambda: pub.stats.held == 3, "all three late, held: the broker has them")
    assert pub.stats.rows_resent == 0
    # the sink confirms the event, sent last: it has passed the contact and the clip
    confirm(sink, receipt([rows["event"]], []))
    wait_until(lambda: copies(sink, "contact")() >= 2, "the contact sent again")
    wait_until(lambda: copies(sink, "clip")() >= 6, "the whole clip sent again")
    assert pub.stats.rows_resent >= 2
    assert pub.stats.rows_sent == 3
    confirm(sink, receipt([rows["contact"]], [clip.contact_id]))
    wait_until(lambda: device.store.outbox.undelivered() == 0, "the receipts noted")
    wait_until(lambda: pub.stats.awaiting == 0, "nothing waiting")
    assert pub.stats.rows_delivered == 3
    assert pub.stats.receipts == 2
    seen = {kind: copies(sink, kind)() for kind in ("contact", "clip")}
    # later rows: the first goes again once the second is confirmed; by then the confirmed
    # contact and clip would have gone again too, had they been still waiting
    save_event(device.store, orphan(3))
    save_event(device.store, orphan(4))
    pub.notify()
    wait_until(lambda: device.store.outbox.depth() == 0, "the new PUBACKs")
    confirm(sink, receipt([device.store.outbox.awaiting()[-1].msg_id], []))
    wait_until(lambda: copies(sink, "event")() >= 4, "event 3 sent again")
    assert {kind: copies(sink, kind)() for kind in ("contact", "clip")} == seen


def test_a_sink_without_receipts_costs_bounded_resends_and_says_so(
    device: Device, broker: LocalBroker
) -> None:
    save_event(device.store, orphan(1))
    sink = device.sink(broker.port, persistent=True)  # it hears what goes while it reconnects
    pub = device.start(broker.url, receipt_max_resends=2)
    # no receipt ever: late, held (the broker has it; copies would only queue up), and said
    wait_until(lambda: bool(device.alarms), "the 'undelivered' alarm")
    [(kind, detail)] = device.alarms
    assert kind == "undelivered"
    assert "none came for" in detail
    assert "older than delivery receipts" in detail
    stats = pub.stats
    assert (stats.rows_sent, stats.rows_resent, stats.awaiting, stats.held) == (1, 0, 1, 1)
    assert copies(sink, "event")() == 1
    pub.refresh_status()
    sink.wait_for(
        lambda ms: any(
            status_of(m)["status"].get("delivery", {}).get("held") == 1
            for m in ms
            if m.topic == STATUS
        ),
        "the status saying so",
    )
    status = [status_of(m)["status"] for m in sink.on("status")][-1]
    assert status["delivery"] == {
        "receipts": True, "sent": 1, "delivered": 0, "awaiting": 1, "held": 1, "resent": 0,
        "given_up": 0,
    }  # fmt: skip
    # a new connection (the broker restarted: it may have lost it): sent again, once; the new
    # copy is held in turn (nothing says it was lost). At most one copy per connection, and
    # after receipt_max_resends of them the row is given up until the next connection
    for resent in (1, 2):
        broker.restart()
        wait_until(lambda: pub.stats.rows_resent == resent, f"resend {resent}")  # noqa: B023
        wait_until(lambda: pub.stats.held == 1, "held again")
    wait_until(lambda: copies(sink, "event")() >= 3, "both copies at the sink")
    assert len(device.alarms) == 1  # the silence is said once
    broker.restart()
    wait_until(lambda: len(device.alarms) == 2, "given up")
    assert "after 2 resend(s)" in device.alarms[1][1]
    assert (pub.stats.rows_resent, pub.stats.given_up, pub.stats.held) == (2, 1, 0)
    assert device.store.outbox.undelivered() == 1  # kept on the device


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
    assert pub.stats.clips_missing == 1
    assert pub.stats.rows_delivered == 2


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
    assert pub.stats.rows_delivered == pub.stats.rows_sent == 3
    assert pub.stats.awaiting == 0
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
    assert device.store.outbox.undelivered() == 1
    assert "cp-0002" in pub.stats.last_error
    confirm(sink, receipt([row.msg_id], []))
    wait_until(lambda: device.store.outbox.undelivered() == 0, "the good one noted")


def test_rows_a_previous_run_left_waiting_are_tracked_again(
    device: Device, broker: LocalBroker
) -> None:
    for n in (1, 2, 3):
        save_event(device.store, orphan(n))
    first, second, third = device.store.outbox.pending()
    device.store.outbox.mark_sent([first.seq, second.seq], 1)  # acknowledged before a restart
    sink = device.sink(broker.port)
    pub = device.start(broker.url)
    wait_until(lambda: pub.stats.rows_sent == 1, "the unsent row sent")
    assert pub.stats.awaiting == 3
    confirm(sink, receipt([first.msg_id, third.msg_id], []))  # the sink passed the second

    def sent() -> set[str]:
        return {json.loads(m.payload)["msg_id"] for m in sink.on("event")}

    wait_until(lambda: second.msg_id in sent(), "the second sent again")
    assert sent() == {second.msg_id, third.msg_id}
    assert pub.stats.rows_resent == 1
    confirm(sink, receipt([second.msg_id], []))
    wait_until(lambda: device.store.outbox.undelivered() == 0, "the receipts noted")


def test_a_run_that_waits_for_receipts_fails_clearly_without_a_sink(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """``run_simulation(until_delivered=True)`` (the soak's broker kills) against a broker with
    no sink behind it: everything is acknowledged, nothing confirmed, and the error says so."""
    cfg = Config.from_dict(config_dict(broker.url))
    data = tmp_path / "edge"
    data.mkdir()
    with pytest.raises(DeliveryError, match=r"the sink did not confirm everything") as err:
        run_simulation(
            cfg, busy_shift(0.1, seed=2), data / "s.toml", data, broker=broker.url,
            drain_timeout_s=10.0, until_delivered=True,
        )  # fmt: skip
    assert "waiting for the sink's receipt, kept for the next run" in str(err.value)
    with Store.open(data / STORE_NAME) as store:
        assert store.outbox.depth() == 0
        assert store.outbox.undelivered() > 0
