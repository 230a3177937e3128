"""The systemd units shipped in provisioning/systemd/: ``systemd-analyze verify`` passes on each
(in a root holding the executable they start, as the card installs it), and they ask for what
the daemons need (edge/service.py, cloud_sink/service.py)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from provisioning.units import UNITS, unit_text

SYSTEM_UNITS = Path("/lib/systemd/system")  # Debian's units (sysinit.target ...) for the root
EXECUTABLE = "opt/contactpoint/current/bin/contactpoint"


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package)")
    probe = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"systemd-analyze cannot run here: {probe.stderr.strip()}")
    if not (SYSTEM_UNITS / "sysinit.target").exists():
        pytest.skip(f"{SYSTEM_UNITS} holds no systemd units to verify against")
    return tool


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    exe = root / EXECUTABLE
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    return root


def _verify(tool: str, root: Path, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "verify", "--man=no", f"--root={root}", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", [n for n in UNITS if n.endswith(".service")])
def test_systemd_analyze_verify_passes_without_a_warning(tmp_path: Path, name: str) -> None:
    tool = _analyze()
    root = _root(tmp_path)
    unit = root / "etc/systemd/system" / name
    unit.write_text(unit_text(name))
    done = _verify(tool, root, unit)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    # the same check notices a mistake: a misspelt key is a warning it prints
    unit.write_text(unit_text(name).replace("TimeoutStopSec=", "TimeoutStopSecs="))
    broken = _verify(tool, root, unit)
    assert "Unknown key 'TimeoutStopSecs'" in broken.stdout + broken.stderr


def _service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit_text(name))
    return parser["Service"]


@pytest.mark.parametrize("name", ["contactpoint-edge.service", "contactpoint-sink.service"])
def test_units_are_notify_watchdogged_restarted_confined(name: str) -> None:
    service = _service(name)
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert int(service["WatchdogSec"]) > 0
    assert service["User"].startswith("contactpoint")
    assert service["User"] != "root"
    assert service["StateDirectory"]
    assert service["ConfigurationDirectory"]
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["NoNewPrivileges"] == "yes"
    assert service["DevicePolicy"] == "closed"


def test_the_device_daemon_may_open_gpio_sound_and_serial_only() -> None:
    text = unit_text("contactpoint-edge.service")
    allowed = {
        line.split("=", 1)[1].split()[0]
        for line in text.splitlines()
        if line.startswith("DeviceAllow=")
    }
    assert allowed == {
        "char-gpiochip",
        "/dev/gpiomem",
        "char-alsa",
        "char-ttyUSB",
        "char-ttyACM",
        "char-spi",
    }
    assert "gpio audio dialout spi" in _service("contactpoint-edge.service")["SupplementaryGroups"]


def test_the_enrollment_service_runs_confined_as_its_own_user() -> None:
    service = _service("contactpoint-enroll.service")
    assert service["Type"] == "notify"  # fleet serve says READY=1 once subscribed
    assert service["Restart"] == "on-failure"
    assert " fleet serve --db /var/lib/contactpoint-enroll/" in service["ExecStart"]
    assert service["ExecStart"].startswith(f"/{EXECUTABLE} ")
    assert service["User"] == "contactpoint-enroll"  # not the sink's: it holds the admin account
    assert service["StateDirectory"] == "contactpoint-enroll"
    assert service["ConfigurationDirectory"] == "contactpoint-enroll"
    assert service["UMask"] == "0077"
    for key, value in (("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
                       ("NoNewPrivileges", "yes"), ("DevicePolicy", "closed"),
                       ("CapabilityBoundingSet", "")):  # fmt: skip
        assert service[key] == value, key


def test_the_updater_runs_the_listener_and_writes_only_the_install_root() -> None:
    service = _service("contactpoint-update.service")
    assert service["Type"] == "notify"
    assert service["Restart"] == "always"  # it exits after an update to start from the new one
    assert service["ExecStart"].startswith(f"/{EXECUTABLE} update --listen ")
    assert "--fleet-key /etc/contactpoint/update.pub" in service["ExecStart"]
    assert "User" not in service  # root: it installs releases and restarts the daemon
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/opt/contactpoint"
    assert service["NoNewPrivileges"] == "yes"
    assert service["DevicePolicy"] == "closed"
