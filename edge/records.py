"""Records at the boundary: contacts and events with wall-clock time attached, ready to store.

The state machines work on monotonic time only (:mod:`edge.events`); when something is final
the composition root converts it into these records, which the store persists and the wire
module turns into payloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """A clip written to disk. Indices are absolute sample indices of the capture clock."""

    contact_id: str
    path: str  # relative to the data directory
    codec: str  # wav | flac | opus
    sample_rate: int
    start_index: int
    end_index: int
    start_ns: int  # monotonic time of the first sample
    end_ns: int  # monotonic time just after the last sample
    sha256: str
    bytes: int
    truncated: bool = False  # the contact started before the oldest audio still in the ring
    gaps: tuple[tuple[int, int], ...] = ()  # [start, end) sample ranges with no capture (zeros)

    @property
    def samples(self) -> int:
        return self.end_index - self.start_index

    @property
    def missing_samples(self) -> int:
        return sum(end - start for start, end in self.gaps)


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: str
    kind: str
    t_ns: int  # monotonic
    wall_ns: int
    contact_id: str | None = None
    button: str | None = None
    role: str | None = None
    gesture: str | None = None
    duration_ns: int | None = None
    question: int | None = None
    via: str | None = None
    receipt_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    video_url: str | None = None  # link into the camera archive at this moment (video config)
    staff: str | None = None  # outside a contact: who was on duty (edge.staff); else None


@dataclass(frozen=True, slots=True)
class CrmEvent:
    """An event a CRM knows (a delivery handed over at 14:32), for ``contactpoint import``: a
    row of an events file (:mod:`edge.importer.events`) or posted to the device's HTTP input
    (``POST /event``, kept in the store until an import cuts its window). ``id`` as the CRM
    gave it (or made from the row); ``source`` where it came from (the file's name, or
    :data:`POSTED`), ``line`` its line in that file (0 when posted)."""

    id: str
    line: int
    wall_ns: int
    kind: str
    order_id: str | None = None
    staff: str | None = None
    rating: str | None = None  # green | yellow | red
    rating_value: str | None = None  # as the CRM wrote it
    source: str = ""


#: the ``source`` of an event posted to the device's HTTP input
POSTED = "POST /event"


@dataclass(frozen=True, slots=True)
class ContactRecord:
    id: str
    mode: str
    start_ns: int
    end_ns: int
    start_wall_ns: int
    end_wall_ns: int
    ended_by: str
    tags: tuple[str, ...]
    events: tuple[EventRecord, ...]
    clip: ClipInfo | None
    clock_synced: bool
    boot_id: str
    video_url: str | None = None  # link into the camera archive at the contact's start
    staff: str | None = None  # who served it (edge.staff: schedule or on-duty call); None: unknown
    #: why there is no clip although audio is recorded: no_audio | disk_full | write_failed
    #: (edge.audio.clipper.ClipMissing); None: there is a clip, or audio is off
    clip_missing: str | None = None
    #: the wall clock was stepped while synchronised during this contact or before it was
    #: stamped (edge.app: a step since the boot's reference time): its wall times may be off
    clock_stepped: bool = False


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message that must leave the device: written in the same transaction as its data."""

    msg_id: str
    kind: str  # contact | event | clip | status ...
    ref: str  # the id of what it is about
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RouteJob:
    """One delivery to one route destination (edge/routes): written in the same transaction as
    the contact (or alert) it carries. ``delivery_id`` stays the same across retries."""

    delivery_id: str
    destination: str
    kind: str  # contact | alert
    ref: str  # the id of the contact or alert
    payload: dict[str, Any]
