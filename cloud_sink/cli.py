"""``contactpoint sink ...``: run the ingest worker, list what it stored.

Rules:
- ``add_commands(subparsers)`` registers ``sink run``, ``sink contacts``, ``sink retention``,
  ``sink config example|check`` and the managers' commands; each sets ``handler`` (Namespace ->
  exit code), the convention of ``contactpoint``'s main.
- Settings come from, highest first: command-line flags, the ``[sink]`` table of ``--config``
  (the schema of :mod:`cloud_sink.config`: keys are :class:`SinkConfig` field names, values of
  the field's type; unknown keys are refused with a "did you mean"), the defaults of
  :class:`SinkConfig`.
- The password is never a flag (it would show in ``ps``): ``--password-file`` or the config.
- ``sink run`` stops cleanly on SIGTERM and SIGINT (finishes the message in hand, disconnects).
- Errors the user can fix print on stderr (one line; a config file: its list of problems) and
  exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from cloud_sink import manage, report
from cloud_sink.config import example_sink_config, load_sink_file
from cloud_sink.consumer import Sink, SinkConfig
from cloud_sink.db import DatabaseUrlError, open_database
from cloud_sink.ingest import Ingest
from cloud_sink.migrations import SchemaError, migrate
from cloud_sink.retention import enforce as enforce_retention
from cloud_sink.tls import check_files as check_tls_files
from contract.config import ConfigError


class SinkCliError(Exception):
    """A problem with the command line or the config file."""


_FLAGS: dict[str, str] = {  # argparse dest -> SinkConfig field
    "broker": "broker",
    "db": "db_url",
    "group": "group",
    "client_id": "client_id",
    "protocol": "protocol",
    "username": "username",
    "tls": "tls",
    "ca_file": "ca_file",
    "cert_file": "cert_file",
    "key_file": "key_file",
    "resend_after": "resend_after_s",
    "check_every": "check_every_s",
}


def add_commands(subparsers: Any) -> None:
    """Register ``sink run`` and ``sink contacts`` on an argparse subparsers object."""
    sink = subparsers.add_parser("sink", help="the central ingest service (MQTT → database)")
    sub = sink.add_subparsers(title="sink commands", metavar="ACTION", required=True)

    run = sub.add_parser("run", help="consume the devices' messages into the database")
    run.add_argument("--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    run.add_argument("--data", type=Path, required=True, help="data directory (sink.db, clips)")
    run.add_argument("--db", help="postgresql://USER@HOST:PORT/NAME (default: SQLite in --data)")
    run.add_argument(
        "--group",
        help="MQTT 5 shared-subscription group, for N workers on one stream (default: none, a "
        "single worker with a plain subscription)",
    )
    run.add_argument(
        "--client-id",
        help="MQTT client id (default: contactpoint-sink[-GROUP], with a password also a tag "
        "derived from it, so devices cannot guess it)",
    )
    run.add_argument("--config", type=Path, help="TOML file with a [sink] table")
    run.add_argument("--protocol", choices=("5", "3.1.1"), help="MQTT version (default: 5)")
    run.add_argument("--username", help="broker user name")
    run.add_argument("--password-file", type=Path, help="file holding the broker password")
    run.add_argument("--tls", action="store_true", default=None, help="TLS (implied by mqtts://)")
    run.add_argument("--ca-file", help="CA certificate(s) to verify the broker")
    run.add_argument("--cert-file", help="client certificate")
    run.add_argument("--key-file", help="client key")
    run.add_argument(
        "--resend-after", type=float, help="seconds a clip may stay incomplete before a resend"
    )
    run.add_argument("--check-every", type=float, help="seconds between clip checks")
    run.set_defaults(handler=_guarded(_run))

    contacts = sub.add_parser("contacts", help="list the contacts the sink stored")
    contacts.add_argument("--data", type=Path, required=True, help="data directory")
    contacts.add_argument("--db", help="postgresql://... (default: SQLite in --data)")
    contacts.add_argument("--json", action="store_true", help="one JSON object per line")
    contacts.set_defaults(handler=_guarded(_contacts))

    retention = sub.add_parser(
        "retention", help="delete clip audio older than retention_audio_days now"
    )
    retention.add_argument("--data", type=Path, required=True, help="data directory")
    retention.add_argument("--db", help="postgresql://... (default: SQLite in --data)")
    retention.add_argument("--config", type=Path, help="TOML file with a [sink] table")
    retention.add_argument("--days", type=float, help="override sink.retention_audio_days")
    retention.set_defaults(handler=_guarded(_retention))

    config = sub.add_parser("config", help="print or check a sink configuration file")
    config_sub = config.add_subparsers(title="config commands", metavar="ACTION", required=True)
    example = config_sub.add_parser("example", help="print a commented default configuration")
    example.set_defaults(handler=_guarded(_config_example))
    check = config_sub.add_parser("check", help="validate a sink configuration file")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=_guarded(_config_check))

    manage.add_commands(sub, _guarded)  # annotate, reasons, alerts (cloud_sink/manage.py)
    report.add_command(sub, _guarded)  # the metrics (cloud_sink/report.py)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cloud_sink.cli sink ...`` without the rest of contactpoint."""
    parser = argparse.ArgumentParser(prog="contactpoint")
    add_commands(parser.add_subparsers(title="commands", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (
            SinkCliError,
            ConfigError,
            DatabaseUrlError,
            SchemaError,
            OSError,
            ValueError,
        ) as exc:
            print(f"contactpoint sink: error: {exc}", file=sys.stderr)
            return 2

    return run


def read_config_file(path: Path) -> dict[str, Any]:
    """The keys the ``[sink]`` table of ``path`` sets, checked against the whole file's schema
    (:mod:`cloud_sink.config`)."""
    try:
        return load_sink_file(path).sink.model_dump(exclude_unset=True)
    except ConfigError as exc:
        raise SinkCliError(str(exc)) from None


def config_from_args(args: argparse.Namespace) -> SinkConfig:
    values: dict[str, Any] = read_config_file(args.config) if args.config else {}
    for dest, name in _FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            values[name] = value
    if args.password_file is not None:
        values["password"] = args.password_file.read_text(encoding="utf-8").strip()
    if "broker" not in values:
        raise SinkCliError("no broker: pass --broker mqtt://HOST:PORT or set sink.broker")
    try:
        return SinkConfig(data_dir=args.data, **values)
    except TypeError as exc:
        raise SinkCliError(f"bad configuration: {exc}") from None


def _config_example(args: argparse.Namespace) -> int:
    sys.stdout.write(example_sink_config())
    return 0


def _config_check(args: argparse.Namespace) -> int:
    doc = load_sink_file(args.file)
    broker = doc.sink.broker or "from --broker"
    print(
        f"{args.file}: ok (broker {broker}; {len(doc.alerts.rules)} site alert rule(s); "
        f"{len(doc.reasons)} reason(s))"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.endpoint()[2]:  # a bad URL fails here, not in the worker
        check_tls_files(config)  # so does a missing, expired or mismatched TLS file
    sink = Sink(config, alerts=manage.site_alerts_from(args.config))

    def stop(signum: int, frame: FrameType | None) -> None:
        sink.request_stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        sink.run_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(json.dumps(sink.stats(), sort_keys=True), file=sys.stderr)
    return 0


def _retention(args: argparse.Namespace) -> int:
    days = args.days
    if days is None and args.config is not None:
        days = read_config_file(args.config).get("retention_audio_days")
    if days is None:
        raise SinkCliError(
            "no retention configured: set sink.retention_audio_days in --config or pass --days N"
        )
    if days < 0:
        raise SinkCliError(f"--days must be >= 0, got {days}")
    db = open_database(args.db, args.data)
    try:
        migrate(db)
        done = enforce_retention(db, args.data, float(days), time.time_ns())
    finally:
        db.close()
    for error in done.errors:
        print(f"contactpoint sink: retention: {error}", file=sys.stderr)
    print(
        f"retention {days:g} days: {done.deleted} clip file(s) deleted, "
        f"{done.dropped_incomplete} incomplete clip(s) dropped, {done.already_gone} already gone"
    )
    return 1 if done.errors else 0


def _contacts(args: argparse.Namespace) -> int:
    db = open_database(args.db, args.data)
    try:
        migrate(db)
        for contact in Ingest(db, args.data).contacts():
            if args.json:
                print(json.dumps(contact, ensure_ascii=False))
            else:
                audio = (contact["audio"] or "(clip incomplete)") if contact["clip"] else "-"
                video = f"  video: {contact['video_url']}" if contact.get("video_url") else ""
                print(
                    f"{contact['start']}  {contact['site']}/{contact['device']}  "
                    f"{contact['duration_s']:7.1f} s  {','.join(contact['tags'])}  {audio}{video}"
                )
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
