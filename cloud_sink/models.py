"""Query handles for the newest schema (the tables themselves are built by ``migrations``).

Rules:
- Tables are peewee ``Table`` objects bound to ONE database each (:func:`tables`), not Model
  classes: a Model binding is class-level state, and several sinks (each with its own database)
  may live in one process.
- Columns mirror the SQL of the migrations one to one (a test compares them).
- Booleans come back as ``int`` from SQLite and ``bool`` from PostgreSQL: read them with
  ``bool()``. JSON columns are TEXT written with :func:`to_json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from peewee import Database, Table

COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "devices": (
        "device", "site", "first_seen_ns", "last_seen_ns", "online", "version", "boot_id",
        "outbox_depth", "free_disk_bytes", "clock_synced", "status_at",
    ),
    "messages": ("device", "msg_id", "kind", "received_ns"),
    "contacts": (
        "device", "id", "site", "msg_id", "start_iso", "end_iso", "duration_s", "ended_by",
        "mode", "clip", "clock_synced", "boot_id", "received_ns", "video_url", "staff",
    ),
    "events": (
        "device", "id", "contact_id", "pos", "kind", "at_iso", "body", "received_ns",
    ),
    "tags": ("device", "contact_id", "pos", "tag"),
    "clips": (
        "device", "clip_id", "site", "codec", "sample_rate", "total", "clip_bytes",
        "clip_sha256", "first_seen_ns", "quiet_since_ns", "resend_requests", "complete", "path",
        "completed_ns", "audio_deleted_at", "location", "received_count", "received",
    ),
    "dead_letters": (
        "id", "topic", "reason", "detail", "head", "payload_bytes", "received_ns",
    ),
    "alerts": (
        "site", "scope", "id", "rule", "at_iso", "body", "received_ns", "published_ns",
        "device", "cleared_ns",
    ),
    "annotations": (
        "id", "device", "contact_id", "reason", "note", "by_name", "at_ns",
    ),
    "api_tokens": (
        "id", "token_sha256", "name", "role", "sites", "created_ns", "expires_ns", "revoked_ns",
    ),
    "api_users": ("name", "password_hash", "role", "sites", "created_ns", "changed_ns"),
    "api_sessions": ("id_sha256", "user_name", "csrf", "created_ns", "expires_ns"),
    "audit_log": ("id", "who", "action", "device", "contact_id", "site", "remote", "at_ns"),
    "transcripts": (
        "device", "clip_id", "state", "worker", "lease_until_ns", "attempts", "engine", "model",
        "language", "text", "words", "search_text", "audio_s", "elapsed_s", "error", "done_ns",
    ),
    "standard_checks": ("device", "contact_id", "rule", "passed", "tag", "checked_ns"),
    "standard_matches": (
        "device", "contact_id", "rule", "pos", "phrase", "heard", "start_s", "end_s", "score",
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Tables:
    db: Database
    devices: Any
    messages: Any
    contacts: Any
    events: Any
    tags: Any
    clips: Any
    dead_letters: Any
    alerts: Any
    annotations: Any
    api_tokens: Any
    api_users: Any
    api_sessions: Any
    audit_log: Any
    transcripts: Any
    standard_checks: Any
    standard_matches: Any


def tables(db: Database) -> Tables:
    """Handles for every table, bound to ``db``."""
    bound = {
        name: Table(name, columns, primary_key=None).bind(db) for name, columns in COLUMNS.items()
    }
    return Tables(db=db, **bound)


#: one encoder for every call (``json.dumps`` with options builds a new one each time)
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def to_json(value: Any) -> str:
    return _ENCODER.encode(value)


def from_json(text: str) -> Any:
    return json.loads(text)
