"""``contactpoint``: one command with subcommands for the device, the simulation and tools.

Rules:
- Errors the user can fix print one line on stderr and exit with the error's code (2).
- A reader of the output that stops early (``contactpoint contacts | head -1``) is a normal
  end: no traceback, exit 0 (the sink's commands do the same, ``cloud_sink.cli``).
- ``contactpoint --version`` prints the installed distribution's version (package metadata).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge import __version__
from edge._errors import UserError
from edge.config import Config, ConfigError, example_config, load_config

if TYPE_CHECKING:
    from rich.console import Console

    from hardware import Backend

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
        code = handler(args)
        sys.stdout.flush()  # the reader may be gone while the last lines were buffered
        return code
    except BrokenPipeError:
        from cloud_sink.cli import stdout_closed

        return stdout_closed()
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
    parser.add_argument(
        "--version", action="version", version=f"contactpoint {__version__}", help="and exit"
    )
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

    edge = sub.add_parser("edge", help="the device daemon")
    edge_sub = edge.add_subparsers(title="edge commands", metavar="ACTION", required=True)
    run = edge_sub.add_parser(
        "run",
        help="run the daemon: real hardware (backend 'pi'), or a scenario on the simulated "
        "hardware at wall-clock pace",
    )
    run.add_argument("--config", type=Path, required=True, help="device configuration")
    run.add_argument(
        "--data", type=Path, default=Path("/var/lib/contactpoint"), help="store and clips"
    )
    run.add_argument("--scenario", type=Path, help="play this scenario (simulated backend)")
    run.add_argument("--speed", type=float, default=1.0, help="with --scenario: N x real time")
    run.add_argument("--broker", metavar="URL", help="override mqtt.broker from the config")
    run.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="with --scenario: after the scenario, wait at most S seconds for the broker to "
        "acknowledge everything (exit 1 otherwise; nothing is lost, it stays queued)",
    )
    run.set_defaults(handler=_edge_run)

    rf = sub.add_parser("rf433", help="433 MHz remotes: decode captures or listen live")
    rf_sub = rf.add_subparsers(title="rf433 commands", metavar="ACTION", required=True)
    decode = rf_sub.add_parser(
        "decode", help="decode an rtl_433 .ook pulse file; one JSON line per accepted code"
    )
    decode.add_argument("file", type=Path)
    decode.add_argument("--repeats", type=int, default=2, help="identical frames to trust")
    decode.set_defaults(handler=_rf433_decode)
    listen = rf_sub.add_parser("listen", help="decode the GPIO receiver live (needs pigpiod)")
    listen.add_argument("--config", type=Path, help="device configuration (rf433, pigpio)")
    listen.add_argument("--count", type=int, default=0, help="stop after N codes (0: never)")
    listen.add_argument("--timeout", type=float, default=0, help="stop after S seconds")
    listen.set_defaults(handler=_rf433_listen)

    learn = sub.add_parser(
        "learn", help="press a remote key and bind it to a button role in the config"
    )
    learn.add_argument("role", help="a role (green, yellow, red, request, seller) or button name")
    learn.add_argument("--config", type=Path, required=True, help="the config file to edit")
    learn.add_argument("--timeout", type=float, default=60.0, help="wait at most S seconds")
    learn.add_argument(
        "--wireless-only",
        action="store_true",
        help="a wired button stops reading its pin (default: it keeps the pin, the remote key "
        "works as well)",
    )
    learn.set_defaults(handler=_learn)

    contacts = sub.add_parser("contacts", help="list the contacts in a device's store")
    contacts.add_argument("--data", type=Path, required=True, help="data directory")
    contacts.add_argument("--json", action="store_true", help="one JSON object per line")
    contacts.set_defaults(handler=_contacts)

    from edge.routes.cli import add_command as add_routes_command

    add_routes_command(sub)  # `contactpoint routes`: the route queues (edge/routes)

    from cloud_sink.cli import add_commands  # the central service's commands: `contactpoint sink`

    add_commands(sub)

    from provisioning.cli import add_commands as add_provision_commands  # provision ca|device|…

    add_provision_commands(sub)

    from edge.retention import add_commands as add_retention_commands  # retention run

    add_retention_commands(sub)

    from edge.importer import add_import_command  # import RECORDINGS... --events FILE

    add_import_command(sub)
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
    from edge.runtime import STORE_NAME
    from edge.scenario import load_scenario
    from edge.simulate import run_simulation

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
    if cfg.routes.rules:
        console.print(f"routes: {summary.routes_open} deliveries waiting ('contactpoint routes')")
    return 0


def _edge_run(args: argparse.Namespace) -> int:
    import signal

    cfg = load_config(args.config)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _edge_run_until(args, cfg, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _edge_run_until(args: argparse.Namespace, cfg: Config, stop: threading.Event) -> int:
    if args.scenario is not None:
        from edge.scenario import load_scenario
        from edge.simulate import run_simulation

        if args.speed <= 0:
            raise UserError(f"--speed must be > 0, got {args.speed}")
        scenario = load_scenario(args.scenario, cfg)
        args.data.mkdir(parents=True, exist_ok=True)
        summary = run_simulation(
            cfg,
            scenario,
            args.scenario,
            args.data,
            realtime=True,
            speed=args.speed,
            broker=args.broker or cfg.mqtt.broker,
            stop=stop,
            drain_timeout_s=args.drain_timeout,
        )
        print(
            f"played {args.scenario.name}: {summary.contacts} contacts, "
            f"{summary.orphan_events} events outside contacts, all delivered"
        )
        return 0
    if cfg.hardware.backend != "pi":
        raise UserError(
            f"{args.config}: hardware.backend is {cfg.hardware.backend!r}: the simulated "
            "hardware plays a scenario (--scenario FILE); set backend = 'pi' for real devices"
        )
    from edge.daemon import run_live
    from hardware import HardwareError

    try:
        core = run_live(cfg, args.data, stop=stop, broker=args.broker)
    except HardwareError as exc:
        raise UserError(str(exc)) from None
    print(
        f"stopped: {core.counters.contacts} contacts, {core.counters.orphan_events} events "
        "outside contacts written"
    )
    return 0


def _rf433_decode(args: argparse.Namespace) -> int:
    from edge.radio import decode_ook_file

    if args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    for code in decode_ook_file(args.file, repeats=args.repeats):
        print(json.dumps(code))
    return 0


def _open_receivers(cfg: Config) -> tuple[Backend, queue.SimpleQueue[object]]:
    """The configured remote receivers only (GPIO 433 MHz and/or RFLink), for learn/listen."""
    from edge.app import backend_spec
    from hardware import HardwareError, open_backend

    if not (cfg.rf433.enabled or cfg.serial.enabled or cfg.nrf24.enabled):
        raise UserError(
            "no remote receiver is enabled: set rf433.enabled, serial.enabled or "
            "nrf24.enabled in the config"
        )
    spec = backend_spec(cfg)
    spec = dataclasses.replace(spec, backend="pi", buttons=(), ranger=None, audio=None)
    inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
    try:
        backend = open_backend(spec)
        backend.start(inbox.put)
    except HardwareError as exc:
        raise UserError(str(exc)) from None
    return backend, inbox


def _remote_keys(
    cfg: Config, inbox: queue.SimpleQueue[object], deadline: float | None
) -> Iterator[dict[str, object]]:
    """Decoded keys from the receivers' raw events, until the deadline."""
    from edge.radio import Decoder
    from hardware import DeviceFault, RadioEdge, RemoteCode

    r = cfg.rf433
    decoder = Decoder(r.repeats, r.tolerance, r.frame_gap_us, r.release_ms * 1000)
    while deadline is None or time.monotonic() < deadline:
        try:
            item = inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(item, RadioEdge):
            for code in decoder.feed(item.level, item.tick_us, item.t_ns):
                yield {
                    **code.to_json(),
                    "remote_key": f"{code.protocol}:{code.hex}",
                    "via": "rf433",
                }
        elif isinstance(item, RemoteCode):
            via = "serial" if item.source == "rflink" else item.source
            key = f"{item.protocol}:{item.code}".lower()
            yield {"protocol": item.protocol, "code": item.code, "remote_key": key, "via": via}
        elif isinstance(item, DeviceFault) and not item.ok:
            print(f"contactpoint: {item.part}: {item.detail}", file=sys.stderr)


