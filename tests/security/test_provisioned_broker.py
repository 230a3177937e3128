"""The broker files `contactpoint provision` writes, run by a real mosquitto as they are.

How they are run (tests/security/helpers.py, ``InstalledBroker``): provisioned through the CLI
with ``--broker-dir`` and ``--broker-root`` both a temporary directory that stands for the
broker host's ``/etc/mosquitto/contactpoint``; ``contactpoint.conf`` included from a main
configuration like Debian's; the only rewrite is its listener's port (a free loopback one).
Started as root, mosquitto drops to the ``mosquitto`` user as on a broker host, so the files
must be readable by it. The devices' files are used where ``--out`` put them, standing for the
``/etc/contactpoint`` their config snippet names.

What is proved: mosquitto starts on them without an error or warning, a device logs in over
TLS with its password; a device cannot take the sink's or another device's client id (so it
can neither wipe their queued messages nor throw them off); two sink workers of a group with
their own accounts share the stream; Home Assistant discovery is retained under the ACL, and a
refused discovery config is one fault, logged once.
"""

from __future__ import annotations

import logging
import os
import pwd
import ssl
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_sink import Sink, SinkConfig
from edge.clock import FakeClock
from edge.config import Config, MqttSection
from edge.health import Health
from edge.publish import discovery, wire
from edge.publish.mqtt import Publisher
from edge.store import Store
from provisioning import identity
from provisioning.files import mode_of
from provisioning.main import main
from tests.cloud_sink.helpers import contact_message, encode, wait_until
from tests.security.helpers import Client, InstalledBroker, broker_host_dir, remove_tree
from tests.waiting import STALL_S
from tests.wire_samples import ORPHAN

SITE = "site-1"
A, B = "cp-a", "cp-b"
SINK = identity.DEFAULT_SINK_USER
WAIT_S = STALL_S  # generous: returns as soon as the answer is there


@dataclass
class Provisioned:
    work: Path  # the workstation: CA and each account's --out
    root: Path  # the broker host's /etc/mosquitto/contactpoint

    def out(self, name: str) -> Path:
        return self.work / name

    def password(self, name: str) -> str:
        return (self.out(name) / identity.PASSWORD_FILE).read_text().strip()

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root / "ca.crt"))

    def client(self, broker: InstalledBroker, name: str, **kwargs: object) -> Client:
        return Client(broker.port, name, self.password(name), tls=self.tls(), **kwargs)  # type: ignore[arg-type]

    def provision(self, *args: str) -> None:
        common = ["--broker-dir", str(self.root), "--broker-root", str(self.root)]
        assert main(["provision", *args, *common]) == 0, args


@pytest.fixture
def provisioned(tmp_path: Path) -> Iterator[Provisioned]:
    root = broker_host_dir()
    site = Provisioned(tmp_path, root)
    ca = str(tmp_path / "ca")
    try:
        assert main(["provision", "ca", "--out", ca]) == 0
        site.provision("server", "--ca-dir", ca, "--host", "127.0.0.1", "--host", "localhost")
        for device in (A, B):
            out = str(site.out(device))
            site.provision("device", device, "--site", SITE, "--out", out, "--ca-dir", ca)
        site.provision("sink", "--out", str(site.out(SINK)), "--ca-dir", ca)
        yield site
    finally:
        remove_tree(root)


@pytest.fixture
def broker(provisioned: Provisioned) -> Iterator[InstalledBroker]:
    with InstalledBroker(provisioned.root) as running:
        yield running


def url(broker: InstalledBroker) -> str:
    return f"mqtts://127.0.0.1:{broker.port}"


