"""TLS failures of the sink's broker link in words a person can act on, and a check of the
TLS files before ``sink run`` starts.

Rules:
- :func:`check_files` (run by ``sink run`` before it connects) refuses, naming the setting and
  the file: a CA/certificate/key file that is missing or unreadable, a CA file that holds no
  PEM certificate, a client certificate that has expired or is not yet valid, a key that does
  not match its certificate. The sink is a service someone is watching start: failing at once
  beats retrying forever.
- :func:`explain` turns OpenSSL's text (an ``ssl.SSLError`` at connect time, or paho's log when
  the broker drops the connection after a TLS 1.3 handshake) into a sentence naming the
  ``sink.*`` setting and the file: the contract's explanation (``contract/tls.py``), the same
  the device gives with its ``mqtt.*`` keys.
"""

from __future__ import annotations

import ssl
from datetime import datetime
from pathlib import Path
from typing import Protocol

from contract.tls import ClosingSSLSocket, validity_problem
from contract.tls import explain as explain_text


class TlsSettings(Protocol):
    @property
    def ca_file(self) -> str | None: ...
    @property
    def cert_file(self) -> str | None: ...
    @property
    def key_file(self) -> str | None: ...


class TlsFileError(ValueError):
    """A TLS file cannot work; the message names the setting, the file and the problem."""


def context(cfg: TlsSettings) -> ssl.SSLContext:
    """The client context: verify the broker against ``ca_file`` (else the system CAs), present
    ``cert_file``/``key_file`` when set."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cfg.ca_file or None)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    ctx.sslsocket_class = ClosingSSLSocket
    return ctx


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
    return explain_text(
        text,
        section="sink",
        ca_file=cfg.ca_file,
        cert_file=cfg.cert_file,
        renew="contactpoint provision sink --cert",
    )
