"""The device's configuration: one TOML file, a closed and typed schema.

Every field has a default, bounds where numbers are involved and a description; unknown keys
are rejected with the nearest valid key suggested. :func:`example_config` renders the schema
as a commented TOML file, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import annotated_types
import tomlkit
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from edge import video
from edge._errors import UserError
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

M = TypeVar("M", bound=BaseModel)
Mode = Literal["presence", "window", "survey"]
Role = Literal["green", "yellow", "red", "request", "seller", "question"]
RATING_ROLES: tuple[str, ...] = ("green", "yellow", "red")
#: Event kinds a tag rule can name (besides ``question:N`` for one question button).
EVENT_KINDS: tuple[str, ...] = (
    "green",
    "yellow",
    "red",
    "request",
    "seller_short",
    "seller_long",
    "question",
    "receipt",
    "arrival",
    "departure",
)
ENDED_BY: tuple[str, ...] = ("departure", "timeout", "window", "answer", "no_answer", "shutdown")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DeviceSection(Section):
    id: Annotated[
        str,
        Field(
            pattern=NAME_PATTERN,
            description="This device's id: lower-case letters, digits, '-' and '_'; unique in "
            "the fleet, it names the device's MQTT topics",
        ),
    ] = "cp-0001"
    site: Annotated[
        str,
        Field(pattern=NAME_PATTERN, description="The site (shop, office) this device belongs to"),
    ] = "site-1"


class HardwareSection(Section):
    backend: Annotated[
        Literal["simulated", "pi"],
        Field(
            description="'simulated' plays a scenario through built-in fake devices (any "
            "machine); 'pi' opens the real GPIO, radio, serial, ultrasonic and ALSA drivers"
        ),
    ] = "simulated"
    pin_factory: Annotated[
        Literal["lgpio", "pigpio", "rpigpio", "native", "mock"],
        Field(
            description="gpiozero pin factory for buttons and the ultrasonic sensor: lgpio "
            "(default, works on every Pi incl. the Pi 5), pigpio (needs pigpiod), rpigpio "
            "(RPi.GPIO, not on the Pi 5), native, mock (testing)"
        ),
    ] = "lgpio"
    pigpio_host: Annotated[
        str, Field(max_length=200, description="pigpiod address (433 MHz receiver, pigpio pins)")
    ] = "localhost"
    pigpio_port: Annotated[int, Field(ge=1, le=65535, description="pigpiod TCP port")] = 8888


class Rf433Section(Section):
    enabled: Annotated[
        bool, Field(description="Read a 433 MHz OOK receiver's data pin (through pigpiod)")
    ] = False
    gpio: Annotated[int, Field(ge=0, le=27, description="Receiver data pin, BCM number")] = 27
    repeats: Annotated[
        int,
        Field(ge=1, le=10, description="Identical frames needed before a code is trusted (no CRC)"),
    ] = 2
    tolerance: Annotated[
        float, Field(ge=0.2, le=0.6, description="Pulse timing tolerance (share of a period)")
    ] = 0.5
    frame_gap_us: Annotated[
        int, Field(ge=1500, le=20000, description="A gap this long always ends a frame (us)")
    ] = 4300
    release_ms: Annotated[
        int,
        Field(ge=50, le=2000, description="Silence that ends one press (a held key repeats) (ms)"),
    ] = 200
    watchdog_ms: Annotated[
        int, Field(ge=20, le=1000, description="Close the last frame after this silence (ms)")
    ] = 20
    glitch_us: Annotated[
        int, Field(ge=0, le=250, description="pigpio glitch filter: drop shorter pulses (us)")
    ] = 100


class SerialSection(Section):
    enabled: Annotated[bool, Field(description="Read an RFLink-style USB 433 MHz receiver")] = False
    port: Annotated[
        str,
        Field(
            max_length=4096,
            description="Serial device; prefer a stable /dev/serial/by-id/... path",
        ),
    ] = "/dev/ttyUSB0"
    baudrate: Annotated[
        int, Field(ge=1200, le=1_000_000, description="57600 (Arduino RFLink), 115200 (ESP32)")
    ] = 57600
    repeat_window_s: Annotated[
        float,
        Field(ge=0.05, le=5, description="Repeats of one key within this time are one press"),
    ] = 0.5


class Nrf24Section(Section):
    enabled: Annotated[
        bool, Field(description="Receive nRF24L01 wireless buttons (SPI must be enabled)")
    ] = False
    ce_pin: Annotated[int, Field(ge=0, le=27, description="CE pin, BCM number")] = 22
    csn: Annotated[int, Field(ge=0, le=21, description="SPI chip select (bus*10 + cs)")] = 0
    channel: Annotated[int, Field(ge=0, le=125, description="Radio channel")] = 76
    address: Annotated[
        str,
        Field(
            pattern=r"^[ -~]{5}$",
            description="5-character pipe address shared with the buttons",
        ),
    ] = "CPBTN"


class PromptSection(Section):
    enabled: Annotated[
        bool,
        Field(description="Play a prompt ('your opinion matters') on the seller's short press"),
    ] = False
    wav: Annotated[str, Field(max_length=4096, description="16-bit PCM WAV file to play")] = ""
    device: Annotated[str, Field(max_length=200, description="ALSA playback device")] = "default"


class InputSection(Section):
    debounce_ms: Annotated[
        float,
        Field(ge=0, le=500, description="A button level must hold this long to count (ms)"),
    ] = 30.0
    long_press_s: Annotated[
        float,
        Field(
            ge=0.3,
            le=30,
            description="Seller button held at least this long = force majeure; shorter = "
            "survey/contact start (s)",
        ),
    ] = 2.0


class ButtonConfig(Section):
    name: Annotated[str, Field(pattern=NAME_PATTERN, description="Unique name of the button")]
    role: Annotated[
        Role,
        Field(
            description="green/yellow/red: customer rating; request: staff saw a request or "
            "complaint not about their own work; seller: short press starts a survey/contact, "
            "long press = force majeure; question: a numbered question (button-window mode)"
        ),
    ]
    question: Annotated[
        int | None,
        Field(ge=1, le=99, description="Question number, required when role = 'question'"),
    ] = None
    label: Annotated[str, Field(max_length=200, description="Human text, e.g. the question")] = ""
    via: Annotated[
        Literal["gpio", "rf433", "serial", "nrf24"],
        Field(description="How the press arrives: a wired GPIO pin or a wireless remote"),
    ] = "gpio"
    pin: Annotated[int | None, Field(ge=0, le=27, description="BCM GPIO number (via = 'gpio')")] = (
        None
    )
    pull_up: Annotated[
        bool, Field(description="Use the internal pull-up (button wired to ground)")
    ] = True
    active_high: Annotated[
        bool | None,
        Field(
            description="Override the active level (unset: pressed = pulled to the other rail; "
            "set it for normally-closed switches)"
        ),
    ] = None
    code: Annotated[
        str | None,
        Field(
            pattern=r"^[0-9A-Za-z:._-]{1,64}$",
            description="Remote code bound to this button (via rf433/serial/nrf24); "
            "'contactpoint learn ROLE' fills it in",
        ),
    ] = None

    @model_validator(mode="after")
    def _question_number(self) -> Self:
        if self.role == "question" and self.question is None:
            raise ValueError("role 'question' needs 'question = N' (the question's number)")
        if self.role != "question" and self.question is not None:
            raise ValueError(f"'question' is only for role 'question', not '{self.role}'")
        return self


def _default_buttons() -> list[ButtonConfig]:
    return [
        ButtonConfig(name="green", role="green", pin=5),
        ButtonConfig(name="yellow", role="yellow", pin=6),
        ButtonConfig(name="red", role="red", pin=13),
        ButtonConfig(name="request", role="request", pin=19),
        ButtonConfig(name="seller", role="seller", pin=26),
    ]


class PresenceSection(Section):
    interval_s: Annotated[
        float,
        Field(ge=0.06, le=5, description="Ranging period of the ultrasonic sensor (s, >= 0.06)"),
    ] = 0.1
    trigger_pin: Annotated[int, Field(ge=0, le=27, description="HC-SR04 TRIG, BCM number")] = 23
    echo_pin: Annotated[
        int, Field(ge=0, le=27, description="HC-SR04 ECHO (through a 5V->3.3V divider)")
    ] = 24
    median_window: Annotated[
        int,
        Field(ge=1, le=31, description="Readings in the median filter (odd numbers work best)"),
    ] = 5
    near_m: Annotated[
        float, Field(ge=0.05, le=4, description="Closer than this = someone at the counter (m)")
    ] = 0.9
    far_m: Annotated[
        float,
        Field(ge=0.05, le=4, description="Farther than this = nobody (m); >= near_m (hysteresis)"),
    ] = 1.2
    arrive_dwell_s: Annotated[
        float, Field(ge=0, le=60, description="Near for this long = arrival (s)")
    ] = 1.0
    leave_dwell_s: Annotated[
        float,
        Field(
            ge=0,
            le=300,
            description="Far for this long = departure (s); a shorter step back is ignored",
        ),
    ] = 3.0
    no_echo_as_far_s: Annotated[
        float,
        Field(
            ge=0,
            le=300,
            description="Missing echoes (soft clothing) are ignored until they last this long; "
            "then they count as 'nobody' (s)",
        ),
    ] = 2.0
    temperature_c: Annotated[
        float, Field(ge=-30, le=60, description="Air temperature for the speed of sound (C)")
    ] = 20.0

    @model_validator(mode="after")
    def _hysteresis(self) -> Self:
        if self.far_m < self.near_m:
            raise ValueError(
                f"far_m ({self.far_m}) must be >= near_m ({self.near_m}): the gap between them "
                "is the hysteresis"
            )
        return self


class WindowSection(Section):
    before_s: Annotated[
        float, Field(ge=0, le=600, description="Audio kept before a window press (s)")
    ] = 60.0
    after_s: Annotated[
        float, Field(ge=0, le=600, description="Audio kept after a window press (s)")
    ] = 60.0
    roles: Annotated[
        list[Role],
        Field(description="Roles whose press cuts a window when no other contact is open"),
    ] = ["question", "request"]


class SurveySection(Section):
    answer_window_s: Annotated[
        float,
        Field(
            ge=1,
            le=600,
            description="After the seller's short press the customer has this long to rate; "
            "no rating = silent (s)",
        ),
    ] = 30.0


class ContactsSection(Section):
    modes: Annotated[
        list[Mode],
        Field(
            description="Which cutting modes run: presence (arrival -> departure), window "
            "(around a press), survey (seller's short press -> answer)"
        ),
    ] = ["presence", "window", "survey"]
    max_duration_s: Annotated[
        float,
        Field(ge=5, le=7200, description="A contact longer than this is closed as 'timeout' (s)"),
    ] = 900.0
    pre_roll_s: Annotated[
        float, Field(ge=0, le=120, description="Audio kept before a contact's start (s)")
    ] = 3.0
    post_roll_s: Annotated[
        float, Field(ge=0, le=120, description="Audio kept after a contact's end (s)")
    ] = 3.0
    window: WindowSection = WindowSection()
    survey: SurveySection = SurveySection()

    @model_validator(mode="after")
    def _some_mode(self) -> Self:
        if len(set(self.modes)) != len(self.modes):
            raise ValueError(f"modes lists a mode twice: {self.modes}")
        return self


class AudioSection(Section):
    enabled: Annotated[bool, Field(description="Record audio and cut clips")] = True
    device: Annotated[
        str, Field(max_length=200, description="ALSA capture device (backend 'pi')")
    ] = "default"
    sample_rate: Annotated[
        Literal[8000, 16000], Field(description="Samples per second (mono, 16-bit)")
    ] = 16000
    period_frames: Annotated[
        int, Field(ge=32, le=16000, description="Samples per capture period")
    ] = 320
    ring_s: Annotated[
        float | None,
        Field(
            ge=10,
            le=14400,
            description="RAM ring length (s); unset = pre-roll + longest contact + post-roll "
            "+ 30 s",
        ),
    ] = None
    codec: Annotated[
        Literal["wav", "flac", "opus"],
        Field(description="Clip format: wav (LPCM 16-bit), flac (lossless) or opus (Ogg)"),
    ] = "wav"
    stall_s: Annotated[
        float,
        Field(
            ge=1,
            le=600,
            description="No audio period for this long (microphone gone): contacts waiting "
            "for audio are saved with the audio there is, truncated, or without a clip (s)",
        ),
    ] = 10.0


class TagRule(Section):
    tag: Annotated[str, Field(pattern=NAME_PATTERN, description="Tag given when the rule holds")]
    if_any: Annotated[
        list[str], Field(description="Holds if at least one of these events happened")
    ] = []
    if_none: Annotated[list[str], Field(description="Holds if none of these events happened")] = []
    ended_by: Annotated[
        list[str], Field(description="Holds if the contact ended in one of these ways")
    ] = []
    modes: Annotated[
        list[Mode], Field(description="Only for contacts of these modes (empty = all)")
    ] = []

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not (self.if_any or self.if_none or self.ended_by):
            raise ValueError(f"rule '{self.tag}' needs if_any, if_none or ended_by")
        for kind in [*self.if_any, *self.if_none]:
            if kind not in EVENT_KINDS and not _is_question_kind(kind):
                hint = difflib.get_close_matches(kind, EVENT_KINDS, n=1)
                raise ValueError(
                    f"unknown event kind '{kind}'"
                    + (f" (did you mean '{hint[0]}'?)" if hint else "")
                    + f"; allowed: {', '.join(EVENT_KINDS)}, question:N"
                )
        for way in self.ended_by:
            if way not in ENDED_BY:
                raise ValueError(f"unknown ended_by '{way}'; allowed: {', '.join(ENDED_BY)}")
        return self


def _is_question_kind(kind: str) -> bool:
    head, _, number = kind.partition(":")
    return head == "question" and number.isdigit()


def _default_rules() -> list[TagRule]:
    ratings = list(RATING_ROLES)
    return [
        TagRule(tag="negative", if_any=["red"]),
        TagRule(tag="not_positive", if_none=["green"]),
        TagRule(tag="positive", if_any=["green"]),
        TagRule(tag="unsure", if_any=["yellow"]),
        TagRule(tag="silent", if_none=ratings, modes=["presence", "survey"]),
        TagRule(tag="productive", if_any=["receipt"], modes=["presence"]),
        TagRule(tag="unproductive", if_none=["receipt"], modes=["presence"]),
        TagRule(tag="request", if_any=["request"]),
        TagRule(tag="force_majeure", if_any=["seller_long"]),
        TagRule(tag="timeout", ended_by=["timeout"]),
    ]


class TaggingSection(Section):
    rules: Annotated[
        list[TagRule],
        Field(description="Tag rules, evaluated on every contact when it closes"),
    ] = Field(default_factory=_default_rules)


class ReceiptsSection(Section):
    enabled: Annotated[
        bool, Field(description="Accept receipt (sale) events from the till over HTTP")
    ] = True
    host: Annotated[
        str, Field(max_length=200, description="Address to listen on (keep it on loopback)")
    ] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535, description="TCP port; 0 = any free port")] = 8765


class MqttSection(Section):
    broker: Annotated[
        str,
        Field(
            pattern=r"^mqtts?://[^/\s]+$",
            description="Broker URL: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS",
        ),
    ] = "mqtt://127.0.0.1:1883"
    protocol: Annotated[Literal["5", "3.1.1"], Field(description="MQTT protocol version")] = "5"
    keepalive_s: Annotated[int, Field(ge=5, le=3600, description="Keep-alive interval (s)")] = 30
    session_expiry_s: Annotated[
        int,
        Field(
            ge=0,
            le=30 * 24 * 3600,
            description="How long the broker keeps this device's session while it is away (s)",
        ),
    ] = 7 * 24 * 3600
    username: Annotated[str, Field(max_length=200, description="Broker user (empty: none)")] = ""
    password_file: Annotated[
        str,
        Field(
            max_length=4096,
            description="File holding the broker password (kept out of this config; mode 0600)",
        ),
    ] = ""
    ca_file: Annotated[
        str, Field(max_length=4096, description="CA certificate for mqtts:// (empty: system CAs)")
    ] = ""
    cert_file: Annotated[
        str, Field(max_length=4096, description="Client certificate (TLS client auth)")
    ] = ""
    key_file: Annotated[
        str, Field(max_length=4096, description="Client private key (TLS client auth)")
    ] = ""
    chunk_bytes: Annotated[
        int,
        Field(ge=1024, le=262_144, description="Clip audio travels in chunks of this size (bytes)"),
    ] = 65_536
    inflight: Annotated[
        int, Field(ge=1, le=1000, description="Messages published but not yet acknowledged")
    ] = 20
    backoff_min_s: Annotated[
        float, Field(ge=0.05, le=60, description="First reconnect delay (s), doubled each try")
    ] = 0.5
    backoff_max_s: Annotated[
        float, Field(ge=0.1, le=3600, description="Longest reconnect delay (s), with jitter")
    ] = 30.0
    status_interval_s: Annotated[
        float, Field(ge=1, le=3600, description="How often the retained status is refreshed (s)")
    ] = 60.0
    delivery_receipts: Annotated[
        bool,
        Field(
            description="Keep every message and its clip until the sink confirms it stored "
            "them (docs/WIRE.md); false: the broker's PUBACK is enough (a sink without receipts)"
        ),
    ] = True
    receipt_timeout_s: Annotated[
        float,
        Field(
            ge=0.1,
            le=86_400,
            description="A message the sink has not confirmed this long after the broker "
            "acknowledged it is late (s), and goes again once it may have been lost (a reconnect, "
            "or the sink confirmed a later one); doubled at each resend",
        ),
    ] = 60.0
    receipt_timeout_max_s: Annotated[
        float,
        Field(
            ge=0.1,
            le=7 * 86_400,
            description="Longest wait for a receipt between two resends (s)",
        ),
    ] = 1800.0
    receipt_max_resends: Annotated[
        int,
        Field(
            ge=0,
            le=10_000,
            description="Resends of an unconfirmed message before it waits for the next "
            "connection to the broker (alarm 'undelivered'); it is kept on the device all the same",
        ),
    ] = 5


def _is_alert_key(key: str) -> bool:
    head, _, rest = key.partition(":")
    if key == "contact" or key in EVENT_KINDS or _is_question_kind(key):
        return True
    return head == "tag" and re.fullmatch(NAME_PATTERN, rest) is not None


def _check_alert_key(key: str, field: str) -> None:
    if not _is_alert_key(key):
        hint = difflib.get_close_matches(key, [*EVENT_KINDS, "contact"], n=1)
        raise ValueError(
            f"{field} {key!r} is not something to count"
            + (f" (did you mean '{hint[0]}'?)" if hint else "")
            + f"; allowed: an event kind ({', '.join(EVENT_KINDS)}, question:N), 'contact', "
            "or 'tag:<tag>' (contacts with that tag)"
        )


class AlertRule(Section):
    name: Annotated[str, Field(pattern=NAME_PATTERN, description="Unique name of the rule")]
    count: Annotated[
        str,
        Field(
            description="What is counted: an event kind (red, request, question:2 ...), "
            "'contact', or 'tag:<tag>' (contacts with that tag, at their start)"
        ),
    ]
    at_least: Annotated[
        int, Field(ge=1, le=100_000, description="Fire when at least this many are in the window")
    ]
    share_at_least: Annotated[
        float | None,
        Field(
            gt=0,
            le=1,
            description="Also require them to be at least this share of the 'share_of' "
            "observations in the window (unset: no share condition)",
        ),
    ] = None
    share_of: Annotated[
        list[str],
        Field(description="The denominator of the share: observations with any of these keys"),
    ] = ["green", "yellow", "red"]
    within_s: Annotated[
        float, Field(ge=1, le=7 * 86400, description="Length of the sliding window (s)")
    ] = 900.0
    cooldown_s: Annotated[
        float,
        Field(ge=0, le=7 * 86400, description="After firing, stay quiet this long (s)"),
    ] = 900.0

    @model_validator(mode="after")
    def _keys(self) -> Self:
        _check_alert_key(self.count, "count")
        for key in self.share_of:
            _check_alert_key(key, "share_of")
        if self.share_at_least is not None and not self.share_of:
            raise ValueError(f"rule '{self.name}': share_at_least needs share_of")
        return self


def _default_alert_rules() -> list[AlertRule]:
    return [
        AlertRule(name="negative_burst", count="red", at_least=4, share_at_least=0.5, within_s=900),
        AlertRule(
            name="requests_per_hour",
            count="request",
            at_least=10,
            within_s=3600,
            cooldown_s=3600,
        ),
    ]


class AlertsSection(Section):
    rules: Annotated[
        list[AlertRule],
        Field(
            description="Sliding-window alert rules, checked whenever a contact or event is "
            "saved; a firing is published on <root>/alert"
        ),
    ] = Field(default_factory=_default_alert_rules)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [r.name for r in self.rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"alert rule names must be unique: {', '.join(twice)}")
        return self


class VideoSection(Section):
    url_template: Annotated[
        str,
        Field(
            max_length=2000,
            description="Link into the video archive, e.g. "
            "'https://nvr.local/archive?camera={camera}&t={time}'; placeholders {camera}, "
            "{time}, {device}, {site}; empty = no video links",
        ),
    ] = ""
    camera: Annotated[
        str,
        Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="Camera number or id here"),
    ] = "1"
    offset_s: Annotated[
        float,
        Field(
            ge=-3600,
            le=3600,
            description="Added to the event time (the camera's clock offset, or lead-in) (s)",
        ),
    ] = 0.0
    time_format: Annotated[
        str,
        Field(
            max_length=200,
            description="How {time} is written: epoch_s, epoch_ms, or an strftime pattern "
            "such as '%Y-%m-%dT%H:%M:%S' (rendered in 'timezone')",
        ),
    ] = "epoch_s"
    timezone: Annotated[
        str, Field(max_length=100, description="IANA time zone of strftime times, e.g. UTC")
    ] = "UTC"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.url_template:
            video.placeholders(self.url_template)
        video.check_time_format(self.time_format)
        video.zone(self.timezone)
        return self


class HomeAssistantSection(Section):
    enabled: Annotated[
        bool,
        Field(
            description="Publish Home Assistant MQTT discovery configs (retained) on connect, "
            "one sensor per status field below"
        ),
    ] = False
    discovery_prefix: Annotated[
        str,
        Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Home Assistant's discovery prefix"),
    ] = "homeassistant"
    sensors: Annotated[
        list[str],
        Field(
            description="Status fields shown as sensors: names in the status object, dotted "
            "for nested ones (e.g. 'outbox_depth', 'counters.contacts')"
        ),
    ] = [
        "outbox_depth",
        "free_disk_bytes",
        "today.served",
        "today.positive",
        "today.negative",
        "today.silent",
        "today.support_index",
        "today.dissatisfaction_index",
    ]

    @model_validator(mode="after")
    def _paths(self) -> Self:
        for path in self.sensors:
            if not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)*", path):
                raise ValueError(
                    f"sensor {path!r}: write a status field name, dotted for nested fields "
                    "(lower-case letters, digits, '_')"
                )
        return self


# --- routing by tag (edge/routes) ------------------------------------------------------------

ROUTE_KINDS: tuple[str, ...] = ("contact", "alert")
#: Placeholders a route's ``template`` (and ``subject``) may use; see edge/routes/_message.py.
ROUTE_PLACEHOLDERS: tuple[str, ...] = (
    "device",
    "site",
    "kind",
    "contact_id",
    "tags",
    "mode",
    "start",
    "end",
    "duration_s",
    "ended_by",
    "staff",
    "video_url",
    "clip_url",
    "delivery_id",
    "text",
)
#: Placeholders of ``routes.clip_url`` (a link to a clip that is not uploaded).
CLIP_URL_PLACEHOLDERS: tuple[str, ...] = ("site", "device", "contact_id", "ext", "path", "sha256")


def _check_template(text: str, allowed: tuple[str, ...]) -> str:
    import string

    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(
            f"not a valid template: {exc} (write a literal brace as {{{{ or }}}})"
        ) from None
    for name in names:
        if name not in allowed:
            hint = difflib.get_close_matches(name, allowed, n=1)
            raise ValueError(
                f"unknown placeholder {{{name}}}"
                + (f" (did you mean {{{hint[0]}}}?)" if hint else "")
                + f"; allowed: {', '.join(allowed)}"
            )
    return text


class _RouteDestination(Section):
    name: Annotated[
        str,
        Field(pattern=NAME_PATTERN, description="Name of this destination (rules name it in 'to')"),
    ]
    template: Annotated[
        str,
        Field(
            max_length=4000,
            description="Message text; empty = the built-in text. Placeholders: "
            + ", ".join("{" + p + "}" for p in ROUTE_PLACEHOLDERS),
        ),
    ] = ""
    timeout_s: Annotated[
        float, Field(ge=1, le=600, description="Give up one attempt after this long (s)")
    ] = 30.0

    @model_validator(mode="after")
    def _template(self) -> Self:
        _check_template(self.template, ROUTE_PLACEHOLDERS)
        return self


class TelegramRoute(_RouteDestination):
    chat_id: Annotated[
        str,
        Field(
            pattern=r"^(-?[0-9]{1,20}|@[A-Za-z0-9_]{4,64})$",
            description="Chat, group (negative id) or @channel the bot writes to",
        ),
    ]
    bot_token_file: Annotated[
        str,
        Field(
            min_length=1,
            max_length=4096,
            description="File holding the bot token (kept out of this config; mode 0600)",
        ),
    ]
    base_url: Annotated[
        str,
        Field(
            pattern=r"^https?://[^\s]+$", description="Bot API base URL (a local Bot API server)"
        ),
    ] = "https://api.telegram.org"
    send_clip: Annotated[bool, Field(description="Upload the clip with the message")] = True
    clip_method: Annotated[
        Literal["sendAudio", "sendDocument", "sendVoice"],
        Field(description="Bot API method for the clip (sendVoice wants Ogg/Opus clips)"),
    ] = "sendAudio"
    max_upload_mb: Annotated[
        float,
        Field(gt=0, le=2000, description="Larger clips are sent as a link (routes.clip_url) (MB)"),
    ] = 50.0
    per_chat_per_s: Annotated[
        float, Field(gt=0, le=30, description="Messages per second to one chat (Bot API limit)")
    ] = 1.0
    group_per_min: Annotated[
        float,
        Field(gt=0, le=600, description="Messages per minute to one group (negative chat id)"),
    ] = 20.0


class FtpRoute(_RouteDestination):
    host: Annotated[str, Field(min_length=1, max_length=253, description="FTP server")]
    port: Annotated[int, Field(ge=1, le=65535, description="FTP control port")] = 21
    tls: Annotated[bool, Field(description="FTPS: explicit TLS (AUTH TLS) for login and data")] = (
        False
    )
    ca_file: Annotated[
        str, Field(max_length=4096, description="CA certificate for FTPS (empty: system CAs)")
    ] = ""
    username: Annotated[str, Field(max_length=200, description="FTP user")] = "anonymous"
    password_file: Annotated[
        str, Field(max_length=4096, description="File holding the FTP password (empty: none)")
    ] = ""
    directory: Annotated[
        str,
        Field(
            max_length=1000,
            description="Remote directory, created when missing; placeholders {site}, "
            "{device}, {date} (the contact's UTC day)",
        ),
    ] = "/{site}/{device}/{date}"
    passive: Annotated[bool, Field(description="Passive mode (through NAT and firewalls)")] = True
    send_clip: Annotated[bool, Field(description="Upload the clip beside its JSON record")] = True

    @model_validator(mode="after")
    def _directory(self) -> Self:
        _check_template(self.directory, ("site", "device", "date"))
        return self


class EmailRoute(_RouteDestination):
    host: Annotated[str, Field(min_length=1, max_length=253, description="SMTP server")]
    port: Annotated[
        int, Field(ge=1, le=65535, description="SMTP port (587 submission, 465 TLS, 25)")
    ] = 587
    security: Annotated[
        Literal["starttls", "tls", "none"],
        Field(description="starttls (upgrade the connection), tls (SMTPS) or none (loopback)"),
    ] = "starttls"
    ca_file: Annotated[
        str, Field(max_length=4096, description="CA certificate for TLS (empty: system CAs)")
    ] = ""
    username: Annotated[str, Field(max_length=200, description="SMTP user (empty: no login)")] = ""
    password_file: Annotated[
        str, Field(max_length=4096, description="File holding the SMTP password")
    ] = ""
    sender: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", description="From address")] = (
        "contactpoint@localhost"
    )
    recipients: Annotated[
        list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]],
        Field(min_length=1, description="To addresses"),
    ]
    subject: Annotated[
        str,
        Field(max_length=500, description="Subject; same placeholders as template"),
    ] = "[{site}/{device}] {tags}"
    attach_clip: Annotated[bool, Field(description="Attach the clip to the e-mail")] = True
    max_attach_mb: Annotated[
        float, Field(gt=0, le=100, description="Larger clips are sent as a link (MB)")
    ] = 20.0

    @model_validator(mode="after")
    def _subject(self) -> Self:
        _check_template(self.subject, ROUTE_PLACEHOLDERS)
        if self.username and not self.password_file:
            raise ValueError(f"route '{self.name}': username needs password_file")
        return self


class WebhookRoute(_RouteDestination):
    url: Annotated[
        str, Field(pattern=r"^https?://[^\s]+$", description="URL the JSON is POSTed to")
    ]
    secret_file: Annotated[
        str,
        Field(
            max_length=4096,
            description="File holding the HMAC-SHA256 key for X-Contactpoint-Signature "
            "(empty: unsigned)",
        ),
    ] = ""
    ca_file: Annotated[
        str, Field(max_length=4096, description="CA certificate for https (empty: system CAs)")
    ] = ""


class MqttRoute(Section):
    name: Annotated[
        str,
        Field(
            pattern=NAME_PATTERN,
            description="Name; the topic is contactpoint/v1/<site>/<device>/route/<name>, "
            "published through the device's outbox and broker session",
        ),
    ]


class RouteRule(Section):
    to: Annotated[
        list[Annotated[str, Field(pattern=NAME_PATTERN)]],
        Field(min_length=1, description="Destination names that get what this rule matches"),
    ]
    tags: Annotated[
        list[str], Field(description="Match contacts with any of these tags (empty = every one)")
    ] = []
    unless_tags: Annotated[
        list[str], Field(description="...but not contacts with any of these tags")
    ] = []
    modes: Annotated[
        list[Mode], Field(description="Only contacts of these modes (empty = all)")
    ] = []
    kinds: Annotated[
        list[Literal["contact", "alert"]],
        Field(min_length=1, description="What the rule routes: contacts and/or alerts"),
    ] = ["contact"]


_NO_DESTINATIONS = (
    "; define it under [[routes.telegram]], [[routes.ftp]], [[routes.email]], "
    "[[routes.webhook]] or [[routes.mqtt]]"
)


class RoutesSection(Section):
    clip_url: Annotated[
        str,
        Field(
            max_length=2000,
            description="Link to a clip that is not uploaded (too large, or send_clip off); "
            "placeholders "
            + ", ".join("{" + p + "}" for p in CLIP_URL_PLACEHOLDERS)
            + " (empty: the message says the clip is kept on the device)",
        ),
    ] = ""
    backoff_min_s: Annotated[
        float, Field(ge=0.05, le=600, description="First retry delay (s), doubled each try")
    ] = 2.0
    backoff_max_s: Annotated[
        float, Field(ge=0.1, le=86400, description="Longest retry delay (s), with jitter")
    ] = 300.0
    drain_s: Annotated[
        float,
        Field(ge=0, le=3600, description="On stop, keep delivering this long (s); the rest waits"),
    ] = 10.0
    telegram: Annotated[list[TelegramRoute], Field(description="Telegram chats/groups")] = []
    ftp: Annotated[list[FtpRoute], Field(description="FTP/FTPS servers")] = []
    email: Annotated[list[EmailRoute], Field(description="E-mail recipients (SMTP)")] = []
    webhook: Annotated[list[WebhookRoute], Field(description="HTTP webhooks (signed JSON)")] = []
    mqtt: Annotated[list[MqttRoute], Field(description="MQTT topics for managers")] = []
    rules: Annotated[
        list[RouteRule], Field(description="Which contacts/alerts go to which destinations")
    ] = []

    @model_validator(mode="after")
    def _names(self) -> Self:
        _check_template(self.clip_url, CLIP_URL_PLACEHOLDERS)
        seen: set[str] = set()
        for dest in self.destinations():
            if dest.name in seen:
                raise ValueError(f"two route destinations are named '{dest.name}'")
            seen.add(dest.name)
        for index, rule in enumerate(self.rules):
            for name in rule.to:
                if name not in seen:
                    hint = difflib.get_close_matches(name, sorted(seen), n=1)
                    raise ValueError(
                        f"rules[{index}].to names '{name}', which is no destination"
                        + (f" (did you mean '{hint[0]}'?)" if hint else "")
                        + (f"; defined: {', '.join(sorted(seen))}" if seen else _NO_DESTINATIONS)
                    )
        return self

    def destinations(
        self,
    ) -> list[TelegramRoute | FtpRoute | EmailRoute | WebhookRoute | MqttRoute]:
        """Every destination, in the order: telegram, ftp, email, webhook, mqtt."""
        return [*self.telegram, *self.ftp, *self.email, *self.webhook, *self.mqtt]


class StorageSection(Section):
    max_bytes: Annotated[
        int,
        Field(
            ge=0,
            description="Disk budget of this device's data (clips + store) in bytes; when it is "
            "reached the oldest delivered clips are deleted first. 0 = no budget (the disk's "
            "own size; a full disk is handled the same way)",
        ),
    ] = 0
    delete_undelivered: Annotated[
        bool,
        Field(
            description="When deleting delivered clips is not enough, also delete the oldest "
            "clips not yet delivered (their contacts are kept and still sent, without audio)",
        ),
    ] = False


class RetentionSection(Section):
    audio_days: Annotated[
        float | None,
        Field(
            ge=0,
            le=36500,
            description="Delete a clip's audio this many days after its contact ended (personal "
            "data: keep it no longer than needed); the contact, its events and tags stay. "
            "Unset = keep audio until the disk budget needs the room",
        ),
    ] = None
    delete_undelivered: Annotated[
        bool,
        Field(
            description="Also delete, by age, audio the sink has not acknowledged yet (default: "
            "an undelivered clip is kept until it is delivered, however old)",
        ),
    ] = False
    interval_s: Annotated[
        float,
        Field(ge=10, le=86400, description="How often the daemon enforces the retention (s)"),
    ] = 3600.0


class ShiftConfig(Section):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, populate_by_name=True
    )

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_NAME,
            description="The staff member on this shift, as reports name them (e.g. 'anna')",
        ),
    ]
    days: Annotated[
        list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]],
        Field(min_length=1, description="Weekdays the shift starts on"),
    ]
    from_: Annotated[
        str, Field(alias="from", description="Local start time, HH:MM (00:00 .. 23:59)")
    ]
    to: Annotated[
        str,
        Field(
            description="Local end time, HH:MM or 24:00; at or before 'from' = the shift ends "
            "on the next day (a night shift)"
        ),
    ]

    @model_validator(mode="after")
    def _times(self) -> Self:
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
        return self

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
        Field(
            min_length=1,
            max_length=100,
            description="IANA time zone of the shift times and of 'today' in the live "
            "counters, e.g. 'Europe/Berlin'",
        ),
    ] = "UTC"
    shifts: Annotated[
        list[ShiftConfig],
        Field(
            description="Weekly shifts at this counter (one person at a time: shifts must not "
            "overlap); 'POST /staff' at the till overrides them until the next shift change"
        ),
    ] = []

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "not an IANA time zone; use e.g. 'UTC', 'Europe/Berlin', 'Asia/Yekaterinburg'"
            ) from None
        return value

    @model_validator(mode="after")
    def _schedule(self) -> Self:
        shifts = [s.shift() for s in self.shifts]
        clash = find_overlap(shifts)
        if clash is not None:
            i, j, at = clash
            raise ValueError(
                f"shifts[{j}] ({shifts[j].describe()}) overlaps shifts[{i}] "
                f"({shifts[i].describe()}) at {at}: one counter has one person on duty at a "
                "time; let one shift end where the other starts"
            )
        return self

    def schedule(self) -> Schedule:
        return Schedule([s.shift() for s in self.shifts], ZoneInfo(self.timezone))


class MetricsSection(Section):
    correction_factor: Annotated[
        float,
        Field(
            ge=0,
            le=1,
            description="Share of silent customers counted as dissatisfied in the staff "
            "dissatisfaction and loyalty indices (live counters; the sink has its own)",
        ),
    ] = 0.5
    force_majeure_threshold: Annotated[
        float,
        Field(
            ge=0,
            le=10,
            description="Force-majeure presses per survey above which a day's quality scores "
            "are marked not meaningful",
        ),
    ] = 0.1


class Config(Section):
    device: DeviceSection = DeviceSection()
    hardware: HardwareSection = HardwareSection()
    input: InputSection = InputSection()
    buttons: Annotated[
        list[ButtonConfig], Field(description="The buttons and remote keys at this counter")
    ] = Field(default_factory=_default_buttons)
    presence: PresenceSection = PresenceSection()
    contacts: ContactsSection = ContactsSection()
    audio: AudioSection = AudioSection()
    tagging: TaggingSection = TaggingSection()
    receipts: ReceiptsSection = ReceiptsSection()
    mqtt: MqttSection = MqttSection()
    rf433: Rf433Section = Rf433Section()
    serial: SerialSection = SerialSection()
    nrf24: Nrf24Section = Nrf24Section()
    prompt: PromptSection = PromptSection()
    staff: StaffSection = StaffSection()
    metrics: MetricsSection = MetricsSection()
    storage: StorageSection = StorageSection()
    retention: RetentionSection = RetentionSection()
    routes: RoutesSection = RoutesSection()
    alerts: AlertsSection = AlertsSection()
    video: VideoSection = VideoSection()
    homeassistant: HomeAssistantSection = HomeAssistantSection()

    @model_validator(mode="after")
    def _unique_buttons(self) -> Self:
        seen: set[str] = set()
        for button in self.buttons:
            if button.name in seen:
                raise ValueError(f"two buttons are named '{button.name}'")
            seen.add(button.name)
        codes: dict[str, str] = {}
        for button in self.buttons:
            if button.code is None:
                continue
            key = button.code.lower()
            if key in codes:
                raise ValueError(
                    f"buttons '{codes[key]}' and '{button.name}' have the same code {key!r}"
                )
            codes[key] = button.name
        if self.prompt.enabled and not self.prompt.wav:
            raise ValueError("prompt.enabled needs prompt.wav (the WAV file to play)")
        return self

    def ring_seconds(self) -> float:
        """The ring buffer's length: configured, or enough for the longest possible clip."""
        if self.audio.ring_s is not None:
            return self.audio.ring_s
        c = self.contacts
        longest = max(c.max_duration_s, c.window.before_s + c.window.after_s)
        return c.pre_roll_s + longest + c.post_roll_s + 30.0

    def button_for_code(self, key: str) -> ButtonConfig | None:
        """The button bound to a remote key (``"<protocol>:<hex>"``), case-insensitive."""
        key = key.lower()
        for button in self.buttons:
            if button.code is not None and button.code.lower() == key:
                return button
        return None

    def button(self, key: str) -> ButtonConfig | None:
        """A button by name, or else the first button with that role."""
        for button in self.buttons:
            if button.name == key:
                return button
        for button in self.buttons:
            if button.role == key:
                return button
        return None


