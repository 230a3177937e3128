"""The `contactpoint` command: clear errors, non-zero exits, nothing written on bad input; the
contacts listing after retention and piped into a reader that stops early; --version."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from edge.clock import NS
from edge.records import ContactRecord
from edge.simulate import STORE_NAME
from edge.store import Store
from provisioning.main import main
from tests.cloud_sink.helpers import run_piped
from tests.wire_samples import CLIP, CONTACT

ROOT = Path(__file__).resolve().parents[2]
SHIFT = ROOT / "examples" / "shift.toml"

GOOD_SCENARIO = """
start = "2026-11-23T09:00:00Z"
duration = 120.0
[[customers]]
arrive = 10.0
leave = 40.0
[[presses]]
at = 30.0
button = "green"
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_config_example_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config", "example")
    assert code == 0
    path = tmp_path / "device.toml"
    path.write_text(out)
    code, out, _ = run(capsys, "config", "check", str(path))
    assert code == 0
    assert "ok" in out
    assert "cp-0001" in out


def test_config_check_reports_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "device.toml"
    path.write_text("[audio]\nsample_rat = 16000\n")
    code, _, err = run(capsys, "config", "check", str(path))
    assert code == 2
    assert "audio.sample_rat: unknown key" in err
    assert "Did you mean 'sample_rate'?" in err


@pytest.mark.parametrize(
    ("scenario", "needle"),
    [
        ("duration = 10\n", "start"),  # missing key
        ('start = "2026-11-23T09:00:00"\nduration = 10\n', "timezone"),
        ('start = "2026-11-23T09:00:00Z"\nduration = -1\n', "duration (got -1)"),
        (
            'start = "2026-11-23T09:00:00Z"\nduration = 10\n[[presses]]\nat = 5\nbutton = "blue"\n',
            "presses[0].button (got 'blue')",
        ),
        (
            'start = "2026-11-23T09:00:00Z"\nduration = 10\n[[customers]]\narrive = 5\nleave = 2\n',
            "leave (2.0) must be after arrive (5.0)",
        ),
        (
            'start = "2026-11-23T09:00:00Z"\nduration = 10\n[[presses]]\nat = 50\nbutton = "red"\n',
            "after the end of the scenario",
        ),
        ('start = "2026-11-23T09:00:00Z"\nduration = 10\n[[custommers]]\n', "customers"),
        ("start = [\n", "not valid TOML"),
        (
            'start = "2026-11-23T09:00:00Z"\nduration = 10\n[audio]\nsource = "nope.wav"\n',
            "audio.source (got 'nope.wav')",
        ),
    ],
)
def test_malformed_scenario_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scenario: str, needle: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(scenario)
    data = tmp_path / "data"
    code, _, err = run(capsys, "simulate", str(path), "--data", str(data))
    assert code == 2
    assert str(path) in err
    assert needle in err
    assert not data.exists()


def test_malformed_config_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "device.toml"
    config.write_text("[contacts]\nmodes = ['presence', 'presence']\n")
    data = tmp_path / "data"
    code, _, err = run(capsys, "simulate", str(SHIFT), "--data", str(data), "--config", str(config))
    assert code == 2
    assert "modes lists a mode twice" in err
    assert not data.exists()


def test_simulate_then_list_contacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(GOOD_SCENARIO)
    data = tmp_path / "data"
    code, out, _ = run(capsys, "simulate", str(scenario), "--data", str(data))
    assert code == 0
    assert "1 contacts" in out
    code, out, _ = run(capsys, "contacts", "--data", str(data), "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1
    assert rows[0]["mode"] == "presence"
    assert rows[0]["tags"] == ["positive", "unproductive"]
    assert rows[0]["clip"]["codec"] == "wav"
    assert (data / rows[0]["clip"]["path"]).is_file()
    assert {e["kind"] for e in rows[0]["events"]} == {"arrival", "green", "departure"}
    # a second run into the same directory is refused unless --replace
    code, _, err = run(capsys, "simulate", str(scenario), "--data", str(data))
    assert code == 2
    assert "--replace" in err
    code, _, _ = run(capsys, "simulate", str(scenario), "--data", str(data), "--replace")
    assert code == 0
    code, out, _ = run(capsys, "contacts", "--data", str(data), "--json")
    assert len(out.splitlines()) == 1


def test_contacts_without_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "contacts", "--data", str(tmp_path))
    assert code == 2
    assert "no store" in err


def test_version_comes_from_the_package_metadata() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "provisioning.main", "--version"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"contactpoint {version('contactpoint')}"


def store_with(data: Path, contacts: list[ContactRecord]) -> None:
    with Store.open(data / STORE_NAME) as store:
        for rec in contacts:
            assert store.save_contact(rec, [])


def plain(n: int, **changes: Any) -> ContactRecord:
    """The golden contact as contact number ``n``, without events or clip."""
    return replace(CONTACT, id=f"{n:032x}", events=(), clip=None, **changes)


def test_contacts_say_when_retention_deleted_the_audio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing used to print the deleted file's path as if it were there."""
    data = tmp_path / "device"
    records = []
    for n, name in enumerate(("old", "young", "budget")):
        clip = replace(CLIP, contact_id=f"{n + 1:032x}", path=f"clips/{name}.wav")
        (data / "clips").mkdir(parents=True, exist_ok=True)
        (data / clip.path).write_bytes(b"RIFF")
        records.append(replace(CONTACT, id=clip.contact_id, events=(), clip=clip))
    store_with(data, records)
    old, young, budget = records
    (data / "clips" / "budget.wav").unlink()  # the disk budget deleted it, not retention
    when = 1_798_113_600 * NS  # 2026-12-24T12:00:00Z
    with Store.open(data / STORE_NAME) as store:
        (data / "clips" / "old.wav").unlink()
        assert store.mark_audio_deleted([old.id], when) == 1  # as edge.retention does
    code, out, _ = run(capsys, "contacts", "--data", str(data), "--json")
    assert code == 0
    rows = {row["id"]: row for row in map(json.loads, out.splitlines())}
    assert rows[old.id]["audio_deleted_at"] == "2026-12-24T12:00:00.000Z"
    assert rows[old.id]["clip"]["path"] == "clips/old.wav"  # the metadata stays
    assert rows[young.id]["audio_deleted_at"] is None
    assert rows[budget.id]["audio_deleted_at"] is None
    monkeypatch.setenv("COLUMNS", "300")  # one line per contact
    code, out, _ = run(capsys, "contacts", "--data", str(data))
    assert code == 0
    lines = [line for line in out.splitlines() if "2026-11-23" in line]
    assert len(lines) == 3
    assert "audio deleted by retention on 2026-12-24" in lines[0]
    assert "old.wav" not in lines[0]
    assert "clips/young.wav" in lines[1]
    assert "gone" not in lines[1]
    assert "clips/budget.wav (file gone)" in lines[2]


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose listing overflows a pipe's buffer (64 KiB) many times over."""
    data = tmp_path_factory.mktemp("busy")
    store_with(data, [plain(n, start_wall_ns=CONTACT.start_wall_ns + n * NS) for n in range(600)])
    return data


@pytest.mark.parametrize(
    ("flags", "reader"), [([], "head"), (["--json"], "head"), ([], "gone"), (["--json"], "gone")]
)
def test_contacts_piped_into_a_reader_that_stops_early(
    busy: Path, flags: list[str], reader: str
) -> None:
    """``contactpoint contacts | head -1``: a traceback (--json) or rich's exit 1 before."""
    code, err = run_piped(["contacts", "--data", str(busy), *flags], reader, ROOT)
    assert (code, err) == (0, "")
