"""The device daemon on real hardware: ``contactpoint edge run`` with ``backend = "pi"``.

Threads and who owns what:

- driver threads (gpiozero, pigpio, ALSA, serial, nRF24) and the till's HTTP thread only stamp
  and enqueue into the inbox;
- the publisher thread drains the outbox over MQTT and enqueues the acknowledged row numbers;
- the core loop (this thread) is the only one that touches the state machines and the only
  writer of the store: it takes the inbox, ticks the state machines on the monotonic clock,
  marks rows sent and wakes the publisher when it has written something.

A part that fails to start (no microphone, no pigpiod, no SPI) arrives as a fault in the inbox;
the daemon keeps running what works. A configuration mistake that no hardware can fix (a
malformed pin factory name) stops it at once with a clear message. SIGTERM / SIGINT close open
contacts (``ended_by = "shutdown"``, with the audio there is), give the publisher a moment to
deliver, and exit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

from edge import __version__, retention
from edge.app import Core, backend_spec
from edge.clock import Clock, SystemClock
from edge.config import Config
from edge.events import Press
from edge.pos import ReceiptServer
from edge.publish.mqtt import Publisher
from edge.recovery import open_store, recovered
from edge.routes import RouteRunner
from edge.simulate import STORE_NAME, Inbox, apply, device_publisher
from edge.store import Store
from hardware import HardwareError, LiveBackend, open_backend, open_prompt_player

log = logging.getLogger(__name__)
TICK_S = 0.05  # the core loop wakes at least this often to let time pass in the machines


class StartupError(HardwareError):
    pass


def run_live(
    cfg: Config,
    data_dir: Path,
    *,
    stop: threading.Event,
    clock: Clock | None = None,
    broker: str | None = None,
    final_drain_s: float = 5.0,
) -> Core:
    """Run until ``stop`` is set; return the core (its counters) for the caller to report."""
    clock = clock or SystemClock()
    backend = open_backend(backend_spec(cfg))
    if not isinstance(backend, LiveBackend):
        raise StartupError(
            f"'edge run' without a scenario needs backend 'pi', not {cfg.hardware.backend!r}"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    store, corrupt = open_store(data_dir / STORE_NAME)
    inbox: Inbox = queue.SimpleQueue()
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
    publisher = device_publisher(cfg, core, store, data_dir, inbox, broker=broker)
    receipts = (
        ReceiptServer(cfg.receipts.host, cfg.receipts.port, clock, inbox.put, on_staff=inbox.put)
        if cfg.receipts.enabled
        else None
    )
    if cfg.prompt.enabled:
        player = open_prompt_player(cfg.prompt.device)
        prompt = Path(cfg.prompt.wav)

        def play_prompt(press: Press) -> None:
            if press.kind == "seller_short":
                try:
                    player.play(prompt)
                except (OSError, ValueError) as exc:  # a bad prompt never stops the daemon
                    log.warning("prompt %s not played: %s", prompt, exc)

        core.on_press = play_prompt
    routes: RouteRunner | None = None
    try:
        routes = RouteRunner(cfg.routes, store, data_dir)  # one worker per route destination
        backend.start(inbox.put)
        publisher.start()
        routes.start()
        if receipts is not None:
            receipts.start()
        log.info("contactpoint %s running as %s at %s", __version__, cfg.device.id, cfg.device.site)
        written = 0
        retention_next = 0  # monotonic ns of the next audio retention run (edge/retention.py)
        while not stop.is_set():
            try:
                apply(core, store, inbox.get(timeout=TICK_S))
                while True:
                    apply(core, store, inbox.get_nowait())
            except queue.Empty:
                pass
            core.tick(clock.monotonic_ns())
            retention_next = retention.periodic(
                store, data_dir, cfg.retention, clock, retention_next
            )
            if core.counters.saved != written:
                written = core.counters.saved
                publisher.notify()
                routes.notify()
        core.shutdown(clock.monotonic_ns())
        publisher.notify()
        _deliver_acks(core, store, inbox, publisher, final_drain_s)
        if routes:
            routes.drain(cfg.routes.drain_s)  # what is left waits for the next start
        return core
    finally:
        if routes is not None:
            routes.stop()
        if receipts is not None:
            receipts.stop()
        backend.stop()
        publisher.stop()
        store.close()


def _deliver_acks(
    core: Core, store: Store, inbox: Inbox, publisher: Publisher, seconds: float
) -> None:
    """Give the publisher a moment to deliver what shutdown wrote; the rest stays queued."""

    deadline = time.monotonic() + seconds
    while store.outbox.depth() > 0 and time.monotonic() < deadline:
        try:
            apply(core, store, inbox.get(timeout=0.1))
        except queue.Empty:
            publisher.notify()
