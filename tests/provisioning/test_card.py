"""``contactpoint provision card``: the files for a flashed card's boot partition, checked with
the tools that read them (cloud-init's schema check, sh, the device's config loader)."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from edge import __version__
from edge.config import load_config
from provisioning.main import main

TOKEN = "claim-3f9a61c2d7"
PSK = "counter-wifi-pass"


def fleet_file(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "claim.token").write_text(TOKEN + "\n")
    (tmp_path / "ca.crt").write_text(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "template.toml").write_text("[audio]\nstall_s = 20.0\n[device]\nid = 'x'\n")
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        "[fleet]\nname = 'shops'\nsite = 'berlin-1'\nbroker = 'mqtts://mq.example.net:8883'\n"
        "ca_cert = 'ca.crt'\nclaim_token_file = 'claim.token'\n"
        "device_template = 'template.toml'\ntimezone = 'Europe/Berlin'\n"
        "ssh_authorized_keys = ['ssh-ed25519 AAAAC3Nza maint@example']\n" + extra
    )
    return fleet


def card(tmp_path: Path, *more: str) -> Path:
    out = tmp_path / "card"
    args = ["provision", "card", "--out", str(out), "--fleet", str(fleet_file(tmp_path))]
    assert main([*args, "--name", "till-3", *more]) == 0
    return out


def wifi(tmp_path: Path) -> list[str]:
    (tmp_path / "psk").write_text(PSK + "\n")
    return [
        "--wifi-ssid",
        "Shop Wi-Fi",
        "--wifi-psk-file",
        str(tmp_path / "psk"),
        "--country",
        "DE",
    ]


def test_user_data_passes_cloud_inits_schema_check(tmp_path: Path) -> None:
    tool = shutil.which("cloud-init")
    if tool is None:
        pytest.skip("cloud-init is not installed (Debian's cloud-init package)")
    out = card(tmp_path, *wifi(tmp_path))
    done = subprocess.run(
        [tool, "schema", "--config-file", str(out / "user-data")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Valid cloud-config" in done.stdout
    # the check notices a mistake: a user with an unknown key
    broken = tmp_path / "broken"
    broken.write_text((out / "user-data").read_text().replace("lock_passwd:", "lock_password:"))
    bad = subprocess.run(
        [tool, "schema", "--config-file", str(broken)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode != 0


def test_first_boot_creates_the_user_and_runs_the_install(tmp_path: Path) -> None:
    out = card(tmp_path)
    doc = yaml.safe_load((out / "user-data").read_text())
    assert doc["hostname"] == "till-3"
    assert doc["timezone"] == "Europe/Berlin"
    daemon = next(u for u in doc["users"] if u["name"] == "contactpoint")
    assert daemon["system"] is True
    assert daemon["groups"] == ["gpio", "audio", "dialout", "spi"]
    assert "install.sh" in str(doc["runcmd"])
    meta = yaml.safe_load((out / "meta-data").read_text())
    assert meta["local-hostname"] == "till-3"
    assert meta["instance-id"].startswith("contactpoint-")
    for script in (out / "firstrun.sh", out / "contactpoint" / "install.sh"):
        assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0, script
        assert script.stat().st_mode & stat.S_IXUSR
    install = (out / "contactpoint" / "install.sh").read_text()
    assert "RELEASE=/opt/contactpoint/releases/$VERSION" in install
    assert f"VERSION={__version__}\n" in install
    assert 'ln -sfn "$RELEASE" /opt/contactpoint/current.new' in install
    assert "dtparam=spi=on" in install
    assert "RuntimeWatchdog" not in install
    assert "systemctl enable --now contactpoint-edge.service" in install
    watchdog = (out / "contactpoint" / "contactpoint-watchdog.conf").read_text()
    assert "RuntimeWatchdogSec=" in watchdog
    assert "Type=notify" in (out / "contactpoint" / "contactpoint-edge.service").read_text()


def test_the_release_venv_is_made_where_it_stays(tmp_path: Path) -> None:
    """A venv's scripts name its own path in their #! line: one made in a '.partial'
    directory and renamed has a bin/contactpoint that cannot start (found on the emulated
    arm64 device, docs/EMULATION.md). The venv is made at its final path; a marker written
    after pip succeeded says the release is complete, and a half-made one is made again."""
    install = (card(tmp_path) / "contactpoint" / "install.sh").read_text()
    release = install.split("# the release:")[1].split("# configuration")[0]
    assert ".partial" not in release
    assert 'python3 -m venv --system-site-packages "$RELEASE"' in release
    assert 'if [ ! -f "$RELEASE/.complete" ]; then' in release
    assert release.index('rm -rf "$RELEASE"') < release.index("python3 -m venv")
    assert release.index('pip" install') < release.index('touch "$RELEASE/.complete"')
    assert release.index('touch "$RELEASE/.complete"') < release.index("ln -sfn")


def test_the_device_config_is_the_fleets_template_for_this_device(tmp_path: Path) -> None:
    out = card(tmp_path)
    cfg = load_config(out / "contactpoint" / "device.toml")
    assert (cfg.device.id, cfg.device.site) == ("till-3", "berlin-1")
    assert cfg.mqtt.broker == "mqtts://mq.example.net:8883"
    assert cfg.mqtt.ca_file == "/etc/contactpoint/ca.crt"
    assert cfg.audio.stall_s == 20.0  # from the template
    assert (out / "contactpoint" / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE")


def test_only_the_claim_token_file_holds_the_token_and_it_is_private(tmp_path: Path) -> None:
    out = card(tmp_path, *wifi(tmp_path))
    token = out / "contactpoint" / "claim.token"
    assert token.read_text().strip() == TOKEN
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    others = [p for p in out.rglob("*") if p.is_file() and p != token]
    assert others
    assert not [p for p in others if TOKEN in p.read_text()]
    install = (out / "contactpoint" / "install.sh").read_text()
    assert 'install -m 0600 -o contactpoint -g contactpoint "$CARD/claim.token"' in install
    assert 'rm -f "$CARD/claim.token"' in install


def test_wifi_goes_into_network_config(tmp_path: Path) -> None:
    net = yaml.safe_load((card(tmp_path, *wifi(tmp_path)) / "network-config").read_text())
    wlan = net["network"]["wifis"]["wlan0"]
    assert wlan["access-points"] == {"Shop Wi-Fi": {"password": PSK}}
    assert wlan["regulatory-domain"] == "DE"
    assert net["network"]["ethernets"]["eth0"]["dhcp4"]
    (tmp_path / "b").mkdir()
    wired = yaml.safe_load((card(tmp_path / "b") / "network-config").read_text())
    assert "wifis" not in wired["network"]


def test_the_card_carries_the_wheelhouse_and_installs_offline_from_it(tmp_path: Path) -> None:
    house = tmp_path / "wheels"
    house.mkdir()
    own = f"contactpoint-{__version__}-py3-none-any.whl"
    for name in (own, "numpy-2.2.1-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"):
        (house / name).write_bytes(b"PK")
    out = card(tmp_path, "--wheelhouse", str(house))
    assert sorted(p.name for p in (out / "contactpoint" / "wheelhouse").iterdir()) == sorted(
        p.name for p in house.iterdir()
    )
    install = (out / "contactpoint" / "install.sh").read_text()
    assert '--no-index --find-links "$CARD/wheelhouse"' in install
    assert '"contactpoint[edge,pi]==$VERSION"' in install
    (house / own).unlink()
    fleet = tmp_path / "fleet.toml"
    args = ["provision", "card", "--out", str(tmp_path / "c2"), "--fleet", str(fleet)]
    assert main([*args, "--name", "till-3", "--wheelhouse", str(house)]) == 2


def test_without_a_wheelhouse_it_installs_from_the_index(tmp_path: Path) -> None:
    install = (card(tmp_path) / "contactpoint" / "install.sh").read_text()
    assert "--no-index" not in install
    assert "wheelhouse" not in install.split("set -eu")[1]


@pytest.mark.parametrize(
    ("extra", "args", "message"),
    [
        ("brokr = 'x'\n", [], "Did you mean"),
        ("", ["--name", "Till 3"], "--name 'Till 3'"),
        ("", ["--wifi-ssid", "x"], "--wifi-ssid and --wifi-psk-file go together"),
        ("", ["--country", "Germany"], "--country 'Germany'"),
    ],
)
def test_mistakes_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, args: list[str], message: str
) -> None:
    fleet = fleet_file(tmp_path, "")
    if extra:
        fleet.write_text(fleet.read_text() + extra)
    base = ["provision", "card", "--out", str(tmp_path / "card"), "--fleet", str(fleet)]
    if "--name" not in args:
        base += ["--name", "till-3"]
    assert main([*base, *args]) == 2
    assert message in capsys.readouterr().err


def test_the_wheelhouse_script_is_valid_bash_for_both_pythons() -> None:
    script = Path(__file__).resolve().parents[2] / "provisioning" / "wheelhouse.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    assert 'PYTHONS=${PYTHONS:-"3.11 3.13"}' in text
    assert "--only-binary=:all:" in text
    assert "--platform manylinux2014_aarch64" in text
