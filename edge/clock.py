"""Time. Every event carries monotonic nanoseconds; wall-clock time is attached at the boundary.

A Raspberry Pi has no RTC: its wall clock may be wrong until NTP synchronises it, so durations
and ordering come from the monotonic clock and only the conversion to wall time (with a flag
saying whether the clock was synchronised) looks at the calendar.
"""

from __future__ import annotations

import time
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
    """The real clocks of this machine."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ns(self, mono_ns: int) -> int:
        return time.time_ns() - time.monotonic_ns() + mono_ns

    def synchronized(self) -> bool:
        return _TIMESYNC_FLAG.exists()

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
        #: (monotonic instant, true wall time of monotonic 0): NTP steps the clock then
        self.pending_sync: tuple[int, int] | None = None

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

    def schedule_sync(self, at_ns: int, true_start_wall_ns: int) -> None:
        """Synchronise when monotonic time reaches ``at_ns`` (a clock that starts wrong)."""
        self.pending_sync = (at_ns, true_start_wall_ns)

    def advance_to(self, t_ns: int) -> None:
        if t_ns < self.now_ns:
            raise ValueError(f"monotonic time cannot go back: {t_ns} < {self.now_ns}")
        self.now_ns = t_ns
        if self.pending_sync is not None and t_ns >= self.pending_sync[0]:
            self.sync(self.pending_sync[1])
            self.pending_sync = None

    def advance(self, seconds: float) -> None:
        self.advance_to(self.now_ns + round(seconds * NS))


def seconds_to_ns(seconds: float) -> int:
    return round(seconds * NS)
