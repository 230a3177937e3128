"""``contactpoint provision ...``: the project CA, the broker's certificate, device and sink
accounts.

Rules:
- ``add_commands(subparsers)`` registers the ``provision`` group; handlers follow contactpoint's
  convention (Namespace -> exit code, :class:`~edge.UserError` for fixable mistakes).
- Output names files, never their secret contents: a password is only ever in its 0600 file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from provisioning import identity, pki


def add_commands(subparsers: Any) -> None:
    prov = subparsers.add_parser(
        "provision", help="credentials: project CA, broker certificate, device and sink accounts"
    )
    sub = prov.add_subparsers(title="provision commands", metavar="ACTION", required=True)

    ca = sub.add_parser("ca", help="create the project CA (ca.crt, ca.key 0600) in --out")
    ca.add_argument("--out", type=Path, required=True, help="directory for ca.crt and ca.key")
    ca.add_argument("--days", type=int, default=pki.CA_DAYS, help="validity in days")
    ca.set_defaults(handler=_ca)

    server = sub.add_parser("server", help="a TLS server certificate for the broker")
    server.add_argument("--ca-dir", type=Path, required=True, help="the project CA")
    server.add_argument("--out", type=Path, required=True, help="directory for server.crt/.key")
    server.add_argument(
        "--host", action="append", required=True, help="a DNS name or IP the broker answers on"
    )
    server.add_argument("--days", type=int, default=pki.LEAF_DAYS, help="validity in days")
    server.set_defaults(handler=_server)

    device = sub.add_parser(
        "device", help="a device's broker account: password (0600), optional client "
        "certificate, password-file line, ACL confining it to its topics, config snippet"
    )  # fmt: skip
    device.add_argument("device_id", help="the device id (names its MQTT topics)")
    device.add_argument("--site", required=True, help="the site the device belongs to")
    device.add_argument("--out", type=Path, required=True, help="directory for its credentials")
    _account_options(device)
    device.add_argument(
        "--broker", help="broker URL for the config snippet (default: mqtts://localhost:8883 "
        "with --ca-dir, else mqtt://localhost:1883)"
    )  # fmt: skip
    device.add_argument(
        "--install-dir",
        type=Path,
        help="where the files will live on the device, for the snippet (default: --out)",
    )
    device.set_defaults(handler=_device)

    sink = sub.add_parser("sink", help="the sink's broker account (reads all, sends cmd/resend)")
    sink.add_argument("--out", type=Path, required=True, help="directory for its credentials")
    sink.add_argument("--user", default=identity.DEFAULT_SINK_USER, help="the account name")
    _account_options(sink)
    sink.set_defaults(handler=_sink)


def _account_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker-dir",
        type=Path,
        help="broker files: passwd, acl, accounts.json, contactpoint.conf (default: "
        "<out>/../broker)",
    )
    parser.add_argument(
        "--ca-dir", type=Path, help="the project CA (its ca.crt is copied next to the creds)"
    )
    parser.add_argument(
        "--cert",
        action="store_true",
        help="also issue a client certificate signed by the CA (created in --ca-dir if none)",
    )


def _ca(args: argparse.Namespace) -> int:
    pki.create_ca(args.out, days=args.days)
    print(f"project CA: {args.out / pki.CA_CERT} (certificate), {args.out / pki.CA_KEY} (0600)")
    return 0


def _server(args: argparse.Namespace) -> int:
    ca = pki.load_ca(args.ca_dir)
    leaf = pki.issue(ca, args.host[0], server_hosts=tuple(args.host), days=args.days)
    cert, key = args.out / "server.crt", args.out / "server.key"
    leaf.save(cert, key)
    print(f"broker certificate for {', '.join(args.host)}: {cert}, {key} (0600)")
    return 0


def _device(args: argparse.Namespace) -> int:
    done = identity.provision_device(
        args.device_id,
        args.site,
        args.out,
        broker_dir=args.broker_dir,
        ca_dir=args.ca_dir,
        cert=args.cert,
        broker_url=args.broker,
        install_dir=args.install_dir,
    )
    _report(done, f"device {args.device_id} at {args.site}", args.ca_dir)
    return 0


def _sink(args: argparse.Namespace) -> int:
    done = identity.provision_sink(
        args.out, user=args.user, broker_dir=args.broker_dir, ca_dir=args.ca_dir, cert=args.cert
    )
    _report(done, f"sink account {args.user}", args.ca_dir)
    return 0


def _report(done: identity.Provisioned, what: str, ca_dir: Path | None) -> None:
    if done.ca_created and ca_dir is not None:
        print(f"created the project CA in {ca_dir} (keep {ca_dir / pki.CA_KEY} safe)")
    print(f"{what}:")
    print(f"  password file   {done.password_file} (0600; its content is never printed)")
    if done.cert_file is not None and done.key_file is not None:
        print(f"  certificate     {done.cert_file}, key {done.key_file} (0600)")
    if done.ca_file is not None:
        print(f"  CA certificate  {done.ca_file}")
    if done.snippet is not None:
        print(f"  config snippet  {done.snippet} ([device] and [mqtt])")
    conf = done.broker_dir / identity.BROKER_CONF
    print(f"  broker files    {done.broker_dir}/{{passwd,acl,accounts.json}}")
    print(f"  mosquitto       include {conf} (or copy its lines) and reload the broker")
