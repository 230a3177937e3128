"""A small HTTP POST over http.client: a body from memory or streamed from parts, TLS with an
optional CA file, every failure to reach the server a :class:`RetryLater`."""

from __future__ import annotations

import http.client
import ssl
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edge.routes._base import RetryLater

READ_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def post(
    url: str,
    body: bytes | Iterable[bytes],
    headers: dict[str, str],
    *,
    timeout_s: float,
    length: int | None = None,
    ca_file: str = "",
    shown: str | None = None,
) -> Response:
    """POST ``body`` to ``url``. ``shown`` is how errors name the URL (never a token in it)."""
    parts = urlsplit(url)
    where = shown or f"{parts.scheme}://{parts.netloc}"
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file or None)
        conn = http.client.HTTPSConnection(host, parts.port, timeout=timeout_s, context=context)
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout_s)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    all_headers = dict(headers)
    if isinstance(body, bytes):
        all_headers["Content-Length"] = str(len(body))
    elif length is not None:
        all_headers["Content-Length"] = str(length)
    try:
        conn.request("POST", target, body=body, headers=all_headers)
        reply = conn.getresponse()
        data = reply.read()
        return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, data)
    except (OSError, http.client.HTTPException) as exc:
        raise RetryLater(f"cannot reach {where}: {exc.__class__.__name__}: {exc}") from None
    finally:
        conn.close()


def retry_after(headers: dict[str, str]) -> float | None:
    """A ``Retry-After`` given in seconds (the date form is not used by the servers we talk to)."""
    value = headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class Multipart:
    """A multipart/form-data body streamed from disk: fields, then one file."""

    def __init__(
        self, fields: dict[str, str], file_field: str, path: Path, filename: str, mime: str
    ) -> None:
        self.boundary = f"cp-{uuid.uuid4().hex}"
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
            for name, value in fields.items()
        )
        safe = filename.replace('"', "_")
        self._head = (
            head
            + (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                f'filename="{safe}"\r\nContent-Type: {mime}\r\n\r\n'
            ).encode()
        )
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._path = path
        self._size = path.stat().st_size

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        sent = 0
        with self._path.open("rb") as f:
            while sent < self._size:
                chunk = f.read(min(READ_BYTES, self._size - sent))
                if not chunk:
                    raise OSError(f"{self._path} shrank while it was being sent")
                sent += len(chunk)
                yield chunk
        yield self._tail
