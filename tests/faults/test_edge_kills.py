"""kill -9 of the edge daemon, at least 50 times, at random moments and at named crash points.

Each cycle starts ``contactpoint edge run --scenario`` (simulated devices, 2000x real time,
publishing to a real mosquitto) on the SAME data directory and kills it: one cycle in four
inside a contact's store transaction, one in four while a clip file is being written
(``CONTACTPOINT_CRASH_AT``), the rest at a random moment. A restart of a simulated scenario
plays the shift again from its start with new contact ids (uuid4), like a device that reboots
and keeps recording: the store carries what earlier runs committed, and every run adds to it.
After every kill the store is read as the next start finds it (tests/faults/harness.py,
``check_edge_restart``): integrity_check ok, no committed contact lost, every recorded clip
complete, no acknowledged outbox row unacknowledged again. Then one undisturbed run drains
everything and the sink must hold every contact exactly once with a verified clip.
"""

from __future__ import annotations

import random
from pathlib import Path

from edge.scenario import busy_shift
from provisioning.broker import LocalBroker
from tests.faults.harness import edge_kill_cycles

KILLS = 50


def test_kill_9_of_the_edge_daemon_loses_nothing(broker: LocalBroker, tmp_path: Path) -> None:
    figures = edge_kill_cycles(
        broker, tmp_path, busy_shift(0.25, seed=5), rng=random.Random(5), cycles=KILLS
    )
    assert figures.total >= KILLS
    assert figures.kills["store.commit"] >= 10
    assert figures.kills["clip.write"] >= 10
    assert figures.partials_left >= figures.kills["clip.write"]  # each left a .partial behind
    result = figures.delivery
    assert result.produced > 40
    assert (result.lost, result.duplicated, result.missing) == (0, 0, [])
    assert result.delivered == result.produced
