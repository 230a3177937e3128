"""``contactpoint provision card``: what goes onto the FAT boot partition of a freshly flashed
Raspberry Pi OS Lite (64-bit) image, so that the device installs itself on first boot with no
keyboard on site.

The card directory holds:

- ``user-data``, ``meta-data``, ``network-config``: a cloud-init NoCloud seed (trixie images
  read it from the boot partition). ``user-data`` creates the ``contactpoint`` system user
  (groups gpio, audio, dialout, spi), sets the host name and time zone, and runs
  ``contactpoint/install.sh``; it reboots once afterwards when the install enabled SPI.
- ``firstrun.sh``: the same for older images without cloud-init, started from ``cmdline.txt``
  (``systemd.run=``) as Raspberry Pi Imager does: it runs ``install.sh``, removes itself and its
  ``cmdline.txt`` arguments, and reboots.
- ``contactpoint/``: ``install.sh`` (idempotent), the device's ``device.toml`` (the fleet's
  template with this device's id, site and broker), the fleet CA certificate, the systemd unit
  and watchdog drop-in (provisioning/systemd/), with the fleet's ``update_key`` the updater's
  unit and ``update.pub``, the wheelhouse (``--wheelhouse``), and the
  claim token (``claim.token``, 0600 here; on the device it is moved to
  ``/var/lib/contactpoint/claim.token``, 0600, and removed from the boot partition).

``install.sh`` installs the wheels into a venv ``/opt/contactpoint/releases/<version>``
(``--system-site-packages``: Debian's python3-systemd serves systemd-python, which has no wheel)
with no compiler and, with a wheelhouse, no network (in place, complete once its
``.release.json`` marker is written, as ``contactpoint update`` does: edge/update/releases.py);
then switches the ``current`` link atomically, writes ``/etc/contactpoint``, enables SPI
(``dtparam=spi=on``), the hardware watchdog (``RuntimeWatchdogSec``, a system.conf drop-in)
and the units, and starts them.

The card carries no long-lived secret: the claim token only lets a device ask to be enrolled
(it expires, has limited uses); the Wi-Fi passphrase, when given, is the site's own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tomlkit
from msgspec import Meta

from contract.alerts import NAME_PATTERN
from contract.cli import UserError
from contract.config import SECRET, ConfigError, Section, load
from edge.update.releases import MARKER
from provisioning.units import unit_text

#: where the package lives on the device
RELEASES = "/opt/contactpoint/releases"
CURRENT = "/opt/contactpoint/current"
CARD_DIR = "contactpoint"  # the card's own directory on the boot partition
DEVICE_GROUPS = ("gpio", "audio", "dialout", "spi")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class FleetSection(Section):
    name: Annotated[str, Meta(pattern=NAME_PATTERN, description="The fleet's name")] = "fleet"
    site: Annotated[
        str, Meta(pattern=NAME_PATTERN, description="The site new devices belong to")
    ] = "site-1"
    broker: Annotated[
        str,
        Meta(
            pattern=r"^mqtts?://[^/\s]+$",
            description="The fleet's broker, as the devices reach it: mqtts://HOST:PORT",
        ),
    ] = "mqtts://broker.example.net:8883"
    ca_cert: Annotated[
        str,
        Meta(
            description="The CA certificate the devices verify the broker with (PEM; relative "
            "to this file); empty: none (a plain mqtt:// broker)"
        ),
    ] = ""
    claim_token_file: Annotated[
        str,
        Meta(
            description="File holding the fleet's claim token (relative to this file): it "
            "only lets a device ask to be enrolled",
            extra=SECRET,
        ),
    ] = "claim.token"  # noqa: S105 - a file name, the token is in that file
    device_template: Annotated[
        str,
        Meta(
            description="A device configuration (TOML, relative to this file) every new "
            "device starts from; [device] id and site and [mqtt] broker are set per device; "
            "empty: the defaults"
        ),
    ] = ""
    update_key: Annotated[
        str,
        Meta(
            description="The fleet's public update key (relative to this file; 'contactpoint "
            "fleet init-signing' writes update.pub): the device then runs the updater, which "
            "installs only updates signed with its private key; empty: no remote updates"
        ),
    ] = ""
    timezone: Annotated[
        str, Meta(pattern=r"^[A-Za-z0-9_+/-]{1,64}$", description="The devices' time zone")
    ] = "UTC"
    ssh_authorized_keys: Annotated[
        list[str],
        Meta(description="Public SSH keys of the fleet's maintainers (none: no SSH login)"),
    ] = []  # noqa: RUF012 (an empty list default is copied per instance by msgspec)


class Fleet(Section):
    fleet: FleetSection = FleetSection()


@dataclass(frozen=True, slots=True)
class Card:
    directory: Path
    files: tuple[Path, ...]
    version: str
    wheels: int  # wheels carried on the card (0: installed from the package index)


def load_fleet(path: Path) -> Fleet:
    try:
        return load(Fleet, path, "fleet")
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def write_card(
    out: Path,
    fleet_path: Path,
    name: str,
    *,
    version: str,
    wifi_ssid: str | None = None,
    wifi_psk_file: Path | None = None,
    country: str | None = None,
    wheelhouse: Path | None = None,
) -> Card:
    """Write the card for device ``name`` into ``out`` (created; files in it are replaced)."""
    if re.fullmatch(NAME_PATTERN, name) is None:
        raise UserError(
            f"--name {name!r}: use lower-case letters, digits, '-' and '_' (it names the "
            "device's MQTT topics and its host name)"
        )
    fleet = load_fleet(fleet_path).fleet
    base = fleet_path.parent
    token = _read(base / fleet.claim_token_file, "fleet.claim_token_file").strip()
    if not token or any(c.isspace() for c in token):
        raise UserError(f"{base / fleet.claim_token_file}: the claim token must be one word")
    if (wifi_ssid is None) != (wifi_psk_file is None):
        raise UserError("--wifi-ssid and --wifi-psk-file go together")
    psk = None
    if wifi_psk_file is not None:
        psk = _read(wifi_psk_file, "--wifi-psk-file").strip()
        if not 8 <= len(psk) <= 63:
            raise UserError(f"--wifi-psk-file {wifi_psk_file}: a WPA passphrase has 8-63 chars")
    if country is not None and not _COUNTRY.fullmatch(country):
        raise UserError(f"--country {country!r}: a two-letter ISO 3166 code, e.g. DE")
    if wifi_ssid is not None and country is None:
        raise UserError("--wifi-ssid needs --country (the Wi-Fi regulatory domain), e.g. DE")
    wheels = _wheels(wheelhouse, version) if wheelhouse is not None else []
    device_toml = _device_toml(fleet, base, name)
    ca = _read(base / fleet.ca_cert, "fleet.ca_cert") if fleet.ca_cert else None
    update_key = _update_key(base / fleet.update_key) if fleet.update_key else None

    out.mkdir(parents=True, exist_ok=True)
    card = out / CARD_DIR
    card.mkdir(exist_ok=True)
    written: list[Path] = []

    def put(path: Path, text: str, mode: int = 0o644) -> None:
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        written.append(path)

    put(out / "user-data", _user_data(fleet, name))
    put(out / "meta-data", f"instance-id: contactpoint-{name}-{uuid.uuid4().hex[:12]}\n"
        f"local-hostname: {name}\n")  # fmt: skip
    put(out / "network-config", _network_config(wifi_ssid, psk, country))
    put(out / "firstrun.sh", _firstrun(name, fleet.timezone), 0o755)
    put(card / "install.sh", _install_sh(version, bool(wheels)), 0o755)
    put(card / "device.toml", device_toml)
    if ca is not None:
        put(card / "ca.crt", ca)
    put(card / "contactpoint-edge.service", unit_text("contactpoint-edge.service"))
    put(card / "contactpoint-watchdog.conf", unit_text("contactpoint-watchdog.conf"))
    if update_key is not None:
        put(card / "update.pub", update_key)
        put(card / "contactpoint-update.service", unit_text("contactpoint-update.service"))
    token_path = card / "claim.token"
    token_path.unlink(missing_ok=True)
    fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    written.append(token_path)
    if wheels:
        house = card / "wheelhouse"
        shutil.rmtree(house, ignore_errors=True)
        house.mkdir()
        for wheel in wheels:
            shutil.copy2(wheel, house / wheel.name)
        written.append(house)
    return Card(out, tuple(written), version, len(wheels))


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{what}: cannot read {path}: {exc}") from None


def _update_key(path: Path) -> str:
    from edge.update.manifest import ManifestError, read_key

    try:
        read_key(path, "fleet.update_key")
    except ManifestError as exc:
        raise UserError(f"{exc}: 'contactpoint fleet init-signing' writes one") from None
    return path.read_text(encoding="ascii").strip() + "\n"


def _wheels(wheelhouse: Path, version: str) -> list[Path]:
    wheels = sorted(wheelhouse.glob("*.whl"))
    ours = [w for w in wheels if w.name.startswith(f"contactpoint-{version}-")]
    if not ours:
        raise UserError(
            f"--wheelhouse {wheelhouse}: no contactpoint-{version}-*.whl in it; build it with "
            "provisioning/wheelhouse.sh (the package's own wheel and its arm64 dependencies)"
        )
    return wheels


def _device_toml(fleet: FleetSection, base: Path, name: str) -> str:
    """The fleet's template with this device's id, site and broker; checked as the device
    would check it."""
    from edge.config import load_config

    template = fleet.device_template
    text = _read(base / template, "fleet.device_template") if template else ""
    try:
        doc = tomlkit.parse(text)
    except Exception as exc:  # noqa: BLE001 - tomlkit's errors share no base: all are 'not TOML'
        raise UserError(f"{base / template}: not valid TOML: {exc}") from None
    device = doc.setdefault("device", tomlkit.table())
    device["id"] = name
    device["site"] = fleet.site
    mqtt = doc.setdefault("mqtt", tomlkit.table())
    mqtt["broker"] = fleet.broker
    if fleet.ca_cert:
        mqtt["ca_file"] = "/etc/contactpoint/ca.crt"
    rendered = tomlkit.dumps(doc)
    with tempfile.TemporaryDirectory() as tmp:  # checked by the device's own loader
        check = Path(tmp) / "device.toml"
        check.write_text(rendered, encoding="utf-8")
        try:
            load_config(check)
        except Exception as exc:  # noqa: BLE001 - whatever the loader says, said to the user
            raise UserError(f"fleet.device_template {base / template}: {exc}") from None
    return rendered


def _yaml(value: Any) -> str:
    """A YAML scalar (JSON is YAML): quoted, escaped."""
    return json.dumps(value)


def _user_data(fleet: FleetSection, name: str) -> str:
    groups = ", ".join(DEVICE_GROUPS)
    keys = "".join(f"\n      - {_yaml(k)}" for k in fleet.ssh_authorized_keys)
    maintainer = (
        "\n  - name: maintainer\n    gecos: fleet maintainer (SSH keys only)\n"
        f"    groups: [sudo]\n    lock_passwd: true\n    ssh_authorized_keys:{keys}"
        if keys
        else ""
    )
    return f"""#cloud-config
