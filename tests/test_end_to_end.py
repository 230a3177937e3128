"""The whole system: simulated device -> store/outbox -> publisher -> real mosquitto -> sink.

Every contact the edge stored must be in the sink exactly once, with a clip whose bytes hash
to what the edge recorded — also when the broker or the sink goes away in the middle.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_sink import Sink, SinkConfig
from edge.config import Config
from edge.publish.wire import contact_json
from edge.records import ContactRecord
from edge.scenario import Scenario, busy_shift
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from provisioning.broker import LocalBroker
from tests.waiting import join, wait_for

DEVICE, SITE = "cp-e2e", "shop-e2e"


def config(broker: LocalBroker, codec: str = "wav", **mqtt: Any) -> Config:
    return Config.from_dict(
        {
            "device": {"id": DEVICE, "site": SITE},
            "audio": {"codec": codec},
            "mqtt": {"broker": broker.url, "backoff_min_s": 0.05, "backoff_max_s": 0.5, **mqtt},
        }
    )


def edge_contacts(data: Path) -> list[ContactRecord]:
    store = Store.open(data / STORE_NAME)
    try:
        assert store.outbox.depth() == 0
        return store.contacts()
    finally:
        store.close()


def sink_contacts(sink: Sink) -> list[dict[str, Any]]:
    with sink.db.connection_context():
        return list(sink.ingest.contacts())


def subscribed(sink: Sink) -> None:
    wait_for(sink.subscribed.is_set, "the sink to subscribe")


def sink_state(sink: Sink) -> str:
    rows = sink_contacts(sink)
    with_audio = sum(1 for c in rows if c["audio"])
    return f"{len(rows)} contacts, {with_audio} with audio; sink counters {sink.stats()}"


def stored_at_least(sink: Sink, n: int, ending: threading.Event) -> None:
    """Until the sink has stored ``n`` messages (it keeps ingesting meanwhile)."""
    wait_for(
        lambda: sink.stats().get("stored", 0) >= n,
        f"{n} messages stored by the sink",
        progress=sink.stats,
        abort=ending,
    )


def assert_same(edge_dir: Path, sink: Sink) -> None:
    """Sink rows equal edge rows; every clip verified, with the edge's bytes."""
    edge = edge_contacts(edge_dir)
    wait_for(  # as long as the sink keeps ingesting: on a busy machine that takes a while
        lambda: sum(1 for c in sink_contacts(sink) if c["audio"]) == len(edge),
        f"the edge's {len(edge)} contacts, each with its verified clip, in the sink",
        progress=sink.stats,
        seen=lambda: sink_state(sink),
    )
    central = {c["id"]: c for c in sink_contacts(sink)}
    assert len(central) == len(edge)  # exactly once
    for record in edge:
        row = central[record.id]
        expected = contact_json(record)
        assert {k: row[k] for k in expected} == expected
        assert (row["device"], row["site"]) == (DEVICE, SITE)
        assert record.clip is not None
        original = (edge_dir / record.clip.path).read_bytes()
        received = Path(row["audio"]).read_bytes()
        assert hashlib.sha256(received).hexdigest() == record.clip.sha256
        assert received == original


@pytest.fixture
def shift() -> Scenario:
    return busy_shift(0.25, seed=3)  # 15 minutes, about a dozen contacts


@pytest.fixture(params=["sqlite", "postgresql"])
def sink(request: pytest.FixtureRequest, broker: LocalBroker, tmp_path: Path) -> Iterator[Sink]:
    db_url = None
    if request.param == "postgresql":
        db_url = request.getfixturevalue("postgres_url")
    running = Sink(
        SinkConfig(
            broker=broker.url,
            data_dir=tmp_path / "sink",
            db_url=db_url,
            resend_after_s=2,
            check_every_s=0.5,
            backoff_min_s=0.05,
            backoff_max_s=0.5,
        )
    )
    running.start()
    subscribed(running)
    yield running
    running.stop()


