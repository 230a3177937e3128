"""The fleet's side of updates: the signing key, signed manifests, and asking a device.

- ``contactpoint fleet init-signing --out DIR``: the fleet's Ed25519 key pair,
  ``update.key`` (the private seed, 0600: it stays with the operator, never on a card) and
  ``update.pub`` (the fleet file's ``update_key``: every card carries it to
  ``/etc/contactpoint/update.pub``);
- ``contactpoint fleet sign-update --key update.key --wheelhouse DIR --source WHERE``: a
  manifest for the wheels in DIR (names and SHA-256), valid from now for ``--valid-days``;
  ``--source`` is where the devices find those wheels (a directory on the device or an
  http(s) URL);
- ``contactpoint fleet update --broker URL --site S --device D --manifest FILE``: publishes it
  on the device's ``cmd/update`` (QoS 1) with an account that may (the sink's,
  provisioning/identity.py). The device reports the outcome as an ``update`` event the sink
  stores (edge/update/listen.py).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from contract.cli import UserError
from contract.wire import update_topic, valid_name
from edge.update import manifest as signed
from edge.update.releases import PACKAGE

PRIVATE = "update.key"
PUBLIC = "update.pub"


def init_signing(out: Path) -> tuple[Path, Path]:
    """Write a new key pair into ``out``; refuses to replace one (devices trust its key)."""
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / PRIVATE, out / PUBLIC
    for path in (private, public):
        if path.exists():
            raise UserError(f"{path} exists: the devices trust that key; remove it first")
    seed, key = signed.new_signing_key()
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(base64.b64encode(seed).decode() + "\n")
    public.write_text(base64.b64encode(key).decode() + "\n", encoding="ascii")
    return private, public


def sign_update(
    key: Path,
    wheelhouse: Path,
    *,
    source: str,
    version: str | None = None,
    valid_days: float = 7.0,
    now: float | None = None,
) -> bytes:
    """The ``cmd/update`` message for the wheels in ``wheelhouse``."""
    try:
        seed = signed.read_key(key, "--key")
    except signed.ManifestError as exc:
        raise UserError(str(exc)) from None
    if version is None:
        from edge.update.cli import source_of

        version, _ = source_of(str(wheelhouse), None)
    start = time.time() if now is None else now
    try:
        manifest = signed.build(
            version,
            wheelhouse,
            source=source,
            not_before=start - 300,  # a device's clock a little behind still takes it
            expires=start + valid_days * 86400,
        )
    except signed.ManifestError as exc:
        raise UserError(f"--wheelhouse {wheelhouse}: {exc}") from None
    return signed.sign(manifest, seed)


def publish_update(
    broker: str,
    site: str,
    device: str,
    payload: bytes,
    *,
    user: str,
    password: str,
    ca_file: Path | None = None,
) -> None:
    """Publish ``payload`` on the device's ``cmd/update`` and wait for the broker's PUBACK."""
    for field, value in (("--site", site), ("--device", device)):
        if not valid_name(value):
            raise UserError(f"{field} {value!r}: not a site or device id")
    m = re.fullmatch(r"(mqtts?)://([^/:\s]+):(\d+)", broker)
    if m is None:
        raise UserError(f"--broker {broker!r}: write mqtt://HOST:PORT")
    host, port = m.group(2), int(m.group(3))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    if user:
        client.username_pw_set(user, password)
    if m.group(1) == "mqtts":
        client.tls_set(ca_certs=str(ca_file) if ca_file else None)
    answer: list[ReasonCode] = []
    done = threading.Event()

    def connected(_c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        answer.append(rc)
        done.set()

    client.on_connect = connected
    try:
        client.connect(host, port, keepalive=15)
    except OSError as exc:
        raise UserError(f"--broker {broker}: {exc}") from None
    client.loop_start()
    try:
        if not done.wait(15) or answer[0].is_failure:
            raise UserError(f"--broker {broker}: refused ({answer[0] if answer else 'no answer'})")
        info = client.publish(update_topic(site, device), payload, qos=1)
        info.wait_for_publish(15)
        if not info.is_published():
            raise UserError(f"--broker {broker}: the request was not acknowledged")
    finally:
        client.disconnect()
        client.loop_stop()


def add_commands(cmds: Any) -> None:
    init = cmds.add_parser("init-signing", help="the fleet's update signing key pair")
    init.add_argument("--out", type=Path, required=True, help=f"directory for {PRIVATE}, {PUBLIC}")
    init.set_defaults(handler=_cmd_init)

    sign = cmds.add_parser("sign-update", help="a signed update manifest for a wheelhouse")
    sign.add_argument("--key", type=Path, required=True, help=f"the private key ({PRIVATE})")
    sign.add_argument("--wheelhouse", type=Path, required=True, help="the wheels to install")
    sign.add_argument(
        "--source",
        required=True,
        help="where the devices find these wheels: an absolute directory on the device or an "
        "http(s) URL",
    )
    sign.add_argument("--version", dest="to", help=f"the {PACKAGE} version (several in it)")
    sign.add_argument("--valid-days", type=float, default=7.0, help="default %(default)s")
    sign.add_argument("--out", type=Path, required=True, help="the manifest file to write")
    sign.set_defaults(handler=_cmd_sign)

    up = cmds.add_parser("update", help="ask a device to install a signed update")
    up.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
    up.add_argument("--site", required=True)
    up.add_argument("--device", required=True)
    up.add_argument("--manifest", type=Path, required=True, help="from 'fleet sign-update'")
    up.add_argument("--user", default="", help="a broker account that may write cmd/update")
    up.add_argument("--password-file", type=Path)
    up.add_argument("--ca-file", type=Path, help="with mqtts://: the broker's CA certificate")
    up.set_defaults(handler=_cmd_update)


def _cmd_init(args: argparse.Namespace) -> int:
    private, public = init_signing(args.out)
    print(f"signing key {private} (0600: keep it off the devices), public key {public}")
    print(f"put the public key's path into the fleet file: update_key = {str(public)!r}")
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    payload = sign_update(args.key, args.wheelhouse, source=args.source, version=args.to,
                          valid_days=args.valid_days)  # fmt: skip
    args.out.write_bytes(payload)
    print(f"wrote {args.out}")
    return 0


def _cmd_update(args: argparse.Namespace) -> int:
    password = ""
    if args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"--password-file {args.password_file}: {exc.strerror}") from None
    try:
        payload = args.manifest.read_bytes()
    except OSError as exc:
        raise UserError(f"--manifest {args.manifest}: {exc.strerror}") from None
    publish_update(
        args.broker,
        args.site,
        args.device,
        payload,
        user=args.user,
        password=password,
        ca_file=args.ca_file,
    )
    print(f"asked {args.device} at {args.site}; its 'update' event tells the outcome")
    return 0
