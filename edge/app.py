"""The composition root of the device daemon. It reads like the data flow:

    hardware events ─┬─ button edges ──▶ ButtonDecoder ──▶ presses ─┐
                     ├─ distances ─────▶ PresenceDetector ─▶ arrival/departure
                     └─ audio periods ─▶ Clipper (RAM ring) │       │
    till (HTTP) ───────── receipts ──────────────────────┐  │       ▼
                                                         └──────▶ Segmenter ─▶ contacts
    contacts ─▶ tags (rules) ─▶ clip cut from the ring ─▶ routes (rules) ─▶ ONE store
    orphan events ─────────────────────────────────────────▶ routes (rules) ─▶ transaction
    (both saved the same way, with their outbox rows and route deliveries: a full disk waits,
    a bad value is dropped, nothing stops the loop)

Decisions live in the small pure objects; this module only wires them and converts monotonic
time to wall time at the boundary (records). The store only persists what it is given: the
core decides which destinations get what (edge/routes/plan.py). A contact waits for its clip in
the clipper's pending requests alone; the request's result (the clip, or why there is none)
comes back with the contact. What runs around the core (inbox, publisher, route workers, the
till's server) is assembled in edge/runtime.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

from contract.alerts import AlertEvaluator, describe
from edge.alerts import observations
from edge.audio import CLIPS_DIR, ClipMissing, Clipper, ClipResult, Ring, cleanup_partials
from edge.buttons import ButtonDecoder
from edge.clock import NS, Clock, StepWatch, seconds_to_ns
from edge.config import Config
from edge.contact import Segmenter
from edge.diskbudget import DiskBudget, is_disk_full
from edge.events import Arrival, Contact, Departure, EdgeEvent, Press, Receipt, event_kind
from edge.health import Health
from edge.live import TodayCounters
from edge.presence import PresenceDetector
from edge.publish import wire
from edge.radio import Decoder
from edge.records import ClipInfo, ContactRecord, EventRecord, OutboxMessage, RouteJob
from edge.recovery import sidecar_path, write_sidecar
from edge.routes import plan_routes
from edge.staff import Roster, StaffCall
from edge.store import IntegrityError, Store, clean_contact, clean_event
from edge.tagging import apply_rules
from edge.video import VideoLinks
from hardware import (
    AudioPeriod,
    AudioSpec,
    BackendSpec,
    ButtonEdge,
    ButtonSpec,
    DeviceFault,
    Distance,
    HardwareEvent,
    Nrf24Spec,
    RadioEdge,
    RangerSpec,
    RemoteCode,
    Rf433Spec,
    SerialSpec,
    World,
)

log = logging.getLogger(__name__)

#: the health faults (docs/WIRE.md: ``status.faults``) of a disk too full for clips, and of a
#: wall clock off its earlier time after a step while synchronised
STORAGE_PART = "storage"
CLOCK_PART = "clock"


def settle_ns(cfg: Config) -> int:
    """How far behind real time the segmenter works, so late, backdated events still land in
    time order: the longest any detector may take to report an event after it happened."""
    p, i = cfg.presence, cfg.input
    median_lag = p.median_window * p.interval_s
    presence_lag = max(p.arrive_dwell_s, p.no_echo_as_far_s + p.leave_dwell_s) + median_lag
    button_lag = i.long_press_s + i.debounce_ms / 1000
    return seconds_to_ns(max(presence_lag, button_lag) + 0.5)


def alert_lateness_s(cfg: Config) -> float:
    """How far behind the newest observation a contact's observations can reach the alert
    evaluator: a contact is evaluated when it is saved (an orphan event at once), i.e. after
    it lasted (at most the longest of max_duration_s, a press window, a survey's answer
    window), the segmenter's settle time, its post-roll and, when capture stalls, stall_s
    waiting for audio; plus a minute of slack for encoding and a busy machine."""
    c = cfg.contacts
    longest = max(c.max_duration_s, c.window.before_s + c.window.after_s, c.survey.answer_window_s)
    return longest + settle_ns(cfg) / NS + c.post_roll_s + cfg.audio.stall_s + 60.0


def backend_spec(
    cfg: Config, world: World | None = None, wav_loop: Path | None = None, audio_seed: int = 0
) -> BackendSpec:
    """The ONE place the config becomes the hardware the backend must open."""
    p = cfg.presence
    return BackendSpec(
        backend=cfg.hardware.backend,
        buttons=tuple(
            ButtonSpec(b.name, b.pin, b.pull_up, b.active_high) for b in cfg.buttons if b.wired
        ),
        ranger=RangerSpec(p.trigger_pin, p.echo_pin, p.interval_s, p.temperature_c)
        if "presence" in cfg.contacts.modes
        else None,
        audio=AudioSpec(
            cfg.audio.sample_rate,
            cfg.audio.period_frames,
            cfg.audio.device,
            ca_file=cfg.audio.ca_file or None,
            wav_loop=wav_loop,
            seed=audio_seed,
        )
        if cfg.audio.enabled
        else None,
        rf433=Rf433Spec(
            cfg.rf433.gpio, cfg.rf433.watchdog_ms, cfg.rf433.glitch_us, cfg.rf433.backend
        )
        if cfg.rf433.enabled
        else None,
        serial=SerialSpec(cfg.serial.port, cfg.serial.baudrate, cfg.serial.repeat_window_s)
        if cfg.serial.enabled
        else None,
        nrf24=Nrf24Spec(
            cfg.nrf24.ce_pin, cfg.nrf24.csn, cfg.nrf24.channel, cfg.nrf24.address.encode()
        )
        if cfg.nrf24.enabled
        else None,
        pin_factory=cfg.hardware.pin_factory,
        pigpio_host=cfg.hardware.pigpio_host,
        pigpio_port=cfg.hardware.pigpio_port,
        world=world if world is not None else World(),
    )


@dataclass(slots=True)
class Counters:
    contacts: int = 0
    orphan_events: int = 0
    clips: int = 0
    truncated_clips: int = 0
    unknown_codes: int = 0
    audio_periods: int = 0  # capture periods that reached the core (the watchdog's progress)
    faults: list[str] = field(default_factory=list)

    @property
    def saved(self) -> int:
        """Everything written to the store (and so to the outbox) so far."""
        return self.contacts + self.orphan_events


#: a record waiting for the store: the record, its outbox rows, its route deliveries
_Unsaved = tuple[ContactRecord | EventRecord, list[OutboxMessage], list[RouteJob]]


class Core:
    """Drives the state machines from one thread; everything it is given is time-stamped.

    Given here, all optional: ``health`` (the alarms and faults the status reports; a new one
    by default), ``on_press`` (called with every press as soon as it is known, e.g. to play a
    prompt; it handles its own errors), ``on_alert`` (called with each alert's wire payload
    after it is committed; an error there is logged and the loop goes on)."""

    def __init__(
        self,
        cfg: Config,
        clock: Clock,
        store: Store,
        data_dir: Path,
        *,
        audio: bool = True,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        health: Health | None = None,
        on_press: Callable[[Press], None] | None = None,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.store = store
        self.new_id = new_id
        self.buttons = ButtonDecoder(cfg.buttons, cfg.input)
        self.presence = PresenceDetector(cfg.presence)
        r = cfg.rf433
        self.radio = Decoder(
            r.repeats, r.tolerance, r.frame_gap_us, r.release_ms * 1000, glitch_us=r.glitch_us
        )
        self.segmenter = Segmenter(cfg, new_id, settle_ns(cfg))
        self.counters = Counters()
        # fault handling (docs/RELIABILITY.md): alarms and faults for the status message, the
        # disk budget, saves waiting for disk space, capture stalls, the clock's first sync
        self.health = health if health is not None else Health()
        self.data_dir = data_dir
        self.budget = DiskBudget(cfg.storage, store, data_dir, self.health, CLIPS_DIR)
        #: cuts each contact's clip from the ring; its pending requests are the contacts that
        #: wait for audio (each comes back with its clip or the reason there is none)
        self.clipper: Clipper[Contact] | None = None
        if audio and cfg.audio.enabled:
            rate = cfg.audio.sample_rate
            self.clipper = Clipper(
                Ring(round(cfg.ring_seconds() * rate)),
                rate,
                data_dir,
                cfg.audio.codec,
                seconds_to_ns(cfg.contacts.pre_roll_s),
                seconds_to_ns(cfg.contacts.post_roll_s),
                on_disk_full=self.budget.on_disk_full,
            )
            removed = cleanup_partials(self.clipper.clips_dir)  # power lost while writing a clip
            if removed:
                log.warning("removed %d half-written clip file(s) from a previous run", removed)
        self._unsaved: list[_Unsaved] = []
        self._audio_seen_ns = clock.monotonic_ns()
        self._synced = clock.synchronized()
        #: steps of the synchronised wall clock (edge.clock.StepWatch): alarm, fault, flag
        self.clock_steps = StepWatch(seconds_to_ns(cfg.clock.step_threshold_s))
        self._watch_clock()
        self._next_checks_ns = 0
        self._on_press = on_press
        self._on_alert = on_alert
        #: who served each contact: the shift schedule, overridden by on-duty calls
        self.roster = Roster(cfg.staff.schedule())
        #: today's counters for the status message (read by the publisher's thread)
        self.today = TodayCounters(
            cfg.staff.schedule().tz,
            cfg.metrics.correction_factor,
            cfg.metrics.force_majeure_threshold,
        )
        v = cfg.video
        self.video: VideoLinks | None = None
        if v.url_template:
            self.video = VideoLinks(
                v.url_template,
                v.camera,
                v.offset_s,
                v.time_format,
                v.timezone,
                device=cfg.device.id,
                site=cfg.device.site,
            )
        self.alerts = AlertEvaluator(cfg.alerts.rules, cfg.device.id, late_s=alert_lateness_s(cfg))

    # --- input -------------------------------------------------------------------------------

    def handle(self, event: HardwareEvent | Receipt | StaffCall) -> None:
        if isinstance(event, ButtonEdge):
            self._to_segmenter(self.buttons.feed(event))
        elif isinstance(event, Distance):
            self._to_segmenter(self.presence.feed(event))
        elif isinstance(event, AudioPeriod):
            self._audio_seen_ns = self.clock.monotonic_ns()
            self.counters.audio_periods += 1
            if self.clipper is not None:
                self._clips_done(self.clipper.on_period(event))
        elif isinstance(event, RadioEdge):
            for code in self.radio.feed(event.level, event.tick_us, event.t_ns):
                self._remote_press(f"{code.protocol}:{code.hex}", code.t_ns, "rf433")
        elif isinstance(event, RemoteCode):
            via = "serial" if event.source == "rflink" else event.source  # the config's words
            self._remote_press(f"{event.protocol}:{event.code}", event.t_ns, via)
        elif isinstance(event, Receipt):
            self.segmenter.feed(event)
        elif isinstance(event, StaffCall):  # "who is on duty now" from the till (edge/pos.py)
            wall_ns = self.clock.wall_ns(event.t_ns)
            self.roster.call(event.name, wall_ns)
            self.roster.prune(wall_ns - 2 * 24 * 3600 * NS)  # contacts last hours, not days
            log.info("on duty: %s", event.name or "(back to the shift schedule)")
        elif isinstance(event, DeviceFault):
            state = "back" if event.ok else "failed"
            log.warning(
                "device %s %s: %s", event.part, state, event.detail, extra={"FAULT": event.part}
            )
            self.counters.faults.append(f"{event.part} {state}: {event.detail}")
            self.health.fault(event.part, event.ok, event.detail)
        else:
            log.debug("ignored hardware event %r", event)

    def _remote_press(self, key: str, t_ns: int, via: str) -> None:
        """A wireless key: already decoded and de-repeated by its receiver, so one press."""
        button = self.cfg.button_for_code(key)
        if button is None:
            self.counters.unknown_codes += 1
            log.info("remote key %s is bound to no button ('contactpoint learn ROLE')", key)
            return
        self._to_segmenter(
            [Press(t_ns, button.name, button.role, question=button.question, via=via)]
        )

    def _to_segmenter(self, events: list[Press] | list[Arrival | Departure]) -> None:
        for event in events:
            if isinstance(event, Press) and self._on_press is not None:
                self._on_press(event)
            self.segmenter.feed(event)

    def tick(self, now_ns: int) -> None:
        """Let processing time pass: settle debouncing, close contacts whose time has come."""
        self._to_segmenter(self.buttons.tick(now_ns))
        self.segmenter.tick(now_ns)
        self._drain()
        if now_ns >= self._next_checks_ns:  # at most once a second of monotonic time
            self._next_checks_ns = now_ns + NS
            self._check_clock()
            self._watch_clock()
            self._check_audio(now_ns)
            self._retry_unsaved()

    def shutdown(self, now_ns: int) -> None:
        """Close everything that is open and write it, with the audio there is."""
        self._to_segmenter(self.buttons.tick(now_ns))
        self.segmenter.shutdown(now_ns)
        self._drain()
        if self.clipper is not None:  # every contact still waiting: the audio there is, or none
            self._clips_done(self.clipper.flush())

    # --- output ------------------------------------------------------------------------------

    def _drain(self) -> None:
        contacts, orphans = self.segmenter.drain()
        for contact in contacts:
            contact.tags = apply_rules(contact, self.cfg.tagging.rules)
            end_ns = contact.end_ns if contact.end_ns is not None else contact.start_ns
            if self.clipper is None:
                self._save(contact, None)
            else:  # saved when the clip's result comes back (_clips_done)
                self.clipper.request(contact.id, contact.start_ns, end_ns, contact)
        for event in orphans:
            self._save_orphan(event)

    def _save_orphan(self, event: EdgeEvent) -> None:
        record = self._event_record(event, None)
        self.save_event_record(replace(record, staff=self.roster.staff_at(record.wall_ns)))

    def save_event_record(self, record: EventRecord) -> None:
        """Save an event outside any contact the way every orphan event is saved: its outbox
        row, the alerts it causes and its route deliveries in one transaction (also the
        importer's events that no recording covers, edge/importer)."""
        record = self._storable(record)
        alerts = self._alerts(record)
        device = self.cfg.device
        outbox = [wire.event_message(record, device.id, device.site), *alerts]
        self._commit(record, *self._routed(None, outbox))
        self.today.add_event(record)
        self._announce(alerts)

    def _clips_done(self, results: list[ClipResult[Contact]]) -> None:
        """Save each contact whose clip request ended: those without a clip first (flagged
        with the reason), then those with one."""
        failed = [r for r in results if r.missing is not None]
        for result in failed:  # no clip: keep the contact, flagged
            if result.missing == "disk_full":  # a part failing now: cleared by the next clip
                self.health.fault(
                    STORAGE_PART,
                    False,
                    f"disk full: clips are not written (the last one: contact "
                    f"{result.contact_id}); contacts are kept without audio until there is room",
                )
            self._save(result.waiter, None, result.missing)
        clipped = [(r.waiter, r.clip) for r in results if r.clip is not None]
        if clipped:
            self.health.fault(STORAGE_PART, True, "clips are written again")
        for contact, clip in clipped:
            self.counters.clips += 1
            self.counters.truncated_clips += clip.truncated
            self._save(contact, clip)

    def _save(
        self, contact: Contact, clip: ClipInfo | None, clip_missing: ClipMissing | None = None
    ) -> None:
        self.save_record(self.contact_record(contact, clip, clip_missing))

    def save_record(self, record: ContactRecord) -> None:
        """Save a finished contact the way every contact is saved: its clip's outbox row after
        its own, the alerts it causes, its route deliveries, all in one transaction (a full
        disk waits in :attr:`unsaved`). Also the importer's contacts (edge/importer)."""
        record = self._storable(record)
        clip = record.clip
        device = self.cfg.device
        outbox = [wire.contact_message(record, device.id, device.site)]
        if clip is not None:  # the audio follows its contact, in chunks
            outbox.append(wire.clip_message(clip, device.id, device.site))
        alerts = self._alerts(record)
        self._commit(record, *self._routed(record, outbox + alerts))
        if clip is not None:
            self.budget.enforce()
        self.today.add_contact(record)
        self._announce(alerts)

    def _routed(
        self, record: ContactRecord | None, outbox: list[OutboxMessage]
    ) -> tuple[list[OutboxMessage], list[RouteJob]]:
        """Routing by tag (``[routes]``): the outbox rows with those of the MQTT destinations
        added, and the route queue's deliveries of the contact (``record``; None for an orphan
        event) and of the alerts among ``outbox``, all saved in the same transaction."""
        device = self.cfg.device
        jobs, extra = plan_routes(
            self.cfg.routes, record, outbox, device=device.id, site=device.site
        )
        return [*outbox, *extra], jobs

    # --- faults (docs/RELIABILITY.md) ----------------------------------------------------------

    @overload
    def _storable(self, record: ContactRecord) -> ContactRecord: ...
    @overload
    def _storable(self, record: EventRecord) -> EventRecord: ...
    def _storable(self, record: ContactRecord | EventRecord) -> ContactRecord | EventRecord:
        """The record as the store can hold it (edge/store/storable.py): a value no store can
        keep (NaN, an unpaired surrogate) is dropped or spelled out, and ``bad_record`` says
        which; the rest of the record is saved as usual."""
        if isinstance(record, ContactRecord):
            cleaned: ContactRecord | EventRecord
            cleaned, changes = clean_contact(record)
        else:
            cleaned, changes = clean_event(record)
        if changes:
            self.health.alarm(
                "bad_record",
                _brief(
                    f"{_what(cleaned)} saved without values no store can hold: "
                    + "; ".join(changes)
                ),
            )
        return cleaned

    def _commit(
        self,
        record: ContactRecord | EventRecord,
        outbox: list[OutboxMessage],
        routes: list[RouteJob],
    ) -> bool:
        """Sidecar (contacts only), then the store transaction (the record, its outbox rows and
        route deliveries). Nothing stops the core loop:

        - a full disk never loses the record: space is freed by the budget's rules and the
          save tried again; failing that, or on any other trouble of the store (an I/O error,
          a lock held too long), it waits in memory and is retried every second (False);
        - a record the store refuses as such (it breaks a constraint) is logged whole and
          raised as ``bad_record``; a contact stays in its sidecar (False)."""
        error: Exception | None = None
        for attempt in (1, 2):
            if isinstance(record, ContactRecord):
                try:
                    write_sidecar(self.data_dir, record)
                except (OSError, ValueError) as exc:  # a recovery aid: the contact matters more
                    log.warning("sidecar of contact %s not written: %s", record.id, exc)
                    full = is_disk_full(exc) and attempt == 1
                    if full and self.budget.on_disk_full("a sidecar", 4096):
                        continue
            try:
                self._write(record, outbox, routes)
                return True
            except _REFUSED as exc:
                self._refused(record, exc)
                return False
            except Exception as exc:  # noqa: BLE001 - the core loop never dies on one record
                error = exc
                full = is_disk_full(exc) and attempt == 1
                if full and self.budget.on_disk_full("the store", 1 << 20):
                    continue
                break
        log.warning(
            "%s not saved yet, retried every second: %s",
            _what(record),
            error,
            extra={"CONTACT_ID": record.id} if isinstance(record, ContactRecord) else None,
        )
        self._unsaved.append((record, outbox, routes))
        self.health.alarm("save_failed", _brief(f"{_what(record)} waits: {error}"))
        return False

    def _write(
        self,
        record: ContactRecord | EventRecord,
        outbox: list[OutboxMessage],
        routes: list[RouteJob],
    ) -> None:
        if isinstance(record, ContactRecord):
            self.store.save_contact(record, outbox, routes=routes)
            self.counters.contacts += 1
            log.info(
                "contact %s saved: %s",
                record.id,
                ", ".join(record.tags) or "no tags",
                extra={"CONTACT_ID": record.id},
            )
        else:
            self.store.save_event(record, outbox, routes=routes)
            self.counters.orphan_events += 1

    def _refused(self, record: ContactRecord | EventRecord, exc: Exception) -> None:
        kept = ""
        if isinstance(record, ContactRecord) and sidecar_path(self.data_dir, record.id).exists():
            kept = " (kept in its sidecar)"
        log.error("%s refused by the store%s: %s; the record: %r", _what(record), kept, exc, record)
        self.health.alarm("bad_record", _brief(f"{_what(record)} not saved{kept}: {exc}"))

    def _retry_unsaved(self) -> None:
        waiting, self._unsaved = self._unsaved, []
        for index, (record, outbox, routes) in enumerate(waiting):
            try:
                self._write(record, outbox, routes)
            except _REFUSED as exc:
                self._refused(record, exc)
            except Exception:  # noqa: BLE001 - still no space or the store in trouble: later
                self._unsaved.extend(waiting[index:])
                return

    @property
    def unsaved(self) -> int:
        """Contacts and orphan events waiting in memory for the store (e.g. for disk space)."""
        return len(self._unsaved)

    def _check_clock(self) -> None:
        """On the clock's first synchronisation, correct what this boot saved before it."""
        synced = self.clock.synchronized()
        if synced and not self._synced:
            device = self.cfg.device
            corrected = self.store.correct_clock(
                self.clock.boot_id(),
                self.clock.wall_ns(0),
                lambda record: wire.contact_message(record, device.id, device.site),
            )
            if corrected:
                log.warning("clock synchronised: wall times of %d contact(s) corrected", corrected)
        self._synced = synced

    def _watch_clock(self) -> None:
        """A step of the synchronised wall clock: alarm (each step), fault (while it is off
        this boot's reference time); the contacts it may have mixed up are flagged by
        :meth:`contact_record`."""
        now = self.clock.monotonic_ns()
        wall = self.clock.wall_ns(now)
        step = self.clock_steps.observe(now, wall - now, self.clock.synchronized())
        if step is not None:
            self.health.alarm(
                "clock_stepped",
                f"the synchronised wall clock stepped {step.delta_ns / NS:+.3f} s "
                f"(now {wire.iso(wall)}); contacts around it are flagged clock_stepped",
            )
        off = self.clock_steps.off_ns
        self.health.fault(
            CLOCK_PART,
            off == 0,
            f"the wall clock is {off / NS:+.3f} s off the time it kept before a step while "
            "synchronised; contacts stamped now are flagged clock_stepped",
        )

    @property
    def audio_seen_ns(self) -> int:
        """When the last audio period reached the core (the clock's monotonic ns)."""
        return self._audio_seen_ns

    def _check_audio(self, now_ns: int) -> None:
        """Capture stalled (microphone gone): contacts waiting for audio get what there is."""
        if self.clipper is None or self.clipper.pending == 0:
            return
        if now_ns - self._audio_seen_ns < seconds_to_ns(self.cfg.audio.stall_s):
            return
        waiting = self.clipper.pending
        self._clips_done(self.clipper.flush())
        self.health.alarm(
            "audio_stalled",
            f"no audio for {(now_ns - self._audio_seen_ns) / NS:.0f} s: {waiting} contact(s) "
            "saved with the audio there was",
            waiting,
        )

    def _alerts(self, record: ContactRecord | EventRecord) -> list[OutboxMessage]:
        """The alert rows this contact or event causes; saved in its own transaction."""
        rules = {r.name: r for r in self.cfg.alerts.rules}
        device = self.cfg.device
        where = f"{device.site}/{device.id}"
        out: list[OutboxMessage] = []
        restarts = self.alerts.restarts
        fired = self.alerts.feed(observations(record))
        if self.alerts.restarts > restarts:
            log.warning(
                "alerts: %s is more than %.0f s older than the newest observation (the clock "
                "stepped back?): the alert windows start over",
                record.id,
                self.alerts.late_s,
            )
        for firing in fired:
            text = describe(firing, rules[firing.rule], where)
            log.warning("alert %s", text)
            out.append(wire.alert_message(firing, text, device.id, device.site))
        return out

    def _announce(self, alerts: list[OutboxMessage]) -> None:
        if self._on_alert is None:
            return
        for message in alerts:
            try:
                self._on_alert(message.payload)
            except Exception:  # a failing hook must not stop the core loop
                log.exception("alert hook failed for alert %s", message.ref)

    def video_url(self, wall_ns: int) -> str | None:
        return None if self.video is None else self.video.url(wall_ns)

    def contact_record(
        self, contact: Contact, clip: ClipInfo | None, clip_missing: ClipMissing | None = None
    ) -> ContactRecord:
        end_ns = contact.end_ns if contact.end_ns is not None else contact.start_ns
        self._watch_clock()  # a step since the last check: seen before stamping with it
        return ContactRecord(
            id=contact.id,
            mode=contact.mode,
            start_ns=contact.start_ns,
            end_ns=end_ns,
            start_wall_ns=self.clock.wall_ns(contact.start_ns),
            end_wall_ns=self.clock.wall_ns(end_ns),
            ended_by=contact.ended_by or "shutdown",
            tags=tuple(contact.tags),
            events=tuple(
                self._event_record(e, contact.id)
                for e in sorted(contact.events, key=lambda e: e.t_ns)
            ),
            clip=clip,
            clock_synced=self.clock.synchronized(),
            boot_id=self.clock.boot_id(),
            video_url=self.video_url(self.clock.wall_ns(contact.start_ns)),
            staff=self.roster.staff_at(self.clock.wall_ns(contact.start_ns)),
            clip_missing=None if clip is not None else clip_missing,
            clock_stepped=self.clock_steps.stepped_since(contact.start_ns),
        )

    def _event_record(self, event: EdgeEvent, contact_id: str | None) -> EventRecord:
        press = event if isinstance(event, Press) else None
        receipt = event if isinstance(event, Receipt) else None
        return EventRecord(
            id=self.new_id(),
            kind=event_kind(event),
            t_ns=event.t_ns,
            wall_ns=self.clock.wall_ns(event.t_ns),
            contact_id=contact_id,
            button=press.button if press else None,
            role=press.role if press else None,
            gesture=press.gesture if press else None,
            duration_ns=press.duration_ns if press else None,
            question=press.question if press else None,
            via=press.via if press else None,
            receipt_id=receipt.receipt_id if receipt else None,
            data=dict(receipt.data) if receipt else {},
            video_url=self.video_url(self.clock.wall_ns(event.t_ns)),
        )

    def next_deadline(self) -> int | None:
        deadlines = [d for d in (self.buttons.next_deadline(), self.segmenter.next_deadline()) if d]
        return min(deadlines) if deadlines else None

    def next_tick_ns(self) -> int:
        """When :meth:`tick` has something to do next (monotonic ns): a press to report, a
        contact to close, or the once-a-second checks (clock, capture stall, saves waiting for
        space). The daemon sleeps on its inbox until then (issue #13: no fixed tick)."""
        deadline = self.next_deadline()
        due = self._next_checks_ns
        return due if deadline is None else min(due, deadline)

    @property
    def awaiting_clips(self) -> int:
        """Contacts waiting for their clip (the clipper's pending requests)."""
        return 0 if self.clipper is None else self.clipper.pending


#: what the store refuses for the record itself (edge/store/storable.py, a broken constraint):
#: saving it again would fail again
_REFUSED = (ValueError, TypeError, OverflowError, IntegrityError)


def _what(record: ContactRecord | EventRecord) -> str:
    return f"contact {record.id}" if isinstance(record, ContactRecord) else f"event {record.id}"


def _brief(detail: str, limit: int = 500) -> str:
    """An alarm's detail, short enough for the status message."""
    return detail if len(detail) <= limit else detail[: limit - 1] + "…"


def step_ns(cfg: Config) -> int:
    """The simulation's heartbeat: one audio period."""
    return cfg.audio.period_frames * NS // cfg.audio.sample_rate
