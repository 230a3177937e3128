"""The wire, sink side: parses what devices send against the contract, strictly.

Topics, message kinds, payload shapes (TypedDicts), the schema version and the limits are
defined once, in :mod:`contract.wire` (shared with the device); the names of it that sink modules
need are re-exported here. What this module adds is the sink's strictness.

Rules (docs/WIRE.md, schema 1):
- Topics are ``contactpoint/v1/<site>/<device>/<kind>``; the sink takes ``contact``, ``event``,
  ``status``, ``alert`` (JSON) and ``clip`` (binary chunk frames). ``cmd/...`` topics are the
  sink's own commands and are ignored, as are ``route/<name>`` topics (managers' copies of
  routed contacts and alerts, already ingested from their own topics) and the sink's own
  site alerts (device ``_site``); any other topic is rejected.
- Site and device ids match ``^[a-z0-9][a-z0-9_-]{0,63}$``; msg, contact, event and clip ids are
  32 lowercase hex digits; a chunk's ``msg_id`` is ``<clip_id>.<seq>``.
- Limits (the contract's): a JSON payload at most 256 KiB; a chunk frame at most 8 + 4 KiB
  header + 256 KiB data; a clip at most 1 GiB in at most 2**20 chunks (``too_large``).
- Every key of a payload shape is read: checked, kept in the parsed object, or both.
- ``schema`` is read first: an unknown version is rejected before anything else is looked at.
- ``device`` and ``site`` in the payload must equal the topic's, ``kind`` must equal the topic's.
- What a database cannot hold is refused while the JSON is read, anywhere in the document
  (reason ``json``): a number that is not finite (``NaN``, ``Infinity``, or ``1e400``, which
  Python reads as infinity), an integer outside 64 bits (a 400-digit one is refused before it is
  converted), a string or key with an unpaired UTF-16 surrogate (``"\\ud800"``: UTF-8 cannot
  encode it). Named fields must not contain NUL (PostgreSQL text cannot hold it).
- ``schema`` is the integer 1: ``1.0`` or ``true`` is not a schema version.
- Every problem is a :class:`Rejected` with a short stable ``reason`` code; parsing never raises.
- A chunk's data is not judged here: :meth:`Chunk.corruption` says whether its size and sha256
  hold, so the caller can still learn the clip from an intact header.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from contract import wire as contract
from contract.wire import (
    CHUNK_MAGIC,
    EXTENSIONS,
    LEGACY_SEQS,
    MAX_CHUNK_BYTES,
    MAX_CHUNKS,
    MAX_CLIP_BYTES,
    MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEALTH_ITEMS,
    MAX_JSON_BYTES,
    MAX_RESEND_BYTES,
    MAX_SAMPLE_RATE,
    MAX_STAFF_CHARS,
    MAX_TODAY_KEYS,
    SCHEMA,
    SITE_SCOPE,
    SUBSCRIPTION,
    alert_topic,
    clip_topic,
    resend_topic,
    shared_subscription,
    valid_id,
    valid_name,
)

#: the contract's names sink modules read from here (defined in contract/wire.py), and this
#: module's own
__all__ = [
    "CHUNK_MAGIC",
    "EXTENSIONS",
    "LEGACY_SEQS",
    "MAX_CHUNKS",
    "MAX_CHUNK_BYTES",
    "MAX_CLIP_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_HEALTH_ITEMS",
    "MAX_JSON_BYTES",
    "MAX_RESEND_BYTES",
    "MAX_SAMPLE_RATE",
    "MAX_STAFF_CHARS",
    "MAX_TODAY_KEYS",
    "SCHEMA",
    "SITE_SCOPE",
    "SUBSCRIPTION",
    "Alert",
    "Chunk",
    "Contact",
    "Event",
    "Ignored",
    "Message",
    "Parsed",
    "Rejected",
    "Status",
    "alert_topic",
    "clip_topic",
    "contact_json",
    "fit_ranges",
    "listed",
    "parse",
    "resend_payload",
    "resend_topic",
    "shared_subscription",
    "valid_id",
    "valid_name",
]


def resend_payload(clip_id: str, ranges: Sequence[tuple[int, int]]) -> bytes:
    """``{"clip_id": ..., "ranges": [[first, last], ...]}`` (inclusive ranges of missing seqs),
    plus the old ``"seqs"`` list when it has at most :data:`LEGACY_SEQS` entries."""
    body: contract.ResendRequest = {"clip_id": clip_id, "ranges": [[a, b] for a, b in ranges]}
    if sum(b - a + 1 for a, b in ranges) <= LEGACY_SEQS:
        body["seqs"] = [s for a, b in ranges for s in range(a, b + 1)]
    return json.dumps(body, separators=(",", ":")).encode()


def fit_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The leading ``ranges`` whose :func:`resend_payload` stays within
    :data:`MAX_RESEND_BYTES` (stops reading ``ranges`` there: pass an iterator)."""
    # room for the envelope and the legacy list (LEGACY_SEQS numbers of at most 7 digits)
    budget = MAX_RESEND_BYTES - 128 - LEGACY_SEQS * 8
    taken: list[tuple[int, int]] = []
    for first, last in ranges:
        budget -= len(str(first)) + len(str(last)) + 4  # [first,last],
        if budget < 0:
            break
        taken.append((first, last))
    return taken


