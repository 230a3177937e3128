"""Secrets (the broker password) never appear in logs (DEBUG, every logger), in status
messages, in error output of the CLI, nor in a repr; files holding secrets are 0600."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_sink import Sink, SinkConfig
from edge.config import MqttSection
from edge.publish._link import resolve
from provisioning import identity
from provisioning.broker import LocalBroker
from provisioning.files import mode_of, write_secret
from provisioning.main import main
from tests.cloud_sink.helpers import wait_until
from tests.security.helpers import Client, InstalledBroker, broker_host_dir, remove_tree
from tests.waiting import STALL_S

DEVICE, SITE, SINK_USER = "cp-sec", "site-1", "contactpoint-sink"
SCENARIO = """
start = "2026-11-23T09:00:00Z"
duration = 40.0
[[customers]]
arrive = 5.0
leave = 20.0
[[presses]]
at = 12.0
button = "green"
"""


@dataclass
class Secured:
    broker: LocalBroker
    password: str  # the device's and the sink's (one value: a single needle to look for)
    good: Path  # a 0600 file holding it
    wrong: Path  # a file holding a wrong one, which must not leak either
    wrong_password: str


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    password = f"S3cr3t-{secrets.token_hex(8)}"
    wrong_password = f"S3cr3t-wrong-{secrets.token_hex(8)}"
    root = broker_host_dir()
    accounts = identity.Accounts(
        devices={DEVICE: SITE}, sinks=[SINK_USER], broker=identity.BrokerSettings(root=str(root))
    )
    entries = {name: identity.hash_password(password) for name in (DEVICE, SINK_USER)}
    identity.write_broker_files(root, accounts, entries)
    good = write_secret(tmp_path / "password", password + "\n")
    wrong = write_secret(tmp_path / "wrong-password", wrong_password + "\n")
    try:
        with InstalledBroker(root) as installed:
            yield Secured(installed.broker, password, good, wrong, wrong_password)
    finally:
        remove_tree(root)


def config_file(tmp_path: Path, url: str, password_file: Path) -> Path:
    path = tmp_path / f"device-{password_file.name}.toml"
    path.write_text(
        f'[device]\nid = "{DEVICE}"\nsite = "{SITE}"\n'
        f'[mqtt]\nbroker = "{url}"\nusername = "{DEVICE}"\npassword_file = "{password_file}"\n'
        "backoff_min_s = 0.05\nbackoff_max_s = 0.2\n"
    )
    return path


def assert_absent(needles: list[str], *haystacks: str) -> None:
    for needle in needles:
        for text in haystacks:
            assert needle not in text


def test_reprs_hide_the_password() -> None:
    config = SinkConfig(broker="mqtt://h:1", data_dir=Path("x"), password="S3cr3t-repr")
    assert "S3cr3t-repr" not in repr(config)
    assert "S3cr3t-repr" not in str(config)


def test_simulate_with_a_secured_broker_leaks_nothing(
    tmp_path: Path,
    secured: Secured,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    needles = [secured.password, secured.wrong_password]
    # the wrong password: refused, nothing delivered, exit 1, and the error says why
    bad = config_file(tmp_path, secured.broker.url, secured.wrong)
    argv = ["-v", "simulate", str(scenario), "--config", str(bad), "--broker", secured.broker.url]
    code = main([*argv, "--data", str(tmp_path / "d1"), "--drain-timeout", "1.5"])
    out = capsys.readouterr()
    assert code != 0
    assert "refused" in (out.err + caplog.text).lower()
    # the right one: delivered; the retained status carries nothing secret
    good = config_file(tmp_path, secured.broker.url, secured.good)
    argv[4] = str(good)
    assert main([*argv, "--data", str(tmp_path / "d2"), "--drain-timeout", "30"]) == 0
    out2 = capsys.readouterr()
    sink = Client(secured.broker.port, SINK_USER, secured.password)
    try:
        assert not sink.connect().failed
        sink.subscribe(f"contactpoint/v1/{SITE}/{DEVICE}/status")
        _, status = sink.received.get(timeout=STALL_S)
    finally:
        sink.close()
    assert b'"status"' in status
    assert_absent(
        needles, out.out, out.err, out2.out, out2.err, caplog.text, status.decode("utf-8")
    )


def test_the_publisher_link_never_shows_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = write_secret(tmp_path / "pw", "S3cr3t-link\n")
    link = resolve(MqttSection(broker="mqtt://127.0.0.1:1", username="u", password_file=str(path)))
    assert link.password == "S3cr3t-link"
    assert "S3cr3t-link" not in repr(link)
    assert "S3cr3t-link" not in str(link)


def test_the_sink_with_a_wrong_password_logs_no_secret(
    tmp_path: Path, secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = SinkConfig(
        broker=secured.broker.url,
        data_dir=tmp_path / "sink",
        username=SINK_USER,
        password=secured.wrong_password,
        backoff_min_s=0.05,
        backoff_max_s=0.1,
    )
    with Sink(config) as sink:
        wait_until(lambda: "refused" in caplog.text, "the refusal in the log")
        assert not sink.subscribed.is_set()
        logging.getLogger("test").debug("sink config: %r", config)
    assert_absent([secured.wrong_password], caplog.text)


def test_sink_cli_errors_never_echo_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["sink", "run", "--data", str(tmp_path / "s")]
    cases = [
        '[sink]\nbroker = "mqtt://h:1"\npassword = ["S3cr3t-list"]\n',  # wrong type
        '[sink]\nbroker = "mqtt://h:1"\npasword = "S3cr3t-typo"\n',  # misspelt key
        '[sink]\nbroker = "nonsense"\npassword = "S3cr3t-url"\n',  # bad URL
    ]
    for i, text in enumerate(cases):
        path = tmp_path / f"sink{i}.toml"
        path.write_text(text)
        assert main([*base, "--config", str(path)]) == 2
        out = capsys.readouterr()
        assert out.err.startswith("contactpoint sink: error:")
        assert "S3cr3t" not in out.out + out.err


def test_a_password_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pw"
    path.write_text("S3cr3t-open\n")
    path.chmod(0o644)
    resolve(MqttSection(broker="mqtt://127.0.0.1:1", username="u", password_file=str(path)))
    assert f"mqtt.password_file {path} can be read by other users" in caplog.text
    assert "S3cr3t-open" not in caplog.text


def test_secret_files_are_born_0600_whatever_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        path = write_secret(tmp_path / "s", "x")
        done = identity.provision_device(DEVICE, SITE, tmp_path / "dev")
    finally:
        os.umask(old)
    assert mode_of(path) == 0o600
    assert mode_of(done.password_file) == 0o600
    assert mode_of(done.broker_dir / identity.PASSWD) == 0o600
