"""The wireless receivers: ``[rf433]`` (a 433 MHz OOK receiver on a GPIO pin), ``[serial]`` (an
RFLink-style USB stick), ``[nrf24]`` (nRF24L01 buttons)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from edge.config.base import Section


class Rf433Section(Section):
    enabled: Annotated[bool, Meta(description="Read a 433 MHz OOK receiver's data pin")] = False
    backend: Annotated[
        Literal["gpiod", "pigpio"],
        Meta(
            description="How the data pin is read: 'gpiod' = the kernel's GPIO character device "
            "(libgpiod v2; kernel edge timestamps; every Pi incl. the Pi 5; the default), "
            "'pigpio' = the pigpio daemon (older setups; not on the Pi 5)"
        ),
    ] = "gpiod"
    gpio: Annotated[int, Meta(ge=0, le=27, description="Receiver data pin, BCM number")] = 27
    repeats: Annotated[
        int,
        Meta(ge=1, le=10, description="Identical frames needed before a code is trusted (no CRC)"),
    ] = 2
    tolerance: Annotated[
        float,
        Meta(
            ge=0.2,
            le=1.0,
            description="Allowed error of a bit's length (high + low), in base periods; 0.6 "
            "as rc-switch allows per duration",
        ),
    ] = 0.6
    frame_gap_us: Annotated[
        int, Meta(ge=1500, le=20000, description="A gap this long always ends a frame (us)")
    ] = 4300
    release_ms: Annotated[
        int,
        Meta(ge=50, le=2000, description="Silence that ends one press (a held key repeats) (ms)"),
    ] = 200
    watchdog_ms: Annotated[
        int, Meta(ge=20, le=1000, description="Close the last frame after this silence (ms)")
    ] = 20
    glitch_us: Annotated[
        int,
        Meta(
            ge=0,
            le=250,
            description="Glitch filter: levels shorter than this vanish (us), in the decoder's "
            "pulse layer (and in pigpiod with the pigpio backend)",
        ),
    ] = 100


class SerialSection(Section):
    enabled: Annotated[bool, Meta(description="Read an RFLink-style USB 433 MHz receiver")] = False
    port: Annotated[
        str,
        Meta(
            max_length=4096,
            description="Serial device; prefer a stable /dev/serial/by-id/... path",
        ),
    ] = "/dev/ttyUSB0"
    baudrate: Annotated[
        int, Meta(ge=1200, le=1_000_000, description="57600 (Arduino RFLink), 115200 (ESP32)")
    ] = 57600
    repeat_window_s: Annotated[
        float,
        Meta(ge=0.05, le=5, description="Repeats of one key within this time are one press"),
    ] = 0.5


class Nrf24Section(Section):
    enabled: Annotated[
        bool, Meta(description="Receive nRF24L01 wireless buttons (SPI must be enabled)")
    ] = False
    ce_pin: Annotated[int, Meta(ge=0, le=27, description="CE pin, BCM number")] = 22
    csn: Annotated[int, Meta(ge=0, le=21, description="SPI chip select (bus*10 + cs)")] = 0
    channel: Annotated[int, Meta(ge=0, le=125, description="Radio channel")] = 76
    address: Annotated[
        str,
        Meta(
            pattern=r"^[ -~]{5}$",
            description="5-character pipe address shared with the buttons",
        ),
    ] = "CPBTN"
