"""The wire contract: the ONE definition of topics, message kinds, payload shapes, the schema
version and the limits that the device (``edge/publish/wire.py``, builds) and the sink
(``cloud_sink/wire.py``, parses) must agree on. docs/WIRE.md describes it in words.

What lives here:
- :data:`SCHEMA`, the version every payload carries; the sink reads only :data:`SCHEMAS`.
- Topics ``contactpoint/v1/<site>/<device>/<kind>``: :func:`topic` builds any of them (``"+"``
  and ``"#"`` make filters), :func:`parse_topic` splits one, and the named builders say who
  publishes what.
- Message kinds: the topic kinds (``contact``, ``event``, ``clip``, ``status``, ``alert``, the
  commands ``cmd/...`` a sink sends a device, the managers' ``route/<name>``) and the envelope
  ``kind`` of each payload (a chunk header says ``clip_chunk``).
- Payload shapes as TypedDicts: what the device writes is typed with them, and the sink reads
  exactly their keys (tests/contract/test_wire.py holds both sides to it).
- Limits both sides must respect: sizes, counts, id and name patterns, the codecs.

What does not: the device's records and their conversion (``edge/publish/wire.py``), the
sink's strict parser (finite numbers, 64-bit integers, surrogates, NUL, per-field checks:
``cloud_sink/wire.py``). This module imports only the standard library.
"""

import json
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NotRequired, TypedDict

if TYPE_CHECKING:  # (contract.alerts loads msgspec; only its Firing's attributes are read)
    from contract.alerts import Firing

# --- the schema version ---------------------------------------------------------------------

#: the version every payload carries in ``schema`` (the integer: ``1.0`` or ``true`` is not one)
SCHEMA: Final = 1
#: the versions a sink reads; anything else is a dead letter before any other field is looked at
SCHEMAS: Final = frozenset({SCHEMA})

# --- message kinds --------------------------------------------------------------------------

#: topic kinds, device -> sink (the last topic level); also the envelope ``kind`` of the JSON
#: ones, and the key their body travels under (``{"kind": "contact", "contact": {...}}``)
CONTACT: Final = "contact"
EVENT: Final = "event"
STATUS: Final = "status"
ALERT: Final = "alert"
#: the topic of clip chunk frames (and the device's outbox row that sends a clip)
CLIP: Final = "clip"
#: the envelope ``kind`` of a chunk frame's header
CLIP_CHUNK: Final = "clip_chunk"
#: the JSON messages a sink ingests, by topic kind
JSON_KINDS: Final = frozenset({CONTACT, EVENT, STATUS, ALERT})

#: sink -> device commands live under ``<root>/cmd/``; a sink's wildcard never ingests them
CMD: Final = "cmd"
#: ask a device for clip chunks again (:class:`ResendRequest`)
RESEND: Final = f"{CMD}/resend"
#: tell a device what the sink committed (:class:`DeliveryReceipt`; docs/WIRE.md)
DELIVERED: Final = f"{CMD}/delivered"
#: the envelope ``kind`` of a delivery receipt
DELIVERED_KIND: Final = "delivered"
#: ask a device to update itself: a manifest signed with the fleet's key (edge/update/manifest.py);
#: the device reports the outcome as an ``event`` of kind :data:`UPDATE_EVENT`
UPDATE: Final = f"{CMD}/update"
UPDATE_EVENT: Final = "update"
#: the outbox row kinds a sink confirms with a receipt (a route is for managers, not the sink)
RECEIPT_KINDS: Final = frozenset({CONTACT, EVENT, ALERT, CLIP})
#: a device reads receipts of at most this size and this many ids of each list
MAX_RECEIPT_BYTES: Final = 256 * 1024
MAX_RECEIPT_IDS: Final = 4096

#: device -> managers: routed copies on ``<root>/route/<name>`` (:class:`RouteMessage`); the
#: envelope ``kind`` is ``route``
ROUTE: Final = "route"

# --- limits ---------------------------------------------------------------------------------

#: site and device ids; also alert rule names
NAME_PATTERN: Final = r"[a-z0-9][a-z0-9_-]{0,63}"
#: msg, contact, event, clip and alert ids: 32 lowercase hex digits
ID_PATTERN: Final = r"[0-9a-f]{32}"
#: sha256 digests of chunks and clips
SHA256_PATTERN: Final = r"[0-9a-f]{64}"
#: the device slot of a site-level alert's topic ``<ROOT>/<site>/_site/alert`` (the sink
#: publishes those); not a valid device id, so no device can collide with it
SITE_SCOPE: Final = "_site"

