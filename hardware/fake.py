"""Simulated devices: product code, so the whole daemon runs on any machine.

The fakes model the *device*, not the call: a simulated button produces raw edges with contact
bounce (the daemon must debounce them, as with a real switch); the simulated ranger produces a
reading per ranging cycle with measurement noise and missing echoes; the simulated microphone
produces fixed-size periods with absolute sample indices, including capture gaps. Wireless
remotes go through the real decoders: :class:`SimRadio` is a 433 MHz receiver's data pin
(the remote's pulse train as pigpio edges with 32-bit µs ticks, watchdog reports, optional idle
noise) for the daemon's OOK decoder; :class:`SimRflink` prints the lines an RFLink stick would
and reads them with the serial driver's own parser and repeat filter. Everything is driven by a
:class:`World` (what happens at the counter, in virtual time) and is deterministic for a given
seed. A press's ``via`` says which device hears it: ``gpio`` (:class:`SimButton`), ``rf433`` or
``serial`` (its ``code`` is the remote key, ``"<protocol>:<hex>"``).

Time is virtual: :meth:`SimulatedBackend.advance_to` emits, in time order, every event the
devices produce up to that instant. The daemon decides how fast virtual time runs.
"""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from hardware import _remote
from hardware._api import (
    AudioPeriod,
    ButtonEdge,
    DeviceFault,
    Distance,
    EventSink,
    HardwareEvent,
    Inventory,
    RadioEdge,
    RemoteCode,
    Samples,
)
from hardware.serial_rx import RepeatFilter, Skip, parse_line

NS = 1_000_000_000
#: Render ``count`` samples starting at an absolute sample index (a pure function of the index).
Renderer = Callable[[int, int], Samples]


@dataclass(frozen=True, slots=True)
class SimPress:
    button: str
    at_ns: int
    hold_ns: int
    bounces: int = 3  # extra edges at press and at release, within a few milliseconds
    via: str = "gpio"  # gpio | rf433 | serial: which (simulated) receiver hears the press
    code: str | None = None  # the remote key for rf433/serial, "<protocol>:<hex>"


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
    rf_noise_edges_per_s: float = 0.0  # an idle 433 MHz receiver's noise (0 = a quiet one)

    def distance_at(self, t_ns: int) -> float | None:
        near = [
            c.distance_m
            for c in self.customers
            if c.arrive_ns <= t_ns and (c.leave_ns is None or t_ns < c.leave_ns)
        ]
        return min(near) if near else self.background_m


class _ScriptedDevice:
    """A simulated device is read with ``emit_until``; :class:`SimulatedBackend` hands what it
    returns to the sink, so starting and stopping the device itself has nothing to do."""

    def start(self, sink: EventSink) -> None:
        return None

    def stop(self) -> None:
        return None


class SimButton(_ScriptedDevice):
    """A push button pressed by the script: raw edges with contact bounce."""

    def __init__(self, name: str, presses: list[SimPress], seed: int = 0) -> None:
        self.name = name
        self._edges = self._script(presses, random.Random(seed))
        self._next = 0

    def _script(self, presses: list[SimPress], rng: random.Random) -> list[ButtonEdge]:
        edges: list[ButtonEdge] = []
        for press in sorted(presses, key=lambda p: p.at_ns):
            for start, level in ((press.at_ns, True), (press.at_ns + press.hold_ns, False)):
                edges.append(ButtonEdge(self.name, level, start))
                t = start
                for _ in range(press.bounces):  # the contact chatters for a few ms
                    t += rng.randrange(100_000, 1_500_000)
                    edges.append(ButtonEdge(self.name, not level, t))
                    t += rng.randrange(100_000, 1_500_000)
                    edges.append(ButtonEdge(self.name, level, t))
        edges.sort(key=lambda e: e.t_ns)
        return edges

    def emit_until(self, t_ns: int) -> list[HardwareEvent]:
        out: list[HardwareEvent] = []
        while self._next < len(self._edges) and self._edges[self._next].t_ns <= t_ns:
            out.append(self._edges[self._next])
            self._next += 1
        return out


class SimRanger(_ScriptedDevice):
    """An ultrasonic ranger pinging every ``interval_s`` at the scripted world."""

    def __init__(self, world: World, interval_s: float, name: str = "ranger") -> None:
        self.name = name
        self.interval_s = interval_s
        self._interval_ns = round(interval_s * NS)
        self._world = world
        self._rng = random.Random(world.seed + 1)
        self._next_ns = 0

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
                meters = max(0.02, true_m + self._rng.gauss(0.0, world.noise_m))
            out.append(Distance(meters, t))
            self._next_ns += self._interval_ns
        return out


