"""The device's configuration: one TOML file, a closed and typed schema.

Every field has a default, bounds where numbers are involved and a description; unknown keys
are rejected with the nearest valid key suggested. :func:`example_config` renders the schema
as a commented TOML file, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

import annotated_types
import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from edge._errors import UserError

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


def load_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} file: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


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