def test_the_files_name_their_install_paths_and_belong_to_the_broker_user(
    provisioned: Provisioned,
) -> None:
    root = provisioned.root
    conf = (root / identity.BROKER_CONF).read_text()
    for line in (
        "allow_anonymous false",
        f"password_file {root}/passwd",
        f"acl_file {root}/acl",
        "listener 8883",
        f"cafile {root}/ca.crt",
        f"certfile {root}/server.crt",
        f"keyfile {root}/server.key",
        "use_username_as_clientid true",
    ):
        assert f"\n{line}\n" in conf, line
    assert str(provisioned.work) not in conf  # nothing of the workstation's folders
    snippet = tomllib.loads((provisioned.out(A) / "mqtt.toml").read_text())["mqtt"]
    assert snippet["password_file"] == "/etc/contactpoint/password"
    assert snippet["ca_file"] == "/etc/contactpoint/ca.crt"
    for name in ("passwd", "acl", "server.key"):
        assert mode_of(root / name) == 0o600, name
        if os.geteuid() == 0:
            assert (root / name).stat().st_uid == pwd.getpwnam("mosquitto").pw_uid, name


def test_the_broker_starts_on_the_files_and_a_device_logs_in_over_tls(
    provisioned: Provisioned, broker: InstalledBroker, tmp_path: Path
) -> None:
    # the device's snippet as installed: /etc/contactpoint is where --out put the files
    snippet = tomllib.loads((provisioned.out(A) / "mqtt.toml").read_text())["mqtt"]
    here = str(provisioned.out(A))
    files = {k: snippet[k].replace("/etc/contactpoint", here) for k in ("password_file", "ca_file")}
    cfg = MqttSection(broker=url(broker), username=snippet["username"], backoff_min_s=0.05, **files)
    store = Store.open(tmp_path / "device" / "contactpoint.db")
    assert store.save_event(ORPHAN, [wire.event_message(ORPHAN, A, SITE)])
    pub = Publisher(
        cfg, device=A, site=SITE, data_dir=tmp_path / "device", store=store, version="test",
        clock=FakeClock(),
    )  # fmt: skip
    pub.start()
    try:
        assert pub.drain(WAIT_S), pub.stats.last_error
    finally:
        pub.stop()
        store.close()
    assert pub.stats.last_error == ""
    log = broker.log
    assert "Error" not in log, log
    assert "Warning" not in log, log


def _contacts(device: str, count: int) -> list[bytes]:
    messages = []
    for n in range(count):
        msg = contact_message(contact_id=f"{n:032x}", msg_id=f"{n + 100:032x}")
        msg["device"], msg["site"] = device, SITE
        messages.append(encode(msg))
    return messages


def _stored(sink: Sink) -> int:
    with sink.db.connection_context():
        return sum(1 for _ in sink.ingest.contacts())


def test_a_device_cannot_wipe_the_sinks_queued_messages(
    provisioned: Provisioned, broker: InstalledBroker, tmp_path: Path
) -> None:
    config = SinkConfig(
        broker=url(broker),
        data_dir=tmp_path / "sink",
        username=SINK,
        password=provisioned.password(SINK),
        ca_file=str(provisioned.root / "ca.crt"),
        backoff_min_s=0.05,
    )
    with Sink(config) as sink:  # its persistent session and subscription
        assert sink.subscribed.wait(WAIT_S)
    b = provisioned.client(broker, B)
    assert not b.connect().failed
    for payload in _contacts(B, 6):  # queued on the broker for the sink, which is away
        assert not b.publish(f"contactpoint/v1/{SITE}/{B}/contact", payload).failed
    b.close()
    # device A connects with the sink's client ids, clean start: on a broker that took the
    # client id as given this threw the sink's session away with its 6 queued contacts
    for client_id in (config.effective_client_id, "contactpoint-sink", SINK):
        a = provisioned.client(broker, A, client_id=client_id)
        assert not a.connect().failed
        a.close()
    with Sink(config) as sink:
        assert sink.subscribed.wait(WAIT_S)
        wait_until(lambda: _stored(sink) == 6, "all 6 queued contacts in the sink", WAIT_S)


