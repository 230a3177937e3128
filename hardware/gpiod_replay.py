"""Recorded timings replayed to the gpiod receiver as real ``gpiod.EdgeEvent`` objects.

The kernel's GPIO simulators (``gpio-sim``, ``gpio-mockup``) need configfs or loadable modules,
which virtual machines without a GPIO subsystem lack. So the replay sits behind the boundary
the receiver calls, ``request_lines`` (a :class:`~hardware.gpiod_rx.LineAccess`): it returns a
request whose events are the library's own ``gpiod.EdgeEvent`` objects, stamped and numbered
the way the kernel does it. Rules:

- Chips are named lists of line names (:func:`pi4_chips`, :func:`pi5_chips` mirror the Pis'
  ``gpioinfo``); a request names a chip path and an offset. An unknown chip is ``OSError``
  (ENOENT), an offset beyond the chip ``ValueError``, a line another live request holds
  ``OSError`` (EBUSY), as libgpiod reports them.
- Time is virtual (ns on the monotonic clock): it moves only when :meth:`GpiodReplay.play`
  reaches an edge or :meth:`GpiodReplay.idle` lets time pass, so runs are deterministic.
- Each edge gets the next ``line_seqno``/``global_seqno`` (from 1) when it happens. The request's
  buffer holds ``event_buffer_size`` events; when it is full, the kernel drops the *oldest*
  (the reader then sees a sequence gap). ``play(..., keep_up=True)`` models a reader that keeps
  up (each edge waits, in real time, until the buffer has room); ``keep_up=False`` models a
  stalled reader: all edges are queued at once and the overflow is deterministic.
- ``wait_edge_events(timeout)`` returns True when events are waiting, False when ``timeout`` of
  virtual time has passed or after a short real-time wait (the receiver then asks the time and
  waits again); ``read_edge_events(n)`` takes up to ``n`` events, oldest first.
"""

from __future__ import annotations

import errno
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import gpiod

if TYPE_CHECKING:
    from hardware.gpiod_rx import EdgeRequest

REAL_WAIT_S = 0.02
ROOM_WAIT_S = 10.0
_RISING = gpiod.EdgeEvent.Type.RISING_EDGE.value
_FALLING = gpiod.EdgeEvent.Type.FALLING_EDGE.value


def pi4_chips() -> dict[str, list[str]]:
    """A Pi 3/4's chips: the header chip gpiochip0 (bcm2835/2711 pinctrl, 58 lines, generic pins
    named ``GPIO<n>``, special ones by function) and the firmware's expander gpiochip1."""
    special = {0: "ID_SDA", 1: "ID_SCL", 2: "SDA1", 3: "SCL1", 4: "GPIO_GCLK", 7: "SPI_CE1_N"}
    special |= {8: "SPI_CE0_N", 9: "SPI_MISO", 10: "SPI_MOSI", 11: "SPI_SCLK", 14: "TXD1"}
    special |= {15: "RXD1"}
    header = [special.get(n, f"GPIO{n}") if n < 28 else "" for n in range(58)]
    return {"/dev/gpiochip0": header, "/dev/gpiochip1": ["BT_ON", "WL_ON", "PWR_LED_OFF", ""]}


def pi5_chips(*, new_kernel: bool = True) -> dict[str, list[str]]:
    """A Pi 5's chips: RP1's header bank (``GPIO0``–``GPIO27``, then RP1's own lines) is
    gpiochip0 on recent kernels and gpiochip4 on older ones, beside the SoC's own chips."""
    rp1 = [f"GPIO{n}" for n in range(28)] + [f"PCIE_RP1_WAKE{n}" for n in range(26)]
    soc = {
        "gpiochip10" if new_kernel else "gpiochip0": ["-"] * 32,
        "gpiochip11" if new_kernel else "gpiochip1": ["2712_BOOT_CS_N", "2712_BOOT_MISO"],
        "gpiochip12" if new_kernel else "gpiochip2": ["RP1_SDA", "RP1_SCL"],
    }
    chips = {f"/dev/{name}": lines for name, lines in soc.items()}
    chips["/dev/gpiochip0" if new_kernel else "/dev/gpiochip4"] = rp1
    return dict(sorted(chips.items(), key=lambda item: int(item[0].removeprefix("/dev/gpiochip"))))


