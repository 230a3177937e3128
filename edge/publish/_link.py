"""The broker link: settings checked up front, a paho client per connection, reconnect delays.

Rules:
- Everything in ``[mqtt]`` that can be wrong (URL, password file, CA/certificate/key files) is
  checked when the publisher is built; the error names the key and the file. The password is
  never logged nor put into a message.
- TLS files need an ``mqtts://`` broker; ``mqtts://`` without ``ca_file`` trusts the system CAs.
- Persistent session, client id = device id: MQTT 5 connects with clean_start False and the
  configured session expiry; 3.1.1 with clean_session False.
- A new paho client for every connection: its RAM-only QoS 1 state is never trusted (the outbox
  is the state), so nothing half-sent survives a reconnect inside paho.
- Reconnect delays (:func:`backoff_delay`) double from ``backoff_min_s`` up to ``backoff_max_s``
  and are jittered over the upper half of that range, never below the minimum.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.tls import ClosingSSLSocket, explain
from edge._errors import UserError
from edge.config import MqttSection

log = logging.getLogger(__name__)


class LinkConfigError(UserError):
    """The ``[mqtt]`` settings cannot work; the message names the key and the file."""


@dataclass(frozen=True, slots=True)
class Link:
    """Resolved connection settings (the password is held, never shown: ``repr`` hides it)."""

    url: str
    host: str
    port: int
    mqtt5: bool
    keepalive_s: int
    session_expiry_s: int
    username: str
    password: str
    tls: ssl.SSLContext | None

    def __repr__(self) -> str:
        return f"Link({self.url}, mqtt{'5' if self.mqtt5 else '3.1.1'}, user={self.username!r})"


def resolve(cfg: MqttSection) -> Link:
    """Check ``cfg`` and load its files; raise :class:`LinkConfigError` naming what is wrong."""
    parts = urlsplit(cfg.broker)
    secure = parts.scheme == "mqtts"
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise LinkConfigError(f"mqtt.broker {cfg.broker!r}: {exc}") from None
    if not host:
        raise LinkConfigError(f"mqtt.broker {cfg.broker!r}: no host name")
    tls_keys = [k for k in ("ca_file", "cert_file", "key_file") if getattr(cfg, k)]
    if tls_keys and not secure:
        raise LinkConfigError(
            f"mqtt.{tls_keys[0]} is set but mqtt.broker is {cfg.broker}: use mqtts:// for TLS"
        )
    return Link(
        url=cfg.broker,
        host=host,
        port=port or (8883 if secure else 1883),
        mqtt5=cfg.protocol == "5",
        keepalive_s=cfg.keepalive_s,
        session_expiry_s=cfg.session_expiry_s,
        username=cfg.username,
        password=_password(cfg),
        tls=_tls_context(cfg) if secure else None,
    )


def explain_tls(text: str, cfg: MqttSection, host: str) -> str:
    """A TLS failure of this link in words naming the ``[mqtt]`` key and file at fault (the
    contract's explanation, contract/tls.py; other text comes back unchanged)."""
    return explain(
        text,
        section="mqtt",
        ca_file=cfg.ca_file,
        cert_file=cfg.cert_file,
        renew="contactpoint provision device --cert",
        host=host,
    )


def _readable(path: str, key: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise LinkConfigError(f"mqtt.{key}: {path} does not exist or is not a file")
    try:
        with file.open("rb"):
            pass
    except OSError as exc:
        raise LinkConfigError(f"mqtt.{key}: cannot read {path}: {exc.strerror}") from None
    return file


def _password(cfg: MqttSection) -> str:
    if not cfg.password_file:
        return ""
    if not cfg.username:
        raise LinkConfigError("mqtt.password_file is set but mqtt.username is empty")
    path = _readable(cfg.password_file, "password_file")
    if path.stat().st_mode & 0o077:
        log.warning(
            "mqtt.password_file %s can be read by other users (mode %o): chmod 600 %s",
            path,
            path.stat().st_mode & 0o777,
            path,
        )
    text = path.read_text(encoding="utf-8")
    return text.rstrip("\r\n")


def _tls_context(cfg: MqttSection) -> ssl.SSLContext:
    ca = str(_readable(cfg.ca_file, "ca_file")) if cfg.ca_file else None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except (ssl.SSLError, ValueError) as exc:
        raise LinkConfigError(
            f"mqtt.ca_file: {cfg.ca_file} is not a PEM CA certificate ({exc})"
        ) from None
    context.sslsocket_class = ClosingSSLSocket  # a failed handshake leaks no socket
    if cfg.key_file and not cfg.cert_file:
        raise LinkConfigError("mqtt.key_file is set without mqtt.cert_file")
    if cfg.cert_file:
        cert = _readable(cfg.cert_file, "cert_file")
        key = _readable(cfg.key_file, "key_file") if cfg.key_file else None
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            named = f"{cfg.cert_file}" + (f" / {cfg.key_file}" if key else "")
            raise LinkConfigError(
                f"mqtt.cert_file/key_file: {named} is not a matching PEM certificate and "
                f"private key ({exc})"
            ) from None
    return context


def new_client(
    link: Link, client_id: str, will_topic: str, will_payload: bytes, inflight: int
) -> paho.Client:
    """A fresh paho client with the last will, credentials and TLS of ``link``."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if link.mqtt5 else False,
        protocol=MQTTProtocolVersion.MQTTv5 if link.mqtt5 else MQTTProtocolVersion.MQTTv311,
    )
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    client.will_set(will_topic, will_payload, qos=1, retain=True)
    if link.username:
        client.username_pw_set(link.username, link.password or None)
    if link.tls is not None:
        client.tls_set_context(link.tls)
    return client


def open_connection(client: paho.Client, link: Link) -> None:
    """Open the socket and send CONNECT (the CONNACK arrives through ``client.loop``)."""
    if link.mqtt5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = link.session_expiry_s
        client.connect(link.host, link.port, link.keepalive_s, clean_start=False, properties=props)
    else:
        client.connect(link.host, link.port, link.keepalive_s)


def backoff_delay(attempt: int, min_s: float, max_s: float, random: Callable[[], float]) -> float:
    """The wait before reconnect ``attempt`` (0 = the first retry), ``random()`` in [0, 1).

    The ceiling doubles from ``min_s`` and is capped at ``max_s`` (``max_s`` below ``min_s``
    means ``min_s``); the delay is drawn from the upper half of the ceiling, never below
    ``min_s``, so a fleet that lost its broker together does not come back together.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    ceiling = max(min_s, min(max_s, min_s * 2.0 ** min(attempt, 64)))
    floor = max(min_s, ceiling / 2)
    return floor + (ceiling - floor) * random()
