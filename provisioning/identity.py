"""Device identity: one account per device and per sink, and the broker files that confine them.

Rules:
- Account names. A device's MQTT user name is its device id (``^[a-z0-9][a-z0-9_-]{0,63}$``,
  unique in the fleet: the sink already keys everything by device id). The sink's account is
  ``contactpoint-sink`` unless named otherwise. A name is one account: a device id cannot be
  provisioned at two sites, nor share a name with a sink account.
- Credentials. A password is ``secrets.token_urlsafe(32)`` (256 random bits), written to the
  device's ``password`` file with mode 0600 and never printed. Optionally a client certificate
  (CN = the account name) signed by the project CA (:mod:`provisioning.pki`).
- Broker files live in one directory (``--broker-dir``):
  ``accounts.json`` (the registry: device -> site, sink names), ``passwd`` (mosquitto's
  password file, 0600) and ``acl`` (regenerated from the registry on every change, never edited
  by hand), and ``contactpoint.conf`` (the mosquitto lines that switch them on).
- Password hashes are mosquitto 2.0's ``$7$`` format, PBKDF2-HMAC-SHA512:
  ``user:$7$<iterations>$<base64 salt (12 bytes)>$<base64 hash (64 bytes)>``, computed here with
  hashlib rather than by calling ``mosquitto_passwd``: the provisioning machine need not have
  mosquitto installed, and ``mosquitto_passwd -b`` would put the password on a command line
  (visible in ``ps``). A test checks both directions against the real tool and broker. 101
  iterations, like ``mosquitto_passwd``: the passwords are 256-bit random, so the iteration
  count adds nothing against guessing, and a higher one only slows every broker login.
- ACL: a device may publish only on ``contactpoint/v1/<site>/<device>/+`` (contact, event, clip,
  status, alert: one level, so never on its own ``cmd/...``) and ``.../route/+`` (routed copies
  for managers), and read only ``contactpoint/v1/<site>/<device>/cmd/#``. A sink reads
  ``contactpoint/v1/#`` and may publish only ``contactpoint/v1/+/+/cmd/resend``, the delivery
  receipts ``contactpoint/v1/+/+/cmd/delivered`` (so a device's receipts are read by that device
  alone among the devices, and written by nobody but a sink: a device cannot confirm its own
  messages) and its site alerts ``contactpoint/v1/+/_site/alert`` (``_site`` can never be a
  device id). Explicit
  ``user``/``topic`` entries rather than a ``pattern`` with ``%u``: the topic holds the site as
  well as the device, and a pattern would need the site inside the user name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Final

from edge._errors import UserError
from provisioning import pki
from provisioning.files import write_public, write_secret

HASH_ITERATIONS: Final = 101
SALT_BYTES: Final = 12
DEFAULT_SINK_USER: Final = "contactpoint-sink"
ROOT: Final = "contactpoint/v1"
PASSWD: Final = "passwd"
ACL: Final = "acl"
ACCOUNTS: Final = "accounts.json"
BROKER_CONF: Final = "contactpoint.conf"
PASSWORD_FILE: Final = "password"
CLIENT_CERT: Final = "client.crt"
CLIENT_KEY: Final = "client.key"
MQTT_SNIPPET: Final = "mqtt.toml"

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class ProvisionError(UserError):
    """Provisioning cannot go on; the message names the value or file and the fix."""


def check_name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise ProvisionError(
            f"{what} {value[:80]!r} is not a valid name: use 1-64 lower-case letters, digits, "
            "'-' and '_', starting with a letter or digit"
        )
    return value


def new_password() -> str:
    """256 random bits, URL-safe text (no quoting problems in files or TOML)."""
    return secrets.token_urlsafe(32)


# --- mosquitto password hashes ------------------------------------------------------------------


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = HASH_ITERATIONS
) -> str:
    """The ``$7$`` (PBKDF2-SHA512) hash mosquitto 2.0 expects after ``user:``."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (ours or ``mosquitto_passwd``'s)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[:2] != ["", "7"] or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]))
    return hmac.compare_digest(digest, expected)


def read_passwd(path: Path) -> dict[str, str]:
    """user -> hash of a mosquitto password file (empty when there is none)."""
    if not path.exists():
        return {}
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep:
            raise ProvisionError(f"{path}:{number}: not a 'user:hash' line")
        entries[user] = hashed
    return entries