class SimMicrophone(_ScriptedDevice):
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

    def index_at(self, t_ns: int) -> int:
        return t_ns * self.sample_rate // NS

    def time_of(self, index: int) -> int:
        return index * NS // self.sample_rate

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


# -- wireless remotes --------------------------------------------------------------------------

RF_MIN_REPEATS = 4  # frames a remote sends even for the shortest tap
RF_JITTER = 0.05  # an edge moves by up to this share of the remote's base period
RF_GUARD_NS = 1_000_000  # no receiver noise this close to a transmission (the AGC has settled)
RF_NOISE_WINDOW_NS = NS
WATCHDOG = 2  # RadioEdge.level of a pigpio watchdog report
_TICK_MASK = 0xFFFFFFFF
_HEX_DIGITS = frozenset("0123456789abcdef")


def rf_frame(key: str) -> tuple[int, int, int]:
    """``(rc-switch protocol, value, bits)`` of the frame a remote sends for a 433 MHz key.

    ``key`` is what the GPIO decoder reports: ``ev1527:<6 hex>``, ``pt2262:<6 hex>`` (every bit
    pair a trit) or ``rcswitch<1-11>:<hex>`` (bits = 4 × digits, 12..64; not 24 bits on protocol
    1, which decodes as ev1527/pt2262; protocol 12 decodes as 11). Raises ``ValueError`` for a key
    no remote would produce.
    """
    protocol, sep, digits = key.lower().partition(":")
    if not sep or not digits or not set(digits) <= _HEX_DIGITS:
        raise ValueError(f"remote key {key!r}: want '<protocol>:<hex>', e.g. 'ev1527:27fd49'")
    value, bits = int(digits, 16), 4 * len(digits)
    trits = bits == 24 and all(value >> shift & 0b11 != 0b10 for shift in range(0, 24, 2))
    if protocol in ("ev1527", "pt2262") and bits == 24:
        if trits == (protocol == "pt2262"):
            return 1, value, 24
        other = "pt2262" if trits else "ev1527"
        raise ValueError(f"remote key {key!r}: that frame decodes as '{other}:{digits}'")
    if (
        protocol.startswith("rcswitch")
        and protocol[8:] in {str(p) for p in _remote.PROTOCOLS if p != 12}
        and 12 <= bits <= 64
        and not (protocol == "rcswitch1" and bits == 24)
    ):
        return int(protocol[8:]), value, bits
    raise ValueError(
        f"remote key {key!r}: the simulated remotes send ev1527:<6 hex>, pt2262:<6 hex> or "
        "rcswitch<1-11>:<3..16 hex> (not 6 hex digits on rcswitch1)"
    )


def _remote_pulse_us(protocol: int, key: str, seed: int) -> int:
    """A remote's base period: a property of its oscillator, fixed per remote and seed."""
    rng = random.Random(f"{seed}:{key.lower()}")
    if key.lower().startswith("ev1527:"):
        return rng.randint(280, 370)  # EV1527 remotes vary this much
    return round(_remote.NOMINAL_PULSE_US[protocol] * rng.uniform(0.9, 1.1))


