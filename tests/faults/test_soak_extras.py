"""The soak's (bench/soak.py) real-full-disk and poison scenarios, briefly: the same machinery
on a short shift, so that CI runs them."""

from __future__ import annotations

from pathlib import Path

from edge.scenario import busy_shift
from provisioning.broker import LocalBroker
from tests.faults.harness import full_disk_shift, poison_kinds, poison_mid_shift


def test_a_real_full_disk_mid_shift_loses_nothing(tmp_path: Path, broker: LocalBroker) -> None:
    figures = full_disk_shift(broker, tmp_path, busy_shift(0.25, seed=3))
    d = figures.delivery
    assert (d.produced, d.lost, d.duplicated) == (figures.flagged + figures.clipped, 0, 0)
    assert d.delivered == d.produced
    assert figures.flagged >= 1
    assert figures.clipped >= 1


def test_poison_mid_shift_is_dead_lettered_and_the_stream_goes_on(
    tmp_path: Path, broker: LocalBroker
) -> None:
    figures = poison_mid_shift(broker, tmp_path, busy_shift(0.25, seed=4))
    d = figures.delivery
    assert (d.lost, d.duplicated) == (0, 0)
    assert d.delivered == d.produced > 0
    assert len(figures.dead_lettered) == figures.kinds == len(poison_kinds())
    assert figures.after > 0
