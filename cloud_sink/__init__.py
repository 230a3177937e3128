"""The central side: MQTT ingest of the devices' contacts, events, status and clips.

Data flow: ``wire`` (parse by schema version) → ``consumer`` (paho-mqtt, ack after commit) →
``ingest`` (idempotent upserts, one transaction per message) → ``db`` / ``models`` /
``migrations`` (SQLite or PostgreSQL) and ``storage`` (clip files) → ``cli``.
"""

from cloud_sink.consumer import Sink, SinkConfig
from cloud_sink.db import open_database
from cloud_sink.ingest import ClipKey, Ingest, Outcome, ResendRequest, Result
from cloud_sink.migrations import MIGRATIONS, SchemaError, migrate

__all__ = [
    "MIGRATIONS",
    "ClipKey",
    "Ingest",
    "Outcome",
    "ResendRequest",
    "Result",
    "SchemaError",
    "Sink",
    "SinkConfig",
    "migrate",
    "open_database",
]
