"""The till's input: receipt (sale) events over HTTP on localhost.

A POS integration reports a sale with one request::

    curl -X POST http://127.0.0.1:8765/receipt -H 'Content-Type: application/json' \\
         -d '{"id": "R-1042", "amount": 12.50}'

The body is optional (``Content-Length: 0`` is a sale with no details). Fields: ``id`` (string,
at most 100 characters), ``amount`` (a finite number from 0 to 1e12), ``staff`` (string, at most
100 characters); text must be valid Unicode (no unpaired surrogates such as ``"\\ud800"``). The
event is stamped with the monotonic clock on arrival and answered ``202 {"accepted": true,
...}``; bad input gets ``400`` with a message naming the field. ``GET /health`` answers 200. The
server binds to loopback by default; it is an integration point for software on the same
machine, not a network service.

Limits (a misbehaving client never stops the till's other requests nor the device):
- a body needs ``Content-Length``: missing (or chunked) ``411``, not a whole number ``400``,
  over 64 KiB ``413``; nothing is read beyond it;
- a whole request (head and body) must arrive within ``timeout_s`` (10 s): a stalled body gets
  ``408``, a client that trickles its head is disconnected;
- at most ``max_connections`` (16) connections at once; more get ``503`` at once.

Who is on duty (staff attribution, :mod:`edge.staff`)::

    curl -X POST http://127.0.0.1:8765/staff -H 'Content-Type: application/json' \\
         -d '{"name": "anna"}'
    curl -X DELETE http://127.0.0.1:8765/staff

``POST /staff`` says "anna is on duty now": from that moment contacts are attributed to her,
overriding the shift schedule (config section ``staff``) until the next shift change or until
``DELETE /staff`` clears the call (the schedule applies again). ``name`` is required: 1..64
characters, no control characters, no surrounding spaces. Both are stamped on arrival like
receipts and answered ``202``; bad input gets ``400`` naming the field.

A CRM's events for a later ``contactpoint import`` (when the runtime gives ``on_event``)::

    curl -X POST http://127.0.0.1:8765/event -H 'Content-Type: application/json' \\
         -d '{"id": "D-17", "time": "2026-11-24T14:32:10+03:00", "order_id": "ORD-117"}'

The body is one row of an events file as a JSON object, checked by the same code
(:func:`edge.importer.events.parse_row`). ``on_event`` stores it before the answer: ``201
{"stored": true, "new": true, "id": ...}``, or ``200`` with ``"new": false`` when its id was
posted before (nothing changes); a bad field ``400`` naming it, the value and the fix; a
store that cannot write ``503``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Never

from edge.clock import Clock
from edge.events import Receipt
from edge.staff import StaffCall, check_name

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
MAX_TEXT = 100  # characters of ``id`` and ``staff``
MAX_AMOUNT = 10**12
TIMEOUT_S = 10.0
MAX_CONNECTIONS = 16
_GRACE_S = 0.5
_LENGTH = re.compile(r"[0-9]{1,20}")
_MAX_INT_DIGITS = 30  # longer integer literals are not converted (a number nobody means)


class _HugeInt:
    """An integer literal too long to be anything a till means; refused by the field checks."""

    def __init__(self, digits: str) -> None:
        self.digits = len(digits.lstrip("-"))

    def __repr__(self) -> str:
        return f"an integer of {self.digits} digits"


def _parse_int(literal: str) -> int | _HugeInt:
    return _HugeInt(literal) if len(literal) > _MAX_INT_DIGITS else int(literal)


def _loads(body: bytes, example: str) -> Any:
    try:
        return json.loads(body, parse_int=_parse_int)
    except RecursionError:
        raise ValueError(f"body is nested too deeply; send a flat object like {example}") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"body is not JSON ({exc}); send an object like {example}") from None


def _surrogate(text: str) -> str | None:
    """The first unpaired surrogate in ``text`` (cannot be stored as UTF-8), spelled out."""
    for char in text:
        if "\ud800" <= char <= "\udfff":
            return f"\\u{ord(char):04x}"
    return None


def check_text(name: str, value: object, max_len: int = MAX_TEXT) -> str:
    """A text field: a string of at most ``max_len`` characters, valid Unicode."""
    if not isinstance(value, str) or len(value) > max_len:
        shown = value[:120] + "…" if isinstance(value, str) else value
        raise ValueError(f"{name} must be a string of at most {max_len} characters, got {shown!r}")
    bad = _surrogate(value)
    if bad is not None:
        raise ValueError(f"{name} contains an unpaired surrogate ({bad}); send valid Unicode text")
    return value


def check_amount(value: object) -> int | float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (isinstance(value, int) or math.isfinite(value))
        or not 0 <= value <= MAX_AMOUNT
    ):
        raise ValueError(
            f"amount must be a finite number from 0 to 1e12, got {value!r}; "
            'send e.g. {"amount": 12.5}'
        )
    return value


def parse_receipt_body(body: bytes) -> dict[str, Any]:
    """Validate a receipt body; raise ValueError naming the field and the fix."""
    if not body.strip():
        return {}
    data = _loads(body, '{"id": "R-1"}')
    if not isinstance(data, dict):
        raise ValueError(f"body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {"id", "amount", "staff"})
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        shown = [k[:40] for k in unknown[:5]]
        raise ValueError(f"unknown field(s) {shown}{more}; allowed: id, amount, staff")
    if "id" in data:
        check_text("id", data["id"])
    if "amount" in data:
        check_amount(data["amount"])
    if "staff" in data:
        check_text("staff", data["staff"])
    return data


def parse_event_body(body: bytes) -> dict[str, Any]:
    """The row of a ``POST /event`` body: a JSON object (its fields are checked by the events
    file's row checks, :func:`edge.importer.events.parse_row`)."""
    example = '{"time": "2026-11-24T14:32:10+03:00", "order_id": "ORD-1"}'
    try:
        data = json.loads(body) if body.strip() else None
    except RecursionError:
        raise ValueError(f"body is nested too deeply; send a flat object like {example}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an int of 4300+ digits
        raise ValueError(f"body is not JSON ({exc}); send an object like {example}") from None
    if not isinstance(data, dict):
        raise ValueError(f"send a JSON object with the event's fields, e.g. {example}")
    return data


def parse_staff_body(body: bytes) -> str:
    """The name of a ``POST /staff`` body; raise ValueError naming the field and the fix."""
    data = _loads(body, '{"name": "anna"}') if body.strip() else None
    if not isinstance(data, dict) or "name" not in data:
        raise ValueError('send a JSON object with a name, e.g. {"name": "anna"}')
    unknown = sorted(set(data) - {"name"})
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; allowed: name")
    name = data["name"]
    if isinstance(name, str):
        bad = _surrogate(name)
        if bad is not None:
            raise ValueError(
                f"name contains an unpaired surrogate ({bad}); send valid Unicode text"
            )
    try:
        return check_name(name)
    except ValueError as exc:
        raise ValueError(f"name: {exc}") from None


class _AnsweredError(Exception):
    """The request was answered with an error already."""


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once (more get 503 at once),
    each request cut off ``timeout_s`` after its connection was accepted while it is still
    being read (a slow-loris cannot hold a place for long)."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        timeout_s: float,
        max_connections: int,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._active = 0
        self._reading: dict[socket.socket, float] = {}  # connection -> deadline (monotonic)
        self.timed_out = 0
        self.refused = 0
        # the serving loop sleeps until a connection comes, a request's deadline or a byte
        # here (stop_serving): no poll interval (issue #13)
        self._wakeup = socket.socketpair()
        self._stopping = False
        super().__init__(address, handler)

    def serve(self) -> None:
        """Accept connections until :meth:`stop_serving` (``serve_forever`` without its poll
        interval): it sleeps in ``select`` on the listening socket and a wake-up socket, and
        wakes on time only for the deadline of a request still being read."""
        wake = self._wakeup[0]
        while not self._stopping:
            ready, _, _ = select.select([self.socket, wake], [], [], self._next_cut_off())
            if self._stopping:
                break
            if wake in ready:
                wake.recv(64)
            if self.socket in ready:
                self._accept()
            self.service_actions()

    def _accept(self) -> None:
        """Take one waiting connection and hand it to its thread (``process_request``)."""
        try:
            request, client_address = self.get_request()
        except OSError:  # the client gave up before the accept
            return
        try:
            self.process_request(request, client_address)
        except Exception:  # noqa: BLE001 - one connection's failure never stops the serving
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def stop_serving(self) -> None:
        """End :meth:`serve` (from another thread); it returns at once."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wakeup[1].send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        for end in self._wakeup:
            end.close()

    def _next_cut_off(self) -> float | None:
        """Seconds until the first request still being read is due to be cut off (None: no
        request is being read, nothing is due)."""
        with self._lock:
            if not self._reading:
                return None
            first = min(self._reading.values())
        return max(0.0, first + _GRACE_S - time.monotonic())

    @property
    def connections(self) -> int:
        with self._lock:
            return self._active

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = self._active >= self.max_connections
            if not full:
                self._active += 1
                self._reading[request] = time.monotonic() + self.timeout_s
        if full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self._done(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: socket.socket) -> None:
        with self._lock:
            self._active -= 1
            self._reading.pop(request, None)

    def read_done(self, request: socket.socket) -> None:
        """The request is in: answering it is not cut off."""
        with self._lock:
            self._reading.pop(request, None)

    def count_timeout(self) -> None:
        with self._lock:
            self.timed_out += 1

    def time_left(self, request: socket.socket) -> float:
        """Seconds until the request's deadline (at least a little)."""
        with self._lock:
            deadline = self._reading.get(request)
        return self.timeout_s if deadline is None else max(0.01, deadline - time.monotonic())

    def service_actions(self) -> None:
        """Between polls of the accept loop: cut off requests still being read a moment after
        their deadline (a read that stalls times out by itself at the deadline; this catches a
        client that trickles, never stalling one read long enough)."""
        now = time.monotonic() - _GRACE_S
        with self._lock:
            late = [conn for conn, deadline in self._reading.items() if deadline <= now]
            for conn in late:
                del self._reading[conn]
            self.timed_out += len(late)
        for conn in late:
            log.info("pos: request not complete within %g s, disconnected", self.timeout_s)
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # its thread's read returns at once

    def _refuse(self, request: socket.socket) -> None:
        self.refused += 1
        body = json.dumps(
            {"error": f"more than {self.max_connections} connections at once; try again shortly"}
        ).encode()
        head = (
            "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        try:
            request.settimeout(0.05)
            with contextlib.suppress(TimeoutError):  # take what the client sent already,
                request.recv(MAX_BODY)  # so that closing does not reset the answer
            request.sendall(head.encode() + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("pos: request from %s failed", client_address)


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
        *,
        on_event: Callable[[dict[str, Any]], tuple[str, bool]] | None = None,
        timeout_s: float = TIMEOUT_S,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._clock = clock
        self._on_receipt = on_receipt
        self._on_staff = on_staff
        self._on_event = on_event
        self._count_lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            # a backstop for every single read and write; the request's deadline comes first
            timeout = timeout_s + 2 * _GRACE_S

            def do_GET(self) -> None:
                httpd.read_done(self.connection)
                if self.path == "/health":
                    self._answer(200, {"ok": True, "accepted": server.accepted})
                else:
                    self._answer(
                        404, {"error": f"no such path {self.path[:100]}; use POST /receipt"}
                    )

            def do_POST(self) -> None:
                try:
                    if self.path == "/staff" and server._on_staff is not None:
                        self._staff(delete=False)
                    elif self.path == "/receipt":
                        self._receipt()
                    elif self.path == "/event" and server._on_event is not None:
                        self._event()
                    else:
                        self._reject(404, f"no such path {self.path[:100]}; use POST /receipt")
                except _AnsweredError:
                    pass

            def do_DELETE(self) -> None:
                try:
                    if self.path == "/staff" and server._on_staff is not None:
                        self._staff(delete=True)
                    else:
                        self._reject(404, f"no such path {self.path[:100]}; use DELETE /staff")
                except _AnsweredError:
                    pass

            def _receipt(self) -> None:
                t_ns = server._clock.monotonic_ns()
                body = self._body()
                try:
                    data = parse_receipt_body(body)
                except ValueError as exc:
                    self._reject(400, str(exc))
                receipt_id = str(data.pop("id", ""))
                server._on_receipt(Receipt(t_ns=t_ns, receipt_id=receipt_id, data=data))
                with server._count_lock:
                    server.accepted += 1
                self._answer(202, {"accepted": True, "id": receipt_id})

            def _event(self) -> None:
                if server._on_event is None:
                    raise RuntimeError("no event handler")
                body = self._body()
                try:
                    row = parse_event_body(body)
                    event_id, new = server._on_event(row)
                except ValueError as exc:  # a bad field: named by the row's own checks
                    self._reject(400, str(exc))
                except Exception as exc:  # noqa: BLE001 - the store cannot keep it now (a full disk): the CRM posts again
                    log.warning("pos: a posted event was not stored: %s", exc)
                    self._reject(503, f"the event was not stored ({exc}); post it again later")
                with server._count_lock:
                    server.accepted += 1
                self._answer(201 if new else 200, {"stored": True, "new": new, "id": event_id})

            def _staff(self, *, delete: bool) -> None:
                if server._on_staff is None:
                    raise RuntimeError("no staff handler")
                t_ns = server._clock.monotonic_ns()
                body = self._body()
                try:
                    name = None if delete else parse_staff_body(body)
                except ValueError as exc:
                    self._reject(400, str(exc))
                server._on_staff(StaffCall(t_ns=t_ns, name=name))
                self._answer(202, {"accepted": True, "on_duty": name})

            def _body(self) -> bytes:
                """The request body, exactly ``Content-Length`` bytes (raises _AnsweredError after
                answering when there is none to be had)."""
                lengths = self.headers.get_all("Content-Length") or []
                if not lengths:
                    if self.command == "DELETE" and "Transfer-Encoding" not in self.headers:
                        httpd.read_done(self.connection)
                        return b""
                    self._reject(
                        411,
                        "send a Content-Length header (Content-Length: 0 for no body); "
                        "chunked bodies are not accepted",
                    )
                if len(set(lengths)) > 1:
                    self._reject(400, f"send one Content-Length, got {lengths}")
                raw = lengths[0].strip()
                if not _LENGTH.fullmatch(raw):
                    self._reject(
                        400, f"Content-Length must be a whole number of bytes, got {raw[:40]!r}"
                    )
                length = int(raw)
                if length > MAX_BODY:
                    self._reject(413, f"body over {MAX_BODY} bytes ({length} announced)")
                # the read times out at the request's deadline: a stalled body gets its 408
                self.connection.settimeout(httpd.time_left(self.connection))
                try:
                    body = self.rfile.read(length)
                except OSError:  # TimeoutError, or cut off by the deadline
                    body = b""
                if len(body) < length:
                    httpd.count_timeout()
                    self._reject(
                        408,
                        f"body incomplete: {length} bytes announced, {len(body)} arrived "
                        f"within {timeout_s:g} s",
                    )
                httpd.read_done(self.connection)
                return body

            def _reject(self, status: int, error: str) -> Never:
                """Answer ``status`` and close the connection (a body not read stays unread)."""
                with server._count_lock:
                    server.rejected += 1
                httpd.read_done(self.connection)
                self.close_connection = True
                with contextlib.suppress(OSError):  # the client may be gone
                    self._answer(status, {"error": error})
                raise _AnsweredError(error)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("pos: " + format, *args)

        httpd = _Server((host, port), Handler, timeout_s, max_connections)
        self._httpd = httpd
        self._thread = threading.Thread(target=self._httpd.serve, name="pos-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def connections(self) -> int:
        """Connections open now."""
        return self._httpd.connections

    @property
    def timed_out(self) -> int:
        """Requests that did not arrive whole within ``timeout_s`` (408 or disconnected)."""
        return self._httpd.timed_out

    @property
    def refused(self) -> int:
        """Connections refused (503) because ``max_connections`` were open."""
        return self._httpd.refused

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.stop_serving()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._httpd.server_close()
