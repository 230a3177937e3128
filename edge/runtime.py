"""The device at run time, assembled in ONE place for the live daemon (edge/daemon.py) and the
simulation (edge/simulate.py):

    backend (drivers, or simulated devices) ─┐
    till (HTTP: receipts, who is on duty) ───┼─▶ inbox ─▶ core loop (Core) ─▶ store: contacts,
    publisher (acknowledged outbox rows) ────┘                                 outbox, routes
    outbox ─▶ publisher ─▶ broker          route queue ─▶ route workers ─▶ destinations

Threads and who owns what: driver threads, the till's HTTP thread and the publisher thread only
enqueue into the inbox (except that the till's thread keeps a posted CRM event, ``POST /event``,
in its own table through the store's lock before it answers); the core loop (the caller's
thread, through :class:`Runtime`) takes the inbox, ticks the state machines, marks rows sent
and is the only writer of contacts and outbox rows; the route workers settle their own queue
rows through the store's lock. The caller drives time: the daemon on the monotonic clock, the
simulation in virtual time (it advances the simulated backend itself and hands its events to
the core).

Hooks are given to :func:`assemble` and wired at construction, never set afterwards:
``on_press`` (e.g. the daemon's prompt), ``on_alert`` (each committed alert's payload),
``on_health`` (after every change of the health, with it) and ``on_core`` (the core once it is
built and the store recovered; tests look at it).
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from edge import __version__
from edge.app import Core
from edge.clock import Clock
from edge.config import Config
from edge.diskbudget import is_disk_full
from edge.events import Press, Receipt
from edge.health import Health
from edge.pos import ReceiptServer
from edge.publish import discovery
from edge.publish.mqtt import Publisher
from edge.records import POSTED
from edge.recovery import open_store, recovered
from edge.routes import RouteRunner
from edge.staff import StaffCall
from edge.store import Delivered, Store
from hardware import Backend, HardwareEvent, LiveBackend

#: the device database's file name inside the data directory
STORE_NAME = "contactpoint.db"


@dataclass(frozen=True, slots=True)
class Acked:
    """The broker acknowledged these outbox rows (sent by the publisher to the core loop)."""

    seqs: tuple[int, ...]


InboxItem = Receipt | Acked | Delivered | HardwareEvent | StaffCall
Inbox = queue.SimpleQueue[InboxItem]


class Runtime:
    """The assembled device: its parts, and what the core loop does with them. Made by
    :func:`assemble`; :meth:`start` starts the threads, :meth:`close` stops them and closes
    the store (also as a context manager)."""

    def __init__(
        self,
        *,
        cfg: Config,
        backend: Backend,
        store: Store,
        inbox: Inbox,
        core: Core,
        routes: RouteRunner,
        publisher: Publisher | None,
        serve_till: bool,
    ) -> None:
        self.cfg = cfg
        self.backend = backend
        self.store = store
        self.inbox = inbox
        self.core = core
        #: one worker per queue-fed route destination (edge/routes/worker.py)
        self.routes = routes
        #: None: nothing is published (a simulation without a broker)
        self.publisher = publisher
        #: the till's HTTP server (receipts, who is on duty) once started; None: not served
        self.till: ReceiptServer | None = None
        self._serve_till = serve_till
        self._written = 0

    # --- threads -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the route workers, the publisher, the till's server and, on real hardware, the
        drivers (a simulated backend is advanced by its player instead)."""
        self.routes.start()
        if self.publisher is not None:
            self.publisher.start()
        if self._serve_till:  # binds its port now: a port in use fails the start
            r, put = self.cfg.receipts, self.inbox.put
            till = ReceiptServer(
                r.host, r.port, self.core.clock, put, on_staff=put, on_event=self.post_event
            )
            till.start()
            self.till = till
        if isinstance(self.backend, LiveBackend):
            self.backend.start(self.inbox.put)

    def post_event(self, row: dict[str, Any]) -> tuple[str, bool]:
        """``POST /event`` (on the till's HTTP thread): a CRM event, checked as a row of an
        events file, kept in the store for the next ``contactpoint import``; its id and
        whether it is new. ValueError names a bad field."""
        from edge.importer.events import parse_row  # (the importer assembles a Runtime itself)

        event = parse_row(row, self.cfg.importer, source=POSTED)
        return event.id, self.store.post_event(event, time.time_ns())

    def close(self) -> None:
        """Stop the route workers, the till's server, the drivers and the publisher, then close
        the store; each is stopped even if an earlier one fails."""
        with contextlib.ExitStack() as stack:  # callbacks run last first
            stack.callback(self.store.close)
            if self.publisher is not None:
                stack.callback(self.publisher.stop)
            stack.callback(self.backend.stop)
            stack.callback(self._stop_till)
            stack.callback(self.routes.stop)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the core loop -------------------------------------------------------------------------

    def apply(self, item: InboxItem) -> None:
        """One item from the inbox, on the core thread (the store's single writer)."""
        if isinstance(item, Acked):
            try:
                self.store.outbox.mark_sent(list(item.seqs), time.time_ns())
            except Exception as exc:  # a full disk: the rows stay unsent and go again (dupes ok)
                if not is_disk_full(exc):
                    raise
                self.core.health.alarm(
                    "disk_full", f"acknowledgement of {len(item.seqs)} row(s) not noted"
                )
        elif isinstance(item, Delivered):  # the sink's delivery receipt (docs/WIRE.md)
            try:
                self.store.outbox.mark_delivered(item, time.time_ns())
            except Exception as exc:  # a full disk: the rows stay undelivered; the next start
                if not is_disk_full(exc):  # tracks them again, and the sink confirms them again
                    raise
                self.core.health.alarm("disk_full", "a delivery receipt was not noted")
        else:
            self.core.handle(item)

    def take(self, timeout_s: float = 0.0) -> None:
        """Apply everything waiting in the inbox, in order, waiting up to ``timeout_s`` for
        the first item."""
        try:
            if timeout_s > 0:
                self.apply(self.inbox.get(timeout=timeout_s))
            while True:
                self.apply(self.inbox.get_nowait())
        except queue.Empty:
            pass

    def tick(self, now_ns: int) -> None:
        """Let time pass in the core; wake the publisher and the route workers when it has
        written something."""
        self.core.tick(now_ns)
        if self.core.counters.saved != self._written:
            self._written = self.core.counters.saved
            self._wake()

    def shutdown(self, now_ns: int) -> None:
        """No more receipts from the till; close and write everything open, with the audio
        there is; wake the publisher and the route workers for it."""
        self._stop_till()
        self.core.shutdown(now_ns)
        self._wake()

    def deliver(self, timeout_s: float, *, until_delivered: bool = False) -> bool:
        """Apply acknowledgements until the outbox is empty (True) or ``timeout_s`` has passed
        (False: the rest stays queued for the next start); ``until_delivered``: until the sink
        has confirmed every row (its delivery receipts), not only the broker."""
        deadline = time.monotonic() + timeout_s
        left_over = self.store.outbox.undelivered if until_delivered else self.store.outbox.depth
        while left_over() > 0:
            left = deadline - time.monotonic()
            if left <= 0 or self.publisher is None:
                return False
            try:
                self.apply(self.inbox.get(timeout=min(left, 0.1)))
            except queue.Empty:
                self.publisher.notify()
        return True

    def drain_routes(self) -> bool:
        """Keep delivering route queues for up to ``routes.drain_s``; True if they emptied
        (what is left waits for the next start)."""
        return self.routes.drain(self.cfg.routes.drain_s) if self.routes else True

    def _wake(self) -> None:
        if self.publisher is not None:
            self.publisher.notify()
        self.routes.notify()

    def _stop_till(self) -> None:
        till, self.till = self.till, None
        if till is not None:
            till.stop()