class ConfigError(UserError):
    """A configuration (or scenario) file is wrong; the message says where and how to fix it."""


# --- loading -----------------------------------------------------------------------------------


#: config and scenario files are small; a bigger one is a mistake (or hostile): refused unread
MAX_TOML_BYTES = 1024 * 1024


def load_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_TOML_BYTES + 1)
        if len(raw) > MAX_TOML_BYTES:
            raise ConfigError(
                f"{path}: the {what} file is larger than {MAX_TOML_BYTES} bytes; is it the "
                f"right file?"
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} file: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses on nested arrays and inline tables
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


def parse_model(model: type[M], data: dict[str, Any], source: str) -> M:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(model, exc, source)) from None


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    return parse_model(Config, load_toml(path, "config"), str(path))


def describe_errors(model: type[BaseModel], exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s):"]
    for err in exc.errors():
        loc = err["loc"]
        key = _dotted(loc)
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
            lines.append(f"  - {key}: unknown key.{suggestion} Valid keys here: {', '.join(valid)}")
            continue
        allowed = _allowed_at(model, loc)
        shown = "" if err["type"] == "missing" else f" (got {value!r})"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(
            f"  - {key or '(top level)'}{shown}: {message}"
            + (f"; allowed: {allowed}" if allowed else "")
        )
    return "\n".join(lines)


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or "," in str(part):
            continue  # pydantic's union-branch labels such as 'int' or 'function-after[...]'
        else:
            out += ("." if out else "") + str(part)
    return out


