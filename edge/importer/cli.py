"""``contactpoint import RECORDINGS... [--events FILE] [--config FILE] --data DIR [--broker URL]``.

The events are those of the ``--events`` file and those posted to the device's HTTP input
(``POST /event``, kept in the store of ``--data`` until an import stores their contacts).

Prints a progress bar on a terminal (stderr) and a summary at the end (stdout): recordings
read, duplicates, files that could not be used and why, events read, bad rows by line number,
contacts made (stitched, cut short), events already imported, events no recording covers,
recordings no event falls in. Exit 0 when everything given was imported (or already was), 1
when some input was left out (a bad file, a bad row, an event not covered: named in the
summary), 2 on an error that stops the import (a wrong config, an unreadable events file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

#: list at most this many items of each kind in the summary (the rest as a count)
SHOW = 20


def add_import_command(subparsers: Any) -> None:
    """Register ``contactpoint import`` on the ``contactpoint`` command's subparsers."""
    p = subparsers.add_parser(
        "import",
        help="cut recordings (a dictaphone's files) around a CRM's events into contacts",
    )
    p.add_argument(
        "recordings",
        nargs="+",
        type=Path,
        metavar="RECORDINGS",
        help="audio files (WAV, FLAC, MP3, Ogg, ...) or folders of them (a mounted dictaphone)",
    )
    p.add_argument(
        "--events",
        type=Path,
        help="the CRM's events: CSV, or JSON lines (.jsonl): time, kind, order_id, staff, "
        "rating (the events posted to the device, POST /event, are imported too)",
    )
    p.add_argument("--config", type=Path, help="device configuration ([importer] section)")
    p.add_argument("--data", type=Path, required=True, help="data directory (store + clips)")
    p.add_argument(
        "--broker",
        metavar="URL",
        help="also publish the contacts to this MQTT broker and return once the sink has them",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="with --broker: give up (exit 1, data kept queued) after S seconds",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_import)


def _import(args: argparse.Namespace) -> int:
    from edge._errors import UserError
    from edge.config import load_config
    from edge.importer.run import rich_progress, run_import

    cfg = load_config(args.config)
    data: Path = args.data
    if data.exists() and not data.is_dir():
        raise UserError(f"--data {data} exists and is not a directory")
    if args.events is not None and not args.events.is_file():
        raise UserError(f"--events {args.events}: no such file")
    with rich_progress(not args.no_progress) as progress:
        summary = run_import(
            cfg,
            args.recordings,
            args.events,
            data,
            broker=args.broker,
            drain_timeout_s=args.drain_timeout,
            progress=progress,
        )
    return print_summary(summary, args.events, sys.stdout)


def print_summary(summary: Any, events_path: Path | None, out: TextIO) -> int:
    """The summary lines; the exit code (1 when some input was left out)."""
    from edge.publish.wire import iso

    s = summary
    w = out.write
    hours = s.audio_seconds / 3600
    w(f"recordings: {s.files} read ({hours:.2f} h of audio)")
    if s.duplicates:
        w(f", {len(s.duplicates)} duplicate(s) skipped")
    w("\n")
    for copy, original in s.duplicates[:SHOW]:
        w(f"  duplicate: {copy} (same content as {original})\n")
    if s.file_problems:
        w(f"files not used: {len(s.file_problems)}\n")
        for problem in s.file_problems[:SHOW]:
            w(f"  {problem.path}: {problem.reason}\n")
        _more(out, len(s.file_problems))
    if events_path is not None:
        w(f"events: {s.events} read from {events_path}, {s.posted} posted to the device")
    else:
        w(f"events: {s.posted} posted to the device (POST /event; no --events file)")
    if s.already_imported:
        w(f", {s.already_imported} imported before")
    w("\n")
    if s.row_problems:
        w(f"bad rows (skipped, the rest imported): {len(s.row_problems)}\n")
        for line, message in s.row_problems[:SHOW]:
            w(f"  {events_path}:{line}: {message}\n")
        _more(out, len(s.row_problems))
    w(
        f"contacts made: {s.contacts} ({s.clip_seconds / 60:.1f} min of clips; "
        f"{s.stitched} stitched across files, {s.cut_short} cut short at a gap or a file's edge)\n"
    )
    if s.not_covered:
        w(f"events not covered by any recording: {len(s.not_covered)} (kept, sent as events)\n")
        for event in s.not_covered[:SHOW]:
            order = f" order {event.order_id}" if event.order_id else ""
            staff = f" staff {event.staff}" if event.staff else ""
            where = f"line {event.line}" if event.line else f"posted {event.id}"
            w(f"  {where}: {event.kind} at {iso(event.wall_ns)}{order}{staff}\n")
        _more(out, len(s.not_covered))
    if s.files_without_events:
        w(f"recordings with no events: {len(s.files_without_events)}\n")
        for path in s.files_without_events[:SHOW]:
            w(f"  {path}\n")
        _more(out, len(s.files_without_events))
    if s.delivered:
        w("delivered: the broker acknowledged everything\n")
    left_out = bool(s.file_problems or s.row_problems or s.not_covered)
    return 1 if left_out else 0


def _more(out: TextIO, count: int) -> None:
    if count > SHOW:
        out.write(f"  … and {count - SHOW} more\n")
