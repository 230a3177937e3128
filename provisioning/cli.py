"""``contactpoint provision ...``: the project CA, the broker's certificate and configuration,
device, sink and Home Assistant accounts.

Rules:
- ``add_commands(subparsers)`` registers the ``provision`` group; handlers follow contactpoint's
  convention (Namespace -> exit code, :class:`~contract.cli.UserError` for fixable mistakes).
- Output names files, never their secret contents: a password is only ever in its 0600 file.
- Every command that touches the broker directory ends with where its files go on the broker
  host and, when this process could not give them to the broker's user, how to install them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from provisioning import identity, pki


def add_commands(subparsers: Any) -> None:
    prov = subparsers.add_parser(
        "provision",
        help="credentials: project CA, broker certificate and configuration, device, sink and "
        "Home Assistant accounts",
    )
    sub = prov.add_subparsers(title="provision commands", metavar="ACTION", required=True)

    ca = sub.add_parser("ca", help="create the project CA (ca.crt, ca.key 0600) in --out")
    ca.add_argument("--out", type=Path, required=True, help="directory for ca.crt and ca.key")
    ca.add_argument("--days", type=int, default=pki.CA_DAYS, help="validity in days")
    ca.set_defaults(handler=_ca)

    server = sub.add_parser(
        "server", help="the broker's TLS certificate (server.crt, server.key, ca.crt in "
        "--broker-dir); the broker configuration then has a TLS listener on 8883"
    )  # fmt: skip
    server.add_argument("--ca-dir", type=Path, required=True, help="the project CA")
    server.add_argument(
        "--broker-dir", type=Path, required=True, help="the broker files (passwd, acl, ...)"
    )
    server.add_argument(
        "--host", action="append", required=True, help="a DNS name or IP the broker answers on"
    )
    server.add_argument("--days", type=int, default=pki.LEAF_DAYS, help="validity in days")
    server.add_argument(
        "--require-client-cert",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the TLS listener requires client certificates, whose CN is the account name "
        "(every account then needs --cert); default: passwords over TLS",
    )
    _broker_options(server)
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
        default=identity.DEFAULT_INSTALL_DIR,
        help="where the files of --out will be on the device, for the snippet (default: "
        f"{identity.DEFAULT_INSTALL_DIR})",
    )
    device.set_defaults(handler=_device)

    sink = sub.add_parser(
        "sink", help="a sink account (reads all, sends cmd/resend); one per worker of a group"
    )
    sink.add_argument("--out", type=Path, required=True, help="directory for its credentials")
    sink.add_argument("--user", default=identity.DEFAULT_SINK_USER, help="the account name")
    _account_options(sink)
    sink.set_defaults(handler=_sink)

    ha = sub.add_parser(
        "homeassistant", help="Home Assistant's account (reads discovery, status and alerts)"
    )
    ha.add_argument("--out", type=Path, required=True, help="directory for its credentials")
    ha.add_argument("--user", default=identity.DEFAULT_HA_USER, help="the account name")
    ha.add_argument("--broker-dir", type=Path, help="broker files (default: <out>/../broker)")
    ha.add_argument(
        "--ca-dir", type=Path, help="the project CA (its ca.crt is copied next to the creds)"
    )
    _broker_options(ha)
    ha.set_defaults(handler=_homeassistant)

    card = sub.add_parser(
        "card", help="the files for a freshly flashed SD card's boot partition: cloud-init "
        "seed, firstrun.sh, install script, device.toml, units, claim token, wheelhouse"
    )  # fmt: skip
    card.add_argument("--out", type=Path, required=True, help="directory to write the files in")
    card.add_argument("--fleet", type=Path, required=True, help="the fleet file (TOML)")
    card.add_argument("--name", required=True, help="the device's id and host name")
    card.add_argument("--wifi-ssid", help="the site's Wi-Fi network (default: Ethernet only)")
    card.add_argument("--wifi-psk-file", type=Path, help="file holding the Wi-Fi passphrase")
    card.add_argument("--country", help="Wi-Fi regulatory domain, two letters (e.g. DE)")
    card.add_argument(
        "--wheelhouse",
        type=Path,
        help="arm64 wheels to carry (provisioning/wheelhouse.sh); default: the device "
        "installs from the package index",
    )
    card.set_defaults(handler=_card)


def _broker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker-root",
        help="where the broker files will be on the broker host, as contactpoint.conf names "
        f"them (remembered in accounts.json; default {identity.DEFAULT_BROKER_ROOT})",
    )
    parser.add_argument(
        "--broker-user",
        help="the user mosquitto runs as on the broker host, who must read passwd, acl and "
        f"server.key (remembered; default {identity.DEFAULT_BROKER_USER})",
    )


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
    _broker_options(parser)


def _options(args: argparse.Namespace) -> identity.BrokerOptions:
    return identity.BrokerOptions(root=args.broker_root, user=args.broker_user)


def _ca(args: argparse.Namespace) -> int:
    pki.create_ca(args.out, days=args.days)
    print(f"project CA: {args.out / pki.CA_CERT} (certificate), {args.out / pki.CA_KEY} (0600)")
    return 0


def _server(args: argparse.Namespace) -> int:
    files = identity.provision_server(
        args.ca_dir,
        args.broker_dir,
        args.host,
        days=args.days,
        client_certs=args.require_client_cert,
        options=_options(args),
    )
    print(f"broker certificate for {', '.join(args.host)}:")
    print(f"  certificate     {args.broker_dir / identity.SERVER_CERT}")
    print(f"  key             {args.broker_dir / identity.SERVER_KEY} (0600)")
    _report_broker(files)
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
        options=_options(args),
    )
    _report(done, f"device {args.device_id} at {args.site}", args.ca_dir)
    return 0


def _sink(args: argparse.Namespace) -> int:
    done = identity.provision_sink(
        args.out,
        user=args.user,
        broker_dir=args.broker_dir,
        ca_dir=args.ca_dir,
        cert=args.cert,
        options=_options(args),
    )
    _report(done, f"sink account {args.user}", args.ca_dir)
    return 0


def _homeassistant(args: argparse.Namespace) -> int:
    done = identity.provision_homeassistant(
        args.out,
        user=args.user,
        broker_dir=args.broker_dir,
        ca_dir=args.ca_dir,
        options=_options(args),
    )
    _report(done, f"Home Assistant account {args.user}", args.ca_dir)
    return 0


def _card(args: argparse.Namespace) -> int:
    from edge import __version__
    from provisioning.card import write_card

    card = write_card(
        args.out,
        args.fleet,
        args.name,
        version=__version__,
        wifi_ssid=args.wifi_ssid,
        wifi_psk_file=args.wifi_psk_file,
        country=args.country,
        wheelhouse=args.wheelhouse,
    )
    print(f"card for {args.name} (contactpoint {card.version}) in {card.directory}:")
    print("  user-data, meta-data, network-config   cloud-init seed (NoCloud)")
    print("  firstrun.sh                             images without cloud-init (see its header)")
    print("  contactpoint/                           install.sh, device.toml, units, claim token")
    source = f"{card.wheels} wheels on the card" if card.wheels else "the package index"
    print(f"  installs from                           {source}")
    print("copy them onto the boot partition of the flashed card, insert it, power the device")
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
    _report_broker(done.broker)


def _report_broker(files: identity.BrokerFiles) -> None:
    accounts = identity.Accounts.load(files.directory / identity.ACCOUNTS)
    root, user = accounts.broker.root, accounts.broker.user
    conf = files.directory / identity.BROKER_CONF
    print(f"  broker files    {files.directory}/ (passwd, acl, accounts.json, {conf.name})")
    print(f"  on the broker   {conf.name} -> /etc/mosquitto/conf.d/, the rest -> {root}/")
    secrets = [identity.PASSWD, identity.ACL]
    if (files.directory / identity.SERVER_KEY).exists():
        secrets.append(identity.SERVER_KEY)
    if files.owned:
        print(f"                  ({', '.join(secrets)}: 0600, owned by {user} already)")
    else:
        names = " ".join(str(files.directory / name) for name in secrets)
        print(f"                  install -o {user} -g {user} -m 600 {names} {root}/")
    print("                  then 'systemctl reload mosquitto' (accounts, ACL); restart it")
    print("                  after the first install or a listener change (not reloaded)")
