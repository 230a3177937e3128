"""Updates without bricking: real wheels installed by the real pip into real venvs, started
through the ``current`` link by a supervisor that plays systemd's part of the notify protocol
(edge/update, tests/edge/update_support.py), and signed requests over a real mosquitto."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sink import wire as sink_wire
from contract import wire
from edge.config import Config
from edge.update import manifest as signed
from edge.update.listen import Listener
from edge.update.releases import CURRENT, MARKER, STATE, Releases, UpdateError, Updater
from provisioning.broker import LocalBroker
from provisioning.main import main
from provisioning.release import init_signing, publish_update, sign_update
from tests.edge.update_support import (
    ROOT,
    NotifySupervisor,
    dev_site_packages,
    project_wheel,
    settings,
    tiny_wheel,
)
from tests.waiting import wait_for

GOOD_OLD, CRASHING, GOOD_A, GOOD_B, HANGING = "0.0.1", "0.0.2", "0.0.3", "0.0.4", "0.0.5"
MODES = {GOOD_OLD: "good", CRASHING: "crash", GOOD_A: "good", GOOD_B: "good", HANGING: "hang"}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One wheelhouse directory per version: tiny releases and the project's own wheel."""
    base = tmp_path_factory.mktemp("wheelhouses")
    houses: dict[str, Path] = {}
    for version, mode in MODES.items():
        houses[version] = base / version
        tiny_wheel(houses[version], version, mode=mode)
    houses["project"] = base / "project"
    project_wheel(houses["project"])
    return houses


def _project_version(house: Path) -> str:
    (wheel,) = house.glob("contactpoint-*.whl")
    return wheel.name.split("-")[1]


def _current(root: Path) -> str:
    return Path(os.readlink(root / CURRENT)).name


def _complete(root: Path, version: str) -> bool:
    return (root / "releases" / version / MARKER).is_file()


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[NotifySupervisor]:
    sup = NotifySupervisor(tmp_path / "opt", [])
    yield sup
    sup.close()


def test_a_release_that_crashes_at_start_is_rolled_back(
    tmp_path: Path, wheels: dict[str, Path], supervisor: NotifySupervisor
) -> None:
    root = tmp_path / "opt"
    updater = Updater(settings(root, attempts=3), supervisor)
    first = updater.update(GOOD_OLD, wheels[GOOD_OLD])
    assert (first.result, first.previous) == ("installed", None)
    assert _current(root) == GOOD_OLD

    outcome = updater.update(CRASHING, wheels[CRASHING])

    assert outcome.result == "rolled_back"
    assert outcome.previous == GOOD_OLD
    assert "exited with status 1 before READY=1" in outcome.detail
    assert _current(root) == GOOD_OLD
    # three real starts of the crashing release, then the old one again, which said READY=1
    assert supervisor.starts == [
        (GOOD_OLD, None),
        (CRASHING, "exited with status 1 before READY=1"),
        (CRASHING, "exited with status 1 before READY=1"),
        (CRASHING, "exited with status 1 before READY=1"),
        (GOOD_OLD, None),
    ]
    assert supervisor.proc is not None
    assert supervisor.proc.poll() is None  # 0.0.1 runs
    assert b"tiny 0.0.2: cannot start" in supervisor.log.read_bytes()
    state = json.loads((root / STATE).read_text())
    assert (state["step"], state["version"], state["previous"]) == (
        "rolled_back", CRASHING, GOOD_OLD
    )  # fmt: skip


def test_a_release_that_never_says_ready_is_rolled_back_after_the_configured_time(
    tmp_path: Path, wheels: dict[str, Path], supervisor: NotifySupervisor
) -> None:
    root = tmp_path / "opt"
    Updater(settings(root), supervisor).update(GOOD_OLD, wheels[GOOD_OLD])

    done = Updater(settings(root, attempts=2, ready_s=1.0), supervisor).update(
        HANGING, wheels[HANGING]
    )

    assert done.result == "rolled_back", done
    assert "no READY=1 within 1 s" in done.detail
    assert _current(root) == GOOD_OLD
    assert supervisor.starts == [
        (GOOD_OLD, None),
        (HANGING, "no READY=1 within 1 s"),
        (HANGING, "no READY=1 within 1 s"),
        (GOOD_OLD, None),
    ]


