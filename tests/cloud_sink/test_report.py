"""``sink report``: every metric against hand-computed values on a fixed set of contacts stored
through the real ingest (SQLite and PostgreSQL), grouping by each key, period filters, each
format, the command line, and one shift played through the edge pipeline into the sink."""

from __future__ import annotations

import copy
import csv
import io
import json
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cloud_sink.cli import main
from cloud_sink.db import open_database
from cloud_sink.ingest import Ingest, Outcome
from cloud_sink.metrics import DEFINITIONS, METRIC_KEYS, Parameters
from cloud_sink.migrations import migrate
from cloud_sink.report import (
    ALL,
    OUT_OF_RANGE,
    UNKNOWN,
    UNREADABLE,
    Report,
    build,
    load,
    parse_when,
    render,
)
from tests.cloud_sink.helpers import encode, golden, topic

ROOT = Path(__file__).resolve().parents[2]

FIXED: list[tuple[str, str, str | None, str, str, list[str], list[str]]] = [
    # device, site, staff, start, mode, tags, event kinds
    ("d1", "s1", "anna", "2026-11-23T09:05:00.000Z", "presence", ["positive", "productive"],
     ["green", "receipt", "seller_short"]),
    ("d1", "s1", "anna", "2026-11-23T09:20:00.000Z", "presence",
     ["negative", "not_positive", "unproductive"], ["red"]),
    ("d1", "s1", "anna", "2026-11-23T09:40:00.000Z", "presence",
     ["silent", "not_positive", "productive"], ["receipt"]),
    ("d1", "s1", "bob", "2026-11-23T10:10:00.000Z", "presence", ["positive", "unproductive"],
     ["green", "seller_short"]),
    ("d1", "s1", "bob", "2026-11-23T10:30:00.000Z", "survey", ["silent", "not_positive"],
     ["seller_short"]),
    ("d2", "s2", None, "2026-11-24T08:00:00.000Z", "presence",
     ["silent", "not_positive", "force_majeure", "unproductive"], ["seller_long"]),
    ("d2", "s2", None, "2026-11-24T08:30:00.000Z", "presence",
     ["negative", "not_positive", "productive"], ["red", "receipt"]),
]  # fmt: skip
ORPHANS = [("d1", "s1", "receipt", "2026-11-23T09:50:00.000Z"),
           ("d2", "s2", "seller_short", "2026-11-24T08:10:00.000Z")]  # fmt: skip


def hexid() -> str:
    return uuid.uuid4().hex


def contact_payload(
    row: tuple[str, str, str | None, str, str, list[str], list[str]],
) -> dict[str, Any]:
    """A golden-style contact message (the golden payload with these fields)."""
    device, site, staff, start, mode, tags, kinds = row
    msg = copy.deepcopy(golden("contact.json"))
    cid = hexid()
    msg.update({"msg_id": hexid(), "device": device, "site": site})
    msg["contact"].update(
        {
            "id": cid,
            "start": start,
            "end": start,
            "mode": mode,
            "tags": tags,
            "staff": staff,
            "clip": None,
            "events": [{"id": hexid(), "kind": k, "at": start, "contact_id": cid} for k in kinds],
        }
    )
    return msg


def event_payload(device: str, site: str, kind: str, at: str) -> dict[str, Any]:
    msg = copy.deepcopy(golden("event.json"))
    msg.update({"msg_id": hexid(), "device": device, "site": site})
    msg["event"] = {"id": hexid(), "kind": kind, "at": at}
    return msg


def store_fixed(ingest: Ingest) -> None:
    for row in FIXED:
        device, site = row[0], row[1]
        payload = contact_payload(row)
        assert ingest.handle(topic("contact", site, device), encode(payload)).outcome is (
            Outcome.STORED
        )
    for device, site, kind, at in ORPHANS:
        payload = event_payload(device, site, kind, at)
        assert ingest.handle(topic("event", site, device), encode(payload)).outcome is (
            Outcome.STORED
        )


