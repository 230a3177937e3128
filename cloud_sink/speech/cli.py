"""``contactpoint sink transcribe`` and ``contactpoint sink standards``.

Rules:
- ``sink transcribe --data DIR [--db URL] [--config FILE] [--engine NAME] [--model-dir DIR]
  [--language L] [--workers N] [--rules FILE]``: transcribes every verified clip not yet
  transcribed with N worker threads (each its own engine and claims; several processes may
  run at once, on other machines too) and returns when none is left; prints a summary line
  (clips, audio seconds, real-time factor). Settings: flags, then ``[speech]`` of --config,
  then the defaults. With rules, every new transcript is checked, and the compliance alerts
  of --config (``[[alerts.compliance]]``) raised or cleared as the figures change.
- ``sink standards --data DIR --rules FILE [--config FILE]``: checks every stored transcript
  against the rules file again (after the rules changed), then updates every compliance
  figure and its alert once. ``sink standards example`` prints a commented rules file.
- An engine that cannot open (model or library missing) is a one-line error naming the
  setting, exit 2, before any clip is claimed.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud_sink.alerts import ComplianceAlerts
from cloud_sink.config import keys_set, load_sink_file, read_sink_file
from cloud_sink.migrations import open_existing
from cloud_sink.speech.config import ENGINES, RulesFile, SpeechSection, example_rules, load_rules

if TYPE_CHECKING:
    from cloud_sink.speech.engines import Engine

Guard = Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]


def add_commands(sub: Any, guarded: Guard) -> None:
    """Register ``sink transcribe`` and ``sink standards`` on the sink's subparsers."""
    tr = sub.add_parser("transcribe", help="transcribe the verified clips not yet transcribed")
    tr.add_argument("--data", type=Path, required=True, help="data directory (sink.db, clips)")
    tr.add_argument("--db", help="postgresql://... (default: SQLite in --data)")
    tr.add_argument(
        "--config", type=Path, help="TOML file with a [speech] table ([[alerts.compliance]])"
    )
    tr.add_argument("--engine", choices=ENGINES, help="speech.engine (default: faster-whisper)")
    tr.add_argument("--model-dir", help="speech.model_dir: the engine's model directory")
    tr.add_argument("--language", help="speech.language, e.g. ru or en")
    tr.add_argument("--workers", type=int, help="speech.workers: clips transcribed at once")
    tr.add_argument("--rules", type=Path, help="service-standard rules to check every transcript")
    tr.set_defaults(handler=guarded(_transcribe))

    st = sub.add_parser("standards", help="check the stored transcripts against a rules file")
    st.add_argument("--data", type=Path, help="data directory")
    st.add_argument("--db", help="postgresql://... (default: SQLite in --data)")
    st.add_argument("--rules", type=Path, help="the rules file")
    st.add_argument("--config", type=Path, help="TOML file with [[alerts.compliance]] rules")
    st.add_argument(
        "action", nargs="?", choices=("check", "example"), default="check",
        help="check (default): check every transcript again; example: print a rules file",
    )  # fmt: skip
    st.set_defaults(handler=guarded(_standards))


class SpeechCliError(ValueError):
    """A problem with the command line (printed by the sink's guard)."""


def settings_from(args: argparse.Namespace) -> SpeechSection:
    doc, raw = read_sink_file(args.config)
    values = keys_set(doc.speech, raw.get("speech"))
    for flag, key in (("engine", "engine"), ("model_dir", "model_dir"),
                      ("language", "language"), ("workers", "workers")):  # fmt: skip
        if getattr(args, flag, None) is not None:
            values[key] = getattr(args, flag)
    if values.get("workers", 1) < 1:
        raise SpeechCliError(f"--workers must be at least 1, got {values['workers']}")
    return SpeechSection.from_dict(values)


def compliance_alerts(config: Path | None) -> ComplianceAlerts | None:
    """The compliance alert rules of ``--config`` (None: no file, or none in it)."""
    if config is None:
        return None
    rules = load_sink_file(config).alerts.compliance
    return ComplianceAlerts(list(rules)) if rules else None


def _rules(path: Path | None, settings: SpeechSection) -> RulesFile | None:
    if path is not None:
        return load_rules(path)
    return None if settings.rules_file is None else load_rules(Path(settings.rules_file))


def _transcribe(args: argparse.Namespace) -> int:
    from cloud_sink.speech.engines import EngineError, open_engine  # numpy, the engine: when run
    from cloud_sink.speech.worker import Stats, Transcriber

    settings = settings_from(args)
    rules = _rules(args.rules, settings)
    alerts = compliance_alerts(args.config)
    try:
        engines: list[Engine] = [open_engine(settings) for _ in range(settings.workers)]
    except EngineError as exc:
        raise SpeechCliError(str(exc)) from None
    db = open_existing(args.db, args.data)
    started = time.perf_counter()
    results: list[Stats] = []
    errors: list[BaseException] = []

    def work(engine: Engine) -> None:
        try:
            results.append(
                Transcriber(db, args.data, engine, rules=rules, alerts=alerts,
                            lease_s=settings.lease_s, max_attempts=settings.max_attempts).run()
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, raised there
            errors.append(exc)
        finally:
            db.close()  # this thread's connection

    try:
        threads = [threading.Thread(target=work, args=(e,), daemon=True) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        db.close()
    if errors:
        raise errors[0]
    total = Stats()
    for s in results:
        total.transcribed += s.transcribed
        total.failed += s.failed
        total.lost += s.lost
        total.audio_s += s.audio_s
        total.elapsed_s += s.elapsed_s
    wall = time.perf_counter() - started
    rtf = f"{total.elapsed_s / total.audio_s:.2f}" if total.audio_s else "-"
    print(
        f"transcribed {total.transcribed} clip(s) ({total.audio_s:.1f} s of audio) with "
        f"{settings.engine}, {settings.workers} worker(s) in {wall:.1f} s; real-time factor "
        f"{rtf}; {total.failed} failed, {total.lost} claim(s) lost"
    )
    return 1 if total.failed else 0


def _standards(args: argparse.Namespace) -> int:
    if args.action == "example":
        sys.stdout.write(example_rules())
        return 0
    if args.data is None or args.rules is None:
        raise SpeechCliError("sink standards check needs --data DIR and --rules FILE")
    from cloud_sink.speech.worker import recheck

    rules = load_rules(args.rules)
    alerts = compliance_alerts(args.config)
    db = open_existing(args.db, args.data)
    try:
        n = recheck(db, rules, time.time_ns(), alerts)
    finally:
        db.close()
    print(f"checked {n} transcript(s) against {len(rules.rules)} rule(s)")
    return 0
