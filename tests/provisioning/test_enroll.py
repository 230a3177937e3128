"""Enrollment by claim against a real mosquitto with the dynamic-security plugin loaded."""

from __future__ import annotations

import glob
import json
import logging
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory
from paho.mqtt.enums import CallbackAPIVersion

import hardware.gpio
from cloud_sink.consumer import Sink, SinkConfig
from contract import enroll as proto
from edge import sealing
from edge.config import Config
from edge.daemon import run_live
from edge.enroll import CREDENTIALS, KEY, EnrollError, Identity, ensure_enrolled
from edge.events import Press
from edge.simulate import STORE_NAME
from edge.store import Store
from provisioning.broker import LocalBroker
from provisioning.enroll import (
    Admin,
    RateLimit,
    Registry,
    Service,
    broker_lines,
    init_dynsec,
    revoke,
)
from provisioning.identity import DEFAULT_SINK_USER
from provisioning.main import main
from tests.waiting import join, wait_for

ADMIN_PASSWORD = "admin-secret-for-tests"
SINK_PASSWORD = "sink-secret-for-tests"
TOKEN = "claim-token-0123456789"


def plugin() -> str:
    found = glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob(
        "/usr/lib/mosquitto_dynamic_security.so"
    )
    assert found, "mosquitto's dynamic-security plugin is missing: apt-get install mosquitto"
    return found[0]


