"""The enrollment service: claims in, device accounts out, in the running broker.

``contactpoint fleet serve`` is its own process (not part of ``sink run``): it holds the
broker's dynamic-security admin account, which can create any account; the ingest sink never
needs that power and should not hold it, and the service can run next to the broker.

- The broker runs mosquitto's dynamic-security plugin; :func:`init_dynsec` writes the plugin's
  JSON (what ``mosquitto_ctrl dynsec init`` makes) with the admin account, an ``enroller``
  role (read requests, write replies), the public claim account (contract/enroll.py) and,
  given a password, the sink's account with the rights a static broker's ACL gives a sink
  (:func:`sink_acls`: read everything under the root, write only the sink's commands).
- Claims live in a SQLite file (``--db``): the token's SHA-256, expiry, uses left, optional
  allowed serials, automatic or manual approval.
- A request is checked (token, expiry, uses, serial, name) and the device's role and client are
  created through ``$CONTROL/dynamic-security/v1`` — no restart. The reply carries the password
  sealed to the device's X25519 key (edge/sealing.py). Every step is idempotent: the
  device repeats its request until it has a reply, so a broker restart at any point only delays
  the enrollment; a repeated request from the same device (same key) is not a second use of
  the claim.
- ``fleet revoke NAME`` deletes the client (mosquitto disconnects it) and its role.
- Requests are rate limited per claim token and per device serial (:class:`RateLimit`; the
  claim account is public, so anyone can send them): one over the limit is not answered (the
  device asks again at its own pace) and logged once per token or serial until it is under the
  limit again.
- Under systemd (provisioning/systemd/contactpoint-enroll.service) it says ``READY=1`` once
  it is connected and subscribed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import queue
import re
import secrets
import signal
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract import enroll as proto
from contract.cli import UserError
from contract.wire import (
    ALERT,
    CMD,
    DELIVERED,
    NAME_PATTERN,
    RESEND,
    ROOT,
    ROUTE,
    SITE_SCOPE,
    UPDATE,
    topic,
)
from edge import sealing
from provisioning.identity import DEFAULT_SINK_USER, HA_PREFIX

log = logging.getLogger(__name__)

CONTROL: Final = "$CONTROL/dynamic-security/v1"
CONTROL_RESPONSE: Final = f"{CONTROL}/response"
ENROLLER_ROLE: Final = "enroller"
CLAIM_ROLE: Final = "claimant"
SINK_ROLE: Final = "sink"
RESERVED: Final = frozenset({proto.CLAIM_USER, "admin"})
_NAME: Final = re.compile(NAME_PATTERN)
_ITERATIONS: Final = 101


class EnrollError(Exception):
    pass


def _acl(acltype: str, topic_: str, allow: bool = True) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic_, "allow": allow, "priority": 0}


def _client(username: str, password: str, roles: Sequence[str]) -> dict[str, Any]:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return {
        "username": username,
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": _ITERATIONS,
        "roles": [{"rolename": r} for r in roles],
    }


def sink_acls() -> list[dict[str, Any]]:
    """A sink's rights, as the static ACL file gives them (provisioning/identity.py)."""
    return [
        _acl("subscribePattern", f"{ROOT}/#"),
        _acl("subscribePattern", f"$share/+/{ROOT}/#"),  # sink groups (--group)
        *(_acl("publishClientSend", topic("+", "+", cmd)) for cmd in (RESEND, DELIVERED, UPDATE)),
        _acl("publishClientSend", topic("+", SITE_SCOPE, ALERT)),
    ]


