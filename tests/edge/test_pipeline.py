"""The whole edge pipeline on the README's example shift: fakes only at the hardware boundary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge.clock import NS
from edge.config import Config
from edge.records import ContactRecord
from edge.scenario import load_scenario
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from hardware._speech import SpeechLike

ROOT = Path(__file__).resolve().parents[2]
SHIFT = ROOT / "examples" / "shift.toml"
RATE = 16000


@pytest.fixture(scope="module")
def shift(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ContactRecord]]:
    data = tmp_path_factory.mktemp("shift")
    cfg = Config()
    run_simulation(cfg, load_scenario(SHIFT, cfg), SHIFT, data)
    store = Store.open(data / STORE_NAME)
    try:
        return data, store.contacts()
    finally:
        store.close()


def seconds(ns: int) -> float:
    return ns / NS


def test_the_shift_gives_the_contacts_the_scenario_implies(
    shift: tuple[Path, list[ContactRecord]],
) -> None:
    _, contacts = shift
    got = [(c.mode, c.ended_by, set(c.tags)) for c in contacts]
    assert got == [
        ("presence", "departure", {"negative", "not_positive", "productive"}),
        ("presence", "departure", {"positive", "productive"}),
        ("presence", "departure", {"not_positive", "silent", "unproductive"}),
        ("survey", "answer", {"not_positive", "unsure"}),
        ("window", "window", {"not_positive", "request"}),
        ("presence", "departure", {"not_positive", "unsure", "unproductive", "force_majeure"}),
    ]


def test_presence_contacts_follow_the_customers(shift: tuple[Path, list[ContactRecord]]) -> None:
    _, contacts = shift
    presence = [c for c in contacts if c.mode == "presence"]
    cfg = Config().presence
    lag = cfg.median_window * cfg.interval_s  # the median filter may delay an edge this much
    for contact, (arrive, leave) in zip(
        presence, [(10, 75), (100, 160), (200, 230), (470, 560)], strict=True
    ):
        assert arrive <= seconds(contact.start_ns) <= arrive + lag
        assert leave <= seconds(contact.end_ns) <= leave + lag


def test_button_contacts_are_exact(shift: tuple[Path, list[ContactRecord]]) -> None:
    _, contacts = shift
    survey = next(c for c in contacts if c.mode == "survey")
    assert (survey.start_ns, survey.end_ns) == (260 * NS, 270 * NS)
    window = next(c for c in contacts if c.mode == "window")
    assert (window.start_ns, window.end_ns) == (340 * NS, 460 * NS)


def test_clips_are_exact_to_the_sample(shift: tuple[Path, list[ContactRecord]]) -> None:
    data, contacts = shift
    speech = SpeechLike(RATE, 0)
    roll = 3 * RATE
    for contact in contacts:
        clip = contact.clip
        assert clip is not None
        assert clip.start_index == contact.start_ns * RATE // NS - roll
        assert clip.end_index == contact.end_ns * RATE // NS + roll
        samples, rate = soundfile.read(data / clip.path, dtype="int16")
        assert rate == RATE
        assert np.array_equal(samples, speech.render(clip.start_index, clip.samples))
        assert not clip.truncated and clip.gaps == ()


def test_events_are_in_their_contacts_and_outside_ones_are_kept(
    shift: tuple[Path, list[ContactRecord]],
) -> None:
    data, contacts = shift
    first = contacts[0]
    kinds = [e.kind for e in first.events]
    assert kinds == ["arrival", "receipt", "red", "departure"]
    receipt = first.events[1]
    assert receipt.receipt_id == "R-1001" and receipt.data == {"amount": 12.5}
    force = [e for e in contacts[-1].events if e.kind == "seller_long"]
    assert len(force) == 1 and force[0].t_ns == 500 * NS
    store = Store.open(data / STORE_NAME)
    try:
        orphans = store.orphan_events()
        depth = store.outbox.depth()
    finally:
        store.close()
    assert [(o.kind, o.t_ns) for o in orphans] == [("red", 590 * NS)]
    # every contact and every orphan event is waiting in the outbox
    assert depth == len(contacts) + len(orphans)


def test_wall_time_is_attached_from_the_scenario_start(
    shift: tuple[Path, list[ContactRecord]],
) -> None:
    _, contacts = shift
    survey = next(c for c in contacts if c.mode == "survey")
    start = 1_795_424_400 * NS  # 2026-11-23T09:00:00Z
    assert survey.start_wall_ns == start + 260 * NS
    assert survey.clock_synced is True