def _edge_args(tmp_path: Path, broker: LocalBroker) -> list[str]:
    config = tmp_path / "device.toml"
    config.write_text(f"[mqtt]\nbroker = '{broker.url}'\n[receipts]\nport = 0\n")
    scenario = tmp_path / "s.toml"
    scenario.write_text('start = "2026-11-23T09:00:00Z"\nduration = 600.0\n')
    data = tmp_path / "data"
    return [
        "edge",
        "run",
        "--config",
        str(config),
        "--scenario",
        str(scenario),
        "--data",
        str(data),
    ]


class Watcher:
    """A plain MQTT connection reading a device's events (what the sink would ingest)."""

    def __init__(self, broker: LocalBroker, site: str, device: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect("127.0.0.1", broker.port, keepalive=15)
        self.client.loop_start()
        self.client.subscribe(wire.topic(site, device, wire.EVENT), qos=1)
        wait_for(subscribed.is_set, "SUBACK")

    def _message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.raw.append((msg.topic, bytes(msg.payload)))
        self.events.append(json.loads(msg.payload))

    def updates(self) -> list[dict[str, Any]]:
        return [e["event"]["data"] for e in self.events if e["event"]["kind"] == "update"]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def fleet_key(tmp_path: Path) -> tuple[Path, bytes]:
    private, public = init_signing(tmp_path / "keys")
    return private, signed.read_key(public, "public")


def _device(broker: LocalBroker) -> Config:
    return Config.from_dict(
        {"device": {"id": "dev-a", "site": "site-1"}, "mqtt": {"broker": broker.url}}
    )


def _files_under(root: Path) -> int:
    """How many files the install root holds: moves while pip installs a release."""
    return sum(len(files) for _, _, files in os.walk(root))


def test_a_good_update_requested_over_mqtt_runs_the_new_release(
    tmp_path: Path,
    wheels: dict[str, Path],
    broker: LocalBroker,
    fleet_key: tuple[Path, bytes],
) -> None:
    root = tmp_path / "opt"
    supervisor = NotifySupervisor(root, _edge_args(tmp_path, broker))
    supervisor.env["PYTHONPATH"] = dev_site_packages()  # the daemon's dependencies
    watcher = Watcher(broker, "site-1", "dev-a")
    updater = Updater(settings(root), supervisor)
    stop = threading.Event()
    result: list[Any] = []
    try:
        # the card's first install: a tiny release (it says READY=1 and nothing else)
        assert updater.update(GOOD_OLD, wheels[GOOD_OLD]).result == "installed"
        listener = Listener(_device(broker), updater, fleet_key[1])
        thread = threading.Thread(target=lambda: result.append(listener.run(stop)), daemon=True)
        thread.start()
        wait_for(listener.subscribed.is_set, "the listener's SUBACK")
        project = _project_version(wheels["project"])
        payload = sign_update(fleet_key[0], wheels["project"], source=str(wheels["project"]))
        publish_update(broker.url, "site-1", "dev-a", payload, user="", password="")
        wait_for(
            lambda: result,
            "the update",
            progress=lambda: (_files_under(root), len(supervisor.messages)),  # pip, then starts
            poll_s=0.5,
        )

        assert result[0].result == "installed"
        assert _current(root) == project
        assert _complete(root, project)
        # the real daemon of the new release said READY=1 (its status line is the daemon's)
        assert supervisor.starts[-1] == (project, None)
        assert any(m.startswith("READY=1\nSTATUS=0 contacts today") for m in supervisor.messages)
        wait_for(watcher.updates, "the update event")
        assert watcher.updates() == [
            {"result": "installed", "version": project, "previous": GOOD_OLD, "detail": ""}
        ]
        assert json.loads((root / STATE).read_text())["step"] == "done"
        assert Releases(root).installed() == [GOOD_OLD, project]  # the previous one is kept
    finally:
        stop.set()
        supervisor.close()
        watcher.close()


def test_unsigned_wrongly_signed_altered_or_expired_requests_are_refused_and_reported(
    tmp_path: Path,
    wheels: dict[str, Path],
    broker: LocalBroker,
    fleet_key: tuple[Path, bytes],
    supervisor: NotifySupervisor,
) -> None:
    root = tmp_path / "opt"
    house = wheels[GOOD_A]
    other, _ = init_signing(tmp_path / "someone-else")
    good = sign_update(fleet_key[0], house, source=str(house))
    outer = json.loads(good)
    unsigned = json.dumps({"v": 1, "manifest": outer["manifest"]}).encode()
    body = json.loads(base64.b64decode(outer["manifest"]))
    body["source"] = "https://evil.example/wheels"
    altered = json.dumps(
        {**outer, "manifest": base64.b64encode(json.dumps(body).encode()).decode()}
    ).encode()
    expired = sign_update(fleet_key[0], house, source=str(house), now=time.time() - 30 * 86400)
    requests = {
        "the manifest is not signed": unsigned,
        "the signature is not the fleet's": sign_update(other, house, source=str(house)),
        "the signature is not the fleet's (or the manifest was altered)": altered,
        "the manifest expired": expired,
    }
    watcher = Watcher(broker, "site-1", "dev-a")
    listener = Listener(_device(broker), Updater(settings(root), supervisor), fleet_key[1])
    stop = threading.Event()
    thread = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(listener.subscribed.is_set, "the listener's SUBACK")
        for payload in requests.values():
            publish_update(broker.url, "site-1", "dev-a", payload, user="", password="")
        wait_for(lambda: len(watcher.updates()) == len(requests), "four refusals reported")
    finally:
        stop.set()
        thread.join(30)
        watcher.close()
    reports = watcher.updates()
    assert [r["result"] for r in reports] == ["refused"] * len(requests)
    for reason, report in zip(requests, reports, strict=True):
        assert report["detail"].startswith(reason), report
    # the sink takes them as events of kind update (its own strict parser)
    assert len(watcher.raw) == len(requests)
    for topic, payload in watcher.raw:
        parsed = sink_wire.parse(topic, payload)
        assert isinstance(parsed, sink_wire.Message)
        assert isinstance(parsed.body, sink_wire.Event)
        assert parsed.body.kind == "update"
    # nothing was installed, nothing was started
    assert Releases(root).installed() == []
    assert supervisor.starts == []


def test_a_wheel_that_does_not_match_the_signed_hash_is_refused(
    tmp_path: Path, wheels: dict[str, Path], fleet_key: tuple[Path, bytes]
) -> None:
    house = tmp_path / "house"
    house.mkdir()
    for wheel in wheels[GOOD_A].glob("*.whl"):
        (house / wheel.name).write_bytes(wheel.read_bytes())
    payload = sign_update(fleet_key[0], house, source=str(house))
    for wheel in house.glob("*.whl"):  # swapped after signing
        wheel.write_bytes(next(wheels[CRASHING].glob("*.whl")).read_bytes())
    manifest = signed.verify(payload, fleet_key[1], time.time())
    with pytest.raises(signed.ManifestError, match="SHA-256 is not the manifest's"):
        signed.fetch(manifest, tmp_path / "fetched")


def _run_update(root: Path, house: Path, version: str, crash_at: str = "", keep: int = 3) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CONTACTPOINT_CRASH_AT", None)
    if crash_at:
        env["CONTACTPOINT_CRASH_AT"] = crash_at
    done = subprocess.run(
        [sys.executable, "-m", "tests.edge.update_support", str(root), str(house), version,
         str(keep)],
        env=env, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode in (0, -9), done.stderr
    return done.returncode


def test_a_kill_at_any_step_leaves_current_on_a_complete_release(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    root = tmp_path / "opt"

    def check(expected: str) -> None:
        assert _current(root) == expected
        assert _complete(root, expected)
        assert (root / CURRENT / "bin" / "contactpoint").is_file()

    assert _run_update(root, wheels[GOOD_OLD], GOOD_OLD) == 0
    check(GOOD_OLD)
    # killed after pip, before the release's marker: the old release stays current
    assert _run_update(root, wheels[GOOD_A], GOOD_A, "update.install") == -9
    check(GOOD_OLD)
    assert not _complete(root, GOOD_A)
    # killed with current.new made, before the rename
    assert _run_update(root, wheels[GOOD_A], GOOD_A, "update.switch") == -9
    check(GOOD_OLD)
    # killed after the switch, before the start: the new release is current (complete); the
    # next run checks it first
    assert _run_update(root, wheels[GOOD_A], GOOD_A, "update.start") == -9
    check(GOOD_A)
    assert json.loads((root / STATE).read_text())["step"] == "starting"
    assert _run_update(root, wheels[GOOD_A], GOOD_A) == 0
    check(GOOD_A)
    assert json.loads((root / STATE).read_text())["step"] == "done"
    # a crashing release, killed before switching back: it is current but the next run
    # finishes the rollback
    assert _run_update(root, wheels[CRASHING], CRASHING, "update.rollback") == -9
    check(CRASHING)
    assert _run_update(root, wheels[GOOD_B], GOOD_B, keep=2) == 0
    state = json.loads((root / STATE).read_text())
    assert (state["step"], state["version"]) == ("done", GOOD_B)
    check(GOOD_B)
    # killed while removing an old release (keep 2): current and previous are untouched
    assert _run_update(root, wheels[GOOD_OLD], GOOD_OLD, "update.prune", keep=2) == -9
    check(GOOD_OLD)
    assert _complete(root, GOOD_B)
    assert len(Releases(root).installed()) <= 3


def test_the_command_line_signs_and_refuses_bad_input(
    tmp_path: Path, wheels: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys"
    assert main(["fleet", "init-signing", "--out", str(keys)]) == 0
    assert oct((keys / "update.key").stat().st_mode & 0o777) == "0o600"
    assert main(["fleet", "init-signing", "--out", str(keys)]) == 2  # never replaced
    out = tmp_path / "manifest.json"
    house = str(wheels[GOOD_A])
    argv = ["fleet", "sign-update", "--key", str(keys / "update.key"), "--wheelhouse", house]
    assert main([*argv, "--source", house, "--out", str(out)]) == 0
    public = signed.read_key(keys / "update.pub", "pub")
    assert signed.verify(out.read_bytes(), public, time.time()).version == GOOD_A
    assert main([*argv, "--source", "relative/dir", "--out", str(out)]) == 2
    assert "an absolute directory or an http(s) URL" in capsys.readouterr().err
    assert main(["update", "--root", str(tmp_path / "opt"), str(tmp_path / "none/")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_one_update_at_a_time(tmp_path: Path, supervisor: NotifySupervisor) -> None:
    root = tmp_path / "opt"
    root.mkdir()
    with (root / ".update.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another updater process holds it
        with pytest.raises(UpdateError, match="another update is running"):
            Updater(settings(root), supervisor).update(GOOD_A, tmp_path)
    assert supervisor.starts == []
    assert not (root / "releases").exists()


def test_the_listener_unit_command_refuses_reports_and_stops_on_sigterm(
    tmp_path: Path, broker: LocalBroker, fleet_key: tuple[Path, bytes]
) -> None:
    config = tmp_path / "device.toml"
    config.write_text(f"[device]\nid = 'dev-a'\nsite = 'site-1'\n[mqtt]\nbroker = '{broker.url}'\n")
    data = tmp_path / "data"
    data.mkdir()
    watcher = Watcher(broker, "site-1", "dev-a")
    cmd = [sys.executable, "-m", "provisioning.main", "update", "--listen", "--root",
           str(tmp_path / "opt"), "--config", str(config), "--data", str(data),
           "--fleet-key", str(fleet_key[0].with_name("update.pub"))]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        unsigned = json.dumps({"v": 1, "manifest": "e30="}).encode()

        def refused() -> bool:  # (asked again at each poll until the listener has subscribed)
            assert proc.poll() is None, proc.communicate()[1]
            if not watcher.updates():
                publish_update(broker.url, "site-1", "dev-a", unsigned, user="", password="")
            return bool(watcher.updates())

        wait_for(refused, "the refusal")
        assert watcher.updates()[0]["result"] == "refused"
        assert watcher.updates()[0]["detail"] == "the manifest is not signed"
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        watcher.close()