@dataclass
class Fleet:
    broker: LocalBroker
    registry: Registry
    service: Service
    base: Path
    devices: list[threading.Thread] = field(default_factory=list)

    def config(self, name: str) -> Config:
        return Config.from_dict(
            {"device": {"id": name, "site": "site-1"}, "mqtt": {"broker": self.broker.url}}
        )

    def data(self, name: str, token: str = TOKEN) -> Path:
        data = self.base / name
        data.mkdir()
        (data / "claim.token").write_text(token + "\n")
        return data

    def enroll(self, name: str, token: str = TOKEN, serial: str = "") -> Config:
        data = self.data(name, token)
        who = Identity(serial=serial or f"serial-{name}", model="Test Pi", version="0")
        return ensure_enrolled(self.config(name), data, threading.Event(), who=who, retry_s=0.5)

    def enroll_in_background(
        self, name: str, data: Path
    ) -> tuple[list[Config | BaseException], threading.Thread]:
        """``ensure_enrolled`` on a thread: its result (or exception) lands in the list."""
        result: list[Config | BaseException] = []

        def device() -> None:
            try:
                result.append(
                    ensure_enrolled(self.config(name), data, threading.Event(), retry_s=0.3)
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                result.append(exc)

        thread = threading.Thread(target=device, daemon=True)
        thread.start()
        return result, thread

    def admin(self) -> Admin:
        admin = Admin(self.broker.url, "admin", ADMIN_PASSWORD)
        admin.start()
        return admin


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    dynsec = tmp_path / "dynsec.json"
    init_dynsec(dynsec, "admin", ADMIN_PASSWORD, sink_password=SINK_PASSWORD)
    broker = LocalBroker(
        tmp_path / "broker", extra=broker_lines(dynsec, plugin()), allow_anonymous=False
    )
    broker.start()
    try:
        registry = Registry(tmp_path / "enroll.db")
        service = Service(registry, broker.url, "admin", ADMIN_PASSWORD)
        service.start()
        try:
            yield Fleet(broker, registry, service, tmp_path)
        finally:
            service.stop()
    finally:
        broker.stop()


class Conn:
    """A plain MQTT 5 connection that records what happens to it."""

    def __init__(self, url: str, user: str, password: str, client_id: str = "") -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(user, password)
        self.connack: Any = None
        self.disconnected = threading.Event()
        self.suback: list[Any] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.client.on_connect = lambda _c, _u, _f, rc, _p: setattr(self, "connack", rc)
        self.client.on_disconnect = lambda *_a: self.disconnected.set()
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: self.suback.extend(codes)
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg)
        self.client.connect(host, int(port), keepalive=15)
        self.client.loop_start()
        wait_for(lambda: self.connack is not None, "CONNACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_device_enrolls_stores_its_credentials_privately_and_connects(fleet: Fleet) -> None:
    fleet.registry.add_claim("batch-1", TOKEN, site="site-1", uses=10)
    cfg = fleet.enroll("dev-a")
    data = fleet.base / "dev-a"
    assert cfg.mqtt.username == "dev-a"
    assert not (data / "claim.token").exists()
    for name in (CREDENTIALS, Path(cfg.mqtt.password_file).name):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600
    conn = Conn(fleet.broker.url, "dev-a", Path(cfg.mqtt.password_file).read_text())
    try:
        assert not conn.connack.is_failure
        conn.client.subscribe("contactpoint/v1/site-1/dev-a/cmd/resend", qos=1)
        conn.client.subscribe("contactpoint/v1/site-1/dev-b/cmd/resend", qos=1)
        wait_for(lambda: len(conn.suback) == 2, "two SUBACKs")
        assert [c.is_failure for c in conn.suback] == [False, True]  # its own commands only
    finally:
        conn.close()
    # a later start uses the stored account and asks nothing
    again = ensure_enrolled(fleet.config("dev-a"), data, threading.Event())
    assert again.mqtt.username == "dev-a"
    assert [row.state for row in fleet.registry.devices()] == ["enrolled"]


def test_a_device_that_lost_its_reply_gets_it_again_after_a_restart(fleet: Fleet) -> None:
    """The service enrolled the device but the device died before storing the credentials:
    at its next start it asks again with what it kept and opens the stored reply."""
    fleet.registry.add_claim("one", TOKEN, site="site-1", uses=1)
    data = fleet.data("dev-a")
    stopped = threading.Event()
    stopped.set()
    ensure_enrolled(fleet.config("dev-a"), data, stopped)  # a start cut short: key made
    kept = (data / KEY).read_text()
    ensure_enrolled(fleet.config("dev-a"), data, threading.Event(), retry_s=0.3)
    # as if the power went before the credentials were stored
    (data / CREDENTIALS).unlink()
    (data / KEY).write_text(kept)
    (data / "claim.token").write_text(TOKEN)
    again = ensure_enrolled(fleet.config("dev-a"), data, threading.Event(), retry_s=0.3)
    assert again.mqtt.username == "dev-a"  # the same reply (the single use is not used up)
    assert [r.state for r in fleet.registry.devices()] == ["enrolled"]


def test_a_wrong_token_is_refused(fleet: Fleet) -> None:
    fleet.registry.add_claim("batch-1", TOKEN, site="site-1")
    with pytest.raises(EnrollError, match="unknown claim token"):
        fleet.enroll("dev-a", token="not-the-token")
    assert (fleet.base / "dev-a" / "claim.token").exists()  # kept: the operator may fix it


def test_an_expired_token_is_refused(fleet: Fleet) -> None:
    fleet.registry.add_claim("old", TOKEN, site="site-1", expires_at=time.time() - 1)
    with pytest.raises(EnrollError, match="expired"):
        fleet.enroll("dev-a")


def test_a_single_use_token_is_refused_the_second_time(fleet: Fleet) -> None:
    fleet.registry.add_claim("one", TOKEN, site="site-1", uses=1)
    assert fleet.enroll("dev-a").mqtt.username == "dev-a"
    with pytest.raises(EnrollError, match="no uses left"):
        fleet.enroll("dev-b")


def test_a_serial_outside_the_claims_list_is_refused(fleet: Fleet) -> None:
    fleet.registry.add_claim("listed", TOKEN, site="site-1", serials=["10000000abcd"])
    with pytest.raises(EnrollError, match="not allowed"):
        fleet.enroll("dev-a", serial="10000000ffff")
    assert fleet.enroll("dev-b", serial="10000000abcd").mqtt.username == "dev-b"


def test_a_device_of_another_site_is_refused(fleet: Fleet) -> None:
    fleet.registry.add_claim("batch", TOKEN, site="site-2")
    with pytest.raises(EnrollError, match="site 'site-1' is not this claim's site 'site-2'"):
        fleet.enroll("dev-a")


def test_a_claimant_cannot_read_another_devices_reply(fleet: Fleet) -> None:
    fleet.registry.add_claim("batch", TOKEN, site="site-1", uses=10)
    spy = Conn(fleet.broker.url, proto.CLAIM_USER, proto.CLAIM_PASSWORD, "claim-spy")
    try:
        assert not spy.connack.is_failure
        spy.client.subscribe(proto.reply_topic("claim-spy"), qos=1)  # its own: allowed
        spy.client.subscribe(f"{proto.ROOT}/+/reply", qos=1)
        spy.client.subscribe("#", qos=1)
        wait_for(lambda: len(spy.suback) == 3, "three SUBACKs")
        assert [c.is_failure for c in spy.suback] == [False, True, True]
        fleet.enroll("dev-b")  # B's reply goes by while the spy listens
        assert spy.messages == []
    finally:
        spy.close()
    # and a reply that did reach the wrong hands opens only with B's key
    private_b, public_b = sealing.new_key_pair()
    private_a, _ = sealing.new_key_pair()
    sealed = sealing.seal(public_b, b"secret", "claim-b")
    assert sealing.open_sealed(private_b, sealed, "claim-b") == b"secret"
    with pytest.raises(ValueError, match="not sealed to this key"):
        sealing.open_sealed(private_a, sealed, "claim-b")
    with pytest.raises(ValueError, match="not sealed to this key"):
        sealing.open_sealed(private_b, sealed, "claim-a")  # another client id
    box = bytearray(sealing.unb64(sealed["box"], "box"))
    box[0] ^= 1
    with pytest.raises(ValueError, match="altered"):
        sealing.open_sealed(private_b, {**sealed, "box": sealing.b64(bytes(box))}, "claim-b")
    for bad in (bytes(sealing.PUBLIC_BYTES), b"\x01" * (sealing.PUBLIC_BYTES - 1)):
        with pytest.raises(ValueError, match="not a public value"):
            sealing.seal(bad, b"x", "claim-b")


def test_a_revoked_device_is_kicked_and_cannot_reconnect(fleet: Fleet) -> None:
    fleet.registry.add_claim("batch", TOKEN, site="site-1", uses=10)
    cfg = fleet.enroll("dev-a")
    password = Path(cfg.mqtt.password_file).read_text()
    conn = Conn(fleet.broker.url, "dev-a", password, "dev-a")
    assert not conn.connack.is_failure
    admin = fleet.admin()
    try:
        revoke(fleet.registry, admin, "dev-a")
    finally:
        admin.stop()
    wait_for(conn.disconnected.is_set, "the revoked device disconnected by the broker")
    conn.client.loop_stop()
    again = Conn(fleet.broker.url, "dev-a", password, "dev-a")
    try:
        assert again.connack.is_failure
    finally:
        again.close()
    assert [row.state for row in fleet.registry.devices()] == ["revoked"]
    # and its old claim cannot bring it back
    data = fleet.base / "dev-a"
    (data / CREDENTIALS).unlink()
    (data / "claim.token").write_text(TOKEN)
    with pytest.raises(EnrollError):
        ensure_enrolled(fleet.config("dev-a"), data, threading.Event(), retry_s=0.5)


def test_enrollment_survives_a_broker_restart_midway(fleet: Fleet) -> None:
    fleet.registry.add_claim("manual", TOKEN, site="site-1", uses=1, manual=True)
    data = fleet.data("dev-a")
    result, thread = fleet.enroll_in_background("dev-a", data)
    wait_for(lambda: fleet.registry.devices("pending"), "the request waiting for approval")
    fleet.broker.restart()  # the device and the service both lose the broker
    fleet.registry.set_state("dev-a", ("pending",), "approved")
    wait_for(lambda: result, "the device enrolled after the restart")
    thread.join(10)
    cfg = result[0]
    assert isinstance(cfg, Config), cfg
    assert json.loads((data / CREDENTIALS).read_text())["username"] == "dev-a"
    conn = Conn(fleet.broker.url, "dev-a", Path(cfg.mqtt.password_file).read_text())
    try:
        assert not conn.connack.is_failure
    finally:
        conn.close()
    assert fleet.registry.devices()[0].state == "enrolled"


def test_the_daemon_enrolls_at_its_first_start_then_delivers(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """... to a sink logged in with the sink account of the same dynamic-security file, whose
    delivery receipt comes back to the device."""
    sink = Sink(
        SinkConfig(
            broker=fleet.broker.url, data_dir=tmp_path / "sink", username=DEFAULT_SINK_USER,
            password=SINK_PASSWORD, backoff_min_s=0.05, backoff_max_s=0.5,
        )
    )  # fmt: skip
    sink.start()
    wait_for(sink.subscribed.is_set, "the sink to subscribe with its account")
    factory = MockFactory()
    monkeypatch.setattr(hardware.gpio, "make_pin_factory", lambda *a, **k: factory)
    fleet.registry.add_claim("batch", TOKEN, site="site-1", uses=1)
    cfg = Config.from_dict(
        {
            "device": {"id": "dev-a", "site": "site-1"},
            "hardware": {"backend": "pi"},
            "mqtt": {"broker": fleet.broker.url},
            "audio": {"enabled": False},
            "contacts": {"modes": ["window"]},
            "receipts": {"enabled": False},
            "buttons": [{"name": "red", "role": "red", "pin": 13}],
        }
    )
    data = fleet.data("dev-a")
    stop = threading.Event()
    presses: list[Press] = []
    daemon = threading.Thread(
        target=lambda: run_live(cfg, data, stop=stop, on_press=presses.append, final_drain_s=10)
    )
    daemon.start()
    try:
        pin = factory.pin(13)
        wait_for(lambda: pin.state == 1, "the daemon enrolled and opened the button")
        pin.drive_low()
        time.sleep(0.2)  # held for 200 ms of real time: the debouncer measures real edges
        pin.drive_high()
        wait_for(lambda: presses, "the press in the core")
        wait_for(lambda: sink.stats().get("stored", 0) >= 1, "the press stored by the sink")
        with Store.open(data / STORE_NAME) as store:  # WAL: read beside the daemon
            wait_for(lambda: store.outbox.undelivered() == 0, "the sink's receipt at the device")
    finally:
        stop.set()
        join(daemon, "the daemon to stop")
        sink.stop()
    assert not (data / "claim.token").exists()
    with Store.open(data / STORE_NAME) as store:
        assert [e.kind for e in store.orphan_events()] == ["red"]
        assert store.outbox.of_kind("event")  # the press was queued ...
        assert store.outbox.depth() == 0  # ... and the broker took it from dev-a


def test_the_sink_account_reads_the_fleet_and_nothing_of_the_broker_s_control(
    fleet: Fleet,
) -> None:
    conn = Conn(fleet.broker.url, DEFAULT_SINK_USER, SINK_PASSWORD, client_id="sink-probe")
    try:
        assert conn.connack == 0
        conn.client.subscribe("contactpoint/v1/#", qos=1)
        conn.client.subscribe("$CONTROL/dynamic-security/#", qos=1)
        wait_for(lambda: len(conn.suback) == 2, "both SUBACKs")
        assert [code.value for code in conn.suback] == [1, 135]  # granted QoS 1; not authorized
    finally:
        conn.close()


def test_a_scenario_run_enrolls_first_then_delivers_everything(fleet: Fleet) -> None:
    """`edge run --scenario` (the simulated hardware under systemd, as on the emulated arm64
    device of docs/EMULATION.md) trades the claim token for an account, as the live daemon
    does, and delivers the scenario with it."""
    fleet.registry.add_claim("batch", TOKEN, site="site-1", uses=1)
    config = fleet.base / "device.toml"
    config.write_text(
        f'[device]\nid = "dev-s"\nsite = "site-1"\n[mqtt]\nbroker = "{fleet.broker.url}"\n'
    )
    scenario = fleet.base / "s.toml"
    scenario.write_text(
        'start = "2026-11-23T09:00:00Z"\nduration = 30.0\n'
        "[[customers]]\narrive = 2.0\nleave = 12.0\n"
        '[[presses]]\nat = 8.0\nbutton = "green"\n'
    )
    data = fleet.data("dev-s")
    argv = ["edge", "run", "--config", str(config), "--data", str(data)]
    argv += ["--scenario", str(scenario), "--speed", "30", "--drain-timeout", "60"]
    assert main(argv) == 0
    assert not (data / "claim.token").exists()
    assert stat.S_IMODE((data / CREDENTIALS).stat().st_mode) == 0o600
    assert [d.name for d in fleet.registry.devices("enrolled")] == ["dev-s"]
    with Store.open(data / STORE_NAME) as store:
        assert len(store.contacts()) == 1
        assert store.outbox.depth() == 0  # the broker took everything from dev-s's account


def test_the_fleet_commands_claim_approve_list_and_revoke(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(fleet.registry.path)
    (fleet.base / "token").write_text(TOKEN + "\n")
    (fleet.base / "admin.pw").write_text(ADMIN_PASSWORD + "\n")
    assert (
        main(
            [
                "fleet",
                "claim",
                "--db",
                db,
                "--label",
                "b1",
                "--token-file",
                str(fleet.base / "token"),
                "--site",
                "site-1",
                "--uses",
                "2",
                "--manual",
            ]
        )
        == 0
    )
    data = fleet.data("dev-a")
    result, thread = fleet.enroll_in_background("dev-a", data)
    wait_for(lambda: fleet.registry.devices("pending"), "the request waiting for approval")
    capsys.readouterr()
    assert main(["fleet", "pending", "--db", db]) == 0
    assert capsys.readouterr().out.startswith("dev-a\tpending\t")
    assert main(["fleet", "approve", "--db", db, "dev-a"]) == 0
    wait_for(lambda: result, "the device enrolled once approved")
    thread.join(10)
    assert isinstance(result[0], Config), result[0]
    admin = ["--broker", fleet.broker.url, "--admin-password-file", str(fleet.base / "admin.pw")]
    assert main(["fleet", "revoke", "--db", db, "dev-a", *admin]) == 0
    capsys.readouterr()
    assert main(["fleet", "list", "--db", db]) == 0
    assert capsys.readouterr().out.startswith("dev-a\trevoked\t")
    assert main(["fleet", "approve", "--db", db, "dev-a"]) == 2
    assert "is revoked, not pending" in capsys.readouterr().err
    password = Path(result[0].mqtt.password_file).read_text()
    refused = Conn(fleet.broker.url, "dev-a", password)
    try:
        assert refused.connack.is_failure
    finally:
        refused.close()


def test_init_broker_refuses_to_replace_the_accounts_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pw").write_text("x\n")
    args = ["fleet", "init-broker", "--out", str(tmp_path / "d.json"), "--admin-password-file"]
    assert main([*args, str(tmp_path / "pw")]) == 0
    assert stat.S_IMODE((tmp_path / "d.json").stat().st_mode) == 0o600
    assert main([*args, str(tmp_path / "pw")]) == 2
    assert "exists" in capsys.readouterr().err


def _request(serial: str, token: str = TOKEN, name: str = "dev-r") -> bytes:
    _, public = sealing.new_key_pair()
    body = {"v": 1, "token": token, "name": name, "site": "site-1", "serial": serial,
            "model": "Test Pi", "version": "0", "key": sealing.b64(public)}  # fmt: skip
    return json.dumps(body).encode()


def _flood(fleet: Fleet, payloads: list[bytes]) -> list[Any]:
    """Publish ``payloads`` as one claimant and collect the answers it gets."""
    client_id = proto.CLIENT_ID_PREFIX + "flood0123456789abcdef"
    conn = Conn(fleet.broker.url, proto.CLAIM_USER, proto.CLAIM_PASSWORD, client_id)
    service = fleet.service
    try:
        conn.client.subscribe(proto.reply_topic(client_id), qos=1)
        wait_for(lambda: conn.suback, "SUBACK")
        handled, throttled = service.handled, service.throttled
        for payload in payloads:
            conn.client.publish(proto.request_topic(client_id), payload, qos=1)
        wait_for(lambda: service.handled == handled + len(payloads), "all requests handled")
        answered = len(payloads) - (service.throttled - throttled)
        wait_for(lambda: len(conn.messages) >= answered, "the answers")
        return [json.loads(m.payload) for m in conn.messages]
    finally:
        conn.close()


def test_requests_over_the_rate_limit_per_serial_are_not_answered_and_logged_once(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    fleet.registry.add_claim("batch-1", TOKEN, site="site-1", manual=True)
    fleet.service.limits = RateLimit(per_token=100, per_serial=2, window_s=3600)
    request = _request("serial-x")  # one device asking again and again
    with caplog.at_level(logging.WARNING, logger="provisioning.enroll"):
        answers = _flood(fleet, [request] * 6)
    assert [a["status"] for a in answers] == ["pending", "pending"]
    assert fleet.service.throttled == 4
    over = [r for r in caplog.records if "over the limit" in r.getMessage()]
    assert len(over) == 1
    assert "serial 'serial-x'" in over[0].getMessage()
    # another serial is not held back by this one
    assert _flood(fleet, [_request("serial-y", name="dev-s")]) == [{"v": 1, "status": "pending"}]


def test_requests_over_the_rate_limit_per_claim_token_are_not_answered(fleet: Fleet) -> None:
    fleet.service.limits = RateLimit(per_token=3, per_serial=100, window_s=3600)
    answers = _flood(fleet, [_request(f"serial-{i}", token="guess") for i in range(5)])
    assert [a["reason"] for a in answers] == ["unknown claim token"] * 3
    assert fleet.service.throttled == 2
