"""The narrow interface between the device daemon and the hardware.

Everything a driver reports is a small immutable record stamped with *monotonic nanoseconds*
(``time.monotonic_ns()`` on the real device, a virtual clock in the simulation). Drivers call the
sink they were given from their own thread and do nothing else: the daemon's core loop does the
thinking. Real drivers and the simulated ones implement the same protocols, so ``edge`` never
knows which it talks to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeAlias, runtime_checkable

#: Mono S16 samples: a 1-D ``memoryview`` of format ``"h"`` (native int16, which is S16_LE on
#: every machine this runs on), so ``len()`` is the number of samples. A driver hands over a view
#: of its own buffer (read-only where it can be): the receiver copies what it keeps (the ring
#: does, once) and never writes to it.
Samples: TypeAlias = memoryview


@dataclass(frozen=True, slots=True)
class ButtonEdge:
    """A button changed state. ``pressed`` is the logical level (active level already applied)."""

    button: str
    pressed: bool
    t_ns: int


class RadioEdge(NamedTuple):
    """One level change of a 433 MHz OOK receiver's data pin.

    ``tick_us`` is the driver's free-running microsecond counter (pigpio: unsigned 32-bit,
    wraps every ~71.6 minutes). ``level`` is 0/1, or 2 for "watchdog: no edge for a while".
    ``t_ns`` is the monotonic stamp taken when the edge was queued.

    A named tuple, not a frozen dataclass like the other records: one is made per radio edge
    (10,000 a second from a noisy receiver), and a frozen dataclass's ``__init__`` (a
    ``object.__setattr__`` per field) costs twice a tuple's (bench/radio_edges.py).
    """

    gpio: int
    level: int
    tick_us: int
    t_ns: int


@dataclass(frozen=True, slots=True)
class RemoteCode:
    """A code decoded by a receiver that does its own decoding (RFLink serial, nRF24)."""

    source: str
    protocol: str
    code: str
    t_ns: int


@dataclass(frozen=True, slots=True)
class Distance:
    """One ranging cycle. ``meters`` is None when no echo came back (nothing in range, or soft
    clothing absorbed the ping)."""

    meters: float | None
    t_ns: int


@dataclass(frozen=True, slots=True)
class AudioPeriod:
    """A block of captured mono S16 samples (:data:`Samples`: an int16 ``memoryview``).

    ``start_index`` is the absolute index of the first sample since capture started; it keeps
    counting across overruns and reconnects, so a jump between two periods *is* the gap.
    ``t_ns`` is the monotonic time of the first sample.
    """

    start_index: int
    samples: Samples
    t_ns: int

    @property
    def end_index(self) -> int:
        return self.start_index + len(self.samples)


@dataclass(frozen=True, slots=True)
class DeviceFault:
    """A part failed or came back (``ok``). Reported, never raised into the core loop."""

    part: str
    ok: bool
    detail: str
    t_ns: int


HardwareEvent = ButtonEdge | RadioEdge | RemoteCode | Distance | AudioPeriod | DeviceFault
EventSink = Callable[[HardwareEvent], None]


@runtime_checkable
class Device(Protocol):
    """Every input: started with the sink it reports to, stopped (idempotently) at shutdown."""

    name: str

    def start(self, sink: EventSink) -> None: ...

    def stop(self) -> None: ...


class ButtonInput(Device, Protocol):
    """A push button: reports :class:`ButtonEdge` on every (raw, undebounced) edge."""


class EdgeInput(Device, Protocol):
    """A GPIO pin whose raw level changes are reported as :class:`RadioEdge`."""


class RangeSensor(Device, Protocol):
    """A distance sensor reporting one :class:`Distance` per ranging cycle."""

    interval_s: float


class AudioSource(Device, Protocol):
    """A capture device reporting :class:`AudioPeriod` blocks at ``sample_rate``."""

    sample_rate: int


@dataclass(slots=True)
class Inventory:
    """What a backend opened: the daemon starts each device and stops them in reverse."""

    buttons: list[ButtonInput] = field(default_factory=list)
    edges: list[EdgeInput] = field(default_factory=list)
    ranger: RangeSensor | None = None
    audio: AudioSource | None = None
    others: list[Device] = field(default_factory=list)

    def all(self) -> list[Device]:
        devices: list[Device] = [*self.buttons, *self.edges, *self.others]
        if self.ranger is not None:
            devices.append(self.ranger)
        if self.audio is not None:
            devices.append(self.audio)
        return devices
