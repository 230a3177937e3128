"""A webhook: the contact or alert as JSON, POSTed, signed.

Headers: ``X-Contactpoint-Delivery: <delivery id>`` (the same on every retry: receivers
deduplicate by it) and, with a secret, ``X-Contactpoint-Signature: sha256=<hex HMAC-SHA256 of
the body>``. 2xx = delivered; 400/410/413/415/422 = refused for good (a dead letter); anything
else, or no answer, is retried (a 429's or 503's ``Retry-After`` in seconds is obeyed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from edge import __version__
from edge.config import WebhookRoute
from edge.routes import _http
from edge.routes._base import Refused, RetryLater, Route, Secret
from edge.routes._message import compose
from edge.store import RouteRow

SIGNATURE_HEADER = "X-Contactpoint-Signature"
DELIVERY_HEADER = "X-Contactpoint-Delivery"
REFUSED = frozenset({400, 410, 413, 415, 422})


def signature(key: bytes, body: bytes) -> str:
    """The ``X-Contactpoint-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def body_of(row: RouteRow, text: str, clip_url: str) -> bytes:
    payload = {
        "delivery_id": row.delivery_id,
        "destination": row.destination,
        "kind": row.kind,
        "device": row.payload.get("device"),
        "site": row.payload.get("site"),
        row.kind: row.payload.get(row.kind),
        "text": text,
        "clip_url": clip_url or None,
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class Webhook(Route):
    type = "webhook"

    def __init__(
        self, cfg: WebhookRoute, secret: Secret | None, data_dir: Path, clip_url: str
    ) -> None:
        super().__init__(cfg.name, (secret,) if secret else ())
        self.cfg = cfg
        self._secret = secret
        self._data_dir = data_dir
        self._clip_url = clip_url

    def send(self, row: RouteRow) -> None:
        out = compose(row, self._data_dir, self._clip_url)
        body = body_of(row, out.text(self.cfg.template, linked=True), out.fields["clip_url"])
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"contactpoint/{__version__}",
            DELIVERY_HEADER: row.delivery_id,
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret.reveal().encode(), body)
        reply = _http.post(
            self.cfg.url, body, headers, timeout_s=self.cfg.timeout_s, ca_file=self.cfg.ca_file
        )
        if 200 <= reply.status < 300:
            return
        what = (
            f"HTTP {reply.status} from {self.cfg.url}: {reply.body[:200].decode(errors='replace')}"
        )
        if reply.status in REFUSED:
            raise Refused(what)
        raise RetryLater(what, _http.retry_after(reply.headers))
