"""The wire contract, edge side: the ONLY place topics and payload field names are spelled.

Payloads are JSON objects carrying ``schema`` (the version), ``msg_id`` (our own id, so the
sink can deduplicate QoS 1 redeliveries), ``device`` and ``site``. The contact object is also
what ``contactpoint contacts --json`` prints, so the local view and the wire agree.

Topics: ``contactpoint/v1/<site>/<device>/<kind>``.
"""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge.alerts import Firing
from edge.clock import NS
from edge.records import ClipInfo, ContactRecord, EventRecord, OutboxMessage

SCHEMA = 1
TOPIC_ROOT = "contactpoint/v1"


def topic(site: str, device: str, kind: str) -> str:
    return f"{TOPIC_ROOT}/{site}/{device}/{kind}"


def iso(wall_ns: int) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-23T09:00:10.000Z``."""
    seconds, rest = divmod(wall_ns, NS)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1_000_000:03d}Z"


def event_json(rec: EventRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rec.id, "kind": rec.kind, "at": iso(rec.wall_ns)}
    optional = {
        "contact_id": rec.contact_id,
        "button": rec.button,
        "role": rec.role,
        "gesture": rec.gesture,
        "duration_s": None if rec.duration_ns is None else round(rec.duration_ns / NS, 3),
        "question": rec.question,
        "via": rec.via,
        "receipt_id": rec.receipt_id or None,
        "video_url": rec.video_url,
        "staff": rec.staff,  # outside a contact only: who was on duty
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if rec.data:
        out["data"] = rec.data
    return out


def clip_json(clip: ClipInfo, start_wall_ns: int, end_wall_ns: int) -> dict[str, Any]:
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


def contact_json(rec: ContactRecord) -> dict[str, Any]:
    offset = rec.start_wall_ns - rec.start_ns  # the wall clock of this contact's boot session
    clip = None
    if rec.clip is not None:
        clip = clip_json(rec.clip, rec.clip.start_ns + offset, rec.clip.end_ns + offset)
    out = {
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
    return out


def _envelope(kind: str, device: str, site: str, body_key: str, body: Any) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "msg_id": uuid.uuid4().hex,
        "kind": kind,
        "device": device,
        "site": site,
        body_key: body,
    }


def contact_message(rec: ContactRecord, device: str, site: str) -> OutboxMessage:
    payload = _envelope("contact", device, site, "contact", contact_json(rec))
    return OutboxMessage(payload["msg_id"], "contact", rec.id, payload)


def event_message(rec: EventRecord, device: str, site: str) -> OutboxMessage:
    payload = _envelope("event", device, site, "event", event_json(rec))
    return OutboxMessage(payload["msg_id"], "event", rec.id, payload)


def clip_message(clip: ClipInfo, device: str, site: str) -> OutboxMessage:
    """The outbox row that makes the publisher send a clip's file in chunks (after its
    contact, since rows leave in order)."""
    payload = _envelope(
        "clip",
        device,
        site,
        "clip",
        {
            "clip_id": clip.contact_id,
            "path": clip.path,
            "sha256": clip.sha256,
            "bytes": clip.bytes,
            "codec": clip.codec,
            "sample_rate": clip.sample_rate,
        },
    )
    return OutboxMessage(payload["msg_id"], "clip", clip.contact_id, payload)


CHUNK_MAGIC = b"CPC1"


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
    header = {
        "schema": SCHEMA,
        "msg_id": f"{clip_id}.{seq}",
        "kind": "clip_chunk",
        "device": device,
        "site": site,
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
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    return CHUNK_MAGIC + struct.pack(">I", len(raw)) + raw + data


def chunk_count(clip_bytes: int, chunk_bytes: int) -> int:
    return max(1, -(-clip_bytes // chunk_bytes))


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
) -> dict[str, Any]:
    payload = _envelope(
        "status",
        device,
        site,
        "status",
        {
            "online": online,
            "version": version,
            "boot_id": boot_id,
            "outbox_depth": outbox_depth,
            "free_disk_bytes": free_disk_bytes,
            "clock_synced": clock_synced,
            "at": iso(at_wall_ns),
        },
    )
    if today is not None:  # optional: today's live counters (edge.live.TodayCounters)
        payload["status"]["today"] = today
    if delivery is not None:  # optional: sent / delivered counts (delivery_status)
        payload["status"]["delivery"] = delivery
    if health:  # optional: "alarms" and "faults" (edge.health), only when there are any
        payload["status"].update(
            {key: health[key] for key in ("alarms", "faults") if health.get(key)}
        )
    return payload


def alert_json(firing: Firing, text: str) -> dict[str, Any]:
    """An alert (:mod:`edge.alerts`): which rule fired, when, over which window and items."""
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


def alert_message(firing: Firing, text: str, device: str, site: str) -> OutboxMessage:
    payload = _envelope("alert", device, site, "alert", alert_json(firing, text))
    return OutboxMessage(payload["msg_id"], "alert", firing.id, payload)


#: the device id slot of a site-level alert's topic (the sink publishes those)
SITE_SCOPE = "_site"


def discovery_topic(prefix: str, component: str, object_id: str) -> str:
    """Home Assistant MQTT discovery: ``<prefix>/<component>/<object_id>/config``."""
    return f"{prefix}/{component}/{object_id}/config"


def resend_topic(site: str, device: str) -> str:
    return topic(site, device, "cmd/resend")


def encode_json(payload: dict[str, Any]) -> bytes:
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


def parse_resend(data: bytes) -> tuple[str, list[int]]:
    """A ``cmd/resend`` request ``{"clip_id": str, "seqs": [int, ...]}``; ValueError if not."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"resend request is not JSON: {exc}") from None
    except RecursionError:
        raise ValueError("resend request is not JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise ValueError("resend request is not a JSON object")
    clip_id, seqs = body.get("clip_id"), body.get("seqs")
    if not isinstance(clip_id, str) or not clip_id:
        raise ValueError("resend request without a 'clip_id' string")
    if not isinstance(seqs, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in seqs
    ):
        raise ValueError("resend request without a 'seqs' list of integers")
    return clip_id, seqs


# --- delivery receipts (docs/WIRE.md) ---------------------------------------------------------

#: the outbox row kinds the sink confirms with a receipt; a ``route`` row (for managers, not the
#: sink) is delivered when the broker acknowledges it
RECEIPT_KINDS = frozenset({"contact", "event", "alert", "clip"})
MAX_RECEIPT_BYTES = 256 * 1024
MAX_RECEIPT_IDS = 4096
_HEX32 = frozenset("0123456789abcdef")


def receipt_topic(site: str, device: str) -> str:
    """Where the sink confirms what it stored: only this device reads it, only the sink writes
    it (the ACL of provisioning/identity.py)."""
    return topic(site, device, "cmd/delivered")


def receipt_key(kind: str, msg_id: str, ref: str) -> str | None:
    """What a receipt names for an outbox row: its msg_id, ``clip:<clip id>`` for a clip row
    (the sink confirms a clip as a whole, once verified), None when no receipt comes."""
    if kind == "clip":
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
    if body.get("schema") != SCHEMA or body.get("kind") != "delivered":
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


def route_topic(site: str, device: str, name: str) -> str:
    """A route destination of type mqtt (edge/routes): what managers subscribe to."""
    return topic(site, device, f"route/{name}")


def route_message(
    name: str, about: str, ref: str, body: dict[str, Any], *, device: str, site: str
) -> OutboxMessage:
    """An outbox row the publisher sends on :func:`route_topic`: the routed contact or alert
    (``about``) under its own key, e.g. ``{"route": "managers", "about": "contact",
    "contact": {...}}``."""
    payload = _envelope("route", device, site, about, body)
    payload["route"] = name
    payload["about"] = about
    return OutboxMessage(payload["msg_id"], "route", ref, payload)
