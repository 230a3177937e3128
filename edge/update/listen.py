"""The device's side of ``cmd/update`` (``contactpoint update listen``, its own unit).

It connects with the device's own broker account (the stored enrollment credentials, or
``[mqtt]``'s), client id ``<device>-update``, and reads ``cmd/update``. A message is acted on
only when the fleet's key signed it and it is valid now (edge/update/manifest.py); the wheels
are fetched and checked against their SHA-256, then :class:`~edge.update.releases.Updater`
installs, switches, checks and rolls back. Every outcome — refused (unsigned, wrong signature,
expired, a wheel that does not match), installed, rolled back, failed — goes to the sink as an
``event`` of kind ``update`` with ``data`` ``{result, version, previous, detail}``, which the
sink stores like any event.

It is a separate process from the daemon because it restarts the daemon's unit and must
outlive that restart; after an installed update it exits, and systemd starts it again from
the new release.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract import wire
from edge.config import Config
from edge.publish._link import resolve
from edge.update.manifest import ManifestError, fetch, verify
from edge.update.releases import Outcome, UpdateError, Updater

log = logging.getLogger(__name__)


class Listener:
    """Reads ``cmd/update`` for one device until :meth:`run` returns."""

    def __init__(
        self,
        cfg: Config,
        updater: Updater,
        fleet_key: bytes,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.updater = updater
        self.fleet_key = fleet_key
        self._now = now
        self._site, self._device = cfg.device.site, cfg.device.id
        self._link = resolve(cfg.mqtt)
        self._inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.subscribed = threading.Event()
        #: every outcome reported, in order (the listener's own record)
        self.reports: list[dict[str, Any]] = []
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{self._device}-update",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if self._link.username:
            self._client.username_pw_set(self._link.username, self._link.password or None)
        if self._link.tls is not None:
            self._client.tls_set_context(self._link.tls)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._connected
        self._client.on_subscribe = lambda *_a: self.subscribed.set()
        self._client.on_message = lambda _c, _u, msg: self._inbox.put(bytes(msg.payload))

    def _connected(
        self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if rc.is_failure:
            log.warning("the broker refused the update listener: %s", rc)
            return
        client.subscribe(wire.update_topic(self._site, self._device), qos=1)

    def run(self, stop: threading.Event, *, until_installed: bool = True) -> Outcome | None:
        """Connect, finish an interrupted update, then handle requests until ``stop`` is set
        or (``until_installed``) an update was installed: its outcome is returned."""
        self._client.connect_async(self._link.host, self._link.port, keepalive=30)
        self._client.loop_start()
        try:
            try:
                resumed = self.updater.resume()
            except UpdateError as exc:
                log.warning("not finishing the interrupted update now: %s", exc)
                resumed = None
            if resumed is not None:
                self._report(resumed.result, resumed.version, resumed.previous, resumed.detail)
            while not stop.is_set():
                try:
                    payload = self._inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                outcome = self.handle(payload)
                if until_installed and outcome is not None and outcome.result == "installed":
                    return outcome
            return None
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def handle(self, payload: bytes) -> Outcome | None:
        """One ``cmd/update`` message: refused (reported, None) or carried out."""
        try:
            manifest = verify(payload, self.fleet_key, self._now())
        except ManifestError as exc:
            log.warning("update request refused: %s", exc)
            self._report("refused", "", None, str(exc))
            return None
        self.updater.settings.root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".wheels-", dir=self.updater.settings.root))
        try:
            try:
                fetch(manifest, work)
            except ManifestError as exc:
                log.warning("update to %s refused: %s", manifest.version, exc)
                self._report("refused", manifest.version, None, str(exc))
                return None
            try:
                outcome = self.updater.update(manifest.version, work)
            except UpdateError as exc:  # another update holds the lock
                self._report("failed", manifest.version, None, str(exc))
                return None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._report(outcome.result, outcome.version, outcome.previous, outcome.detail)
        return outcome

    def _report(self, result: str, version: str, previous: str | None, detail: str) -> None:
        at_ns = time.time_ns()
        data = {"result": result, "version": version, "previous": previous, "detail": detail}
        message = {
            **wire.envelope(
                wire.EVENT, device=self._device, site=self._site, msg_id=uuid.uuid4().hex
            ),
            wire.EVENT: {
                "id": uuid.uuid4().hex,
                "kind": wire.UPDATE_EVENT,
                "at": wire.iso(at_ns),
                "data": data,
            },
        }
        self.reports.append(data)
        self._client.publish(
            wire.topic(self._site, self._device, wire.EVENT), json.dumps(message).encode(), qos=1
        )
