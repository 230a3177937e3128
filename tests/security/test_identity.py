"""Device identity against a real mosquitto: the password file and ACL that `contactpoint
provision` writes let each device log in and confine it to its own topics; the sink reads all
and may only ask for resends; payloads whose device id disagrees with the topic are refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_sink import Sink, SinkConfig
from provisioning import identity
from provisioning.broker import LocalBroker
from provisioning.files import mode_of
from tests.cloud_sink.helpers import contact_message, encode, wait_until
from tests.security.helpers import Client, InstalledBroker, broker_host_dir, remove_tree
from tests.waiting import STALL_S

SITE = "site-1"
A, B = "cp-a", "cp-b"


def root(device: str, site: str = SITE) -> str:
    return f"contactpoint/v1/{site}/{device}"


def forged_contact(device: str, site: str = SITE) -> bytes:
    msg = contact_message(contact_id="ab" * 16, msg_id="cd" * 16)
    msg["device"], msg["site"] = device, site
    return encode(msg)


@dataclass
class Fleet:
    broker: LocalBroker
    work: Path

    def password(self, name: str) -> str:
        return (self.work / name / identity.PASSWORD_FILE).read_text().strip()

    def client(self, name: str | None, password: str | None = None) -> Client:
        secret = password if password is not None else (self.password(name) if name else None)
        return Client(self.broker.port, name, secret)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """mosquitto on the provisioned files, installed as on a broker host (helpers.py)."""
    work = tmp_path / "prov"
    root = broker_host_dir()
    options = identity.BrokerOptions(root=str(root))
    try:
        for device in (A, B):
            identity.provision_device(device, SITE, work / device, broker_dir=root, options=options)
        sink = work / identity.DEFAULT_SINK_USER
        identity.provision_sink(sink, broker_dir=root, options=options)
        with InstalledBroker(root) as installed:
            yield Fleet(installed.broker, work)
    finally:
        remove_tree(root)


def test_provisioning_writes_secrets_0600_and_confining_acl(tmp_path: Path) -> None:
    done = identity.provision_device(A, SITE, tmp_path / A, broker_dir=tmp_path / "broker")
    assert mode_of(done.password_file) == 0o600
    assert mode_of(tmp_path / "broker" / identity.PASSWD) == 0o600
    acl = (tmp_path / "broker" / identity.ACL).read_text()
    assert (
        f"user {A}\ntopic write {root(A)}/+\ntopic write {root(A)}/route/+\n"
        f"topic read {root(A)}/cmd/#\n"
    ) in acl
    password = done.password_file.read_text().strip()
    assert len(password) >= 43  # 256 bits, URL-safe base64
    line = (tmp_path / "broker" / identity.PASSWD).read_text()
    assert line.startswith(f"{A}:$7$101$")
    assert password not in line
    assert done.snippet is not None
    assert password not in done.snippet.read_text()


def test_a_device_id_lives_at_one_site_and_is_never_a_sink(tmp_path: Path) -> None:
    identity.provision_device(A, SITE, tmp_path / A)
    with pytest.raises(identity.ProvisionError, match="provisioned at site 'site-1' already"):
        identity.provision_device(A, "site-2", tmp_path / "again")
    with pytest.raises(identity.ProvisionError, match="is a device already"):
        identity.provision_sink(tmp_path / "s", user=A)
    with pytest.raises(identity.ProvisionError, match="not a valid name"):
        identity.provision_device("../etc", SITE, tmp_path / "x")


def test_reprovisioning_replaces_the_password(tmp_path: Path) -> None:
    first = identity.provision_device(A, SITE, tmp_path / A)
    old = first.password_file.read_text().strip()
    identity.provision_device(A, SITE, tmp_path / A)
    new = first.password_file.read_text().strip()
    entries = identity.read_passwd(tmp_path / "broker" / identity.PASSWD)
    assert old != new
    assert list(entries) == [A]
    assert identity.verify_password(new, entries[A])
    assert not identity.verify_password(old, entries[A])


@pytest.mark.parametrize("password", ["secret", "S3cr3t-ü-with:colons$and dollars"])
def test_hashes_agree_with_mosquitto_passwd(tmp_path: Path, password: str) -> None:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    path = tmp_path / "passwd"
    path.touch()
    # the tool's hash verifies with ours (password on a test's command line: harmless here)
    subprocess.run([tool, "-b", str(path), "u", password], check=True, timeout=10)
    theirs = identity.read_passwd(path)["u"]
    assert theirs.startswith("$7$")
    assert identity.verify_password(password, theirs)
    assert not identity.verify_password(password + "x", theirs)
    # same salt and iterations -> the same hash as the tool's
    _, _, iterations, salt, _ = theirs.split("$")
    import base64

    ours = identity.hash_password(password, salt=base64.b64decode(salt), iterations=int(iterations))
    assert ours == theirs


def test_devices_log_in_and_strangers_do_not(fleet: Fleet) -> None:
    for name, password in [(None, None), (A, "wrong"), ("nobody", "x"), (A, fleet.password(B))]:
        client = fleet.client(name, password)
        answer = client.connect()
        client.close()
        assert answer.failed, f"{name}/{password} was let in"
    client = fleet.client(A)
    assert not client.connect().failed
    client.close()


def test_a_device_cannot_publish_as_another_nor_read_it(fleet: Fleet) -> None:
    a, b, sink = fleet.client(A), fleet.client(B), fleet.client(identity.DEFAULT_SINK_USER)
    try:
        for c in (a, b, sink):
            assert not c.connect().failed
        assert not sink.subscribe("contactpoint/v1/+/+/+").failed
        # A on B's topics: refused with MQTT 5 "Not authorized", nothing reaches the sink
        for kind in ("contact", "event", "clip", "status"):
            answer = a.publish(f"{root(B)}/{kind}", forged_contact(B))
            assert answer.failed, (kind, answer)
            assert "Not authorized" in str(answer), (kind, answer)
        # ...nor at another site, nor on its own command topic, nor outside the tree
        for topic in (f"{root(A, 'site-2')}/contact", f"{root(A)}/cmd/resend", "other/x"):
            assert a.publish(topic, b"{}").failed, topic
        # A's own topic works and the sink (which reads all) gets it
        assert not a.publish(f"{root(A)}/contact", forged_contact(A)).failed
        topic, _ = sink.received.get(timeout=STALL_S)
        assert topic == f"{root(A)}/contact"
        assert sink.received.empty()
        # A subscribing to B: mosquitto 2.0 grants a wildcard filter but checks the read ACL
        # on every message it would deliver, so B's messages never reach A
        for topic_filter in (f"{root(B)}/#", f"{root(B)}/status", "contactpoint/v1/#", "#"):
            a.subscribe(topic_filter)
        assert not b.publish(f"{root(B)}/status", forged_contact(B)).failed
        assert not b.publish(f"{root(B)}/contact", forged_contact(B)).failed
        assert sink.received.get(timeout=STALL_S)[0] == f"{root(B)}/status"
        assert sink.received.get(timeout=STALL_S)[0] == f"{root(B)}/contact"
        # the sink may ask a device for a resend, and A hears only its own
        assert not sink.publish(f"{root(B)}/cmd/resend", b'{"clip_id":"y","seqs":[0]}').failed
        assert not sink.publish(f"{root(A)}/cmd/resend", b'{"clip_id":"x","seqs":[0]}').failed
        # delivery is in order: had anything of B's reached A, it would come first
        assert a.received.get(timeout=STALL_S)[0] == f"{root(A)}/cmd/resend"
        # the sink may not speak for a device
        assert sink.publish(f"{root(A)}/contact", forged_contact(A)).failed
        heard = {a.received.get_nowait()[0] for _ in range(a.received.qsize())}
        assert heard <= {f"{root(A)}/cmd/resend"}  # overlapping filters: the same one again
    finally:
        for c in (a, b, sink):
            c.close()


def test_delivery_receipts_come_only_from_the_sink_and_reach_only_their_device(
    fleet: Fleet,
) -> None:
    a, b, sink = fleet.client(A), fleet.client(B), fleet.client(identity.DEFAULT_SINK_USER)
    receipt = b'{"schema":1,"kind":"delivered","device":"cp-a","site":"site-1","msg_ids":[]}'
    try:
        for c in (a, b, sink):
            assert not c.connect().failed
        assert not a.subscribe(f"{root(A)}/cmd/delivered").failed
        b.subscribe(f"{root(A)}/cmd/#")  # granted as a filter, but nothing of A's reaches B
        # a device cannot confirm its own messages, nor another's
        for topic in (f"{root(A)}/cmd/delivered", f"{root(B)}/cmd/delivered"):
            answer = a.publish(topic, receipt)
            assert answer.failed, topic
            assert "Not authorized" in str(answer), topic
        assert not sink.publish(f"{root(A)}/cmd/delivered", receipt).failed
        assert a.received.get(timeout=5) == (f"{root(A)}/cmd/delivered", receipt)
        # B heard nothing: its own resend request, sent after, is the first thing it gets
        assert not b.subscribe(f"{root(B)}/cmd/resend").failed
        assert not sink.publish(f"{root(B)}/cmd/resend", b'{"clip_id":"y","seqs":[0]}').failed
        assert b.received.get(timeout=5)[0] == f"{root(B)}/cmd/resend"
    finally:
        for c in (a, b, sink):
            c.close()


def test_the_sink_rejects_a_payload_whose_device_disagrees_with_its_topic(
    fleet: Fleet, tmp_path: Path
) -> None:
    config = SinkConfig(
        broker=fleet.broker.url,
        data_dir=tmp_path / "sink",
        username=identity.DEFAULT_SINK_USER,
        password=fleet.password(identity.DEFAULT_SINK_USER),
        backoff_min_s=0.05,
    )
    a = fleet.client(A)
    with Sink(config) as sink:
        assert sink.subscribed.wait(STALL_S)
        assert not a.connect().failed
        # on A's own topic, but claiming to be B: the broker lets it through, the sink refuses
        assert not a.publish(f"{root(A)}/contact", forged_contact(B)).failed
        # on B's topic: the broker refuses it
        assert a.publish(f"{root(B)}/contact", forged_contact(B)).failed
        # a genuine one from A, to know when the sink has seen everything before it
        good = contact_message(contact_id="ef" * 16)
        good["device"], good["site"] = A, SITE
        assert not a.publish(f"{root(A)}/contact", encode(good)).failed
        wait_until(lambda: _stored(sink) >= 1, "A's contact in the sink")
        a.close()
        with sink.db.connection_context():
            dead = sink.ingest.dead_letters()
            devices = [d["device"] for d in sink.ingest.devices()]
            contacts = list(sink.ingest.contacts())
    assert [(d["reason"], d["topic"]) for d in dead] == [("mismatch", f"{root(A)}/contact")]
    assert "'cp-b'" in dead[0]["detail"]
    assert devices == [A]
    assert [(c["device"], c["id"]) for c in contacts] == [(A, "ef" * 16)]


def _stored(sink: Sink) -> int:
    with sink.db.connection_context():
        return sum(1 for _ in sink.ingest.contacts())


def test_provision_cli_prints_paths_never_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioning.main import main

    out = tmp_path / A
    assert main(["provision", "device", A, "--site", SITE, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    password = (out / "password").read_text().strip()
    assert password not in printed.out + printed.err
    assert str(out / "password") in printed.out
    accounts = json.loads((tmp_path / "broker" / "accounts.json").read_text())
    assert accounts["devices"] == {A: SITE}
    assert accounts["sinks"] == []
    assert accounts["broker"]["root"] == "/etc/mosquitto/contactpoint"
    assert main(["provision", "device", A, "--site", "Bad Site", "--out", str(out)]) == 2
    assert "not a valid name" in capsys.readouterr().err


def test_the_sinks_default_client_id_is_not_guessable(tmp_path: Path) -> None:
    """On a broker that takes client ids as given (not the one provision configures), a device
    connecting with the well-known 'contactpoint-sink' and clean start used to throw away the
    sink's session and its queued messages. With a password the id carries a tag of it."""

    def config(password: str, group: str | None = None) -> SinkConfig:
        return SinkConfig(
            broker=broker.url, data_dir=tmp_path / "sink", password=password, group=group,
            username=identity.DEFAULT_SINK_USER, backoff_min_s=0.05,
        )  # fmt: skip

    with LocalBroker(tmp_path / "mosq") as broker:  # anonymous, ids as given
        sink_config = config("S3cr3t-sink")
        own = sink_config.effective_client_id
        assert own == config("S3cr3t-sink").effective_client_id  # stable: the session is found
        assert own not in ("contactpoint-sink", config("other").effective_client_id)
        assert own.startswith("contactpoint-sink-")
        assert "S3cr3t" not in own
        assert config("S3cr3t-sink", "g").effective_client_id.startswith("contactpoint-sink-g-")
        with Sink(sink_config) as sink:
            assert sink.subscribed.wait(STALL_S)
        device = Client(broker.port)
        assert not device.connect().failed
        for n in range(3):
            good = contact_message(contact_id=f"{n:032x}", msg_id=f"{n + 9:032x}")
            good["device"], good["site"] = A, SITE
            assert not device.publish(f"{root(A)}/contact", encode(good)).failed
        device.close()
        thief = Client(broker.port, client_id="contactpoint-sink")  # clean start
        assert not thief.connect().failed
        thief.close()
        with Sink(sink_config) as sink:
            assert sink.subscribed.wait(STALL_S)
            wait_until(lambda: _stored(sink) == 3, "the 3 contacts queued for the sink")
