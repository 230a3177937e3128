"""Routing by tag: contacts (and alerts) delivered to Telegram, FTP/FTPS, e-mail, webhooks and
MQTT topics, by the rules of the ``[routes]`` config section.

Routes run on the device, from the device's store: a contact's deliveries, chosen by the core
(:func:`plan_routes`), are rows of the route queue written in the transaction that stores the
contact, so nothing is lost to a power cut or a dead link, and the clips never have to leave
the device for anyone but their destinations. One worker per destination drains its queue
(:mod:`edge.routes.worker`); MQTT destinations are outbox rows, published and acknowledged
like everything else the device sends.
"""

from edge.routes._base import (
    Refused,
    RetryLater,
    Route,
    RouteConfigError,
    Secret,
    SlidingWindow,
    TokenBucket,
    read_secret,
)
from edge.routes.plan import destinations, for_alert, for_contact, plan_routes
from edge.routes.worker import RouteRunner, RouteWorker, WorkerStats, build_routes

__all__ = [
    "Refused",
    "RetryLater",
    "Route",
    "RouteConfigError",
    "RouteRunner",
    "RouteWorker",
    "Secret",
    "SlidingWindow",
    "TokenBucket",
    "WorkerStats",
    "build_routes",
    "destinations",
    "for_alert",
    "for_contact",
    "plan_routes",
    "read_secret",
]
