"""Shared fixtures: a real mosquitto and a throwaway PostgreSQL cluster, on loopback."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.broker import LocalBroker
from tests.services import PostgresCluster

_db_names = itertools.count(1)


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