#: ids per delivery receipt message the sink sends (a device accepts up to
#: contract.wire.MAX_RECEIPT_IDS; 32 hex + quotes each)
MAX_RECEIPT_IDS: Final = 1000
receipt_topic = contract.receipt_topic


def receipt_payload(site: str, device: str, msg_ids: list[str], clip_ids: list[str]) -> bytes:
    """``{"schema", "kind": "delivered", "device", "site", "msg_ids": [...], "clips": [...]}``:
    the JSON messages stored (also again: a duplicate), and the clips verified complete."""
    body: contract.DeliveryReceipt = {
        "schema": SCHEMA,
        "kind": contract.DELIVERED_KIND,
        "device": device,
        "site": site,
        "msg_ids": msg_ids,
        "clips": clip_ids,
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A topic the sink subscribes to by accident of the wildcard but does not ingest."""


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    kind: str
    at: str
    contact_id: str | None
    body: dict[str, Any]  # the whole object as sent


@dataclass(frozen=True, slots=True)
class Contact:
    id: str
    start: str
    end: str
    duration_s: float
    ended_by: str
    mode: str
    tags: tuple[str, ...]
    events: tuple[Event, ...]
    clip: dict[str, Any] | None
    clock_synced: bool
    boot_id: str
    video_url: str | None = None  # optional: a link into the camera archive (video config)
    staff: str | None = None  # who served the contact; None: unknown (or an older device)
    # optional, read but not stored centrally yet: why there is no clip, and whether the wall
    # clock was stepped while the contact was stamped
    clip_missing: str | None = None
    clock_stepped: bool = False

    def as_json(self) -> contract.ContactBody:
        """The contact object as the edge sends it (without ``clip_missing`` and
        ``clock_stepped``, which the sink does not store)."""
        return contact_json(
            id=self.id, start=self.start, end=self.end, duration_s=self.duration_s,
            ended_by=self.ended_by, mode=self.mode, tags=list(self.tags),
            events=[e.body for e in self.events], clip=self.clip,
            clock_synced=self.clock_synced, boot_id=self.boot_id, video_url=self.video_url,
            staff=self.staff,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Alert:
    """A device's alert (docs/WIRE.md): a rule fired; ``body`` is the whole object as sent."""

    id: str
    rule: str
    at: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Status:
    online: bool
    version: str
    boot_id: str
    outbox_depth: int
    free_disk_bytes: int
    clock_synced: bool
    at: str
    # optional (the device's health, see docs/WIRE.md): ((kind, count, detail), ...) and
    # ((part, detail), ...); empty when the device reports none
    alarms: tuple[tuple[str, int, str], ...] = ()
    faults: tuple[tuple[str, str], ...] = ()
    # optional: today's live counters and metrics (docs/WIRE.md), None when not sent
    today: dict[str, Any] | None = None
    # optional: the device's delivery counts (sent, delivered, awaiting...), None when not sent
    delivery: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed JSON message; ``body`` is a :class:`Contact`, :class:`Event` or :class:`Status`."""

    msg_id: str
    kind: str
    device: str
    site: str
    body: Contact | Event | Status | Alert


@dataclass(frozen=True, slots=True)
class Chunk:
    msg_id: str
    device: str
    site: str
    clip_id: str
    seq: int
    total: int
    offset: int
    size: int
    chunk_sha256: str
    clip_sha256: str
    clip_bytes: int
    codec: str
    sample_rate: int
    data: bytes

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.codec]

    def corruption(self) -> str | None:
        """Why the data cannot be kept (size or sha256 disagree with the header), or None."""
        if len(self.data) != self.size:
            return f"chunk {self.seq}: {len(self.data)} bytes, header says {self.size}"
        if hashlib.sha256(self.data).hexdigest() != self.chunk_sha256:
            return f"chunk {self.seq}: sha256 mismatch"
        return None


Parsed = Message | Chunk | Rejected | Ignored


def contact_json(
    *,
    id: str,
    start: str,
    end: str,
    duration_s: float,
    ended_by: str,
    mode: str,
    tags: list[str],
    events: list[dict[str, Any]],
    clip: dict[str, Any] | None,
    clock_synced: bool,
    boot_id: str,
    video_url: str | None = None,
    staff: str | None = None,
) -> contract.ContactBody:
    """The contact object with the edge's keys, in the edge's order; ``events`` and ``clip``
    as they were sent."""
    out: contract.ContactBody = {
        "id": id,
        "start": start,
        "end": end,
        "duration_s": duration_s,
        "ended_by": ended_by,
        "mode": mode,
        "tags": tags,
        "events": cast(list[contract.EventBody], events),
        "clip": cast(contract.ClipMeta | None, clip),
        "clock_synced": clock_synced,
        "boot_id": boot_id,
        "staff": staff,
    }
    if video_url is not None:
        out["video_url"] = video_url
    return out


class _RejectError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse(topic: str, payload: bytes) -> Parsed:
    """Parse one MQTT message; never raises."""
    try:
        return _parse(topic, payload)
    except _RejectError as bad:
        return Rejected(bad.reason, bad.detail)


def _parse(topic: str, payload: bytes) -> Parsed:
    parsed = contract.parse_topic(topic)
    if parsed is None:
        raise _RejectError("topic", f"not a contactpoint v1 topic: {topic[:200]!r}")
    site, device, kind = parsed.site, parsed.device, parsed.kind
    if parsed.is_command or device == SITE_SCOPE:
        return Ignored()
    if parsed.is_route:  # managers' copies (edge routes of type mqtt): not ingested
        return Ignored()
    if not (valid_name(site) and valid_name(device)):
        raise _RejectError("id", f"bad site or device id in topic {topic[:200]!r}")
    if kind == contract.CLIP:
        return _parse_chunk(site, device, payload)
    if kind not in contract.JSON_KINDS:
        raise _RejectError("topic", f"unknown message kind {kind[:64]!r}")
    if len(payload) > MAX_JSON_BYTES:
        raise _RejectError("too_large", f"{len(payload)} bytes > {MAX_JSON_BYTES}")
    obj = _json_object(payload)
    _envelope(obj, site, device, kind)
    msg_id = _id(obj, "msg_id")
    body: Contact | Event | Status | Alert
    raw = _field(obj, kind, dict)  # the body travels under its kind's key
    if kind == contract.ALERT:
        body = _alert(raw)
    elif kind == contract.CONTACT:
        body = _contact(raw)
    elif kind == contract.EVENT:
        body = _event(raw, where="event")
    else:
        body = _status(raw)
    return Message(msg_id=msg_id, kind=kind, device=device, site=site, body=body)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(
            raw.decode("utf-8"),
            parse_constant=_no_constant,
            parse_float=_finite_float,
            parse_int=_int64,
        )
    except _RejectError:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise _RejectError("json", f"not JSON: {str(exc)[:200]}") from None
    except RecursionError:  # json recurses on nesting: "[[[[..." must not crash the sink
        raise _RejectError("json", "not JSON: arrays or objects nested too deeply") from None
    if not isinstance(obj, dict):
        raise _RejectError("json", f"not a JSON object but {type(obj).__name__}")
    if _SURROGATE_ESCAPE.search(raw) is not None:  # only an escape makes one (see below)
        _no_surrogates(obj)
    return obj


def _no_constant(name: str) -> Any:
    raise _RejectError("json", f"{name} is not JSON: numbers must be finite")


#: 64-bit integers have at most 19 digits (and a sign): longer text is refused unconverted
_MAX_INT_CHARS: Final = 20


def _int64(text: str) -> int:
    if len(text) > _MAX_INT_CHARS or not -(2**63) <= (value := int(text)) < 2**63:
        raise _RejectError(
            "json",
            f"integer {text[:24]}{'...' if len(text) > 24 else ''} ({len(text)} characters) is "
            "outside the 64-bit range: send a number between -2**63 and 2**63-1",
        )
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _RejectError(
            "json", f"number {text[:40]} is not finite as a 64-bit float: send a smaller one"
        )
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
#: A surrogate in a decoded document comes only from a ``\uD800``-``\uDFFF`` escape: strict
#: UTF-8 decoding refuses one written out. Without such an escape in the bytes (the usual case)
#: there is nothing to look for.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _no_surrogates(obj: Any) -> None:
    """Every string and key of a decoded document is encodable as UTF-8 (json turns a lone
    ``\\ud800`` escape into a surrogate that no database, file or log can take)."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                _text_ok(key)
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            _text_ok(node)


def _text_ok(text: str) -> None:
    found = _SURROGATE.search(text)
    if found is not None:
        at = found.start()
        raise _RejectError(
            "json",
            f"string {text[:at][:40]!r}... holds an unpaired UTF-16 surrogate "
            f"{found.group()!r} at character {at}: send valid Unicode (escape pairs, not halves)",
        )


def _envelope(obj: dict[str, Any], site: str, device: str, kind: str) -> None:
    schema = obj.get("schema")
    if type(schema) is not int or schema not in contract.SCHEMAS:  # not 1.0, not true: an int
        raise _RejectError(
            "schema", f"unknown schema version {repr(schema)[:80]}: this sink reads {SCHEMA}"
        )
    if _field(obj, "kind", str) != kind:
        raise _RejectError("mismatch", f"kind {obj['kind'][:80]!r} on a {kind!r} topic")
    said_device, said_site = _field(obj, "device", str), _field(obj, "site", str)
    if said_device != device or said_site != site:  # (both read first: both must be there)
        raise _RejectError(
            "mismatch",
            f"payload says {said_site[:80]!r}/{said_device[:80]!r}, topic {site}/{device}",
        )


def _field(obj: dict[str, Any], key: str, kind: type[Any], *, where: str = "") -> Any:
    if key not in obj:
        raise _RejectError("field", f"missing field {where}{key!r}")
    value = obj[key]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise _RejectError(
            "field", f"field {where}{key!r} is {type(value).__name__}, not {kind.__name__}"
        )
    if isinstance(value, str) and "\x00" in value:
        raise _RejectError("field", f"field {where}{key!r} contains a NUL character")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise _RejectError("field", f"field {where}{key!r} is out of the 64-bit range")
    return value


def _optional(obj: dict[str, Any], key: str, kind: type[Any], *, where: str) -> Any:
    """A key that may be absent (None then), else as :func:`_field` reads it."""
    return _field(obj, key, kind, where=where) if key in obj else None


def _id(obj: dict[str, Any], key: str, where: str = "") -> str:
    value: str = _field(obj, key, str, where=where)
    if not valid_id(value):
        raise _RejectError("id", f"field {where}{key!r} is not 32 hex digits: {value[:80]!r}")
    return value


def _time(obj: dict[str, Any], key: str, where: str = "") -> str:
    value: str = _field(obj, key, str, where=where)
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise _RejectError(
            "field", f"field {where}{key!r} is not ISO 8601: {value[:80]!r}"
        ) from None
    if stamp.utcoffset() is None:
        raise _RejectError("field", f"field {where}{key!r} has no time zone: {value[:80]!r}")
    return value


def _event(obj: dict[str, Any], where: str) -> Event:
    if obj.get("staff") is not None:  # optional: who was on duty (events outside contacts)
        staff = _field(obj, "staff", str, where=where)
        if not 0 < len(staff) <= MAX_STAFF_CHARS:
            raise _RejectError("field", f"{where}staff must be 1..{MAX_STAFF_CHARS} characters")
    contact_id = obj.get("contact_id")
    if contact_id is not None:
        contact_id = _id(obj, "contact_id", where)
    return Event(
        id=_id(obj, "id", where),
        kind=_field(obj, "kind", str, where=where),
        at=_time(obj, "at", where),
        contact_id=contact_id,
        body=obj,
    )


def _alert(obj: dict[str, Any]) -> Alert:
    alert_id = _id(obj, "id", "alert.")
    for key in ("count", "at_least"):
        _field(obj, key, int, where="alert.")
    refs = _field(obj, "refs", list, where="alert.")
    if not all(isinstance(r, str) and "\x00" not in r for r in refs):
        raise _RejectError("field", "alert.refs must be strings")
    _time(obj, "window_start", "alert.")
    rule: str = _field(obj, "rule", str, where="alert.")
    if not valid_name(rule):  # (an index holds it: PostgreSQL refuses rows over ~2.7 KB)
        raise _RejectError(
            "field", f"alert.rule {rule[:80]!r} is not a rule name ({contract.NAME_PATTERN})"
        )
    return Alert(
        id=alert_id,
        rule=rule,
        at=_time(obj, "at", "alert."),
        body=obj,
    )


def _contact(obj: dict[str, Any]) -> Contact:
    contact_id = _id(obj, "id", "contact.")
    tags = _field(obj, "tags", list, where="contact.")
    if not all(isinstance(t, str) and "\x00" not in t for t in tags):
        raise _RejectError("field", "contact.tags must be strings")
    events = []
    for i, raw in enumerate(_field(obj, "events", list, where="contact.")):
        if not isinstance(raw, dict):
            raise _RejectError("field", f"contact.events[{i}] is not an object")
        event = _event(raw, f"contact.events[{i}].")
        if event.contact_id != contact_id:
            raise _RejectError(
                "mismatch", f"contact.events[{i}] names contact {event.contact_id!r}"
            )
        events.append(event)
    clip = obj.get("clip")
    if clip is not None and not isinstance(clip, dict):
        raise _RejectError("field", "contact.clip is neither an object nor null")
    return Contact(
        id=contact_id,
        start=_time(obj, "start", "contact."),
        end=_time(obj, "end", "contact."),
        duration_s=_field(obj, "duration_s", float, where="contact."),
        ended_by=_field(obj, "ended_by", str, where="contact."),
        mode=_field(obj, "mode", str, where="contact."),
        tags=tuple(tags),
        events=tuple(events),
        clip=clip,
        clock_synced=_field(obj, "clock_synced", bool, where="contact."),
        boot_id=_field(obj, "boot_id", str, where="contact."),
        video_url=_field(obj, "video_url", str, where="contact.") if "video_url" in obj else None,
        staff=_staff(obj),
        clip_missing=_optional(obj, "clip_missing", str, where="contact."),
        clock_stepped=_optional(obj, "clock_stepped", bool, where="contact.") is True,
    )


def _staff(obj: dict[str, Any]) -> str | None:
    """The optional ``contact.staff``: a name of at most 64 characters, or null."""
    if obj.get("staff") is None:
        return None
    name: str = _field(obj, "staff", str, where="contact.")
    if not 0 < len(name) <= MAX_STAFF_CHARS:
        raise _RejectError("field", f"contact.staff must be 1..{MAX_STAFF_CHARS} characters")
    return name


def _today(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The optional ``status.today``: an object of at most 64 numbers, strings, booleans or
    nulls (the live counters); kept as sent."""
    if "today" not in obj:
        return None
    today = _field(obj, "today", dict, where="status.")
    if len(today) > MAX_TODAY_KEYS:
        raise _RejectError("too_large", f"status.today has {len(today)} keys > {MAX_TODAY_KEYS}")
    for key, value in today.items():
        if value is not None and not isinstance(value, int | float | str | bool):
            raise _RejectError("field", f"status.today.{key[:64]} is not a number or string")
        if isinstance(value, str):
            _field(today, key, str, where="status.today.")
    return dict(today)


def _delivery(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The optional ``status.delivery``: the device's delivery counts (docs/WIRE.md, "Delivery
    receipts"), an object of at most 16 integers or booleans; kept as sent."""
    if "delivery" not in obj:
        return None
    delivery = _field(obj, "delivery", dict, where="status.")
    if len(delivery) > 16:
        raise _RejectError("too_large", f"status.delivery has {len(delivery)} keys > 16")
    for key, value in delivery.items():
        if not isinstance(value, int | bool):
            raise _RejectError("field", f"status.delivery.{key[:64]} is not a count")
    return dict(delivery)


def _status(obj: dict[str, Any]) -> Status:
    return Status(
        online=_field(obj, "online", bool, where="status."),
        version=_field(obj, "version", str, where="status."),
        boot_id=_field(obj, "boot_id", str, where="status."),
        outbox_depth=_field(obj, "outbox_depth", int, where="status."),
        free_disk_bytes=_field(obj, "free_disk_bytes", int, where="status."),
        clock_synced=_field(obj, "clock_synced", bool, where="status."),
        at=_time(obj, "at", "status."),
        alarms=tuple(
            (
                _field(a, "kind", str, where="status.alarms[]."),
                _field(a, "count", int, where="status.alarms[]."),
                _field(a, "detail", str, where="status.alarms[]."),
            )
            for a in _health_list(obj, "alarms")
        ),
        faults=tuple(
            (
                _field(f, "part", str, where="status.faults[]."),
                _field(f, "detail", str, where="status.faults[]."),
            )
            for f in _health_list(obj, "faults")
        ),
        today=_today(obj),
        delivery=_delivery(obj),
    )


def _health_list(obj: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """An optional list of objects in a status (``alarms``, ``faults``); [] when absent."""
    if key not in obj:
        return []
    items = obj[key]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _RejectError("field", f"field status.{key!r} is not a list of objects")
    if len(items) > MAX_HEALTH_ITEMS:
        raise _RejectError("too_large", f"status.{key} has {len(items)} items > {MAX_HEALTH_ITEMS}")
    return items


def _parse_chunk(site: str, device: str, frame: bytes) -> Chunk:
    if len(frame) > MAX_FRAME_BYTES:
        raise _RejectError("too_large", f"chunk frame of {len(frame)} bytes > {MAX_FRAME_BYTES}")
    prefix = contract.CHUNK_PREFIX_BYTES
    if len(frame) < prefix or frame[: len(CHUNK_MAGIC)] != CHUNK_MAGIC:
        raise _RejectError("frame", f"not a {CHUNK_MAGIC.decode()} chunk frame")
    (length,) = contract.CHUNK_LENGTH.unpack(frame[len(CHUNK_MAGIC) : prefix])
    if length > MAX_HEADER_BYTES or prefix + length > len(frame):
        raise _RejectError("frame", f"header length {length} does not fit the frame")
    header = _json_object(frame[prefix : prefix + length])
    data = frame[prefix + length :]
    msg_id = _field(header, "msg_id", str)
    _envelope(header, site, device, contract.CLIP_CHUNK)
    clip_id = _id(header, "clip_id")
    seq = _field(header, "seq", int)
    total = _field(header, "total", int)
    offset = _field(header, "offset", int)
    size = _field(header, "size", int)
    clip_bytes = _field(header, "clip_bytes", int)
    if msg_id != contract.chunk_msg_id(clip_id, seq):
        raise _RejectError("id", f"chunk msg_id {msg_id[:80]!r} is not '<clip_id>.<seq>'")
    if clip_bytes > MAX_CLIP_BYTES or total > min(MAX_CHUNKS, max(clip_bytes, 1)):
        raise _RejectError(
            "too_large",
            f"clip of {clip_bytes} bytes in {total} chunks: allowed 1..{MAX_CLIP_BYTES} bytes "
            f"in 1..{MAX_CHUNKS} chunks, at most one chunk per byte",
        )
    if not (0 <= seq < total and offset >= 0 and 0 <= size <= MAX_CHUNK_BYTES):
        raise _RejectError("field", f"chunk seq {seq} of {total}, offset {offset}, size {size}")
    if offset + size > clip_bytes:
        raise _RejectError(
            "field", f"chunk {seq} ends at {offset + size} past clip_bytes {clip_bytes}"
        )
    codec = _field(header, "codec", str)
    if codec not in EXTENSIONS:
        raise _RejectError("field", f"unknown codec {codec[:32]!r}")
    sample_rate = _field(header, "sample_rate", int)
    if not 0 < sample_rate <= MAX_SAMPLE_RATE:
        raise _RejectError("field", f"sample_rate {sample_rate} is not 1..{MAX_SAMPLE_RATE}")
    hashes = [_field(header, k, str) for k in ("chunk_sha256", "clip_sha256")]
    if not all(contract.valid_sha256(h) for h in hashes):
        raise _RejectError("field", "chunk_sha256 and clip_sha256 must be 64 hex digits")
    return Chunk(
        msg_id=msg_id,
        device=device,
        site=site,
        clip_id=clip_id,
        seq=seq,
        total=total,
        offset=offset,
        size=size,
        chunk_sha256=hashes[0],
        clip_sha256=hashes[1],
        clip_bytes=clip_bytes,
        codec=codec,
        sample_rate=sample_rate,
        data=data,
    )


def listed(
    contact: Mapping[str, Any], *, device: str, site: str, audio: str | None
) -> dict[str, Any]:
    """A contact as ``sink contacts --json`` prints it: the wire object plus where it came from
    and the verified clip file (None while the clip is incomplete)."""
    return {**contact, "device": device, "site": site, "audio": audio}
