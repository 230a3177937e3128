"""The wire, device side: the device's records as the payloads of the contract.

Topics, message kinds, payload shapes, the schema version and the limits are defined once, in
:mod:`contract.wire` (shared with the sink); this module turns the device's records into those
payloads (typed with the contract's TypedDicts), frames clip chunks, and reads the sink's
commands (``cmd/resend``). The names of the contract a device module needs are re-exported
here. The contact object is also what ``contactpoint contacts --json`` prints, so the local
view and the wire agree.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from contract import wire as contract
from contract.alerts import Firing
from contract.wire import (
    CHUNK_MAGIC,
    SCHEMA,
    SITE_SCOPE,
    alert_topic,
    chunk_count,
    clip_topic,
    iso,
    resend_topic,
    route_topic,
    topic,
)
from edge.clock import NS
from edge.records import ClipInfo, ContactRecord, EventRecord, OutboxMessage

#: the contract's names a device module reads from here (defined in contract/wire.py)
__all__ = [
    "CHUNK_MAGIC",
    "SCHEMA",
    "SITE_SCOPE",
    "ClipRef",
    "alert_json",
    "alert_message",
    "alert_topic",
    "chunk_count",
    "chunk_frame",
    "clip_json",
    "clip_message",
    "clip_ref",
    "clip_topic",
    "contact_json",
    "contact_message",
    "discovery_topic",
    "encode_json",
    "event_json",
    "event_message",
    "iso",
    "parse_resend",
    "resend_topic",
    "route_message",
    "route_topic",
    "status_payload",
    "topic",
]


def event_json(rec: EventRecord) -> contract.EventBody:
    out: contract.EventBody = {"id": rec.id, "kind": rec.kind, "at": iso(rec.wall_ns)}
    # the optional keys, each only when there is a value
    if rec.contact_id is not None:
        out["contact_id"] = rec.contact_id
    if rec.button is not None:
        out["button"] = rec.button
    if rec.role is not None:
        out["role"] = rec.role
    if rec.gesture is not None:
        out["gesture"] = rec.gesture
    if rec.duration_ns is not None:
        out["duration_s"] = round(rec.duration_ns / NS, 3)
    if rec.question is not None:
        out["question"] = rec.question
    if rec.via is not None:
        out["via"] = rec.via
    if rec.receipt_id:
        out["receipt_id"] = rec.receipt_id
    if rec.video_url is not None:
        out["video_url"] = rec.video_url
    if rec.staff is not None:  # outside a contact only: who was on duty
        out["staff"] = rec.staff
    if rec.data:
        out["data"] = rec.data
    return out


def clip_json(clip: ClipInfo, start_wall_ns: int, end_wall_ns: int) -> contract.ClipMeta:
    return {
        "path": clip.path,
        "start": iso(start_wall_ns),
        "end": iso(end_wall_ns),
        "codec": clip.codec,
        "sample_rate": clip.sample_rate,
        "start_index": clip.start_index,
        "end_index": clip.end_index,
        "duration_s": round(clip.samples / clip.sample_rate, 4),
        "sha256": clip.sha256,
        "bytes": clip.bytes,
        "truncated": clip.truncated,
        "gaps": [[a, b] for a, b in clip.gaps],
        "missing_s": round(clip.missing_samples / clip.sample_rate, 4),
    }


def contact_json(rec: ContactRecord) -> contract.ContactBody:
    offset = rec.start_wall_ns - rec.start_ns  # the wall clock of this contact's boot session
    clip = None
    if rec.clip is not None:
        clip = clip_json(rec.clip, rec.clip.start_ns + offset, rec.clip.end_ns + offset)
    out: contract.ContactBody = {
        "id": rec.id,
        "start": iso(rec.start_wall_ns),
        "end": iso(rec.end_wall_ns),
        "duration_s": round((rec.end_ns - rec.start_ns) / NS, 3),
        "ended_by": rec.ended_by,
        "mode": rec.mode,
        "tags": list(rec.tags),
        "events": [event_json(e) for e in rec.events],
        "clip": clip,
        "clock_synced": rec.clock_synced,
        "boot_id": rec.boot_id,
        "staff": rec.staff,  # who served the contact (edge.staff); null: unknown
    }
    if rec.video_url is not None:
        out["video_url"] = rec.video_url
    if rec.clip is None and rec.clip_missing is not None:  # optional: why there is no clip
        out["clip_missing"] = rec.clip_missing
    if rec.clock_stepped:  # optional: the wall clock was stepped while synchronised
        out["clock_stepped"] = True
    return out


def _envelope(kind: str, device: str, site: str) -> contract.Envelope:
    return contract.envelope(kind, device=device, site=site, msg_id=uuid.uuid4().hex)


def _row(kind: str, ref: str, payload: contract.Envelope) -> OutboxMessage:
    """An outbox row; its payload is stored and sent as plain JSON."""
    return OutboxMessage(payload["msg_id"], kind, ref, cast(dict[str, Any], payload))


def contact_message(rec: ContactRecord, device: str, site: str) -> OutboxMessage:
    payload: contract.ContactMessage = {
        **_envelope(contract.CONTACT, device, site),
        "contact": contact_json(rec),
    }
    return _row(contract.CONTACT, rec.id, payload)


def event_message(rec: EventRecord, device: str, site: str) -> OutboxMessage:
    payload: contract.EventMessage = {
        **_envelope(contract.EVENT, device, site),
        "event": event_json(rec),
    }
    return _row(contract.EVENT, rec.id, payload)


def clip_message(clip: ClipInfo, device: str, site: str) -> OutboxMessage:
    """The outbox row that makes the publisher send a clip's file in chunks (after its
    contact, since rows leave in order). The row never travels as it is: its ``clip`` object
    is the device's own (:func:`clip_ref` reads it)."""
    payload: dict[str, Any] = {
        **_envelope(contract.CLIP, device, site),
        "clip": {
            "clip_id": clip.contact_id,
            "path": clip.path,
            "sha256": clip.sha256,
            "bytes": clip.bytes,
            "codec": clip.codec,
            "sample_rate": clip.sample_rate,
        },
    }
    return OutboxMessage(payload["msg_id"], contract.CLIP, clip.contact_id, payload)


