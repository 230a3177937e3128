"""A 433 MHz OOK receiver's data pin through the kernel's GPIO character device (libgpiod v2).

The default radio backend on every Pi (Pi 3, 4, 5, Zero 2 W): no daemon, the kernel time-stamps
every edge in its interrupt handler. Rules:

- The line is found by its name, ``GPIO<n>`` for BCM ``n``, across every ``/dev/gpiochip*``
  (:func:`find_line`), so chip numbering never matters (the header is gpiochip0 on a Pi 3/4 and
  on a Pi 5 with a recent kernel, gpiochip4 on a Pi 5 with an older one). Pins that carry another
  name (``SDA1``, ``SPI_CE0_N``) are found on the *header chip*: the one whose lines are named
  ``GPIO<offset>``. No such line is a :class:`HardwareError` naming the chips searched.
- The request: that one line, input, both edges, **no pull** (the receiver drives DATA), **no
  kernel debounce** (it delays and blurs timings; glitches are filtered in the pulse layer,
  ``edge.radio``), events stamped with the monotonic clock, and an event buffer of
  ``EVENT_BUFFER`` events (1024, the kernel's largest for one request).
- A reader thread waits for events and reads them in batches of up to ``BATCH``. Each becomes
  ``RadioEdge(gpio, 1 | 0, tick_us, t_ns)`` with ``t_ns`` the **kernel's timestamp**
  (``timestamp_ns``, CLOCK_MONOTONIC, the same clock as ``time.monotonic_ns``) and ``tick_us``
  that timestamp in µs modulo 2**32 (pigpio's tick format, so one decoder serves both
  backends). No Python clock ever stamps an edge.
- A quiet line is reported like pigpio's watchdog: ``RadioEdge(gpio, 2, ...)`` at the kernel
  time of the last edge plus ``watchdog_ms``, once per silence. When the next edge has already
  arrived (a late read), that report comes before it, computed from the timestamps alone; only
  the final silence is noticed by waiting (``monotonic_ns`` of the access, CLOCK_MONOTONIC).
- Lost edges: each line's events carry ``line_seqno`` 1, 2, 3, ...; a gap of ``n`` means the
  kernel dropped ``n`` edges (its buffer overflowed before they were read). The next edge is
  preceded by ``RadioEdge(gpio, 3, ...)`` (``LOST``: the decoder voids the frame in progress),
  ``lost_edges`` counts them, and a ``DeviceFault(ok=False)`` says so (once; ``ok=True`` again
  after ``LOSS_CLEAR_S`` of kernel time without a loss).
- ``start()`` raises :class:`HardwareError` when the bindings are missing, no line has the name,
  or the kernel refuses the request (busy, permissions): each message says what to do. A read
  that fails later (the chip went away) is a fault; the line is requested again every
  ``reopen_interval_s`` and a fault with ``ok=True`` reports it back.
- ``stop()`` ends the thread (within ``POLL_S``) and releases the line. Idempotent.

Everything the kernel is asked goes through a :class:`LineAccess` (default
:class:`KernelGpio`): ``hardware.gpiod_replay`` puts recorded timings behind the same
``request_lines`` boundary as real ``gpiod.EdgeEvent`` objects, for tests without a Pi.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hardware._api import EventSink, RadioEdge
from hardware._driver import EmittingDevice, log
from hardware._errors import HardwareError

if TYPE_CHECKING:
    import gpiod

TICK_MASK = 0xFFFFFFFF
IDLE = 2
LOST = 3
EVENT_BUFFER = 1024  # the kernel caps one request's buffer at 16 events x 64 lines
BATCH = 256
POLL_S = 0.1
LOSS_CLEAR_S = 1.0
CONSUMER = "contactpoint-rf433"
INSTALL = "pip install 'contactpoint[pi]' (or: pip install 'gpiod>=2.2,<3')"


class EdgeRequest(Protocol):
    """What the reader needs of a ``gpiod.LineRequest``."""

    def wait_edge_events(self, timeout: float | None = None) -> bool: ...

    def read_edge_events(self, max_events: int | None = None) -> list[gpiod.EdgeEvent]: ...

    def release(self) -> None: ...


class LineAccess(Protocol):
    """The kernel's GPIO character devices, as the receiver uses them."""

    def chips(self) -> list[str]:
        """Paths of the GPIO chips, each chip once."""
        ...

    def line_names(self, path: str) -> list[str]:
        """The names of a chip's lines by offset ("" for an unnamed line)."""
        ...

    def request_lines(
        self,
        path: str,
        config: dict[int, gpiod.LineSettings],
        consumer: str,
        event_buffer_size: int,
    ) -> EdgeRequest:
        """``gpiod.request_lines``."""
        ...

    def monotonic_ns(self) -> int:
        """Now, on the clock the events are stamped with."""
        ...


