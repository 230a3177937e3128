"""``contactpoint sink ...``: the listing and its filters, the configuration, a real ``sink run``
process, and the reading commands as real processes: no database, a reader that stops early."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud_sink.cli import SinkCliError, add_commands, config_from_args, main, read_config_file
from cloud_sink.db import open_database
from cloud_sink.ingest import Ingest
from cloud_sink.migrations import migrate
from cloud_sink.models import tables
from cloud_sink.retention import enforce as enforce_retention
from provisioning.broker import LocalBroker
from tests.cloud_sink.helpers import (
    DEVICE,
    NS,
    SITE,
    Clip,
    TestClient,
    contact_message,
    encode,
    golden,
    golden_bytes,
    new_id,
    run_piped,
    topic,
    wait_until,
)
from tests.cloud_sink.test_report import FIXED, store_fixed
from tests.waiting import STALL_S

ROOT = Path(__file__).resolve().parents[2]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    return parser.parse_args(argv)


def test_contacts_json_is_the_golden_contact_plus_origin(
    db_url: str | None, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = open_database(db_url, data_dir)
    migrate(db)
    Ingest(db, data_dir).handle(topic("contact"), golden_bytes("contact.json"))
    db.close()
    argv = ["sink", "contacts", "--data", str(data_dir), "--json"]
    assert main(argv + (["--db", db_url] if db_url else [])) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = {
        **golden("contact.json")["contact"], "device": DEVICE, "site": SITE, "audio": None,
        "audio_deleted_at": None,
    }  # fmt: skip
    assert [json.loads(line) for line in lines] == [expected]


def test_contacts_listing_shows_the_video_link(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = open_database(None, data_dir)
    migrate(db)
    Ingest(db, data_dir).handle(topic("contact"), golden_bytes("contact.json"))
    db.close()
    assert main(["sink", "contacts", "--data", str(data_dir)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    contact = golden("contact.json")["contact"]
    assert line.endswith(f"video: {contact['video_url']}")
    assert "negative" in line
    assert line.split()[0] == contact["id"]  # the id first: what annotate and alerts refer to


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "sink.toml"
    conf.write_text(
        '[sink]\nbroker = "mqtt://file:1883"\ngroup = "fromfile"\nresend_after_s = 5.0\n'
    )
    args = _parse(
        ["sink", "run", "--data", str(tmp_path), "--config", str(conf), "--group", "flag",
         "--protocol", "3.1.1"]
    )  # fmt: skip
    config = config_from_args(args)
    assert (config.broker, config.group, config.protocol) == ("mqtt://file:1883", "flag", "3.1.1")
    assert config.resend_after_s == 5.0
    assert config.effective_client_id == "contactpoint-sink-flag"


def test_a_group_with_mqtt_3_1_1_is_refused_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shared subscription needs MQTT 5: with 3.1.1 every worker of the "group" would take
    and ingest every message. Refused before anything is opened."""
    data = tmp_path / "sink"
    args = ["sink", "run", "--broker", "mqtt://127.0.0.1:1", "--data", str(data)]
    assert main([*args, "--group", "g", "--protocol", "3.1.1"]) == 2
    err = capsys.readouterr().err
    assert "group 'g' with protocol 3.1.1: a shared subscription needs MQTT 5" in err
    assert "--protocol 5" in err
    assert not data.exists()  # no database made for a worker that cannot run


def test_unknown_config_key_is_refused_with_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "sink.toml"
    conf.write_text('[sink]\nbroker = "mqtt://x:1"\nresend_afer_s = 5\n')
    code = main(["sink", "run", "--data", str(tmp_path), "--config", str(conf)])
    assert code == 2
    err = capsys.readouterr().err  # worded as the device's config errors (contract/config.py)
    assert f"{conf}: sink.resend_afer_s: unknown key. Did you mean 'resend_after_s'?" in err


@pytest.mark.parametrize("line", ["protocol = 5", 'resend_after_s = "5"', "tls = 1"])
def test_config_values_of_the_wrong_type_are_refused(tmp_path: Path, line: str) -> None:
    conf = tmp_path / "sink.toml"
    conf.write_text(f'[sink]\nbroker = "mqtt://x:1"\n{line}\n')
    with pytest.raises(SinkCliError, match=line.split(" ", maxsplit=1)[0]):
        read_config_file(conf)


def test_sink_run_ingests_and_stops_on_sigterm(broker: LocalBroker, data_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloud_sink.cli", "sink", "run", "--broker", broker.url,
         "--data", str(data_dir)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = TestClient(broker.port)
    try:
        client.publish(topic("status"), golden_bytes("status.json"), retain=True)
        db_file = data_dir / "sink.db"
        wait_until(db_file.exists, "the sink's database")
        db = open_database(None, data_dir)
        try:
            migrate(db)  # concurrently with the sink's own migration: applied once either way
            reader = Ingest(db, data_dir)
            wait_until(lambda: len(reader.devices()) == 1, "the retained status")
        finally:
            db.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=STALL_S)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert json.loads(err.strip().splitlines()[-1])["stored"] == 1


