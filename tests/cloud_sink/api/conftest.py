"""The API tests' world: a sink database filled by a real simulated shift through a real
mosquitto (once per module and engine), and the app served by a real uvicorn on loopback."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from cloud_sink import Sink, SinkConfig
from cloud_sink.api import ApiSettings, accounts, create_app
from cloud_sink.migrations import open_existing
from edge.config import Config
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from provisioning.broker import LocalBroker, free_port
from tests.services import PostgresCluster

SITE, DEVICE = "shop-a", "cp-a1"
OTHER_SITE, OTHER_DEVICE = "shop-b", "cp-b1"
PASSWORD = "correct horse battery"
_names = itertools.count(1)


@dataclass
class Filled:
    data_dir: Path
    db_url: str | None
    contacts: dict[str, int]  # site -> how many contacts the edge stored


def _edge_config(broker: LocalBroker, device: str, site: str) -> Config:
    return Config.from_dict(
        {
            "device": {"id": device, "site": site},
            "audio": {"codec": "wav"},
            "mqtt": {"broker": broker.url, "backoff_min_s": 0.05, "backoff_max_s": 0.5},
        }
    )


def _wait(predicate: Any, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def fill(root: Path, db_url: str | None) -> Filled:
    """Two devices on two sites play a short shift each through mosquitto into the sink."""
    data = root / "sink"
    counts: dict[str, int] = {}
    with LocalBroker(root / "broker") as broker:
        sink = Sink(
            SinkConfig(
                broker=broker.url, data_dir=data, db_url=db_url, resend_after_s=2,
                check_every_s=0.5, backoff_min_s=0.05, backoff_max_s=0.5,
            )
        )  # fmt: skip
        sink.start()
        try:
            assert sink.subscribed.wait(10)
            for n, (device, site) in enumerate(((DEVICE, SITE), (OTHER_DEVICE, OTHER_SITE))):
                edge = root / f"edge-{device}"
                edge.mkdir()
                # a spell where every customer rates red: every site has negative contacts
                shift = busy_shift(0.2, seed=5 + n, incident_at_s=200, incident_s=180)
                cfg = _edge_config(broker, device, site)
                run_simulation(cfg, shift, edge / "s.toml", edge, broker=broker.url)
                store = Store.open(edge / STORE_NAME)
                try:
                    counts[site] = len(store.contacts())
                finally:
                    store.close()
            total = sum(counts.values())

            def arrived() -> bool:
                with sink.db.connection_context():
                    return sum(1 for c in sink.ingest.contacts() if c["audio"]) >= total

            _wait(arrived, "every contact with its clip in the sink")
        finally:
            sink.stop()
    return Filled(data, db_url, counts)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Filled:
    db_url = None
    if request.param == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        db_url = cluster.create_database(f"api{next(_names)}")
    return fill(tmp_path_factory.mktemp(f"api-{request.param}"), db_url)


class Server:
    """The app under a real uvicorn on a free loopback port, in a thread."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="info",
            lifespan="on",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        _wait(lambda: self.server.started, "uvicorn to listen", 30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@dataclass
class World:
    filled: Filled
    url: str
    tokens: dict[str, str]  # "admin", "manager_a", "viewer_a", "manager_all"
    settings: ApiSettings

    def client(self, who: str | None = None) -> httpx.Client:
        headers = {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def db(self) -> Any:
        return open_existing(self.filled.db_url, self.filled.data_dir)


@pytest.fixture(scope="module")
def world(filled: Filled) -> Iterator[World]:
    db = open_existing(filled.db_url, filled.data_dir)
    now = time.time_ns()
    try:
        tokens = {
            "admin": accounts.create_token(
                db, role="admin", sites=[], name="t-admin", now_ns=now).token,
            "manager_a": accounts.create_token(
                db, role="manager", sites=[SITE], name="t-mgr", now_ns=now).token,
            "viewer_a": accounts.create_token(
                db, role="viewer", sites=[SITE], name="t-view", now_ns=now).token,
        }  # fmt: skip
        accounts.add_user(db, "maria", PASSWORD, role="manager", sites=[SITE], now_ns=now)
    finally:
        db.close()
    settings = ApiSettings(data_dir=filled.data_dir, db_url=filled.db_url, login_attempts=5)
    with Server(settings) as server:
        yield World(filled, server.url, tokens, settings)


@pytest.fixture
def api_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record of the server (uvicorn's access log included) at DEBUG."""
    caplog.set_level(logging.DEBUG)
    return caplog