def test_a_device_cannot_take_another_devices_session_nor_throw_it_off(
    provisioned: Provisioned, broker: InstalledBroker
) -> None:
    resend = f"contactpoint/v1/{SITE}/{B}/cmd/resend"
    b = provisioned.client(broker, B, session_expiry_s=600)
    sink = provisioned.client(broker, SINK)
    assert not b.connect().failed
    assert not sink.connect().failed
    assert not b.subscribe(f"contactpoint/v1/{SITE}/{B}/cmd/#").failed
    # A with B's client id while B is connected: B stays connected
    a = provisioned.client(broker, A, client_id=B)
    assert not a.connect().failed
    assert not b.publish(f"contactpoint/v1/{SITE}/{B}/status", b"{}").failed
    assert b.disconnects == 0
    a.close()
    b.close()
    # B away: a command waits in its session; A with B's id and clean start cannot wipe it
    assert not sink.publish(resend, b'{"clip_id":"x","seqs":[0]}').failed
    a = provisioned.client(broker, A, client_id=B)
    assert not a.connect().failed
    a.close()
    again = provisioned.client(broker, B, client_id=B, session_expiry_s=600)
    try:
        assert not again.connect().failed
        assert again.received.get(timeout=WAIT_S)[0] == resend
    finally:
        again.close()
        sink.close()


