"""``sink serve``, ``sink token create|list|revoke``, ``sink user add|passwd|remove|list``.

Rules:
- ``serve`` opens the database ``sink run`` created (never creates one) and serves the app with
  uvicorn on ``--listen HOST:PORT`` (default 127.0.0.1:8080); ``--tls-cert``/``--tls-key``
  serve HTTPS (both or neither; checked before listening) and make the cookies Secure.
- A token is printed once on standard output, nothing else there; its id (for ``revoke``) on
  standard error. ``--expires`` is a duration (``30d``, ``12h``, ``45m``) or an ISO date/time.
- A password is never a flag: it is read from ``--password-file``, or from standard input
  (one line) when that is not a terminal, or asked twice at the terminal.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud_sink.api import accounts

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhm])")
_UNITS = {"d": 86400, "h": 3600, "m": 60}


def add_commands(sub: Any, guarded: Any) -> None:
    """Register ``serve``, ``token`` and ``user`` on ``sink``'s subparsers."""
    serve = sub.add_parser("serve", help="the HTTP API and the managers' web page")
    _place(serve)
    serve.add_argument(
        "--listen", default="127.0.0.1:8080", help="HOST:PORT (default: %(default)s)"
    )
    serve.add_argument("--tls-cert", type=Path, help="server certificate (PEM) for HTTPS")
    serve.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    serve.add_argument(
        "--offline-after", type=float, default=300.0,
        help="seconds without a message after which a device counts as offline (default 300)",
    )  # fmt: skip
    serve.set_defaults(handler=guarded(_serve))

    token = sub.add_parser("token", help="API tokens for machines (create, list, revoke)")
    tsub = token.add_subparsers(title="token commands", metavar="ACTION", required=True)
    create = tsub.add_parser("create", help="create a token; it is printed once")
    _place(create)
    create.add_argument("--role", required=True, choices=accounts.ROLES)
    create.add_argument("--site", action="append", default=[], help="a site in scope (repeat)")
    create.add_argument("--expires", help="e.g. 30d, 12h, 45m or 2027-01-31 (default: never)")
    create.add_argument("--name", default="token", help="what it is for (e.g. erp-sync)")
    create.set_defaults(handler=guarded(_token_create))
    listing = tsub.add_parser("list", help="list tokens (never their secret)")
    _place(listing)
    listing.set_defaults(handler=guarded(_token_list))
    revoke = tsub.add_parser("revoke", help="revoke a token by its id")
    _place(revoke)
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=guarded(_token_revoke))

    user = sub.add_parser("user", help="users of the web page (add, passwd, remove, list)")
    usub = user.add_subparsers(title="user commands", metavar="ACTION", required=True)
    add = usub.add_parser("add", help="add a user")
    _place(add)
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=accounts.ROLES)
    add.add_argument("--site", action="append", default=[], help="a site in scope (repeat)")
    add.add_argument("--password-file", type=Path, help="file holding the password")
    add.set_defaults(handler=guarded(_user_add))
    passwd = usub.add_parser("passwd", help="set a user's password (ends their sessions)")
    _place(passwd)
    passwd.add_argument("name")
    passwd.add_argument("--password-file", type=Path, help="file holding the password")
    passwd.set_defaults(handler=guarded(_user_passwd))
    remove = usub.add_parser("remove", help="remove a user")
    _place(remove)
    remove.add_argument("name")
    remove.set_defaults(handler=guarded(_user_remove))
    ulist = usub.add_parser("list", help="list users")
    _place(ulist)
    ulist.set_defaults(handler=guarded(_user_list))


def _place(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="data directory")
    parser.add_argument("--db", help="postgresql://... (default: SQLite in --data)")
    parser.add_argument("--config", type=Path, help="TOML file ([report], [[reasons]], [s3])")


def _open(args: argparse.Namespace) -> Any:
    from cloud_sink.migrations import open_existing

    return open_existing(args.db, args.data)


