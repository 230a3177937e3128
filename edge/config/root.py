"""The whole device config file: :class:`Config` (one field per table, the checks across
tables), :func:`load_config` and :func:`example_config`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from msgspec import Meta, field

from contract.config import example
from edge.config.alerts import AlertsSection
from edge.config.audio import AudioSection, PromptSection
from edge.config.base import Section, load_toml, parse_model
from edge.config.buttons import ButtonConfig, InputSection, default_buttons
from edge.config.contacts import ContactsSection
from edge.config.device import ClockSection, DeviceSection, HardwareSection
from edge.config.importer import ImporterSection
from edge.config.mqtt import HomeAssistantSection, MqttSection
from edge.config.people import MetricsSection, ReceiptsSection, StaffSection
from edge.config.presence import PresenceSection
from edge.config.radio import Nrf24Section, Rf433Section, SerialSection
from edge.config.routes import RoutesSection
from edge.config.storage import RetentionSection, StorageSection
from edge.config.tagging import TaggingSection
from edge.config.video import VideoSection


class Config(Section):
    device: DeviceSection = DeviceSection()
    hardware: HardwareSection = HardwareSection()
    input: InputSection = InputSection()
    buttons: Annotated[
        list[ButtonConfig], Meta(description="The buttons and remote keys at this counter")
    ] = field(default_factory=default_buttons)
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
    clock: ClockSection = ClockSection()
    routes: RoutesSection = RoutesSection()
    alerts: AlertsSection = AlertsSection()
    video: VideoSection = VideoSection()
    homeassistant: HomeAssistantSection = HomeAssistantSection()
    importer: ImporterSection = ImporterSection()

    def __post_init__(self) -> None:
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

    def ring_seconds(self) -> float:
        """The ring buffer's length: configured, or enough for the longest possible clip until
        the segmenter hands its contact out."""
        if self.audio.ring_s is not None:
            return self.audio.ring_s
        c = self.contacts
        # no contact is longer than max_duration_s (windows are cut there); a window is handed
        # out only once no press can merge with it any more: before_s after its end
        held = 0.0
        if "window" in c.modes and c.window.roles:
            held = min(c.window.before_s, c.max_duration_s)
        return c.pre_roll_s + c.max_duration_s + held + c.post_roll_s + 30.0

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


def load_config(path: Path | None) -> Config:
    """The config file at ``path`` (None: every default)."""
    if path is None:
        return Config()
    return parse_model(Config, load_toml(path, "config"), str(path))


def example_config() -> str:
    """A complete config file with every default, each key preceded by its description."""
    return example(
        Config,
        [
            "contactpoint device configuration (generated from the schema).",
            "Every key is optional: the value shown is the default.",
        ],
    )
