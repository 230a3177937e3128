"""Contact segmentation: group presses, receipts, arrivals and departures into contacts.

Event time and processing time
    Detectors report events late and backdated (an arrival is known after a dwell time, a press
    after debounce). Fed events wait in a buffer until the *watermark* (``now - settle_ns``,
    never moving back) reaches their ``t_ns``; then they are processed in ``t_ns`` order (feed
    order among equal times). The segmenter's own deadlines fire in the same event-time order:
    before an event at ``t`` every deadline ``<= t`` fires; on ``tick`` every deadline ``<=``
    the watermark. So a deadline at exactly an event's time fires first: a contact with a
    deadline D owns events with ``t < D``. An event that arrives at or behind the watermark is
    processed at once (``stats.late`` counts those strictly behind it); it never reopens a
    contact that already closed.

Reach: how the settle delay covers a window's ``before_s``
    A window reaches ``before_s`` into the past, so a press can claim events processed up to
    ``before_s`` earlier, and merge with a window that ended up to ``before_s`` earlier. In
    window mode the segmenter therefore holds back, on top of ``settle_ns``, what a press not
    yet processed could still reach: an event no contact takes waits (pending) until the
    watermark passes ``t + before_s``, only then is it an orphan; a window is handed out only
    when the watermark passes ``end + before_s``. Presence and survey contacts are not held.
    (``before_s`` here and below is limited to ``max_duration_s``.) Callers need not know:
    :meth:`Segmenter.next_deadline` includes these times and :meth:`Segmenter.shutdown`
    releases everything held.

Modes (``contacts.modes``; a mode that is off never opens contacts)
    presence
        An Arrival opens a ``presence`` contact starting at its time. A Departure closes it
        (end = departure time, ended_by ``departure``). At start + ``max_duration_s`` it closes
        with ``timeout`` and no presence contact opens again until a Departure is seen. An
        Arrival while one is open, or while blocked after a timeout, opens nothing (counted).
    survey
        A seller short press with no presence or survey contact open opens a ``survey`` contact
        starting at the press. The first rating press (green/yellow/red) is its answer and
        closes it (end = press time, ``answer``); else it closes at start + ``answer_window_s``
        with ``no_answer`` (or at start + ``max_duration_s`` with ``timeout`` if that is
        shorter). Further seller presses are its events; they do not restart the window.
    window
        A press whose role is in ``contacts.window.roles``, unless the presence or survey
        contact takes it, spans ``[t - before_s, t + after_s)`` (not before 0). Spans that
        overlap or touch are one window contact, whichever order the presses come in: a press
        whose span reaches an open window extends it (a button pressed twice, A overlapping B
        overlapping C: all one contact). A window longer than ``max_duration_s`` is split at
        start + ``max_duration_s``: that piece closes with ``timeout`` and the rest continues
        as a new window contact starting exactly there, so pieces never overlap (an event at
        the cut belongs to the later piece). A window closes with ``window`` at its end.
        Windows never overlap each other: a late press never reopens a window already handed
        out (it may start a window only where the last one handed out ended).

Attachment: every event gets exactly one owner, first match wins
    1. a rating press: the open survey contact (its answer);
    2. the open presence contact;
    3. the open survey contact;
    4. a window-role press: the open window its span reaches (merged); any other event: an
       open window with ``start <= t < end``;
    5. a new contact by the mode rules above (Arrival → presence, seller short → survey,
       window-role press → window);
    6. otherwise the event is pending: the first window whose span later covers it (opened
       or extended by a press up to ``before_s`` after it) takes it; if none does within
       ``before_s`` it is an *orphan*, returned by :meth:`Segmenter.drain`. So every event
       inside a window's span belongs to it unless the presence or survey contact took it;
       a rating just before a request press is the window's (and tags it).
    Exception: an Arrival that can open a presence contact does so first, even while a survey
    or window is open (the customer must be counted). Steps 1–3 take only events with
    ``t >= start`` (a late event from before the contact is not its). Otherwise Arrival and
    Departure are attached like any event; a Departure that is not the presence contact's own
    still lifts the block after a timeout.

A closed contact's interval always covers its events: only a late event can make this matter,
and then the end moves to the latest event time. ``shutdown(now)`` processes every buffered
event and fires the deadlines up to ``now``; a window whose end has passed then closes as a
window (no press can come any more), pending events become orphans, and what is still open
closes at ``now`` (or its latest event) with ``shutdown``. Contact ids come from ``new_id()``;
tags are not applied here.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from edge.clock import seconds_to_ns
from edge.config import RATING_ROLES, Config
from edge.events import Arrival, Contact, ContactMode, Departure, EdgeEvent, EndedBy, Press


@dataclass(slots=True)
class SegmenterStats:
    """Counters of what the segmenter saw."""

    events: int = 0  # events processed
    late: int = 0  # events that arrived behind the watermark
    orphans: int = 0  # events that belong to no contact
    duplicate_arrivals: int = 0  # Arrival while a presence contact was open
    blocked_arrivals: int = 0  # Arrival after a presence timeout, before any Departure
    contacts_opened: int = 0
    contacts_closed: int = 0
    windows_merged: int = 0  # open windows joined into another by a (late) press reaching both


@dataclass(slots=True)
class _Open:
    """An open contact, its deadline and how it ends when the deadline passes."""

    contact: Contact
    deadline_ns: int
    expiry: EndedBy
    end_ns: int = 0  # a window's span ends here (exclusive); its deadline may be later


class Segmenter:
    """Cuts a stream of edge events into contacts; see the module docstring for the rules."""

    def __init__(self, cfg: Config, new_id: Callable[[], str], settle_ns: int) -> None:
        c = cfg.contacts
        self._modes = frozenset(c.modes)
        self._window_roles = frozenset(c.window.roles)
        self._max_ns = seconds_to_ns(c.max_duration_s)
        self._answer_ns = seconds_to_ns(c.survey.answer_window_s)
        self._before_ns = min(seconds_to_ns(c.window.before_s), self._max_ns)
        self._after_ns = seconds_to_ns(c.window.after_s)
        #: held back beyond the watermark: what a press not yet processed may still reach
        self._hold = "window" in self._modes and bool(self._window_roles)
        self._new_id = new_id
        self._settle_ns = settle_ns
        self._watermark: int | None = None
        self._buffer: list[tuple[int, int, EdgeEvent]] = []
        self._seq = 0
        self._presence: _Open | None = None
        self._presence_blocked = False
        self._survey: _Open | None = None
        self._windows: list[_Open] = []  # by start; they never overlap
        self._floor = 0  # every window handed out ends at or before this
        self._pending: list[EdgeEvent] = []  # owned by nothing yet; a window may reach them
        self._closed: list[Contact] = []
        self._orphans: list[EdgeEvent] = []
        self.stats = SegmenterStats()

    # --- public ----------------------------------------------------------------------------

    def feed(self, event: EdgeEvent) -> None:
        """Take one event; it is processed when the watermark reaches its time."""
        wm = self._watermark
        if wm is not None and event.t_ns <= wm:
            if event.t_ns < wm:
                self.stats.late += 1
            self._process(event)
            self._fire(wm)
            return
        heapq.heappush(self._buffer, (event.t_ns, self._seq, event))
        self._seq += 1

    def tick(self, now_ns: int) -> None:
        """Processing time is ``now_ns``: process events and deadlines up to the watermark."""
        wm = now_ns - self._settle_ns
        if self._watermark is not None:
            wm = max(wm, self._watermark)
        self._watermark = wm
        self._advance(wm)

    def shutdown(self, now_ns: int) -> None:
        """Process everything buffered, then close every open contact with ``shutdown``."""
        limit = max([now_ns, *(t for t, _, _ in self._buffer)])
        if self._watermark is not None:
            limit = max(limit, self._watermark)
        self._watermark = limit
        self._advance(limit)
        for window in list(self._windows):  # no press can reach it any more: it is complete
            if window.end_ns <= limit:
                self._close(window, window.end_ns, "window")
        for event in self._pending:
            self._orphan(event)
        self._pending = []
        for open_ in list(self._all_open()):
            self._close(open_, now_ns, "shutdown")

    def drain(self) -> tuple[list[Contact], list[EdgeEvent]]:
        """Contacts closed and orphan events seen since the last drain."""
        closed, orphans = self._closed, self._orphans
        self._closed, self._orphans = [], []
        return closed, orphans

    def next_deadline(self) -> int | None:
        """The earliest ``now_ns`` at which :meth:`tick` may produce something."""
        times = [o.deadline_ns for o in self._all_open()]
        if self._buffer:
            times.append(self._buffer[0][0])
        if self._pending:
            times.append(min(e.t_ns for e in self._pending) + self._before_ns + 1)
        return min(times) + self._settle_ns if times else None

    def open_contacts(self) -> list[Contact]:
        return [o.contact for o in self._all_open()]

    # --- event time ------------------------------------------------------------------------

    def _all_open(self) -> Iterator[_Open]:
        if self._presence is not None:
            yield self._presence
        if self._survey is not None:
            yield self._survey
        yield from self._windows

    def _advance(self, limit: int) -> None:
        while self._buffer and self._buffer[0][0] <= limit:
            t_ns, _, event = heapq.heappop(self._buffer)
            self._fire(t_ns)
            self._process(event)
        self._fire(limit)

    def _fire(self, limit: int) -> None:
        """Close, in deadline order, every open contact whose deadline is ``<= limit``; then
        hand out as orphans the pending events no press from ``limit`` on can reach."""
        while True:
            due = min(self._all_open(), key=lambda o: o.deadline_ns, default=None)
            if due is None or due.deadline_ns > limit:
                break
            if due is self._presence:
                self._presence_blocked = True
                self._close(due, due.deadline_ns, due.expiry)
            elif due is self._survey:
                self._close(due, due.deadline_ns, due.expiry)
            elif due.expiry == "timeout":
                self._split(due)
            else:
                self._close(due, due.end_ns, "window")
        if self._pending:  # a press at t reaches back to t - before
            reach = limit - self._before_ns
            keep: list[EdgeEvent] = []
            for event in self._pending:
                if event.t_ns < reach:
                    self._orphan(event)
                else:
                    keep.append(event)
            self._pending = keep

    def _process(self, event: EdgeEvent) -> None:
        self.stats.events += 1
        if isinstance(event, Arrival) and "presence" in self._modes:
            if self._presence is not None:
                self.stats.duplicate_arrivals += 1
            elif self._presence_blocked:
                self.stats.blocked_arrivals += 1
        if isinstance(event, Arrival):  # a customer arriving during a survey/window is counted
            owner = self._open_new(event) or self._owner(event)
        else:
            owner = self._owner(event) or self._open_new(event)
        if owner is None:
            if self._hold:
                self._pending.append(event)
            else:
                self._orphan(event)
        else:
            owner.contact.events.append(event)
        if isinstance(event, Departure):
            self._presence_blocked = False
            if owner is not None and owner is self._presence:
                self._close(owner, event.t_ns, "departure")
        elif _is_rating(event) and owner is not None and owner is self._survey:
            self._close(owner, event.t_ns, "answer")

    def _owner(self, event: EdgeEvent) -> _Open | None:
        t = event.t_ns
        survey = self._survey if _takes(self._survey, t) else None
        if survey is not None and _is_rating(event):
            return survey
        if _takes(self._presence, t):
            return self._presence
        if survey is not None:
            return survey
        if self._is_window_press(event):
            return self._window_for(t, create=False)
        for window in self._windows:
            if window.contact.start_ns <= t < window.end_ns:
                return window
        return None

    def _open_new(self, event: EdgeEvent) -> _Open | None:
        t = event.t_ns
        if isinstance(event, Arrival):
            if "presence" in self._modes and self._presence is None and not self._presence_blocked:
                self._presence = self._open("presence", t, t + self._max_ns, "timeout")
                return self._presence
            return None
        if not isinstance(event, Press):
            return None
        if (
            event.kind == "seller_short"
            and "survey" in self._modes
            and self._presence is None
            and self._survey is None
        ):
            if self._answer_ns <= self._max_ns:
                self._survey = self._open("survey", t, t + self._answer_ns, "no_answer")
            else:
                self._survey = self._open("survey", t, t + self._max_ns, "timeout")
            return self._survey
        if self._is_window_press(event):
            return self._window_for(t, create=True)
        return None

    def _is_window_press(self, event: EdgeEvent) -> bool:
        return (
            isinstance(event, Press)
            and "window" in self._modes
            and event.role in self._window_roles
        )

    # --- windows ---------------------------------------------------------------------------

    def _window_for(self, t_ns: int, *, create: bool) -> _Open | None:
        """The window of a window-role press at ``t_ns``: the open windows its span reaches,
        merged into one and extended; else a new one if ``create``. None for a press inside
        audio already handed out as a window (a late press: that window cannot reopen)."""
        if t_ns < self._floor:
            return None
        start = max(t_ns - self._before_ns, self._floor)
        end = t_ns + self._after_ns
        reached = [w for w in self._windows if w.contact.start_ns <= end and start <= w.end_ns]
        if reached:
            window = reached[0]
            for other in reached[1:]:  # only a late press can bridge two open windows
                window.contact.events += other.contact.events
                self._windows.remove(other)
                self.stats.windows_merged += 1
            window.contact.start_ns = min(window.contact.start_ns, start)
            end = max(end, *(w.end_ns for w in reached))
        elif create:
            window = self._open("window", start, 0, "window")
            self._windows.append(window)
            self._windows.sort(key=lambda w: w.contact.start_ns)
        else:
            return None
        self._set_end(window, end)
        taken = [e for e in self._pending if window.contact.start_ns <= e.t_ns < window.end_ns]
        if taken:
            ids = {id(e) for e in taken}
            self._pending = [e for e in self._pending if id(e) not in ids]
            window.contact.events += taken
        window.contact.events.sort(key=lambda e: e.t_ns)
        return window

    def _set_end(self, window: _Open, end_ns: int) -> None:
        """The span now ends at ``end_ns``: split at the cap, or hand out once no press can
        reach it (a press up to ``before`` after the end still touches it)."""
        window.end_ns = end_ns
        cap = window.contact.start_ns + self._max_ns
        if end_ns > cap:
            window.deadline_ns, window.expiry = cap, "timeout"
        else:
            window.deadline_ns, window.expiry = end_ns + self._before_ns + 1, "window"

    def _split(self, window: _Open) -> None:
        """Close ``window`` at its cap (``timeout``); the rest of its span is a new window."""
        cap = window.deadline_ns
        events = window.contact.events
        window.contact.events = [e for e in events if e.t_ns < cap]
        end = window.end_ns
        self._close(window, cap, "timeout")
        rest = self._open("window", cap, 0, "window")
        rest.contact.events = [e for e in events if e.t_ns >= cap]
        self._set_end(rest, end)
        self._windows.append(rest)
        self._windows.sort(key=lambda w: w.contact.start_ns)

    # --- bookkeeping -----------------------------------------------------------------------

    def _open(self, mode: ContactMode, start_ns: int, deadline_ns: int, expiry: EndedBy) -> _Open:
        self.stats.contacts_opened += 1
        return _Open(Contact(id=self._new_id(), mode=mode, start_ns=start_ns), deadline_ns, expiry)

    def _close(self, open_: _Open, end_ns: int, ended_by: EndedBy) -> None:
        contact = open_.contact
        contact.end_ns = max([end_ns, contact.start_ns, *(e.t_ns for e in contact.events)])
        contact.ended_by = ended_by
        if open_ is self._presence:
            self._presence = None
        elif open_ is self._survey:
            self._survey = None
        else:
            self._windows.remove(open_)
            self._floor = max(self._floor, contact.end_ns)
        self._closed.append(contact)
        self.stats.contacts_closed += 1

    def _orphan(self, event: EdgeEvent) -> None:
        self._orphans.append(event)
        self.stats.orphans += 1


def _takes(open_: _Open | None, t_ns: int) -> bool:
    return open_ is not None and open_.contact.start_ns <= t_ns


def _is_rating(event: EdgeEvent) -> bool:
    return isinstance(event, Press) and event.kind in RATING_ROLES