def assemble(
    cfg: Config,
    clock: Clock,
    data_dir: Path,
    backend: Backend,
    *,
    publish: bool = True,
    broker: str | None = None,
    till: bool = False,
    on_press: Callable[[Press], None] | None = None,
    on_alert: Callable[[dict[str, Any]], None] | None = None,
    on_health: Callable[[Health], None] | None = None,
    on_core: Callable[[Core], None] | None = None,
) -> Runtime:
    """Open (and if corrupt, recover) the store in ``data_dir`` and build the device around it:
    the inbox, the core (clips only if ``backend`` has a microphone), the route workers, the
    publisher (if ``publish``; ``broker`` overrides the config's) and, if ``till`` and the
    ``receipts`` section enables it, the till's HTTP server (bound by :meth:`Runtime.start`).
    Nothing runs until :meth:`Runtime.start`; a part that cannot be built (a route's secret
    file missing, a bad MQTT setting) closes the store and raises."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store, corrupt = open_store(data_dir / STORE_NAME)
    inbox: Inbox = queue.SimpleQueue()
    publisher: Publisher | None = None
    with contextlib.ExitStack() as undo:
        undo.callback(store.close)

        def health_changed() -> None:  # the publisher, built below, reports this health
            if publisher is not None:
                publisher.refresh_status()
            if on_health is not None:
                on_health(health)

        health = Health(on_change=health_changed)
        core = Core(
            cfg,
            clock,
            store,
            data_dir,
            audio=backend.inventory.audio is not None,
            health=health,
            on_press=on_press,
            on_alert=on_alert,
        )
        if corrupt is not None:
            device = cfg.device
            recovered(
                store,
                data_dir,
                device=device.id,
                site=device.site,
                health=health,
                reason=corrupt,
                routes=cfg.routes,
            )
        if on_core is not None:
            on_core(core)
        routes = RouteRunner(cfg.routes, store, data_dir)  # reads the routes' secrets now
        if publish:
            publisher = _publisher(cfg, core, store, data_dir, inbox, broker=broker)
        undo.pop_all()
    return Runtime(
        cfg=cfg,
        backend=backend,
        store=store,
        inbox=inbox,
        core=core,
        routes=routes,
        publisher=publisher,
        serve_till=till and cfg.receipts.enabled,
    )


def _publisher(
    cfg: Config, core: Core, store: Store, data_dir: Path, inbox: Inbox, *, broker: str | None
) -> Publisher:
    """The device's publisher: acknowledgements and the sink's delivery receipts go to the core
    loop through ``inbox``; the status carries today's counters and the health."""
    mqtt = cfg.mqtt if broker is None else cfg.mqtt.replace(broker=broker)
    return Publisher(
        mqtt,
        device=cfg.device.id,
        site=cfg.device.site,
        data_dir=data_dir,
        store=store,
        version=__version__,
        clock=core.clock,
        on_acked=lambda seqs: inbox.put(Acked(tuple(seqs))),
        on_delivered=inbox.put,  # the sink's receipts, noted by the core loop
        alarm=core.health.alarm,
        retained_on_connect=discovery.provider(cfg, __version__),
        today=core.today.snapshot,
        health=core.health.snapshot,
        on_fault=core.health.fault,  # the broker refused a retained message (its ACL)
    )
