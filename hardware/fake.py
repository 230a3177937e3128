"""Simulated devices: product code, so the whole daemon runs on any machine.

The fakes model the *device*, not the call: a simulated button produces raw edges with contact
bounce (the daemon must debounce them, as with a real switch); the simulated ranger produces a
reading per ranging cycle with measurement noise and missing echoes; the simulated microphone
produces fixed-size periods with absolute sample indices, including capture gaps. Everything is
driven by a :class:`World` (what happens at the counter, in virtual time) and is deterministic
for a given seed.

Time is virtual: :meth:`SimulatedBackend.advance_to` emits, in time order, every event the
devices produce up to that instant. The daemon decides how fast virtual time runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hardware._api import (
    AudioPeriod,
    ButtonEdge,
    Distance,
    EventSink,
    HardwareEvent,
    Inventory,
    Samples,
)

NS = 1_000_000_000
#: Render ``count`` samples starting at an absolute sample index (a pure function of the index).
Renderer = Callable[[int, int], Samples]


@dataclass(frozen=True, slots=True)
class SimPress:
    button: str
    at_ns: int
    hold_ns: int
    bounces: int = 3  # extra edges at press and at release, within a few milliseconds


@dataclass(frozen=True, slots=True)
class SimCustomer:
    arrive_ns: int
    leave_ns: int | None  # None: never leaves
    distance_m: float


@dataclass(frozen=True, slots=True)
class SimGap:
    """The capture device delivers nothing for a while (an overrun, a USB hiccup)."""

    at_ns: int
    length_ns: int


@dataclass(slots=True)
class World:
    """What happens at the simulated counter."""

    presses: list[SimPress] = field(default_factory=list)
    customers: list[SimCustomer] = field(default_factory=list)
    audio_gaps: list[SimGap] = field(default_factory=list)
    background_m: float | None = 3.0  # the wall behind the customer; None = out of range
    noise_m: float = 0.01
    no_echo_rate: float = 0.05  # share of pings lost while someone stands there
    seed: int = 0

    def distance_at(self, t_ns: int) -> float | None:
        near = [
            c.distance_m
            for c in self.customers
            if c.arrive_ns <= t_ns and (c.leave_ns is None or t_ns < c.leave_ns)
        ]
        return min(near) if near else self.background_m


class SimButton:
    """A push button pressed by the script: raw edges with contact bounce."""

    def __init__(self, name: str, presses: list[SimPress], seed: int = 0) -> None:
        self.name = name
        self._edges = self._script(presses, np.random.default_rng(seed))
        self._next = 0
        self._sink: EventSink | None = None

    def _script(self, presses: list[SimPress], rng: np.random.Generator) -> list[ButtonEdge]:
        edges: list[ButtonEdge] = []
        for press in sorted(presses, key=lambda p: p.at_ns):
            for start, level in ((press.at_ns, True), (press.at_ns + press.hold_ns, False)):
                edges.append(ButtonEdge(self.name, level, start))
                t = start
                for _ in range(press.bounces):  # the contact chatters for a few ms
                    t += int(rng.integers(100_000, 1_500_000))
                    edges.append(ButtonEdge(self.name, not level, t))
                    t += int(rng.integers(100_000, 1_500_000))
                    edges.append(ButtonEdge(self.name, level, t))
        edges.sort(key=lambda e: e.t_ns)
        return edges

    def start(self, sink: EventSink) -> None:
        self._sink = sink

    def stop(self) -> None:
        self._sink = None

    def emit_until(self, t_ns: int) -> list[HardwareEvent]:
        out: list[HardwareEvent] = []
        while self._next < len(self._edges) and self._edges[self._next].t_ns <= t_ns:
            out.append(self._edges[self._next])
            self._next += 1
        return out


class SimRanger:
    """An ultrasonic ranger pinging every ``interval_s`` at the scripted world."""

    def __init__(self, world: World, interval_s: float, name: str = "ranger") -> None:
        self.name = name
        self.interval_s = interval_s
        self._interval_ns = round(interval_s * NS)
        self._world = world
        self._rng = np.random.default_rng(world.seed + 1)
        self._next_ns = 0
        self._sink: EventSink | None = None

    def start(self, sink: EventSink) -> None:
        self._sink = sink

    def stop(self) -> None:
        self._sink = None

    def emit_until(self, t_ns: int) -> list[HardwareEvent]:
        out: list[HardwareEvent] = []
        world = self._world
        while self._next_ns <= t_ns:
            t = self._next_ns
            true_m = world.distance_at(t)
            meters: float | None = None
            if true_m is not None and not (
                true_m != world.background_m and self._rng.random() < world.no_echo_rate
            ):
                meters = max(0.02, true_m + float(self._rng.normal(0.0, world.noise_m)))
            out.append(Distance(meters, t))
            self._next_ns += self._interval_ns
        return out


class SimMicrophone:
    """A microphone delivering fixed periods from a renderer, with scripted capture gaps."""

    def __init__(
        self,
        render: Renderer,
        sample_rate: int,
        period_frames: int,
        gaps: list[SimGap] | None = None,
        name: str = "microphone",
    ) -> None:
        self.name = name
        self.sample_rate = sample_rate
        self._render = render
        self._period = period_frames
        self._gaps = sorted(
            (self.index_at(g.at_ns), self.index_at(g.at_ns + g.length_ns)) for g in gaps or []
        )
        self._next_index = 0
        self._sink: EventSink | None = None

    def index_at(self, t_ns: int) -> int:
        return t_ns * self.sample_rate // NS

    def time_of(self, index: int) -> int:
        return index * NS // self.sample_rate

    def start(self, sink: EventSink) -> None:
        self._sink = sink

    def stop(self) -> None:
        self._sink = None

    def emit_until(self, t_ns: int) -> list[HardwareEvent]:
        """Every period whose last sample has been captured by ``t_ns``."""
        out: list[HardwareEvent] = []
        while self.time_of(self._next_index + self._period) <= t_ns:
            start = self._next_index
            end = start + self._period
            self._next_index = end
            lost = [(a, b) for a, b in self._gaps if a < end and b > start]
            if not lost:
                out.append(
                    AudioPeriod(start, self._render(start, self._period), self.time_of(start))
                )
                continue
            # deliver what survived around the gap(s); the index jump tells the daemon
            cursor = start
            for a, b in lost:
                if a > cursor:
                    out.append(
                        AudioPeriod(cursor, self._render(cursor, a - cursor), self.time_of(cursor))
                    )
                cursor = max(cursor, b)
            if cursor < end:
                out.append(
                    AudioPeriod(cursor, self._render(cursor, end - cursor), self.time_of(cursor))
                )
        return out


SimDevice = SimButton | SimRanger | SimMicrophone


class SimulatedBackend:
    """All simulated devices of one counter, advanced together in virtual time."""

    def __init__(self, devices: list[SimDevice]) -> None:
        self.devices = devices
        self.inventory = Inventory(
            buttons=[d for d in devices if isinstance(d, SimButton)],
            ranger=next((d for d in devices if isinstance(d, SimRanger)), None),
            audio=next((d for d in devices if isinstance(d, SimMicrophone)), None),
        )

    def advance_to(self, t_ns: int) -> list[HardwareEvent]:
        """Everything the devices report up to ``t_ns``, in time order (stable per device)."""
        events: list[HardwareEvent] = []
        for device in self.devices:
            events.extend(device.emit_until(t_ns))
        events.sort(key=lambda e: e.t_ns)
        return events
