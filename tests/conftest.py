"""Shared fixtures: a real mosquitto and a throwaway PostgreSQL cluster, on loopback; and a
net under every test that reaps the processes it started and left behind."""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from provisioning.broker import LocalBroker
from tests.services import PostgresCluster, SeaweedS3
from tests.waiting import child_processes, reap_children

_db_names = itertools.count(1)
_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_PASSED] = report.passed
    return report


@pytest.fixture(autouse=True)
def no_stray_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every child process a test started (mosquitto, ``contactpoint edge run``/``sink run``,
    tools) is gone when it ends: what is left is killed and collected here. Left behind by a
    test that passed, that is a bug of the test, and an error."""
    before = set(child_processes())
    yield
    strays = reap_children(before)
    if strays and request.node.stash.get(_PASSED, False):
        listed = "; ".join(f"{pid}: {cmd}" for pid, cmd in sorted(strays.items()))
        raise AssertionError(f"the test left processes behind (now killed): {listed}")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A fresh mosquitto on a free loopback port, persistence on; stop()/start() keep state."""
    with LocalBroker(tmp_path / "broker") as running:
        yield running


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A new empty database in the session's cluster."""
    return postgres_cluster.create_database(f"t{next(_db_names)}")


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[SeaweedS3]:
    """A fresh SeaweedFS S3 gateway on loopback with an empty bucket ``clips``; stopped after."""
    server = SeaweedS3(tmp_path / "seaweedfs")
    server.start()
    try:
        yield server
    finally:
        server.stop()