def _unwrap(annotation: Any) -> Any:
    """list[X] -> X, X | None -> X, Annotated[X, ...] -> X."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is list:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return annotation


def _field_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    current: Any = model
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        current = _unwrap(info.annotation)
    return info


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    if not [p for p in loc if not isinstance(p, int)]:
        return list(model.model_fields)
    info = _field_at(model, loc)
    inner = _unwrap(info.annotation) if info else None
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return list(inner.model_fields)
    return []


def allowed_text(info: FieldInfo) -> str:
    parts: list[str] = []
    inner = _unwrap(info.annotation)
    if typing.get_origin(inner) is Literal:
        parts.append(" | ".join(repr(a) for a in typing.get_args(inner)))
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Gt):
            parts.append(f"> {meta.gt}")
        elif isinstance(meta, annotated_types.Ge):
            parts.append(f">= {meta.ge}")
        elif isinstance(meta, annotated_types.Le):
            parts.append(f"<= {meta.le}")
        elif isinstance(meta, annotated_types.MinLen):
            parts.append(f"at least {meta.min_length} characters")
        elif isinstance(meta, annotated_types.MaxLen):
            parts.append(f"at most {meta.max_length} characters")
        elif hasattr(meta, "pattern") and getattr(meta, "pattern", None):
            parts.append(f"matching {meta.pattern}")
    return ", ".join(parts)


def _allowed_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    info = _field_at(model, loc)
    return allowed_text(info) if info is not None else ""


# --- the commented example ---------------------------------------------------------------------


def example_config() -> str:
    """A complete config file with every default, each key preceded by its description."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment("contactpoint device configuration (generated from the schema)."))
    doc.add(tomlkit.comment("Every key is optional: the value shown is the default."))
    defaults = Config()
    for name, info in Config.model_fields.items():
        value = getattr(defaults, name)
        if isinstance(value, BaseModel):
            doc.add(tomlkit.nl())
            doc.add(name, _table(value))
        elif isinstance(value, list):
            doc.add(tomlkit.nl())
            doc.add(tomlkit.comment(f"[[{name}]]: {info.description}"))
            doc.add(name, _array_of_tables(value))
    return tomlkit.dumps(doc)


def _table(model: BaseModel) -> tomlkit.items.Table:
    table = tomlkit.table()
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            table.add(name, _table(value))
            continue
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            table.add(tomlkit.comment(f"[[{name}]]: {info.description}"))
            table.add(name, _array_of_tables(value))
            continue
        _describe(table, name, info)
        if value is None:
            table.add(tomlkit.comment(f"{name} = (unset)"))
        else:
            table.add(name, value)
    return table


def _array_of_tables(items: list[Any]) -> tomlkit.items.AoT:
    aot = tomlkit.aot()
    for index, item in enumerate(items):
        table = tomlkit.table()
        for name, info in type(item).model_fields.items():
            value = getattr(item, name)
            if value is None or value == [] or (value == "" and name == "label"):
                if index == 0:
                    _describe(table, name, info)
                    table.add(tomlkit.comment(f"{name} = (unset)"))
                continue
            if index == 0:
                _describe(table, name, info)
            table.add(name, value)
        aot.append(table)
    return aot


def _describe(table: tomlkit.items.Table, name: str, info: FieldInfo) -> None:
    allowed = allowed_text(info)
    text = info.description or name
    table.add(tomlkit.comment(text + (f" [{allowed}]" if allowed else "")))
