"""The composition root of the device daemon. It reads like the data flow:

    hardware events ─┬─ button edges ──▶ ButtonDecoder ──▶ presses ─┐
                     ├─ distances ─────▶ PresenceDetector ─▶ arrival/departure
                     └─ audio periods ─▶ Clipper (RAM ring) │       │
    till (HTTP) ───────── receipts ──────────────────────┐  │       ▼
                                                         └──────▶ Segmenter ─▶ contacts
    contacts ─▶ tags (rules) ─▶ clip cut from the ring ─▶ ONE store transaction (+ outbox)
    orphan events ──────────────────────────────────────▶ store (+ outbox)

Decisions live in the small pure objects; this module only wires them and converts monotonic
time to wall time at the boundary (records).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge.audio import Clipper, Ring, cleanup_partials
from edge.buttons import ButtonDecoder
from edge.clock import NS, Clock, seconds_to_ns
from edge.config import Config
from edge.contact import Segmenter
from edge.events import Arrival, Contact, Departure, EdgeEvent, Press, Receipt, event_kind
from edge.presence import PresenceDetector
from edge.publish import wire
from edge.records import ClipInfo, ContactRecord, EventRecord
from edge.store import Store
from edge.tagging import apply_rules
from hardware import AudioPeriod, ButtonEdge, DeviceFault, Distance, HardwareEvent

log = logging.getLogger(__name__)


def settle_ns(cfg: Config) -> int:
    """How far behind real time the segmenter works, so late, backdated events still land in
    time order: the longest any detector may take to report an event after it happened."""
    p, i = cfg.presence, cfg.input
    median_lag = p.median_window * p.interval_s
    presence_lag = max(p.arrive_dwell_s, p.no_echo_as_far_s + p.leave_dwell_s) + median_lag
    button_lag = i.long_press_s + i.debounce_ms / 1000
    return seconds_to_ns(max(presence_lag, button_lag) + 0.5)


@dataclass(slots=True)
class Counters:
    contacts: int = 0
    orphan_events: int = 0
    clips: int = 0
    truncated_clips: int = 0
    faults: list[str] = field(default_factory=list)


class Core:
    """Drives the state machines from one thread; everything it is given is time-stamped."""

    def __init__(
        self,
        cfg: Config,
        clock: Clock,
        store: Store,
        data_dir: Path,
        *,
        audio: bool = True,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.store = store
        self.new_id = new_id
        self.buttons = ButtonDecoder(cfg.buttons, cfg.input)
        self.presence = PresenceDetector(cfg.presence)
        self.segmenter = Segmenter(cfg, new_id, settle_ns(cfg))
        self.clipper: Clipper | None = None
        if audio and cfg.audio.enabled:
            rate = cfg.audio.sample_rate
            self.clipper = Clipper(
                Ring(round(cfg.ring_seconds() * rate)),
                rate,
                data_dir,
                cfg.audio.codec,
                seconds_to_ns(cfg.contacts.pre_roll_s),
                seconds_to_ns(cfg.contacts.post_roll_s),
            )
            removed = cleanup_partials(self.clipper.clips_dir)  # power lost while writing a clip
            if removed:
                log.warning("removed %d half-written clip file(s) from a previous run", removed)
        self._awaiting_clip: dict[str, Contact] = {}
        self.counters = Counters()

    # --- input -------------------------------------------------------------------------------

    def handle(self, event: HardwareEvent | Receipt) -> None:
        if isinstance(event, ButtonEdge):
            self._to_segmenter(self.buttons.feed(event))
        elif isinstance(event, Distance):
            self._to_segmenter(self.presence.feed(event))
        elif isinstance(event, AudioPeriod):
            if self.clipper is not None:
                self._clips_ready(self.clipper.on_period(event))
        elif isinstance(event, Receipt):
            self.segmenter.feed(event)
        elif isinstance(event, DeviceFault):
            state = "back" if event.ok else "failed"
            log.warning("device %s %s: %s", event.part, state, event.detail)
            self.counters.faults.append(f"{event.part} {state}: {event.detail}")
        else:
            log.debug("ignored hardware event %r", event)

    def _to_segmenter(self, events: list[Press] | list[Arrival | Departure]) -> None:
        for event in events:
            self.segmenter.feed(event)

    def tick(self, now_ns: int) -> None:
        """Let processing time pass: settle debouncing, close contacts whose time has come."""
        self._to_segmenter(self.buttons.tick(now_ns))
        self.segmenter.tick(now_ns)
        self._drain()

    def shutdown(self, now_ns: int) -> None:
        """Close everything that is open and write it, with the audio there is."""
        self._to_segmenter(self.buttons.tick(now_ns))
        self.segmenter.shutdown(now_ns)
        self._drain()
        if self.clipper is not None:
            self._clips_ready(self.clipper.flush())
        for contact in list(self._awaiting_clip.values()):  # no audio ever arrived for these
            self._save(self._awaiting_clip.pop(contact.id), None)

    # --- output ------------------------------------------------------------------------------

    def _drain(self) -> None:
        contacts, orphans = self.segmenter.drain()
        for contact in contacts:
            contact.tags = apply_rules(contact, self.cfg.tagging.rules)
            end_ns = contact.end_ns if contact.end_ns is not None else contact.start_ns
            if self.clipper is None:
                self._save(contact, None)
            else:
                self._awaiting_clip[contact.id] = contact
                self.clipper.request(contact.id, contact.start_ns, end_ns)
        for event in orphans:
            record = self._event_record(event, None)
            self.store.save_event(
                record, [wire.event_message(record, self.cfg.device.id, self.cfg.device.site)]
            )
            self.counters.orphan_events += 1

    def _clips_ready(self, clips: list[ClipInfo]) -> None:
        assert self.clipper is not None
        for contact_id in self.clipper.take_failed():  # no audio could be cut: keep the contact
            contact = self._awaiting_clip.pop(contact_id, None)
            if contact is not None:
                self._save(contact, None)
        for clip in clips:
            contact = self._awaiting_clip.pop(clip.contact_id, None)
            if contact is None:
                log.error("clip %s has no contact waiting for it", clip.contact_id)
                continue
            self.counters.clips += 1
            self.counters.truncated_clips += clip.truncated
            self._save(contact, clip)

    def _save(self, contact: Contact, clip: ClipInfo | None) -> None:
        record = self.contact_record(contact, clip)
        device = self.cfg.device
        self.store.save_contact(record, [wire.contact_message(record, device.id, device.site)])
        self.counters.contacts += 1

    def contact_record(self, contact: Contact, clip: ClipInfo | None) -> ContactRecord:
        end_ns = contact.end_ns if contact.end_ns is not None else contact.start_ns
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
        )

    def next_deadline(self) -> int | None:
        deadlines = [d for d in (self.buttons.next_deadline(), self.segmenter.next_deadline()) if d]
        return min(deadlines) if deadlines else None

    @property
    def awaiting_clips(self) -> int:
        return len(self._awaiting_clip)


def step_ns(cfg: Config) -> int:
    """The simulation's heartbeat: one audio period."""
    return cfg.audio.period_frames * NS // cfg.audio.sample_rate
