"""TLS against a real mosquitto: certificates from provisioning/pki.py; the publisher and the
sink connect with the right files and fail with a clear error (naming the file and the problem)
with a wrong CA, an expired client certificate or one from a CA the broker does not trust."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud_sink import Sink, SinkConfig
from edge.clock import FakeClock
from edge.config import MqttSection
from edge.publish import wire
from edge.publish.mqtt import Publisher
from edge.store import Store
from provisioning import pki
from provisioning.broker import LocalBroker, free_port
from provisioning.main import main
from tests.cloud_sink.helpers import wait_until
from tests.security.helpers import tls_listener
from tests.waiting import STALL_S
from tests.wire_samples import DEVICE, ORPHAN, SITE

WAIT_S = STALL_S  # generous: returns as soon as the answer is there


@dataclass
class Pki:
    dir: Path

    def __getitem__(self, name: str) -> str:
        return str(self.dir / name)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC)
    ca = pki.create_ca(d)
    other = pki.create_ca_cert("some other CA")
    (d / "other-ca.crt").write_bytes(other.cert_pem())
    pki.issue(ca, "localhost", server_hosts=("127.0.0.1", "localhost")).save(
        d / "server.crt", d / "server.key"
    )
    pki.issue(ca, DEVICE).save(d / "device.crt", d / "device.key")
    pki.issue(ca, "contactpoint-sink").save(d / "sink.crt", d / "sink.key")
    pki.issue(
        ca, DEVICE, not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    ).save(d / "expired.crt", d / "expired.key")
    pki.issue(other, DEVICE).save(d / "stranger.crt", d / "stranger.key")
    return Pki(d)


@dataclass
class TlsBroker:
    broker: LocalBroker
    url: str


@pytest.fixture
def tls_broker(tmp_path: Path, certs: Pki) -> Iterator[TlsBroker]:
    port = free_port()
    extra = tls_listener(port, certs.dir, require_certificate=True)
    with LocalBroker(tmp_path / "broker", extra=extra) as broker:
        yield TlsBroker(broker, f"mqtts://127.0.0.1:{port}")


class Device:
    """A store with one orphan event queued, and publishers on it (stopped at the end)."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "device"
        self.store = Store.open(self.data / "contactpoint.db")
        assert self.store.save_event(ORPHAN, [wire.event_message(ORPHAN, DEVICE, SITE)])
        self.publishers: list[Publisher] = []

    def publisher(self, url: str, **files: str) -> Publisher:
        cfg = MqttSection(broker=url, backoff_min_s=0.05, backoff_max_s=0.2).replace(**files)
        pub = Publisher(
            cfg, device=DEVICE, site=SITE, data_dir=self.data, store=self.store,
            version="test", clock=FakeClock(),
        )  # fmt: skip
        self.publishers.append(pub)
        pub.start()
        return pub

    def close(self) -> None:
        for pub in self.publishers:
            pub.stop()
        self.store.close()


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    d = Device(tmp_path)
    yield d
    d.close()


def device_files(certs: Pki, cert: str = "device", ca: str = "ca.crt") -> dict[str, str]:
    return {
        "ca_file": certs[ca],
        "cert_file": certs[f"{cert}.crt"],
        "key_file": certs[f"{cert}.key"],
    }


def sink_config(tmp_path: Path, url: str, certs: Pki, **overrides: Any) -> SinkConfig:
    settings: dict[str, Any] = {
        "broker": url, "data_dir": tmp_path / "sink", "ca_file": certs["ca.crt"],
        "cert_file": certs["sink.crt"], "key_file": certs["sink.key"],
        "backoff_min_s": 0.05, "backoff_max_s": 0.2,
    }  # fmt: skip
    settings.update(overrides)
    return SinkConfig(**settings)


def failure_of(pub: Publisher, needle: str) -> str:
    wait_until(lambda: needle in pub.stats.last_error, f"{needle!r} in last_error", WAIT_S)
    assert not pub.connected
    return pub.stats.last_error


