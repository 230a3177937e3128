"""The device's configuration: one TOML file, a closed and typed schema.

Every field has a default, bounds where numbers are involved and a description; unknown keys
are rejected with the nearest valid key suggested. :func:`example_config` renders the schema
as a commented TOML file, so the documentation cannot drift from the code.

The schema is one module per group of tables, over the base the sink's config shares
(:mod:`contract.config`: the closed section model, the TOML loader, the error wording, the
example generator):

- :mod:`~edge.config.base`      :class:`ConfigError`, :func:`load_toml`, :func:`parse_model`
- :mod:`~edge.config.device`    ``[device]`` ``[hardware]`` ``[clock]``
- :mod:`~edge.config.buttons`   ``[input]`` ``[[buttons]]``
- :mod:`~edge.config.radio`     ``[rf433]`` ``[serial]`` ``[nrf24]``
- :mod:`~edge.config.presence`  ``[presence]``
- :mod:`~edge.config.contacts`  ``[contacts]`` (window, survey)
- :mod:`~edge.config.tagging`   ``[[tagging.rules]]``
- :mod:`~edge.config.audio`     ``[audio]`` ``[prompt]``
- :mod:`~edge.config.people`    ``[receipts]`` ``[staff]`` ``[metrics]``
- :mod:`~edge.config.mqtt`      ``[mqtt]`` ``[homeassistant]``
- :mod:`~edge.config.storage`   ``[storage]`` ``[retention]``
- :mod:`~edge.config.alerts`    ``[[alerts.rules]]``
- :mod:`~edge.config.video`     ``[video]``
- :mod:`~edge.config.routes`    ``[routes]``: destinations and rules
- :mod:`~edge.config.importer`  ``[importer]``: recordings cut around a CRM's events
- :mod:`~edge.config.root`      :class:`Config` (the whole file), :func:`load_config`,
  :func:`example_config`

Every public name is importable from ``edge.config`` itself.
"""

from __future__ import annotations

from edge.config.alerts import AlertsSection
from edge.config.audio import AudioSection, PromptSection
from edge.config.base import (
    MAX_TOML_BYTES,
    ConfigError,
    FieldError,
    Section,
    allowed_text,
    describe_error,
    load_toml,
    parse_model,
    set_value,
)
from edge.config.buttons import RATING_ROLES, ButtonConfig, InputSection, Role, Via
from edge.config.contacts import ContactsSection, Mode, SurveySection, WindowSection
from edge.config.device import ClockSection, DeviceSection, HardwareSection
from edge.config.importer import (
    EventColumns,
    FilenamePattern,
    ImporterSection,
    RatingMap,
    RecorderClock,
)
from edge.config.mqtt import HomeAssistantSection, MqttSection
from edge.config.people import MetricsSection, ReceiptsSection, ShiftConfig, StaffSection
from edge.config.presence import PresenceSection
from edge.config.radio import Nrf24Section, Rf433Section, SerialSection
from edge.config.root import Config, example_config, load_config
from edge.config.routes import (
    CLIP_URL_PLACEHOLDERS,
    ROUTE_KINDS,
    ROUTE_PLACEHOLDERS,
    EmailRoute,
    FtpRoute,
    MqttRoute,
    RouteRule,
    RoutesSection,
    TelegramRoute,
    WebhookRoute,
)
from edge.config.storage import RetentionSection, StorageSection
from edge.config.tagging import ENDED_BY, TaggingSection, TagRule
from edge.config.video import VideoSection

__all__ = [
    "CLIP_URL_PLACEHOLDERS",
    "ENDED_BY",
    "MAX_TOML_BYTES",
    "RATING_ROLES",
    "ROUTE_KINDS",
    "ROUTE_PLACEHOLDERS",
    "AlertsSection",
    "AudioSection",
    "ButtonConfig",
    "ClockSection",
    "Config",
    "ConfigError",
    "ContactsSection",
    "DeviceSection",
    "EmailRoute",
    "EventColumns",
    "FieldError",
    "FilenamePattern",
    "FtpRoute",
    "HardwareSection",
    "HomeAssistantSection",
    "ImporterSection",
    "InputSection",
    "MetricsSection",
    "Mode",
    "MqttRoute",
    "MqttSection",
    "Nrf24Section",
    "PresenceSection",
    "PromptSection",
    "RatingMap",
    "ReceiptsSection",
    "RecorderClock",
    "RetentionSection",
    "Rf433Section",
    "Role",
    "RouteRule",
    "RoutesSection",
    "Section",
    "SerialSection",
    "ShiftConfig",
    "StaffSection",
    "StorageSection",
    "SurveySection",
    "TagRule",
    "TaggingSection",
    "TelegramRoute",
    "Via",
    "VideoSection",
    "WebhookRoute",
    "WindowSection",
    "allowed_text",
    "describe_error",
    "example_config",
    "load_config",
    "load_toml",
    "parse_model",
    "set_value",
]
