"""``contactpoint``: one command with subcommands for the device, the simulation and tools."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from edge._errors import UserError
from edge.config import ConfigError, example_config, load_config

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except UserError as exc:
        print(f"contactpoint: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("contactpoint: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contactpoint",
        description="Customer-contact recorder for a shop counter: buttons, remotes, presence "
        "sensor and always-on audio, cut into tagged contacts.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    config = sub.add_parser("config", help="print or check a device configuration")
    config_sub = config.add_subparsers(title="config commands", metavar="ACTION", required=True)
    example = config_sub.add_parser("example", help="print a commented default configuration")
    example.set_defaults(handler=_config_example)
    check = config_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=_config_check)

    sim = sub.add_parser(
        "simulate", help="play a scenario through the real pipeline with simulated hardware"
    )
    sim.add_argument("scenario", type=Path, help="scenario TOML file")
    sim.add_argument("--data", type=Path, required=True, help="data directory (store + clips)")
    sim.add_argument("--config", type=Path, help="device configuration (default: built-in)")
    sim.add_argument("--realtime", action="store_true", help="run at wall-clock pace")
    sim.add_argument("--speed", type=float, default=1.0, help="with --realtime: run N times faster")
    sim.add_argument(
        "--replace", action="store_true", help="delete an existing store in --data first"
    )
    sim.add_argument(
        "--broker",
        metavar="URL",
        help="also publish everything to this MQTT broker (mqtt://HOST:PORT) and return only "
        "once it has acknowledged all of it",
    )
    sim.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="with --broker: give up (exit 1, data kept queued) after S seconds",
    )
    sim.set_defaults(handler=_simulate)

    demo = sub.add_parser(
        "demo",
        help="the whole system on this machine: a local broker, the sink, and a simulated "
        "contact point playing a shift",
    )
    demo.add_argument("--data", type=Path, default=Path("demo-data"), help="where to put it all")
    demo.add_argument("--broker", metavar="URL", help="use this broker instead of a local one")
    demo.add_argument("--minutes", type=float, default=60.0, help="length of the shift")
    demo.add_argument("--speed", type=float, default=120.0, help="how much faster than real time")
    demo.add_argument("--timeout", type=float, default=120.0, help="give up after S seconds")
    demo.set_defaults(handler=_demo)

    contacts = sub.add_parser("contacts", help="list the contacts in a device's store")
    contacts.add_argument("--data", type=Path, required=True, help="data directory")
    contacts.add_argument("--json", action="store_true", help="one JSON object per line")
    contacts.set_defaults(handler=_contacts)

    from cloud_sink.cli import add_commands  # the central service's commands: `contactpoint sink`

    add_commands(sub)
    return parser


def _config_example(args: argparse.Namespace) -> int:
    sys.stdout.write(example_config())
    return 0


def _config_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.file)
    modes = ", ".join(cfg.contacts.modes)
    print(
        f"{args.file}: ok (device {cfg.device.id} at {cfg.device.site}; {len(cfg.buttons)} "
        f"buttons; modes: {modes})"
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from edge.scenario import load_scenario
    from edge.simulate import STORE_NAME, run_simulation

    if args.speed <= 0:
        raise UserError(f"--speed must be > 0, got {args.speed}")
    cfg = load_config(args.config)
    scenario = load_scenario(args.scenario, cfg)  # everything is validated before any write
    data: Path = args.data
    if data.exists() and not data.is_dir():
        raise UserError(f"--data {data} exists and is not a directory")
    if (data / STORE_NAME).exists():
        if not args.replace:
            raise UserError(
                f"{data} already holds a store ({STORE_NAME}); pick an empty directory or "
                "pass --replace to delete it first"
            )
        for name in (STORE_NAME, f"{STORE_NAME}-wal", f"{STORE_NAME}-shm"):
            (data / name).unlink(missing_ok=True)
        shutil.rmtree(data / "clips", ignore_errors=True)
    data.mkdir(parents=True, exist_ok=True)
    summary = run_simulation(
        cfg,
        scenario,
        args.scenario,
        data,
        realtime=args.realtime,
        speed=args.speed,
        progress=_progress_bar(f"simulating {args.scenario.name}"),
        broker=args.broker,
        drain_timeout_s=args.drain_timeout,
    )
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{summary.contacts} contacts, {summary.orphan_events} events outside "
        f"contacts, {summary.clips} clips ({summary.truncated_clips} truncated)"
    )
    table.add_column("tag")
    table.add_column("contacts", justify="right")
    for tag, count in sorted(summary.tags.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(tag, str(count))
    console = Console()
    console.print(table)
    console.print(
        f"store: {data / STORE_NAME}   clips: {data / 'clips'}   "
        f"outbox: {summary.outbox_depth} messages waiting"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from provisioning.demo import print_result, run_demo

    if args.speed <= 0 or args.minutes <= 0:
        raise UserError("--speed and --minutes must be > 0")
    console = Console()
    result = run_demo(
        args.data,
        broker_url=args.broker,
        minutes=args.minutes,
        speed=args.speed,
        timeout_s=args.timeout,
        progress=_progress_bar("playing the shift"),
        console=console,
    )
    print_result(result, console)
    return 0 if result.verified_clips == result.edge.clips else 1


def _contacts(args: argparse.Namespace) -> int:
    from edge.publish.wire import contact_json
    from edge.simulate import STORE_NAME
    from edge.store import Store

    path: Path = args.data / STORE_NAME
    if not path.is_file():
        raise UserError(f"no store at {path}; run 'contactpoint simulate ... --data {args.data}'")
    store = Store.open(path)
    try:
        records = store.contacts()
    finally:
        store.close()
    if args.json:
        for record in records:
            print(json.dumps(contact_json(record), ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(records)} contacts in {path}")
    for column in ("start", "duration", "mode", "ended by", "tags", "clip"):
        table.add_column(column)
    for record in records:
        row = contact_json(record)
        table.add_row(
            row["start"],
            f"{row['duration_s']:.1f} s",
            row["mode"],
            row["ended_by"],
            ", ".join(row["tags"]),
            row["clip"]["path"] if row["clip"] else "-",
        )
    Console().print(table)
    return 0


def _progress_bar(label: str) -> Callable[[int, int], None] | None:
    """A progress bar on a terminal (stderr); nothing when output is not a terminal."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import Progress

    bar = Progress(transient=True)
    task = bar.add_task(label, total=None)
    bar.start()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)
        if done >= total:
            bar.stop()

    return update


__all__ = ["ConfigError", "main"]


if __name__ == "__main__":
    sys.exit(main())
