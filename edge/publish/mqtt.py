"""The device's publisher: outbox rows leave over MQTT, each marked sent only on its PUBACK
and delivered only on the sink's receipt.

Rules:
- One thread owns the paho client: it connects, reads pending rows (a WAL reader never blocks
  the writer), publishes and takes the acknowledgements. It writes nothing itself: the seqs of
  finished rows go to ``on_acked`` — by default ``store.outbox.mark_sent``, for when nothing
  else writes the store (draining after a simulation); the daemon routes them to its core loop.
- Rows leave in seq order, QoS 1, at most ``inflight`` messages unacknowledged (fewer if an
  MQTT 5 broker's Receive Maximum says so). ``contact`` and ``event`` rows: their payload JSON
  on their topic. ``clip`` rows: the clip file (a path relative to the data directory that must
  stay inside it, with the recorded size and sha256) in ``chunk_bytes`` chunks; the row is
  finished when every chunk is acknowledged. A read error half-way through a clip leaves the
  row for the next connection.
- A PUBACK with an MQTT 5 failure reason (>= 0x80, e.g. Not authorized) is not success: the row
  stays unsent, the error is logged and counted, and the row is tried again after the next
  reconnect, not in a loop on the same connection. (MQTT 3.1.1 has no reason codes: a broker
  that drops a denied message acknowledges it all the same.)
- A clip whose file is missing, unreadable or not what the row recorded can never be delivered:
  it is logged, counted (``clips_missing``) and finished through ``on_acked`` so it does not
  hold the outbox forever. The contact message before it already carries the clip's metadata.
- Broker away: reconnect after :func:`backoff_delay` (jittered); every connection forgets what
  was in flight and starts again from the oldest unsent row. Duplicates are fine: msg_ids are
  stable (chunks: ``<clip_id>.<seq>``) and the sink deduplicates.
- Retained ``status`` with online=true on every connect and every ``status_interval_s``; the last
  will is the same with online=false; a clean :meth:`Publisher.stop` publishes it itself.
- ``cmd/resend`` asks for chunks of a clip again, as ranges (or the older list of seqs): the
  clip id is looked up in the store (never turned into a path) and every range is checked
  against the clip's chunk count before anything is sent.
- A retained message the broker refuses (status, Home Assistant discovery: an MQTT 5 PUBACK
  reason such as 0x87 Not authorized, i.e. the ACL does not grant the topic) is counted in
  ``failed`` and reported once: one warning and the fault ``mqtt_acl`` (``on_fault``, the
  daemon's health) for the first refused topic, debug lines for the rest, on this and later
  connections; the fault clears when every refused topic has been accepted again.
- Delivered is not acknowledged (docs/WIRE.md, "Delivery receipts"): with
  ``mqtt.delivery_receipts`` (the default) a ``contact``, ``event``, ``alert`` or ``clip`` row
  is delivered only when the sink's receipt on ``<root>/cmd/delivered`` names it (by msg_id;
  a clip by its id once the sink verified it). Between its PUBACK and the receipt the row is
  tracked by :class:`edge.publish.delivery.AwaitingReceipts` and sent again when the receipt is
  late and the row may have been lost (a reconnect since, or the sink confirmed a later row;
  otherwise the broker still holds it: *held*). The wait doubles per resend, bounded; after
  ``receipt_max_resends`` the row is given up until the next connection (alarm
  ``undelivered``; raised too when rows stay held with no receipt at all for
  ``receipt_timeout_max_s``: a sink away, or one without receipts). Rows that take no receipt
  (``route``, a clip whose file is gone, every row without ``delivery_receipts``) are
  delivered on their PUBACK.
  The delivered rows go to ``on_delivered`` (default ``store.outbox.mark_delivered``; the daemon
  routes them to its core loop). At start, the rows a previous run left sent and unconfirmed
  are tracked again. The status carries the counts (``status.delivery``).
- Network timing (backoff, status refresh, waits) runs on real monotonic time; the injected
  clock only stamps payloads and acknowledgements.
- No polling: the thread sleeps in ``select`` on the broker's socket and a wake-up socket until
  a timer is due (the status refresh, paho's keep-alive, the check of late receipts while rows
  wait for one, the CONNACK's deadline). Every commit that adds outbox rows wakes it
  (``Outbox.watch``), as do :meth:`Publisher.notify`, :meth:`Publisher.refresh_status` and
  :meth:`Publisher.stop`; the outbox is read again only then.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import select
import shutil
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract import wire as contract_wire
from edge.clock import Clock
from edge.config import MqttSection
from edge.publish import wire
from edge.publish._link import (
    Link,
    LinkConfigError,
    backoff_delay,
    explain_tls,
    new_client,
    open_connection,
    resolve,
)
from edge.publish.delivery import AwaitingReceipts
from edge.store import Delivered, OutboxRow, Store

__all__ = ["LinkConfigError", "Publisher", "PublisherStats", "backoff_delay"]

log = logging.getLogger(__name__)

#: the longest the publisher sleeps while nothing is due: paho's keep-alive (a PINGREQ after
#: ``keepalive_s`` of silence) is checked at least this often, as a share of ``keepalive_s``
KEEPALIVE_SHARE = 0.25
CONNACK_TIMEOUT_S = 10.0
GOODBYE_TIMEOUT_S = 2.0
FETCH_ROWS = 100
ACL_FAULT = "mqtt_acl"  # the health fault of refused retained messages

Message = tuple[str, bytes]  # (topic, payload)


@dataclass(frozen=True, slots=True)
class PublisherStats:
    published: int = 0  # MQTT messages handed to the broker (chunks count one each)
    acked: int = 0  # successful PUBACKs
    failed: int = 0  # PUBACKs with a failure reason, unknown row kinds, broken clip reads
    reconnects: int = 0  # successful connections after the first
    inflight: int = 0
    clips_missing: int = 0  # clip rows finished without sending: the file cannot be used
    resends: int = 0  # resend requests served
    resends_rejected: int = 0
    rows_sent: int = 0  # outbox rows the broker acknowledged (first send)
    rows_delivered: int = 0  # ... confirmed by the sink's receipt, or taking none
    rows_resent: int = 0  # rows sent again because their receipt was late
    awaiting: int = 0  # rows acknowledged and waiting for their receipt now
    held: int = 0  # ... of which are late, but the broker holds them (no sign of a loss)
    given_up: int = 0  # ... of which have had every resend (until the next connection)
    receipts: int = 0  # receipt messages taken from the sink
    receipts_rejected: int = 0  # malformed receipt messages (ignored)
    last_error: str = ""


class _ClipUnavailableError(Exception):
    """The clip file cannot be sent (gone, unreadable, outside the data dir, changed)."""


class _ClipGoneError(_ClipUnavailableError):
    """The clip file was deleted while its row was being sent (the disk budget): it will never
    be there again, so the row is finished like a missing clip, not retried."""


@dataclass(eq=False, slots=True)
class _Job:
    """The messages of one outbox row (``seq``) or of one resend request (``seq`` None)."""

    seq: int | None
    messages: Iterator[Message]
    outstanding: int = 0
    exhausted: bool = False
    failed: bool = False
    key: str | None = None  # what the sink's receipt will name (None: delivered on PUBACK)
    resend: bool = False  # the row goes again because its receipt was late


class Publisher:
    """Drains a store's outbox to the broker in ``cfg``; :meth:`start` runs it on a thread."""

    def __init__(
        self,
        cfg: MqttSection,
        *,
        device: str,
        site: str,
        data_dir: Path,
        store: Store,
        version: str,
        clock: Clock,
        on_acked: Callable[[list[int]], None] | None = None,
        on_delivered: Callable[[Delivered], None] | None = None,
        alarm: Callable[[str, str], None] | None = None,
        free_disk: Callable[[], int] | None = None,
        health: Callable[[], dict[str, Any]] | None = None,
        random_source: Callable[[], float] = random.random,
        retained_on_connect: Callable[[], list[Message]] | None = None,
        today: Callable[[int], dict[str, Any]] | None = None,
        on_fault: Callable[[str, bool, str], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._link: Link = resolve(cfg)  # fails now, naming the file, if the config is bad
        self._device, self._site = device, site
        self._data_dir = data_dir.resolve()
        self._store = store
        self._outbox = store.outbox
        self._version = version
        self._clock = clock
        self._on_acked = on_acked or self._mark_sent
        self._on_delivered = on_delivered or self._mark_delivered
        self._alarm = alarm  # e.g. Health.alarm: raises 'undelivered' when rows are given up
        self._free_disk = free_disk or self._disk_free
        self._health = health  # alarms and faults for the status message (edge.health)
        self._random = random_source
        #: extra retained messages (topic, payload) published on every connect, e.g. the
        #: Home Assistant discovery configs (edge/publish/discovery.py)
        self._retained_on_connect = retained_on_connect
        #: today's live counters for the status, given the wall time (edge.live.TodayCounters)
        self._today = today
        #: (part, ok, detail) when the broker refuses or accepts again a retained message
        self._on_fault = on_fault
        self._refused_topics: set[str] = set()  # retained topics the broker refused
        self._resend_topic = wire.resend_topic(site, device)
        self._receipt_topic = wire.receipt_topic(site, device)
        self._status_topic = wire.topic(site, device, contract_wire.STATUS)
        self._awaiting: AwaitingReceipts | None = None
        if cfg.delivery_receipts:
            self._awaiting = AwaitingReceipts(
                cfg.receipt_timeout_s, cfg.receipt_timeout_max_s, cfg.receipt_max_resends
            )
        self._receipt_check_s = min(0.5, cfg.receipt_timeout_s / 4)
        self._receipt_check_at = 0.0
        self._last_receipt = time.monotonic()  # or the start: how long the sink has been silent
        self._silence_alarmed = False
        # delivered rows not yet handed to on_delivered (they outlive a connection)
        self._confirmed_seqs: list[int] = []
        self._confirmed_msg_ids: list[str] = []
        self._confirmed_clips: list[str] = []

        self._stats = PublisherStats()
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._progress = threading.Event()
        self._thread: threading.Thread | None = None
        #: a byte written here wakes the publisher thread out of its wait on the broker's
        #: socket (:meth:`notify`, :meth:`stop`...): it sleeps until something is due
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._unwatch: Callable[[], None] = lambda: None
        self._client: paho.Client | None = None
        self._connected = False
        self._refused = False
        self._sessions = 0  # connections the broker accepted so far
        self._reset_session()

    # --- public face ---------------------------------------------------------------------------

    @property
    def stats(self) -> PublisherStats:
        awaiting = self._awaiting
        with self._stats_lock:
            return replace(
                self._stats,
                inflight=len(self._inflight),
                awaiting=0 if awaiting is None else len(awaiting),
                held=0 if awaiting is None else awaiting.held,
                given_up=0 if awaiting is None else awaiting.given_up,
            )

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        """Start the publisher thread; from now on every commit of new outbox rows in the
        store wakes it (:meth:`edge.store.Outbox.watch`)."""
        if self._thread is not None:
            raise RuntimeError("the publisher is already started")
        self._stop.clear()
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._wakeup = (reader, writer)
        self._unwatch = self._outbox.watch(self.notify)
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish status offline, disconnect cleanly and end the thread."""
        self._stop.set()
        self._poke()
        if self._thread is not None:
            self._unwatch()
            self._thread.join(timeout_s)
            self._thread = None
            if not self._thread_alive():
                self._close_wakeup()

    def refresh_status(self) -> None:
        """Health changed: publish the retained status now rather than at the next interval."""
        self._status_due = 0.0
        self._poke()

    def notify(self) -> None:
        """New rows were committed: look at the outbox now (the store's commits call this)."""
        self._wake.set()
        self._poke()

    def drain(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (True) or ``timeout_s`` has passed (False)."""
        if self._thread is None:
            raise RuntimeError("drain() needs a started publisher")
        deadline = time.monotonic() + timeout_s
        while True:
            self._progress.clear()
            if self._outbox.depth() == 0:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.notify()
            self._progress.wait(min(left, 0.25))

    # --- the connection loop (publisher thread) ------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        try:
            self._load_awaiting()
        except Exception as exc:  # the store answers later; those rows wait for the next start
            log.exception("cannot read the rows waiting for a receipt")
            self._error(f"cannot read the rows waiting for a receipt: {exc!r}")
        while not self._stop.is_set():
            try:
                if self._connection():
                    attempt = 0
            except Exception as exc:  # keep the link alive whatever one connection did
                log.exception("publisher connection failed")
                self._error(f"publisher connection failed: {exc!r}")
            if self._stop.is_set():
                break
            delay = backoff_delay(
                attempt, self._cfg.backoff_min_s, self._cfg.backoff_max_s, self._random
            )
            attempt += 1
            self._stop.wait(delay)

    def _connection(self) -> bool:
        """One connection, from CONNECT to its loss or to stop; True if CONNACK said yes."""
        client = new_client(
            self._link,
            self._device,
            self._status_topic,
            wire.encode_json(self._status(online=False)),
            self._cfg.inflight,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_log = self._on_log
        self._paho_error = ""
        self._reset_session()
        self._refused = False
        self._client = client
        try:
            open_connection(client, self._link)
        except OSError as exc:
            why = explain_tls(str(exc), self._cfg, self._link.host)
            self._error(f"cannot reach the broker at {self._link.url}: {why}")
            return False
        accepted = False
        connack_deadline = time.monotonic() + CONNACK_TIMEOUT_S
        try:
            while not self._stop.is_set():
                wait = self._until_due(connack_deadline)
                if self._io(client, wait) != paho.MQTT_ERR_SUCCESS or self._refused:
                    if not (accepted or self._connected or self._refused):
                        # dropped before CONNACK: TLS 1.3 rejects a client certificate here
                        cause = self._paho_error or "connection closed"
                        why = explain_tls(cause, self._cfg, self._link.host)
                        self._error(f"the broker at {self._link.url} closed the connection: {why}")
                    break
                if not self._connected:
                    if accepted or time.monotonic() > connack_deadline:
                        if not accepted:
                            self._error(f"no CONNACK from {self._link.url}")
                        break
                    continue
                accepted = True
                if not self._pump(client):
                    break
                self._check_receipts()
                self._flush()
                if time.monotonic() >= self._status_due:
                    self._publish_status(client)
            if self._stop.is_set() and self._connected:
                self._goodbye(client)
        finally:
            self._connected = False
            self._flush()
            sock = client.socket()
            if sock is not None:
                sock.close()
            self._reset_session()
            self._progress.set()
        return accepted

    def _goodbye(self, client: paho.Client) -> None:
        info = client.publish(
            self._status_topic, wire.encode_json(self._status(online=False)), qos=1, retain=True
        )
        deadline = time.monotonic() + GOODBYE_TIMEOUT_S
        while info.rc == paho.MQTT_ERR_SUCCESS and time.monotonic() < deadline:
            left = deadline - time.monotonic()
            if info.is_published() or self._io(client, left) != paho.MQTT_ERR_SUCCESS:
                break
            self._flush()
        client.disconnect()

    # --- waiting: on the broker's socket and the wake-up socket, until the next timer ---------

    def _until_due(self, connack_deadline: float) -> float:
        """Seconds until something is due on this connection: the CONNACK's deadline, the
        status refresh, the check of late receipts (while rows wait for one) or paho's
        keep-alive. Nothing else needs a timer: new rows, acknowledgements, receipts, resend
        requests and :meth:`stop` wake the wait themselves."""
        now = time.monotonic()
        due = now + self._link.keepalive_s * KEEPALIVE_SHARE
        if not self._connected:
            due = min(due, connack_deadline)
        else:
            due = min(due, self._status_due)
            if self._awaiting is not None and len(self._awaiting):
                due = min(due, self._receipt_check_at)
        return max(0.0, due - now)

    def _io(self, client: paho.Client, timeout_s: float) -> MQTTErrorCode:
        """Wait up to ``timeout_s`` for the broker's socket or a wake-up, then let paho read,
        write and keep the connection alive (what ``client.loop`` does, with the wake-up
        socket in the same ``select``)."""
        sock = client.socket()
        wakeup = self._wakeup
        if sock is None or wakeup is None:
            return paho.MQTT_ERR_NO_CONN
        pending_of = getattr(sock, "pending", None)  # TLS: bytes already decrypted, not in select
        pending = pending_of() if callable(pending_of) else 0
        readers: list[Any] = [sock, wakeup[0]]
        writers: list[Any] = [sock] if client.want_write() else []
        try:
            readable, writable, _ = select.select(
                readers, writers, [], 0.0 if pending else timeout_s
            )
        except (OSError, ValueError, TypeError):  # the socket was closed under us
            return paho.MQTT_ERR_CONN_LOST
        if wakeup[0] in readable:
            with contextlib.suppress(OSError):
                wakeup[0].recv(4096)
        if sock in readable or pending:
            rc = client.loop_read()
            if rc != paho.MQTT_ERR_SUCCESS or client.socket() is None:
                return rc if rc != paho.MQTT_ERR_SUCCESS else paho.MQTT_ERR_CONN_LOST
        if sock in writable:
            rc = client.loop_write()
            if rc != paho.MQTT_ERR_SUCCESS or client.socket() is None:
                return rc if rc != paho.MQTT_ERR_SUCCESS else paho.MQTT_ERR_CONN_LOST
        return client.loop_misc()

    def _poke(self) -> None:
        """Wake the publisher thread out of :meth:`_io` (from any thread)."""
        wakeup = self._wakeup
        if wakeup is not None:
            with contextlib.suppress(OSError):  # full (a wake-up is pending already) or closed
                wakeup[1].send(b"\0")

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _close_wakeup(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            for end in wakeup:
                end.close()

    def _reset_session(self) -> None:
        self._inflight: dict[int, _Job] = {}
        self._window = self._cfg.inflight
        self._resends: deque[_Job] = deque()
        self._rows: deque[OutboxRow] = deque()
        self._current: _Job | None = None
        self._cursor = 0
        self._outbox_read = False  # read to its end: read again when woken (notify)
        self._status_due = float("inf")
        self._done: list[int] = []
        self._retained: dict[int, str] = {}  # mid -> topic of a retained message in flight
        self._redo: deque[OutboxRow] = deque()  # rows to send again: their receipt is late
        self._redo_job: _Job | None = None
        if self._awaiting is not None:  # what was being sent again never got its PUBACK
            self._awaiting.requeue(time.monotonic())

    # --- paho callbacks (run inside client.loop, on the publisher thread) ----------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refused = True
            self._error(f"the broker at {self._link.url} refused the connection: {reason}")
            return
        self._connected = True
        # MQTT 5: the broker may accept fewer unacknowledged messages than configured.
        limit = getattr(properties, "ReceiveMaximum", None)
        self._window = min(self._cfg.inflight, limit) if isinstance(limit, int) else self._window
        if self._sessions:
            self._count(reconnects=1)
        self._sessions += 1
        log.info("connected to %s (session present: %s)", self._link.url, flags.session_present)
        client.subscribe(self._resend_topic, qos=1)
        if self._awaiting is not None:
            client.subscribe(self._receipt_topic, qos=1)
            # a new connection: a restarted broker may have lost what it acknowledged, so
            # what was sent before may go again, and the rows given up get another round
            self._awaiting.connected(time.monotonic())
        if self._retained_on_connect is not None:
            try:
                for topic, payload in self._retained_on_connect():
                    self._publish_retained(client, topic, payload)
            except Exception as exc:  # noqa: BLE001 - a broken provider must not cost the link
                self._error(f"retained_on_connect failed: {exc!r}")
        self._publish_status(client)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connected and not self._stop.is_set():
            self._error(f"lost the connection to {self._link.url}: {reason}")
        self._connected = False

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        topic = self._retained.pop(mid, None)
        if topic is not None:
            self._retained_answer(topic, reason)
            return
        job = self._inflight.pop(mid, None)
        if job is None:
            return  # a message of a connection already forgotten
        job.outstanding -= 1
        if reason.is_failure:
            job.failed = True
            what = "a resent chunk" if job.seq is None else f"outbox row {job.seq}"
            self._error(f"the broker refused {what}: {reason}", failed=1)
        else:
            self._count(acked=1)
        self._finish_if_done(job)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == self._receipt_topic:
            self._take_receipt(bytes(msg.payload))
            return
        if msg.topic != self._resend_topic:
            return
        try:
            job = self._resend_job(bytes(msg.payload))
        except (ValueError, _ClipUnavailableError) as exc:
            self._error(f"resend request ignored: {exc}", resends_rejected=1)
            return
        self._resends.append(job)
        self._count(resends=1)

    def _on_log(self, client: paho.Client, userdata: Any, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR and not self._paho_error:
            self._paho_error = text  # the first error of a connection is the cause

    # --- publishing ----------------------------------------------------------------------------

    def _pump(self, client: paho.Client) -> bool:
        """Publish until ``inflight`` messages are unacknowledged; False if the link broke."""
        while len(self._inflight) < self._window:
            job = self._next_job()
            if job is None:
                return True
            try:
                topic, payload = next(job.messages)
            except StopIteration:
                self._retire(job)
                continue
            except _ClipGoneError as exc:
                self._error(f"clip deleted while being sent, row finished: {exc}", clips_missing=1)
                job.key = None  # nothing more can be delivered: no receipt to wait for
                self._retire(job)
                continue
            except _ClipUnavailableError as exc:
                job.failed = True
                self._error(f"clip read failed, will retry after a reconnect: {exc}", failed=1)
                self._retire(job)
                continue
            info = client.publish(topic, payload, qos=1)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                return False
            self._inflight[info.mid] = job
            job.outstanding += 1
            self._count(published=1)
        return True

    def _next_job(self) -> _Job | None:
        if self._resends:
            return self._resends[0]
        while self._redo_job is None and self._redo:
            self._redo_job = self._row_job(self._redo.popleft(), resend=True)
        if self._redo_job is not None:
            return self._redo_job
        while self._current is None:
            row = self._next_row()
            if row is None:
                return None
            self._current = self._row_job(row)
        return self._current

    def _retire(self, job: _Job) -> None:
        job.exhausted = True
        if self._resends and self._resends[0] is job:
            self._resends.popleft()
        elif self._redo_job is job:
            self._redo_job = None
        elif self._current is job:
            self._current = None
        self._finish_if_done(job)

    def _finish_if_done(self, job: _Job) -> None:
        if not (job.exhausted and job.outstanding == 0 and job.seq is not None and not job.failed):
            return
        self._done.append(job.seq)
        if not job.resend:
            self._count(rows_sent=1)
        if job.key is None:
            self._delivered_now(job.seq)
        elif self._awaiting is not None:
            self._awaiting.sent(job.seq, job.key, time.monotonic(), resend=job.resend)

    def _delivered_now(self, seq: int) -> None:
        """Row ``seq`` takes no receipt (or can never be delivered): delivered as it is."""
        self._confirmed_seqs.append(seq)
        if self._awaiting is not None:
            self._awaiting.forget([seq])
        self._count(rows_delivered=1)

    def _flush(self) -> None:
        """Hand the finished rows to ``on_acked`` and the delivered ones to ``on_delivered``."""
        if self._done:
            seqs, self._done = self._done, []
            try:
                self._on_acked(seqs)
            except Exception as exc:  # noqa: BLE001 - a failing hook must not kill the link
                self._error(f"on_acked failed for rows {seqs}: {exc!r}")
            self._progress.set()
        delivered = Delivered(
            seqs=tuple(self._confirmed_seqs),
            msg_ids=tuple(self._confirmed_msg_ids),
            clip_ids=tuple(self._confirmed_clips),
        )
        if delivered:
            self._confirmed_seqs, self._confirmed_msg_ids, self._confirmed_clips = [], [], []
            try:
                self._on_delivered(delivered)
            except Exception as exc:  # noqa: BLE001 - stay undelivered, tracked at the next start
                self._error(f"on_delivered failed: {exc!r}")
            self._progress.set()

    # --- delivery receipts (edge/publish/delivery.py) ------------------------------------------

    def _load_awaiting(self) -> None:
        """Track the rows a previous run left acknowledged and unconfirmed (their wait starts
        now); without receipts they count as delivered now."""
        for row in self._outbox.awaiting():
            key = wire.receipt_key(row.kind, row.msg_id, row.ref)
            if key is None or self._awaiting is None:
                self._delivered_now(row.seq)
            else:
                self._awaiting.sent(row.seq, key, time.monotonic())

    def _take_receipt(self, data: bytes) -> None:
        try:
            receipt = wire.parse_receipt(data, device=self._device, site=self._site)
        except ValueError as exc:
            self._error(f"receipt ignored: {exc}", receipts_rejected=1)
            return
        seqs = [] if self._awaiting is None else self._awaiting.confirm(receipt.keys)
        # by msg_id and clip id too: a row whose PUBACK was lost with its connection is not
        # tracked, and may still be what the sink confirms
        self._confirmed_msg_ids.extend(receipt.msg_ids)
        self._confirmed_clips.extend(receipt.clip_ids)
        self._count(receipts=1, rows_delivered=len(seqs))
        self._last_receipt = time.monotonic()
        self._silence_alarmed = False

    def _check_receipts(self) -> None:
        """Send again the rows whose receipt is late; raise the alarm for rows given up."""
        awaiting = self._awaiting
        now = time.monotonic()
        if awaiting is None or now < self._receipt_check_at:
            return
        self._receipt_check_at = now + self._receipt_check_s
        again, dropped = awaiting.due(now)
        if again:
            rows = self._outbox.undelivered_rows(again)
            found = {row.seq for row in rows}
            awaiting.forget(seq for seq in again if seq not in found)  # confirmed meanwhile
            self._redo.extend(rows)
            self._count(rows_resent=len(rows))
            if rows:
                log.info("sending %d message(s) again: no receipt from the sink yet", len(rows))
        if dropped:
            self._raise_undelivered(
                f"{len(dropped)} message(s) not confirmed by the sink after "
                f"{awaiting.max_resends} resend(s); kept on the device and sent again after "
                "the next connection to the broker"
            )
        silent_s = now - self._last_receipt
        if awaiting.held and silent_s >= awaiting.timeout_max_s and not self._silence_alarmed:
            self._silence_alarmed = True  # once per silence: a receipt ends it
            self._raise_undelivered(
                f"{awaiting.held} message(s) acknowledged by the broker wait for the sink's "
                f"receipt, and none came for {silent_s:.0f} s: the sink is away or busy (the "
                "broker holds them for it), or it is older than delivery receipts, or the "
                "broker's ACL lacks cmd/delivered; kept on the device, sent again after a "
                "reconnect or once the sink confirms later messages "
                "(mqtt.delivery_receipts = false speaks to a sink without receipts)"
            )

    def _raise_undelivered(self, detail: str) -> None:
        if self._alarm is not None:
            self._alarm("undelivered", detail)
        else:
            log.warning("%s", detail)

    def _next_row(self) -> OutboxRow | None:
        """The next unsent row; the outbox is read again only after a wake-up once it was read
        to its end (every commit of new rows wakes the publisher: no polling)."""
        if not self._rows:
            if self._outbox_read and not self._wake.is_set():
                return None
            self._wake.clear()
            self._rows.extend(self._outbox.pending(limit=FETCH_ROWS, after_seq=self._cursor))
            if not self._rows:
                self._outbox_read = True
                self._progress.set()
                return None
            self._outbox_read = False
            self._cursor = self._rows[-1].seq
        return self._rows.popleft()

    def _row_job(self, row: OutboxRow, *, resend: bool = False) -> _Job | None:
        key = None
        if self._awaiting is not None:
            key = wire.receipt_key(row.kind, row.msg_id, row.ref)
        if row.kind in (contract_wire.CONTACT, contract_wire.EVENT, contract_wire.ALERT):
            topic = wire.topic(self._site, self._device, row.kind)
            message = iter([(topic, wire.encode_json(row.payload))])
            return _Job(row.seq, message, key=key, resend=resend)
        if row.kind == contract_wire.ROUTE and isinstance(row.payload.get("route"), str):
            topic = wire.route_topic(self._site, self._device, row.payload["route"])
            message = iter([(topic, wire.encode_json(row.payload))])
            return _Job(row.seq, message, key=key, resend=resend)
        if row.kind != contract_wire.CLIP:
            self._error(
                f"outbox row {row.seq} has unknown kind {row.kind!r}; left unsent", failed=1
            )
            return None
        try:
            ref = wire.clip_ref(row.payload)
            path = self._checked_clip(ref)
        except (ValueError, _ClipUnavailableError) as exc:
            self._error(f"clip row {row.seq} cannot be sent and is dropped: {exc}", clips_missing=1)
            self._done.append(row.seq)
            self._delivered_now(row.seq)  # nothing to deliver: no receipt will come
            return None
        seqs = range(wire.chunk_count(ref.bytes, self._cfg.chunk_bytes))
        return _Job(row.seq, self._chunks(ref, path, seqs), key=key, resend=resend)

    def _resend_job(self, data: bytes) -> _Job:
        clip_id, ranges = wire.parse_resend(data)
        ref = self._find_clip(clip_id)
        if ref is None:
            raise ValueError(f"no clip with id {clip_id[:64]!r}")
        path = self._checked_clip(ref)
        total = wire.chunk_count(ref.bytes, self._cfg.chunk_bytes)
        wrong = [r for r in ranges if r[1] >= total]
        if wrong or not ranges:
            raise ValueError(f"clip {clip_id} has chunks 0..{total - 1}, asked for {ranges[:20]}")
        seqs = sorted({seq for first, last in ranges for seq in range(first, last + 1)})
        return _Job(None, self._chunks(ref, path, seqs))

    def _find_clip(self, clip_id: str) -> wire.ClipRef | None:
        # TODO(store): a Store.clip(contact_id) lookup would avoid loading every contact.
        for contact in self._store.contacts():
            clip = contact.clip
            if contact.id == clip_id and clip is not None:
                return wire.ClipRef(
                    clip_id=clip.contact_id,
                    path=clip.path,
                    sha256=clip.sha256,
                    bytes=clip.bytes,
                    codec=clip.codec,
                    sample_rate=clip.sample_rate,
                )
        return None

    def _checked_clip(self, ref: wire.ClipRef) -> Path:
        """The clip's file, inside the data dir and with the recorded size and sha256."""
        path = (self._data_dir / ref.path).resolve()
        if not path.is_relative_to(self._data_dir):
            raise _ClipUnavailableError(f"clip path {ref.path!r} leaves the data directory")
        try:
            with path.open("rb") as file:
                digest = hashlib.file_digest(file, "sha256")  # one small buffer, reused
                size = file.tell()
        except OSError as exc:
            raise _ClipUnavailableError(f"{path}: {exc.strerror or exc}") from None
        if size != ref.bytes or digest.hexdigest() != ref.sha256:
            raise _ClipUnavailableError(
                f"{path}: {size} bytes / sha256 differ from the recorded clip"
            )
        return path

    def _chunks(self, ref: wire.ClipRef, path: Path, seqs: Iterable[int]) -> Iterator[Message]:
        size = self._cfg.chunk_bytes
        total = wire.chunk_count(ref.bytes, size)
        topic = wire.clip_topic(self._site, self._device)
        for seq in seqs:
            offset = seq * size
            expected = min(size, ref.bytes - offset)
            try:
                with path.open("rb") as file:
                    file.seek(offset)
                    data = file.read(size)
            except FileNotFoundError:
                raise _ClipGoneError(f"{path}: deleted") from None
            except OSError as exc:
                raise _ClipUnavailableError(f"{path}: {exc.strerror or exc}") from None
            if len(data) != expected:
                raise _ClipUnavailableError(f"{path}: changed while being sent")
            frame = wire.chunk_frame(
                device=self._device,
                site=self._site,
                clip_id=ref.clip_id,
                seq=seq,
                total=total,
                offset=offset,
                data=data,
                clip_sha256=ref.sha256,
                clip_bytes=ref.bytes,
                codec=ref.codec,
                sample_rate=ref.sample_rate,
            )
            yield topic, frame

    # --- status --------------------------------------------------------------------------------

    def _status(self, *, online: bool) -> contract_wire.StatusMessage:
        clock = self._clock
        return wire.status_payload(
            device=self._device,
            site=self._site,
            online=online,
            version=self._version,
            boot_id=clock.boot_id(),
            outbox_depth=self._outbox.depth(),
            free_disk_bytes=self._free_disk(),
            clock_synced=clock.synchronized(),
            at_wall_ns=clock.wall_ns(clock.monotonic_ns()),
            health=None if self._health is None else self._health(),
            today=None if self._today is None else self._today(clock.wall_ns(clock.monotonic_ns())),
            delivery=self._delivery(),
        )

    def _delivery(self) -> dict[str, Any]:
        stats = self.stats
        return wire.delivery_status(
            receipts=self._awaiting is not None,
            sent=stats.rows_sent,
            delivered=stats.rows_delivered,
            awaiting=stats.awaiting,
            held=stats.held,
            resent=stats.rows_resent,
            given_up=stats.given_up,
        )

    def _publish_status(self, client: paho.Client) -> None:
        payload = wire.encode_json(self._status(online=True))
        self._publish_retained(client, self._status_topic, payload)
        self._status_due = time.monotonic() + self._cfg.status_interval_s

    def _publish_retained(self, client: paho.Client, topic: str, payload: bytes) -> None:
        info = client.publish(topic, payload, qos=1, retain=True)
        if info.rc == paho.MQTT_ERR_SUCCESS:
            self._retained[info.mid] = topic

    def _retained_answer(self, topic: str, reason: ReasonCode) -> None:
        """The broker's answer to a retained message: a refusal is a fault, reported once."""
        if reason.is_failure:
            first = not self._refused_topics
            known = topic in self._refused_topics
            self._refused_topics.add(topic)
            if not first or known:
                self._count(failed=1)
                log.debug("the broker refused %s too: %s", topic, reason)
                return
            message = (
                f"the broker refused {topic}: {reason}; its ACL does not grant this device the "
                "topic (re-run 'contactpoint provision' and reload the broker, or check "
                "homeassistant.discovery_prefix)"
            )
            self._error(message, failed=1)
            if self._on_fault is not None:
                self._on_fault(ACL_FAULT, False, message)
        elif topic in self._refused_topics:
            self._refused_topics.discard(topic)
            if not self._refused_topics:
                log.info("the broker accepts the retained messages again")
                if self._on_fault is not None:
                    self._on_fault(ACL_FAULT, True, "")

    # --- helpers -------------------------------------------------------------------------------

    def _mark_sent(self, seqs: list[int]) -> None:
        self._outbox.mark_sent(seqs, self._clock.wall_ns(self._clock.monotonic_ns()))

    def _mark_delivered(self, delivered: Delivered) -> None:
        self._outbox.mark_delivered(delivered, self._clock.wall_ns(self._clock.monotonic_ns()))

    def _disk_free(self) -> int:
        try:
            return shutil.disk_usage(self._data_dir).free
        except OSError:
            return 0

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            values = {k: getattr(self._stats, k) + v for k, v in deltas.items()}
            self._stats = replace(self._stats, **values)

    def _error(
        self,
        message: str,
        *,
        failed: int = 0,
        clips_missing: int = 0,
        resends_rejected: int = 0,
        receipts_rejected: int = 0,
    ) -> None:
        log.warning("%s", message)
        with self._stats_lock:
            s = self._stats
            self._stats = replace(
                s,
                failed=s.failed + failed,
                clips_missing=s.clips_missing + clips_missing,
                resends_rejected=s.resends_rejected + resends_rejected,
                receipts_rejected=s.receipts_rejected + receipts_rejected,
                last_error=message,
            )