def test_device_and_sink_connect_over_tls_end_to_end(
    tmp_path: Path, certs: Pki, tls_broker: TlsBroker, device: Device
) -> None:
    with Sink(sink_config(tmp_path, tls_broker.url, certs)) as sink:
        assert sink.subscribed.wait(WAIT_S), "the sink did not subscribe over TLS"
        pub = device.publisher(tls_broker.url, **device_files(certs))
        assert pub.drain(WAIT_S), pub.stats.last_error

        def stored() -> int:
            with sink.db.connection_context():
                return len(sink.ingest.devices())

        wait_until(lambda: stored() == 1, "the event in the sink", WAIT_S)
    assert pub.stats.last_error == ""


def test_the_device_names_a_wrong_ca_file(
    certs: Pki, tls_broker: TlsBroker, device: Device
) -> None:
    pub = device.publisher(tls_broker.url, **device_files(certs, ca="other-ca.crt"))
    error = failure_of(pub, "not signed by the CA")
    assert f"mqtt.ca_file {certs['other-ca.crt']}" in error
    assert "certificate verify failed" in error
    assert device.store.outbox.depth() == 1  # nothing lost


def test_the_device_names_its_expired_certificate(
    certs: Pki, tls_broker: TlsBroker, device: Device
) -> None:
    pub = device.publisher(tls_broker.url, **device_files(certs, cert="expired"))
    error = failure_of(pub, "expired on")
    assert f"mqtt.cert_file {certs['expired.crt']}" in error
    assert "refused the client certificate" in error
    assert device.store.outbox.depth() == 1


def test_the_device_names_a_certificate_the_broker_does_not_trust(
    certs: Pki, tls_broker: TlsBroker, device: Device
) -> None:
    pub = device.publisher(tls_broker.url, **device_files(certs, cert="stranger"))
    error = failure_of(pub, certs["stranger.crt"])
    assert "client certificate" in error
    assert device.store.outbox.depth() == 1


def test_the_device_is_refused_without_a_client_certificate(
    certs: Pki, tls_broker: TlsBroker, device: Device
) -> None:
    pub = device.publisher(tls_broker.url, ca_file=certs["ca.crt"])
    error = failure_of(pub, "closed the connection")
    assert "TLS" in error or "connection" in error
    assert device.store.outbox.depth() == 1


def test_the_sink_logs_a_wrong_ca_file(
    tmp_path: Path, certs: Pki, tls_broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cloud_sink")
    config = sink_config(tmp_path, tls_broker.url, certs, ca_file=certs["other-ca.crt"])
    with Sink(config) as sink:
        wait_until(lambda: "not signed by the CA" in caplog.text, "the sink's TLS error", WAIT_S)
        assert not sink.subscribed.is_set()
    assert f"sink.ca_file {certs['other-ca.crt']}" in caplog.text


def test_the_sink_logs_a_refused_client_certificate(
    tmp_path: Path, certs: Pki, tls_broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cloud_sink")
    config = sink_config(
        tmp_path,
        tls_broker.url,
        certs,
        cert_file=certs["expired.crt"],
        key_file=certs["expired.key"],
    )
    with Sink(config) as sink:
        wait_until(lambda: "expired on" in caplog.text, "the sink's TLS error", WAIT_S)
        assert not sink.subscribed.is_set()
    assert f"sink.cert_file {certs['expired.crt']}" in caplog.text


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--cert-file", "expired.crt", "--key-file", "expired.key"], "expired on"),
        (["--cert-file", "device.crt", "--key-file", "sink.key"], "not a matching PEM"),
        (["--ca-file", "absent.crt"], "absent.crt does not exist"),
        (["--ca-file", "device.key"], "is not a PEM CA certificate"),
    ],
)
def test_sink_run_refuses_bad_tls_files_at_once(
    tmp_path: Path,
    certs: Pki,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    expected: str,
) -> None:
    base = {"--ca-file": "ca.crt", "--cert-file": "sink.crt", "--key-file": "sink.key"}
    for flag, name in zip(flags[::2], flags[1::2], strict=True):
        base[flag] = name
    argv = ["sink", "run", "--broker", "mqtts://127.0.0.1:1", "--data", str(tmp_path / "s")]
    for flag, name in base.items():
        argv += [flag, certs[name]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "sink." in err
