"""``contactpoint sink ...``: the listing, the configuration, and a real ``sink run`` process."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_sink.cli import SinkCliError, add_commands, config_from_args, main, read_config_file
from cloud_sink.db import open_database
from cloud_sink.ingest import Ingest
from cloud_sink.migrations import migrate
from provisioning.broker import LocalBroker
from tests.cloud_sink.helpers import (
    DEVICE,
    SITE,
    TestClient,
    golden,
    golden_bytes,
    topic,
    wait_until,
)
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
    expected = {**golden("contact.json")["contact"], "device": DEVICE, "site": SITE, "audio": None}
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
    video = golden("contact.json")["contact"]["video_url"]
    assert line.endswith(f"video: {video}") and "negative" in line


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
    assert config.topic_filter == "contactpoint/v1/+/+/+"  # MQTT 3.1.1: no shared subscription


def test_unknown_config_key_is_refused_with_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "sink.toml"
    conf.write_text('[sink]\nbroker = "mqtt://x:1"\nresend_afer_s = 5\n')
    code = main(["sink", "run", "--data", str(tmp_path), "--config", str(conf)])
    assert code == 2
    assert "did you mean 'resend_after_s'" in capsys.readouterr().err


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
