"""The README's main job, `contactpoint demo`, on a short shift."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from rich.console import Console

import provisioning.broker
from cloud_sink.metrics import DEFINITIONS
from provisioning.demo import DEVICE, print_result, run_demo
from provisioning.main import main


def test_demo_delivers_every_contact_with_verified_audio(tmp_path: Path) -> None:
    console = Console(record=True, width=160)
    result = run_demo(tmp_path / "demo", minutes=20, speed=600, console=console, serve=True)
    assert result.web is not None
    try:
        check_the_web_page(result.web.url, result.web.user, result.web.password)
        print_result(result, console)
        shown = " ".join(console.export_text(clear=False).split())
        assert f"log in as {result.web.user} / {result.web.password}" in shown
        assert result.web.url in shown
    finally:
        result.web.stop()
    assert result.web.process.poll() is not None
    assert result.edge.contacts >= 5
    assert result.arrived == result.edge.contacts
    assert result.verified_clips == result.edge.clips == result.edge.contacts
    assert result.metrics.contacts_served > 0
    assert sum(result.tags.values()) > 0
    # the spell of red ratings in the middle raises alerts on the device and in the sink, and
    # the managers' topic gets every negative contact and every device alert
    assert "negative_burst" in result.device_alerts
    assert "negative_burst" in result.site_alerts
    assert result.tags["negative"] >= 4
    assert (
        result.routed
        == result.routed_expected
        == result.tags["negative"] + len(result.device_alerts)
    )
    assert result.metrics.contacts_served == result.counts.served
    # personal conversion is receipts / contacts served (not the productive share)
    assert result.counts.receipts > 0
    assert result.metrics.personal_conversion == result.counts.receipts / result.counts.served
    assert result.metrics.productive_share == result.counts.productive / result.counts.served
    # the sink's clip files are there and the broker, sink and edge each had their directory
    assert len(list((tmp_path / "demo" / "sink" / "clips").rglob("*.wav"))) == result.edge.clips
    assert "sink: subscribed" in console.export_text()
    # every printed metric says what it divides by what
    print_result(result, console)
    shown = " ".join(console.export_text().split())
    for d in DEFINITIONS:
        assert d.label in shown, d.key
    assert "personal conversion (receipts / contacts served)" in shown
    assert "silent customers (silent / contacts served)" in shown


def check_the_web_page(url: str, user: str, password: str) -> None:
    """The demo's web page answers, refuses a wrong password and lets the demo login in."""
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/contacts", follow_redirects=False).status_code in (302, 303, 401)
        form = c.get("/login")
        assert form.status_code == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        wrong = c.post(
            "/login", data={"username": user, "password": password + "x",
                            "csrf_token": token.group(1)},
        )  # fmt: skip
        assert wrong.headers.get("location", "").startswith("/login?")  # back, with the error
        form = c.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        r = c.post(
            "/login", data={"username": user, "password": password, "csrf_token": token.group(1)}
        )
        assert r.status_code == 303
        assert r.headers["location"] == "/"
        page = c.get("/contacts")
        assert page.status_code == 200
        assert DEVICE in page.text


def test_demo_says_what_is_missing_without_mosquitto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(provisioning.broker, "MOSQUITTO_CANDIDATES", ("no-such-mosquitto",))
    code = main(["demo", "--data", str(tmp_path / "demo")])
    assert code == 2
    err = capsys.readouterr().err
    assert "mosquitto is not installed" in err
    assert "apt-get install mosquitto" in err
