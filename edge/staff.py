"""Who served a contact: a weekly shift schedule, overridden by "who is on duty now" calls.

Pure logic, no I/O; every time is wall-clock nanoseconds (UTC) and the schedule is read in
one IANA time zone (``zoneinfo``).

Rules:
- A shift is a staff name, weekdays (``mon`` .. ``sun``) and a local ``from`` / ``to`` time
  (``HH:MM``; ``to`` may be ``24:00``). ``to`` at or before ``from`` crosses midnight: the
  shift starts on each listed day and ends on the next day (``sun 22:00-06:00`` ends on
  Monday morning). An occurrence of a shift is the instant range [start, end) of its local
  times on one date. A local time that does not exist (the hour skipped when clocks spring
  forward) or exists twice (the hour repeated in autumn) is read with ``fold = 0``, i.e. with
  the offset in force before the change: ``02:30`` on a spring-forward night is 03:30 summer
  time, on an autumn night the first 02:30.
- One counter has one person on duty at a time: shifts must not overlap in the week
  (:func:`find_overlap`, checked by the config); shifts that meet (one's ``to`` = the other's
  ``from``) do not overlap.
- The schedule says who is on duty at an instant (:meth:`Schedule.on_duty`): the name of the
  shift occurrence containing it, or None.
- A *shift change* is the start or end of any shift occurrence.
- A call "X is on duty now" (``POST /staff`` at the till) overrides the schedule from the
  moment it was made until the next shift change or an explicit clear (``DELETE /staff``),
  whichever comes first; after a clear the schedule applies again (:meth:`Roster.staff_at`).
  Calls are kept in time order, so a contact that closes late is still attributed by the
  wall time of its *start*.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from contract.wire import MAX_STAFF_CHARS

NS = 1_000_000_000
DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60
WEEK_MINUTES = 7 * DAY_MINUTES
MAX_NAME = MAX_STAFF_CHARS  # (the wire's limit: a sink refuses longer names)
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)|24:00")
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f]")


def parse_hhmm(text: str, *, end: bool = False) -> int:
    """``"HH:MM"`` -> minutes after midnight; ``"24:00"`` (1440) only for an ``end``.

    Raises ValueError naming the value and the accepted form."""
    if not isinstance(text, str) or not _HHMM.fullmatch(text):
        raise ValueError(f"{text!r} is not a time of day; write HH:MM, 00:00 .. 23:59")
    if text == "24:00" and not end:
        raise ValueError("'24:00' is only allowed as a shift's 'to' (the end of the day)")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def check_name(name: str) -> str:
    """A staff member's name as it is stored and reported: 1..64 characters, no control
    characters, no surrounding spaces. Raises ValueError saying what is wrong."""
    if not isinstance(name, str):
        raise ValueError(f"a staff name must be a string, got {type(name).__name__}")
    if not name.strip() or name != name.strip():
        raise ValueError(f"staff name {name!r} must be non-empty without surrounding spaces")
    if len(name) > MAX_NAME or _BAD_NAME.search(name):
        raise ValueError(
            f"staff name {name!r} must be at most {MAX_NAME} characters, no control characters"
        )
    return name


@dataclass(frozen=True, slots=True)
class Shift:
    """One weekly shift: ``days`` are weekday numbers (0 = Monday), times in minutes."""

    name: str
    days: frozenset[int]
    start_min: int
    end_min: int  # 1..1440; <= start_min: ends on the next day

    @property
    def crosses_midnight(self) -> bool:
        return self.end_min <= self.start_min

    @property
    def length_min(self) -> int:
        return self.end_min - self.start_min + (DAY_MINUTES if self.crosses_midnight else 0)

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        return f"{self.name} {days} {hhmm(self.start_min)}-{hhmm(self.end_min)}"

    def week_intervals(self) -> list[tuple[int, int]]:
        """[start, end) in minutes of a local week (Monday 00:00 = 0), split at the week's end."""
        out: list[tuple[int, int]] = []
        for day in sorted(self.days):
            start = day * DAY_MINUTES + self.start_min
            end = start + self.length_min
            if end <= WEEK_MINUTES:
                out.append((start, end))
            else:  # Sunday night into Monday morning
                out.extend([(start, WEEK_MINUTES), (0, end - WEEK_MINUTES)])
        return out


