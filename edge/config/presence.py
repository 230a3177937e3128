"""The ultrasonic presence sensor: ``[presence]`` (pins, ranging, hysteresis, dwell times)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from edge.config.base import Section


class PresenceSection(Section):
    interval_s: Annotated[
        float,
        Meta(ge=0.06, le=5, description="Ranging period of the ultrasonic sensor (s, >= 0.06)"),
    ] = 0.1
    trigger_pin: Annotated[int, Meta(ge=0, le=27, description="HC-SR04 TRIG, BCM number")] = 23
    echo_pin: Annotated[
        int, Meta(ge=0, le=27, description="HC-SR04 ECHO (through a 5V->3.3V divider)")
    ] = 24
    median_window: Annotated[
        int,
        Meta(ge=1, le=31, description="Readings in the median filter (odd numbers work best)"),
    ] = 5
    near_m: Annotated[
        float, Meta(ge=0.05, le=4, description="Closer than this = someone at the counter (m)")
    ] = 0.9
    far_m: Annotated[
        float,
        Meta(ge=0.05, le=4, description="Farther than this = nobody (m); >= near_m (hysteresis)"),
    ] = 1.2
    arrive_dwell_s: Annotated[
        float, Meta(ge=0, le=60, description="Near for this long = arrival (s)")
    ] = 1.0
    leave_dwell_s: Annotated[
        float,
        Meta(
            ge=0,
            le=300,
            description="Far for this long = departure (s); a shorter step back is ignored",
        ),
    ] = 3.0
    no_echo_as_far_s: Annotated[
        float,
        Meta(
            ge=0,
            le=300,
            description="Missing echoes (soft clothing) are ignored until they last this long; "
            "then they count as 'nobody' (s)",
        ),
    ] = 2.0
    temperature_c: Annotated[
        float, Meta(ge=-30, le=60, description="Air temperature for the speed of sound (C)")
    ] = 20.0

    def __post_init__(self) -> None:
        if self.far_m < self.near_m:
            raise ValueError(
                f"far_m ({self.far_m}) must be >= near_m ({self.near_m}): the gap between them "
                "is the hysteresis"
            )