def chunk_frame(
    *,
    device: str,
    site: str,
    clip_id: str,
    seq: int,
    total: int,
    offset: int,
    data: bytes,
    clip_sha256: str,
    clip_bytes: int,
    codec: str,
    sample_rate: int,
) -> bytes:
    """One clip chunk as it travels: magic, header length, JSON header, raw bytes."""
    header: contract.ChunkHeader = {
        **contract.envelope(
            contract.CLIP_CHUNK,
            device=device,
            site=site,
            msg_id=contract.chunk_msg_id(clip_id, seq),
        ),
        "clip_id": clip_id,
        "seq": seq,
        "total": total,
        "offset": offset,
        "size": len(data),
        "chunk_sha256": hashlib.sha256(data).hexdigest(),
        "clip_sha256": clip_sha256,
        "clip_bytes": clip_bytes,
        "codec": codec,
        "sample_rate": sample_rate,
    }
    return contract.frame(header, data)


def status_payload(
    *,
    device: str,
    site: str,
    online: bool,
    version: str,
    boot_id: str,
    outbox_depth: int,
    free_disk_bytes: int,
    clock_synced: bool,
    at_wall_ns: int,
    health: dict[str, Any] | None = None,
    today: dict[str, Any] | None = None,
    delivery: dict[str, Any] | None = None,
) -> contract.StatusMessage:
    payload: contract.StatusMessage = {
        **_envelope(contract.STATUS, device, site),
        "status": {
            "online": online,
            "version": version,
            "boot_id": boot_id,
            "outbox_depth": outbox_depth,
            "free_disk_bytes": free_disk_bytes,
            "clock_synced": clock_synced,
            "at": iso(at_wall_ns),
        },
    }
    if today is not None:  # optional: today's live counters (edge.live.TodayCounters)
        payload["status"]["today"] = today
    if delivery is not None:  # optional: sent / delivered counts (delivery_status)
        payload["status"]["delivery"] = delivery
    if health:  # optional: "alarms" and "faults" (edge.health), only when there are any
        if health.get("alarms"):
            payload["status"]["alarms"] = health["alarms"]
        if health.get("faults"):
            payload["status"]["faults"] = health["faults"]
    return payload


