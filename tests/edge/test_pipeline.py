"""The whole edge pipeline on the README's example shift: fakes only at the hardware boundary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
        assert not clip.truncated
        assert clip.gaps == ()


def test_events_are_in_their_contacts_and_outside_ones_are_kept(
    shift: tuple[Path, list[ContactRecord]],
) -> None:
    data, contacts = shift
    first = contacts[0]
    kinds = [e.kind for e in first.events]
    assert kinds == ["arrival", "receipt", "red", "departure"]
    receipt = first.events[1]
    assert receipt.receipt_id == "R-1001"
    assert receipt.data == {"amount": 12.5}
    force = [e for e in contacts[-1].events if e.kind == "seller_long"]
    assert len(force) == 1
    assert force[0].t_ns == 500 * NS
    store = Store.open(data / STORE_NAME)
    try:
        orphans = store.orphan_events()
        depth = store.outbox.depth()
    finally:
        store.close()
    assert [(o.kind, o.t_ns) for o in orphans] == [("red", 590 * NS)]
    # every contact, its clip and every orphan event is waiting in the outbox
    assert depth == 2 * len(contacts) + len(orphans)


def test_wall_time_is_attached_from_the_scenario_start(
    shift: tuple[Path, list[ContactRecord]],
) -> None:
    _, contacts = shift
    survey = next(c for c in contacts if c.mode == "survey")
    start = 1_795_424_400 * NS  # 2026-11-23T09:00:00Z
    assert survey.start_wall_ns == start + 260 * NS
    assert survey.clock_synced is True


def simulate(tmp_path: Path, scenario_text: str, config: Mapping[str, Any]) -> list[ContactRecord]:
    path = tmp_path / "scenario.toml"
    path.write_text(scenario_text)
    cfg = Config.from_dict(config)
    run_simulation(cfg, load_scenario(path, cfg), path, tmp_path)
    store = Store.open(tmp_path / STORE_NAME)
    try:
        return store.contacts()
    finally:
        store.close()


def test_contact_longer_than_the_ring_gets_a_truncated_flagged_clip(tmp_path: Path) -> None:
    scenario = """
start = "2026-11-23T09:00:00Z"
duration = 200.0
[[presses]]
at = 100.0
button = "request"
"""
    # a 60 s + 60 s window, but only 100 s of ring; the window is handed out 60 s (before_s)
    # after its end, in case a press merges with it, so by then the ring holds only its tail
    contacts = simulate(tmp_path, scenario, {"audio": {"ring_s": 100}})
    (contact,) = contacts
    clip = contact.clip
    assert clip is not None
    assert clip.truncated
    wanted_end = (160 + 3) * RATE
    assert clip.end_index == wanted_end
    assert clip.samples <= 100 * RATE  # only what the ring still held: its newest part
    samples, _ = soundfile.read(tmp_path / clip.path, dtype="int16")
    assert np.array_equal(samples, SpeechLike(RATE, 0).render(clip.start_index, clip.samples))


def test_the_default_ring_holds_a_window_until_it_is_handed_out(tmp_path: Path) -> None:
    scenario = """
start = "2026-11-23T09:00:00Z"
duration = 300.0
[[presses]]
at = 100.0
button = "request"
"""
    # a window as long as max_duration_s, handed out before_s (60 s) after its end
    (contact,) = simulate(tmp_path, scenario, {"contacts": {"max_duration_s": 120}})
    assert (contact.start_ns, contact.end_ns) == (40 * NS, 160 * NS)
    clip = contact.clip
    assert clip is not None
    assert not clip.truncated
    assert (clip.start_index, clip.end_index) == ((40 - 3) * RATE, (160 + 3) * RATE)


def test_a_rating_just_before_a_request_press_tags_its_window(tmp_path: Path) -> None:
    scenario = """
