"""The till's input: receipt (sale) events over HTTP on localhost.

A POS integration reports a sale with one request::

    curl -X POST http://127.0.0.1:8765/receipt -H 'Content-Type: application/json' \\
         -d '{"id": "R-1042", "amount": 12.50}'

The body is optional (an empty POST is a sale with no details). Fields: ``id`` (string, at most
100 characters), ``amount`` (number >= 0), ``staff`` (string). The event is stamped with the
monotonic clock on arrival and answered ``202 {"accepted": true, ...}``; bad input gets ``400``
with a message naming the field. ``GET /health`` answers 200. The server binds to loopback by
default; it is an integration point for software on the same machine, not a network service.

Who is on duty (staff attribution, :mod:`edge.staff`)::

    curl -X POST http://127.0.0.1:8765/staff -H 'Content-Type: application/json' \\
         -d '{"name": "anna"}'
    curl -X DELETE http://127.0.0.1:8765/staff

``POST /staff`` says "anna is on duty now": from that moment contacts are attributed to her,
overriding the shift schedule (config section ``staff``) until the next shift change or until
``DELETE /staff`` clears the call (the schedule applies again). ``name`` is required: 1..64
characters, no control characters, no surrounding spaces. Both are stamped on arrival like
receipts and answered ``202``; bad input gets ``400`` naming the field.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge.clock import Clock
from edge.events import Receipt
from edge.staff import StaffCall, check_name

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024


def parse_receipt_body(body: bytes) -> dict[str, Any]:
    """Validate a receipt body; raise ValueError naming the field and the fix."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f'body is not JSON ({exc}); send an object like {{"id": "R-1"}}') from None
    if not isinstance(data, dict):
        raise ValueError(f"body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {"id", "amount", "staff"})
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; allowed: id, amount, staff")
    if "id" in data and (not isinstance(data["id"], str) or len(data["id"]) > 100):
        raise ValueError(f"id must be a string of at most 100 characters, got {data['id']!r}")
    if "amount" in data:
        amount = data["amount"]
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            raise ValueError(f"amount must be a number >= 0, got {amount!r}")
    if "staff" in data and (not isinstance(data["staff"], str) or len(data["staff"]) > 100):
        raise ValueError(f"staff must be a string of at most 100 characters, got {data['staff']!r}")
    return data


def parse_staff_body(body: bytes) -> str:
    """The name of a ``POST /staff`` body; raise ValueError naming the field and the fix."""
    try:
        data = json.loads(body) if body.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f'body is not JSON ({exc}); send {{"name": "anna"}}') from None
    if not isinstance(data, dict) or "name" not in data:
        raise ValueError('send a JSON object with a name, e.g. {"name": "anna"}')
    unknown = sorted(set(data) - {"name"})
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; allowed: name")
    try:
        return check_name(data["name"])
    except ValueError as exc:
        raise ValueError(f"name: {exc}") from None


class ReceiptServer:
    """Runs the HTTP endpoint on its own thread; ``on_receipt`` (and ``on_staff``, when given:
    without it ``/staff`` answers 404) must be thread-safe."""

    def __init__(
        self,
        host: str,
        port: int,
        clock: Clock,
        on_receipt: Callable[[Receipt], None],
        on_staff: Callable[[StaffCall], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_receipt = on_receipt
        self._on_staff = on_staff
        self.accepted = 0
        self.rejected = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health":
                    self._answer(200, {"ok": True, "accepted": server.accepted})
                else:
                    self._answer(404, {"error": f"no such path {self.path}; use POST /receipt"})

            def do_POST(self) -> None:
                if self.path == "/staff" and server._on_staff is not None:
                    self._staff(delete=False)
                    return
                if self.path != "/receipt":
                    self._answer(404, {"error": f"no such path {self.path}; use POST /receipt"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    server.rejected += 1
                    self._answer(413, {"error": f"body over {MAX_BODY} bytes"})
                    return
                t_ns = server._clock.monotonic_ns()
                try:
                    data = parse_receipt_body(self.rfile.read(length))
                except ValueError as exc:
                    server.rejected += 1
                    self._answer(400, {"error": str(exc)})
                    return
                receipt_id = str(data.pop("id", ""))
                server._on_receipt(Receipt(t_ns=t_ns, receipt_id=receipt_id, data=data))
                server.accepted += 1
                self._answer(202, {"accepted": True, "id": receipt_id})

            def do_DELETE(self) -> None:
                if self.path == "/staff" and server._on_staff is not None:
                    self._staff(delete=True)
                else:
                    self._answer(404, {"error": f"no such path {self.path}; use DELETE /staff"})

            def _staff(self, *, delete: bool) -> None:
                assert server._on_staff is not None
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    server.rejected += 1
                    self._answer(413, {"error": f"body over {MAX_BODY} bytes"})
                    return
                t_ns = server._clock.monotonic_ns()
                body = self.rfile.read(length)
                try:
                    name = None if delete else parse_staff_body(body)
                except ValueError as exc:
                    server.rejected += 1
                    self._answer(400, {"error": str(exc)})
                    return
                server._on_staff(StaffCall(t_ns=t_ns, name=name))
                self._answer(202, {"accepted": True, "on_duty": name})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("pos: " + format, *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="pos-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