def render_passwd(entries: dict[str, str]) -> str:
    return "".join(f"{user}:{hashed}\n" for user, hashed in sorted(entries.items()))


# --- the registry and the ACL -------------------------------------------------------------------


@dataclass(slots=True)
class Accounts:
    """Who may use the broker: device id -> site, and the sink accounts."""

    devices: dict[str, str] = field(default_factory=dict)
    sinks: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Accounts:
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            devices = {str(k): str(v) for k, v in dict(data["devices"]).items()}
            sinks = [str(s) for s in list(data["sinks"])]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProvisionError(f"{path}: not a contactpoint accounts file ({exc})") from None
        for name in [*devices, *devices.values(), *sinks]:
            check_name(name, f"{path}: name")
        return cls(devices, sinks)

    def save(self, path: Path) -> None:
        text = json.dumps({"devices": self.devices, "sinks": self.sinks}, indent=2, sort_keys=True)
        write_public(path, text + "\n")


def device_acl(site: str, device: str) -> list[str]:
    root = f"{ROOT}/{site}/{device}"
    return [
        f"user {device}",
        f"topic write {root}/+",
        f"topic write {root}/route/+",
        f"topic read {root}/cmd/#",
    ]


def sink_acl(user: str) -> list[str]:
    return [
        f"user {user}",
        f"topic read {ROOT}/#",
        f"topic write {ROOT}/+/+/cmd/resend",
        f"topic write {ROOT}/+/+/cmd/delivered",
        f"topic write {ROOT}/+/_site/alert",
    ]


def render_acl(accounts: Accounts) -> str:
    lines = [
        "# mosquitto ACL generated by 'contactpoint provision' from accounts.json: do not edit.",
        "# A device writes only contactpoint/v1/<site>/<device>/+ (and .../route/+) and reads",
        "# only its cmd/#; a sink reads everything and writes only cmd/resend, cmd/delivered",
        "# (delivery receipts) and site alerts.",
        "# Anything else is denied.",
    ]
    for device, site in sorted(accounts.devices.items()):
        lines += ["", *device_acl(site, device)]
    for user in sorted(accounts.sinks):
        lines += ["", *sink_acl(user)]
    return "\n".join(lines) + "\n"


def broker_conf(broker_dir: Path) -> str:
    """The mosquitto lines that switch on the password file and the ACL (global settings)."""
    root = broker_dir.resolve()
    return (
        "# contactpoint: every client logs in and is confined by the ACL\n"
        "allow_anonymous false\n"
        f"password_file {root / PASSWD}\n"
        f"acl_file {root / ACL}\n"
    )


def _register(broker_dir: Path, name: str, password: str, *, site: str | None) -> None:
    """Add or update ``name`` in the registry, its password hash, and regenerate the ACL."""
    accounts = Accounts.load(broker_dir / ACCOUNTS)
    if site is not None:
        if name in accounts.sinks:
            raise ProvisionError(f"{name!r} is a sink account already; pick another device id")
        known = accounts.devices.get(name)
        if known is not None and known != site:
            raise ProvisionError(
                f"device {name!r} is provisioned at site {known!r} already; device ids are "
                "unique in the fleet (the sink keys data by device id)"
            )
        accounts.devices[name] = site
    else:
        if name in accounts.devices:
            raise ProvisionError(f"{name!r} is a device already; pick another sink user name")
        if name not in accounts.sinks:
            accounts.sinks.append(name)
    entries = read_passwd(broker_dir / PASSWD)
    entries[name] = hash_password(password)
    write_secret(broker_dir / PASSWD, render_passwd(entries))
    write_public(broker_dir / ACL, render_acl(accounts))
    write_public(broker_dir / BROKER_CONF, broker_conf(broker_dir))
    accounts.save(broker_dir / ACCOUNTS)


# --- provisioning one account -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Provisioned:
    """What was written (paths only: the password stays in its file)."""

    name: str
    out: Path
    password_file: Path
    broker_dir: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    ca_created: bool = False
    snippet: Path | None = None