start = "2026-11-23T09:00:00Z"
duration = 300.0
[[presses]]
at = 100.0
button = "red"
[[presses]]
at = 130.0
button = "request"
"""
    (contact,) = simulate(tmp_path, scenario, {})
    assert (contact.mode, contact.start_ns, contact.end_ns) == ("window", 70 * NS, 190 * NS)
    assert [e.kind for e in contact.events] == ["red", "request"]
    assert {"negative", "request"} <= set(contact.tags)
    with Store.open(tmp_path / STORE_NAME) as store:
        assert store.orphan_events() == []


def test_capture_gap_is_recorded_never_stitched(tmp_path: Path) -> None:
    scenario = """
start = "2026-11-23T09:00:00Z"
duration = 200.0
[[presses]]
at = 100.0
button = "request"
[[audio_gaps]]
at = 90.0
length = 0.5
"""
    (contact,) = simulate(tmp_path, scenario, {})
    clip = contact.clip
    assert clip is not None
    assert not clip.truncated
    assert clip.gaps == ((90 * RATE, 90 * RATE + RATE // 2),)
    samples, _ = soundfile.read(tmp_path / clip.path, dtype="int16")
    offset = 90 * RATE - clip.start_index
    assert not samples[offset : offset + RATE // 2].any()  # silence where nothing was captured
    # the audio after the gap is still at its true place
    after = 91 * RATE
    expected = SpeechLike(RATE, 0).render(after, RATE)
    assert np.array_equal(
        samples[after - clip.start_index : after - clip.start_index + RATE], expected
    )


def test_customer_who_never_leaves_is_one_timed_out_contact(tmp_path: Path) -> None:
    scenario = """
start = "2026-11-23T09:00:00Z"
duration = 400.0
[[customers]]
arrive = 10.0
distance_m = 0.5
"""
    contacts = simulate(tmp_path, scenario, {"contacts": {"max_duration_s": 120}})
    (contact,) = contacts
    assert contact.ended_by == "timeout"
    assert "timeout" in contact.tags
    assert contact.end_ns - contact.start_ns == 120 * NS


def test_wireless_presses_go_through_the_real_decoders(tmp_path: Path) -> None:
    scenario = """
start = "2026-11-23T09:00:00Z"
duration = 120.0
[[customers]]
arrive = 10.0
leave = 60.0
[[presses]]
at = 30.0
button = "red-remote"     # a 433 MHz remote: pulse trains through the OOK decoder
hold = 1.0
[[presses]]
at = 40.0
button = "green-remote"
via = "serial"            # heard by an RFLink stick: lines through the serial parser
hold = 0.5
[[presses]]
at = 90.0
button = "red-remote"     # nobody there: an event outside contacts
"""
    config = {
        "buttons": [
            {"name": "red-remote", "role": "red", "via": "rf433", "code": "ev1527:27fd49"},
            {"name": "green-remote", "role": "green", "via": "rf433", "code": "ev1527:27fd4a"},
        ]
    }
    (contact,) = simulate(tmp_path, scenario, config)
    presses = [(e.kind, e.via) for e in contact.events if e.kind in ("red", "green")]
    assert presses == [("red", "rf433"), ("green", "serial")]  # each press exactly once
    red = next(e for e in contact.events if e.kind == "red")
    assert 30 * NS <= red.t_ns <= 30 * NS + NS // 2  # decoded within the first frames
    assert {"negative", "positive"} <= set(contact.tags)
    store = Store.open(tmp_path / STORE_NAME)
    try:
        orphans = store.orphan_events()
    finally:
        store.close()
    assert [(o.kind, o.via) for o in orphans] == [("red", "rf433")]


def test_press_via_a_receiver_needs_a_code(tmp_path: Path) -> None:
    from edge.config import ConfigError

    path = tmp_path / "s.toml"
    path.write_text(
        'start = "2026-11-23T09:00:00Z"\nduration = 10\n'
        '[[presses]]\nat = 1\nbutton = "red"\nvia = "rf433"\n'
    )
    with pytest.raises(ConfigError, match=r"presses\[0\] on 'red' via rf433: the button has no"):
        load_scenario(path, Config())