def alert_json(firing: Firing, text: str) -> contract.AlertBody:
    """An alert (:mod:`edge.alerts`): which rule fired, when, over which window and items."""
    return contract.alert_body(firing, text)


def alert_message(firing: Firing, text: str, device: str, site: str) -> OutboxMessage:
    payload = contract.alert_message(
        firing, text, device=device, site=site, msg_id=uuid.uuid4().hex
    )
    return _row(contract.ALERT, firing.id, payload)


def discovery_topic(prefix: str, component: str, device: str, object_id: str) -> str:
    """Home Assistant MQTT discovery: ``<prefix>/<component>/<device>/<object_id>/config`` (the
    device id as Home Assistant's node id: the broker's ACL grants a device only its own)."""
    return f"{prefix}/{component}/{device}/{object_id}/config"


def encode_json(payload: dict[str, Any] | contract.Envelope) -> bytes:
    """A JSON message as it travels: compact UTF-8."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class ClipRef:
    """What the publisher needs to send a clip's file in chunks."""

    clip_id: str
    path: str  # relative to the data directory
    sha256: str
    bytes: int
    codec: str
    sample_rate: int


def clip_ref(payload: dict[str, Any]) -> ClipRef:
    """The clip named by a ``clip`` outbox row (:func:`clip_message`); ValueError if malformed."""
    body = payload.get("clip")
    if not isinstance(body, dict):
        raise ValueError("clip row without a 'clip' object")
    try:
        ref = ClipRef(
            clip_id=str(body["clip_id"]),
            path=str(body["path"]),
            sha256=str(body["sha256"]),
            bytes=int(body["bytes"]),
            codec=str(body["codec"]),
            sample_rate=int(body["sample_rate"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed clip row: {exc!r}") from None
    if ref.bytes < 0:
        raise ValueError(f"malformed clip row: negative size {ref.bytes}")
    return ref


def parse_resend(data: bytes) -> tuple[str, list[tuple[int, int]]]:
    """A ``cmd/resend`` request (:class:`contract.wire.ResendRequest`): ``{"clip_id": str,
    "ranges": [[first, last], ...]}`` (inclusive ranges of chunk seqs), or the older
    ``{"clip_id": str, "seqs": [int, ...]}``; ``ranges`` wins when both are there. Returns the
    clip id and the ranges; ValueError if malformed."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"resend request is not JSON: {exc}") from None
    except RecursionError:
        raise ValueError("resend request is not JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise ValueError("resend request is not a JSON object")
    request = cast(contract.ResendRequest, body)  # (its keys; every value is checked below)
    clip_id = request.get("clip_id")
    if not isinstance(clip_id, str) or not clip_id:
        raise ValueError("resend request without a 'clip_id' string")

    def is_seq(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if "ranges" in request:
        ranges: Any = request["ranges"]
        if not isinstance(ranges, list) or not all(
            isinstance(r, list) and len(r) == 2 and is_seq(r[0]) and is_seq(r[1]) and r[0] <= r[1]
            for r in ranges
        ):
            raise ValueError(
                "resend request 'ranges' must be a list of [first, last] pairs of chunk "
                "numbers with first <= last"
            )
        return clip_id, [(r[0], r[1]) for r in ranges]
    seqs: Any = request.get("seqs")
    if not isinstance(seqs, list) or not all(is_seq(s) for s in seqs):
        raise ValueError("resend request without 'ranges' or a 'seqs' list of chunk numbers")
    return clip_id, [(s, s) for s in seqs]


# --- delivery receipts (docs/WIRE.md) ---------------------------------------------------------

#: the outbox row kinds the sink confirms with a receipt; a ``route`` row (for managers, not the
#: sink) is delivered when the broker acknowledges it
RECEIPT_KINDS = contract.RECEIPT_KINDS
MAX_RECEIPT_BYTES = contract.MAX_RECEIPT_BYTES
MAX_RECEIPT_IDS = contract.MAX_RECEIPT_IDS
_HEX32 = frozenset("0123456789abcdef")


def receipt_topic(site: str, device: str) -> str:
    """Where the sink confirms what it stored: only this device reads it, only the sink writes
    it (the ACL of provisioning/identity.py)."""
    return contract.receipt_topic(site, device)


def receipt_key(kind: str, msg_id: str, ref: str) -> str | None:
    """What a receipt names for an outbox row: its msg_id, ``clip:<clip id>`` for a clip row
    (the sink confirms a clip as a whole, once verified), None when no receipt comes."""
    if kind == contract.CLIP:
        return f"clip:{ref}"
    return msg_id if kind in RECEIPT_KINDS else None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A parsed ``cmd/delivered`` message: what the sink committed."""

    msg_ids: tuple[str, ...]
    clip_ids: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        """The :func:`receipt_key` of every row it confirms."""
        return [*self.msg_ids, *(f"clip:{c}" for c in self.clip_ids)]


def parse_receipt(data: bytes, *, device: str, site: str) -> Receipt:
    """A ``cmd/delivered`` message ``{"schema": 1, "kind": "delivered", "device", "site",
    "msg_ids": [32 hex ...], "clips": [32 hex ...]}``; ValueError naming what is wrong."""
    if len(data) > MAX_RECEIPT_BYTES:
        raise ValueError(f"receipt of {len(data)} bytes > {MAX_RECEIPT_BYTES}")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"receipt is not JSON: {exc}") from None
    except RecursionError:
        raise ValueError("receipt is not JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise ValueError("receipt is not a JSON object")
    if body.get("schema") != SCHEMA or body.get("kind") != contract.DELIVERED_KIND:
        raise ValueError(
            f"receipt with schema {str(body.get('schema'))[:20]!r} and kind "
            f"{str(body.get('kind'))[:20]!r}: expected {SCHEMA} and 'delivered'"
        )
    if body.get("device") != device or body.get("site") != site:
        raise ValueError(
            f"receipt for {str(body.get('site'))[:64]!r}/{str(body.get('device'))[:64]!r}, "
            f"this is {site}/{device}"
        )
    ids: dict[str, tuple[str, ...]] = {}
    for key in ("msg_ids", "clips"):
        value = body.get(key, [])
        if not isinstance(value, list) or len(value) > MAX_RECEIPT_IDS:
            raise ValueError(f"receipt field {key!r} is not a list of at most {MAX_RECEIPT_IDS}")
        if not all(isinstance(v, str) and len(v) == 32 and set(v) <= _HEX32 for v in value):
            raise ValueError(f"receipt field {key!r} holds something that is not 32 hex digits")
        ids[key] = tuple(value)
    return Receipt(ids["msg_ids"], ids["clips"])


def delivery_status(
    *,
    receipts: bool,
    sent: int,
    delivered: int,
    awaiting: int,
    held: int,
    resent: int,
    given_up: int,
) -> dict[str, Any]:
    """``status.delivery``: whether this device waits for receipts (the contract it speaks);
    the rows the broker acknowledged and the sink confirmed since the daemon started; the rows
    waiting for a receipt now, of which late but held (nothing says they were lost: the broker
    holds them for a sink that is away or busy) and given up for now; rows sent again."""
    return {
        "receipts": receipts,
        "sent": sent,
        "delivered": delivered,
        "awaiting": awaiting,
        "held": held,
        "resent": resent,
        "given_up": given_up,
    }


def route_message(
    name: str, about: str, ref: str, body: Mapping[str, Any], *, device: str, site: str
) -> OutboxMessage:
    """An outbox row the publisher sends on :func:`route_topic`: the routed contact or alert
    (``about``) under its own key, e.g. ``{"route": "managers", "about": "contact",
    "contact": {...}}``."""
    payload: dict[str, Any] = {
        **_envelope(contract.ROUTE, device, site),
        about: body,
        "route": name,
        "about": about,
    }
    return OutboxMessage(payload["msg_id"], contract.ROUTE, ref, payload)