# contactpoint device {name} (fleet {fleet.name}): written by 'contactpoint provision card'
hostname: {_yaml(name)}
timezone: {_yaml(fleet.timezone)}
ssh_pwauth: false
groups:
  - gpio
  - spi
users:
  - name: contactpoint
    gecos: contactpoint device daemon
    system: true
    groups: [{groups}]
    shell: /usr/sbin/nologin
    homedir: /var/lib/contactpoint
    no_create_home: true
    lock_passwd: true{maintainer}
runcmd:
  # the card's boot partition: /boot/firmware (bookworm, trixie) or /boot (older)
  - [sh, -c, 'for d in /boot/firmware /boot; do if [ -x "$d/{CARD_DIR}/install.sh" ]; then exec "$d/{CARD_DIR}/install.sh"; fi; done; echo "contactpoint: install.sh not found" >&2; exit 1']
power_state:
  mode: reboot
  message: contactpoint installed; rebooting for SPI
  condition: [test, -e, /run/contactpoint-reboot]
"""  # noqa: E501


def _network_config(ssid: str | None, psk: str | None, country: str | None) -> str:
    lines = [
        "network:",
        "  version: 2",
        "  ethernets:",
        "    eth0:",
        "      dhcp4: true",
        "      optional: true",
    ]
    if ssid is not None and psk is not None:
        lines += [
            "  wifis:",
            "    wlan0:",
            "      dhcp4: true",
            "      optional: true",
            f"      regulatory-domain: {_yaml(country)}",
            "      access-points:",
            f"        {_yaml(ssid)}:",
            f"          password: {_yaml(psk)}",
        ]
    return "\n".join(lines) + "\n"


def _firstrun(name: str, timezone: str) -> str:
    return f"""#!/bin/sh