class ReplayRequest:
    """One line's request: the kernel's event buffer and sequence numbers."""

    def __init__(
        self,
        replay: GpiodReplay,
        *,
        path: str,
        offset: int,
        settings: gpiod.LineSettings,
        consumer: str,
        size: int,
    ) -> None:
        self.path = path
        self.offset = offset
        self.settings = settings
        self.consumer = consumer
        self.buffer_size = size
        self.released = False
        self.dropped = 0  # events the full buffer pushed out
        self._replay = replay
        self._buffer: deque[gpiod.EdgeEvent] = deque()
        self._line_seqno = 0

    def wait_edge_events(self, timeout: float | None = None) -> bool:
        replay = self._replay
        with replay.cond:
            start = replay.now_ns
            span = None if timeout is None else round(timeout * 1e9)
            replay.cond.wait_for(
                lambda: (
                    bool(self._buffer)
                    or self.released
                    or (span is not None and replay.now_ns - start >= span)
                ),
                REAL_WAIT_S,
            )
            return bool(self._buffer)

    def read_edge_events(self, max_events: int | None = None) -> list[gpiod.EdgeEvent]:
        replay = self._replay
        with replay.cond:
            if self.released:
                raise gpiod.RequestReleasedError()
            count = len(self._buffer) if max_events is None else min(max_events, len(self._buffer))
            out = [self._buffer.popleft() for _ in range(count)]
            replay.reads += 1
            replay.cond.notify_all()
            return out

    def release(self) -> None:
        replay = self._replay
        with replay.cond:
            self.released = True
            replay.cond.notify_all()

    def _push(self, level: int, ts_ns: int, global_seqno: int) -> None:
        """Called with the lock held: the kernel's interrupt handler for one edge."""
        self._line_seqno += 1
        event = gpiod.EdgeEvent(
            _RISING if level else _FALLING, ts_ns, self.offset, global_seqno, self._line_seqno
        )
        if len(self._buffer) >= self.buffer_size:
            self._buffer.popleft()  # kfifo full: the oldest event is dropped
            self.dropped += 1
        self._buffer.append(event)


class GpiodReplay:
    """A :class:`~hardware.gpiod_rx.LineAccess` whose lines replay scripted edges."""

    def __init__(self, chips: dict[str, list[str]] | None = None, start_ns: int = 10**12) -> None:
        self._chips = pi4_chips() if chips is None else chips
        self.cond = threading.Condition()
        self.now_ns = start_ns
        self.requests: list[ReplayRequest] = []
        self.reads = 0
        self._global_seqno = 0

    # -- LineAccess ----------------------------------------------------------------------------

    def chips(self) -> list[str]:
        return list(self._chips)

    def line_names(self, path: str) -> list[str]:
        if path not in self._chips:
            raise OSError(errno.ENOENT, "No such file or directory", path)
        return list(self._chips[path])

    def request_lines(
        self,
        path: str,
        config: dict[int, gpiod.LineSettings],
        consumer: str,
        event_buffer_size: int,
    ) -> EdgeRequest:
        names = self.line_names(path)
        ((offset, settings),) = config.items()
        if not 0 <= offset < len(names):
            raise ValueError("line offset of out range")
        with self.cond:
            if any(r.path == path and r.offset == offset and not r.released for r in self.requests):
                raise OSError(errno.EBUSY, "Device or resource busy")
            size = max(1, min(event_buffer_size or 16, 1024))
            request = ReplayRequest(
                self, path=path, offset=offset, settings=settings, consumer=consumer, size=size
            )
            self.requests.append(request)
            self.cond.notify_all()
            return request

    def monotonic_ns(self) -> int:
        with self.cond:
            return self.now_ns

    # -- driving the line ----------------------------------------------------------------------

    def play(self, edges: Iterable[tuple[int, int]], *, keep_up: bool = True) -> None:
        """Drive the requested line through ``(level, t_ns)`` edges (virtual ns, not before
        now). ``keep_up``: wait (real time) for buffer room before each edge."""
        edges = list(edges)
        with self.cond:
            request = self._live()
            for level, t_ns in edges:
                if level not in (0, 1):
                    raise ValueError(f"edge level must be 0 or 1, not {level}")
                if t_ns < self.now_ns:
                    raise ValueError(f"edge at {t_ns} ns is before now ({self.now_ns} ns)")
                if keep_up and not self.cond.wait_for(
                    lambda: request.released or len(request._buffer) < request.buffer_size,
                    ROOM_WAIT_S,
                ):
                    raise TimeoutError("the reader did not read the replayed edges")
                if request.released:
                    return
                self.now_ns = t_ns
                self._global_seqno += 1
                request._push(level, t_ns, self._global_seqno)
                self.cond.notify_all()

    def idle(self, ns: int) -> None:
        """Let ``ns`` of virtual time pass with no edge."""
        if ns < 0:
            raise ValueError(f"idle time must be >= 0, not {ns}")
        with self.cond:
            self.now_ns += ns
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[GpiodReplay], bool], timeout: float) -> bool:
        """Wait (bounded, real time) until ``predicate(self)`` holds."""
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)

    def drained(self) -> bool:
        """Whether the live request's buffer is empty (the reader has read everything)."""
        with self.cond:
            live = [r for r in self.requests if not r.released]
            return all(not r._buffer for r in live)

    def _live(self) -> ReplayRequest:
        live = [r for r in self.requests if not r.released]
        if len(live) != 1:
            raise RuntimeError(f"expected one live line request, found {len(live)}")
        return live[0]


def pulses_to_edges_ns(pulses: Iterable[tuple[int, int]], start_ns: int) -> list[tuple[int, int]]:
    """``(level, t_ns)`` edges of ``(mark_us, gap_us)`` pulses from ``start_ns``."""
    edges: list[tuple[int, int]] = []
    t = start_ns
    for mark, gap in pulses:
        edges.append((1, t))
        edges.append((0, t + mark * 1000))
        t += (mark + gap) * 1000
    return edges