def find_overlap(shifts: Sequence[Shift]) -> tuple[int, int, str] | None:
    """The first pair of shifts (indices i < j) that are on at the same local time, with the
    weekday and time where they first meet; None if the shifts never overlap."""
    for j, later in enumerate(shifts):
        for i in range(j):
            for a_start, a_end in shifts[i].week_intervals():
                for b_start, b_end in later.week_intervals():
                    if a_start < b_end and b_start < a_end:
                        at = max(a_start, b_start)
                        day, minute = divmod(at, DAY_MINUTES)
                        return i, j, f"{DAYS[day]} {hhmm(minute)}"
    return None


class Schedule:
    """Weekly shifts in one time zone."""

    def __init__(self, shifts: Iterable[Shift], tz: ZoneInfo) -> None:
        self.shifts = tuple(shifts)
        self.tz = tz

    def _local_date(self, wall_ns: int) -> date:
        return datetime.fromtimestamp(wall_ns // NS, self.tz).date()

    def _instant(self, day: date, minutes: int) -> int:
        local = datetime(day.year, day.month, day.day) + timedelta(minutes=minutes)
        return int(local.replace(tzinfo=self.tz).timestamp()) * NS

    def occurrences(self, first: date, last: date) -> Iterator[tuple[int, int, str]]:
        """(start_ns, end_ns, name) of every shift starting on a local date in [first, last]."""
        day = first
        while day <= last:
            for shift in self.shifts:
                if day.weekday() in shift.days:
                    start = self._instant(day, shift.start_min)
                    end_day = day + timedelta(days=1) if shift.crosses_midnight else day
                    yield start, self._instant(end_day, shift.end_min), shift.name
            day += timedelta(days=1)

    def on_duty(self, wall_ns: int) -> str | None:
        """Who the schedule has on duty at ``wall_ns``, or None."""
        today = self._local_date(wall_ns)
        for start, end, name in self.occurrences(today - timedelta(days=1), today):
            if start <= wall_ns < end:
                return name
        return None

    def changes_between(self, after_ns: int, upto_ns: int) -> bool:
        """Whether a shift starts or ends in (after_ns, upto_ns]."""
        if upto_ns <= after_ns or not self.shifts:
            return False
        if upto_ns - after_ns > 8 * 24 * 3600 * NS:  # a weekly schedule changes within a week
            return True
        first = self._local_date(after_ns) - timedelta(days=1)
        return any(
            after_ns < t <= upto_ns
            for start, end, _ in self.occurrences(first, self._local_date(upto_ns))
            for t in (start, end)
        )


@dataclass(frozen=True, slots=True)
class StaffCall:
    """A call "``name`` is on duty now" (None: clear, back to the schedule), stamped on arrival
    with the monotonic clock like a receipt."""

    t_ns: int
    name: str | None


class Roster:
    """The schedule plus the on-duty calls: who served a contact that started at an instant."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._times: list[int] = []
        self._names: list[str | None] = []

    def call(self, name: str | None, wall_ns: int) -> None:
        """Record a call made at ``wall_ns`` (None = clear). Calls may arrive out of order."""
        index = bisect.bisect_right(self._times, wall_ns)
        self._times.insert(index, wall_ns)
        self._names.insert(index, name)

    def staff_at(self, wall_ns: int) -> str | None:
        index = bisect.bisect_right(self._times, wall_ns) - 1
        if index >= 0:
            name = self._names[index]
            if name is not None and not self.schedule.changes_between(self._times[index], wall_ns):
                return name
        return self.schedule.on_duty(wall_ns)

    def prune(self, before_ns: int) -> None:
        """Forget calls that can no longer decide anything: all before ``before_ns`` except
        the latest of them (it may still be in force)."""
        keep_from = max(0, bisect.bisect_right(self._times, before_ns) - 1)
        del self._times[:keep_from]
        del self._names[:keep_from]

    def __len__(self) -> int:
        return len(self._times)