@pytest.fixture
def stored(
    db_url: str | None, data_dir: Path
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    db = open_database(db_url, data_dir)
    try:
        migrate(db)
        store_fixed(Ingest(db, data_dir))
        yield load(db, data_dir)
    finally:
        db.close()


D1 = {
    "contacts_served": 4,
    "support_index": 0.5,
    "dissatisfaction_index": 0.25,
    "staff_dissatisfaction_index": 0.375,  # (1 negative + 0.5 x 1 silent) / 4
    "loyalty_index": 0.125,  # (2 - 1 - 0.5 x 1) / 4
    "personal_conversion": 0.75,  # 3 receipts (one outside any contact) / 4 served
    "productive_share": 0.5,  # 2 productive contacts / 4 served
    "exact_conversion": 1.0,  # 3 surveys / 3 receipts (one outside any contact)
    "visitor_coverage": 0.75,  # 3 surveys / 4 visitors
    "force_majeure_level": 0.0,
    "meaningful": True,
}
D2 = {
    "contacts_served": 2,
    "support_index": 0.0,
    "dissatisfaction_index": 0.5,
    "staff_dissatisfaction_index": 0.75,
    "loyalty_index": -0.75,
    "personal_conversion": 0.5,  # 1 receipt / 2 served
    "productive_share": 0.5,
    "exact_conversion": 1.0,
    "visitor_coverage": 0.5,
    "force_majeure_level": 1.0,  # 1 long press / 1 survey
    "meaningful": False,  # 1.0 > 0.1
}
TOTAL = {
    "contacts_served": 6,
    "support_index": 2 / 6,
    "dissatisfaction_index": 2 / 6,
    "staff_dissatisfaction_index": 0.5,
    "loyalty_index": -1 / 6,
    "personal_conversion": 4 / 6,  # 4 receipts / 6 served
    "productive_share": 0.5,  # 3 productive / 6 served
    "exact_conversion": 1.0,
    "visitor_coverage": 4 / 6,
    "force_majeure_level": 0.25,
    "meaningful": False,
}


def by_key(report: Report) -> dict[str, dict[str, Any]]:
    return {row.key: row.metrics.as_json() for row in report.rows}


def approx(expected: dict[str, Any]) -> dict[str, Any]:
    return {k: pytest.approx(v) if isinstance(v, float) else v for k, v in expected.items()}


def test_every_metric_by_device_against_hand_computed_values(
    stored: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    report = build(*stored, by="device")
    assert by_key(report) == {"d1": approx(D1), "d2": approx(D2)}
    assert report.total.metrics.as_json() == approx(TOTAL)
    assert report.total.counts.as_json() == {
        "contacts": 7, "served": 6, "positive": 2, "negative": 2, "silent": 2, "productive": 3,
        "receipts": 4, "surveys": 4, "force_majeure": 1, "visitors": 6,
    }  # fmt: skip


def test_grouping_by_site_staff_day_and_hour(
    stored: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    assert by_key(build(*stored, by="site")) == {"s1": approx(D1), "s2": approx(D2)}
    staff = build(*stored, by="staff")
    assert list(by_key(staff)) == ["(unknown)", "anna", "bob"]
    anna = by_key(staff)["anna"]
    assert anna == approx(
        {
            "contacts_served": 3,
            "support_index": 1 / 3,
            "dissatisfaction_index": 1 / 3,
            "staff_dissatisfaction_index": 0.5,
            "loyalty_index": -1 / 6,
            "personal_conversion": 2 / 3,  # 2 receipts / 3 served
            "productive_share": 2 / 3,
            "exact_conversion": 0.5,  # 1 survey / 2 receipts
            "visitor_coverage": 1 / 3,
            "force_majeure_level": 0.0,
            "meaningful": True,
        }
    )
    bob = by_key(staff)["bob"]  # one presence contact served; the survey contact is not
    assert (bob["contacts_served"], bob["support_index"], bob["loyalty_index"]) == (1, 1.0, 1.0)
    assert bob["exact_conversion"] is None  # no receipt: no data, never 0
    assert bob["personal_conversion"] == 0.0
    assert bob["productive_share"] == 0.0
    assert bob["visitor_coverage"] == 2.0
    unknown = by_key(staff)[UNKNOWN]  # d2's contacts and both events outside contacts
    assert unknown["exact_conversion"] == 0.5
    assert unknown["meaningful"] is False
    assert unknown["personal_conversion"] == 1.0  # d2's receipt and the one outside / 2 served
    assert by_key(build(*stored, by="day")) == {"2026-11-23": approx(D1), "2026-11-24": approx(D2)}
    hours = by_key(build(*stored, by="hour"))
    assert list(hours) == ["2026-11-23 09:00", "2026-11-23 10:00", "2026-11-24 08:00"]
    assert hours["2026-11-23 09:00"]["contacts_served"] == 3
    assert hours["2026-11-23 09:00"]["exact_conversion"] == pytest.approx(1 / 3)  # 1 / 3 receipts
    assert hours["2026-11-23 09:00"]["personal_conversion"] == 1.0  # 3 receipts / 3 served


def test_days_and_hours_follow_the_time_zone(
    stored: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")  # UTC+9: d1's 10:10Z and 10:30Z are 19:xx the same day
    hours = by_key(build(*stored, by="hour", tz=tokyo))
    assert "2026-11-23 19:00" in hours
    assert "2026-11-24 17:00" in hours
    samoa = ZoneInfo("Pacific/Pago_Pago")  # UTC-11: everything moves a day back
    assert list(by_key(build(*stored, by="day", tz=samoa))) == ["2026-11-22", "2026-11-23"]


def test_period_filters(stored: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    end = datetime(2026, 11, 24, 8, 15, tzinfo=UTC)
    report = build(*stored, start=start, end=end)
    assert report.rows == ()  # no --by: only the total
    counts = report.total.counts
    # bob's two contacts, d2's 08:00 contact and the 08:10 survey outside contacts
    assert (counts.contacts, counts.served, counts.surveys, counts.force_majeure) == (3, 2, 3, 1)
    assert counts.receipts == 0
    assert report.total.metrics.exact_conversion is None
    # the start is inclusive, the end exclusive
    exact = build(*stored, start=datetime(2026, 11, 23, 9, 5, tzinfo=UTC))
    assert exact.total.counts.contacts == 7
    assert build(*stored, end=datetime(2026, 11, 23, 9, 5, tzinfo=UTC)).total.counts.contacts == 0
    # a bare date is midnight in the report's zone
    berlin = ZoneInfo("Europe/Berlin")
    assert parse_when("2026-11-24", berlin, "--from") == datetime(2026, 11, 24, tzinfo=berlin)
    late = build(*stored, start=parse_when("2026-11-24", ZoneInfo("UTC"), "--from"))
    assert late.total.metrics.as_json() == approx(D2)


def test_parameters_change_the_weighted_indices(
    stored: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    report = build(*stored, by="device", params=Parameters(1.0, 1.0))
    d2 = by_key(report)["d2"]
    assert d2["staff_dissatisfaction_index"] == 1.0
    assert d2["loyalty_index"] == -1.0
    assert d2["meaningful"] is True  # 1.0 is not above a threshold of 1.0
    with pytest.raises(ValueError, match="correction_factor must be between 0 and 1"):
        Parameters(1.5)


# --- formats -----------------------------------------------------------------------------------


@pytest.fixture
def report(tmp_path: Path) -> Report:
    db = open_database(None, tmp_path)
    try:
        migrate(db)
        store_fixed(Ingest(db, tmp_path))
        return build(*load(db, tmp_path), by="device")
    finally:
        db.close()


def test_csv_parses_with_one_row_per_group_and_the_total(report: Report) -> None:
    text = render(report, "csv", None)
    assert text is not None
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["device"] for r in rows] == ["d1", "d2", ALL]
    assert list(rows[0]) == ["device", *METRIC_KEYS]
    assert float(rows[0]["loyalty_index"]) == 0.125
    assert rows[1]["meaningful"] == "false"
    assert rows[2]["visitor_coverage"] == "0.6667"  # 4 / 6, rounded to 4 decimals
    assert rows[2]["support_index"] == "0.3333"
    assert rows[0]["loyalty_index"] == "0.125"
    assert rows[0]["contacts_served"] == "4"
    assert rows[2]["meaningful"] == "false"


def test_json_keys_are_exact(report: Report, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    render(report, "json", out)
    doc = json.loads(out.read_text())
    assert set(doc) == {
        "by", "from", "to", "timezone", "parameters", "definitions", "groups", "total",
    }  # fmt: skip
    assert doc["definitions"]["personal_conversion"] == "receipts / contacts served"
    assert doc["definitions"]["productive_share"] == "productive contacts / contacts served"
    assert doc["parameters"] == {"correction_factor": 0.5, "force_majeure_threshold": 0.1}
    for group in [*doc["groups"], doc["total"]]:
        assert list(group["metrics"]) == [
            "contacts_served", "support_index", "dissatisfaction_index",
            "staff_dissatisfaction_index", "loyalty_index", "personal_conversion",
            "productive_share", "exact_conversion", "visitor_coverage", "force_majeure_level",
            "meaningful",
        ]  # fmt: skip
    assert doc["groups"][0]["metrics"] == D1


def test_table_contains_the_numbers(report: Report) -> None:
    text = render(report, "table", None)
    assert text is not None
    d1 = next(line for line in text.splitlines() if " d1 " in line)
    for number in ("0.500", "0.250", "0.375", "0.125", "1.000", "0.750", "0.000", "yes"):
        assert number in d1
    d2 = next(line for line in text.splitlines() if " d2 " in line)
    assert "-0.750" in d2
    assert "NO" in d2
    # every column says what it divides by what: name, numerator, "/ denominator"
    head = [line.split("┃")[1:-1] for line in text.splitlines() if line.startswith("┃")]
    columns = [" ".join(" ".join(column).split()) for column in zip(*head, strict=True)]
    assert columns[1:] == [f"{d.short} {d.over} {d.under}".strip() for d in DEFINITIONS]
    assert "pers. conv. receipts / served" in columns
    assert "productive prod / served" in columns
    assert "served = contacts served" in " ".join(text.split())  # the legend


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_png_is_a_valid_chart_of_sensible_size(report: Report, tmp_path: Path) -> None:
    out = tmp_path / "r.png"
    assert render(report, "png", out) is None
    data = out.read_bytes()
    width, height = png_size(data)
    assert 800 <= width <= 3000
    assert 800 <= height <= 1500
    assert 20_000 < len(data) < 2_000_000  # a drawing, not an empty canvas
    with pytest.raises(ValueError, match="--format png needs --out"):
        render(report, "png", None)


# --- the command line --------------------------------------------------------------------------


def test_the_command_prints_json_and_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = open_database(None, tmp_path)
    try:
        migrate(db)
        store_fixed(Ingest(db, tmp_path))
    finally:
        db.close()
    base = ["sink", "report", "--data", str(tmp_path)]
    assert main([*base, "--by", "site", "--format", "json", "--from", "2026-11-24"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [g["key"] for g in doc["groups"]] == ["s2"]
    assert doc["groups"][0]["metrics"] == D2
    config = tmp_path / "sink.toml"
    config.write_text('[report]\ncorrection_factor = 1.0\ntimezone = "Asia/Tokyo"\n')
    assert main([*base, "--format", "csv", "--config", str(config)]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["staff_dissatisfaction_index"] == "0.6667"  # (2 + 2) / 6, 4 decimals
    png = tmp_path / "out.png"
    assert main([*base, "--by", "staff", "--format", "png", "--out", str(png)]) == 0
    png_size(png.read_bytes())
    for args, needle in [
        (["--format", "png"], "--format png needs --out"),
        (["--from", "yesterday"], "--from 'yesterday' is not an ISO 8601 date"),
        (["--from", "2026-11-24", "--to", "2026-11-23"], "must be after --from"),
        (["--tz", "Mars/Olympus"], "'Mars/Olympus' is not an IANA time zone"),
        (["--correction-factor", "2"], "correction_factor must be between 0 and 1"),
    ]:
        assert main([*base, *args]) == 2
        assert needle in capsys.readouterr().err
    config.write_text("[report]\ncorection_factor = 1.0\n")
    assert main([*base, "--config", str(config)]) == 2
    assert "report.corection_factor: unknown key. Did you mean 'correction_factor'?" in (
        capsys.readouterr().err
    )


# --- one shift through the real pipeline -------------------------------------------------------

SHIFT = """
start = "2026-11-23T09:00:00Z"   # a Monday
duration = 400.0
[[customers]]          # anna (schedule): green, a receipt
arrive = 10.0
leave = 60.0
[[presses]]
at = 40.0
button = "green"
[[receipts]]
at = 45.0
id = "R-1"
[[customers]]          # anna: red, no receipt
arrive = 100.0
leave = 150.0
[[presses]]
at = 120.0
button = "red"
[[on_duty]]            # bob takes over at the till
at = 170.0
name = "bob"
[[customers]]          # bob: silent, a receipt
arrive = 200.0
leave = 250.0
[[receipts]]
at = 230.0
id = "R-2"
[[presses]]            # bob runs a survey between customers; the customer says yes
at = 280.0
button = "seller"
hold = 0.3
[[presses]]
at = 290.0
button = "green"
[[presses]]            # and reports force majeure
at = 330.0
button = "seller"
hold = 3.0
"""


def test_a_shift_played_through_the_edge_reaches_the_report(tmp_path: Path) -> None:
    from edge.config import Config
    from edge.publish import wire as edge_wire
    from edge.scenario import load_scenario
    from edge.simulate import STORE_NAME, run_simulation
    from edge.store import Store

    edge_dir, sink_dir = tmp_path / "edge", tmp_path / "sink"
    edge_dir.mkdir()
    path = edge_dir / "shift.toml"
    path.write_text(SHIFT)
    cfg = Config.from_dict(
        {
            "device": {"id": "cp-7", "site": "shop"},
            "audio": {"enabled": False},
            "staff": {
                "shifts": [{"name": "anna", "days": ["mon"], "from": "08:00", "to": "18:00"}]
            },
        }
    )
    run_simulation(cfg, load_scenario(path, cfg), path, edge_dir)
    db = open_database(None, sink_dir)
    try:
        migrate(db)
        ingest = Ingest(db, sink_dir)
        with Store.open(edge_dir / STORE_NAME) as store:  # the device's messages, as sent
            messages = [edge_wire.contact_message(c, "cp-7", "shop") for c in store.contacts()]
            messages += [edge_wire.event_message(e, "cp-7", "shop") for e in store.orphan_events()]
        for message in messages:
            raw = edge_wire.encode_json(message.payload)
            kind = message.kind
            assert ingest.handle(edge_wire.topic("shop", "cp-7", kind), raw).outcome is (
                Outcome.STORED
            )
        report = build(*load(db, sink_dir), by="staff")
    finally:
        db.close()
    rows = {row.key: row for row in report.rows}
    assert set(rows) == {"anna", "bob"}
    anna, bob = rows["anna"], rows["bob"]
    assert (anna.counts.served, anna.counts.positive, anna.counts.negative) == (2, 1, 1)
    assert (anna.counts.receipts, anna.counts.productive, anna.counts.surveys) == (1, 1, 0)
    assert anna.metrics.support_index == 0.5
    assert anna.metrics.loyalty_index == 0.0
    assert anna.metrics.personal_conversion == 0.5
    assert anna.metrics.exact_conversion == 0.0
    # bob: one presence contact (silent, productive); the survey and the long press are his
    assert (bob.counts.served, bob.counts.silent, bob.counts.productive) == (1, 1, 1)
    assert (bob.counts.surveys, bob.counts.force_majeure) == (1, 1)
    assert bob.metrics.staff_dissatisfaction_index == 0.5  # 0.5 x 1 silent / 1
    assert bob.metrics.loyalty_index == -0.5
    assert bob.metrics.force_majeure_level == 1.0
    assert bob.metrics.meaningful is False
    assert report.total.metrics.contacts_served == 3


# --- times a device may send ---------------------------------------------------------------------

EXTREME = [  # device, site, staff, start, mode, tags, event kinds
    ("d1", "s1", None, "2026-11-23T09:00:00.000+14:00", "presence", ["positive"], ["green"]),
    ("d1", "s1", None, "2026-11-23T09:00:00.000-12:00", "presence", ["negative"], ["red"]),
    ("d1", "s1", None, "0001-01-01T05:00:00.000+14:00", "presence", ["silent"], []),
    ("d1", "s1", None, "9999-12-31T23:00:00.000-12:00", "presence", ["productive"], ["receipt"]),
]


def test_extreme_offsets_never_stop_a_report_by_day_or_hour(tmp_path: Path) -> None:
    """Offsets of +14:00 / -12:00 at the ends of the calendar used to crash ``--by day|hour``
    (OverflowError converting to the report's zone)."""
    db = open_database(None, tmp_path)
    try:
        migrate(db)
        ingest = Ingest(db, tmp_path)
        for row in EXTREME:
            outcome = ingest.handle(topic("contact", "s1", "d1"), encode(contact_payload(row)))
            assert outcome.outcome is Outcome.STORED
        stored = load(db, tmp_path)
    finally:
        db.close()
    days = build(*stored, by="day")
    assert {row.key: row.counts.contacts for row in days.rows} == {
        "2026-11-22": 1,  # 09:00+14:00 is 19:00Z the day before
        "2026-11-23": 1,  # 09:00-12:00 is 21:00Z
        OUT_OF_RANGE: 2,  # year 0 and year 10000 in UTC: counted, not lost
    }
    assert days.total.counts.contacts == 4
    hours = build(*stored, by="hour", tz=ZoneInfo("Pacific/Kiritimati"))  # UTC+14
    assert {row.key: row.counts.contacts for row in hours.rows} == {
        "2026-11-23 09:00": 1,
        "2026-11-24 11:00": 1,
        OUT_OF_RANGE: 2,
    }
    # a period compares instants, which never overflow
    late = build(*stored, start=datetime(9000, 1, 1, tzinfo=UTC))
    assert late.total.counts.contacts == 1


def test_unreadable_times_from_an_older_database_are_grouped_apart() -> None:
    contacts = [
        {"start": "2026-11-23T09:00:00Z", "mode": "presence", "tags": ["positive"]},
        {"start": "2026-11-23T09:00:00", "mode": "presence", "tags": []},  # no offset
        {"start": "yesterday", "mode": "presence", "tags": []},
    ]
    report = build(contacts, by="day")
    assert {row.key: row.counts.contacts for row in report.rows} == {
        "2026-11-23": 1,
        UNREADABLE: 2,
    }
    bounded = build(contacts, start=datetime(2026, 1, 1, tzinfo=UTC))
    assert bounded.total.counts.contacts == 1  # outside every period with a bound


def test_the_report_command_survives_extreme_offsets(tmp_path: Path) -> None:
    db = open_database(None, tmp_path)
    try:
        migrate(db)
        ingest = Ingest(db, tmp_path)
        for row in EXTREME:
            ingest.handle(topic("contact", "s1", "d1"), encode(contact_payload(row)))
    finally:
        db.close()
    for by in ("day", "hour"):
        done = subprocess.run(
            [sys.executable, "-m", "provisioning.main", "sink", "report", "--data", str(tmp_path),
             "--by", by, "--format", "json", "--tz", "Pacific/Kiritimati"],
            check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        doc = json.loads(done.stdout)
        assert doc["groups"][0]["key"] == OUT_OF_RANGE
        assert doc["total"]["counts"]["contacts"] == 4
