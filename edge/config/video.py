"""Links into the video archive: ``[video]``."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from edge import video
from edge.config.base import Section


class VideoSection(Section):
    url_template: Annotated[
        str,
        Meta(
            max_length=2000,
            description="Link into the video archive, e.g. "
            "'https://nvr.local/archive?camera={camera}&t={time}'; placeholders {camera}, "
            "{time}, {device}, {site}; empty = no video links",
        ),
    ] = ""
    camera: Annotated[
        str,
        Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="Camera number or id here"),
    ] = "1"
    offset_s: Annotated[
        float,
        Meta(
            ge=-3600,
            le=3600,
            description="Added to the event time (the camera's clock offset, or lead-in) (s)",
        ),
    ] = 0.0
    time_format: Annotated[
        str,
        Meta(
            max_length=200,
            description="How {time} is written: epoch_s, epoch_ms, or an strftime pattern "
            "such as '%Y-%m-%dT%H:%M:%S' (rendered in 'timezone')",
        ),
    ] = "epoch_s"
    timezone: Annotated[
        str, Meta(max_length=100, description="IANA time zone of strftime times, e.g. UTC")
    ] = "UTC"

    def __post_init__(self) -> None:
        if self.url_template:
            video.placeholders(self.url_template)
        video.check_time_format(self.time_format)
        video.zone(self.timezone)
