"""Links into a video system's archive: a URL template filled with a camera and a time. Pure.

Rules:
- Placeholders are ``{camera}``, ``{time}``, ``{device}`` and ``{site}``, nothing else: no format
  specs, conversions or attribute access. A template may use each any number of times.
- ``{time}`` is the moment plus ``offset_s`` (the camera's clock may differ from ours), written
  as ``epoch_s`` (integer seconds), ``epoch_ms`` (integer milliseconds) or an ``strftime``
  pattern rendered in the configured IANA time zone (e.g. ``%Y-%m-%dT%H:%M:%S``).
- Values are percent-encoded for a URL (``:`` kept), so a pattern with spaces stays one URL.
- Problems are ``ValueError`` naming the bad part and what is allowed.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PLACEHOLDERS: tuple[str, ...] = ("camera", "time", "device", "site")
EPOCH_FORMATS: tuple[str, ...] = ("epoch_s", "epoch_ms")
_SAFE = "-_.~:"


def placeholders(template: str) -> list[str]:
    """The placeholder names in ``template``; ValueError for anything not allowed."""
    allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"url_template {template!r} is not a valid template ({exc}); write a literal brace "
            "as '{{' or '}}'"
        ) from None
    names: list[str] = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            shown = "{" + name + "}" if name else "{}"
            raise ValueError(f"unknown placeholder {shown} in url_template; allowed: {allowed}")
        if spec or conversion:
            raise ValueError(
                f"placeholder {{{name}}} takes no format spec or conversion (got "
                f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}); "
                "set time_format instead"
            )
        names.append(name)
    return names


def check_time_format(time_format: str) -> None:
    if time_format in EPOCH_FORMATS:
        return
    if "%" not in time_format:
        raise ValueError(
            f"time_format {time_format!r} is neither {' nor '.join(EPOCH_FORMATS)} nor an "
            "strftime pattern (e.g. '%Y-%m-%dT%H:%M:%S')"
        )
    try:
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).strftime(time_format)
    except ValueError as exc:
        raise ValueError(f"time_format {time_format!r}: {exc}") from None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Moscow'"
        ) from None


@dataclass(frozen=True, slots=True)
class VideoLinks:
    """A checked template, ready to make links (:meth:`url`)."""

    template: str
    camera: str
    offset_s: float = 0.0
    time_format: str = "epoch_s"
    timezone: str = "UTC"
    device: str = ""
    site: str = ""

    def __post_init__(self) -> None:
        placeholders(self.template)
        check_time_format(self.time_format)
        zone(self.timezone)

    def time_text(self, wall_ns: int) -> str:
        shifted_ns = wall_ns + round(self.offset_s * 1e9)
        if self.time_format == "epoch_s":
            return str(shifted_ns // 1_000_000_000)
        if self.time_format == "epoch_ms":
            return str(shifted_ns // 1_000_000)
        seconds, rest = divmod(shifted_ns, 1_000_000_000)
        moment = datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=rest // 1000)
        return moment.astimezone(zone(self.timezone)).strftime(self.time_format)

    def url(self, wall_ns: int) -> str:
        """The archive link for the moment ``wall_ns`` (wall-clock nanoseconds)."""
        values = {
            "camera": self.camera,
            "time": self.time_text(wall_ns),
            "device": self.device,
            "site": self.site,
        }
        return self.template.format(**{k: quote(v, safe=_SAFE) for k, v in values.items()})
