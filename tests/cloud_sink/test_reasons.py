"""Reasons for dissatisfaction: the checklist, annotating contacts, counting per site and period,
and the CLI (``sink annotate``, ``sink reasons``, ``sink alerts``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peewee import Database

from cloud_sink.cli import main
from cloud_sink.db import open_database
from cloud_sink.ingest import Ingest
from cloud_sink.migrations import migrate
from cloud_sink.reasons import (
    DEFAULT_REASONS,
    Reason,
    ReasonError,
    annotate,
    annotations_of,
    count,
    parse_reasons,
)
from tests.cloud_sink.helpers import (
    NS,
    FakeClock,
    contact_message,
    encode,
    golden_bytes,
    new_id,
    topic,
)

C1, C2, C3, C4 = ("a1" + "0" * 30, "a2" + "0" * 30, "b3" + "0" * 30, "c4" + "0" * 30)
NOW = 1_795_500_000 * NS


def store_contact(ingest: Ingest, contact_id: str, device: str, site: str, start: str) -> None:
    msg = contact_message(contact_id, new_id())
    msg["device"], msg["site"] = device, site
    msg["contact"]["start"] = start
    ingest.handle(topic("contact", site=site, device=device), encode(msg))


@pytest.fixture
def db(db_url: str | None, data_dir: Path) -> Iterator[Database]:
    database = open_database(db_url, data_dir)
    migrate(database)
    ingest = Ingest(database, data_dir, clock=FakeClock())
    store_contact(ingest, C1, "cp-0001", "site-1", "2026-11-23T09:00:10.000Z")
    store_contact(ingest, C2, "cp-0002", "site-1", "2026-11-23T15:00:00.000Z")
    store_contact(ingest, C3, "cp-0001", "site-1", "2026-11-24T10:00:00.000Z")
    store_contact(ingest, C4, "cp-0003", "site-2", "2026-11-24T11:00:00.000Z")
    yield database
    database.close()


def tick(db: Database, contact: str, *reasons: str, by: str = "olga", note: str = "") -> Any:
    return annotate(
        db, contact, list(reasons), allowed=DEFAULT_REASONS, by=by, note=note, now_ns=NOW
    )


def test_annotate_stores_who_when_and_what(db: Database) -> None:
    done = tick(db, C1, "rude", "long_wait", "rude", note="shouted at the customer")
    assert (done.device, done.contact_id, done.reasons) == ("cp-0001", C1, ("rude", "long_wait"))
    assert annotations_of(db, "cp-0001", C1) == [
        {"reason": "rude", "note": "shouted at the customer", "by": "olga", "at_ns": NOW},
        {"reason": "long_wait", "note": "shouted at the customer", "by": "olga", "at_ns": NOW},
    ]


def test_a_unique_prefix_names_a_contact(db: Database) -> None:
    assert tick(db, C3[:6], "price_payment").contact_id == C3


def test_unknown_reason_lists_the_allowed_codes(db: Database) -> None:
    with pytest.raises(ReasonError, match=r"unknown reason 'rudeness'; allowed: rude \(Staff"):
        tick(db, C1, "rudeness")
    with pytest.raises(ReasonError, match="at least one --reason"):
        tick(db, C1)
    assert annotations_of(db, "cp-0001", C1) == []


def test_unknown_contact_is_named(db: Database) -> None:
    with pytest.raises(ReasonError, match="no contact with id 'ffffff00'"):
        tick(db, "ffffff00", "rude")
    with pytest.raises(ReasonError, match="at least 6"):
        tick(db, "a1", "rude")
    with pytest.raises(ReasonError, match="no contact of device cp-0009"):
        annotate(db, C1, ["rude"], allowed=DEFAULT_REASONS, by="x", now_ns=NOW, device="cp-0009")


def test_counts_per_site_device_and_day(db: Database) -> None:
    tick(db, C1, "rude", "long_wait")
    tick(db, C1, "rude", by="ivan")  # a second opinion: the contact still counts once
    tick(db, C2, "rude")
    tick(db, C3, "long_wait")
    tick(db, C4, "equipment")
    by_site = [(r["site"], r["reason"], r["contacts"]) for r in count(db, by="site")]
    assert by_site == [
        ("site-1", "long_wait", 2),
        ("site-1", "rude", 2),
        ("site-2", "equipment", 1),
    ]
    by_day = [(r["site"], r["day"], r["reason"], r["contacts"]) for r in count(db, by="day")]
    assert by_day == [
        ("site-1", "2026-11-23", "rude", 2),
        ("site-1", "2026-11-23", "long_wait", 1),
        ("site-1", "2026-11-24", "long_wait", 1),
        ("site-2", "2026-11-24", "equipment", 1),
    ]
    by_device = {(r["device"], r["reason"]): r["contacts"] for r in count(db, by="device")}
    assert by_device == {
        ("cp-0001", "rude"): 1, ("cp-0001", "long_wait"): 2, ("cp-0002", "rude"): 1,
        ("cp-0003", "equipment"): 1,
    }  # fmt: skip
    # the period bounds the contact's start: from inclusive, to exclusive
    first_day = count(db, by="site", start="2026-11-23", end="2026-11-24")
    assert {(r["reason"], r["contacts"]) for r in first_day} == {("rude", 2), ("long_wait", 1)}
    exact = count(db, start="2026-11-23T09:00:10Z", end="2026-11-23T09:00:10.001Z")
    assert [(r["reason"], r["contacts"]) for r in exact] == [("long_wait", 1), ("rude", 1)]
    with pytest.raises(ReasonError, match="--from 'monday' is not an ISO date"):
        count(db, start="monday")


def test_the_checklist_comes_from_the_config() -> None:
    doc = {"reasons": [{"code": "queue", "label": "Queue"}, {"code": "dirty"}]}
    assert parse_reasons(doc, "sink.toml") == [Reason("queue", "Queue"), Reason("dirty", "dirty")]
    assert parse_reasons({}, "sink.toml") == list(DEFAULT_REASONS)
    with pytest.raises(ReasonError, match=r"reasons\[1\]: code 'queue' appears twice"):
        parse_reasons({"reasons": [{"code": "queue"}, {"code": "queue"}]}, "sink.toml")
    with pytest.raises(ReasonError, match=r"reasons\[0\].code = 'Long Wait'"):
        parse_reasons({"reasons": [{"code": "Long Wait"}]}, "sink.toml")
    with pytest.raises(ReasonError, match="unknown key\\(s\\) lable"):
        parse_reasons({"reasons": [{"code": "q", "lable": "x"}]}, "sink.toml")


# --- the CLI (SQLite) --------------------------------------------------------------------------


@pytest.fixture
def sink_dir(tmp_path: Path) -> Path:
    data = tmp_path / "sink"
    database = open_database(None, data)
    migrate(database)
    ingest = Ingest(database, data, clock=FakeClock())
    store_contact(ingest, C1, "cp-0001", "site-1", "2026-11-23T09:00:10.000Z")
    store_contact(ingest, C2, "cp-0002", "site-1", "2026-11-24T09:00:10.000Z")
    ingest.handle(topic("alert"), golden_bytes("alert.json"))
    database.close()
    return data


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["sink", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_annotate_and_report(sink_dir: Path, tmp_path: Path, capsys: Any) -> None:
    config = tmp_path / "sink.toml"
    config.write_text(
        '[[reasons]]\ncode = "queue"\nlabel = "Long queue"\n'
        '[[reasons]]\ncode = "rude"\nlabel = "Rude staff"\n'
    )
    data = str(sink_dir)
    ticks = ["--reason", "queue", "--reason", "rude", "--by", "olga", "--note", "loud"]
    code, out, _ = run(capsys, "annotate", "--data", data, "--config", str(config), C1, *ticks)
    assert code == 0
    assert out == f"cp-0001/{C1}: queue, rude (by olga)\n"
    run(capsys, "annotate", "--data", data, "--config", str(config), C2, "--reason", "queue")
    code, out, _ = run(
        capsys, "reasons", "--data", data, "--config", str(config), "--format", "json"
    )
    assert code == 0
    assert json.loads(out) == [
        {"site": "site-1", "reason": "queue", "label": "Long queue", "contacts": 2},
        {"site": "site-1", "reason": "rude", "label": "Rude staff", "contacts": 1},
    ]
    _, out, _ = run(capsys, "reasons", "--data", data, "--config", str(config), "--by", "day",
                    "--format", "csv", "--from", "2026-11-24")  # fmt: skip
    assert list(csv.DictReader(io.StringIO(out))) == [
        {"site": "site-1", "day": "2026-11-24", "reason": "queue", "label": "Long queue",
         "contacts": "1"},
    ]  # fmt: skip
    _, out, _ = run(capsys, "reasons", "--data", data, "--config", str(config))
    lines = out.splitlines()
    assert lines[0].split() == ["site", "reason", "label", "contacts"]
    assert lines[2].split() == ["site-1", "queue", "Long", "queue", "2"]
    _, out, _ = run(capsys, "reasons", "--data", data, "--to", "2026-01-01")
    assert out == "no annotated contacts in this period\n"


def test_cli_errors_exit_2_with_the_fix(sink_dir: Path, capsys: Any) -> None:
    code, _, err = run(capsys, "annotate", "--data", str(sink_dir), C1, "--reason", "nope")
    assert code == 2
    assert "unknown reason 'nope'; allowed: rude" in err
    code, _, err = run(capsys, "annotate", "--data", str(sink_dir), "0" * 32, "--reason", "rude")
    assert code == 2
    assert "no contact with id '000000" in err
    code, _, err = run(capsys, "reasons", "--data", str(sink_dir), "--from", "soon")
    assert code == 2
    assert "--from 'soon' is not an ISO date" in err


def test_cli_lists_alerts(sink_dir: Path, capsys: Any) -> None:
    code, out, _ = run(capsys, "alerts", "--data", str(sink_dir))
    assert code == 0
    assert out == (
        "2026-11-23T09:09:50.000Z  site-1/cp-0001  "
        "negative_burst: 4 x red within 15 min at site-1/cp-0001 (4 of 6, 67%)\n"
    )
    _, out, _ = run(capsys, "alerts", "--data", str(sink_dir), "--json", "--site", "site-2")
    assert out == ""


def test_report_reasons_is_the_same_count(sink_dir: Path, capsys: Any) -> None:
    data = str(sink_dir)
    run(capsys, "annotate", "--data", data, C1, "--reason", "rude", "--by", "olga")
    _, direct, _ = run(capsys, "reasons", "--data", data, "--by", "day", "--format", "json")
    code, via_report, _ = run(
        capsys, "report", "--reasons", "--data", data, "--by", "day", "--format", "json"
    )
    assert code == 0
    assert via_report == direct
    assert json.loads(direct)[0]["reason"] == "rude"
