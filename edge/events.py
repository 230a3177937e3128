"""What the daemon's pure state machines consume and produce.

Hardware records (``hardware.ButtonEdge`` …) are turned into these by small decoders (debounce,
radio decoding, presence filtering); the contact segmenter then groups them into contacts.
All times are monotonic nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Gesture = Literal["short", "long"]
EndedBy = Literal["departure", "timeout", "window", "answer", "no_answer", "shutdown"]
#: ``import``: cut from an imported recording around a CRM event (edge/importer), never by
#: the segmenter
ContactMode = Literal["presence", "window", "survey", "import"]


@dataclass(frozen=True, slots=True)
class Press:
    """A debounced button press (or a remote key) with its role from the config."""

    t_ns: int
    button: str
    role: str
    gesture: Gesture = "short"
    duration_ns: int = 0
    question: int | None = None
    via: str = "gpio"

    @property
    def kind(self) -> str:
        """The event kind tag rules match on: the role, or seller_short / seller_long."""
        if self.role == "seller":
            return "seller_long" if self.gesture == "long" else "seller_short"
        return self.role


@dataclass(frozen=True, slots=True)
class Arrival:
    t_ns: int


@dataclass(frozen=True, slots=True)
class Departure:
    t_ns: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """A sale at the till, reported by the POS integration."""

    t_ns: int
    receipt_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "receipt"


EdgeEvent = Press | Arrival | Departure | Receipt


def event_kind(event: EdgeEvent) -> str:
    if isinstance(event, Arrival):
        return "arrival"
    if isinstance(event, Departure):
        return "departure"
    return event.kind


@dataclass(slots=True)
class Contact:
    """One customer contact: an interval of monotonic time plus what happened in it."""

    id: str
    mode: ContactMode
    start_ns: int
    end_ns: int | None = None
    ended_by: EndedBy | None = None
    events: list[EdgeEvent] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        return self.end_ns is not None

    def kinds(self) -> set[str]:
        kinds = {event_kind(e) for e in self.events}
        kinds.update(
            f"question:{e.question}"
            for e in self.events
            if isinstance(e, Press) and e.question is not None
        )
        return kinds