def parse_expiry(text: str, now_ns: int) -> int:
    match = _DURATION.fullmatch(text.strip())
    if match:
        return now_ns + int(float(match.group(1)) * _UNITS[match.group(2)] * 1e9)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise accounts.AccountError(
            f"--expires {text!r}: write a duration (30d, 12h, 45m) or an ISO date (2027-01-31)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        return str(args.password_file.read_text(encoding="utf-8").rstrip("\r\n"))
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise accounts.AccountError("the two passwords differ; run the command again")
    return first


def _token_create(args: argparse.Namespace) -> int:
    now = time.time_ns()
    expires = None if args.expires is None else parse_expiry(args.expires, now)
    db = _open(args)
    try:
        new = accounts.create_token(
            db, role=args.role, sites=args.site, name=args.name, now_ns=now, expires_ns=expires
        )
    finally:
        db.close()
    print(new.token)
    scope = ", ".join(new.sites) or "every site"
    when = "never" if expires is None else datetime.fromtimestamp(expires / 1e9, UTC).isoformat()
    print(
        f"token {new.id} ({new.name}): role {new.role}, {scope}, expires {when}; "
        "shown once, store it now",
        file=sys.stderr,
    )
    return 0


def _token_list(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        for row in accounts.list_tokens(db):
            print(json.dumps(row, sort_keys=True))
    finally:
        db.close()
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        done = accounts.revoke_token(db, args.id, time.time_ns())
    finally:
        db.close()
    if not done:
        raise accounts.AccountError(
            f"no active token {args.id}: 'sink token list' shows the tokens"
        )
    print(f"token {args.id} revoked")
    return 0


def _user_add(args: argparse.Namespace) -> int:
    password = _password(args)
    db = _open(args)
    try:
        accounts.add_user(
            db, args.name, password, role=args.role, sites=args.site, now_ns=time.time_ns()
        )
    finally:
        db.close()
    print(f"user {args.name} added ({args.role}, {', '.join(args.site) or 'every site'})")
    return 0


def _user_passwd(args: argparse.Namespace) -> int:
    password = _password(args)
    db = _open(args)
    try:
        accounts.set_password(db, args.name, password, time.time_ns())
    finally:
        db.close()
    print(f"password of {args.name} changed; their sessions ended")
    return 0


def _user_remove(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        accounts.remove_user(db, args.name)
    finally:
        db.close()
    print(f"user {args.name} removed")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        for row in accounts.list_users(db):
            print(json.dumps(row, sort_keys=True))
    finally:
        db.close()
    return 0


def listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise accounts.AccountError(
            f"--listen {text!r}: write HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8443"
        )
    return host.strip("[]"), int(port)


def settings_from(args: argparse.Namespace) -> Any:
    from cloud_sink.api.settings import ApiSettings
    from cloud_sink.config import read_sink_file
    from cloud_sink.metrics import Parameters

    doc, raw = read_sink_file(args.config)
    return ApiSettings(
        data_dir=args.data,
        db_url=args.db,
        reasons=tuple(doc.checklist()),
        timezone=doc.report.timezone,
        params=Parameters(
            correction_factor=doc.report.correction_factor,
            force_majeure_threshold=doc.report.force_majeure_threshold,
        ),
        offline_after_s=float(getattr(args, "offline_after", 300.0)),
        secure_cookies=args.tls_cert is not None,
        s3=doc.s3 if "s3" in raw else None,
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cloud_sink.api.app import create_app

    host, port = listen_address(args.listen)
    if (args.tls_cert is None) != (args.tls_key is None):
        raise accounts.AccountError("--tls-cert and --tls-key go together: give both or neither")
    for path in (args.tls_cert, args.tls_key):
        if path is not None and not path.is_file():
            raise accounts.AccountError(f"{path}: no such file (--tls-cert / --tls-key)")
    app = create_app(settings_from(args))
    scheme = "https" if args.tls_cert else "http"
    print(f"contactpoint sink serve: {scheme}://{host}:{port}/ (docs at /docs)", file=sys.stderr)
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=None if args.tls_cert is None else str(args.tls_cert),
        ssl_keyfile=None if args.tls_key is None else str(args.tls_key),
        log_level="info",
        proxy_headers=False,
    )
    return 0
