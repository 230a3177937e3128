"""kill -9 of the sink (``contactpoint sink run``) during ingest and during clip reassembly.

A simulated shift is published through a real mosquitto while the sink is killed again and again:
at random moments, inside an ingest transaction (chunk written into its clip's partial file, rows
not committed, message not acknowledged: ``sink.commit``), while a clip is being assembled (its
partial file verified, not yet in place: ``sink.assemble.write``), and after the assembled file is
in place but before the clip is marked complete (``sink.assemble``). After every kill the sink's
database passes ``PRAGMA integrity_check``, no contact it had stored is gone, and every clip marked
complete has a file with the announced size and sha256. At the end every contact of the device is
in the sink exactly once with a verified clip, and no temporary file is left.
"""

from __future__ import annotations

import random
from pathlib import Path

from edge.scenario import busy_shift
from provisioning.broker import LocalBroker
from tests.faults.harness import sink_kill_cycles

CYCLES = 15


def test_kill_9_of_the_sink_loses_and_duplicates_nothing(
    broker: LocalBroker, tmp_path: Path
) -> None:
    figures = sink_kill_cycles(
        broker, tmp_path, busy_shift(0.3, seed=7), rng=random.Random(11), cycles=CYCLES
    )
    kills = figures.kills
    assert figures.total == CYCLES
    assert kills["sink.commit"] >= 2
    assert kills["sink.assemble.write"] >= 2
    assert kills["sink.assemble"] >= 2
    result = figures.delivery
    assert result.produced >= 10
    assert (result.lost, result.duplicated, result.missing) == (0, 0, [])