def _credentials(
    name: str,
    out: Path,
    broker_dir: Path,
    *,
    site: str | None,
    ca_dir: Path | None,
    cert: bool,
    now: datetime | None,
) -> Provisioned:
    if cert and ca_dir is None:
        raise ProvisionError("--cert needs --ca-dir (the project CA that signs it)")
    password = new_password()
    ca_created = False
    cert_file = key_file = ca_file = None
    if ca_dir is not None:
        if cert:
            ca, ca_created = pki.load_or_create_ca(ca_dir, now=now)
            leaf = pki.issue(ca, name, now=now)
            cert_file, key_file = out / CLIENT_CERT, out / CLIENT_KEY
            leaf.save(cert_file, key_file)
        else:
            ca = pki.load_ca(ca_dir)
        ca_file = write_public(out / pki.CA_CERT, ca.cert_pem())
    password_file = write_secret(out / PASSWORD_FILE, password + "\n")
    _register(broker_dir, name, password, site=site)
    return Provisioned(
        name=name,
        out=out,
        password_file=password_file,
        broker_dir=broker_dir,
        cert_file=cert_file,
        key_file=key_file,
        ca_file=ca_file,
        ca_created=ca_created,
    )


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def device_snippet(
    device: str, site: str, creds: Provisioned, broker_url: str, install_dir: Path
) -> str:
    """The device config lines for this identity (files named as they will be on the device)."""
    lines = [
        f"# Device {device} at {site}: generated by 'contactpoint provision device'.",
        f"# Copy {creds.out}/ to {install_dir}/ on the device (keep the modes: password 0600).",
        "[device]",
        f"id = {_toml_string(device)}",
        f"site = {_toml_string(site)}",
        "",
        "[mqtt]",
        f"broker = {_toml_string(broker_url)}",
        f"username = {_toml_string(device)}",
        f"password_file = {_toml_string(str(install_dir / PASSWORD_FILE))}",
    ]
    if creds.ca_file is not None:
        lines.append(f"ca_file = {_toml_string(str(install_dir / pki.CA_CERT))}")
    if creds.cert_file is not None:
        lines.append(f"cert_file = {_toml_string(str(install_dir / CLIENT_CERT))}")
        lines.append(f"key_file = {_toml_string(str(install_dir / CLIENT_KEY))}")
    return "\n".join(lines) + "\n"


def provision_device(
    device: str,
    site: str,
    out: Path,
    *,
    broker_dir: Path | None = None,
    ca_dir: Path | None = None,
    cert: bool = False,
    broker_url: str | None = None,
    install_dir: Path | None = None,
    now: datetime | None = None,
) -> Provisioned:
    """Credentials for ``device`` in ``out`` and its entries in the broker files.

    ``broker_dir`` defaults to ``<out>/../broker``; ``install_dir`` (where the files will be on
    the device, named in the config snippet) defaults to ``out`` itself."""
    check_name(device, "device id")
    check_name(site, "site")
    broker_dir = broker_dir if broker_dir is not None else out.parent / "broker"
    if broker_url is None:
        broker_url = "mqtts://localhost:8883" if ca_dir is not None else "mqtt://localhost:1883"
    if not re.fullmatch(r"mqtts?://[^/\s]+", broker_url):
        raise ProvisionError(f"--broker {broker_url!r}: expected mqtt://HOST:PORT or mqtts://...")
    if ca_dir is None and broker_url.startswith("mqtts://") and cert:
        raise ProvisionError("--cert needs --ca-dir")
    creds = _credentials(device, out, broker_dir, site=site, ca_dir=ca_dir, cert=cert, now=now)
    text = device_snippet(device, site, creds, broker_url, (install_dir or out).resolve())
    snippet = write_public(out / MQTT_SNIPPET, text)
    return replace(creds, snippet=snippet)


def provision_sink(
    out: Path,
    *,
    user: str = DEFAULT_SINK_USER,
    broker_dir: Path | None = None,
    ca_dir: Path | None = None,
    cert: bool = False,
    now: datetime | None = None,
) -> Provisioned:
    """Credentials for a sink account (reads all, publishes only cmd/resend, cmd/delivered and
    site alerts)."""
    check_name(user, "sink user")
    broker_dir = broker_dir if broker_dir is not None else out.parent / "broker"
    return _credentials(user, out, broker_dir, site=None, ca_dir=ca_dir, cert=cert, now=now)
