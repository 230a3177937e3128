"""Play a scenario through the real pipeline, with simulated devices at the hardware boundary.

Virtual time advances one audio period at a time: the simulated devices report what happened
in that period (raw button edges, pings, audio), the core consumes it and ticks. As fast as the
CPU allows, or paced to the wall clock (``realtime``, optionally ``speed`` times faster). After
``duration`` the simulation runs a short tail (the segmenter's settle time plus the post-roll)
so that contacts which ended inside the shift close normally; whatever is still open then is
closed with ``ended_by = "shutdown"``.
"""

from __future__ import annotations

import queue
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge.app import Core, settle_ns, step_ns
from edge.clock import NS, FakeClock, seconds_to_ns
from edge.config import Config
from edge.events import Receipt
from edge.pos import ReceiptServer
from edge.scenario import Scenario, audio_path, build_world
from edge.store import Store
from hardware import (
    AudioSpec,
    BackendSpec,
    ButtonSpec,
    HardwareEvent,
    RangerSpec,
    open_backend,
)

STORE_NAME = "contactpoint.db"
Progress = Callable[[int, int], None]


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


def backend_spec(cfg: Config, scenario: Scenario, scenario_path: Path) -> BackendSpec:
    return BackendSpec(
        backend="simulated",
        buttons=tuple(ButtonSpec(b.name) for b in cfg.buttons),
        ranger=RangerSpec(
            cfg.presence.trigger_pin, cfg.presence.echo_pin, interval_s=cfg.presence.interval_s
        ),
        audio=AudioSpec(
            sample_rate=cfg.audio.sample_rate,
            period_frames=cfg.audio.period_frames,
            wav_loop=audio_path(scenario, scenario_path),
            seed=scenario.audio.seed,
        )
        if cfg.audio.enabled
        else None,
        world=build_world(scenario, cfg),
    )


def run_simulation(
    cfg: Config,
    scenario: Scenario,
    scenario_path: Path,
    data_dir: Path,
    *,
    realtime: bool = False,
    speed: float = 1.0,
    progress: Progress | None = None,
) -> Summary:
    clock = FakeClock(scenario.start_wall_ns, synced=True)
    backend = open_backend(backend_spec(cfg, scenario, scenario_path))
    store = Store.open(data_dir / STORE_NAME)
    try:
        core = Core(cfg, clock, store, data_dir, audio=backend.inventory.audio is not None)
        _play(
            cfg,
            scenario,
            clock=clock,
            advance=backend.advance_to,
            core=core,
            realtime=realtime,
            speed=speed,
            progress=progress,
        )
        return _summarise(store, clock.now_ns)
    finally:
        store.close()


def _play(
    cfg: Config,
    scenario: Scenario,
    *,
    clock: FakeClock,
    advance: Callable[[int], list[HardwareEvent]],
    core: Core,
    realtime: bool,
    speed: float,
    progress: Progress | None,
) -> None:
    step = step_ns(cfg)
    end = scenario.duration_ns
    stop = end + settle_ns(cfg) + seconds_to_ns(cfg.contacts.post_roll_s) + step
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
    inbox: queue.SimpleQueue[Receipt] = queue.SimpleQueue()
    server: ReceiptServer | None = None
    if realtime and cfg.receipts.enabled:  # a real till can post receipts into the simulation
        server = ReceiptServer(cfg.receipts.host, cfg.receipts.port, clock, inbox.put)
        server.start()
    wall_start = time.monotonic()
    next_receipt = 0
    report_every = max(1, NS // step)
    steps = 0
    try:
        t = 0
        while t < stop:
            t = min(t + step, stop)
            if realtime:
                delay = wall_start + t / NS / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            clock.advance_to(t)
            for event in advance(t):
                core.handle(event)
            while next_receipt < len(receipts) and receipts[next_receipt].t_ns <= t:
                core.handle(receipts[next_receipt])
                next_receipt += 1
            while not inbox.empty():
                core.handle(inbox.get_nowait())
            core.tick(t)
            steps += 1
            if progress is not None and steps % report_every == 0:
                progress(min(t, end), end)
        core.shutdown(stop)
        if progress is not None:
            progress(end, end)
    finally:
        if server is not None:
            server.stop()


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