#: a JSON message
MAX_JSON_BYTES: Final = 256 * 1024
#: the data of one clip chunk (and the largest ``chunk_bytes`` a device may be configured with)
MAX_CHUNK_BYTES: Final = 256 * 1024
#: the smallest ``chunk_bytes`` a device may be configured with
MIN_CHUNK_BYTES: Final = 1024
#: a chunk frame's JSON header
MAX_HEADER_BYTES: Final = 4 * 1024
#: a clip's announced size and chunk count are bounded too: the sink keeps a row per clip and
#: lists its missing chunks, so an absurd ``total`` must not become a huge list (a 2-hour WAV
#: at 16 kHz is ~230 MB; in :data:`MIN_CHUNK_BYTES` chunks ~225 000 of them)
MAX_CLIP_BYTES: Final = 1024 * 1024 * 1024
MAX_CHUNKS: Final = 1024 * 1024
MAX_SAMPLE_RATE: Final = 384_000  # (the sink's clips table keeps it in a 32-bit integer)
#: clip codecs and the file extension of each
EXTENSIONS: Final = {"wav": "wav", "flac": "flac", "opus": "opus"}
#: a staff member's name (``contact.staff``, ``event.staff``)
MAX_STAFF_CHARS: Final = 64
#: keys of ``status.today``; items of ``status.alarms`` and of ``status.faults``
MAX_TODAY_KEYS: Final = 64
MAX_HEALTH_ITEMS: Final = 64
#: a resend request stays far below any broker's packet limit (the project's mosquitto allows
#: 1 MiB): the sink asks for the first missing ranges that fit, and for the rest next time
MAX_RESEND_BYTES: Final = 16 * 1024
#: devices older than the ``ranges`` form read only ``seqs``: it is added when this short
LEGACY_SEQS: Final = 256

# --- chunk frames ---------------------------------------------------------------------------

#: ``CHUNK_MAGIC | uint32 big-endian header length | JSON header | chunk data``
CHUNK_MAGIC: Final = b"CPC1"
CHUNK_LENGTH: Final = struct.Struct(">I")
CHUNK_PREFIX_BYTES: Final = len(CHUNK_MAGIC) + CHUNK_LENGTH.size
MAX_FRAME_BYTES: Final = CHUNK_PREFIX_BYTES + MAX_HEADER_BYTES + MAX_CHUNK_BYTES


def chunk_msg_id(clip_id: str, seq: int) -> str:
    """A chunk's ``msg_id``: ``<clip_id>.<seq>``, stable across resends."""
    return f"{clip_id}.{seq}"


