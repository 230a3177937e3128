"""Real servers on loopback for the routes tests: a Bot-API-like HTTP server, a webhook
receiver that checks signatures and deduplicates, pyftpdlib (FTP/FTPS) and aiosmtpd."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# pyftpdlib on Python 3.11 imports the stdlib's asynchat/asyncore, which warn that they are
# deprecated; the warning is about the test server's library, not our code
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*asyn(core|chat)")
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import FTPServer

TOKEN = "123456:ABC-secret-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- Telegram Bot API ------------------------------------------------------------------------


@dataclass
class BotCall:
    method: str
    fields: dict[str, str]
    file_name: str | None = None
    file_bytes: bytes | None = None


@dataclass
class BotApi:
    """Answers like the Bot API: 429s queued in ``throttle``, 400 for a chat it does not know."""

    calls: list[BotCall] = field(default_factory=list)
    throttle: list[int] = field(default_factory=list)  # retry_after of the next answers
    known_chats: set[str] = field(default_factory=lambda: {"42", "-100500"})
    lock: threading.Lock = field(default_factory=threading.Lock)


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], str | None, bytes | None]:
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    msg = email.message_from_bytes(raw, policy=email.policy.HTTP)
    fields: dict[str, str] = {}
    name: str | None = None
    data: bytes | None = None
    assert isinstance(msg, EmailMessage)
    for part in msg.iter_parts():
        key = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        if part.get_filename():
            name, data = part.get_filename(), payload
        else:
            fields[str(key)] = payload.decode()
    return fields, name, data


@contextmanager
def bot_api() -> Iterator[tuple[str, BotApi]]:
    state = BotApi()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            parts = self.path.split("/")  # /bot<token>/<method>
            if parts[1] != f"bot{TOKEN}":
                self._answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                return
            method = parts[2]
            ctype = self.headers["Content-Type"]
            if ctype.startswith("multipart/form-data"):
                fields, name, data = _multipart(ctype, body)
                call = BotCall(method, fields, name, data)
            else:
                call = BotCall(method, {k: str(v) for k, v in json.loads(body).items()})
            with state.lock:
                if state.throttle:
                    after = state.throttle.pop(0)
                    self._answer(
                        429,
                        {
                            "ok": False,
                            "error_code": 429,
                            "description": f"Too Many Requests: retry after {after}",
                            "parameters": {"retry_after": after},
                        },
                    )
                    return
                if call.fields.get("chat_id") not in state.known_chats:
                    self._answer(
                        400,
                        {
                            "ok": False,
                            "error_code": 400,
                            "description": "Bad Request: chat not found",
                        },
                    )
                    return
                state.calls.append(call)
            self._answer(200, {"ok": True, "result": {"message_id": len(state.calls)}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- webhook receiver ------------------------------------------------------------------------


@dataclass
class Receiver:
    key: bytes
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (delivery id, body)
    bad_signatures: int = 0
    status: int = 200

    @property
    def unique(self) -> dict[str, dict[str, Any]]:
        """What a receiver that deduplicates by X-Contactpoint-Delivery keeps."""
        return {delivery: body for delivery, body in self.posts}


@contextmanager
def webhook_receiver(key: bytes, port: int = 0) -> Iterator[tuple[str, Receiver]]:
    state = Receiver(key)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            expected = "sha256=" + hmac.new(state.key, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, self.headers.get("X-Contactpoint-Signature", "")):
                state.bad_signatures += 1
                status = 401
            else:
                state.posts.append((self.headers["X-Contactpoint-Delivery"], json.loads(body)))
                status = state.status
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- FTP / FTPS ------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the certificate is its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def ftp_server(root: Path, password: str, tls: tuple[Path, Path] | None = None) -> Iterator[int]:
    root.mkdir(parents=True, exist_ok=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user("cp", password, str(root), perm="elradfmwMT")
    handler: Any
    if tls is None:
        handler = type("Handler", (FTPHandler,), {})
    else:
        handler = type("Handler", (TLS_FTPHandler,), {})
        handler.certfile = str(tls[0])
        handler.keyfile = str(tls[1])
        handler.tls_control_required = True
        handler.tls_data_required = True
    handler.authorizer = authorizer
    handler.passive_ports = None
    server = FTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"timeout": 0.05, "blocking": True}
    )
    thread.start()
    try:
        yield int(server.address[1])
    finally:
        server.close_all()
        thread.join(5)


# --- SMTP ------------------------------------------------------------------------------------


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()
