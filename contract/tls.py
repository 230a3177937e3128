"""TLS failures of a broker link in words a person can act on: which setting and file, what is
wrong with it, what to do. The device's publisher and the sink's consumer both use it, each
naming its own settings (``mqtt.*`` in the device's config, ``sink.*`` for the sink).

Rules:
- :func:`explain` turns OpenSSL's text (from an ``ssl.SSLError`` at connect time, or from
  paho's log when the broker drops the connection after the handshake, as TLS 1.3 does when it
  rejects a client certificate) into a sentence naming the setting and file at fault.
- Text that is not about TLS comes back unchanged. Nothing secret is ever in it: certificates
  are public, and keys and passwords are never read here.
- :class:`ClosingSSLSocket` closes a socket whose handshake failed (paho leaves it open).
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509


class ClosingSSLSocket(ssl.SSLSocket):
    """An SSL socket that closes itself when its handshake fails (paho leaves such a socket
    open: one leaked file descriptor per failed attempt, forever retried)."""

    def do_handshake(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().do_handshake(*args, **kwargs)
        except BaseException:
            self.close()
            raise


def validity_problem(path: str, now: datetime | None = None) -> str | None:
    """'it expired on …' / 'it is not valid before …' for the first certificate of a PEM file;
    None when it is in date or cannot be read (the TLS library says why then)."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    now = now or datetime.now(UTC)
    if now > cert.not_valid_after_utc:
        return f"it expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if now < cert.not_valid_before_utc:
        return (
            f"it is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
            "(check the clock)"
        )
    return None


def explain(
    text: str,
    *,
    section: str,
    ca_file: str | None,
    cert_file: str | None,
    renew: str,
    host: str | None = None,
) -> str:
    """A clear sentence for a TLS failure described by OpenSSL's ``text``.

    ``section`` prefixes the setting names (``mqtt`` -> ``mqtt.ca_file``), ``renew`` is the
    command that issues a new client certificate, ``host`` the broker's host name if known."""
    low = text.lower()
    ca = f"{section}.ca_file {ca_file}" if ca_file else f"the system CAs ({section}.ca_file unset)"
    cert = f"{section}.cert_file {cert_file}" if cert_file else ""
    if "certificate verify failed" in low:
        if "expired" in low:
            return f"TLS: the broker's certificate has expired (verified with {ca}): {text}"
        if "mismatch" in low:
            return f"TLS: the broker's certificate does not name {host or 'its host'}: {text}"
        return (
            f"TLS: the broker's certificate is not signed by the CA in {ca}; point "
            f"{section}.ca_file at the project CA (ca.crt): {text}"
        )
    if "alert certificate expired" in low or "certificate_expired" in low:
        why = validity_problem(cert_file) if cert_file else None
        return (
            f"TLS: the broker refused the client certificate {cert or '(none)'}: "
            f"{why or 'it has expired'}; issue a new one ({renew}): {text}"
        )
    if "unknown ca" in low or "unknown_ca" in low:
        return (
            f"TLS: the broker does not trust the client certificate {cert or '(none)'}: it "
            f"is signed by a CA the broker does not know: {text}"
        )
    if "certificate required" in low or "certificate_required" in low:
        return (
            f"TLS: the broker requires a client certificate: set {section}.cert_file and "
            f"{section}.key_file: {text}"
        )
    if "bad certificate" in low or "bad_certificate" in low:
        why = validity_problem(cert_file) if cert_file else None
        return (
            f"TLS: the broker refused the client certificate {cert or '(none)'}"
            + (f": {why}" if why else "")
            + f": {text}"
        )
    if "eof occurred in violation of protocol" in low and cert:
        return (
            f"TLS: the broker closed the connection right after the handshake: it most likely "
            f"does not accept the client certificate {cert} (signed by a CA it does not "
            f"trust?): {text}"
        )
    if "ssl" in low or "tls" in low:
        return f"TLS handshake failed (ca {ca}; cert {cert or 'none'}): {text}"
    return text