def init_dynsec(
    path: Path,
    admin_user: str,
    admin_password: str,
    sink_user: str = DEFAULT_SINK_USER,
    sink_password: str | None = None,
) -> None:
    """Write the dynamic-security plugin's file (0600; refuses to replace one), with the sink's
    account when ``sink_password`` is given."""
    if path.exists():
        raise UserError(f"{path} exists: the broker's accounts are in it; remove it first")
    if not admin_password:
        raise UserError("the admin password is empty: put one in --admin-password-file")
    if sink_password is not None and not sink_password:
        raise UserError("the sink password is empty: put one in --sink-password-file")
    if sink_password is not None and sink_user in {admin_user, proto.CLAIM_USER}:
        raise UserError(
            f"--sink-user {sink_user!r} is the admin or the claim account: choose another name"
        )
    admin_acls = [
        _acl(kind, "$CONTROL/dynamic-security/#")
        for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ]
    enroller = [
        _acl("subscribePattern", f"{proto.ROOT}/+/request"),
        _acl("publishClientSend", f"{proto.ROOT}/+/reply"),
    ]
    # mosquitto 2.0's plugin has no %c in ACLs: a claimant may subscribe to one reply topic
    # it names (its own random client id; the filter with '+' itself is refused) and the
    # reply is sealed to the requester's key in any case
    claimant = [
        _acl("publishClientSend", f"{proto.ROOT}/+/request"),
        _acl("subscribePattern", f"{proto.ROOT}/+/reply"),
        {**_acl("subscribeLiteral", f"{proto.ROOT}/+/reply", allow=False), "priority": 10},
    ]
    clients = [
        _client(admin_user, admin_password, ["admin", ENROLLER_ROLE]),
        _client(proto.CLAIM_USER, proto.CLAIM_PASSWORD, [CLAIM_ROLE]),
    ]
    roles = [
        {"rolename": "admin", "acls": admin_acls},
        {"rolename": ENROLLER_ROLE, "acls": enroller},
        {"rolename": CLAIM_ROLE, "acls": claimant},
    ]
    if sink_password is not None:
        clients.append(_client(sink_user, sink_password, [SINK_ROLE]))
        roles.append({"rolename": SINK_ROLE, "acls": sink_acls()})
    doc = {
        "clients": clients,
        "roles": roles,
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(doc, file, indent=2)


def broker_lines(dynsec_file: Path, plugin: str) -> str:
    """mosquitto.conf lines that load the plugin (``plugin`` is the .so's path)."""
    return f"plugin {plugin}\nplugin_opt_config_file {dynsec_file}\n"


def device_acls(site: str, device: str) -> list[dict[str, Any]]:
    """The device's rights, as the static ACL file gives them (provisioning/identity.py)."""
    return [
        _acl("publishClientSend", topic(site, device, "+")),
        _acl("publishClientSend", topic(site, device, f"{ROUTE}/+")),
        _acl("publishClientSend", f"{HA_PREFIX}/+/{device}/+/config"),
        _acl("subscribePattern", topic(site, device, f"{CMD}/#")),
    ]


def _host_port(url: str) -> tuple[str, int]:
    m = re.fullmatch(r"mqtts?://([^/:\s]+):(\d+)", url)
    if m is None:
        raise UserError(f"--broker {url!r}: write mqtt://HOST:PORT")
    return m.group(1), int(m.group(2))


class Admin:
    """A connection with the dynamic-security admin account; :meth:`call` sends commands and
    waits for their responses. ``on_message`` gets every other message."""

    def __init__(
        self,
        broker: str,
        username: str,
        password: str,
        *,
        on_message: Callable[[mqtt.MQTTMessage], None] | None = None,
        subscriptions: Sequence[str] = (),
    ) -> None:
        self._host, self._port = _host_port(broker)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"enroller-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(1, 2)
        self._subs = [CONTROL_RESPONSE, *subscriptions]
        self._on_other = on_message
        self._waiting: dict[str, tuple[threading.Event, list[Any]]] = {}
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.refused: str | None = None
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._message

    def _connected(
        self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if rc.is_failure:
            self.refused = str(rc)
            return
        for sub in self._subs:
            client.subscribe(sub, qos=1)
        self.connected.set()

    def _disconnected(self, *_args: Any) -> None:
        self.connected.clear()

    def _message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == CONTROL_RESPONSE:
            try:
                responses = json.loads(msg.payload)["responses"]
            except (ValueError, KeyError, TypeError):
                return
            for response in responses:
                with self._lock:
                    waiter = self._waiting.pop(str(response.get("correlationData")), None)
                if waiter is not None:
                    waiter[1].append(response)
                    waiter[0].set()
        elif self._on_other is not None:
            self._on_other(msg)

    def start(self, timeout_s: float = 10.0) -> None:
        self._client.connect_async(self._host, self._port, keepalive=15)
        self._client.loop_start()
        if not self.wait_connected(timeout_s):
            self.stop()
            raise EnrollError(
                f"cannot reach the broker at {self._host}:{self._port} as the admin"
                + (f": {self.refused}" if self.refused else "")
            )

    def wait_connected(self, timeout_s: float) -> bool:
        return self.connected.wait(timeout_s)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic_: str, payload: bytes) -> None:
        self._client.publish(topic_, payload, qos=1)

    def call(self, command: str, timeout_s: float = 10.0, **fields: Any) -> dict[str, Any]:
        """One dynamic-security command; its response (``error`` set when refused)."""
        if not self.connected.wait(timeout_s):
            raise EnrollError("the broker is not reachable")
        cid = uuid.uuid4().hex
        done, box = threading.Event(), list[Any]()
        with self._lock:
            self._waiting[cid] = (done, box)
        body = {"commands": [{"command": command, "correlationData": cid, **fields}]}
        self._client.publish(CONTROL, json.dumps(body).encode(), qos=1)
        if not done.wait(timeout_s):
            with self._lock:
                self._waiting.pop(cid, None)
            raise EnrollError(f"dynamic-security {command}: no response within {timeout_s} s")
        result: dict[str, Any] = box[0]
        return result


# --- the claims and the devices -------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    expires_at REAL,
    uses_left INTEGER,
    serials TEXT NOT NULL DEFAULT '[]',
    manual INTEGER NOT NULL DEFAULT 0,
    site TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY,
    serial TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    public_key TEXT NOT NULL,
    claim_id INTEGER NOT NULL REFERENCES claims(id),
    state TEXT NOT NULL,
    reply TEXT,
    updated_at REAL NOT NULL
);
"""


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class DeviceRow:
    name: str
    serial: str
    model: str
    version: str
    state: str  # pending | approved | issuing | enrolled | rejected | revoked
    updated_at: float


class Registry:
    """The claims and the devices (SQLite); each method is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        db = sqlite3.connect(path, timeout=30)
        try:
            db.executescript(_SCHEMA)
        finally:
            db.close()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def add_claim(
        self,
        label: str,
        token: str,
        *,
        site: str,
        expires_at: float | None = None,
        uses: int | None = None,
        serials: Sequence[str] = (),
        manual: bool = False,
    ) -> None:
        if not token or any(c.isspace() for c in token):
            raise UserError("the claim token must be one word")
        with self._db() as db:
            try:
                db.execute(
                    "INSERT INTO claims (label, token_sha256, expires_at, uses_left, serials,"
                    " manual, site) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (label, _sha(token), expires_at, uses, json.dumps(list(serials)), manual, site),
                )
            except sqlite3.IntegrityError:
                raise UserError(f"claim {label!r}: that label or token is already known") from None

    def devices(self, state: str | None = None) -> list[DeviceRow]:
        with self._db() as db:
            rows = db.execute(
                "SELECT name, serial, model, version, state, updated_at FROM devices"  # noqa: S608
                + (" WHERE state = ?" if state else "")  # a fixed clause; the state is bound
                + " ORDER BY name",
                (state,) if state else (),
            ).fetchall()
        return [DeviceRow(*row) for row in rows]

    def set_state(self, name: str, expect: Sequence[str], state: str) -> None:
        with self._db() as db:
            row = db.execute("SELECT state FROM devices WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UserError(f"no device {name!r}: 'contactpoint fleet list' shows them")
            if row[0] not in expect:
                raise UserError(f"device {name!r} is {row[0]}, not {' or '.join(expect)}")
            db.execute(
                "UPDATE devices SET state = ?, updated_at = ?, reply = NULL WHERE name = ?",
                (state, time.time(), name),
            )

    def decide(self, req: dict[str, Any], now: float) -> tuple[str, str]:
        """Check a request; (what to do, detail): ``refuse``/reason, ``pending``/'',
        ``resend``/stored reply, ``issue``/site. Records the device and uses the claim."""
        token, name, key = req["token"], req["name"], req["key"]
        with self._db() as db:
            claim = db.execute(
                "SELECT id, expires_at, uses_left, serials, manual, site FROM claims"
                " WHERE token_sha256 = ?",
                (_sha(token),),
            ).fetchone()
            if claim is None:
                return "refuse", "unknown claim token"
            cid, expires_at, uses_left, serials, manual, site = claim
            dev = db.execute(
                "SELECT public_key, state, reply FROM devices WHERE name = ?", (name,)
            ).fetchone()
            if dev is not None:
                if dev[0] != key:
                    return "refuse", f"the name {name!r} is taken by another device"
                state = dev[1]
                if state == "enrolled":
                    return "resend", dev[2]
                if state in ("rejected", "revoked"):
                    return "refuse", f"device {name!r} is {state}"
                if state == "pending":
                    return "pending", ""
                return "issue", site  # approved or issuing: (again)
            if expires_at is not None and now >= expires_at:
                return "refuse", "the claim token has expired"
            if uses_left is not None and uses_left <= 0:
                return "refuse", "the claim token has no uses left"
            if req["site"] != site:
                return "refuse", f"site {req['site']!r} is not this claim's site {site!r}"
            allowed = json.loads(serials)
            if allowed and req["serial"] not in allowed:
                return "refuse", f"serial {req['serial']!r} is not allowed by this claim"
            if uses_left is not None:
                db.execute("UPDATE claims SET uses_left = uses_left - 1 WHERE id = ?", (cid,))
            state = "pending" if manual else "issuing"
            db.execute(
                "INSERT INTO devices (name, serial, model, version, public_key, claim_id, state,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, req["serial"], req["model"], req["version"], key, cid, state, now),
            )
            return ("pending", "") if manual else ("issue", site)

    def enrolled(self, name: str, reply: str) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE devices SET state = 'enrolled', reply = ?, updated_at = ? WHERE name = ?",
                (reply, time.time(), name),
            )


