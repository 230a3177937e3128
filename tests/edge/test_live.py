"""Today's live counters: counted by hand, the day boundary in the configured zone, the same
figures as the sink's metrics, and carried by the retained status of a simulated shift."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cloud_sink.metrics import Parameters, compute
from edge.clock import NS
from edge.config import Config
from edge.live import TodayCounters
from edge.publish import wire
from edge.records import ContactRecord, EventRecord
from edge.scenario import load_scenario
from edge.simulate import run_simulation
from provisioning.broker import LocalBroker
from tests.edge.test_publisher import Sink

BERLIN = ZoneInfo("Europe/Berlin")


def wall(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * NS


def event(n: int, kind: str, at: int, contact_id: str | None) -> EventRecord:
    return EventRecord(id=f"e{n:031d}", kind=kind, t_ns=at, wall_ns=at, contact_id=contact_id)


def contact(n: int, mode: str, tags: list[str], kinds: list[str], at: int) -> ContactRecord:
    cid = f"c{n:031d}"
    return ContactRecord(
        id=cid,
        mode=mode,
        start_ns=at,
        end_ns=at + 30 * NS,
        start_wall_ns=at,
        end_wall_ns=at + 30 * NS,
        ended_by="departure",
        tags=tuple(tags),
        events=tuple(event(n * 10 + i, k, at + i * NS, cid) for i, k in enumerate(kinds)),
        clip=None,
        clock_synced=True,
        boot_id="b",
    )


NINE = wall("2026-11-23T09:00:00+01:00")
SHIFT = [
    contact(1, "presence", ["negative", "not_positive", "productive"], ["red", "receipt"], NINE),
    contact(2, "presence", ["positive", "productive"], ["green", "receipt", "seller_short"], NINE),
    contact(3, "presence", ["not_positive", "silent", "unproductive"], [], NINE),
    contact(4, "presence", ["not_positive", "silent", "force_majeure"], ["seller_long"], NINE),
    contact(5, "survey", ["not_positive", "unsure"], ["seller_short", "yellow"], NINE),
]
ORPHAN_RECEIPT = event(99, "receipt", NINE + 600 * NS, None)


def fed(counters: TodayCounters) -> TodayCounters:
    for rec in SHIFT:
        counters.add_contact(rec)
    counters.add_event(ORPHAN_RECEIPT)
    counters.add_event(event(98, "red", NINE, None))  # not a counted kind
    return counters


def test_counts_and_metrics_by_hand() -> None:
    today = fed(TodayCounters(BERLIN, 0.5, 0.1)).snapshot(NINE + 3600 * NS)
    assert today == {
        "date": "2026-11-23",
        "served": 4,  # presence contacts only
        "positive": 1,
        "negative": 1,
        "silent": 2,
        "productive": 2,
        "receipts": 3,  # two in contacts, one outside
        "surveys": 2,
        "force_majeure": 1,
        "visitors": 4,
        "support_index": 0.25,
        "dissatisfaction_index": 0.25,
        "staff_dissatisfaction_index": 0.5,  # (1 + 0.5 * 2) / 4
        "loyalty_index": -0.25,  # (1 - 1 - 0.5 * 2) / 4
        "personal_conversion": 0.75,  # 3 receipts / 4 served (not productive / served)
        "productive_share": 0.5,  # 2 productive / 4 served
        "exact_conversion": 0.6667,  # 2 surveys / 3 receipts
        "visitor_coverage": 0.5,
        "force_majeure_level": 0.5,
        "meaningful": False,  # 0.5 > 0.1
    }
    lenient = fed(TodayCounters(BERLIN, 0.0, 0.5)).snapshot(NINE)
    assert lenient["meaningful"] is True  # 0.5 is not above 0.5
    assert lenient["staff_dissatisfaction_index"] == 0.25


def test_the_same_figures_as_the_sink() -> None:
    """edge.live and cloud_sink.metrics may not import each other: they must agree."""
    params = Parameters(correction_factor=0.3, force_majeure_threshold=0.6)
    today = fed(TodayCounters(BERLIN, 0.3, 0.6)).snapshot(NINE)
    sink = compute(
        [wire.contact_json(rec) for rec in SHIFT], [wire.event_json(ORPHAN_RECEIPT)], params
    ).as_json()
    for key, value in sink.items():
        mine = today["served" if key == "contacts_served" else key]
        assert mine == (round(value, 4) if isinstance(value, float) else value), key


def test_a_new_local_day_starts_from_zero_and_late_contacts_of_yesterday_are_ignored() -> None:
    counters = TodayCounters(BERLIN)
    late_evening = wall("2026-11-23T23:59:00+01:00")
    counters.add_contact(contact(1, "presence", ["positive"], ["green"], late_evening))
    assert counters.snapshot(late_evening)["served"] == 1
    # 00:30 in Berlin is still 23:30 UTC the day before: the local day decides
    after_midnight = wall("2026-11-24T00:30:00+01:00")
    fresh = counters.snapshot(after_midnight)
    assert fresh["date"] == "2026-11-24"
    assert fresh["served"] == 0
    assert fresh["support_index"] is None
    assert fresh["meaningful"] is True
    counters.add_contact(contact(2, "presence", ["negative"], ["red"], late_evening))  # late
    counters.add_contact(
        contact(3, "survey", ["positive"], ["seller_short", "green"], after_midnight)
    )
    today = counters.snapshot(after_midnight)
    # without presence contacts every contact is served; no visitors
    assert (today["served"], today["positive"], today["negative"]) == (1, 1, 0)
    assert today["visitors"] == 0
    assert today["visitor_coverage"] is None


SCENARIO = """
start = "2026-11-23T09:00:00Z"
duration = 200.0
[[customers]]
arrive = 10.0
leave = 60.0
[[presses]]
at = 40.0
button = "green"
[[receipts]]
at = 45.0
id = "R-1"
[[customers]]
arrive = 100.0
leave = 150.0
[[presses]]
at = 120.0
button = "red"
"""


def test_the_retained_status_of_a_simulated_shift_carries_todays_counters(
    tmp_path: Path, broker: LocalBroker
) -> None:
    path = tmp_path / "shift.toml"
    path.write_text(SCENARIO)
    cfg = Config.from_dict({"audio": {"enabled": False}, "metrics": {"correction_factor": 0.2}})
    run_simulation(cfg, load_scenario(path, cfg), path, tmp_path, broker=broker.url)
    reader = Sink(broker.port, wire.topic(cfg.device.site, cfg.device.id, "status"))
    try:
        (msg,) = reader.wait_for(lambda ms: len(ms) >= 1, "the retained status")
    finally:
        reader.close()
    status: dict[str, Any] = json.loads(msg.payload)["status"]
    today = status["today"]
    assert today["date"] == "2026-11-23"
    assert (today["served"], today["positive"], today["negative"], today["silent"]) == (2, 1, 1, 0)
    assert (today["receipts"], today["productive"], today["surveys"]) == (1, 1, 0)
    assert today["support_index"] == 0.5
    assert today["loyalty_index"] == 0.0
    assert today["personal_conversion"] == 0.5
    assert today["exact_conversion"] == 0.0
    assert today["productive_share"] == 0.5