def _rf433_listen(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.config is None or not cfg.rf433.enabled:
        cfg = cfg.model_copy(update={"rf433": cfg.rf433.model_copy(update={"enabled": True})})
    backend, inbox = _open_receivers(cfg)
    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
    seen = 0
    try:
        for key in _remote_keys(cfg, inbox, deadline):
            button = cfg.button_for_code(str(key["remote_key"]))
            print(json.dumps({**key, "button": button.name if button else None}), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                break
    finally:
        backend.stop()
    return 0


def _learn(args: argparse.Namespace) -> int:
    from edge.learn import bind_code

    cfg = load_config(args.config)
    backend, inbox = _open_receivers(cfg)
    print(
        f"press the remote key for {args.role} now (waiting up to {args.timeout:g} s)…", flush=True
    )
    try:
        key = next(iter(_remote_keys(cfg, inbox, time.monotonic() + args.timeout)), None)
    finally:
        backend.stop()
    if key is None:
        raise UserError(f"no remote key heard within {args.timeout:g} s; nothing changed")
    via = key["via"]
    change = bind_code(
        args.config,
        args.role,
        str(key["remote_key"]),
        via="serial" if via == "serial" else "nrf24" if via == "nrf24" else "rf433",
        wireless_only=args.wireless_only,
    )
    print(
        f"{args.config}: button '{change.name}' ({change.role}) {change.action}: "
        f"code = {change.code!r}, via = {change.via!r}"
        + (f" (was {change.previous_code!r})" if change.previous_code else "")
        + ("; the default buttons were written out" if change.defaults_written else "")
    )
    if change.kept_pin is not None:
        print(
            f"it is still wired on GPIO{change.kept_pin}: a press of the button or of the "
            "remote key both count (learn again with --wireless-only to use only the remote)"
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
    complete = (
        result.verified_clips == result.edge.clips and result.routed == result.routed_expected
    )
    return 0 if complete else 1


def _contacts(args: argparse.Namespace) -> int:
    """The device's contacts; a clip whose audio retention deleted says so and when
    (``audio_deleted_at`` in JSON), a clip file gone otherwise (the disk budget) is marked."""
    from edge.publish.wire import contact_json, iso
    from edge.runtime import STORE_NAME
    from edge.store import Store

    path: Path = args.data / STORE_NAME
    if not path.is_file():
        raise UserError(f"no store at {path}; run 'contactpoint simulate ... --data {args.data}'")
    store = Store.open(path)
    try:
        records = store.contacts()
        deleted = store.audio_deleted()
    finally:
        store.close()
    if args.json:
        for record in records:
            when = deleted.get(record.id)
            row = {**contact_json(record), "audio_deleted_at": None if when is None else iso(when)}
            print(json.dumps(row, ensure_ascii=False))
        return 0
    from rich.table import Table

    def clip(rel: str, contact_id: str) -> str:
        if contact_id in deleted:
            return f"audio deleted by retention on {iso(deleted[contact_id])[:10]}"
        return rel if (args.data / rel).is_file() else f"{rel} (file gone)"

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
            clip(row["clip"]["path"], record.id) if row["clip"] else "-",
        )
    _console().print(table)
    return 0


def _console() -> Console:
    """A rich console whose broken pipe reaches :func:`main` (rich's own handler exits 1)."""
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    return PipeConsole()


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
