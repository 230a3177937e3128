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
- The dates of a certificate are read from its DER here (RFC 5280: the ``validity`` of the
  ``tbsCertificate``), with the standard library only: the device installs no X.509 library.
"""

from __future__ import annotations

import base64
import re
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_SEQUENCE, _VERSION, _UTC_TIME, _GENERALIZED_TIME = 0x30, 0xA0, 0x17, 0x18


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
        not_before, not_after = validity(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    now = now or datetime.now(UTC)
    if now > not_after:
        return f"it expired on {not_after:%Y-%m-%d %H:%M} UTC"
    if now < not_before:
        return f"it is not valid before {not_before:%Y-%m-%d %H:%M} UTC (check the clock)"
    return None


def validity(pem: bytes) -> tuple[datetime, datetime]:
    """(not before, not after) of the first certificate in ``pem``; ValueError if there is none
    or it is not a well-formed X.509 certificate as far as these fields go."""
    found = _PEM_CERT.search(pem)
    if found is None:
        raise ValueError("no PEM certificate")
    der = base64.b64decode(found.group(1))
    try:
        _, certificate, _ = _element(der, 0, _SEQUENCE)
        _, at, _ = _element(der, certificate, _SEQUENCE)  # tbsCertificate
        if der[at] == _VERSION:
            at = _element(der, at)[2]
        for _field in ("serialNumber", "signature", "issuer"):
            at = _element(der, at)[2]
        _, at, _ = _element(der, at, _SEQUENCE)  # validity
        tag, start, at = _element(der, at)
        not_before = _time(tag, der[start:at])
        tag, start, end = _element(der, at)
        return not_before, _time(tag, der[start:end])
    except IndexError:
        raise ValueError("truncated certificate") from None


def _element(der: bytes, at: int, expected: int | None = None) -> tuple[int, int, int]:
    """(tag, start, end) of the contents of the DER element at ``at``."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:  # long form: the next (length & 0x7f) bytes hold the length
        size = length & 0x7F
        if not 1 <= size <= 4:
            raise ValueError(f"unsupported DER length of {size} bytes")
        length = int.from_bytes(der[at : at + size], "big")
        at += size
    if at + length > len(der) or (expected is not None and tag != expected):
        raise ValueError("not an X.509 certificate")
    return tag, at, at + length


def _time(tag: int, value: bytes) -> datetime:
    """An RFC 5280 time: UTCTime YYMMDDHHMMSSZ (YY >= 50: 19YY) or GeneralizedTime
    YYYYMMDDHHMMSSZ."""
    text = value.decode("ascii")
    if tag == _UTC_TIME and len(text) == 13:
        year, rest = int(text[:2]), text[2:]
        year += 1900 if year >= 50 else 2000
    elif tag == _GENERALIZED_TIME and len(text) == 15:
        year, rest = int(text[:4]), text[4:]
    else:
        raise ValueError("not an X.509 time")
    if not (rest.endswith("Z") and rest[:-1].isdigit()):
        raise ValueError(f"not an X.509 time: {text!r}")
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


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
