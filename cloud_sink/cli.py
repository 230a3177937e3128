"""``contactpoint sink ...``: run the ingest worker, list what it stored.

Rules:
- ``add_commands(subparsers)`` registers ``sink run``, ``sink contacts``, ``sink retention``,
  ``sink config example|check``, the managers' commands and the HTTP side's ``sink serve``,
  ``sink token ...``, ``sink user ...`` (:mod:`cloud_sink.api.cli`); each sets
  ``handler`` (Namespace -> exit code), the convention of ``contactpoint``'s main.
- Settings come from, highest first: command-line flags, the ``[sink]`` table of ``--config``
  (the schema of :mod:`cloud_sink.config`: keys are :class:`SinkConfig` field names, values of
  the field's type; unknown keys are refused with a "did you mean"), the defaults of
  :class:`SinkConfig`.
- The password is never a flag (it would show in ``ps``): ``--password-file`` or the config.
- ``sink run`` stops cleanly on SIGTERM and SIGINT (finishes the message in hand, disconnects).
- Errors the user can fix print on stderr (one line; a config file: its list of problems) and
  exit 2. Only ``sink run`` creates a database: every other command on a place holding none
  says so and exits 2.
- A reader that stops early (``| head -1``) is a normal end: no traceback, exit 0.
- ``--json`` output is strict JSON (RFC 8259): a non-finite number stored by an older sink
  (``duration_s`` of ``1e999``) is printed as null, never as ``Infinity``.
- ``sink contacts`` filters (all given ones must hold): ``--tag`` (repeatable: every tag),
  ``--site``, ``--device``, ``--staff``, ``--from`` (start at or after) and ``--to`` (start
  before), times as in ``sink report`` (a bare date is midnight in ``--tz``, default UTC).
  A clip whose audio retention deleted says so (``audio_deleted_at``: when, ISO 8601 UTC).
  ``--text WORDS``: only contacts whose transcript holds every word, in any inflected form
  (cloud_sink/speech/search.py).
- ``sink transcribe`` and ``sink standards``: cloud_sink/speech/cli.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from cloud_sink import manage, report
from cloud_sink.config import (
    S3Section,
    example_sink_config,
    keys_set,
    load_sink_file,
    read_sink_file,
)
from cloud_sink.consumer import Sink, SinkConfig
from cloud_sink.db import DatabaseUrlError
from cloud_sink.ingest import Ingest
from cloud_sink.migrations import NoDatabaseError, SchemaError, open_existing
from cloud_sink.objects import S3Clips
from cloud_sink.retention import deleted_audio
from cloud_sink.retention import enforce as enforce_retention
from cloud_sink.tls import check_files as check_tls_files
from contract.cli import stdout_closed
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
    "clips": "clips",
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
    run.add_argument(
        "--clips",
        help="s3://BUCKET/PREFIX: keep verified clips in that object storage (endpoint, region "
        "and keys: the [s3] table of --config or the AWS_* environment; default: the data "
        "directory)",
    )
    run.set_defaults(handler=_guarded(_run))

    contacts = sub.add_parser("contacts", help="list the contacts the sink stored")
    contacts.add_argument("--data", type=Path, required=True, help="data directory")
    contacts.add_argument("--db", help="postgresql://... (default: SQLite in --data)")
    contacts.add_argument("--json", action="store_true", help="one JSON object per line")
    contacts.add_argument(
        "--tag", action="append", default=[], help="only contacts with this tag (repeatable: all)"
    )
    contacts.add_argument("--site", help="only this site")
    contacts.add_argument("--device", help="only this device")
    contacts.add_argument("--staff", help="only contacts served by this staff member")
    contacts.add_argument("--from", dest="start", help="starting at or after (ISO date/time)")
    contacts.add_argument("--to", dest="end", help="starting before (ISO date/time)")
    contacts.add_argument("--tz", help="time zone of bare --from/--to times (default: UTC)")
    contacts.add_argument(
        "--text", help="only contacts whose transcript holds every one of these words"
    )
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
    from cloud_sink.api import cli as api_cli  # FastAPI and uvicorn load only for these

    api_cli.add_commands(sub, _guarded)  # serve, token, user (cloud_sink/api/cli.py)
    _add_speech_commands(sub)


def _add_speech_commands(sub: Any) -> None:
    """``sink transcribe`` and ``sink standards`` (cloud_sink/speech/cli.py)."""
    from cloud_sink.speech import cli as speech_cli

    speech_cli.add_commands(sub, _guarded)


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
            code = fn(args)
            sys.stdout.flush()  # a reader gone while the last lines were buffered: caught here
            return code
        except BrokenPipeError:
            return stdout_closed()
        except (
            SinkCliError,
            ConfigError,
            DatabaseUrlError,
            SchemaError,
            NoDatabaseError,
            OSError,
            ValueError,
        ) as exc:
            print(f"contactpoint sink: error: {exc}", file=sys.stderr)
            return 2

    return run


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (inf, nan) made None: valid JSON for any reader."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """One line of strict JSON (``allow_nan=False`` after :func:`strict_json`)."""
    return json.dumps(strict_json(value), ensure_ascii=False, allow_nan=False)


def read_config_file(path: Path) -> dict[str, Any]:
    """The keys the ``[sink]`` table of ``path`` sets, checked against the whole file's schema
    (:mod:`cloud_sink.config`)."""
    try:
        doc, raw = read_sink_file(path)
        return keys_set(doc.sink, raw.get("sink"))
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


def s3_settings(path: Path | None) -> S3Section | None:
    """The ``[s3]`` table of the config file ``path``, if it has one."""
    if path is None:
        return None
    try:
        doc, raw = read_sink_file(path)
    except ConfigError as exc:
        raise SinkCliError(str(exc)) from None
    return doc.s3 if "s3" in raw else None


def clip_objects(path: Path | None) -> S3Clips | None:
    """Object storage for reading or deleting clips uploaded there: from the ``[s3]`` table
    of ``path``, else (only where the AWS environment names credentials) from it."""
    s3 = s3_settings(path)
    if s3 is None and not os.environ.get("AWS_ACCESS_KEY_ID"):
        return None
    return S3Clips(s3 if s3 is not None else S3Section())


def _config_example(args: argparse.Namespace) -> int:
    sys.stdout.write(example_sink_config())
    return 0


def _config_check(args: argparse.Namespace) -> int:
    doc = load_sink_file(args.file)
    broker = doc.sink.broker or "from --broker"
    print(
        f"{args.file}: ok (broker {broker}; {len(doc.alerts.rules)} site alert rule(s); "
        f"{len(doc.alerts.compliance)} compliance alert rule(s); {len(doc.reasons)} reason(s))"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    # the stop is taken from the start: a SIGTERM while the sink opens and migrates its database
    # ends it cleanly before its loop runs (it used to kill the process, and one that came just
    # before the loop was forgotten, as the loop cleared the request)
    asked = threading.Event()
    sink: Sink | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        asked.set()
        if sink is not None:
            supervisor.stopping()
            sink.request_stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        config = config_from_args(args)
        if config.endpoint()[2]:  # a bad URL fails here, not in the worker
            check_tls_files(config)  # so does a missing, expired or mismatched TLS file
        from cloud_sink.service import SinkSupervisor
        from contract.service import Notifier

        supervisor = SinkSupervisor(Notifier())
        sink = Sink(
            config,
            alerts=manage.site_alerts_from(args.config),
            on_turn=supervisor.turn,
            s3=s3_settings(args.config),
        )
        if asked.is_set():  # before the sink was there to be told
            sink.request_stop()
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
    db = open_existing(args.db, args.data)
    try:
        done = enforce_retention(
            db, args.data, float(days), time.time_ns(), clip_objects(args.config)
        )
    finally:
        db.close()
    for error in done.errors:
        print(f"contactpoint sink: retention: {error}", file=sys.stderr)
    print(
        f"retention {days:g} days: {done.deleted} clip file(s) deleted, "
        f"{done.dropped_incomplete} incomplete clip(s) dropped, {done.already_gone} already gone"
    )
    return 1 if done.errors else 0


def _iso_utc(wall_ns: int) -> str:
    """ISO 8601 UTC with milliseconds, as the wire writes times (``2026-11-23T09:00:10.000Z``)."""
    seconds, rest = divmod(wall_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1_000_000:03d}Z"


def _contact_filter(args: argparse.Namespace) -> Callable[[dict[str, Any]], bool]:
    """Whether a contact passes the filters of ``sink contacts`` (module rules); bad filter
    values are refused here, before anything is opened."""
    tz = report.zone(args.tz or "UTC")
    start = None if args.start is None else report.parse_when(args.start, tz, "--from")
    end = None if args.end is None else report.parse_when(args.end, tz, "--to")
    if start is not None and end is not None and end <= start:
        raise SinkCliError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    wanted = set(args.tag)
    fields = [(k, v) for k, v in (("site", args.site), ("device", args.device),
              ("staff", args.staff)) if v is not None]  # fmt: skip

    def passes(contact: dict[str, Any]) -> bool:
        return (
            wanted <= set(contact["tags"])
            and all(contact.get(key) == value for key, value in fields)
            and report.in_period(report.instant(str(contact["start"])), start, end)
        )

    return passes


def _transcript_matches(db: Any, text: str) -> set[tuple[str, str]]:
    from cloud_sink.speech.search import matching  # pymorphy3 only when --text is given

    return matching(db, text)


def _audio_text(contact: dict[str, Any]) -> str:
    if not contact["clip"]:
        return "-"
    if contact["audio"]:
        return str(contact["audio"])
    if contact["audio_deleted_at"]:
        return f"audio deleted by retention on {contact['audio_deleted_at'][:10]}"
    return "(clip incomplete)"


def _contacts(args: argparse.Namespace) -> int:
    passes = _contact_filter(args)
    db = open_existing(args.db, args.data)
    try:
        deleted = deleted_audio(db)
        said = None if args.text is None else _transcript_matches(db, args.text)
        for contact in filter(passes, Ingest(db, args.data).contacts()):
            if said is not None and (contact["device"], contact["id"]) not in said:
                continue
            when = deleted.get((contact["device"], contact["id"]))
            contact["audio_deleted_at"] = None if when is None else _iso_utc(when)
            if args.json:
                print(dumps(contact))
                continue
            video = f"  video: {contact['video_url']}" if contact.get("video_url") else ""
            print(
                f"{contact['id']}  {contact['start']}  {contact['site']}/{contact['device']}  "
                f"{contact.get('staff') or '-'}  {contact['duration_s']:7.1f} s  "
                f"{','.join(contact['tags'])}  {_audio_text(contact)}{video}"
            )
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
