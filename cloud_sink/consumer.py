"""The MQTT side of the sink: one paho-mqtt client per worker, driven by the worker's own thread.

Rules:
- MQTT 5 by default, 3.1.1 selectable. The session is persistent: MQTT 5 connects with
  ``clean_start=False`` and a session expiry (default 7 days), 3.1.1 with
  ``clean_session=False``; the broker keeps QoS 1 messages for a sink that is away.
- The client id comes from the config. By default it is ``contactpoint-sink[-<group>]`` and,
  with a password, a tag derived from it (``contactpoint-sink-<16 hex>``): stable across
  restarts (the persistent session is found again) and not guessable by a device, which on a
  broker that takes client ids as given could otherwise connect with the sink's id and clean
  start and throw its queued messages away. The brokers ``contactpoint provision`` configures
  replace every client id by the account name anyway (docs/SECURITY.md), so there every worker
  of a group needs its own account (two clients with one id throw each other off the broker).
- Subscription, QoS 1: ``contactpoint/v1/+/+/+``; with a group the shared subscription
  ``$share/<group>/contactpoint/v1/+/+/+`` so that N workers share one stream (MQTT 5 only: a
  group with 3.1.1 is refused, as every worker would take every message). The single-level
  wildcard does not match ``.../cmd/resend``, so the sink never takes its own commands.
- Without a group the subscription is a plain one ON PURPOSE: mosquitto 2.0 does not restore
  a shared subscription with its session after a restart, so what devices publish after the
  restart and before the workers are back and subscribed again reaches nobody and is lost
  (measured in tests/cloud_sink/test_broker_needs.py; messages it had acknowledged to the
  device were lost in tests/test_end_to_end.py), while a plain persistent subscription
  survives it. Share a stream between workers on a broker that persists shared subscriptions
  (docs/SCALING.md).
- Batches, ack after commit: the client runs with ``manual_ack=True``. Messages are collected
  into a batch, ingested in one transaction (:meth:`Ingest.handle_batch`, a savepoint per
  message) when it holds ``batch_max_messages``, when its first message waited
  ``batch_max_ms``, or as soon as the broker has nothing more ready; each message is acked only
  after its batch committed, in the order received (:meth:`Sink._committed` is the one place
  for what follows a message's commit). The messages before a batch's first clip chunk are
  committed first, in a transaction of their own, so that a contact's row is not kept waiting
  for the syncs of its clip's chunk files (at most one transaction more per batch). When ingest
  raises, nothing of that transaction was committed nor is acked, later messages are not taken
  either, and the worker reconnects after a back-off: the broker then delivers everything
  unacked again. A batch still open when the connection drops is dropped with it (it is
  redelivered, never acked on another connection).
- Delivery receipts after commit (cloud_sink/receipts.py, docs/WIRE.md): what a committed
  message stored (or had stored already) and every clip verified complete is confirmed to its
  device on ``<root>/cmd/delivered`` (QoS 1, several ids per message, within ``linger``);
  the device keeps a message until then and sends it again when no receipt comes. The
  client keeps a QoS 1 message until the broker's PUBACK, and mosquitto 2.0 answers a resumed
  session's publishes only after it has sent that session's whole queued backlog (the device
  gets the receipt at once; only the PUBACK waits): a worker draining a backlog held every
  receipt it sent meanwhile, ~180 bytes per message drained (docs/SCALING.md). So while
  :data:`MAX_UNACKED` of the worker's QoS 1 publishes await their PUBACK (by message id, from
  the client's ``on_publish``; forgotten at every connection) receipts go with QoS 0 (counted
  ``receipts_sent_qos0``): a device that is connected gets them as before, one that is not
  loses them and sends those messages again (deduplicated, confirmed again).
- The worker thread owns the client and the database connection: it runs the network loop,
  reconnects on its own with exponential back-off (capped), and every ``check_every_s`` of the
  injected clock starts a pass of the clip check, which it runs in small steps
  (:meth:`Ingest.check_clips_step`, a few dozen clips each) between network loops, so that
  messages keep flowing however many clips are incomplete; it publishes the resend requests
  (QoS 1, each within :data:`wire.MAX_RESEND_BYTES`).
- Device offline alerts (:class:`cloud_sink.alerts.DeviceWatch`): raised on an offline status
  (the last will) as it is stored, and for devices silent ``offline_after_s`` by a sweep every
  ``check_every_s``; cleared by the device's next message; published like the site alerts.
- What a sender may claim and how long the sink tries are the ``max_clip_bytes``,
  ``max_chunks``, ``clip_expire_after_s`` and ``max_ingest_attempts`` settings
  (:class:`cloud_sink.ingest.Limits`).
- Clips in object storage (``clips = "s3://BUCKET/PREFIX"``, the ``s3`` settings): a verified
  clip is uploaded by the worker's :class:`cloud_sink.objects.Uploader` thread (woken when a
  clip completes, retried while the storage fails; the clip stays in the data directory until
  its object is verified), so a slow or absent storage never holds up the messages. Its
  receipt goes out as before, once the clip is verified and fsynced in the data directory.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud_sink import wire
from cloud_sink.alerts import DeviceWatch, SiteAlerts
from cloud_sink.db import open_database
from cloud_sink.ingest import DEFAULT_LIMITS, ClipKey, Ingest, Limits, Result
from cloud_sink.migrations import migrate
from cloud_sink.objects import S3Clips, Uploader, parse_clips_url
from cloud_sink.receipts import Confirm, Receipts
from cloud_sink.retention import enforce as enforce_retention
from cloud_sink.tls import context as tls_context
from cloud_sink.tls import explain as explain_tls
from contract import wire as contract_wire

if TYPE_CHECKING:
    from cloud_sink.config import S3Section

log = logging.getLogger(__name__)

NS: Final = 1_000_000_000
#: QoS 1 publishes the broker has not acknowledged yet, past which receipts go with QoS 0
#: (paho's own in-flight window is 20: more would only queue inside the client)
MAX_UNACKED: Final = 20
Protocol = Literal["5", "3.1.1"]


def _is_chunk(msg: mqtt.MQTTMessage) -> bool:
    """Whether a message came on a clip chunk's topic (one that is not UTF-8 is not)."""
    try:
        where = contract_wire.parse_topic(msg.topic)
    except UnicodeDecodeError:  # paho decodes the topic when asked: not a chunk of ours
        return False
    return where is not None and where.kind == contract_wire.CLIP


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """What one sink worker needs; every field has a default except broker and data_dir."""

    broker: str  # mqtt://HOST:PORT or mqtts://HOST:PORT
    data_dir: Path
    db_url: str | None = None  # None: SQLite at <data_dir>/sink.db
    group: str | None = None  # None: one worker, plain subscription (see the module notes)
    client_id: str | None = None  # None: contactpoint-sink[-<group>][-<tag of password>]
    protocol: Protocol = "5"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line or repr
    tls: bool = False  # also on with an mqtts:// URL
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    resend_after_s: float = 60.0  # a clip quiet this long with chunks missing: ask again
    check_every_s: float = 10.0
    max_resend_requests: int = 10
    # What a sender may claim: a larger clip, or one in more chunks, is a dead letter
    # (too_large). Defaults: a 15-minute 16 kHz WAV clip is ~29 MB; chunks are >= 1 KiB.
    max_clip_bytes: int = DEFAULT_LIMITS.max_clip_bytes
    max_chunks: int = DEFAULT_LIMITS.max_chunks
    clip_expire_after_s: float | None = 24 * 3600.0  # incomplete this long: dead letter, dropped
    max_ingest_attempts: int = DEFAULT_LIMITS.max_attempts  # failing this often: dead letter
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    retention_audio_days: float | None = None  # delete clip audio this old (None: keep)
    retention_interval_s: float = 3600.0  # how often the worker enforces it
    # a device silent this long gets a device_offline alert (None: only its last will does)
    offline_after_s: float | None = 300.0
    batch_max_messages: int = 500  # messages ingested in one transaction at most ...
    batch_max_ms: float = 50.0  # ... and collected for at most this long (ms)
    temp_lease_s: float = 3600.0  # another worker's temporary file this old is abandoned
    clips: str | None = None  # s3://BUCKET/PREFIX: verified clips go there (None: data dir)

    def limits(self) -> Limits:
        for name in ("max_clip_bytes", "max_chunks", "max_ingest_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: must be at least 1")
        if self.max_clip_bytes > wire.MAX_CLIP_BYTES or self.max_chunks > wire.MAX_CHUNKS:
            raise ValueError(
                f"max_clip_bytes {self.max_clip_bytes}, max_chunks {self.max_chunks}: the wire "
                f"allows at most {wire.MAX_CLIP_BYTES} bytes in {wire.MAX_CHUNKS} chunks"
            )
        expire = self.clip_expire_after_s
        if expire is not None and expire <= 0:
            raise ValueError(f"clip_expire_after_s = {expire}: must be > 0 (or unset: never)")
        return Limits(
            max_clip_bytes=self.max_clip_bytes,
            max_chunks=self.max_chunks,
            clip_expire_after_ns=None if expire is None else int(expire * NS),
            max_attempts=self.max_ingest_attempts,
        )

    @property
    def effective_client_id(self) -> str:
        if self.client_id:
            return self.client_id
        base = f"contactpoint-sink-{self.group}" if self.group else "contactpoint-sink"
        if not self.password:
            return base
        tag = hmac.new(self.password.encode(), b"contactpoint sink client id", "sha256")
        return f"{base}-{tag.hexdigest()[:16]}"

    @property
    def topic_filter(self) -> str:
        if self.group:  # with MQTT 5 only: Sink refuses a group with 3.1.1
            return wire.shared_subscription(self.group)
        return wire.SUBSCRIPTION

    def endpoint(self) -> tuple[str, int, bool]:
        """(host, port, tls) from the broker URL."""
        url = urlsplit(self.broker)
        if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not url.hostname:
            raise ValueError(f"broker URL {self.broker!r}: expected mqtt://HOST:PORT")
        tls = self.tls or url.scheme in ("mqtts", "ssl")
        return url.hostname, url.port or (8883 if tls else 1883), tls