class KernelGpio:
    """The real thing: libgpiod's Python bindings on ``/dev/gpiochip*``."""

    def __init__(self, dev: Path = Path("/dev")) -> None:
        self.dev = dev

    def chips(self) -> list[str]:
        gpiod = import_gpiod()
        seen: set[str] = set()
        out: list[str] = []
        for path in sorted(self.dev.glob("gpiochip*"), key=_chip_number):
            real = os.path.realpath(path)  # a compatibility symlink is the same chip
            if real not in seen and gpiod.is_gpiochip_device(str(path)):
                seen.add(real)
                out.append(str(path))
        return out

    def line_names(self, path: str) -> list[str]:
        gpiod = import_gpiod()
        with gpiod.Chip(path) as chip:
            count = chip.get_info().num_lines
            return [chip.get_line_info(offset).name or "" for offset in range(count)]

    def request_lines(
        self,
        path: str,
        config: dict[int, gpiod.LineSettings],
        consumer: str,
        event_buffer_size: int,
    ) -> EdgeRequest:
        gpiod = import_gpiod()
        request: EdgeRequest = gpiod.request_lines(
            path,
            config=dict(config),
            consumer=consumer,
            event_buffer_size=event_buffer_size,
        )
        return request

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


def import_gpiod() -> Any:
    """The ``gpiod`` module (libgpiod v2 bindings), or a :class:`HardwareError` saying how to
    install it."""
    try:
        import gpiod
    except ImportError as exc:
        raise HardwareError(
            f"the 433 MHz receiver's 'gpiod' backend needs libgpiod's Python bindings ({exc}): "
            f"{INSTALL}; or set rf433.backend = 'pigpio'"
        ) from exc
    if not str(getattr(gpiod, "__version__", "0")).startswith("2."):
        raise HardwareError(
            f"gpiod {getattr(gpiod, '__version__', '?')} is not libgpiod v2's bindings: {INSTALL}"
        )
    return gpiod


