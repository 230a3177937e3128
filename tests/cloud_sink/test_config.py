"""The sink's config file: one closed schema for ``[sink]``, ``[report]``, ``[[alerts.rules]]``
and ``[[reasons]]``, on the base the device's config uses (contract/config.py)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from cloud_sink.cli import main
from cloud_sink.config import (
    ReportSection,
    SinkFile,
    SinkSection,
    example_sink_config,
    load_sink_file,
)
from cloud_sink.consumer import SinkConfig
from cloud_sink.manage import reasons_from, site_alerts_from
from cloud_sink.metrics import Parameters
from cloud_sink.reasons import DEFAULT_REASONS, Reason
from contract.config import ConfigError, description
from contract.config import fields as config_fields


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sink.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_sink_table_is_the_workers_settings_with_the_same_defaults() -> None:
    fields = {f.name: f for f in dataclasses.fields(SinkConfig) if f.name != "data_dir"}
    assert list(config_fields(SinkSection)) == list(fields)
    section = SinkSection()
    for name, field in fields.items():
        default = None if name == "broker" else field.default  # broker: flag or file
        assert getattr(section, name) == default, name
    report, params = ReportSection(), Parameters()
    assert (report.correction_factor, report.force_majeure_threshold) == (
        params.correction_factor,
        params.force_majeure_threshold,
    )
    assert SinkFile().checklist() == list(DEFAULT_REASONS)


def test_the_example_is_complete_and_passes_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sink", "config", "example"]) == 0
    text = capsys.readouterr().out
    assert text == example_sink_config()
    assert SinkFile.from_dict(tomllib.loads(text)) == SinkFile()
    for table in (SinkSection, ReportSection):
        for info in config_fields(table).values():
            assert f"# {description(info)}" in text
    path = write(tmp_path, text)
    assert main(["sink", "config", "check", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok (")


def test_check_counts_both_kinds_of_alert_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        '[[alerts.compliance]]\nname = "greeting_low"\nstandard = "greeting"\nbelow = 0.8\n'
        "last = 20\n"
        '[[alerts.compliance]]\nname = "farewell_low"\nstandard = "farewell"\nbelow = 0.5\n'
        "last = 10\n",
    )
    assert main(["sink", "config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "; 0 site alert rule(s); 2 compliance alert rule(s); " in out


def test_check_reports_each_problem_with_file_key_value_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        '[sink]\nkeepalive_s = 1\nprotocol = 5\n[report]\ntimezone = "Mars/Olympus"\n'
        '[[reasons]]\ncode = "Long Wait"\n[[reason]]\ncode = "x"\n',
    )
    # msgspec stops at the first problem: each is reported in turn as the file is fixed
    for problem, wrong, right in [
        ("sink.keepalive_s (got 1): Expected `int` >= 5; allowed: >= 5", "= 1\n", "= 5\n"),
        (
            "sink.protocol (got 5): Expected `str`, got `int`; allowed: '5' | '3.1.1'",
            "protocol = 5",
            "protocol = '5'",
        ),
        ("report.timezone (got 'Mars/Olympus'): not an IANA time zone", "Mars/Olympus", "UTC"),
        ("reasons[0].code (got 'Long Wait'): Expected `str` matching regex", "Long Wait", "wait"),
        ("reason: unknown key. Did you mean 'reasons'?", "[[reason]]", "[[reasons]]"),
    ]:
        assert main(["sink", "config", "check", str(path)]) == 2
        assert f"{path}: {problem}" in capsys.readouterr().err
        path.write_text(path.read_text().replace(wrong, right, 1))
    assert main(["sink", "config", "check", str(path)]) == 0


def test_reasons_and_site_alerts_come_from_the_same_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[sink]\nbroker = "mqtt://127.0.0.1:1883"\n'
        '[[reasons]]\ncode = "queue"\nlabel = "Queue"\n[[reasons]]\ncode = "dirty"\n'
        '[[alerts.rules]]\nname = "burst"\ncount = "red"\nat_least = 3\nwithin_s = 600\n',
    )
    assert reasons_from(path) == [Reason("queue", "Queue"), Reason("dirty", "dirty")]
    alerts = site_alerts_from(path)
    assert alerts is not None
    assert [r.name for r in alerts.rules] == ["burst"]
    assert reasons_from(None) == list(DEFAULT_REASONS)
    assert site_alerts_from(None) is None
    write(tmp_path, '[[alerts.rules]]\nname = "burst"\ncount = "red"\nat_least = 3\nwindw_s = 6\n')
    with pytest.raises(ConfigError, match=r"alerts\.rules\[0\]\.windw_s: unknown key\. Did you"):
        site_alerts_from(path)
    write(tmp_path, '[[reasons]]\ncode = "queue"\n[[reasons]]\ncode = "queue"\n')
    with pytest.raises(ConfigError, match=r"reasons\[1\]: code 'queue' appears twice"):
        reasons_from(path)
    write(tmp_path, "reasons = []\n")
    with pytest.raises(ConfigError, match=r"reasons .*length >= 1; allowed: at least 1 item"):
        reasons_from(path)


def test_values_must_have_their_toml_type(tmp_path: Path) -> None:
    for line in ["tls = 1", 'keepalive_s = "30"', "resend_after_s = true", "keepalive_s = 30.0"]:
        with pytest.raises(ConfigError, match=line.split(" ", maxsplit=1)[0]):
            load_sink_file(write(tmp_path, f"[sink]\n{line}\n"))
    # an integer is a number of seconds too
    assert load_sink_file(write(tmp_path, "[sink]\nresend_after_s = 5\n")).sink.resend_after_s == 5
