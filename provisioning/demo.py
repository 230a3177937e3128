"""``contactpoint demo``: a whole installation on one machine, end to end.

A local mosquitto on a free loopback port (or a broker you name), the central sink on SQLite,
and a simulated contact point playing a generated shift at accelerated pace. Every contact
travels the real way: the device's store and outbox, the publisher (marked sent only on the
broker's acknowledgement), the broker, the sink's idempotent ingest and verified clip
reassembly. The demo ends when the sink holds every contact with a verified clip, and prints
what arrived.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cloud_sink import Sink, SinkConfig
from cloud_sink.alerts import Rule, SiteAlerts
from cloud_sink.metrics import ShiftMetrics, shift_metrics
from edge._errors import UserError
from edge.config import Config
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, Summary, run_simulation
from provisioning.broker import BrokerError, LocalBroker

DEVICE, SITE = "cp-demo-1", "demo-shop"
_EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DEMO_SHIFTS = [  # busy_shift starts at 09:00 UTC
    {"name": "anna", "days": _EVERY_DAY, "from": "06:00", "to": "09:30"},
    {"name": "bob", "days": _EVERY_DAY, "from": "09:30", "to": "18:00"},
]


@dataclass(frozen=True, slots=True)
class DemoResult:
    edge: Summary
    arrived: int
    verified_clips: int
    tags: Counter[str]
    metrics: ShiftMetrics
    data: Path


def run_demo(
    data: Path,
    *,
    broker_url: str | None = None,
    minutes: float = 60.0,
    speed: float = 120.0,
    timeout_s: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
    console: Console | None = None,
) -> DemoResult:
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
        alerts=SiteAlerts([Rule("negative_burst", "red", 4, share_at_least=0.5)]),  # site-wide
    )
    try:
        sink.start()
        if not sink.subscribed.wait(15):
            raise UserError(f"the sink could not subscribe at {broker_url}")
        console.print(f"sink: subscribed, storing into {data / 'sink'}")
        cfg = Config.model_validate(
            {
                "device": {"id": DEVICE, "site": SITE},
                "mqtt": {"broker": broker_url},
                "staff": {"shifts": DEMO_SHIFTS},  # the shift's first half anna, then bob
            }
        )
        scenario = busy_shift(minutes / 60, seed=7)
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
    finally:
        sink.stop()
        if broker is not None:
            broker.stop()
    tags: Counter[str] = Counter(tag for contact in contacts for tag in contact["tags"])
    return DemoResult(
        edge=summary,
        arrived=len(contacts),
        verified_clips=sum(1 for c in contacts if c["audio"]),
        tags=tags,
        metrics=shift_metrics(contacts),
        data=data,
    )


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
    for tag, count in sorted(result.tags.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(tag, str(count))
    console.print(table)
    m = result.metrics
    metrics = Table(title="the shift's metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    metrics.add_row("contacts served (presence)", str(m.contacts_served))
    metrics.add_row("customer support index (positive / served)", _share(m.support_index))
    metrics.add_row(
        "customer dissatisfaction index (negative / served)", _share(m.dissatisfaction_index)
    )
    metrics.add_row("silent customers (no rating / served)", _share(m.silent_share))
    metrics.add_row("personal conversion (receipts / served)", _share(m.personal_conversion))
    metrics.add_row("force-majeure level (long presses / surveys)", _share(m.force_majeure_level))
    console.print(metrics)
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
