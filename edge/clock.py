"""Time. Every event carries monotonic nanoseconds; wall-clock time is attached at the boundary.

A Raspberry Pi has no RTC: its wall clock may be wrong until NTP synchronises it, so durations
and ordering come from the monotonic clock and only the conversion to wall time (with a flag
saying whether the clock was synchronised) looks at the calendar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

NS = 1_000_000_000
_TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class Clock(Protocol):
    def monotonic_ns(self) -> int: ...

    def wall_ns(self, mono_ns: int) -> int:
        """The wall-clock time (ns since the epoch) of a monotonic instant."""
        ...

    def synchronized(self) -> bool: ...

    def boot_id(self) -> str: ...


class SystemClock:
    """The real clocks of this machine. The sources can be injected (tests: a wall clock that
    NTP steps); by default ``time.time_ns``, ``time.monotonic_ns`` and systemd-timesyncd's
    flag file."""

    def __init__(
        self,
        *,
        wall_now: Callable[[], int] = time.time_ns,
        monotonic_now: Callable[[], int] = time.monotonic_ns,
        synced: Callable[[], bool] | None = None,
    ) -> None:
        self._wall_now = wall_now
        self._monotonic_now = monotonic_now
        self._synced = synced if synced is not None else _TIMESYNC_FLAG.exists

    def monotonic_ns(self) -> int:
        return self._monotonic_now()

    def wall_ns(self, mono_ns: int) -> int:
        """With the wall clock's offset of this moment: a step moves every answer after it."""
        return self._wall_now() - self._monotonic_now() + mono_ns

    def synchronized(self) -> bool:
        return self._synced()

    def boot_id(self) -> str:
        try:
            return _BOOT_ID.read_text().strip()
        except OSError:
            return "unknown"


class FakeClock:
    """A virtual clock for tests and the simulation: time moves only when told to."""

    def __init__(
        self,
        start_wall_ns: int = 1_800_000_000 * NS,
        *,
        synced: bool = True,
        boot: str = "simulated",
    ) -> None:
        self.now_ns = 0
        self.wall_offset_ns = start_wall_ns
        self.synced = synced
        self.boot = boot
        #: (monotonic instant, what happens to the wall clock then), in time order
        self._pending: list[tuple[int, Callable[[], None]]] = []

    def monotonic_ns(self) -> int:
        return self.now_ns

    def wall_ns(self, mono_ns: int) -> int:
        return self.wall_offset_ns + mono_ns

    def synchronized(self) -> bool:
        return self.synced

    def boot_id(self) -> str:
        return self.boot

    def sync(self, true_start_wall_ns: int) -> None:
        """NTP synchronised the wall clock: it jumps (either way) to the true time."""
        self.wall_offset_ns = true_start_wall_ns
        self.synced = True

    def step(self, delta_ns: int) -> None:
        """The wall clock jumps by ``delta_ns`` (either way) and stays synchronised as it was:
        NTP stepped a clock it already trusted."""
        self.wall_offset_ns += delta_ns

    def schedule_sync(self, at_ns: int, true_start_wall_ns: int) -> None:
        """Synchronise when monotonic time reaches ``at_ns`` (a clock that starts wrong)."""
        self._schedule(at_ns, lambda: self.sync(true_start_wall_ns))

    def schedule_step(self, at_ns: int, delta_ns: int) -> None:
        """Step the wall clock by ``delta_ns`` when monotonic time reaches ``at_ns``."""
        self._schedule(at_ns, lambda: self.step(delta_ns))

    def _schedule(self, at_ns: int, action: Callable[[], None]) -> None:
        self._pending.append((at_ns, action))
        self._pending.sort(key=lambda item: item[0])

    def advance_to(self, t_ns: int) -> None:
        if t_ns < self.now_ns:
            raise ValueError(f"monotonic time cannot go back: {t_ns} < {self.now_ns}")
        self.now_ns = t_ns
        while self._pending and t_ns >= self._pending[0][0]:
            _, action = self._pending.pop(0)
            action()

    def advance(self, seconds: float) -> None:
        self.advance_to(self.now_ns + round(seconds * NS))


@dataclass(frozen=True, slots=True)
class Step:
    """The wall clock jumped against the monotonic clock while it was synchronised."""

    after_ns: int  # monotonic: the last observation before the jump
    seen_ns: int  # monotonic: the observation that saw it
    delta_ns: int  # how far it jumped (negative: back)
    off_ns: int  # how far it is now from the boot's reference (0: back on it)


class StepWatch:
    """Steps of a synchronised wall clock (NTP stepping a clock it already trusted).

    Rules:
    - :meth:`observe` is given the wall clock's offset from the monotonic clock (wall - mono)
      at least once a second, and before anything is stamped with wall time.
    - The first synchronised observation (at start, or a synchronisation after running
      unsynchronised) sets the *reference* offset: that jump is expected (the first-sync
      correction handles it), not a step. Unsynchronised, there is no reference.
    - While synchronised, an offset that moved by more than ``threshold_ns`` since the previous
      observation is a :class:`Step`. It is re-anchored: the next step is measured from the
      new offset, and wall times keep following the system's clock (no side of a step is
      known to be the true one).
    - :attr:`off_ns` is how far the clock is from the reference (0 within the threshold): a
      step back and the step forward again bring it to 0.
    - :meth:`stepped_since` says whether wall times stamped now, for something that began at
      monotonic ``t_ns``, may be off: the clock is off its reference, or a step was seen after
      ``t_ns`` (it happened between the two observations, maybe during the contact).
    """

    def __init__(self, threshold_ns: int) -> None:
        if threshold_ns <= 0:
            raise ValueError(f"the step threshold must be positive, got {threshold_ns} ns")
        self.threshold_ns = threshold_ns
        self._last: tuple[int, int, bool] | None = None  # (mono, offset, synced)
        self._reference: int | None = None
        self._last_step_seen_ns: int | None = None

    def observe(self, mono_ns: int, offset_ns: int, synced: bool) -> Step | None:
        last, self._last = self._last, (mono_ns, offset_ns, synced)
        if not synced:
            self._reference = None
            return None
        if self._reference is None or last is None or not last[2]:
            self._reference = offset_ns
            return None
        delta = offset_ns - last[1]
        if abs(delta) <= self.threshold_ns:
            return None
        self._last_step_seen_ns = mono_ns
        return Step(last[0], mono_ns, delta, self.off_ns)

    @property
    def off_ns(self) -> int:
        if self._last is None or self._reference is None:
            return 0
        off = self._last[1] - self._reference
        return off if abs(off) > self.threshold_ns else 0

    def stepped_since(self, t_ns: int) -> bool:
        seen = self._last_step_seen_ns
        return self.off_ns != 0 or (seen is not None and seen > t_ns)


def seconds_to_ns(seconds: float) -> int:
    return round(seconds * NS)