# contactpoint first boot for images without cloud-init. Append to cmdline.txt (one line):
#   systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target
# (/boot/firstrun.sh on images that mount the boot partition at /boot)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
hostnamectl set-hostname {_yaml(name)} 2>/dev/null || echo {_yaml(name)} > /etc/hostname
timedatectl set-timezone {_yaml(timezone)} 2>/dev/null || true
"$HERE/{CARD_DIR}/install.sh"
# run once: remove the kernel command line arguments and this script
sed -i 's| systemd.run[^ ]*||g; s| systemd.unit=kernel-command-line.target||' "$HERE/cmdline.txt"
rm -f "$0"
exit 0
"""  # noqa: E501


def _install_sh(version: str, wheelhouse: bool) -> str:
    groups = ",".join(DEVICE_GROUPS)
    # no wheelhouse on the card: from the package index (needs the network)
    source = '--no-index --find-links "$CARD/wheelhouse" ' if wheelhouse else ""
    script = """#!/bin/sh
# contactpoint @VERSION@: install on the device (idempotent; run as root by cloud-init's
# runcmd or firstrun.sh). Written by 'contactpoint provision card'.
set -eu
CARD=$(cd "$(dirname "$0")" && pwd)
BOOT=$(dirname "$CARD")
VERSION=@VERSION@
RELEASE=@RELEASES@/$VERSION
log() { echo "contactpoint install: $*"; logger -t contactpoint-install "$*" 2>/dev/null || true; }