def test_a_shift_arrives_exactly_once_with_its_audio(
    broker: LocalBroker, sink: Sink, shift: Scenario, tmp_path: Path
) -> None:
    edge_dir = tmp_path / "edge"
    edge_dir.mkdir()
    summary = run_simulation(
        config(broker), shift, edge_dir / "s.toml", edge_dir, broker=broker.url
    )
    assert summary.contacts >= 8
    assert summary.outbox_depth == 0
    assert_same(edge_dir, sink)


def test_broker_restart_in_the_middle_of_clips(broker: LocalBroker, tmp_path: Path) -> None:
    shift = busy_shift(0.25, seed=4)
    sink = Sink(
        SinkConfig(
            broker=broker.url,
            data_dir=tmp_path / "sink",
            resend_after_s=2,
            check_every_s=0.5,
            backoff_min_s=0.05,
            backoff_max_s=0.5,
        )
    )
    sink.start()
    restarted, ending = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def restart_when_chunks_flow() -> None:
        try:
            stored_at_least(sink, 20, ending)  # clips are on their way
            broker.stop()
            time.sleep(0.5)  # the outage itself
            broker.start()
            restarted.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            failed.append(exc)

    chaos = threading.Thread(target=restart_when_chunks_flow)
    try:
        subscribed(sink)
        chaos.start()
        edge_dir = tmp_path / "edge"
        edge_dir.mkdir()
        # small chunks: every clip is many messages, so the restart lands inside a clip
        cfg = config(broker, codec="flac", chunk_bytes=8192)
        run_simulation(cfg, shift, edge_dir / "s.toml", edge_dir, broker=broker.url)
        join(chaos, "the broker restart", progress=sink.stats)
        assert not failed, failed
        assert restarted.is_set()
        assert_same(edge_dir, sink)
    finally:
        ending.set()  # the chaos thread must not touch the broker after the test
        if chaos.is_alive():
            chaos.join()
        sink.stop()


def test_sink_restart_loses_and_duplicates_nothing(
    broker: LocalBroker, shift: Scenario, tmp_path: Path
) -> None:
    settings = SinkConfig(
        broker=broker.url,
        data_dir=tmp_path / "sink",
        resend_after_s=2,
        check_every_s=0.5,
        backoff_min_s=0.05,
        backoff_max_s=0.5,
    )
    first = Sink(settings)
    first.start()
    edge_dir = tmp_path / "edge"
    edge_dir.mkdir()
    stopped, ending = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def stop_sink_midway() -> None:
        try:
            stored_at_least(first, 10, ending)
            first.stop()
            stopped.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            failed.append(exc)

    chaos = threading.Thread(target=stop_sink_midway)
    try:
        subscribed(first)
        chaos.start()
        run_simulation(
            config(broker, codec="flac", chunk_bytes=8192),
            shift,
            edge_dir / "s.toml",
            edge_dir,
            broker=broker.url,
        )
        join(chaos, "the sink's stop", progress=first.stats)
        assert not failed, failed
        assert stopped.is_set()
    finally:
        ending.set()
        if chaos.is_alive():
            chaos.join()
        first.stop()
    # everything published while the sink was away waits in its persistent session
    second = Sink(settings)
    second.start()
    try:
        assert_same(edge_dir, second)
    finally:
        second.stop()


def test_unreachable_broker_fails_clearly_and_keeps_everything(
    broker: LocalBroker, shift: Scenario, tmp_path: Path
) -> None:
    from edge.simulate import DeliveryError

    broker.stop()
    edge_dir = tmp_path / "edge"
    edge_dir.mkdir()
    with pytest.raises(DeliveryError, match=r"still queued") as err:
        run_simulation(
            config(broker),
            shift,
            edge_dir / "s.toml",
            edge_dir,
            broker=broker.url,
            drain_timeout_s=1.0,
        )
    assert err.value.exit_code == 1
    store = Store.open(edge_dir / STORE_NAME)
    try:
        alerts = [r for r in store.outbox.pending(limit=1000) if r.kind == "alert"]
        assert store.outbox.depth() == (
            2 * len(store.contacts()) + len(store.orphan_events()) + len(alerts)
        )
    finally:
        store.close()