class _FirstError(logging.Logger):
    """paho's logger for one worker: its error lines go to :meth:`Sink._on_log`, everything
    below is never even formatted."""

    def __init__(self, sink: Sink) -> None:
        super().__init__(f"{__name__}.paho", logging.ERROR)
        self._sink = sink

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level >= logging.ERROR:
            self._sink._on_log(str(msg) % args if args else str(msg))


class Sink:
    """One ingest worker: ``start()`` runs it in a thread, ``stop()`` ends it cleanly."""

    def __init__(
        self,
        config: SinkConfig,
        *,
        clock: Callable[[], int] = time.time_ns,
        alerts: SiteAlerts | None = None,
        on_turn: Callable[[Sink], None] | None = None,
        s3: S3Section | None = None,
    ) -> None:
        """``on_turn``: called on the worker thread at every turn of its loop (systemd's
        notifications, cloud_sink/service.py). ``s3``: the object storage's settings (the
        config's ``[s3]`` table), for ``config.clips`` and for clips uploaded before."""
        if config.group is not None and not wire.valid_name(config.group):
            raise ValueError(f"group {config.group!r}: use lowercase letters, digits, _ and -")
        from cloud_sink.config import group_problem

        if (problem := group_problem(config.group, config.protocol)) is not None:
            raise ValueError(
                f"group {config.group!r} {problem} (with 3.1.1 every worker would take and "
                "ingest every message); use protocol 5 (--protocol 5) or run one worker without "
                "a group"
            )
        limits = config.limits()  # a bad limit fails here, not in the worker
        target = parse_clips_url(config.clips)  # so does a bad --clips, or no credentials
        self.objects: S3Clips | None = None
        if target is not None or s3 is not None:
            from cloud_sink.config import S3Section

            self.objects = S3Clips(s3 if s3 is not None else S3Section())
        self.config = config
        self.clock = clock
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = open_database(config.db_url, config.data_dir)
        try:
            migrate(self.db)
        finally:
            self.db.close()
        self.ingest = Ingest(
            self.db, config.data_dir, clock=clock, limits=limits, owner=config.effective_client_id
        )
        self.receipts = Receipts()  # delivery receipts waiting to be published
        self.uploader: Uploader | None = None
        if target is not None and self.objects is not None:
            self.uploader = Uploader(
                self.db,
                config.data_dir,
                self.objects,
                target,
                bump=self.ingest.counters.bump,
                sweep_s=max(config.check_every_s, 1.0),
            )
        self.ingest.on_clip_complete = self._clip_verified
        self.ingest.drop_object = self._drop_object
        # site-level alert rules and the device offline alerts (cloud_sink/alerts.py)
        self.site_alerts = alerts if alerts is not None else SiteAlerts([])
        self.ingest.on_stored = self.site_alerts.observe
        self.ingest.lock_sites = self.site_alerts.lock_sites
        if config.offline_after_s is not None and config.offline_after_s <= 0:
            raise ValueError(
                f"offline_after_s = {config.offline_after_s}: must be > 0 (or unset: only the "
                "last will raises the offline alert)"
            )
        self.device_watch = DeviceWatch(config.offline_after_s, self.site_alerts)
        self.ingest.on_seen = self.device_watch.seen
        self.ingest.seen_matters = self.device_watch.offline
        # a kill during a write or assembly: only this worker's own, or abandoned ones
        removed = self.ingest.store.cleanup_temporaries(config.temp_lease_s)
        if removed:
            log.warning("removed %d temporary file(s) left by an interrupted run", removed)
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False  # an ingest error in this connection: take nothing more, reconnect
        self._connected = False
        self._pending: list[Result] = []  # committed: clips to assemble
        self._batch: list[mqtt.MQTTMessage] = []  # received, not yet committed nor acked
        self._batch_since = 0.0  # time.monotonic() its first message arrived
        self._arrived = 0  # messages received so far (did the last loop bring any?)
        self._unacked: set[int] = set()  # mids of this connection's QoS 1 publishes not acked
        self._check_pass = False  # a clip check pass is under way ...
        self._check_cursor: tuple[str, str] | None = None  # ... and goes on after this clip
        self._up_since: int | None = None  # clock when the subscription last came up
        self._client = self._make_client()
        self._on_turn = on_turn

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Sink:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cloud-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def run_forever(self) -> None:
        """Run in the calling thread until :meth:`request_stop` (e.g. from a signal handler);
        a stop requested before it is called ends it at once."""
        self._run()

    def request_stop(self) -> None:
        self._stop.set()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- questions for the demo and the tests ------------------------------------------------

    def verified_clip_count(self) -> int:
        with self.db.connection_context():
            return self.ingest.verified_clip_count()

    def stats(self) -> dict[str, int]:
        return self.ingest.counters.snapshot()

    # -- the worker thread --------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.effective_client_id,
            clean_session=None if v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
        )
        if cfg.endpoint()[2]:
            client.tls_set_context(tls_context(cfg))  # CERT_REQUIRED, host name checked
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        # paho formats a line for every packet when on_log is set (the properties of every
        # PUBLISH: a tenth of the worker's time); a logger is asked only at its level
        client.enable_logger(_FirstError(self))
        self._paho_error = ""  # the first paho error of the current connection: its cause
        return client

    def _connect(self) -> None:
        host, port, _ = self.config.endpoint()
        if self.config.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.config.session_expiry_s
            self._client.connect(
                host, port, self.config.keepalive_s, clean_start=False, properties=props
            )
        else:
            self._client.connect(host, port, self.config.keepalive_s)

    def _clip_verified(self, key: ClipKey) -> None:
        self.receipts.add(Confirm(key.site, key.device, clip_id=key.clip_id))
        if self.uploader is not None:
            self.uploader.wake()

    def _drop_object(self, location: str) -> None:
        """Delete the object of a clip that ingest dropped (its contact announced another)."""
        if self.objects is None:
            log.warning("clip %s was dropped; its object stays (no [s3] settings)", location)
            return
        try:
            self.objects.delete_location(location)
        except Exception:
            log.exception("deleting the dropped clip object %s failed", location)

    def _run(self) -> None:
        backoff = self.config.backoff_min_s
        if self.uploader is not None:
            self.uploader.start()
        last_check = self.clock()
        last_sweep: int | None = None  # the device offline sweep: at start, then every check
        last_retention: int | None = None  # audio retention runs at start, then every interval
        self.db.connect(reuse_if_open=True)
        try:
            while not self._stop.is_set():
                if self._on_turn is not None:
                    self._on_turn(self)
                if (not self._connected or self._failed) and not self._reconnect():
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.backoff_max_s)
                    continue
                rc = self._take_batch()
                self._finish_clips()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self._connected = False
                    self._batch.clear()  # not acked: the broker delivers it again
                    if self._paho_error:  # dropped with a reason (TLS refused ...): say it, wait
                        why = explain_tls(self._paho_error, self.config)
                        log.warning("lost the broker %s: %s", self.config.broker, why)
                        self._paho_error = ""
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self.config.backoff_max_s)
                    continue
                self._publish_alerts()
                self._send_receipts()
                if self._failed:
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.backoff_max_s)
                    continue
                if self.subscribed.is_set():
                    backoff = self.config.backoff_min_s
                if not self._check_pass and (
                    self.clock() - last_check >= self.config.check_every_s * NS
                ):
                    last_check = self.clock()
                    self._check_pass, self._check_cursor = True, None
                if self._check_pass:
                    self._check_clips()
                if self._may_sweep(last_sweep):
                    last_sweep = self.clock()
                    self._sweep_offline()
                retention_every = int(self.config.retention_interval_s * NS)
                if self.config.retention_audio_days is not None and (
                    last_retention is None or self.clock() - last_retention >= retention_every
                ):
                    last_retention = self.clock()
                    self._retention()
        finally:
            self._close()

    def _reconnect(self) -> bool:
        self._failed = False
        self._batch.clear()  # never acked on another connection: it is delivered again
        self.subscribed.clear()
        self._up_since = None
        self._paho_error = ""
        try:
            if self._connected:
                self._client.reconnect()
            else:
                self._connect()
        except OSError as exc:
            why = explain_tls(str(exc), self.config)
            log.warning("cannot reach the broker %s: %s", self.config.broker, why)
            return False
        self._connected = True
        return True

    def _close(self) -> None:
        try:
            if self._connected and not self._failed and self._batch:
                self._commit_batch()  # what is in hand, before saying goodbye
            if self._connected:
                self._send_receipts(now=True)
                self._client.disconnect()
                self._client.loop(timeout=0.1)
        finally:
            self._connected = False
            self.subscribed.clear()
            self.db.close()
            if self.uploader is not None:
                self.uploader.stop()

    def _check_clips(self) -> None:
        """One step of the clip check pass under way."""
        try:
            requests, self._check_cursor = self.ingest.check_clips_step(
                int(self.config.resend_after_s * NS),
                self.config.max_resend_requests,
                after=self._check_cursor,
            )
        except Exception:
            log.exception("clip check failed")
            self._check_pass = False  # the next pass starts over
            return
        self._check_pass = self._check_cursor is not None
        for request in requests:
            self._publish(request.topic, request.payload)

    def _may_sweep(self, last_sweep: int | None) -> bool:
        """Sweep every ``check_every_s``, but only once subscribed for ``offline_after_s``:
        what the broker kept for the sink while it was away comes first."""
        after = self.config.offline_after_s
        now = self.clock()
        if after is None or self._up_since is None or now - self._up_since < after * NS:
            return False
        return last_sweep is None or now - last_sweep >= self.config.check_every_s * NS

    def _sweep_offline(self) -> None:
        try:
            self.device_watch.sweep(self.db, self.clock())
        except Exception:  # tried again at the next check
            log.exception("the device offline sweep failed")

    def _publish_alerts(self) -> None:
        if not self.subscribed.is_set():
            return

        def publish(topic: str, payload: bytes) -> bool:
            return self._publish(topic, payload)

        try:
            self.site_alerts.publish_pending(self.db, publish, self.clock())
        except Exception:  # tried again after the next message
            log.exception("publishing site alerts failed")

    def _send_receipts(self, *, now: bool = False) -> None:
        """Publish the receipts that are due (all of them with ``now``). One that cannot go is
        dropped: the device sends that message again, and it is confirmed then."""
        if not len(self.receipts) or not (now or self.receipts.due()):
            return
        for topic, payload in self.receipts.take():
            qos = 1 if len(self._unacked) < MAX_UNACKED else 0  # 0: nothing kept (module notes)
            if self._publish(topic, payload, qos):
                self.ingest.counters.bump("receipts_sent" if qos else "receipts_sent_qos0")
            else:
                self.ingest.counters.bump("receipts_dropped")

    def _publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Publish (QoS 1: counted until the broker's PUBACK); whether the client took it."""
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        if qos:
            self._unacked.add(info.mid)
        return True

    def _retention(self) -> None:
        try:
            done = enforce_retention(
                self.db,
                self.config.data_dir,
                self.config.retention_audio_days,
                self.clock(),
                self.objects,
            )
        except Exception:  # tried again at the next interval
            log.exception("audio retention failed")
            return
        for error in done.errors:
            log.warning("retention: %s", error)
        self.ingest.counters.bump("retention_deleted", done.marked)

    def _finish_clips(self) -> None:
        pending, self._pending = self._pending, []
        for result in pending:
            if result.ready is not None:
                try:
                    self.ingest.assemble(result.ready)
                except Exception:  # the periodic check tries again
                    log.exception("assembling clip %s failed", result.ready)

    # -- paho callbacks (they run inside client.loop(), on the worker thread) -------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            self._paho_error = self._paho_error or f"the broker refused the connection: {reason}"
            return
        # what the client sends again from the last connection is not counted: at worst
        # MAX_UNACKED more for a moment
        self._unacked.clear()
        client.subscribe(self.config.topic_filter, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if all(not r.is_failure for r in reasons):
            self.subscribed.set()
            self._up_since = self.clock()
        else:
            log.error("subscription refused: %s", reasons)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        self._unacked.discard(mid)  # QoS 0 ones are reported too, as they are written

    def _on_log(self, text: str) -> None:
        """A paho error line: the cause of the connection's trouble, if it is the first."""
        if not self._paho_error:
            self._paho_error = text

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected = False
        self.subscribed.clear()
        self._up_since = None

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._failed:
            return  # not acked: it comes again after the reconnect, in order
        if not self._batch:
            self._batch_since = time.monotonic()
        self._batch.append(msg)
        self._arrived += 1
        if len(self._batch) >= self.config.batch_max_messages:
            self._commit_batch()

    # -- batches --------------------------------------------------------------------------------

    def _take_batch(self) -> MQTTErrorCode:
        """One network loop, then read on without waiting while messages keep coming (paho
        reads one packet per loop), and commit the batch when it is due."""
        arrived = self._arrived
        rc = self._client.loop(timeout=0.0 if self._batch else 0.05)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._batch
            and self._arrived != arrived
            and not self._batch_due(arrived)
        ):
            arrived = self._arrived
            rc = self._client.loop_read()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._batch_due(arrived):
            self._commit_batch()
        return rc

    def _batch_due(self, arrived_before: int) -> bool:
        """Commit a batch when it is full, when its first message waited ``batch_max_ms``, or
        when the last loop brought nothing more (the broker has no more ready: no wait)."""
        if not self._batch:
            return False
        return (
            self._arrived == arrived_before
            or len(self._batch) >= self.config.batch_max_messages
            or (time.monotonic() - self._batch_since) * 1000.0 >= self.config.batch_max_ms
        )

    def _commit_batch(self) -> None:
        batch, self._batch = self._batch, []
        # what came before the batch's first clip chunk is committed (and acked) first, in a
        # transaction of its own: a contact does not wait for its clip's chunk files to be
        # made durable (a write, an fdatasync and a directory fsync) before its row commits
        cut = next((i for i, m in enumerate(batch) if _is_chunk(m)), 0)
        for part in (batch[:cut], batch[cut:]) if cut else (batch,):
            try:
                results = self.ingest.handle_batch([(m.topic, bytes(m.payload)) for m in part])
            except Exception:
                log.exception(
                    "ingest failed for a batch of %d message(s); it will be redelivered",
                    len(part),
                )
                self.ingest.counters.bump("ingest_error")
                self._failed = True
                return
            for msg, result in zip(part, results, strict=True):
                self._committed(msg, result)

    def _committed(self, msg: mqtt.MQTTMessage, result: Result) -> None:
        """What follows a message's commit, in the order the messages came: its ack."""
        if msg.qos > 0:
            self._client.ack(msg.mid, msg.qos)
        if result.receipt is not None:  # committed: the device may now forget it
            self.receipts.add(result.receipt)
        self._pending.append(result)