# the daemon's user and the groups of its devices
for g in gpio spi; do getent group "$g" >/dev/null || groupadd --system "$g"; done
if ! id contactpoint >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/contactpoint --no-create-home \\
        --shell /usr/sbin/nologin --groups @GROUPS@ contactpoint
fi
usermod -a -G @GROUPS@ contactpoint

# SPI for an nRF24L01 receiver (a reboot applies it)
for c in "$BOOT/config.txt" /boot/firmware/config.txt /boot/config.txt; do
    if [ -f "$c" ]; then
        if ! grep -q '^dtparam=spi=on' "$c"; then
            echo 'dtparam=spi=on' >> "$c"
            touch /run/contactpoint-reboot
        fi
        break
    fi
done

# the release: a venv seeing Debian's python3-systemd, the wheels from the card, no compiler.
# Installed in place (a venv's scripts name its interpreter by path: it cannot be moved) and
# complete once @MARKER@ is there (contactpoint update reads the same marker).
if [ ! -f "$RELEASE/@MARKER@" ]; then
    log "installing $VERSION into $RELEASE"
    command -v apt-get >/dev/null && { dpkg -s python3-venv python3-systemd >/dev/null 2>&1 || \\
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
            python3-venv python3-systemd; }
    rm -rf "$RELEASE"
    python3 -m venv --system-site-packages "$RELEASE"
    "$RELEASE/bin/pip" install --disable-pip-version-check --no-cache-dir @SOURCE@\\
        "contactpoint[edge,pi]==$VERSION"
    sync
    echo "{\"version\": \"$VERSION\", \"at\": $(date +%s)}" > "$RELEASE/@MARKER@.tmp"
    sync
    mv -f "$RELEASE/@MARKER@.tmp" "$RELEASE/@MARKER@"
fi
ln -sfn "$RELEASE" @CURRENT@.new && mv -T @CURRENT@.new @CURRENT@
"@CURRENT@/bin/contactpoint" --version

# configuration, state, the claim token (0600, then off the boot partition)
install -d -m 0750 -o root -g contactpoint /etc/contactpoint
[ -f /etc/contactpoint/device.toml ] || \\
    install -m 0640 -o root -g contactpoint "$CARD/device.toml" /etc/contactpoint/device.toml
[ ! -f "$CARD/ca.crt" ] || install -m 0644 "$CARD/ca.crt" /etc/contactpoint/ca.crt
install -d -m 0750 -o contactpoint -g contactpoint /var/lib/contactpoint
if [ -f "$CARD/claim.token" ]; then
    install -m 0600 -o contactpoint -g contactpoint "$CARD/claim.token" \\
        /var/lib/contactpoint/claim.token
    rm -f "$CARD/claim.token"
fi
# cloud-init's own copies of the seed hold no token; keep them private anyway
[ ! -d /var/lib/cloud/instance ] || chmod -R go-rwx /var/lib/cloud/instance

# the hardware watchdog (systemd feeds it) and the daemon's unit
install -d /etc/systemd/system.conf.d
install -m 0644 "$CARD/contactpoint-watchdog.conf" /etc/systemd/system.conf.d/
install -m 0644 "$CARD/contactpoint-edge.service" /etc/systemd/system/
# the updater (signed update requests from the sink), with the fleet's public update key
if [ -f "$CARD/update.pub" ]; then
    install -m 0644 "$CARD/update.pub" /etc/contactpoint/update.pub
    install -m 0644 "$CARD/contactpoint-update.service" /etc/systemd/system/
fi
systemctl daemon-reexec
systemctl enable --now contactpoint-edge.service
[ ! -f /etc/contactpoint/update.pub ] || systemctl enable --now contactpoint-update.service
log "$VERSION installed and started"
"""
    for key, value in {
        "@VERSION@": version,
        "@RELEASES@": RELEASES,
        "@CURRENT@": CURRENT,
        "@GROUPS@": groups,
        "@SOURCE@": source,
        "@MARKER@": MARKER,
    }.items():
        script = script.replace(key, value)
    return script
