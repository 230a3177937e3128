"""Play a scenario through the real pipeline, with simulated devices at the hardware boundary.

Virtual time advances one audio period at a time: the simulated devices report what happened
in that period (raw button edges, pings, radio edges, audio), the core consumes it and ticks.
As fast as the CPU allows, or paced to the wall clock (``realtime``, optionally ``speed`` times
faster). After ``duration`` the simulation runs a short tail (the segmenter's settle time plus
the post-roll) so that contacts which ended inside the shift close normally; whatever is still
open then is closed with ``ended_by = "shutdown"``.

With a broker, the device's publisher runs alongside, exactly as in the daemon: it drains the
outbox and its acknowledgements (and the sink's delivery receipts) come back through the core
loop, the store's only writer. At the end the run waits until the broker has acknowledged
everything (``until_delivered``: until the sink has confirmed everything), or fails after
``drain_timeout_s`` saying what is still queued.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge import __version__
from edge._errors import UserError
from edge.app import Core, backend_spec, settle_ns, step_ns
from edge.clock import NS, FakeClock, seconds_to_ns
from edge.config import Config
from edge.diskbudget import is_disk_full
from edge.events import Receipt
from edge.pos import ReceiptServer
from edge.publish import discovery
from edge.publish.mqtt import Publisher
from edge.recovery import open_store, recovered
from edge.routes import RouteRunner
from edge.scenario import Scenario, audio_path, build_world
from edge.staff import StaffCall
from edge.store import Delivered, Store
from hardware import HardwareEvent, SimulatedBackend, open_backend

STORE_NAME = "contactpoint.db"
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Acked:
    """The broker acknowledged these outbox rows (sent by the publisher to the core loop)."""

    seqs: tuple[int, ...]


Inbox = queue.SimpleQueue[Receipt | Acked | Delivered | HardwareEvent | StaffCall]


class DeliveryError(UserError):
    """The broker did not acknowledge everything in time; nothing is lost, it stays queued."""

    exit_code = 1


@dataclass(slots=True)
class Summary:
    contacts: int = 0
    orphan_events: int = 0
    clips: int = 0
    truncated_clips: int = 0
    tags: Counter[str] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    audio_seconds: float = 0.0
    outbox_depth: int = 0
    routes_open: int = 0  # route deliveries still queued (edge/routes), kept for the next run


def apply(
    core: Core, store: Store, item: Receipt | Acked | Delivered | HardwareEvent | StaffCall
) -> None:
    """One item from the inbox, on the core thread (the store's single writer)."""
    if isinstance(item, Acked):
        try:
            store.outbox.mark_sent(list(item.seqs), time.time_ns())
        except Exception as exc:  # a full disk: the rows stay unsent and go again (dupes are fine)
            if not is_disk_full(exc):
                raise
            core.health.alarm("disk_full", f"acknowledgement of {len(item.seqs)} row(s) not noted")
    elif isinstance(item, Delivered):
        try:
            store.outbox.mark_delivered(item, time.time_ns())
        except Exception as exc:  # a full disk: the rows stay undelivered; the next start
            if not is_disk_full(exc):  # tracks them again, and the sink confirms them again
                raise
            core.health.alarm("disk_full", "a delivery receipt was not noted")
    else:
        core.handle(item)


def device_publisher(
    cfg: Config, core: Core, store: Store, data_dir: Path, inbox: Inbox, *, broker: str | None
) -> Publisher:
    """The device's publisher as the daemon and the simulation run it: acknowledgements and
    delivery receipts go to the core loop through ``inbox``; the status carries today's
    counters and the health."""
    mqtt = cfg.mqtt if broker is None else cfg.mqtt.model_copy(update={"broker": broker})
    publisher = Publisher(
        mqtt,
        device=cfg.device.id,
        site=cfg.device.site,
        data_dir=data_dir,
        store=store,
        version=__version__,
        clock=core.clock,
        on_acked=lambda seqs: inbox.put(Acked(tuple(seqs))),
        on_delivered=inbox.put,
        alarm=core.health.alarm,
        retained_on_connect=discovery.provider(cfg, __version__),
        today=core.today.snapshot,
        health=core.health.snapshot,
    )
    core.health.on_change = publisher.refresh_status
    return publisher


def run_simulation(
    cfg: Config,
    scenario: Scenario,
    scenario_path: Path,
    data_dir: Path,
    *,
    realtime: bool = False,
    speed: float = 1.0,
    progress: Progress | None = None,
    broker: str | None = None,
    drain_timeout_s: float = 120.0,
    stop: threading.Event | None = None,
    clock: FakeClock | None = None,
    core_hook: Callable[[Core], None] | None = None,
    until_delivered: bool = False,
) -> Summary:
    """``clock``: a prepared virtual clock (e.g. one that starts wrong and syncs later);
    ``core_hook``: called with the core once it is built (tests look at its health);
    ``until_delivered``: at the end, wait for the sink's receipts, not only the broker's
    PUBACKs (a run against a sink that sends none then fails after ``drain_timeout_s``)."""
    clock = clock if clock is not None else FakeClock(scenario.start_wall_ns, synced=True)
    spec = backend_spec(
        cfg,
        build_world(scenario, cfg),
        wav_loop=audio_path(scenario, scenario_path),
        audio_seed=scenario.audio.seed,
    )
    # a scenario always plays on simulated devices, whatever backend the config names
    backend = open_backend(dataclasses.replace(spec, backend="simulated"))
    if not isinstance(backend, SimulatedBackend):  # open_backend's contract for "simulated"
        raise TypeError(f"expected the simulated backend, got {type(backend).__name__}")
    store, corrupt = open_store(data_dir / STORE_NAME)
    inbox: Inbox = queue.SimpleQueue()
    publisher: Publisher | None = None
    routes: RouteRunner | None = None
    try:
        core = Core(cfg, clock, store, data_dir, audio=backend.inventory.audio is not None)
        if corrupt is not None:
            recovered(
                store,
                data_dir,
                device=cfg.device.id,
                site=cfg.device.site,
                health=core.health,
                reason=corrupt,
            )
        if core_hook is not None:
            core_hook(core)
        routes = RouteRunner(cfg.routes, store, data_dir)  # one worker per route destination
        routes.start()
        if broker is not None:
            publisher = device_publisher(cfg, core, store, data_dir, inbox, broker=broker)
            publisher.start()
        _play(
            cfg,
            scenario,
            clock=clock,
            advance=backend.advance_to,
            core=core,
            store=store,
            inbox=inbox,
            publisher=publisher,
            realtime=realtime,
            speed=speed,
            progress=progress,
            stop=stop or threading.Event(),
        )
        if publisher is not None:
            _drain(store, inbox, core, publisher, drain_timeout_s, until_delivered=until_delivered)
        if routes:
            routes.drain(cfg.routes.drain_s)
        summary = _summarise(store, clock.now_ns)
        summary.routes_open = store.routes.depth()
        return summary
    finally:
        if routes is not None:
            routes.stop()
        if publisher is not None:
            publisher.stop()
        store.close()


def _play(
    cfg: Config,
    scenario: Scenario,
    *,
    clock: FakeClock,
    advance: Callable[[int], list[HardwareEvent]],
    core: Core,
    store: Store,
    inbox: Inbox,
    publisher: Publisher | None,
    realtime: bool,
    speed: float,
    progress: Progress | None,
    stop: threading.Event,
) -> None:
    step = step_ns(cfg)
    end = scenario.duration_ns
    tail_end = end + settle_ns(cfg) + seconds_to_ns(cfg.contacts.post_roll_s) + step
    receipts = sorted(
        (
            Receipt(
                t_ns=seconds_to_ns(r.at),
                receipt_id=r.id,
                data={} if r.amount is None else {"amount": r.amount},
            )
            for r in scenario.receipts
        ),
        key=lambda r: r.t_ns,
    )
    calls = [StaffCall(seconds_to_ns(d.at), d.name) for d in scenario.on_duty]  # like receipts
    till: list[Receipt | StaffCall] = sorted([*receipts, *calls], key=lambda r: r.t_ns)
    server: ReceiptServer | None = None
    if realtime and cfg.receipts.enabled:  # a real till can post receipts into the simulation
        server = ReceiptServer(
            cfg.receipts.host, cfg.receipts.port, clock, inbox.put, on_staff=inbox.put
        )
        server.start()
    wall_start = time.monotonic()
    next_receipt = 0
    report_every = max(1, NS // step)
    steps = 0
    written = 0
    try:
        t = 0
        while t < tail_end and not stop.is_set():
            t = min(t + step, tail_end)
            if realtime:
                delay = wall_start + t / NS / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            clock.advance_to(t)
            for event in advance(t):
                core.handle(event)
            while next_receipt < len(till) and till[next_receipt].t_ns <= t:
                core.handle(till[next_receipt])
                next_receipt += 1
            while not inbox.empty():
                apply(core, store, inbox.get_nowait())
            core.tick(t)
            if publisher is not None and core.counters.saved != written:
                written = core.counters.saved
                publisher.notify()
            steps += 1
            if progress is not None and steps % report_every == 0:
                progress(min(t, end), end)
        core.shutdown(t)
        if publisher is not None:
            publisher.notify()
        if progress is not None:
            progress(end, end)
    finally:
        if server is not None:
            server.stop()


def _drain(
    store: Store,
    inbox: Inbox,
    core: Core,
    publisher: Publisher,
    timeout_s: float,
    *,
    until_delivered: bool = False,
) -> None:
    """Apply acknowledgements until the outbox is empty (``until_delivered``: until every row
    is confirmed by the sink); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    left_over = store.outbox.undelivered if until_delivered else store.outbox.depth
    while left_over() > 0:
        left = deadline - time.monotonic()
        if left <= 0 and until_delivered and store.outbox.depth() == 0:
            waiting = store.outbox.undelivered()
            raise DeliveryError(
                f"the sink did not confirm everything within {timeout_s:g} s ({waiting} "
                "message(s) acknowledged by the broker and waiting for the sink's receipt, "
                f"kept for the next run; publisher: {publisher.stats})"
            )
        if left <= 0:
            pending = store.outbox.pending(limit=10)
            depth = store.outbox.depth()
            lines = [f"  seq {r.seq}: {r.kind} {r.ref} ({r.attempts} attempts)" for r in pending]
            more = f"\n  … and {depth - len(pending)} more" if depth > len(pending) else ""
            error = publisher.stats.last_error or "no acknowledgement"
            raise DeliveryError(
                f"the broker did not acknowledge everything within {timeout_s:g} s "
                f"({depth} message(s) still queued in the outbox, kept for the next run; "
                f"last error: {error}):\n" + "\n".join(lines) + more
            )
        try:
            apply(core, store, inbox.get(timeout=min(left, 0.2)))
        except queue.Empty:
            publisher.notify()


def _summarise(store: Store, now_ns: int) -> Summary:
    summary = Summary(
        orphan_events=len(store.orphan_events()),
        audio_seconds=now_ns / NS,
        outbox_depth=store.outbox.depth(),
    )
    for contact in store.contacts():
        summary.contacts += 1
        summary.modes[contact.mode] += 1
        summary.tags.update(contact.tags)
        if contact.clip is not None:
            summary.clips += 1
            summary.truncated_clips += contact.clip.truncated
    return summary
