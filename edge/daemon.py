"""The device daemon on real hardware: ``contactpoint edge run`` with ``backend = "pi"``.

The device is assembled by edge/runtime.py, exactly as the simulation's; this module opens the
real drivers and runs the core loop on the monotonic clock. Threads and who owns what:

- driver threads (gpiozero, pigpio, ALSA, serial, nRF24) and the till's HTTP thread only stamp
  and enqueue into the inbox;
- the publisher thread drains the outbox over MQTT and enqueues the acknowledged row numbers;
- the core loop (this thread) is the only one that touches the state machines and the only
  writer of the store: it takes the inbox, ticks the state machines on the monotonic clock,
  marks rows sent and wakes the publisher and the route workers when it has written something.

A part that fails to start (no microphone, no pigpiod, no SPI) arrives as a fault in the inbox;
the daemon keeps running what works. A configuration mistake that no hardware can fix (a
malformed pin factory name) stops it at once with a clear message. SIGTERM / SIGINT close open
contacts (``ended_by = "shutdown"``, with the audio there is), give the publisher a moment to
deliver, and exit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from contract.service import Notifier
from edge import __version__, enroll, retention
from edge.app import Core, backend_spec
from edge.clock import Clock, SystemClock
from edge.config import Config
from edge.events import Press
from edge.runtime import Runtime, assemble
from edge.service import Supervisor
from hardware import HardwareError, LiveBackend, open_backend, open_prompt_player

log = logging.getLogger(__name__)
#: the longest the core loop sleeps on its inbox: also how soon it sees ``stop`` (the core's own
#: once-a-second checks make it wake that often anyway)
MAX_WAIT_S = 1.0


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
    on_press: Callable[[Press], None] | None = None,
    notifier: Notifier | None = None,
) -> Core:
    """Run until ``stop`` is set; return the core (its counters) for the caller to report.
    ``on_press`` is called with every press as the core gets it, after the prompt (if any);
    ``notifier``: systemd's notification socket (edge/service.py says what is sent when)."""
    clock = clock or SystemClock()
    notifier = notifier or Notifier()
    cfg = enroll.ensure_enrolled(  # first start with a claim token: get an account first
        cfg,
        data_dir,
        stop,
        on_wait=lambda why: notifier.notify(
            f"STATUS=enrolling: {why}", f"EXTEND_TIMEOUT_USEC={enroll.WAIT_EXTEND_US}"
        ),
    )
    backend = open_backend(backend_spec(cfg))
    if not isinstance(backend, LiveBackend):
        raise StartupError(
            f"'edge run' without a scenario needs backend 'pi', not {cfg.hardware.backend!r}"
        )
    try:
        runtime = assemble(
            cfg,
            clock,
            data_dir,
            backend,
            broker=broker,
            till=True,
            on_press=_both(_prompt(cfg), on_press),
        )
    except BaseException:
        backend.stop()  # the drivers opened their devices
        raise
    with runtime:
        runtime.start()
        log.info("contactpoint %s running as %s at %s", __version__, cfg.device.id, cfg.device.site)
        supervisor = Supervisor(
            notifier,
            audio=runtime.core.clipper is not None,
            stall_s=cfg.audio.stall_s,
        )
        retention_next = 0  # monotonic ns of the next audio retention run (edge/retention.py)
        while not stop.is_set():
            # sleep on the inbox until an item comes or the next timer is due: no fixed tick
            runtime.take(_wait_s(runtime, clock, retention_next, supervisor))
            runtime.tick(clock.monotonic_ns())
            retention_next = retention.periodic(
                runtime.store, data_dir, cfg.retention, clock, retention_next
            )
            supervisor.beat(runtime.core)
        supervisor.stopping(runtime.core, final_drain_s + cfg.routes.drain_s)
        runtime.shutdown(clock.monotonic_ns())
        runtime.deliver(final_drain_s)  # a moment for what shutdown wrote; the rest stays queued
        runtime.drain_routes()  # what is left waits for the next start
        return runtime.core


def _wait_s(runtime: Runtime, clock: Clock, retention_next: int, supervisor: Supervisor) -> float:
    """How long the core loop may sleep on its inbox: until the core's next deadline, the next
    retention run (when retention is on), the supervisor's next ping or status, at most
    :data:`MAX_WAIT_S` (and at least a little, so that ``take`` blocks)."""
    now = clock.monotonic_ns()
    due_ns = runtime.core.next_tick_ns()
    if runtime.cfg.retention.audio_days is not None:
        due_ns = min(due_ns, retention_next)
    wait = min(MAX_WAIT_S, (due_ns - now) / 1e9, supervisor.due_in_s(runtime.core))
    return max(wait, 0.001)


def _both(
    first: Callable[[Press], None] | None, then: Callable[[Press], None] | None
) -> Callable[[Press], None] | None:
    if first is None or then is None:
        return first or then

    def both(press: Press) -> None:
        first(press)
        then(press)

    return both


def _prompt(cfg: Config) -> Callable[[Press], None] | None:
    """Play the configured prompt on the seller's short press (``[prompt]``), if enabled."""
    if not cfg.prompt.enabled:
        return None
    player = open_prompt_player(cfg.prompt.device)
    prompt = Path(cfg.prompt.wav)

    def play_prompt(press: Press) -> None:
        if press.kind == "seller_short":
            try:
                player.play(prompt)
            except (OSError, ValueError) as exc:  # a bad prompt never stops the daemon
                log.warning("prompt %s not played: %s", prompt, exc)

    return play_prompt
