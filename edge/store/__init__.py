"""The device's local store: SQLite through peewee, numbered migrations, and the outbox.

A finished contact is written in one transaction with its events, tags, clip metadata and the
outbox rows that will carry it off the device; the publisher drains the outbox in ``seq`` order.
"""

from peewee import IntegrityError

from edge.store.db import PRAGMAS, Store, StoreError, connect
from edge.store.migrations import MIGRATIONS, Migration, SchemaError, migrate, schema_version
from edge.store.outbox import AwaitingRow, Delivered, Outbox, OutboxRow
from edge.store.route_queue import RouteCounts, RouteQueue, RouteRow

__all__ = [
    "MIGRATIONS",
    "PRAGMAS",
    "AwaitingRow",
    "Delivered",
    "IntegrityError",
    "Migration",
    "Outbox",
    "OutboxRow",
    "RouteCounts",
    "RouteQueue",
    "RouteRow",
    "SchemaError",
    "Store",
    "StoreError",
    "connect",
    "migrate",
    "schema_version",
]