def parse_request(payload: bytes) -> dict[str, Any]:
    """The request's fields, checked; ValueError names the bad one."""
    try:
        req = json.loads(payload)
    except ValueError:
        raise ValueError("the request is not JSON") from None
    if not isinstance(req, dict):
        raise ValueError("the request is not a JSON object")
    out: dict[str, Any] = {}
    fields = (("token", 512), ("name", 64), ("site", 64), ("serial", 64), ("model", 200))
    for field, limit in fields:
        value = req.get(field)
        if not isinstance(value, str) or not value or len(value) > limit:
            raise ValueError(f"{field}: expected text of 1..{limit} characters")
        out[field] = value
    version = req.get("version", "")
    out["version"] = version if isinstance(version, str) and len(version) <= 64 else ""
    if _NAME.fullmatch(out["name"]) is None or out["name"] in RESERVED:
        raise ValueError(f"name {out['name']!r} is not a valid device name")
    sealing.check_public(sealing.unb64(req.get("key"), "key"))
    out["key"] = req["key"]
    return out


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Requests answered per ``window_s`` seconds: per claim token and per device serial."""

    per_token: int = 300
    per_serial: int = 20
    window_s: float = 60.0


class _Limiter:
    """Sliding windows of request times by key; keys with no recent request are forgotten."""

    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = {}
        self._over: set[str] = set()  # keys refused (and logged) since they were last allowed

    def allow(self, key: str, limit: int, window_s: float, now: float) -> bool:
        times = self._times.setdefault(key, deque())
        while times and times[0] <= now - window_s:
            times.popleft()
        if len(times) >= limit:
            return False
        times.append(now)
        self._over.discard(key)
        return True

    def first_refusal(self, key: str) -> bool:
        """True the first time ``key`` is refused since it was last allowed (log it once)."""
        if key in self._over:
            return False
        self._over.add(key)
        return True

    def forget_old(self, window_s: float, now: float) -> None:
        for key in [k for k, t in self._times.items() if not t or t[-1] <= now - window_s]:
            del self._times[key]


class Service:
    """Answers enrollment requests until :meth:`stop`. Requests are handled one at a time on
    its own thread (the dynamic-security calls wait for the broker's responses)."""

    def __init__(
        self,
        registry: Registry,
        broker: str,
        admin_user: str,
        admin_password: str,
        *,
        now: Callable[[], float] = time.time,
        limits: RateLimit | None = None,
    ) -> None:
        self.registry = registry
        self._now = now
        #: read at every request
        self.limits = limits or RateLimit()
        self._limiter = _Limiter()
        self._limited_at = 0.0
        #: requests not answered because of :attr:`limits`
        self.throttled = 0
        self._queue: queue.SimpleQueue[mqtt.MQTTMessage | None] = queue.SimpleQueue()
        self.admin = Admin(
            broker,
            admin_user,
            admin_password,
            on_message=self._queue.put,
            subscriptions=[f"{proto.ROOT}/+/request"],
        )
        self._thread = threading.Thread(target=self._run, name="enroll", daemon=True)
        self.handled = 0

    def start(self) -> None:
        self.admin.start()
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(15)
        self.admin.stop()

    def _run(self) -> None:
        while (msg := self._queue.get()) is not None:
            try:
                self.handle(msg.topic, bytes(msg.payload))
            except EnrollError as exc:  # the broker went away: the device asks again
                log.warning("enrollment not finished: %s", exc)
            except Exception:  # one bad request never stops the service; the device asks again
                log.exception("enrollment request on %s failed", msg.topic)
            self.handled += 1

    def handle(self, topic_: str, payload: bytes) -> None:
        parts = topic_.split("/")
        client_id = parts[-2] if len(parts) >= 2 else ""
        if not client_id.startswith(proto.CLIENT_ID_PREFIX):
            return
        reply = proto.reply_topic(client_id)
        try:
            req = parse_request(payload)
        except ValueError as exc:
            self._answer(reply, {"status": "refused", "reason": str(exc)})
            return
        if not self._within_limits(req):
            return
        action, detail = self.registry.decide(req, self._now())
        if action == "refuse":
            log.warning("enrollment of %r refused: %s", req["name"], detail)
            self._answer(reply, {"status": "refused", "reason": detail})
        elif action == "pending":
            self._answer(reply, {"status": "pending"})
        elif action == "resend":
            self.admin.publish(reply, detail.encode())
        else:
            self.admin.publish(reply, self._issue(req, detail, client_id).encode())

    def _within_limits(self, req: dict[str, Any]) -> bool:
        now, limits = time.monotonic(), self.limits
        if now - self._limited_at > limits.window_s:
            self._limiter.forget_old(limits.window_s, now)
            self._limited_at = now
        for key, limit, what in (
            (f"token:{_sha(req['token'])}", limits.per_token, "claim token"),
            (f"serial:{req['serial']}", limits.per_serial, f"serial {req['serial']!r}"),
        ):
            if not self._limiter.allow(key, limit, limits.window_s, now):
                self.throttled += 1
                if self._limiter.first_refusal(key):
                    log.warning(
                        "enrollment requests of %s over the limit (%d in %g s): not answered "
                        "until it is under it again",
                        what,
                        limit,
                        limits.window_s,
                    )
                return False
        return True

    def _answer(self, reply: str, body: dict[str, Any]) -> None:
        self.admin.publish(reply, json.dumps({"v": 1, **body}).encode())

    def _issue(self, req: dict[str, Any], site: str, client_id: str) -> str:
        name = req["name"]
        role = f"device-{name}"
        password = secrets.token_urlsafe(32)
        made = self.admin.call("createRole", rolename=role, acls=device_acls(site, name))
        if made.get("error") and "exists" not in str(made["error"]):
            raise EnrollError(f"createRole {role}: {made['error']}")
        made = self.admin.call(
            "createClient", username=name, password=password, roles=[{"rolename": role}]
        )
        if made.get("error"):  # a repeated request: the client was made, its reply lost
            made = self.admin.call("setClientPassword", username=name, password=password)
            if made.get("error"):
                raise EnrollError(f"setClientPassword {name}: {made['error']}")
        secret = json.dumps({"username": name, "password": password, "site": site}).encode()
        sealed = sealing.seal(sealing.unb64(req["key"], "key"), secret, client_id)
        reply = json.dumps({"v": 1, "status": "enrolled", "sealed": sealed, "for": client_id})
        self.registry.enrolled(name, reply)
        log.info("enrolled %s (serial %s, %s)", name, req["serial"], req["model"])
        return reply


def revoke(registry: Registry, admin: Admin, name: str) -> None:
    """Delete the device's account (mosquitto disconnects it) and its role."""
    registry.set_state(name, ("pending", "approved", "issuing", "enrolled"), "revoked")
    done = admin.call("deleteClient", username=name)
    if done.get("error") and "not found" not in str(done["error"]).lower():
        raise EnrollError(f"deleteClient {name}: {done['error']}")
    admin.call("deleteRole", rolename=f"device-{name}")


# --- the command line -------------------------------------------------------------------------


def _password_file(path: Path, option: str = "--admin-password-file") -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"{option} {path}: {exc.strerror}") from None


