"""Audio retention on the device: clip files older than ``retention.audio_days`` are deleted.

Rules:
- Recorded conversations are personal data: a clip's audio is kept ``retention.audio_days``
  after its contact ended (the contact's end wall time), then its file is deleted and its row
  marked (``clips.audio_deleted_at``, migration 5). The contact, its events, tags and the clip's
  metadata stay: metrics and the history do not depend on the audio; ``contactpoint
  contacts`` says "audio deleted by retention on DATE" (``Store.audio_deleted``).
- :func:`due` is the pure decision (injected "now"); :func:`enforce` carries it out: unlink the
  file first, then mark the row, so a crash between the two leaves a row whose file is gone,
  which the next run marks (a file is never left behind a marked row). Running it again
  changes nothing: it is idempotent.
- An undelivered clip (its contact or clip outbox row not yet acknowledged by the broker) is
  never deleted by age unless ``retention.delete_undelivered`` is set: delivery is the
  product's promise, and the sink keeps its own copy under its own retention.
- A path that leaves the data directory is never deleted (counted as an error).
- The daemon runs :func:`enforce` every ``retention.interval_s``, only while the wall clock is
  synchronised (a Pi without RTC may boot in 1970 or in the future); ``contactpoint retention
  run --data DIR`` runs it on demand.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge._errors import UserError
from edge.clock import Clock
from edge.config import RetentionSection, load_config
from edge.store import Store

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class AudioFile:
    contact_id: str
    path: str  # relative to the data directory
    end_wall_ns: int  # the contact's end
    delivered: bool


@dataclass(slots=True)
class RetentionResult:
    deleted: int = 0  # files removed now
    already_gone: int = 0  # rows marked whose file was gone already (disk budget, a crash)
    kept_undelivered: int = 0  # old enough, but not delivered yet
    errors: list[str] = field(default_factory=list)

    @property
    def marked(self) -> int:
        return self.deleted + self.already_gone


def due(
    files: list[AudioFile], now_wall_ns: int, cfg: RetentionSection
) -> tuple[list[AudioFile], int]:
    """(the files whose audio must go now, how many old ones are kept as undelivered)."""
    if cfg.audio_days is None:
        return [], 0
    cutoff = now_wall_ns - round(cfg.audio_days * NS_PER_DAY)
    old = [f for f in files if f.end_wall_ns <= cutoff]
    chosen = [f for f in old if f.delivered or cfg.delete_undelivered]
    return chosen, len(old) - len(chosen)


def enforce(
    store: Store, data_dir: Path, cfg: RetentionSection, now_wall_ns: int
) -> RetentionResult:
    """Delete the clip files :func:`due` picks and mark their rows."""
    result = RetentionResult()
    if cfg.audio_days is None:
        return result
    files = [AudioFile(*row) for row in store.audio_on_disk()]
    chosen, result.kept_undelivered = due(files, now_wall_ns, cfg)
    root = data_dir.resolve()
    gone: list[str] = []
    for f in chosen:
        path = (root / f.path).resolve()
        if not path.is_relative_to(root):
            result.errors.append(f"clip {f.contact_id}: path {f.path!r} leaves the data dir")
            continue
        try:
            path.unlink()
            result.deleted += 1
        except FileNotFoundError:
            result.already_gone += 1
        except OSError as exc:
            result.errors.append(f"{path}: {exc.strerror or exc}")
            continue
        gone.append(f.contact_id)
    if gone:
        store.mark_audio_deleted(gone, now_wall_ns)
    for error in result.errors:
        log.warning("retention: %s", error)
    if result.marked:
        log.info(
            "retention: deleted the audio of %d clip(s) older than %g days",
            result.marked,
            cfg.audio_days,
        )
    return result


def periodic(
    store: Store, data_dir: Path, cfg: RetentionSection, clock: Clock, next_ns: int
) -> int:
    """The daemon's hook: :func:`enforce` once the monotonic time reaches ``next_ns`` and the
    wall clock is synchronised; returns when to look again. Never raises: capture goes on."""
    now = clock.monotonic_ns()
    if cfg.audio_days is None or now < next_ns:
        return next_ns
    if clock.synchronized():
        try:
            enforce(store, data_dir, cfg, clock.wall_ns(now))
        except Exception:  # a failing retention run must not stop the daemon
            log.exception("retention run failed; tried again in %g s", cfg.interval_s)
    return now + round(cfg.interval_s * 1_000_000_000)


# --- contactpoint retention run -----------------------------------------------------------------


def add_commands(subparsers: Any) -> None:
    retention = subparsers.add_parser("retention", help="personal data: delete old clip audio")
    sub = retention.add_subparsers(title="retention commands", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="delete clip audio older than retention.audio_days now")
    run.add_argument("--data", type=Path, required=True, help="the device's data directory")
    run.add_argument("--config", type=Path, help="device configuration (retention section)")
    run.add_argument("--days", type=float, help="override retention.audio_days")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from edge.runtime import STORE_NAME

    cfg = load_config(args.config).retention
    if args.days is not None:
        if args.days < 0:
            raise UserError(f"--days must be >= 0, got {args.days}")
        cfg = cfg.replace(audio_days=args.days)
    if cfg.audio_days is None:
        raise UserError(
            "no retention configured: set retention.audio_days in --config, or pass --days N"
        )
    path: Path = args.data / STORE_NAME
    if not path.is_file():
        raise UserError(f"no store at {path}")
    with Store.open(path) as store:
        result = enforce(store, args.data, cfg, time.time_ns())
    print(
        f"retention {cfg.audio_days:g} days: {result.deleted} clip file(s) deleted, "
        f"{result.already_gone} already gone, {result.kept_undelivered} kept (not delivered "
        f"yet), {len(result.errors)} error(s)"
    )
    return 1 if result.errors else 0