def chunk_count(clip_bytes: int, chunk_bytes: int) -> int:
    """How many chunks a clip of ``clip_bytes`` travels in (at least one, even when empty)."""
    return max(1, -(-clip_bytes // chunk_bytes))


def frame(header: "ChunkHeader", data: bytes) -> bytes:
    """One clip chunk as it travels (compact JSON header with sorted keys)."""
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    return CHUNK_MAGIC + CHUNK_LENGTH.pack(len(raw)) + raw + data


# --- topics ---------------------------------------------------------------------------------

ROOT: Final = "contactpoint/v1"
#: what a sink subscribes to: every device's messages, not their commands (``cmd/resend``
#: has one level more) nor routed copies (``route/<name>``)
SUBSCRIPTION: Final = f"{ROOT}/+/+/+"


def topic(site: str, device: str, kind: str) -> str:
    """``contactpoint/v1/<site>/<device>/<kind>``; with ``+``/``#`` a subscription filter."""
    return f"{ROOT}/{site}/{device}/{kind}"


def shared_subscription(group: str) -> str:
    """MQTT 5's shared subscription: N sink workers share one stream."""
    return f"$share/{group}/{SUBSCRIPTION}"


def clip_topic(site: str, device: str) -> str:
    return topic(site, device, CLIP)


def alert_topic(site: str, device: str = SITE_SCOPE) -> str:
    """A device's alerts, or (by default) the sink's site-level alerts of ``site``."""
    return topic(site, device, ALERT)


def resend_topic(site: str, device: str) -> str:
    """Sink -> device: ask for clip chunks again."""
    return topic(site, device, RESEND)


def receipt_topic(site: str, device: str) -> str:
    """Sink -> device: what the sink committed; only that device reads it, only a sink writes
    it (the ACL of provisioning/identity.py)."""
    return topic(site, device, DELIVERED)


def update_topic(site: str, device: str) -> str:
    """Sink -> device: a signed update manifest (only that device reads it)."""
    return topic(site, device, UPDATE)


def route_topic(site: str, device: str, name: str) -> str:
    """Device -> managers: a route destination of type mqtt (edge/routes)."""
    return topic(site, device, f"{ROUTE}/{name}")


@dataclass(frozen=True, slots=True)
class Topic:
    """A contactpoint topic taken apart; ``kind`` may have several levels (``cmd/resend``)."""

    site: str
    device: str
    kind: str

    @property
    def is_command(self) -> bool:
        """A sink -> device command (``cmd/...``)."""
        return self.kind == CMD or self.kind.startswith(f"{CMD}/")

    @property
    def is_route(self) -> bool:
        """A routed copy for managers (``route/<name>``)."""
        return self.kind.startswith(f"{ROUTE}/")


_ROOT_LEVELS: Final = ROOT.split("/")


def parse_topic(name: str) -> Topic | None:
    """The site, device and kind of a contactpoint topic; None when it is not one. The parts are
    not validated here (:func:`valid_name`)."""
    parts = name.split("/")
    if parts[: len(_ROOT_LEVELS)] != _ROOT_LEVELS or len(parts) < len(_ROOT_LEVELS) + 3:
        return None
    at = len(_ROOT_LEVELS)
    return Topic(site=parts[at], device=parts[at + 1], kind="/".join(parts[at + 2 :]))


_NAME: Final = re.compile(NAME_PATTERN)
_ID: Final = re.compile(ID_PATTERN)
_SHA256: Final = re.compile(SHA256_PATTERN)


def valid_name(value: str) -> bool:
    """A site or device id, or an alert rule name."""
    return _NAME.fullmatch(value) is not None


def valid_id(value: str) -> bool:
    """A msg, contact, event, clip or alert id."""
    return _ID.fullmatch(value) is not None


def valid_sha256(value: str) -> bool:
    return _SHA256.fullmatch(value) is not None


# --- times ----------------------------------------------------------------------------------

_NS: Final = 1_000_000_000


def iso(wall_ns: int) -> str:
    """A wire time: ISO 8601 UTC with milliseconds, e.g. ``2026-11-23T09:00:10.000Z`` (ordered
    as text)."""
    seconds, rest = divmod(wall_ns, _NS)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1_000_000:03d}Z"


# --- payload shapes -------------------------------------------------------------------------
# The keys each side writes and reads. NotRequired: the writer may leave the key out. (This
# module does without ``from __future__ import annotations`` so that ``__required_keys__`` and
# ``__optional_keys__`` are right at run time.)


class Envelope(TypedDict):
    """Every JSON message (and chunk header): ``device`` and ``site`` equal the topic's,
    ``kind`` the topic's kind (a chunk's: :data:`CLIP_CHUNK`)."""

    schema: int
    msg_id: str  # our own id: the sink deduplicates QoS 1 redeliveries on it
    kind: str
    device: str
    site: str


class EventBody(TypedDict):
    """An event, inside a contact or on its own (``event``)."""

    id: str
    kind: str
    at: str
    contact_id: NotRequired[str]
    button: NotRequired[str]
    role: NotRequired[str]
    gesture: NotRequired[str]
    duration_s: NotRequired[float]
    question: NotRequired[int]
    via: NotRequired[str]
    receipt_id: NotRequired[str]
    video_url: NotRequired[str]
    staff: NotRequired[str]  # outside a contact only: who was on duty
    data: NotRequired[dict[str, Any]]


class ClipMeta(TypedDict):
    """``contact.clip``: the clip a contact announces (its id is the contact's)."""

    path: str
    start: str
    end: str
    codec: str
    sample_rate: int
    start_index: int
    end_index: int
    duration_s: float
    sha256: str
    bytes: int
    truncated: bool
    gaps: list[list[int]]
    missing_s: float


class ContactBody(TypedDict):
    """A finished contact; also what ``contactpoint contacts --json`` prints."""

    id: str
    start: str
    end: str
    duration_s: float
    ended_by: str
    mode: str
    tags: list[str]
    events: list[EventBody]
    clip: ClipMeta | None
    clock_synced: bool
    boot_id: str
    staff: str | None  # who served the contact; None: unknown (a sink takes it absent too)
    video_url: NotRequired[str]
    clip_missing: NotRequired[str]  # why there is no clip: disk_full, no_audio, write_failed
    clock_stepped: NotRequired[bool]  # only when true


class Alarm(TypedDict):
    kind: str
    count: int
    detail: str


class Fault(TypedDict):
    part: str
    detail: str


class StatusBody(TypedDict):
    """Availability and health (retained; also the last will)."""

    online: bool
    version: str
    boot_id: str
    outbox_depth: int
    free_disk_bytes: int
    clock_synced: bool
    at: str
    today: NotRequired[dict[str, Any]]  # today's live counters
    delivery: NotRequired[dict[str, Any]]  # sent / delivered counts (delivery receipts)
    alarms: NotRequired[list[Alarm]]  # only when there are any
    faults: NotRequired[list[Fault]]  # only when there are any


class AlertBody(TypedDict):
    """An alert rule fired (:mod:`contract.alerts`)."""

    id: str
    rule: str
    scope: str  # "device", or "site" for the sink's site-level alerts
    at: str
    window_start: str
    count: int
    at_least: int
    total: int | None
    share: float | None
    share_at_least: float | None
    refs: list[str]
    text: str


class ContactMessage(Envelope):
    contact: ContactBody


class EventMessage(Envelope):
    event: EventBody


class StatusMessage(Envelope):
    status: StatusBody


class AlertMessage(Envelope):
    alert: AlertBody


class ChunkHeader(Envelope):
    """A chunk frame's header; ``msg_id`` is :func:`chunk_msg_id`."""

    clip_id: str
    seq: int  # 0-based
    total: int
    offset: int
    size: int
    chunk_sha256: str
    clip_sha256: str
    clip_bytes: int
    codec: str
    sample_rate: int


class RouteMessage(Envelope):
    """Device -> managers: a routed contact or alert under its own key (``about``)."""

    route: str
    about: str
    contact: NotRequired[ContactBody]
    alert: NotRequired[AlertBody]


# sink -> device commands (``cmd/...``): no envelope, the topic names the device


class DeliveryReceipt(TypedDict):
    """Sink -> device on ``cmd/delivered``, after the sink's commit: the JSON messages it stored
    (again too: a duplicate) by msg_id, and the clips it verified complete by clip id."""

    schema: int
    kind: str  # DELIVERED_KIND
    device: str
    site: str
    msg_ids: list[str]
    clips: list[str]


class ResendRequest(TypedDict):
    """``cmd/resend``: inclusive ``[first, last]`` ranges of missing chunk seqs; ``seqs`` (the
    same set, listed) only when at most :data:`LEGACY_SEQS`, for devices older than ranges."""

    clip_id: str
    ranges: list[list[int]]
    seqs: NotRequired[list[int]]


#: each JSON message kind's payload and body shapes (the body travels under the kind's key)
MESSAGES: Final[dict[str, tuple[type, type]]] = {
    CONTACT: (ContactMessage, ContactBody),
    EVENT: (EventMessage, EventBody),
    STATUS: (StatusMessage, StatusBody),
    ALERT: (AlertMessage, AlertBody),
}


def envelope(kind: str, *, device: str, site: str, msg_id: str) -> Envelope:
    return {"schema": SCHEMA, "msg_id": msg_id, "kind": kind, "device": device, "site": site}


def alert_body(firing: "Firing", text: str) -> AlertBody:
    """An alert: which rule fired, when, over which window and items. A firing whose scope is
    :data:`SITE_SCOPE` is the sink's site-level alert."""
    return {
        "id": firing.id,
        "rule": firing.rule,
        "scope": "site" if firing.scope == SITE_SCOPE else "device",
        "at": iso(firing.at_ns),
        "window_start": iso(firing.window_start_ns),
        "count": firing.count,
        "at_least": firing.at_least,
        "total": firing.total,
        "share": firing.share,
        "share_at_least": firing.share_at_least,
        "refs": list(firing.refs),
        "text": text,
    }


def alert_message(
    firing: "Firing", text: str, *, device: str, site: str, msg_id: str
) -> AlertMessage:
    """An alert message; the sink's site-level ones have ``device`` :data:`SITE_SCOPE`."""
    return {
        **envelope(ALERT, device=device, site=site, msg_id=msg_id),
        "alert": alert_body(firing, text),
    }
