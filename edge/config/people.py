"""The till and the people at it: ``[receipts]`` (sales over HTTP), ``[staff]`` (who is on
duty: weekly shifts) and ``[metrics]`` (the live counters' parameters)."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import Meta, field

from edge.config.base import FieldError, Section
from edge.staff import (
    DAY_MINUTES,
    DAYS,
    MAX_NAME,
    Schedule,
    Shift,
    check_name,
    find_overlap,
    parse_hhmm,
)


class ReceiptsSection(Section):
    enabled: Annotated[
        bool, Meta(description="Accept receipt (sale) events from the till over HTTP")
    ] = True
    host: Annotated[
        str, Meta(max_length=200, description="Address to listen on (keep it on loopback)")
    ] = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535, description="TCP port; 0 = any free port")] = 8765


class ShiftConfig(Section):
    name: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_NAME,
            description="The staff member on this shift, as reports name them (e.g. 'anna')",
        ),
    ]
    days: Annotated[
        list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]],
        Meta(min_length=1, description="Weekdays the shift starts on"),
    ]
    from_: Annotated[str, Meta(description="Local start time, HH:MM (00:00 .. 23:59)")] = field(
        name="from"
    )
    to: Annotated[
        str,
        Meta(
            description="Local end time, HH:MM or 24:00; at or before 'from' = the shift ends "
            "on the next day (a night shift)"
        ),
    ]

    def __post_init__(self) -> None:
        check_name(self.name)
        if len(set(self.days)) != len(self.days):
            raise ValueError(f"days lists a day twice: {self.days}")
        try:
            start = parse_hhmm(self.from_)
        except ValueError as exc:
            raise ValueError(f"from: {exc}") from None
        try:
            end = parse_hhmm(self.to, end=True)
        except ValueError as exc:
            raise ValueError(f"to: {exc}") from None
        if start == end % DAY_MINUTES and end != DAY_MINUTES:
            raise ValueError(
                f"from and to are both {self.from_!r}: for a 24-hour shift write "
                "from = '00:00', to = '24:00'"
            )

    def shift(self) -> Shift:
        return Shift(
            name=self.name,
            days=frozenset(DAYS.index(d) for d in self.days),
            start_min=parse_hhmm(self.from_),
            end_min=parse_hhmm(self.to, end=True),
        )


class StaffSection(Section):
    timezone: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=100,
            description="IANA time zone of the shift times and of 'today' in the live "
            "counters, e.g. 'Europe/Berlin'",
        ),
    ] = "UTC"
    shifts: Annotated[
        list[ShiftConfig],
        Meta(
            description="Weekly shifts at this counter (one person at a time: shifts must not "
            "overlap); 'POST /staff' at the till overrides them until the next shift change"
        ),
    ] = []

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise FieldError(
                "timezone",
                "not an IANA time zone; use e.g. 'UTC', 'Europe/Berlin', 'Asia/Yekaterinburg'",
            ) from None
        shifts = [s.shift() for s in self.shifts]
        clash = find_overlap(shifts)
        if clash is not None:
            i, j, at = clash
            raise ValueError(
                f"shifts[{j}] ({shifts[j].describe()}) overlaps shifts[{i}] "
                f"({shifts[i].describe()}) at {at}: one counter has one person on duty at a "
                "time; let one shift end where the other starts"
            )

    def schedule(self) -> Schedule:
        return Schedule([s.shift() for s in self.shifts], ZoneInfo(self.timezone))


class MetricsSection(Section):
    correction_factor: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description="Share of silent customers counted as dissatisfied in the staff "
            "dissatisfaction and loyalty indices (live counters; the sink has its own)",
        ),
    ] = 0.5
    force_majeure_threshold: Annotated[
        float,
        Meta(
            ge=0,
            le=10,
            description="Force-majeure presses per survey above which a day's quality scores "
            "are marked not meaningful",
        ),
    ] = 0.1
