"""Routing by tag (``edge/routes``): ``[routes]`` with the destinations (``[[routes.telegram]]``,
``ftp``, ``email``, ``webhook``, ``mqtt``) and the ``[[routes.rules]]`` that pick what goes
where."""

from __future__ import annotations

import difflib
from typing import Annotated, Literal

from msgspec import Meta, field

from contract.alerts import NAME_PATTERN
from contract.wire import route_topic
from edge.config.base import Section
from edge.config.contacts import Mode

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
        Meta(pattern=NAME_PATTERN, description="Name of this destination (rules name it in 'to')"),
    ]
    template: Annotated[
        str,
        Meta(
            max_length=4000,
            description="Message text; empty = the built-in text. Placeholders: "
            + ", ".join("{" + p + "}" for p in ROUTE_PLACEHOLDERS),
        ),
    ] = ""
    timeout_s: Annotated[
        float, Meta(ge=1, le=600, description="Give up one attempt after this long (s)")
    ] = 30.0

    def __post_init__(self) -> None:
        _check_template(self.template, ROUTE_PLACEHOLDERS)


class TelegramRoute(_RouteDestination, kw_only=True):
    chat_id: Annotated[
        str,
        Meta(
            pattern=r"^(-?[0-9]{1,20}|@[A-Za-z0-9_]{4,64})$",
            description="Chat, group (negative id) or @channel the bot writes to",
        ),
    ]
    bot_token_file: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=4096,
            description="File holding the bot token (kept out of this config; mode 0600)",
        ),
    ]
    base_url: Annotated[
        str,
        Meta(pattern=r"^https?://[^\s]+$", description="Bot API base URL (a local Bot API server)"),
    ] = "https://api.telegram.org"
    send_clip: Annotated[bool, Meta(description="Upload the clip with the message")] = True
    clip_method: Annotated[
        Literal["sendAudio", "sendDocument", "sendVoice"],
        Meta(description="Bot API method for the clip (sendVoice wants Ogg/Opus clips)"),
    ] = "sendAudio"
    max_upload_mb: Annotated[
        float,
        Meta(gt=0, le=2000, description="Larger clips are sent as a link (routes.clip_url) (MB)"),
    ] = 50.0
    per_chat_per_s: Annotated[
        float, Meta(gt=0, le=30, description="Messages per second to one chat (Bot API limit)")
    ] = 1.0
    group_per_min: Annotated[
        float,
        Meta(gt=0, le=600, description="Messages per minute to one group (negative chat id)"),
    ] = 20.0


class FtpRoute(_RouteDestination, kw_only=True):
    host: Annotated[str, Meta(min_length=1, max_length=253, description="FTP server")]
    port: Annotated[int, Meta(ge=1, le=65535, description="FTP control port")] = 21
    tls: Annotated[bool, Meta(description="FTPS: explicit TLS (AUTH TLS) for login and data")] = (
        False
    )
    ca_file: Annotated[
        str, Meta(max_length=4096, description="CA certificate for FTPS (empty: system CAs)")
    ] = ""
    username: Annotated[str, Meta(max_length=200, description="FTP user")] = "anonymous"
    password_file: Annotated[
        str, Meta(max_length=4096, description="File holding the FTP password (empty: none)")
    ] = ""
    directory: Annotated[
        str,
        Meta(
            max_length=1000,
            description="Remote directory, created when missing; placeholders {site}, "
            "{device}, {date} (the contact's UTC day)",
        ),
    ] = "/{site}/{device}/{date}"
    passive: Annotated[bool, Meta(description="Passive mode (through NAT and firewalls)")] = True
    send_clip: Annotated[bool, Meta(description="Upload the clip beside its JSON record")] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_template(self.directory, ("site", "device", "date"))


