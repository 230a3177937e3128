"""The device's commands of ``contactpoint``: config, simulate, edge, rf433, learn, contacts.

Rules:
- :func:`add_commands` registers them on the one ``contactpoint`` parser, whose entry point
  (``provisioning/main.py``) also registers the sink's and provisioning's commands; ``edge``
  imports neither. Each command sets ``handler`` (Namespace -> exit code).
- Importing this module loads only the standard library and the error type, so that
  ``contactpoint --help`` and ``rf433 decode`` start fast: a handler imports what it needs
  when it runs (tests/test_main.py checks what they load).
- Errors the user can fix raise :class:`~edge.UserError`: the entry point prints one line on
  stderr and exits with its code (2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge._errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from edge.config import Config
    from hardware import Backend


def add_commands(sub: Any) -> None:
    """Register the device's commands on an argparse subparsers object."""
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
    decode.add_argument(
        "--glitch-us", type=int, default=0, help="drop levels shorter than this (us), as live"
    )
    decode.add_argument(
        "--explain",
        action="store_true",
        help="also print each frame no protocol accepted, with every decoder's reason",
    )
    decode.set_defaults(handler=_rf433_decode)
    listen = rf_sub.add_parser("listen", help="decode the remote receivers live")
    listen.add_argument("--config", type=Path, help="device configuration (rf433, pigpio)")
    listen.add_argument(
        "--backend", choices=("gpiod", "pigpio"), help="read the GPIO receiver so (rf433.backend)"
    )
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
        "--backend", choices=("gpiod", "pigpio"), help="read the GPIO receiver so (rf433.backend)"
    )
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


def _config_example(args: argparse.Namespace) -> int:
    from edge.config import example_config

    sys.stdout.write(example_config())
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from edge.config import load_config

    cfg = load_config(args.file)
    modes = ", ".join(cfg.contacts.modes)
    print(
        f"{args.file}: ok (device {cfg.device.id} at {cfg.device.site}; {len(cfg.buttons)} "
        f"buttons; modes: {modes})"
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from edge.config import load_config
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
        progress=progress_bar(f"simulating {args.scenario.name}"),
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

    from edge.config import load_config

    cfg = load_config(args.config)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _edge_run_until(args, cfg, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _edge_run_until(args: argparse.Namespace, cfg: Config, stop: threading.Event) -> int:
    from contract.service import Notifier, set_journal_device

    set_journal_device(cfg.device.id)
    if args.scenario is not None:
        from edge.app import Core
        from edge.scenario import load_scenario
        from edge.service import Supervisor
        from edge.simulate import run_simulation

        if args.speed <= 0:
            raise UserError(f"--speed must be > 0, got {args.speed}")
        from edge import enroll

        scenario = load_scenario(args.scenario, cfg)
        args.data.mkdir(parents=True, exist_ok=True)
        notifier = Notifier()
        # a first start with a claim token enrolls here too, as the live daemon does (the
        # emulated arm64 proof plays a scenario on a device that enrolls: docs/EMULATION.md)
        cfg = enroll.ensure_enrolled(
            cfg,
            args.data,
            stop,
            on_wait=lambda why: notifier.notify(
                f"STATUS=enrolling: {why}", f"EXTEND_TIMEOUT_USEC={enroll.WAIT_EXTEND_US}"
            ),
        )
        if stop.is_set():
            return 0
        supervisor = Supervisor(notifier, audio=cfg.audio.enabled, stall_s=cfg.audio.stall_s)
        cores: list[Core] = []  # the core, once built (the supervisor reads its progress)
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
            core_hook=cores.append,
            at_step=lambda _t: supervisor.beat(cores[0]),
            on_played=lambda: supervisor.stopping(cores[0], args.drain_timeout),
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
        core = run_live(cfg, args.data, stop=stop, broker=args.broker, notifier=Notifier())
    except HardwareError as exc:
        raise UserError(str(exc)) from None
    print(
        f"stopped: {core.counters.contacts} contacts, {core.counters.orphan_events} events "
        "outside contacts written"
    )
    return 0


def _rf433_decode(args: argparse.Namespace) -> int:
    from edge.radio import decode_ook_file, explain_ook_file

    if args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    if not 0 <= args.glitch_us <= 10_000:
        raise UserError(f"--glitch-us must be 0..10000, got {args.glitch_us}")
    if args.explain:
        for line in explain_ook_file(args.file, args.repeats, args.glitch_us):
            print(line)
        return 0
    for code in decode_ook_file(args.file, repeats=args.repeats, glitch_us=args.glitch_us):
        print(json.dumps(code))
    return 0


def _open_receivers(
    cfg: Config, radio: str | None = None
) -> tuple[Backend, queue.SimpleQueue[object]]:
    """The configured remote receivers only (GPIO 433 MHz and/or RFLink), for learn/listen;
    ``radio`` overrides ``rf433.backend``."""
    from edge.app import backend_spec
    from hardware import HardwareError, open_backend

    if radio is not None:
        cfg = cfg.replace(rf433=cfg.rf433.replace(backend=radio))
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
    faults = getattr(backend, "faults", [])
    failed = {fault.part for fault in faults}
    if faults and all(device.name in failed for device in backend.inventory.all()):
        backend.stop()  # not one receiver started: say why now, rather than wait in silence
        raise UserError("; ".join(f"{fault.part}: {fault.detail}" for fault in faults))
    return backend, inbox


def _remote_keys(
    cfg: Config, inbox: queue.SimpleQueue[object], deadline: float | None
) -> Iterator[dict[str, object]]:
    """Decoded keys from the receivers' raw events, until the deadline."""
    from edge.radio import Decoder
    from hardware import DeviceFault, RadioEdge, RemoteCode

    r = cfg.rf433
    decoder = Decoder(
        r.repeats, r.tolerance, r.frame_gap_us, r.release_ms * 1000, glitch_us=r.glitch_us
    )
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
    from edge.config import load_config

    cfg = load_config(args.config)
    if args.config is None or not cfg.rf433.enabled:
        cfg = cfg.replace(rf433=cfg.rf433.replace(enabled=True))
    backend, inbox = _open_receivers(cfg, args.backend)
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
    from edge.config import load_config
    from edge.learn import bind_code

    cfg = load_config(args.config)
    backend, inbox = _open_receivers(cfg, args.backend)
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
    if key.get("state") is not None:
        print(
            f"that code is the transmitter's '{key['state']}' state; its other states (e.g. a "
            "door contact's open/close) are other codes and stay unbound"
        )
    if change.kept_pin is not None:
        print(
            f"it is still wired on GPIO{change.kept_pin}: a press of the button or of the "
            "remote key both count (learn again with --wireless-only to use only the remote)"
        )
    return 0


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
        body = contact_json(record)
        table.add_row(
            body["start"],
            f"{body['duration_s']:.1f} s",
            body["mode"],
            body["ended_by"],
            ", ".join(body["tags"]),
            clip(body["clip"]["path"], record.id) if body["clip"] else "-",
        )
    _console().print(table)
    return 0


def _console() -> Console:
    """A rich console whose broken pipe reaches the entry point (rich's own handler exits 1)."""
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    return PipeConsole()


def progress_bar(label: str) -> Callable[[int, int], None] | None:
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


__all__ = ["add_commands", "progress_bar"]
