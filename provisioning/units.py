"""The systemd files shipped with the package (provisioning/systemd/), read by the card
(``contactpoint provision card``) to install them on first boot:

- ``contactpoint-edge.service``: the device daemon (``Type=notify``, watchdog; edge/service.py);
- ``contactpoint-update.service``: the device's updater (signed ``cmd/update`` requests,
  edge/update/listen.py; root, as it installs releases and restarts the daemon);
- ``contactpoint-sink.service``: the central sink (cloud_sink/service.py);
- ``contactpoint-enroll.service``: the enrollment service (``contactpoint fleet serve``,
  provisioning/enroll.py);
- ``contactpoint-watchdog.conf``: a system.conf drop-in that has systemd feed the board's
  hardware watchdog (``RuntimeWatchdogSec``).
"""

from __future__ import annotations

from importlib.resources import files

UNITS = (
    "contactpoint-edge.service",
    "contactpoint-update.service",
    "contactpoint-sink.service",
    "contactpoint-enroll.service",
    "contactpoint-watchdog.conf",
)


def unit_text(name: str) -> str:
    if name not in UNITS:
        raise ValueError(f"unknown systemd file {name!r}; expected one of {UNITS}")
    return (files("provisioning") / "systemd" / name).read_text(encoding="utf-8")
