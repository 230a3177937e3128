"""The link to the broker: ``[mqtt]`` (URL, session, credentials files, TLS, flow) and
``[homeassistant]`` (discovery configs for the status)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from msgspec import Meta, field

from contract.wire import MAX_CHUNK_BYTES, MIN_CHUNK_BYTES
from edge.config.base import Section


class MqttSection(Section):
    broker: Annotated[
        str,
        Meta(
            pattern=r"^mqtts?://[^/\s]+$",
            description="Broker URL: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS",
        ),
    ] = "mqtt://127.0.0.1:1883"
    protocol: Annotated[Literal["5", "3.1.1"], Meta(description="MQTT protocol version")] = "5"
    keepalive_s: Annotated[int, Meta(ge=5, le=3600, description="Keep-alive interval (s)")] = 30
    session_expiry_s: Annotated[
        int,
        Meta(
            ge=0,
            le=30 * 24 * 3600,
            description="How long the broker keeps this device's session while it is away (s)",
        ),
    ] = 7 * 24 * 3600
    username: Annotated[str, Meta(max_length=200, description="Broker user (empty: none)")] = ""
    password_file: Annotated[
        str,
        Meta(
            max_length=4096,
            description="File holding the broker password (kept out of this config; mode 0600)",
        ),
    ] = ""
    claim_file: Annotated[
        str,
        Meta(
            max_length=4096,
            description="The fleet's claim token: with it and no password_file, the device "
            "enrolls at start (edge/enroll.py); empty: claim.token in the data directory",
        ),
    ] = ""
    ca_file: Annotated[
        str, Meta(max_length=4096, description="CA certificate for mqtts:// (empty: system CAs)")
    ] = ""
    cert_file: Annotated[
        str, Meta(max_length=4096, description="Client certificate (TLS client auth)")
    ] = ""
    key_file: Annotated[
        str, Meta(max_length=4096, description="Client private key (TLS client auth)")
    ] = ""
    chunk_bytes: Annotated[
        int,
        Meta(
            ge=MIN_CHUNK_BYTES,
            le=MAX_CHUNK_BYTES,
            description="Clip audio travels in chunks of this size (bytes)",
        ),
    ] = 65_536
    inflight: Annotated[
        int, Meta(ge=1, le=1000, description="Messages published but not yet acknowledged")
    ] = 20
    backoff_min_s: Annotated[
        float, Meta(ge=0.05, le=60, description="First reconnect delay (s), doubled each try")
    ] = 0.5
    backoff_max_s: Annotated[
        float, Meta(ge=0.1, le=3600, description="Longest reconnect delay (s), with jitter")
    ] = 30.0
    status_interval_s: Annotated[
        float, Meta(ge=1, le=3600, description="How often the retained status is refreshed (s)")
    ] = 60.0
    delivery_receipts: Annotated[
        bool,
        Meta(
            description="Keep every message and its clip until the sink confirms it stored "
            "them (docs/WIRE.md); false: the broker's PUBACK is enough (a sink without receipts)"
        ),
    ] = True
    receipt_timeout_s: Annotated[
        float,
        Meta(
            ge=0.1,
            le=86_400,
            description="A message the sink has not confirmed this long after the broker "
            "acknowledged it is late (s), and goes again once it may have been lost (a reconnect, "
            "or the sink confirmed a later one); doubled at each resend",
        ),
    ] = 60.0
    receipt_timeout_max_s: Annotated[
        float,
        Meta(
            ge=0.1,
            le=7 * 86_400,
            description="Longest wait for a receipt between two resends (s)",
        ),
    ] = 1800.0
    receipt_max_resends: Annotated[
        int,
        Meta(
            ge=0,
            le=10_000,
            description="Resends of an unconfirmed message before it waits for the next "
            "connection to the broker (alarm 'undelivered'); it is kept on the device all the same",
        ),
    ] = 5


class HomeAssistantSection(Section):
    enabled: Annotated[
        bool,
        Meta(
            description="Publish Home Assistant MQTT discovery configs (retained) on connect, "
            "one sensor per status field below"
        ),
    ] = False
    discovery_prefix: Annotated[
        str,
        Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Home Assistant's discovery prefix"),
    ] = "homeassistant"
    sensors: Annotated[
        list[str],
        Meta(
            description="Status fields shown as sensors: names in the status object, dotted "
            "for nested ones (e.g. 'outbox_depth', 'counters.contacts')"
        ),
    ] = field(
        default_factory=lambda: [
            "outbox_depth",
            "free_disk_bytes",
            "today.served",
            "today.positive",
            "today.negative",
            "today.silent",
            "today.support_index",
            "today.dissatisfaction_index",
        ]
    )

    def __post_init__(self) -> None:
        for path in self.sensors:
            if not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)*", path):
                raise ValueError(
                    f"sensor {path!r}: write a status field name, dotted for nested fields "
                    "(lower-case letters, digits, '_')"
                )
