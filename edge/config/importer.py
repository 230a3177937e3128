"""Importing a dictaphone's recordings cut around a CRM's events: ``[importer]`` (the windows,
where each file's start time comes from, each recorder's clock, the events file's columns and
how its ratings map to the device's)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import Meta, field

from edge.config.base import FieldError, Section, set_value

#: the fields an event of the events file has (the column or key names are configurable)
EVENT_FIELDS: tuple[str, ...] = ("id", "time", "kind", "order_id", "staff", "rating")
#: strftime directives a filename pattern may use, with the text each one matches
PATTERN_DIRECTIVES: dict[str, str] = {
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "m": r"\d{1,2}",
    "d": r"\d{1,2}",
    "H": r"\d{1,2}",
    "M": r"\d{1,2}",
    "S": r"\d{1,2}",
    "f": r"\d{1,6}",
    "%": "%",
}


def check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Moscow'"
        ) from None
    return name


class FilenamePattern(Section):
    format: Annotated[
        str,
        Meta(
            min_length=2,
            max_length=200,
            description="strftime-like pattern searched for in the file name, e.g. "
            "'REC_%Y%m%d_%H%M%S' (directives %Y %y %m %d %H %M %S %f; %Y or %y, %m, %d, %H "
            "and %M are required)",
        ),
    ]
    timezone: Annotated[
        str,
        Meta(
            max_length=100,
            description="IANA time zone of the times in these names; empty = importer.timezone",
        ),
    ] = ""

    def __post_init__(self) -> None:
        try:
            _check_format(self.format)
        except ValueError as exc:
            raise FieldError("format", str(exc)) from None
        if self.timezone:
            _zone("timezone", self.timezone)


def _zone(key: str, name: str) -> None:
    try:
        check_zone(name)
    except ValueError as exc:
        raise FieldError(key, str(exc)) from None


def _check_format(value: str) -> None:
    pieces = value.split("%")
    used: set[str] = set()
    for piece in pieces[1:]:
        if not piece or piece[0] not in PATTERN_DIRECTIVES:
            bad = piece[:1] or "(end)"
            raise ValueError(
                f"pattern {value!r}: unsupported directive %{bad}; allowed: "
                + " ".join(f"%{d}" for d in PATTERN_DIRECTIVES)
            )
        used.add(piece[0])
    missing = [d for d in ("m", "d", "H", "M") if d not in used]
    if not used & {"Y", "y"}:
        missing.insert(0, "Y")
    if missing:
        raise ValueError(
            f"pattern {value!r} lacks "
            + ", ".join(f"%{d}" for d in missing)
            + ": a start time needs the date and the time of day"
        )


class RecorderClock(Section):
    name: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9_.-]{1,64}$",
            description="The recorder's name, as the note of its contacts says it",
        ),
    ]
    match: Annotated[
        list[str],
        Meta(
            min_length=1,
            description="Glob patterns on the file's path (e.g. '*/DICT07/*', '*_07_*.wav'): "
            "the first recorder with a matching pattern is the file's",
        ),
    ]
    offset_s: Annotated[
        float,
        Meta(
            ge=-86400 * 366,
            le=86400 * 366,
            description="Seconds added to the recorder's clock to get the true time (a clock "
            "90 s slow: 90)",
        ),
    ] = 0.0
    drift_s_per_day: Annotated[
        float,
        Meta(
            ge=-3600,
            le=3600,
            description="Seconds the correction grows per day after 'offset_at' (a clock that "
            "loses 2 s a day: 2)",
        ),
    ] = 0.0
    offset_at: Annotated[
        str,
        Meta(
            max_length=64,
            description="When offset_s was measured, ISO 8601 with a zone (e.g. "
            "'2026-11-01T09:00:00+03:00'); needed when drift_s_per_day is not 0",
        ),
    ] = ""
    staff: Annotated[
        str,
        Meta(
            max_length=64,
            description="Who carries this recorder: the staff of its contacts when an event "
            "names nobody; empty = unknown",
        ),
    ] = ""

    def __post_init__(self) -> None:
        if self.offset_at:
            when = _parse_iso(self.offset_at)
            if when is None:
                raise ValueError(
                    f"recorder '{self.name}': offset_at {self.offset_at!r} is not ISO 8601 "
                    "with a zone, e.g. '2026-11-01T09:00:00+03:00'"
                )
        elif self.drift_s_per_day:
            raise ValueError(
                f"recorder '{self.name}': drift_s_per_day needs offset_at (when the offset was "
                "measured)"
            )

    def offset_at_ns(self) -> int | None:
        when = _parse_iso(self.offset_at) if self.offset_at else None
        return None if when is None else round(when.timestamp() * 1e9)


def _parse_iso(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.utcoffset() is not None else None


class EventColumns(Section):
    id: Annotated[
        str,
        Meta(
            max_length=100,
            description="Column (CSV) or key (JSON lines) of the event's id; a row without "
            "one gets an id made of its time, kind, order and staff",
        ),
    ] = "id"
    time: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=100,
            description="Column of the event's time: ISO 8601 (without a zone: "
            "importer.timezone) or Unix seconds",
        ),
    ] = "time"
    kind: Annotated[
        str, Meta(min_length=1, max_length=100, description="Column of the kind, e.g. delivery")
    ] = "kind"
    order_id: Annotated[
        str, Meta(min_length=1, max_length=100, description="Column of the order id")
    ] = "order_id"
    staff: Annotated[
        str, Meta(min_length=1, max_length=100, description="Column of the staff member")
    ] = "staff"
    rating: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=100,
            description="Column of the customer's rating (a row with no value there has no rating)",
        ),
    ] = "rating"


class RatingMap(Section):
    green: Annotated[
        list[str], Meta(description="CRM rating values that count as green (case-insensitive)")
    ] = field(default_factory=lambda: ["5", "4", "green", "good", "positive"])
    yellow: Annotated[list[str], Meta(description="CRM rating values that count as yellow")] = (
        field(default_factory=lambda: ["3", "yellow", "neutral"])
    )
    red: Annotated[list[str], Meta(description="CRM rating values that count as red")] = field(
        default_factory=lambda: ["2", "1", "red", "bad", "negative"]
    )

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for colour in ("green", "yellow", "red"):
            for value in getattr(self, colour):
                key = value.strip().lower()
                if key in seen and seen[key] != colour:
                    raise ValueError(f"rating {value!r} is both {seen[key]} and {colour}")
                seen[key] = colour

    def colour(self, value: str) -> str | None:
        key = value.strip().lower()
        for colour in ("green", "yellow", "red"):
            if key in (v.strip().lower() for v in getattr(self, colour)):
                return colour
        return None


class ImporterSection(Section):
    before_s: Annotated[
        float, Meta(ge=0, le=3600, description="Audio cut before each event (s)")
    ] = 60.0
    after_s: Annotated[float, Meta(ge=0, le=3600, description="Audio cut after each event (s)")] = (
        60.0
    )
    stitch_tolerance_s: Annotated[
        float,
        Meta(
            ge=0,
            le=60,
            description="Two files whose end and start are at most this far apart are one "
            "recording: a window across them is stitched (else it is cut short and flagged) (s)",
        ),
    ] = 1.0
    timezone: Annotated[
        str,
        Meta(
            max_length=100,
            description="IANA time zone of times written without one (a bext chunk, the events "
            "file), e.g. 'Europe/Moscow'",
        ),
    ] = "UTC"
    use_mtime: Annotated[
        bool,
        Meta(
            description="Without a bext chunk or a matching name, take the file's modification "
            "time minus its duration as its start"
        ),
    ] = True
    earliest_year: Annotated[
        int,
        Meta(
            ge=1970,
            le=2100,
            description="A start time before this year is a reset clock, not a time: the next "
            "source is tried",
        ),
    ] = 2001
    extensions: Annotated[
        list[str],
        Meta(
            min_length=1,
            description="Files in a folder with these extensions are recordings",
        ),
    ] = field(
        default_factory=lambda: [
            ".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".amr"
        ]
    )  # fmt: skip
    columns: EventColumns = field(default_factory=EventColumns)
    ratings: RatingMap = field(default_factory=RatingMap)
    filenames: Annotated[
        list[FilenamePattern],
        Meta(description="File name patterns giving a start time, tried in order"),
    ] = field(
        default_factory=lambda: [
            FilenamePattern(format="REC_%Y%m%d_%H%M%S"),
            FilenamePattern(format="%Y%m%d_%H%M%S"),
            FilenamePattern(format="%Y-%m-%d_%H-%M-%S"),
        ]
    )
    recorders: Annotated[
        list[RecorderClock],
        Meta(description="Recorders whose clock is off: matched by path, corrected"),
    ] = []

    def __post_init__(self) -> None:
        _zone("timezone", self.timezone)
        for ext in self.extensions:
            if not ext.startswith(".") or len(ext) < 2:
                raise FieldError(
                    "extensions", f"extension {ext!r} must start with a dot, e.g. '.wav'"
                )
        set_value(self, "extensions", [ext.lower() for ext in self.extensions])
        names = [r.name for r in self.recorders]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two recorders are named '{name}'")
