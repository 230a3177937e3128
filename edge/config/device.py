"""Which device this is and what it runs on: ``[device]``, ``[hardware]``, ``[clock]``."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from contract.alerts import NAME_PATTERN
from edge.config.base import Section


class DeviceSection(Section):
    id: Annotated[
        str,
        Meta(
            pattern=NAME_PATTERN,
            description="This device's id: lower-case letters, digits, '-' and '_'; unique in "
            "the fleet, it names the device's MQTT topics",
        ),
    ] = "cp-0001"
    site: Annotated[
        str,
        Meta(pattern=NAME_PATTERN, description="The site (shop, office) this device belongs to"),
    ] = "site-1"


class HardwareSection(Section):
    backend: Annotated[
        Literal["simulated", "pi"],
        Meta(
            description="'simulated' plays a scenario through built-in fake devices (any "
            "machine); 'pi' opens the real GPIO, radio, serial, ultrasonic and ALSA drivers"
        ),
    ] = "simulated"
    pin_factory: Annotated[
        Literal["lgpio", "pigpio", "rpigpio", "native", "mock"],
        Meta(
            description="gpiozero pin factory for buttons and the ultrasonic sensor: lgpio "
            "(default, works on every Pi incl. the Pi 5), pigpio (needs pigpiod), rpigpio "
            "(RPi.GPIO, not on the Pi 5), native, mock (testing)"
        ),
    ] = "lgpio"
    pigpio_host: Annotated[
        str,
        Meta(
            max_length=200,
            description="pigpiod address (rf433.backend = 'pigpio', pin_factory = 'pigpio')",
        ),
    ] = "localhost"
    pigpio_port: Annotated[int, Meta(ge=1, le=65535, description="pigpiod TCP port")] = 8888


class ClockSection(Section):
    step_threshold_s: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description="A jump of the synchronised wall clock against the monotonic clock by "
            "more than this is a step (NTP slews small errors, it steps big ones): the "
            "'clock_stepped' alarm is raised and contacts stamped while the clock is off its "
            "earlier time, or across a step, are flagged clock_stepped (s)",
        ),
    ] = 2.0
