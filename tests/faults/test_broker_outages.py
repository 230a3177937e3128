"""Broker outages in cycles while the daemon (``contactpoint edge run``, simulated devices at
300x real time) produces contacts: after the drain every contact of the edge store is in the
sink exactly once with a verified clip; the peak outbox depth and the drain time are measured
(bench/soak.py prints them for longer runs, docs/RELIABILITY.md records them)."""

from __future__ import annotations

from pathlib import Path

from edge.scenario import busy_shift
from provisioning.broker import LocalBroker
from tests.faults.harness import broker_outage_cycles


def test_broker_outages_in_cycles_lose_and_duplicate_nothing(
    broker: LocalBroker, tmp_path: Path
) -> None:
    figures = broker_outage_cycles(broker, tmp_path, busy_shift(0.5, seed=9), speed=300)
    result = figures.delivery
    assert figures.outages >= 3
    assert figures.outbox_peak >= 5  # the outages really held messages back
    assert result.produced >= 15
    assert (result.lost, result.duplicated, result.missing) == (0, 0, [])
    assert result.delivered == result.produced
    assert 0 < figures.drain_s < 30
