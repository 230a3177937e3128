"""Stream URLs as audio devices (``rtsp://``, ``rtsps://``, ``http://``, ``https://``), and keeping
their credentials out of every message.

Rules:

- A device name containing ``://`` is a URL; its scheme must be one of :data:`STREAM_SCHEMES`
  and it needs a host (:func:`check_stream_url` says what is wrong, with the URL redacted).
- :class:`Redactor` removes secrets from any text: the ``user:pass@`` part of every URL in it
  (up to the last ``@`` of the token, as FFmpeg splits it, so a password holding ``@`` or ``/``
  is covered too), the values of query parameters whose name speaks of a user, password, token,
  key, signature or login (``?user=admin&pwd=...``), and, for the URL it was made for, the
  password and the password-like parameter values wherever else they appear (percent-decoded
  too), e.g. inside a library's error.
- No import of PyAV here: the backend can tell a URL from an ALSA name without loading FFmpeg.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
MASK = "***"
_MIN_SECRET = 3  # shorter secrets are only removed where they stand (userinfo, parameters)

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)\S*@")
# the names of query parameters that carry secrets (to mask them), not a secret
_SECRET_NAME = r"[^=&;#\s'\"]*(?:user|pass|pwd|token|auth|key|secret|sig|login)[^=&;#\s'\"]*"  # noqa: S105
_SECRET_PARAM = re.compile(rf"(?i)([?&;]{_SECRET_NAME}=)[^&;#\s'\"]*")
_PASSWORD_NAME = re.compile(r"(?i)pass|pwd|token|auth|key|secret|sig")


def is_stream_url(device: str) -> bool:
    """Whether an audio device setting names a URL (anything with ``://``) rather than ALSA."""
    return "://" in device


def check_stream_url(url: str) -> None:
    """Raise ``ValueError`` (with the URL redacted) unless ``url`` is a stream this build reads."""
    shown = redact(url)
    if any(c.isspace() for c in url):
        raise ValueError(f"stream URL {shown!r} contains white space; percent-encode it (%20)")
    if "@" in url.partition("://")[2].partition("/")[2]:
        raise ValueError(
            f"stream URL {shown!r}: '@' after the host; a password with '/', '?' or '#' must "
            "be percent-encoded (%2F, %3F, %23)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"stream URL {shown!r} cannot be parsed: {redact(str(exc))}") from None
    if parts.scheme.lower() not in STREAM_SCHEMES:
        raise ValueError(
            f"stream URL {shown!r}: scheme {parts.scheme!r} is not supported; use one of "
            + ", ".join(f"{s}://" for s in STREAM_SCHEMES)
        )
    if not parts.hostname:
        raise ValueError(f"stream URL {shown!r} has no host")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it and secret query values masked."""
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    return _SECRET_PARAM.sub(rf"\1{MASK}", text)


class Redactor:
    """Masks the secrets of one URL wherever they appear, and those of any other URL."""

    def __init__(self, url: str) -> None:
        secrets: set[str] = set()
        authority = url.partition("://")[2]
        userinfo = authority.rpartition("@")[0] if "@" in authority else ""
        if userinfo:
            password = userinfo.partition(":")[2]
            secrets.update((userinfo, password, unquote(password)))
        query = url.partition("?")[2].partition("#")[0]
        for pair in re.split("[&;]", query):
            name, _, value = pair.partition("=")
            if _PASSWORD_NAME.search(name):
                secrets.update((value, unquote(value)))
        self._secrets = sorted((s for s in secrets if len(s) >= _MIN_SECRET), key=len, reverse=True)
        self.shown = self(url)

    def __call__(self, text: str) -> str:
        text = redact(text)
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text