def _when(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--expires {text!r}: write an ISO time, e.g. 2027-01-31T18:00Z") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def add_commands(sub: Any) -> None:
    fleet = sub.add_parser("fleet", help="enrollment by claim: claims, devices, the service")
    cmds = fleet.add_subparsers(dest="fleet_command", required=True)

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", type=Path, required=True, help="the enrollment registry (SQLite)")
        return p

    def with_admin(p: argparse.ArgumentParser) -> None:
        p.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
        p.add_argument("--admin-user", default="admin")
        p.add_argument("--admin-password-file", type=Path, required=True)

    init = cmds.add_parser("init-broker", help="write the dynamic-security plugin's JSON file")
    init.add_argument("--out", type=Path, required=True)
    init.add_argument("--admin-user", default="admin")
    init.add_argument("--admin-password-file", type=Path, required=True)
    init.add_argument(
        "--sink-user",
        default=DEFAULT_SINK_USER,
        help="the ingest sink's account (default %(default)s)",
    )
    init.add_argument(
        "--sink-password-file",
        type=Path,
        help="create the sink's account with this password (reads all, writes its commands)",
    )
    init.set_defaults(handler=_cmd_init)

    claim = with_db(cmds.add_parser("claim", help="accept a claim token"))
    claim.add_argument("--label", required=True)
    claim.add_argument("--token-file", type=Path, required=True)
    claim.add_argument("--site", required=True)
    claim.add_argument("--expires", help="ISO time after which the token is refused")
    claim.add_argument("--uses", type=int, help="how many devices may enroll with it")
    claim.add_argument("--serial", action="append", default=[], help="an allowed serial")
    claim.add_argument("--manual", action="store_true", help="each device waits for approve")
    claim.set_defaults(handler=_cmd_claim)

    serve = with_db(cmds.add_parser("serve", help="answer enrollment requests"))
    with_admin(serve)
    limits = RateLimit()
    serve.add_argument(
        "--max-per-token",
        type=int,
        default=limits.per_token,
        help="requests answered per claim token and window (default %(default)s)",
    )
    serve.add_argument(
        "--max-per-serial",
        type=int,
        default=limits.per_serial,
        help="requests answered per device serial and window (default %(default)s)",
    )
    serve.add_argument(
        "--rate-window",
        type=float,
        default=limits.window_s,
        metavar="S",
        help="the rate limits' window in seconds (default %(default)s)",
    )
    serve.set_defaults(handler=_cmd_serve)

    for name, help_ in (("list", "all devices"), ("pending", "devices waiting for approval")):
        with_db(cmds.add_parser(name, help=help_)).set_defaults(handler=_cmd_list)
    for name in ("approve", "reject"):
        p = with_db(cmds.add_parser(name, help=f"{name} a pending device"))
        p.add_argument("name")
        p.set_defaults(handler=_cmd_decide)
    rev = with_db(cmds.add_parser("revoke", help="delete a device's account and disconnect it"))
    rev.add_argument("name")
    with_admin(rev)
    rev.set_defaults(handler=_cmd_revoke)

    from provisioning.release import add_commands as add_release_commands

    add_release_commands(cmds)


def _cmd_init(args: argparse.Namespace) -> int:
    sink_password = None
    if args.sink_password_file is not None:
        sink_password = _password_file(args.sink_password_file, "--sink-password-file")
    init_dynsec(
        args.out, args.admin_user, _password_file(args.admin_password_file),
        args.sink_user, sink_password,
    )  # fmt: skip
    who = f"; sink account {args.sink_user}" if sink_password is not None else ""
    print(f"wrote {args.out}{who}")
    return 0


def _cmd_claim(args: argparse.Namespace) -> int:
    token = _password_file(args.token_file, "--token-file")
    Registry(args.db).add_claim(
        args.label,
        token,
        site=args.site,
        expires_at=_when(args.expires),
        uses=args.uses,
        serials=args.serial,
        manual=args.manual,
    )
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    state = "pending" if args.fleet_command == "pending" else None
    for row in Registry(args.db).devices(state):
        print(f"{row.name}\t{row.state}\t{row.serial}\t{row.model}\t{row.version}")
    return 0


def _cmd_decide(args: argparse.Namespace) -> int:
    state = "approved" if args.fleet_command == "approve" else "rejected"
    Registry(args.db).set_state(args.name, ("pending",), state)
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    admin = Admin(args.broker, args.admin_user, _password_file(args.admin_password_file))
    try:
        admin.start()
    except EnrollError as exc:
        raise UserError(str(exc)) from None
    try:
        revoke(Registry(args.db), admin, args.name)
    finally:
        admin.stop()
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from contract.service import Notifier

    for option, value in (
        ("--max-per-token", args.max_per_token),
        ("--max-per-serial", args.max_per_serial),
        ("--rate-window", args.rate_window),
    ):
        if value <= 0:
            raise UserError(f"{option} {value}: a positive number")
    limits = RateLimit(args.max_per_token, args.max_per_serial, args.rate_window)
    service = Service(
        Registry(args.db),
        args.broker,
        args.admin_user,
        _password_file(args.admin_password_file),
        limits=limits,
    )
    try:
        service.start()
    except EnrollError as exc:
        raise UserError(str(exc)) from None
    notifier = Notifier()
    notifier.ready("answering enrollment requests")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # systemctl stop: a clean stop
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        notifier.stopping(20, "stopping")
        service.stop()
    return 0