class EmailRoute(_RouteDestination, kw_only=True):
    host: Annotated[str, Meta(min_length=1, max_length=253, description="SMTP server")]
    port: Annotated[
        int, Meta(ge=1, le=65535, description="SMTP port (587 submission, 465 TLS, 25)")
    ] = 587
    security: Annotated[
        Literal["starttls", "tls", "none"],
        Meta(description="starttls (upgrade the connection), tls (SMTPS) or none (loopback)"),
    ] = "starttls"
    ca_file: Annotated[
        str, Meta(max_length=4096, description="CA certificate for TLS (empty: system CAs)")
    ] = ""
    username: Annotated[str, Meta(max_length=200, description="SMTP user (empty: no login)")] = ""
    password_file: Annotated[
        str, Meta(max_length=4096, description="File holding the SMTP password")
    ] = ""
    sender: Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+$", description="From address")] = (
        "contactpoint@localhost"
    )
    recipients: Annotated[
        list[Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+$")]],
        Meta(min_length=1, description="To addresses"),
    ]
    subject: Annotated[
        str,
        Meta(max_length=500, description="Subject; same placeholders as template"),
    ] = "[{site}/{device}] {tags}"
    attach_clip: Annotated[bool, Meta(description="Attach the clip to the e-mail")] = True
    max_attach_mb: Annotated[
        float, Meta(gt=0, le=100, description="Larger clips are sent as a link (MB)")
    ] = 20.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_template(self.subject, ROUTE_PLACEHOLDERS)
        if self.username and not self.password_file:
            raise ValueError(f"route '{self.name}': username needs password_file")


class WebhookRoute(_RouteDestination, kw_only=True):
    url: Annotated[str, Meta(pattern=r"^https?://[^\s]+$", description="URL the JSON is POSTed to")]
    secret_file: Annotated[
        str,
        Meta(
            max_length=4096,
            description="File holding the HMAC-SHA256 key for X-Contactpoint-Signature "
            "(empty: unsigned)",
        ),
    ] = ""
    ca_file: Annotated[
        str, Meta(max_length=4096, description="CA certificate for https (empty: system CAs)")
    ] = ""


class MqttRoute(Section):
    name: Annotated[
        str,
        Meta(
            pattern=NAME_PATTERN,
            description=f"Name; the topic is {route_topic('<site>', '<device>', '<name>')}, "
            "published through the device's outbox and broker session",
        ),
    ]


class RouteRule(Section):
    to: Annotated[
        list[Annotated[str, Meta(pattern=NAME_PATTERN)]],
        Meta(min_length=1, description="Destination names that get what this rule matches"),
    ]
    tags: Annotated[
        list[str], Meta(description="Match contacts with any of these tags (empty = every one)")
    ] = []
    unless_tags: Annotated[
        list[str], Meta(description="...but not contacts with any of these tags")
    ] = []
    modes: Annotated[
        list[Mode], Meta(description="Only contacts of these modes (empty = all)")
    ] = []
    kinds: Annotated[
        list[Literal["contact", "alert"]],
        Meta(min_length=1, description="What the rule routes: contacts and/or alerts"),
    ] = field(default_factory=lambda: ["contact"])


_NO_DESTINATIONS = (
    "; define it under [[routes.telegram]], [[routes.ftp]], [[routes.email]], "
    "[[routes.webhook]] or [[routes.mqtt]]"
)


class RoutesSection(Section):
    clip_url: Annotated[
        str,
        Meta(
            max_length=2000,
            description="Link to a clip that is not uploaded (too large, or send_clip off); "
            "placeholders "
            + ", ".join("{" + p + "}" for p in CLIP_URL_PLACEHOLDERS)
            + " (empty: the message says the clip is kept on the device)",
        ),
    ] = ""
    backoff_min_s: Annotated[
        float, Meta(ge=0.05, le=600, description="First retry delay (s), doubled each try")
    ] = 2.0
    backoff_max_s: Annotated[
        float, Meta(ge=0.1, le=86400, description="Longest retry delay (s), with jitter")
    ] = 300.0
    drain_s: Annotated[
        float,
        Meta(ge=0, le=3600, description="On stop, keep delivering this long (s); the rest waits"),
    ] = 10.0
    telegram: Annotated[list[TelegramRoute], Meta(description="Telegram chats/groups")] = []
    ftp: Annotated[list[FtpRoute], Meta(description="FTP/FTPS servers")] = []
    email: Annotated[list[EmailRoute], Meta(description="E-mail recipients (SMTP)")] = []
    webhook: Annotated[list[WebhookRoute], Meta(description="HTTP webhooks (signed JSON)")] = []
    mqtt: Annotated[list[MqttRoute], Meta(description="MQTT topics for managers")] = []
    rules: Annotated[
        list[RouteRule], Meta(description="Which contacts/alerts go to which destinations")
    ] = []

    def __post_init__(self) -> None:
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

    def destinations(
        self,
    ) -> list[TelegramRoute | FtpRoute | EmailRoute | WebhookRoute | MqttRoute]:
        """Every destination, in the order: telegram, ftp, email, webhook, mqtt."""
        return [*self.telegram, *self.ftp, *self.email, *self.webhook, *self.mqtt]