def test_each_worker_of_a_sink_group_has_its_own_account(
    provisioned: Provisioned, broker: InstalledBroker, tmp_path: Path
) -> None:
    provisioned.provision("sink", "--user", "sink-2", "--out", str(provisioned.out("sink-2")))
    broker.broker.restart()  # a new account: mosquitto reads the files at start (or on HUP)
    workers = [
        Sink(
            SinkConfig(
                broker=url(broker),
                data_dir=tmp_path / name,
                group="g",
                username=name,
                password=provisioned.password(name),
                ca_file=str(provisioned.root / "ca.crt"),
                backoff_min_s=0.05,
            )
        )
        for name in (SINK, "sink-2")
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            assert worker.subscribed.wait(WAIT_S)
        b = provisioned.client(broker, B)
        assert not b.connect().failed
        for payload in _contacts(B, 10):
            assert not b.publish(f"contactpoint/v1/{SITE}/{B}/contact", payload).failed
        b.close()
        wait_until(lambda: sum(_stored(w) for w in workers) == 10, "10 contacts", WAIT_S)
        assert all(_stored(w) > 0 for w in workers)  # both took a share: neither was thrown off
    finally:
        for worker in workers:
            worker.stop()


def _device_publisher(
    cfg: Config, provisioned: Provisioned, broker: InstalledBroker, data: Path, health: Health
) -> tuple[Publisher, Store]:
    device = cfg.device.id
    mqtt = MqttSection(
        broker=url(broker), username=device, backoff_min_s=0.05, backoff_max_s=0.2,
        password_file=str(provisioned.out(device) / "password"),
        ca_file=str(provisioned.out(device) / "ca.crt"),
    )  # fmt: skip
    store = Store.open(data / "contactpoint.db")
    pub = Publisher(
        mqtt, device=device, site=SITE, data_dir=data, store=store, version="test",
        clock=FakeClock(), retained_on_connect=discovery.provider(cfg, "test"),
        health=health.snapshot, on_fault=health.fault,
    )  # fmt: skip
    return pub, store


def _ha_config(device: str, **homeassistant: object) -> Config:
    return Config.from_dict(
        {
            "device": {"id": device, "site": SITE},
            "homeassistant": {"enabled": True, **homeassistant},
        }
    )


def test_home_assistant_discovery_works_with_the_provisioned_acl(
    provisioned: Provisioned, broker: InstalledBroker, tmp_path: Path
) -> None:
    provisioned.provision("homeassistant", "--out", str(provisioned.out("homeassistant")))
    broker.broker.restart()  # a new account: mosquitto reads the files at start (or on HUP)
    cfg = _ha_config(A)
    expected = {topic for topic, _ in discovery.provider(cfg, "test")()}  # type: ignore[misc]
    assert len(expected) == len(cfg.homeassistant.sensors) + 2  # + online, + alert event
    health = Health()
    pub, store = _device_publisher(cfg, provisioned, broker, tmp_path / "a", health)
    pub.start()
    ha = provisioned.client(broker, "homeassistant")
    try:
        wait_until(lambda: pub.connected, "the device connected", WAIT_S)
        assert not ha.connect().failed
        assert not ha.subscribe("homeassistant/#").failed
        status = f"contactpoint/v1/{SITE}/{A}/status"
        assert not ha.subscribe(status).failed
        seen: set[str] = set()

        def all_retained() -> bool:
            while not ha.received.empty():
                seen.add(ha.received.get_nowait()[0])
            return expected | {status} <= seen  # Home Assistant reads the status too

        wait_until(all_retained, "every discovery config and the status, retained", WAIT_S)
        assert health.faults == {}, pub.stats.last_error
        assert pub.stats.failed == 0, pub.stats.last_error
        # the ACL grants a device its own discovery topics only
        a = provisioned.client(broker, A)
        assert not a.connect().failed
        assert a.publish(f"homeassistant/sensor/{B}/outbox_depth/config", b"{}").failed
        assert a.publish("homeassistant/status", b"online").failed
        a.close()
    finally:
        ha.close()
        pub.stop()
        store.close()
    # the device is gone: what Home Assistant gets on its next start is retained
    later = provisioned.client(broker, "homeassistant")
    try:
        assert not later.connect().failed
        assert not later.subscribe("homeassistant/#").failed
        got = {later.received.get(timeout=WAIT_S)[0] for _ in expected}
        assert got == expected
    finally:
        later.close()


def test_a_refused_discovery_config_is_one_fault_logged_once(
    provisioned: Provisioned,
    broker: InstalledBroker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = _ha_config(B, discovery_prefix="elsewhere")  # the ACL grants homeassistant/ only
    refused = len(discovery.provider(cfg, "test")())  # type: ignore[misc]
    health = Health()
    pub, store = _device_publisher(cfg, provisioned, broker, tmp_path / "b", health)
    caplog.set_level(logging.DEBUG, logger="edge.publish.mqtt")
    pub.start()
    try:
        wait_until(lambda: pub.stats.failed >= refused, "the refusals", WAIT_S)
        broker.broker.restart()  # the next connection is refused the same
        wait_until(lambda: pub.stats.reconnects >= 1, "a reconnect", WAIT_S)
        wait_until(lambda: pub.stats.failed >= 2 * refused, "the refusals again", WAIT_S)
    finally:
        pub.stop()
        store.close()
    warnings = [
        r.getMessage()
        for r in caplog.records
        # (not "cannot reach the broker: Connection refused" while it restarts)
        if r.levelno >= logging.WARNING and r.getMessage().startswith("the broker refused ")
    ]
    assert len(warnings) == 1, warnings
    assert "elsewhere/" in warnings[0]
    assert "Not authorized" in warnings[0]
    assert list(health.faults) == ["mqtt_acl"]
    assert "elsewhere/" in health.faults["mqtt_acl"]


def test_with_client_certificates_the_cn_is_the_account_and_the_client_id(
    tmp_path: Path,
) -> None:
    root = broker_host_dir()
    site = Provisioned(tmp_path, root)
    ca = str(tmp_path / "ca")
    try:
        assert main(["provision", "ca", "--out", ca]) == 0
        site.provision("server", "--ca-dir", ca, "--host", "127.0.0.1", "--require-client-cert")
        for device in (A, B):
            out = str(site.out(device))
            site.provision("device", device, "--site", SITE, "--out", out, "--ca-dir", ca, "--cert")
        conf = (root / identity.BROKER_CONF).read_text()
        assert "\nrequire_certificate true\nuse_identity_as_username true\n" in conf

        def client(port: int, name: str, client_id: str | None = None) -> Client:
            tls = site.tls()
            tls.load_cert_chain(site.out(name) / "client.crt", site.out(name) / "client.key")
            return Client(port, tls=tls, client_id=client_id)

        with InstalledBroker(root) as broker:
            b = client(broker.port, B)
            assert not b.connect().failed
            a = client(
                broker.port, A, client_id=B
            )  # no user name, no password: the certificate says who
            assert not a.connect().failed
            assert not a.publish(f"contactpoint/v1/{SITE}/{A}/status", b"{}").failed
            assert a.publish(f"contactpoint/v1/{SITE}/{B}/status", b"{}").failed
            assert not b.publish(f"contactpoint/v1/{SITE}/{B}/status", b"{}").failed
            assert b.disconnects == 0  # A's certificate made it A, whatever id it sent
            a.close()
            b.close()
            assert "Error" not in broker.log, broker.log
    finally:
        remove_tree(root)
