"""``contactpoint demo``: a whole installation on one machine, end to end.

A local mosquitto on a free loopback port (or a broker you name), the central sink on SQLite,
and a simulated contact point playing a generated shift at accelerated pace, with a spell in the
middle where everything goes wrong (every customer rates red: the card terminal is down). Every
contact travels the real way: the device's store and outbox, the publisher (marked sent only on
the broker's acknowledgement), the broker, the sink's idempotent ingest and verified clip
reassembly. The device routes negative contacts and its alerts to a managers' MQTT topic; the
sink raises site-wide alerts. A managers' client subscribed to those topics counts what they
would receive. The demo ends when the sink holds every contact with a verified clip and the
managers have every routed message, and prints what arrived: the shift's metrics, each
labelled with what it divides by what (``cloud_sink.metrics.DEFINITIONS``).

After the shift it starts the managers' web page and API (``contactpoint sink serve`` on a free
loopback port, over the demo's sink database) with a demo manager user ``demo`` whose password
is generated anew each run, prints the address and the login, and keeps serving until Ctrl-C
(``--no-serve``: not at all).

``add_command(subparsers)`` registers ``contactpoint demo``; it exits 0 when every clip arrived
verified and the managers got every routed message, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table

from cloud_sink import Sink, SinkConfig
from cloud_sink.alerts import SiteAlerts
from cloud_sink.metrics import DEFINITIONS, Counts, Metrics, Parameters, count, metrics
from contract import wire
from contract.alerts import AlertRule
from contract.cli import UserError
from edge.cli import progress_bar
from edge.config import Config
from edge.publish.wire import event_json
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, Summary, run_simulation
from edge.store import Store
from provisioning.broker import BrokerError, LocalBroker, free_port

DEVICE, SITE = "cp-demo-1", "demo-shop"
_EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DEMO_SHIFTS = [  # busy_shift starts at 09:00 UTC
    {"name": "anna", "days": _EVERY_DAY, "from": "06:00", "to": "09:30"},
    {"name": "bob", "days": _EVERY_DAY, "from": "09:30", "to": "18:00"},
]

#: the site-wide rule the demo's sink runs (the device runs its own defaults)
BURST = AlertRule(name="negative_burst", count="red", at_least=4, share_at_least=0.5)
PARAMETERS = Parameters()  # the metrics' defaults: correction factor k, force-majeure threshold T

MANAGERS_ROUTES = {  # the device sends negative contacts and its alerts to the managers' topic
    "mqtt": [{"name": "managers"}],
    "rules": [
        {"to": ["managers"], "tags": ["negative"]},
        {"to": ["managers"], "kinds": ["alert"]},
    ],
}


@dataclass(frozen=True, slots=True)
class DemoResult:
    edge: Summary
    arrived: int
    verified_clips: int
    tags: Counter[str]
    counts: Counts  # of the contacts the sink holds and the device's events outside contacts
    metrics: Metrics
    data: Path
    device_alerts: list[str]
    site_alerts: list[str]
    routed: int
    routed_expected: int
    web: DemoWeb | None = None


WEB_USER = "demo"  # the demo's manager on the web page (scope: the demo site)


@dataclass
class DemoWeb:
    """``contactpoint sink serve`` over the demo's sink database, in its own process."""

    url: str
    user: str
    password: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_web(data: Path, timeout_s: float = 60.0) -> DemoWeb:
    """Create (or reset) the demo manager with a fresh password and serve the sink in ``data``
    on a free loopback port; return once the login page answers."""
    from cloud_sink.api import accounts
    from cloud_sink.migrations import open_existing

    password = secrets.token_urlsafe(12)
    db = open_existing(None, data)
    try:
        now = time.time_ns()
        if any(u["name"] == WEB_USER for u in accounts.list_users(db)):
            accounts.set_password(db, WEB_USER, password, now)
        else:
            accounts.add_user(db, WEB_USER, password, role="manager", sites=[SITE], now_ns=now)
    finally:
        db.close()
    port = free_port()
    log = data / "serve.log"
    argv = [sys.executable, "-m", "provisioning.main", "sink", "serve", "--data", str(data),
            "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    web = DemoWeb(f"http://127.0.0.1:{port}/", WEB_USER, password, process, log)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            # our own http://127.0.0.1 address, nothing a user typed
            with urllib.request.urlopen(web.url + "login", timeout=5) as answer:  # noqa: S310
                if answer.status == 200:
                    return web
        except (urllib.error.URLError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            web.stop()
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise UserError(f"the web page did not start on {web.url} (log {log}):\n{tail}")
        time.sleep(0.1)


class ManagersClient:
    """What a manager's app subscribed to the documented topics receives (docs/MANAGERS.md)."""

    def __init__(self, broker_url: str) -> None:
        url = urlsplit(broker_url)
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="contactpoint-demo-managers",
            protocol=mqtt.MQTTv5,
        )
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect(url.hostname or "127.0.0.1", url.port or 1883)
        self._client.subscribe(
            [
                (wire.topic(SITE, "+", f"{wire.ROUTE}/#"), 1),
                (wire.alert_topic(SITE, "+"), 1),
                (wire.alert_topic(SITE), 1),
            ]
        )
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise UserError(f"the managers' client could not subscribe at {broker_url}")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        with self._lock:
            self.messages.append((msg.topic, body if isinstance(body, dict) else {}))

    def received(self, suffix: str) -> list[dict[str, Any]]:
        """Messages on topics ending in ``suffix``, each once (QoS 1 may deliver twice)."""
        seen: dict[str, dict[str, Any]] = {}
        with self._lock:
            for topic, body in self.messages:
                if topic.endswith(suffix):
                    seen.setdefault(str(body.get("msg_id")), body)
        return list(seen.values())

    def stop(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def add_command(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="the whole system on this machine: a local broker, the sink, and a simulated "
        "contact point playing a shift",
    )
    demo.add_argument("--data", type=Path, default=Path("demo-data"), help="where to put it all")
    demo.add_argument("--broker", metavar="URL", help="use this broker instead of a local one")
    demo.add_argument("--minutes", type=float, default=60.0, help="length of the shift")
    demo.add_argument("--speed", type=float, default=120.0, help="how much faster than real time")
    demo.add_argument("--timeout", type=float, default=120.0, help="give up after S seconds")
    demo.add_argument(
        "--no-serve", action="store_true", help="do not start the web page after the shift"
    )
    demo.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    if args.speed <= 0 or args.minutes <= 0:
        raise UserError("--speed and --minutes must be > 0")
    console = Console()
    result = run_demo(
        args.data,
        broker_url=args.broker,
        minutes=args.minutes,
        speed=args.speed,
        timeout_s=args.timeout,
        progress=progress_bar("playing the shift"),
        console=console,
        serve=not args.no_serve,
    )
    print_result(result, console)
    complete = (
        result.verified_clips == result.edge.clips and result.routed == result.routed_expected
    )
    if result.web is not None:
        console.print("the web page runs until Ctrl-C")
        try:
            result.web.process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            result.web.stop()
    return 0 if complete else 1


def run_demo(
    data: Path,
    *,
    broker_url: str | None = None,
    minutes: float = 60.0,
    speed: float = 120.0,
    timeout_s: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
    console: Console | None = None,
    serve: bool = False,
) -> DemoResult:
    """Play the shift; with ``serve`` also start the web page (the caller stops
    ``result.web``)."""
    console = console or Console()
    for part in ("edge", "sink", "broker"):  # the demo's own directories, made anew each run
        shutil.rmtree(data / part, ignore_errors=True)
    data.mkdir(parents=True, exist_ok=True)
    broker: LocalBroker | None = None
    if broker_url is None:
        try:
            broker = LocalBroker(data / "broker")
            broker.start()
        except BrokerError as exc:
            raise UserError(f"cannot start a local broker: {exc}") from None
        broker_url = broker.url
        console.print(f"broker: mosquitto on {broker_url} (data in {data / 'broker'})")
    sink = Sink(
        SinkConfig(broker=broker_url, data_dir=data / "sink", resend_after_s=5, check_every_s=1),
        alerts=SiteAlerts([BURST]),  # site-wide
    )
    try:
        sink.start()
        if not sink.subscribed.wait(15):
            raise UserError(f"the sink could not subscribe at {broker_url}")
        console.print(f"sink: subscribed, storing into {data / 'sink'}")
        cfg = Config.from_dict(
            {
                "device": {"id": DEVICE, "site": SITE},
                "mqtt": {"broker": broker_url},
                "staff": {"shifts": DEMO_SHIFTS},  # the shift's first half anna, then bob
                "routes": MANAGERS_ROUTES,
                "receipts": {"port": 0},  # a till could post here; any free port, no clash
            }
        )
        managers = ManagersClient(broker_url)
        scenario = busy_shift(minutes / 60, seed=7, incident_at_s=minutes * 60 * 0.4)
        console.print(
            f"edge: device {DEVICE} plays a {minutes:g}-minute shift at {speed:g}x "
            f"({len(scenario.customers)} customers)"
        )
        (data / "edge").mkdir(parents=True)
        summary = run_simulation(
            cfg,
            scenario,
            data / "edge" / "shift.toml",
            data / "edge",
            realtime=True,
            speed=speed,
            progress=progress,
            broker=broker_url,
            drain_timeout_s=timeout_s,
        )
        contacts = _wait_for_sink(sink, summary, timeout_s)
        negative = sum(1 for c in contacts if "negative" in c["tags"])
        device_alerts = _device_alerts(data / "edge")
        expected = negative + len(device_alerts)
        deadline = time.monotonic() + timeout_s
        while len(managers.received("/route/managers")) < expected:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        routed = len(managers.received("/route/managers"))
        site_alerts = [str(a["alert"]["rule"]) for a in managers.received("/_site/alert")]
        managers.stop()
    finally:
        sink.stop()
        if broker is not None:
            broker.stop()
    tags: Counter[str] = Counter(tag for contact in contacts for tag in contact["tags"])
    counts = count(contacts, _orphan_events(data / "edge"))
    web = start_web(data / "sink") if serve else None
    return DemoResult(
        edge=summary,
        arrived=len(contacts),
        verified_clips=sum(1 for c in contacts if c["audio"]),
        tags=tags,
        counts=counts,
        metrics=metrics(counts, PARAMETERS),
        data=data,
        device_alerts=device_alerts,
        site_alerts=site_alerts,
        routed=routed,
        routed_expected=expected,
        web=web,
    )


def _device_alerts(edge_dir: Path) -> list[str]:
    """The rules of the alerts the device raised (its outbox keeps every message it sent)."""
    with Store.open(edge_dir / STORE_NAME) as store:
        rows = store.outbox.of_kind("alert")
    return [str(row.payload["alert"]["rule"]) for row in rows]


def _orphan_events(edge_dir: Path) -> list[dict[str, Any]]:
    with Store.open(edge_dir / STORE_NAME) as store:
        return [dict(event_json(e)) for e in store.orphan_events()]


def _wait_for_sink(sink: Sink, summary: Summary, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        with sink.db.connection_context():
            contacts = list(sink.ingest.contacts())
        complete = sum(1 for c in contacts if c["audio"])
        if len(contacts) >= summary.contacts and complete >= summary.clips:
            return contacts
        if time.monotonic() > deadline:
            raise UserError(
                f"after {timeout_s:g} s the sink holds {len(contacts)} of {summary.contacts} "
                f"contacts and {complete} of {summary.clips} verified clips"
            )
        time.sleep(0.1)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def print_result(result: DemoResult, console: Console) -> None:
    edge = result.edge
    table = Table(title="contacts by tag (as stored by the sink)")
    table.add_column("tag")
    table.add_column("contacts", justify="right")
    for tag, n in sorted(result.tags.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(tag, str(n))
    console.print(table)
    c, values = result.counts, result.metrics.as_json()
    table = Table(
        title="the shift's metrics",
        caption=f"{c.receipts} receipts, {c.productive} "
        f"productive contacts, {c.surveys} surveys, {c.force_majeure} force-majeure presses; "
        f"k = {PARAMETERS.correction_factor:g}, T = {PARAMETERS.force_majeure_threshold:g}",
    )
    table.add_column("metric (what it divides by what)")
    table.add_column("value", justify="right")
    for d in DEFINITIONS:
        value = values[d.key]
        if isinstance(value, bool):
            shown = "yes" if value else "no"
        elif isinstance(value, int):
            shown = str(value)
        else:
            shown = _share(value)
        table.add_row(d.label, shown)
        if d.key == "dissatisfaction_index":
            silent = None if c.served == 0 else c.silent / c.served
            table.add_row("silent customers (silent / contacts served)", _share(silent))
    console.print(table)
    console.print(
        f"alerts: the device raised {len(result.device_alerts)} "
        f"({', '.join(result.device_alerts) or 'none'}), the sink {len(result.site_alerts)} "
        f"site-wide ({', '.join(result.site_alerts) or 'none'}); the managers' topic got "
        f"{result.routed} routed messages (negative contacts and alerts; "
        f"{result.routed_expected} expected)."
    )
    console.print(
        f"edge stored {edge.contacts} contacts ({edge.clips} clips) and "
        f"{edge.orphan_events} events outside contacts; the sink holds {result.arrived} "
        f"contacts, {result.verified_clips} with a verified clip."
    )
    data = result.data
    console.print(
        f"data: device store {data / 'edge' / STORE_NAME}, device clips {data / 'edge' / 'clips'}"
    )
    console.print(
        f"      sink database {data / 'sink' / 'sink.db'}, sink clips {data / 'sink' / 'clips'}"
    )
    console.print(f"list them: contactpoint sink contacts --data {data / 'sink'} --json")
    console.print(f"metrics per seller: contactpoint sink report --data {data / 'sink'} --by staff")
    if result.web is not None:
        web = result.web
        console.print(
            f"web page: {web.url} (API {web.url}api/v1, docs {web.url}docs); log in as "
            f"{web.user} / {web.password} (a manager of {SITE}; a new password every run)"
        )