class SimRadio(_ScriptedDevice):
    """A 433 MHz OOK receiver's data pin, as pigpio reports it (implements EdgeInput).

    Every press with ``via == "rf433"`` is its remote's pulse train: frames repeated for as long
    as the key is held (at least :data:`RF_MIN_REPEATS`), edges jittered, the line resting low.
    Two transmissions never overlap: a later one waits until the air is free. Ticks are pigpio's
    unsigned 32-bit µs, ``(start_tick_us + t_ns // 1000) mod 2**32``. A watchdog report (level 2)
    follows every edge after which the pin stays quiet for ``watchdog_ms`` (once per silence;
    pigpiod repeats it, which a decoder ignores). With ``noise_edges_per_s`` the receiver also
    emits idle noise (log-uniform spikes) except around transmissions. Deterministic per seed.
    """

    def __init__(
        self,
        world: World,
        gpio: int,
        *,
        seed: int,
        noise_edges_per_s: float = 0.0,
        watchdog_ms: int = 20,
        start_tick_us: int = 0,
        name: str = "rf433",
    ) -> None:
        if noise_edges_per_s < 0 or watchdog_ms < 0:
            raise ValueError("noise_edges_per_s and watchdog_ms must be >= 0")
        self.name = name
        self.gpio = gpio
        self._seed = seed
        self._noise_per_s = noise_edges_per_s
        self._watchdog_ns = watchdog_ms * 1_000_000
        self._start_tick = start_tick_us
        self._heap: list[tuple[int, int, int]] = []  # (t_ns, order, level)
        self._order = 0
        self._quiet: list[tuple[int, int]] = []  # transmissions (+ guard), sorted, disjoint
        self._noise_until = 0
        jitter = random.Random(seed)
        free_ns = 0  # the air is free from here on
        for press in sorted((p for p in world.presses if p.via == "rf433"), key=lambda p: p.at_ns):
            if press.code is None:
                raise ValueError(f"rf433 press of {press.button!r} at {press.at_ns} ns: no code")
            protocol, value, bits = rf_frame(press.code)
            pulse = _remote_pulse_us(protocol, press.code, seed)
            frame_us = sum(m + g for m, g in _remote.transmit(protocol, value, bits, pulse, 1))
            repeats = max(RF_MIN_REPEATS, math.ceil(press.hold_ns / 1000 / frame_us))
            pulses = _remote.transmit(protocol, value, bits, pulse, repeats)
            edges = _remote.to_edges(
                pulses, 0, jitter_us=round(pulse * RF_JITTER), seed=jitter.getrandbits(32)
            )
            start = max(press.at_ns, free_ns)
            for level, offset_us in edges:
                self._push(start + offset_us * 1000, level)
            end = start + edges[-1][1] * 1000
            free_ns = end + self._watchdog_ns + RF_GUARD_NS
            self._quiet.append((start - RF_GUARD_NS, free_ns))
        self._quiet_starts = [a for a, _ in self._quiet]

    def _push(self, t_ns: int, level: int) -> None:
        heapq.heappush(self._heap, (t_ns, self._order, level))
        self._order += 1

    def _is_quiet(self, a_ns: int, b_ns: int) -> bool:
        """Whether [a_ns, b_ns] touches a transmission."""
        i = bisect_right(self._quiet_starts, b_ns) - 1
        return i >= 0 and self._quiet[i][1] >= a_ns

    def _add_noise(self, window: int) -> None:
        rng = random.Random(f"{self._seed}:noise:{window}")
        pulses = _remote.noise(max(1, round(self._noise_per_s / 2)), rng.getrandbits(32))
        span_us = RF_NOISE_WINDOW_NS // 1000
        marks = sum(m for m, _ in pulses)
        gaps = sum(g for _, g in pulses)
        # fill the window: sparse noise = the same short spikes further apart; dense noise =
        # every duration shortened alike
        squeeze = min(1.0, span_us / (marks + gaps))
        stretch = max(squeeze, (span_us - marks) / gaps)
        start_us = window * span_us
        t = start_us
        for raw_mark, gap in pulses:
            mark = max(1, round(raw_mark * squeeze))
            t += max(1, round(gap * stretch))
            if t + mark >= start_us + span_us:
                break
            if not self._is_quiet(t * 1000, (t + mark) * 1000):
                self._push(t * 1000, 1)
                self._push((t + mark) * 1000, 0)
            t += mark

    def emit_until(self, t_ns: int) -> list[HardwareEvent]:
        out: list[HardwareEvent] = []
        if self._noise_per_s > 0:  # noise known far enough ahead to tell where silences are
            while self._noise_until <= t_ns + self._watchdog_ns:
                self._add_noise(self._noise_until // RF_NOISE_WINDOW_NS)
                self._noise_until += RF_NOISE_WINDOW_NS
        heap = self._heap
        while heap and heap[0][0] <= t_ns:
            at, _, level = heapq.heappop(heap)
            out.append(
                RadioEdge(self.gpio, level, (self._start_tick + at // 1000) & _TICK_MASK, at)
            )
            quiet_after = not heap or heap[0][0] - at > self._watchdog_ns
            if level != WATCHDOG and self._watchdog_ns and quiet_after:
                self._push(at + self._watchdog_ns, WATCHDOG)
        return out


def rflink_line(key: str, counter: int) -> str:
    """The line an RFLink stick prints for a remote key, checked by parsing it back.

    ``ev1527:<6 hex>`` as RFLink's EV1527 plugin prints it (``ID`` = 20-bit id, ``SWITCH`` = the
    4-bit key in hex); other keys ``<name>:<id>[-<switch>[-<cmd>]]`` as RFLink's own protocols
    print them (a bare id as a doorbell's ``CHIME``). Raises ``ValueError`` when the line would
    not parse back to ``key``: no RFLink prints such a key.
    """
    protocol, _, code = key.lower().partition(":")
    if protocol == "ev1527" and len(code) == 6 and set(code) <= _HEX_DIGITS:
        value = int(code, 16)
        fields = f"EV1527;ID={value >> 4:06x};SWITCH={value & 0xF:02x};CMD=ON;"
    else:
        parts = code.split("-")
        labels = {1: ("ID", "CHIME"), 2: ("ID", "SWITCH"), 3: ("ID", "SWITCH", "CMD")}
        names = labels.get(len(parts), ())
        values = [*parts, "01"] if len(parts) == 1 else parts
        fields = f"{protocol};" + "".join(
            f"{label}={value.upper() if label == 'CMD' else value};"
            for label, value in zip(names, values, strict=False)
        )
    line = f"20;{counter % 256:02X};{fields}"
    got = parse_line(line)
    if isinstance(got, Skip) or got.key != key.lower():
        raise ValueError(f"remote key {key!r}: no RFLink line reports it (tried {line!r})")
    return line


class SimRflink(_ScriptedDevice):
    """An RFLink USB receiver (implements Device): the lines it prints, read by the real parser.

    Every press with ``via == "serial"`` makes the stick print its line 40–80 ms after the key
    goes down (it decodes a frame or two first), then again every 90–130 ms while the key is held
    (at least twice), the packet counter counting every line. Each line goes through
    :func:`hardware.serial_rx.parse_line` and the driver's :class:`RepeatFilter`, as in
    :class:`hardware.serial_rx.RflinkReceiver`, and becomes a :class:`RemoteCode` stamped with the
    line's time. Deterministic per seed.
    """

    def __init__(
        self, world: World, *, seed: int, repeat_window_s: float = 0.5, name: str = "rflink"
    ) -> None:
        self.name = name
        rng = random.Random(seed)
        counter = rng.randrange(256)
        lines: list[tuple[int, str]] = []
        for press in sorted((p for p in world.presses if p.via == "serial"), key=lambda p: p.at_ns):
            if press.code is None:
                raise ValueError(
                    f"serial press of {press.button!r} at {press.at_ns} ns has no code"
                )
            t = press.at_ns + rng.randint(40, 80) * 1_000_000
            printed = 0
            while printed < 2 or t <= press.at_ns + press.hold_ns:
                lines.append((t, rflink_line(press.code, counter)))
                counter += 1
                printed += 1
                t += rng.randint(90, 130) * 1_000_000
        lines.sort(key=lambda line: line[0])
        self.lines = lines  # what the stick prints, with the time each line arrives
        self._next = 0
        self._repeats = RepeatFilter(round(repeat_window_s * NS))

    def emit_until(self, t_ns: int) -> list[HardwareEvent]:
        out: list[HardwareEvent] = []
        while self._next < len(self.lines) and self.lines[self._next][0] <= t_ns:
            at, line = self.lines[self._next]
            self._next += 1
            got = parse_line(line)
            if not isinstance(got, Skip) and self._repeats.accept(got.key, at):
                out.append(RemoteCode(self.name, got.protocol, got.code, at))
        return out


SimDevice = SimButton | SimRanger | SimMicrophone | SimRadio | SimRflink


class SimulatedBackend:
    """All simulated devices of one counter, advanced together in virtual time.

    Pull model: :meth:`advance_to` returns what the devices report up to an instant. Once
    :meth:`start` has been given a sink, ``advance_to`` also hands every event to it (in the
    same order), so a daemon can treat this backend like :class:`hardware.LiveBackend`: use
    either the sink or the return value, not both. Simulated devices never fail to start.
    """

    def __init__(self, devices: list[SimDevice]) -> None:
        self.devices = devices
        self.inventory = Inventory(
            buttons=[d for d in devices if isinstance(d, SimButton)],
            edges=[d for d in devices if isinstance(d, SimRadio)],
            ranger=next((d for d in devices if isinstance(d, SimRanger)), None),
            audio=next((d for d in devices if isinstance(d, SimMicrophone)), None),
            others=[d for d in devices if isinstance(d, SimRflink)],
        )
        self.faults: list[DeviceFault] = []
        self._sink: EventSink | None = None

    def start(self, sink: EventSink) -> None:
        """Start every device with ``sink``; from now on ``advance_to`` reports to it too."""
        for device in self.devices:
            device.start(sink)
        self._sink = sink

    def stop(self) -> None:
        """Stop every device, in reverse order. Idempotent."""
        self._sink = None
        for device in reversed(self.devices):
            device.stop()

    def advance_to(self, t_ns: int) -> list[HardwareEvent]:
        """Everything the devices report up to ``t_ns``, in time order (stable per device)."""
        events: list[HardwareEvent] = []
        for device in self.devices:
            events.extend(device.emit_until(t_ns))
        events.sort(key=lambda e: e.t_ns)
        sink = self._sink
        if sink is not None:
            for event in events:
                sink(event)
        return events