def _chip_number(path: Path | str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", str(path))
    return (int(match.group(1)) if match else 1 << 30, str(path))


def find_line(access: LineAccess, gpio: int) -> tuple[str, int]:
    """``(chip path, offset)`` of BCM pin ``gpio``: the line named ``GPIO<gpio>`` on any chip,
    else offset ``gpio`` on the header chip (lines named ``GPIO<offset>``)."""
    name = f"GPIO{gpio}"
    searched: list[str] = []
    header: tuple[str, int] | None = None
    for path in access.chips():
        names = access.line_names(path)
        searched.append(f"{path} ({len(names)} lines)")
        if name in names:
            return path, names.index(name)
        if header is None and _is_header(names):
            header = (path, len(names))
    if header is not None and gpio < header[1]:
        return header[0], gpio
    where = ", ".join(searched) or "none found"
    raise HardwareError(
        f"no GPIO line named {name} on any GPIO chip (searched: {where}). Check rf433.gpio (a "
        "BCM number), that this runs on the Pi itself, and that /dev/gpiochip* is readable by "
        "this user (group 'gpio')"
    )


def _is_header(names: list[str]) -> bool:
    """Whether a chip names its lines ``GPIO<offset>`` (the Pi's 40-pin header chip)."""
    return sum(1 for offset, n in enumerate(names) if n == f"GPIO{offset}") >= 8


def header_chip(access: LineAccess) -> int | None:
    """The number N of ``/dev/gpiochipN`` that carries the 40-pin header, or None if no chip
    names its lines ``GPIO<offset>`` (for gpiozero's lgpio factory on boards it does not know)."""
    for path in access.chips():
        if _is_header(access.line_names(path)):
            number = _chip_number(os.path.realpath(path))[0]
            return number if number < 1 << 30 else None
    return None


class GpiodRf433Receiver(EmittingDevice):
    """Reports every level change of a receiver's data pin as a :class:`RadioEdge`."""

    def __init__(
        self,
        gpio: int,
        *,
        watchdog_ms: int = 20,
        access: LineAccess | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        reopen_interval_s: float = 1.0,
        name: str = "rf433",
    ) -> None:
        if not 0 <= gpio <= 63:
            raise ValueError(f"{name}: gpio must be a BCM number 0..63, not {gpio}")
        if not 0 <= watchdog_ms <= 60_000:
            raise ValueError(f"{name}: watchdog_ms must be 0..60000, not {watchdog_ms}")
        self.name = name
        self.gpio = gpio
        self.watchdog_ms = watchdog_ms
        self.lost_edges = 0
        self.line: tuple[str, int] | None = None  # (chip path, offset) once found
        self._access: LineAccess = access if access is not None else KernelGpio()
        self._clock = clock
        self._reopen_interval_s = reopen_interval_s
        self._watchdog_ns = watchdog_ms * 1_000_000
        self._stop = threading.Event()
        self._emit_lock = threading.Lock()
        self._sink: EventSink | None = None
        self._thread: threading.Thread | None = None
        self._request: EdgeRequest | None = None
        self._rising: Any = None
        self._last_seq = 0
        self._due_ns = 0  # kernel time at which the silence after the last edge is reported
        self._loss_at_ns: int | None = None  # last loss while the loss fault is raised

    def start(self, sink: EventSink) -> None:
        """Find and request the line, then report its edges to ``sink`` from a reader thread."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        gpiod = import_gpiod()
        self._rising = gpiod.EdgeEvent.Type.RISING_EDGE
        self.line = find_line(self._access, self.gpio)
        self._request = self._open_line(gpiod)
        self._stop.clear()
        self._sink = sink
        self._thread = threading.Thread(target=self._run, name=f"gpiod-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader (within ``POLL_S``) and release the line; idempotent."""
        self._stop.set()
        with self._emit_lock:
            pass  # an emit in progress has finished; none starts after this
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(5)
        request, self._request = self._request, None
        if request is not None:
            with contextlib.suppress(Exception):
                request.release()
        self._sink = None

    # -- the line ------------------------------------------------------------------------------

    def _settings(self, gpiod: Any) -> Any:
        from datetime import timedelta

        line = gpiod.line
        return gpiod.LineSettings(
            direction=line.Direction.INPUT,
            edge_detection=line.Edge.BOTH,
            bias=line.Bias.DISABLED,
            debounce_period=timedelta(0),
            event_clock=line.Clock.MONOTONIC,
        )

    def _open_line(self, gpiod: Any) -> EdgeRequest:
        if self.line is None:
            raise RuntimeError("the line was not found")
        path, offset = self.line
        try:
            request = self._access.request_lines(
                path, {offset: self._settings(gpiod)}, CONSUMER, EVENT_BUFFER
            )
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                fix = "another program or driver uses it (gpioinfo shows which; is pigpiod on?)"
            elif exc.errno in (errno.EACCES, errno.EPERM):
                fix = "add this user to the 'gpio' group, or allow the device in the unit"
            else:
                fix = "check that the chip exists and the line is free"
            raise HardwareError(
                f"{self.name}: cannot request GPIO{self.gpio} ({path} line {offset}): "
                f"{exc.strerror or exc}: {fix}"
            ) from exc
        except ValueError as exc:
            raise HardwareError(
                f"{self.name}: the kernel refused GPIO{self.gpio} ({path} line {offset}): {exc}"
            ) from exc
        self._last_seq = 0
        self._due_ns = 0
        return request

    # -- the reader thread ---------------------------------------------------------------------

    def _run(self) -> None:
        self._keep_open(self._reopen, self._serve, self._release, (OSError,), self._failed)

    def _reopen(self) -> EdgeRequest | None:
        request, self._request = self._request, None
        if request is not None:
            return request  # the one start() opened
        try:
            request = self._open_line(import_gpiod())
        except HardwareError:
            return None
        self._fault(True, f"GPIO{self.gpio} is readable again")
        return request

    def _release(self, request: EdgeRequest) -> None:
        with contextlib.suppress(Exception):
            request.release()

    def _failed(self, exc: BaseException) -> None:
        self._fault(False, f"reading GPIO{self.gpio} failed: {exc}; requesting it again")

    def _serve(self, request: EdgeRequest) -> None:
        self._request = request  # stop() releases it after the thread has ended
        access = self._access
        while not self._stop.is_set():
            wait_s = POLL_S
            if self._due_ns:
                wait_s = min(POLL_S, max(0.0, (self._due_ns - access.monotonic_ns()) / 1e9))
            if request.wait_edge_events(wait_s):
                self._handle(request.read_edge_events(BATCH))
            elif self._due_ns and access.monotonic_ns() >= self._due_ns:
                self._quiet()
        self._request = None  # _keep_open releases it

    def _quiet(self) -> None:
        due, self._due_ns = self._due_ns, 0
        self._emit(RadioEdge(self.gpio, IDLE, (due // 1000) & TICK_MASK, due))

    def _handle(self, events: list[gpiod.EdgeEvent]) -> None:
        """One read's events, in order. The common case (the next sequence number, no silence
        due before it) costs one ``RadioEdge`` and one call of the sink per edge: the emit lock
        is taken once per run of such edges, the state is kept in locals meanwhile."""
        start = 0
        while start < len(events):
            start = self._plain(events, start)
            if start < len(events):  # lost edges or a silence before this one
                event = events[start]
                ts = event.timestamp_ns
                seq = event.line_seqno
                if seq != self._last_seq + 1 and seq > self._last_seq:
                    self._due_ns = 0  # the line was not quiet: its edges were lost
                    self._lost(seq - self._last_seq - 1, ts)
                elif self._due_ns and ts >= self._due_ns:
                    self._quiet()  # the silence before this edge, in kernel time
                self._last_seq = seq
                level = 1 if event.event_type == self._rising else 0
                self._emit(RadioEdge(self.gpio, level, (ts // 1000) & TICK_MASK, ts))
                if self._watchdog_ns:
                    self._due_ns = ts + self._watchdog_ns
                start += 1
        loss = self._loss_at_ns
        if events and loss is not None and events[-1].timestamp_ns - loss >= LOSS_CLEAR_S * 1e9:
            self._loss_at_ns = None
            self._fault(
                True, f"no edge lost for {LOSS_CLEAR_S:g} s ({self.lost_edges} lost since start)"
            )

    def _plain(self, events: list[gpiod.EdgeEvent], start: int) -> int:
        """Emit ``events[start:]`` up to the first that needs more than its own ``RadioEdge``
        (a gap in the sequence numbers, a silence due before it); return its index (or the
        length). Once stopped, the rest is dropped, as :meth:`_emit` would."""
        rising = self._rising
        gpio = self.gpio
        watchdog = self._watchdog_ns
        last = self._last_seq
        due = self._due_ns
        index = start
        with self._emit_lock:
            sink = self._sink
            if self._stop.is_set() or sink is None:
                return len(events)
            for index in range(start, len(events)):
                event = events[index]
                ts = event.timestamp_ns
                seq = event.line_seqno
                if seq != last + 1 or (due and ts >= due):
                    break
                last = seq
                level = 1 if event.event_type == rising else 0
                try:
                    sink(RadioEdge(gpio, level, (ts // 1000) & TICK_MASK, ts))
                except Exception:  # noqa: BLE001 - the reader thread outlives a failing sink
                    log.exception("%s: the event sink raised", self.name)
                if watchdog:
                    due = ts + watchdog
            else:
                index = len(events)
        self._last_seq, self._due_ns = last, due
        return index

    def _lost(self, count: int, ts: int) -> None:
        self.lost_edges += count
        self._emit(RadioEdge(self.gpio, LOST, (ts // 1000) & TICK_MASK, ts))
        if self._loss_at_ns is None:
            self._fault(
                False,
                f"lost {count} edges on GPIO{self.gpio}: the kernel's event buffer "
                f"({EVENT_BUFFER}) overflowed before they were read (a busy CPU); the frame in "
                "progress was dropped",
            )
        self._loss_at_ns = ts
