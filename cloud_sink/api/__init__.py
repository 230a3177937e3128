"""The sink's HTTP face: a JSON API (OpenAPI at /openapi.json), health, Prometheus metrics and
the managers' web page, on the sink's database (``contactpoint sink serve``).

``app`` (the factory, routes, errors) · ``accounts`` (roles, tokens, users, sessions, audit) ·
``queries`` (scoped reads) · ``web`` (pages, templates/, static/) · ``cli`` (serve, token, user).
"""

from cloud_sink.api.accounts import ROLES, Principal
from cloud_sink.api.app import create_app
from cloud_sink.api.settings import ApiSettings

__all__ = ["ROLES", "ApiSettings", "Principal", "create_app"]
