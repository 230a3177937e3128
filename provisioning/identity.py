"""Device identity: one account per device, sink worker and Home Assistant, and the broker files
that confine them.

Rules:
- Account names. A device's MQTT user name is its device id (``^[a-z0-9][a-z0-9_-]{0,63}$``,
  unique in the fleet: the sink already keys everything by device id). The sink's account is
  ``contactpoint-sink`` unless named otherwise; Home Assistant's ``homeassistant``. A name is
  one account of one kind: a device id cannot be provisioned at two sites, nor be a sink's name.
- Client id = account name. The generated configuration sets ``use_username_as_clientid true``
  on its listener: mosquitto replaces whatever client id a client sends with its user name, so
  a device can neither throw another client off nor take over (and, with clean start, wipe)
  another client's session; the sink's queued messages are its own. One connection per
  account: every worker of a sink group needs its own account (``provision sink --user ...``).
- Credentials. A password is ``secrets.token_urlsafe(32)`` (256 random bits), written to the
  account's ``password`` file with mode 0600 and never printed. Optionally a client certificate
  (CN = the account name) signed by the project CA (:mod:`provisioning.pki`).
- Broker files live in one directory (``--broker-dir``): ``accounts.json`` (the registry:
  devices -> site, sink and Home Assistant accounts, the broker settings), ``passwd``
  (mosquitto's password file), ``acl`` (regenerated from the registry on every change, never
  edited by hand), ``contactpoint.conf`` (the mosquitto configuration: login, ACL, one listener)
  and, after ``provision server``, ``server.crt``, ``server.key`` and ``ca.crt``.
- They are written for the broker host: ``contactpoint.conf`` names them under
  ``broker.root`` (default ``/etc/mosquitto/contactpoint``) and goes to
  ``/etc/mosquitto/conf.d/``. mosquitto started as root drops to ``broker.user`` (default
  ``mosquitto``) before it reads the password file, the ACL and the TLS files, and newer
  versions warn about (and announce they will refuse) files other users can read: ``passwd``,
  ``acl`` and ``server.key`` are 0600 and, when provisioning runs as root where that user
  exists, owned by it; otherwise the operator installs them so (the CLI prints the commands).
- A TLS listener (8883) once a server certificate was made, else plain 1883; with
  ``provision server --require-client-cert`` the listener requires client certificates and
  takes the account name from their CN (``use_identity_as_username``).
- Password hashes are mosquitto 2.0's ``$7$`` format, PBKDF2-HMAC-SHA512:
  ``user:$7$<iterations>$<base64 salt (12 bytes)>$<base64 hash (64 bytes)>``, computed here with
  hashlib rather than by calling ``mosquitto_passwd``: the provisioning machine need not have
  mosquitto installed, and ``mosquitto_passwd -b`` would put the password on a command line
  (visible in ``ps``). A test checks both directions against the real tool and broker. 101
  iterations, like ``mosquitto_passwd``: the passwords are 256-bit random, so the iteration
  count adds nothing against guessing, and a higher one only slows every broker login.
- ACL: a device may publish only on ``contactpoint/v1/<site>/<device>/+`` (contact, event, clip,
  status, alert: one level, so never on its own ``cmd/...``), ``.../route/+`` (routed copies
  for managers) and its own Home Assistant discovery configs
  ``homeassistant/<component>/<device>/<object>/config``, and read only
  ``contactpoint/v1/<site>/<device>/cmd/#``. A sink reads ``contactpoint/v1/#`` and may publish
  only ``contactpoint/v1/+/+/cmd/resend``, the delivery receipts
  ``contactpoint/v1/+/+/cmd/delivered`` (so a device's receipts are read by that device alone
  among the devices, and written by nobody but a sink: a device cannot confirm its own
  messages), the update requests ``contactpoint/v1/+/+/cmd/update`` (``contactpoint fleet
  update``; a device acts only on a manifest the fleet's key signed) and its site alerts
  ``contactpoint/v1/+/_site/alert`` (``_site`` can never be a device id). Home Assistant
  reads ``homeassistant/#`` and the devices' ``status`` and ``alert`` and writes its
  ``homeassistant/status``. Explicit
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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Final

from contract.cli import UserError
from contract.wire import (
    ALERT,
    CMD,
    DELIVERED,
    RESEND,
    ROOT,
    ROUTE,
    SITE_SCOPE,
    STATUS,
    UPDATE,
    topic,
)
from provisioning import pki
from provisioning.files import service_owner, write_public, write_secret

HASH_ITERATIONS: Final = 101
SALT_BYTES: Final = 12
DEFAULT_SINK_USER: Final = "contactpoint-sink"
DEFAULT_HA_USER: Final = "homeassistant"
HA_PREFIX: Final = "homeassistant"  # Home Assistant's default discovery prefix
PASSWD: Final = "passwd"  # noqa: S105 - the password file's name
ACL: Final = "acl"
ACCOUNTS: Final = "accounts.json"
BROKER_CONF: Final = "contactpoint.conf"
SERVER_CERT: Final = "server.crt"
SERVER_KEY: Final = "server.key"
TLS_PORT: Final = 8883
PLAIN_PORT: Final = 1883
DEFAULT_BROKER_ROOT: Final = "/etc/mosquitto/contactpoint"  # on the broker host
DEFAULT_BROKER_USER: Final = "mosquitto"  # Debian's mosquitto drops to it when started as root
DEFAULT_INSTALL_DIR: Final = "/etc/contactpoint"  # on the device
PASSWORD_FILE: Final = "password"  # noqa: S105 - a file name
CLIENT_CERT: Final = "client.crt"
CLIENT_KEY: Final = "client.key"
MQTT_SNIPPET: Final = "mqtt.toml"

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_LABELS: Final = {
    "device": "device",
    "sink": "sink account",
    "homeassistant": "Home Assistant account",
}


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
class BrokerSettings:
    """Where the broker files will be on the broker host and who reads them there."""

    root: str = DEFAULT_BROKER_ROOT  # the directory of passwd, acl, TLS files on the broker
    user: str = DEFAULT_BROKER_USER  # the user mosquitto drops to when started as root
    client_certs: bool = False  # the TLS listener requires client certificates (CN = account)


@dataclass(slots=True)
class Accounts:
    """Who may use the broker: device id -> site, the sink and Home Assistant accounts, and
    the broker's settings."""

    devices: dict[str, str] = field(default_factory=dict)
    sinks: list[str] = field(default_factory=list)
    homeassistant: list[str] = field(default_factory=list)
    broker: BrokerSettings = field(default_factory=BrokerSettings)

    @classmethod
    def load(cls, path: Path) -> Accounts:
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            devices = {str(k): str(v) for k, v in dict(data["devices"]).items()}
            sinks = [str(s) for s in list(data["sinks"])]
            viewers = [str(s) for s in list(data.get("homeassistant", []))]
            settings = dict(data.get("broker", {}))
            broker = BrokerSettings(
                root=str(settings.get("root", DEFAULT_BROKER_ROOT)),
                user=str(settings.get("user", DEFAULT_BROKER_USER)),
                client_certs=bool(settings.get("client_certs", False)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ProvisionError(f"{path}: not a contactpoint accounts file ({exc})") from None
        for name in [*devices, *devices.values(), *sinks, *viewers]:
            check_name(name, f"{path}: name")
        return cls(devices, sinks, viewers, broker)

    def save(self, path: Path) -> None:
        data = {
            "devices": self.devices,
            "sinks": self.sinks,
            "homeassistant": self.homeassistant,
            "broker": {
                "root": self.broker.root,
                "user": self.broker.user,
                "client_certs": self.broker.client_certs,
            },
        }
        write_public(path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def kind_of(self, name: str) -> str | None:
        if name in self.devices:
            return "device"
        if name in self.sinks:
            return "sink"
        if name in self.homeassistant:
            return "homeassistant"
        return None


def device_acl(site: str, device: str) -> list[str]:
    return [
        f"user {device}",
        f"topic write {topic(site, device, '+')}",
        f"topic write {topic(site, device, f'{ROUTE}/+')}",
        f"topic read {topic(site, device, f'{CMD}/#')}",
        f"topic write {HA_PREFIX}/+/{device}/+/config",
    ]


def sink_acl(user: str) -> list[str]:
    return [
        f"user {user}",
        f"topic read {ROOT}/#",
        f"topic write {topic('+', '+', RESEND)}",
        f"topic write {topic('+', '+', DELIVERED)}",
        f"topic write {topic('+', '+', UPDATE)}",
        f"topic write {topic('+', SITE_SCOPE, ALERT)}",
    ]


def homeassistant_acl(user: str) -> list[str]:
    return [
        f"user {user}",
        f"topic read {HA_PREFIX}/#",
        f"topic write {HA_PREFIX}/status",
        f"topic read {topic('+', '+', STATUS)}",
        f"topic read {topic('+', '+', ALERT)}",
    ]


def render_acl(accounts: Accounts) -> str:
    lines = [
        "# mosquitto ACL generated by 'contactpoint provision' from accounts.json: do not edit.",
        f"# A device writes only {topic('<site>', '<device>', '+')} (and .../route/+), its own",
        f"# Home Assistant discovery configs ({HA_PREFIX}/<component>/<device>/<object>/config)",
        f"# and reads only its cmd/#; a sink reads {ROOT}/# and writes only {RESEND},",
        f"# {DELIVERED} (delivery receipts), {UPDATE} and site alerts; Home Assistant reads",
        "# discovery, status and alerts. All else is denied.",
    ]
    for device, site in sorted(accounts.devices.items()):
        lines += ["", *device_acl(site, device)]
    for user in sorted(accounts.sinks):
        lines += ["", *sink_acl(user)]
    for user in sorted(accounts.homeassistant):
        lines += ["", *homeassistant_acl(user)]
    return "\n".join(lines) + "\n"


def broker_conf(accounts: Accounts, *, tls: bool) -> str:
    """The mosquitto configuration file (for ``/etc/mosquitto/conf.d/``): login and ACL for
    everyone, one listener (TLS on 8883 when ``tls``, else plain 1883), client ids bound to
    accounts. Paths are the broker host's (``accounts.broker.root``)."""
    settings = accounts.broker
    root = PurePosixPath(settings.root)
    lines = [
        "# mosquitto configuration generated by 'contactpoint provision': do not edit.",
        f"# Install as /etc/mosquitto/conf.d/{BROKER_CONF}, with the files it names in {root}/",
        f"# readable by the broker's user ({settings.user}); keep only this listener.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {root / PASSWD}",
        f"acl_file {root / ACL}",
        "",
    ]
    if tls:
        lines += [
            f"listener {TLS_PORT}",
            f"cafile {root / pki.CA_CERT}",
            f"certfile {root / SERVER_CERT}",
            f"keyfile {root / SERVER_KEY}",
            f"require_certificate {'true' if settings.client_certs else 'false'}",
        ]
        if settings.client_certs:
            lines.append("use_identity_as_username true")
    else:
        lines += [
            "# no server certificate yet ('contactpoint provision server'): plain MQTT",
            f"listener {PLAIN_PORT}",
        ]
    lines += [
        "# the client id is the account name: nobody can take another client's session",
        "use_username_as_clientid true",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """What :func:`write_broker_files` wrote, and whether the broker's user owns its secrets."""

    directory: Path
    user: str
    owned: bool  # False: this process could not give them to the broker's user


def write_broker_files(
    broker_dir: Path, accounts: Accounts, passwords: dict[str, str]
) -> BrokerFiles:
    """passwd and acl (0600, given to the broker's user when run as root), contactpoint.conf
    and accounts.json, all regenerated from ``accounts`` and the password hashes."""
    owner = service_owner(accounts.broker.user)
    write_secret(broker_dir / PASSWD, render_passwd(passwords), owner=owner)
    write_secret(broker_dir / ACL, render_acl(accounts), owner=owner)
    tls = (broker_dir / SERVER_CERT).exists()
    write_public(broker_dir / BROKER_CONF, broker_conf(accounts, tls=tls))
    accounts.save(broker_dir / ACCOUNTS)
    return BrokerFiles(broker_dir, accounts.broker.user, owner is not None)


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """Broker settings to change (None: keep what ``accounts.json`` says, or the default)."""

    root: str | None = None
    user: str | None = None


def configure_broker(
    broker_dir: Path, options: BrokerOptions | None = None, *, client_certs: bool | None = None
) -> Accounts:
    """The registry of ``broker_dir`` with the given broker settings changed (not saved)."""
    accounts = Accounts.load(broker_dir / ACCOUNTS)
    root, user = (options.root, options.user) if options is not None else (None, None)
    if root is not None:
        if not PurePosixPath(root).is_absolute():
            raise ProvisionError(
                f"--broker-root {root!r}: give the absolute directory the broker files will "
                f"have on the broker host (e.g. {DEFAULT_BROKER_ROOT})"
            )
        accounts.broker.root = root
    if user is not None:
        check_name(user, "--broker-user")
        accounts.broker.user = user
    if client_certs is not None:
        accounts.broker.client_certs = client_certs
    return accounts


def _register(
    broker_dir: Path,
    name: str,
    password: str,
    *,
    kind: str,
    site: str | None = None,
    options: BrokerOptions | None = None,
) -> BrokerFiles:
    """Add or update ``name`` in the registry, its password hash, and regenerate the files."""
    accounts = configure_broker(broker_dir, options)
    known = accounts.kind_of(name)
    if known is not None and known != kind:
        raise ProvisionError(f"{name!r} is a {_LABELS[known]} already; pick another name")
    if kind == "device":
        if site is None:
            raise ProvisionError("a device needs its site")
        where = accounts.devices.get(name)
        if where is not None and where != site:
            raise ProvisionError(
                f"device {name!r} is provisioned at site {where!r} already; device ids are "
                "unique in the fleet (the sink keys data by device id)"
            )
        accounts.devices[name] = site
    else:
        names = accounts.sinks if kind == "sink" else accounts.homeassistant
        if name not in names:
            names.append(name)
    entries = read_passwd(broker_dir / PASSWD)
    entries[name] = hash_password(password)
    return write_broker_files(broker_dir, accounts, entries)


def provision_server(
    ca_dir: Path,
    broker_dir: Path,
    hosts: Sequence[str],
    *,
    days: int = pki.LEAF_DAYS,
    client_certs: bool | None = None,
    options: BrokerOptions | None = None,
    now: datetime | None = None,
) -> BrokerFiles:
    """The broker's TLS certificate (for ``hosts``) and the CA in ``broker_dir``; the
    configuration then has a TLS listener."""
    if not hosts:
        raise ProvisionError("--host: name at least one DNS name or IP address of the broker")
    ca = pki.load_ca(ca_dir)
    accounts = configure_broker(broker_dir, options, client_certs=client_certs)
    owner = service_owner(accounts.broker.user)
    leaf = pki.issue(ca, hosts[0], server_hosts=tuple(hosts), days=days, now=now)
    write_public(broker_dir / SERVER_CERT, leaf.cert_pem())
    write_secret(broker_dir / SERVER_KEY, leaf.key_pem(), owner=owner)
    write_public(broker_dir / pki.CA_CERT, ca.cert_pem())
    return write_broker_files(broker_dir, accounts, read_passwd(broker_dir / PASSWD))


# --- provisioning one account -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Provisioned:
    """What was written (paths only: the password stays in its file)."""

    name: str
    out: Path
    password_file: Path
    broker: BrokerFiles
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    ca_created: bool = False
    snippet: Path | None = None

    @property
    def broker_dir(self) -> Path:
        return self.broker.directory


def _credentials(
    name: str,
    out: Path,
    broker_dir: Path,
    *,
    kind: str,
    site: str | None,
    ca_dir: Path | None,
    cert: bool,
    options: BrokerOptions | None,
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
    files = _register(broker_dir, name, password, kind=kind, site=site, options=options)
    return Provisioned(
        name=name,
        out=out,
        password_file=password_file,
        broker=files,
        cert_file=cert_file,
        key_file=key_file,
        ca_file=ca_file,
        ca_created=ca_created,
    )


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def device_snippet(
    device: str, site: str, creds: Provisioned, broker_url: str, install_dir: PurePosixPath
) -> str:
    """The device config lines for this identity (files named as they will be on the device)."""
    lines = [
        f"# Device {device} at {site}: generated by 'contactpoint provision device'.",
        f"# Install the files of this directory as {install_dir}/ on the device (owned by the",
        "# daemon's user; password and client.key 0600).",
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


def _default_broker_dir(out: Path, broker_dir: Path | None) -> Path:
    return broker_dir if broker_dir is not None else out.parent / "broker"


def provision_device(
    device: str,
    site: str,
    out: Path,
    *,
    broker_dir: Path | None = None,
    ca_dir: Path | None = None,
    cert: bool = False,
    broker_url: str | None = None,
    install_dir: str = DEFAULT_INSTALL_DIR,
    options: BrokerOptions | None = None,
    now: datetime | None = None,
) -> Provisioned:
    """Credentials for ``device`` in ``out`` and its entries in the broker files.

    ``broker_dir`` defaults to ``<out>/../broker``; ``install_dir`` is where the files will be
    on the device (named in the config snippet), an absolute path; ``options`` change the
    broker's settings (:func:`configure_broker`)."""
    check_name(device, "device id")
    check_name(site, "site")
    if not PurePosixPath(install_dir).is_absolute():
        raise ProvisionError(
            f"--install-dir {install_dir!r}: give the absolute directory the files will have on "
            f"the device (e.g. {DEFAULT_INSTALL_DIR})"
        )
    if broker_url is None:
        broker_url = "mqtts://localhost:8883" if ca_dir is not None else "mqtt://localhost:1883"
    if not re.fullmatch(r"mqtts?://[^/\s]+", broker_url):
        raise ProvisionError(f"--broker {broker_url!r}: expected mqtt://HOST:PORT or mqtts://...")
    creds = _credentials(
        device, out, _default_broker_dir(out, broker_dir), kind="device", site=site,
        ca_dir=ca_dir, cert=cert, options=options, now=now,
    )  # fmt: skip
    text = device_snippet(device, site, creds, broker_url, PurePosixPath(install_dir))
    snippet = write_public(out / MQTT_SNIPPET, text)
    return replace(creds, snippet=snippet)


def provision_sink(
    out: Path,
    *,
    user: str = DEFAULT_SINK_USER,
    broker_dir: Path | None = None,
    ca_dir: Path | None = None,
    cert: bool = False,
    options: BrokerOptions | None = None,
    now: datetime | None = None,
) -> Provisioned:
    """Credentials for a sink account (reads all, publishes only cmd/resend, cmd/delivered
    and site alerts).
    Every worker of a shared-subscription group needs its own account: the broker makes the
    account name the client id."""
    check_name(user, "sink user")
    return _credentials(
        user, out, _default_broker_dir(out, broker_dir), kind="sink", site=None,
        ca_dir=ca_dir, cert=cert, options=options, now=now,
    )  # fmt: skip


def provision_homeassistant(
    out: Path,
    *,
    user: str = DEFAULT_HA_USER,
    broker_dir: Path | None = None,
    ca_dir: Path | None = None,
    options: BrokerOptions | None = None,
) -> Provisioned:
    """Credentials for Home Assistant: reads the discovery configs, the devices' status and
    alerts, writes only its own ``homeassistant/status``."""
    check_name(user, "Home Assistant user")
    return _credentials(
        user, out, _default_broker_dir(out, broker_dir), kind="homeassistant", site=None,
        ca_dir=ca_dir, cert=False, options=options, now=None,
    )  # fmt: skip
