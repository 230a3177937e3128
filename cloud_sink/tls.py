"""TLS failures of the sink's broker link in words a person can act on, and a check of the
TLS files before ``sink run`` starts.

Rules:
- :func:`check_files` (run by ``sink run`` before it connects) refuses, naming the setting and
  the file: a CA/certificate/key file that is missing or unreadable, a CA file that holds no
  PEM certificate, a client certificate that has expired or is not yet valid, a key that does
  not match its certificate. The sink is a service someone is watching start: failing at once
  beats retrying forever.
- :func:`explain` turns OpenSSL's text (an ``ssl.SSLError`` at connect time, or paho's log when
  the broker drops the connection after a TLS 1.3 handshake) into a sentence naming the file.
- The device has its own copy (``edge/publish/_tls.py``): the layout rule keeps them apart.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509


class TlsSettings(Protocol):
    @property
    def ca_file(self) -> str | None: ...
    @property
    def cert_file(self) -> str | None: ...
    @property
    def key_file(self) -> str | None: ...


class TlsFileError(ValueError):
    """A TLS file cannot work; the message names the setting, the file and the problem."""


class ClosingSSLSocket(ssl.SSLSocket):
    """An SSL socket that closes itself when its handshake fails (paho leaves it open)."""

    def do_handshake(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().do_handshake(*args, **kwargs)
        except BaseException:
            self.close()
            raise


def context(cfg: TlsSettings) -> ssl.SSLContext:
    """The client context: verify the broker against ``ca_file`` (else the system CAs), present
    ``cert_file``/``key_file`` when set."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cfg.ca_file or None)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    ctx.sslsocket_class = ClosingSSLSocket
    return ctx


def validity_problem(path: str, now: datetime | None = None) -> str | None:
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    now = now or datetime.now(UTC)
    if now > cert.not_valid_after_utc:
        return f"it expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if now < cert.not_valid_before_utc:
        return f"it is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    return None


def check_files(cfg: TlsSettings, now: datetime | None = None) -> None:
    """Raise :class:`TlsFileError` when the configured TLS files cannot work."""
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg, key)
        if path and not Path(path).is_file():
            raise TlsFileError(f"sink.{key}: {path} does not exist or is not a file")
    if cfg.ca_file:
        try:
            ssl.create_default_context(cafile=cfg.ca_file)
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise TlsFileError(
                f"sink.ca_file: {cfg.ca_file} is not a PEM CA certificate ({exc})"
            ) from None
    if cfg.key_file and not cfg.cert_file:
        raise TlsFileError("sink.key_file is set without sink.cert_file")
    if cfg.cert_file:
        problem = validity_problem(cfg.cert_file, now)
        if problem:
            raise TlsFileError(
                f"sink.cert_file: {cfg.cert_file}: {problem}; issue a new client certificate "
                "(contactpoint provision sink --cert)"
            )
        try:
            ssl.create_default_context().load_cert_chain(cfg.cert_file, cfg.key_file or None)
        except (ssl.SSLError, OSError) as exc:
            raise TlsFileError(
                f"sink.cert_file/key_file: {cfg.cert_file} / {cfg.key_file or '(in cert)'} are "
                f"not a matching PEM certificate and private key ({exc})"
            ) from None


def explain(text: str, cfg: TlsSettings) -> str:
    """A clear sentence for a TLS failure described by OpenSSL's ``text``."""
    low = text.lower()
    ca = f"sink.ca_file {cfg.ca_file}" if cfg.ca_file else "the system CAs (sink.ca_file unset)"
    cert = f"sink.cert_file {cfg.cert_file}" if cfg.cert_file else "(no client certificate)"
    if "certificate verify failed" in low:
        if "expired" in low:
            return f"TLS: the broker's certificate has expired (verified with {ca}): {text}"
        if "mismatch" in low:
            return f"TLS: the broker's certificate does not name the broker's host: {text}"
        return f"TLS: the broker's certificate is not signed by the CA in {ca}: {text}"
    if "alert certificate expired" in low:
        why = (validity_problem(cfg.cert_file) if cfg.cert_file else None) or "it has expired"
        return f"TLS: the broker refused the client certificate {cert}: {why}: {text}"
    if "unknown ca" in low:
        return f"TLS: the broker does not trust the CA of the client certificate {cert}: {text}"
    if "certificate required" in low:
        return f"TLS: the broker requires a client certificate (sink.cert_file): {text}"
    if "eof occurred in violation of protocol" in low and cfg.cert_file:
        return (
            "TLS: the broker closed the connection right after the handshake: it most likely "
            f"does not accept the client certificate {cert}: {text}"
        )
    if "ssl" in low or "tls" in low:
        return f"TLS handshake failed ({ca}; {cert}): {text}"
    return text
