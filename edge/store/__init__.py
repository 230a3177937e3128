"""The device's local store: SQLite through peewee, numbered migrations, and the outbox.

A finished contact is written in one transaction with its events, tags, clip metadata, the
outbox rows that will carry it off the device and its route deliveries; the publisher drains
the outbox in ``seq`` order. The store only persists what it is given: which destinations get
a contact is the core's decision (edge/routes/plan.py).
"""

from peewee import IntegrityError

from edge.store.db import PRAGMAS, Store, StoreError, connect
from edge.store.migrations import MIGRATIONS, Migration, SchemaError, migrate, schema_version
from edge.store.outbox import AwaitingRow, Delivered, Outbox, OutboxRow
from edge.store.route_queue import RouteCounts, RouteQueue, RouteRow
from edge.store.storable import check_json, check_record, clean_contact, clean_event

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
    "check_json",
    "check_record",
    "clean_contact",
    "clean_event",
    "connect",
    "migrate",
    "schema_version",
]
