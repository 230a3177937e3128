"""``contactpoint update``: install a release and keep it only if it comes up (run as root).

- ``contactpoint update WHEELHOUSE``: the contactpoint wheel in that directory (with
  ``--to VERSION`` when it holds several) and its dependencies from there, offline;
- ``contactpoint update VERSION``: that version from the package index;
- ``contactpoint update --listen``: wait for signed ``cmd/update`` requests from the sink
  (the ``contactpoint-update`` unit);
- ``contactpoint update --status``: the last update's state (``update.json``).

Exit codes: 0 installed (or already current), 1 rolled back or failed, 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import threading
from pathlib import Path
from typing import Any

from edge._errors import UserError

FLEET_KEY = Path("/etc/contactpoint/update.pub")


def add_command(sub: Any) -> None:
    from edge.update.releases import ROOT, UNIT, Settings

    defaults = Settings()
    up = sub.add_parser(
        "update",
        help="install a release, switch to it, roll back if it does not come up",
    )
    up.add_argument(
        "source",
        nargs="?",
        metavar="WHEELHOUSE|VERSION",
        help="a directory of wheels (offline), or a version to fetch from the package index",
    )
    up.add_argument("--to", metavar="VERSION", help="with a WHEELHOUSE holding several versions")
    up.add_argument(
        "--listen", action="store_true", help="carry out signed cmd/update requests (the unit)"
    )
    up.add_argument("--status", action="store_true", help="print the last update's state")
    up.add_argument("--root", type=Path, default=ROOT, help=f"install root (default {ROOT})")
    up.add_argument("--unit", default=UNIT, help=f"the unit to restart (default {UNIT})")
    up.add_argument(
        "--ready-timeout",
        type=float,
        default=defaults.ready_timeout_s,
        metavar="S",
        help="seconds one start may take to say READY=1 (default %(default)s)",
    )
    up.add_argument(
        "--attempts",
        type=int,
        default=defaults.attempts,
        help="failed starts before rolling back (default %(default)s)",
    )
    up.add_argument(
        "--keep", type=int, default=defaults.keep, help="releases kept (default %(default)s)"
    )
    up.add_argument(
        "--python",
        default=defaults.python,
        help="interpreter of the releases' venvs (default %(default)s)",
    )
    up.add_argument("--config", type=Path, help="with --listen: the device configuration")
    up.add_argument("--data", type=Path, help="with --listen: the data directory")
    up.add_argument(
        "--fleet-key",
        type=Path,
        default=FLEET_KEY,
        help=f"with --listen: the fleet's public signing key (default {FLEET_KEY})",
    )
    up.set_defaults(handler=_update)


def _settings(args: argparse.Namespace) -> Any:
    from edge.update.releases import Settings

    if args.attempts < 1:
        raise UserError(f"--attempts {args.attempts}: at least 1")
    if args.keep < 2:
        raise UserError(f"--keep {args.keep}: at least 2 (the current and the previous)")
    if args.ready_timeout <= 0:
        raise UserError(f"--ready-timeout {args.ready_timeout}: a positive number of seconds")
    return Settings(
        root=args.root,
        unit=args.unit,
        ready_timeout_s=args.ready_timeout,
        attempts=args.attempts,
        keep=args.keep,
        python=args.python,
    )


def _update(args: argparse.Namespace) -> int:
    from edge.update.releases import Systemd, Updater

    settings = _settings(args)
    updater = Updater(settings, Systemd(settings.unit))
    if args.status:
        print(json.dumps(updater.state(), indent=2) if updater.state() else "no update yet")
        return 0
    if args.listen:
        return _listen(args, updater)
    if args.source is None:
        raise UserError("name a WHEELHOUSE directory or a VERSION (or --listen, --status)")
    version, find_links = source_of(args.source, args.to)
    outcome = updater.update(version, find_links)
    print(
        f"{outcome.result}: {outcome.version}" + (f" ({outcome.detail})" if outcome.detail else "")
    )
    return 0 if outcome.result in ("installed", "current") else 1


def source_of(source: str, to: str | None) -> tuple[str, Path | None]:
    """(version, wheelhouse or None) for the command's SOURCE."""
    from edge.update.releases import PACKAGE, check_version

    path = Path(source)
    if not path.is_dir():
        if "/" in source:
            raise UserError(f"WHEELHOUSE {source}: no such directory")
        return check_version(source, "VERSION"), None
    found = sorted(
        {
            m.group(1)
            for w in path.glob(f"{PACKAGE}-*.whl")
            if (m := re.match(rf"{PACKAGE}-([^-]+)-", w.name))
        }
    )
    if to is not None:
        if to not in found:
            raise UserError(f"--to {to}: no {PACKAGE}-{to}-*.whl in {path} (it has {found})")
        return check_version(to, "--to"), path
    if len(found) != 1:
        raise UserError(
            f"WHEELHOUSE {path}: "
            + (f"several versions {found}: choose one with --to" if found else
               f"no {PACKAGE}-*.whl in it (provisioning/wheelhouse.sh builds one)")
        )  # fmt: skip
    return check_version(found[0], "the wheel's version"), path


def _listen(args: argparse.Namespace, updater: Any) -> int:
    from contract.service import Notifier
    from edge.config import load_config
    from edge.enroll import claim_file, with_credentials
    from edge.update.listen import Listener
    from edge.update.manifest import ManifestError, read_key

    if args.config is None or args.data is None:
        raise UserError("--listen needs --config (device.toml) and --data (its data directory)")
    try:
        key = read_key(args.fleet_key, "--fleet-key")
    except ManifestError as exc:
        raise UserError(
            f"{exc}: the card installs it ('contactpoint fleet init-signing')"
        ) from None
    base = load_config(args.config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    notifier = Notifier()
    notifier.ready("starting")
    # a device still enrolling has no account yet: the daemon gets it (edge/enroll.py)
    cfg = with_credentials(base, args.data)
    while cfg is None and not base.mqtt.password_file and claim_file(base, args.data).exists():
        notifier.status("waiting for the device's enrollment")
        if stop.wait(10):
            return 0
        cfg = with_credentials(base, args.data)
    listener = Listener(cfg or base, updater, key)
    notifier.status("waiting for update requests")
    try:
        outcome = listener.run(stop)
    except KeyboardInterrupt:
        return 0
    if outcome is not None:
        print(f"{outcome.result}: {outcome.version}; exiting to start again from it")
    return 0
