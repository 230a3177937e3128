"""TLS failures in words a person can act on: which file, what is wrong with it, what to do.

Rules:
- :func:`explain` turns OpenSSL's text (from an ``ssl.SSLError`` at connect time, or from
  paho's log when the broker drops the connection after the handshake, as TLS 1.3 does when it
  rejects a client certificate) into a sentence naming the ``[mqtt]`` key and file at fault.
- Text that is not about TLS comes back unchanged. Nothing secret is ever in it: certificates
  are public, and keys and passwords are never read here.
- The sink has its own copy (``cloud_sink/tls.py``): the layout rule keeps edge and cloud_sink
  apart.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from edge.config import MqttSection


class ClosingSSLSocket(ssl.SSLSocket):
    """An SSL socket that closes itself when its handshake fails (paho leaves such a socket
    open: one leaked file descriptor per failed attempt, forever retried, on a device)."""

    def do_handshake(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().do_handshake(*args, **kwargs)
        except BaseException:
            self.close()
            raise


def cert_dates(path: str) -> tuple[datetime, datetime] | None:
    """(not before, not after) of the first certificate in a PEM file, or None."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def validity_problem(path: str, now: datetime | None = None) -> str | None:
    """'expired on …' / 'not valid before …' for a certificate file, None when in date."""
    dates = cert_dates(path)
    if dates is None:
        return None
    now = now or datetime.now(UTC)
    if now > dates[1]:
        return f"it expired on {dates[1]:%Y-%m-%d %H:%M} UTC"
    if now < dates[0]:
        return f"it is not valid before {dates[0]:%Y-%m-%d %H:%M} UTC (check the clock)"
    return None


def explain(text: str, cfg: MqttSection, host: str) -> str:
    """A clear sentence for a TLS failure described by OpenSSL's ``text``."""
    low = text.lower()
    ca = f"mqtt.ca_file {cfg.ca_file}" if cfg.ca_file else "the system CAs (mqtt.ca_file unset)"
    cert = f"mqtt.cert_file {cfg.cert_file}" if cfg.cert_file else ""
    if "certificate verify failed" in low:
        if "expired" in low:
            return f"TLS: the broker's certificate has expired (verified with {ca}): {text}"
        if "mismatch" in low:
            return f"TLS: the broker's certificate does not name {host}: {text}"
        return (
            f"TLS: the broker's certificate is not signed by the CA in {ca}; point "
            f"mqtt.ca_file at the project CA (ca.crt): {text}"
        )
    if "alert certificate expired" in low or "certificate_expired" in low:
        why = validity_problem(cfg.cert_file) if cfg.cert_file else None
        return (
            f"TLS: the broker refused the client certificate {cert or '(none)'}: "
            f"{why or 'it has expired'}; issue a new one (contactpoint provision device "
            f"--cert): {text}"
        )
    if "unknown ca" in low or "unknown_ca" in low:
        return (
            f"TLS: the broker does not trust the client certificate {cert or '(none)'}: it "
            f"is signed by a CA the broker does not know: {text}"
        )
    if "certificate required" in low or "certificate_required" in low:
        return (
            "TLS: the broker requires a client certificate: set mqtt.cert_file and "
            f"mqtt.key_file: {text}"
        )
    if "bad certificate" in low or "bad_certificate" in low:
        why = validity_problem(cfg.cert_file) if cfg.cert_file else None
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