# --- sink contacts: filters, strict JSON, retention ----------------------------------------------


def listed(capsys: pytest.CaptureFixture[str], data: Path, *flags: str) -> list[dict[str, Any]]:
    assert main(["sink", "contacts", "--data", str(data), "--json", *flags]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_contacts_filters(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = open_database(None, data_dir)
    try:
        migrate(db)
        store_fixed(Ingest(db, data_dir))
    finally:
        db.close()

    def starts(*flags: str) -> list[str]:
        return [c["start"][:16] for c in listed(capsys, data_dir, *flags)]

    everything = starts()
    assert len(everything) == len(FIXED)
    assert starts("--tag", "positive") == ["2026-11-23T09:05", "2026-11-23T10:10"]
    assert starts("--tag", "not_positive", "--tag", "productive") == [
        "2026-11-23T09:40", "2026-11-24T08:30",
    ]  # fmt: skip
    assert starts("--site", "s2") == starts("--device", "d2") == [
        "2026-11-24T08:00", "2026-11-24T08:30",
    ]  # fmt: skip
    assert starts("--staff", "bob") == ["2026-11-23T10:10", "2026-11-23T10:30"]
    assert starts("--staff", "anna", "--tag", "productive") == [
        "2026-11-23T09:05", "2026-11-23T09:40",
    ]  # fmt: skip
    # --from inclusive, --to exclusive; a bare date is midnight in --tz (default UTC)
    assert starts("--from", "2026-11-23T09:20:00Z", "--to", "2026-11-23T10:30:00Z") == [
        "2026-11-23T09:20", "2026-11-23T09:40", "2026-11-23T10:10",
    ]  # fmt: skip
    assert starts("--from", "2026-11-24") == ["2026-11-24T08:00", "2026-11-24T08:30"]
    assert starts("--to", "2026-11-24", "--tz", "Asia/Tokyo") == everything[:5]  # 15:00Z
    assert starts("--site", "nowhere") == []
    # the text listing: the contact id first, the same contacts
    assert main(["sink", "contacts", "--data", str(data_dir), "--staff", "bob"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ids = [c["id"] for c in listed(capsys, data_dir, "--staff", "bob")]
    assert [line.split()[0] for line in lines] == ids
    assert all(" bob " in x for x in lines)
    for flags, needle in [
        (["--from", "yesterday"], "--from 'yesterday' is not an ISO 8601 date"),
        (["--from", "2026-11-24", "--to", "2026-11-23"], "must be after --from"),
        (["--tz", "Mars/Olympus"], "'Mars/Olympus' is not an IANA time zone"),
    ]:
        assert main(["sink", "contacts", "--data", str(data_dir), *flags]) == 2
        assert needle in capsys.readouterr().err


def test_contacts_json_is_strict_even_for_a_non_finite_number(
    db_url: str | None, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An older sink stored ``"duration_s": 1e999`` (inf); the listing printed ``Infinity``."""
    db = open_database(db_url, data_dir)
    try:
        migrate(db)
        Ingest(db, data_dir).handle(topic("contact"), golden_bytes("contact.json"))
        t = tables(db)
        t.contacts.update({t.contacts.duration_s: float("inf")}).execute()
    finally:
        db.close()
    db_flags = ["--db", db_url] if db_url else []
    assert main(["sink", "contacts", "--data", str(data_dir), "--json", *db_flags]) == 0
    (line,) = capsys.readouterr().out.splitlines()

    def refuse(constant: str) -> Any:
        raise AssertionError(f"not strict JSON: {constant}")

    contact = json.loads(line, parse_constant=refuse)
    assert contact["duration_s"] is None
    assert contact["id"] == golden("contact.json")["contact"]["id"]
    assert main(["sink", "contacts", "--data", str(data_dir), *db_flags]) == 0
    assert "inf s" in capsys.readouterr().out  # the text listing shows it as it is


def test_contacts_say_when_retention_deleted_the_audio(
    db_url: str | None, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once retention deleted a clip's audio, the listing said "(clip incomplete)"."""
    db = open_database(db_url, data_dir)
    try:
        migrate(db)
        ingest = Ingest(db, data_dir)
        kept, gone, partial = (Clip(bytes([n]) * 3000, 2048) for n in range(3))
        for clip in (kept, gone, partial):
            message = contact_message(msg_id=new_id(), clip=clip)
            if clip is gone:  # an old contact: the only one retention will find due
                message["contact"]["start"] = "2020-01-01T09:00:00.000Z"
                message["contact"]["end"] = "2020-01-01T09:01:00.000Z"
            ingest.handle(topic("contact"), encode(message))
        for clip in (kept, gone):
            for seq in range(clip.total):
                result = ingest.handle(topic("clip"), clip.frame(seq))
            assert result.ready is not None
            assert ingest.assemble(result.ready)
        ingest.handle(topic("clip"), partial.frame(0))  # one chunk of two: incomplete
        when = datetime(2026, 12, 24, 12, tzinfo=UTC)
        done = enforce_retention(db, data_dir, 365, int(when.timestamp()) * NS)
        assert (done.deleted, done.dropped_incomplete) == (1, 0)
    finally:
        db.close()
    db_flags = ["--db", db_url] if db_url else []
    rows = {c["id"]: c for c in listed(capsys, data_dir, *db_flags)}
    assert rows[gone.id]["audio"] is None
    assert rows[gone.id]["audio_deleted_at"] == "2026-12-24T12:00:00.000Z"
    assert rows[gone.id]["clip"] is not None  # the clip's metadata stays
    assert rows[kept.id]["audio_deleted_at"] is None
    assert Path(rows[kept.id]["audio"]).is_file()
    assert rows[partial.id]["audio_deleted_at"] is None
    assert rows[partial.id]["audio"] is None
    assert main(["sink", "contacts", "--data", str(data_dir), *db_flags]) == 0
    text = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "  audio deleted by retention on 2026-12-24  " in text[gone.id]
    assert f"  {rows[kept.id]['audio']}  " in text[kept.id]
    assert "  (clip incomplete)  " in text[partial.id]


# --- the reading commands as processes ---------------------------------------------------------


def contactpoint(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioning.main", *argv],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=120, **kw,
    )  # fmt: skip


READERS = [
    ["report"],
    ["report", "--reasons"],
    ["contacts"],
    ["contacts", "--json"],
    ["alerts"],
    ["reasons"],
    ["annotate", "c0ffee00", "--reason", "rude"],
    ["retention", "--days", "30"],
]


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_reading_commands_refuse_a_directory_without_a_sink_database(
    tmp_path: Path, command: list[str]
) -> None:
    """They used to create an empty database there and report zeros."""
    empty = tmp_path / "typo"
    empty.mkdir()
    done = contactpoint("sink", *command, "--data", str(empty))
    assert done.returncode == 2, done.stderr
    assert f"no sink database at {empty / 'sink.db'}" in done.stderr
    assert "sink run" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(empty.iterdir()) == []  # nothing created
    missing = tmp_path / "nowhere"
    assert contactpoint("sink", *command, "--data", str(missing)).returncode == 2
    assert not missing.exists()


def test_a_postgresql_database_without_the_sink_schema_is_refused(
    postgres_url: str, tmp_path: Path
) -> None:
    done = contactpoint("sink", "report", "--db", postgres_url, "--data", str(tmp_path / "x"))
    assert done.returncode == 2, done.stderr
    assert "holds no sink database" in done.stderr
    assert "Traceback" not in done.stderr
    db = open_database(postgres_url, tmp_path / "x")
    try:
        assert db.get_tables() == []  # not migrated behind the user's back
    finally:
        db.close()


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sink holding enough contacts that any listing overflows a pipe's buffer (64 KiB)."""
    data = tmp_path_factory.mktemp("busy") / "sink"
    db = open_database(None, data)
    try:
        migrate(db)
        ingest = Ingest(db, data)
        for hour in range(800):
            message = contact_message(new_id(), new_id())
            start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=hour)
            message["contact"]["start"] = message["contact"]["end"] = start.isoformat()
            ingest.handle(topic("contact"), encode(message))
    finally:
        db.close()
    return data


@pytest.mark.parametrize(
    ("command", "reader"),
    [
        (["contacts"], "head"),
        (["contacts", "--json"], "head"),
        (["contacts"], "gone"),
        (["contacts", "--json"], "gone"),
        (["report", "--by", "hour", "--format", "json"], "gone"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_a_reader_that_stops_early_is_a_normal_end(
    busy: Path, command: list[str], reader: str
) -> None:
    """``sink contacts | head -1``: a traceback (BrokenPipeError) and exit 2 before."""
    code, err = run_piped(["sink", *command, "--data", str(busy)], reader, ROOT)
    assert (code, err) == (0, "")


def test_a_config_file_with_a_group_and_mqtt_3_1_1_fails_its_check(tmp_path: Path) -> None:
    conf = tmp_path / "sink.toml"
    conf.write_text('[sink]\nbroker = "mqtt://x:1"\ngroup = "g"\nprotocol = "3.1.1"\n')
    done = contactpoint("sink", "config", "check", str(conf))
    assert done.returncode == 2, done.stdout
    assert (
        "sink.group (got 'g'): with protocol 3.1.1: a shared subscription needs MQTT 5; "
        'set protocol = "5" or remove group (one worker)\n' in done.stderr
    )
