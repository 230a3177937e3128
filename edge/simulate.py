"""Play a scenario through the real pipeline, with simulated devices at the hardware boundary.

Virtual time advances one audio period at a time: the simulated devices report what happened
in that period (raw button edges, pings, radio edges, audio), the core consumes it and ticks.
As fast as the CPU allows, or paced to the wall clock (``realtime``, optionally ``speed`` times
faster). After ``duration`` the simulation runs a short tail (the segmenter's settle time plus
the post-roll) so that contacts which ended inside the shift close normally (a window the
segmenter still holds in case a press merges with it closes at its end: no press comes any
more); whatever is still open then is closed with ``ended_by = "shutdown"``.

The device around the core is assembled exactly as the daemon's (edge/runtime.py): the route
workers always, the till's HTTP server when paced to the wall clock, and with a broker the
device's publisher: it drains the outbox, and its acknowledgements (and the sink's delivery
receipts) come back through the core loop, the store's only writer. At the end the run waits
until the broker has acknowledged everything (``until_delivered``: until the sink has
confirmed everything), or fails after ``drain_timeout_s`` saying what is still queued.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge._errors import UserError
from edge.app import Core, backend_spec, settle_ns, step_ns
from edge.clock import NS, FakeClock, seconds_to_ns
from edge.config import Config
from edge.events import Receipt
from edge.health import Health
from edge.runtime import STORE_NAME, Runtime, assemble
from edge.scenario import Scenario, audio_path, build_world
from edge.staff import StaffCall
from edge.store import Store
from hardware import HardwareEvent, SimulatedBackend, open_backend

__all__ = ["STORE_NAME", "DeliveryError", "Progress", "Summary", "drain_outbox", "run_simulation"]

Progress = Callable[[int, int], None]


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
    on_alert: Callable[[dict[str, Any]], None] | None = None,
    on_health: Callable[[Health], None] | None = None,
    at_step: Callable[[int], None] | None = None,
    on_played: Callable[[], None] | None = None,
    until_delivered: bool = False,
) -> Summary:
    """``clock``: a prepared virtual clock (e.g. one that starts wrong and syncs later). Hooks,
    given here and wired at assembly (edge/runtime.py): ``core_hook`` is called with the core
    once it is built (tests look at its health), ``on_alert`` with each committed alert's
    payload, ``on_health`` with the health after every change, and ``at_step`` with the
    virtual time of every step before the core ticks (a test makes something happen then,
    e.g. frees disk space), ``on_played`` once the scenario has played, before the drain;
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
    with assemble(
        cfg,
        clock,
        data_dir,
        backend,
        publish=broker is not None,
        broker=broker,
        till=realtime,  # a real till can post receipts into a simulation paced to the clock
        on_alert=on_alert,
        on_health=on_health,
        on_core=core_hook,
    ) as runtime:
        runtime.start()
        _play(
            cfg,
            scenario,
            clock=clock,
            advance=backend.advance_to,
            runtime=runtime,
            realtime=realtime,
            speed=speed,
            progress=progress,
            stop=stop or threading.Event(),
            at_step=at_step,
        )
        if on_played is not None:
            on_played()
        if runtime.publisher is not None:
            drain_outbox(runtime, drain_timeout_s, until_delivered=until_delivered)
        runtime.drain_routes()
        summary = _summarise(runtime.store, clock.now_ns)
        summary.routes_open = runtime.store.routes.depth()
        return summary


def _play(
    cfg: Config,
    scenario: Scenario,
    *,
    clock: FakeClock,
    advance: Callable[[int], list[HardwareEvent]],
    runtime: Runtime,
    realtime: bool,
    speed: float,
    progress: Progress | None,
    stop: threading.Event,
    at_step: Callable[[int], None] | None,
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
    core = runtime.core
    wall_start = time.monotonic()
    next_receipt = 0
    report_every = max(1, NS // step)
    steps = 0
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
        runtime.take()  # acknowledgements, and what a real till posted
        if at_step is not None:
            at_step(t)
        runtime.tick(t)
        steps += 1
        if progress is not None and steps % report_every == 0:
            progress(min(t, end), end)
    runtime.shutdown(t)
    if progress is not None:
        progress(end, end)


def drain_outbox(runtime: Runtime, timeout_s: float, *, until_delivered: bool = False) -> None:
    """Apply acknowledgements until the outbox is empty (``until_delivered``: until every row
    is confirmed by the sink); fail after ``timeout_s``."""
    if runtime.deliver(timeout_s, until_delivered=until_delivered):
        return
    store = runtime.store
    publisher = runtime.publisher
    if until_delivered and store.outbox.depth() == 0:
        waiting = store.outbox.undelivered()
        raise DeliveryError(
            f"the sink did not confirm everything within {timeout_s:g} s ({waiting} "
            "message(s) acknowledged by the broker and waiting for the sink's receipt, "
            f"kept for the next run; publisher: {publisher.stats if publisher else None})"
        )
    pending = store.outbox.pending(limit=10)
    depth = store.outbox.depth()
    lines = [f"  seq {r.seq}: {r.kind} {r.ref} ({r.attempts} attempts)" for r in pending]
    more = f"\n  … and {depth - len(pending)} more" if depth > len(pending) else ""
    error = (publisher.stats.last_error if publisher else "") or "no acknowledgement"
    raise DeliveryError(
        f"the broker did not acknowledge everything within {timeout_s:g} s "
        f"({depth} message(s) still queued in the outbox, kept for the next run; "
        f"last error: {error}):\n" + "\n".join(lines) + more
    )


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
