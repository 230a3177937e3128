"""Windows around events, and where their audio is among the recordings. Pure logic, no I/O.

Windows (the device's window rules, edge/contact.py, in batch): each event spans
``[t - before_s, t + after_s)``; spans that overlap or touch are one window, whichever order
the events come in; a window longer than ``max_duration_s`` is cut there into pieces that do
not overlap (an event at the cut belongs to the later piece; the first pieces end with
``timeout``, the last with ``window``; a piece no event falls in is dropped).

Placement: a window's audio comes from the recording that holds its first event (an event in
no recording: the recording overlapping the window most), extended into the previous or next
recording only when the two are contiguous — one ends where the other starts, within
``stitch_tolerance_s``, at the same sample rate — and then stitched sample-exactly. A window
reaching past a gap (or past the first or last recording) is cut short there and flagged. A
window that overlaps no recording at all is *not covered*: its events are reported.

Sample indices: the sample recorded at wall time ``t`` in a file starting at ``s`` is
``floor((t - s) * rate / 1e9)``; a clip is ``[index(start), index(end))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.clock import NS
from edge.importer.events import CrmEvent
from edge.importer.sources import Recording


@dataclass(frozen=True, slots=True)
class Window:
    start_ns: int
    end_ns: int
    events: tuple[CrmEvent, ...]
    ended_by: str = "window"  # window | timeout (cut at max_duration_s)


@dataclass(frozen=True, slots=True)
class Piece:
    """Samples ``[start, end)`` of one recording."""

    recording: Recording
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Placement:
    window: Window
    pieces: tuple[Piece, ...]  # in time order; empty: not covered
    short_start: bool = False  # the audio starts after the window's start
    short_end: bool = False  # the audio ends before the window's end

    @property
    def covered(self) -> bool:
        return bool(self.pieces)

    @property
    def cut_short(self) -> bool:
        return self.short_start or self.short_end

    @property
    def stitched(self) -> bool:
        return len(self.pieces) > 1

    @property
    def samples(self) -> int:
        return sum(p.end - p.start for p in self.pieces)


def windows(events: Sequence[CrmEvent], before_ns: int, after_ns: int, max_ns: int) -> list[Window]:
    """The windows of ``events`` by the rules above, in time order."""
    ordered = sorted(events, key=lambda e: (e.wall_ns, e.line))
    merged: list[tuple[int, int, list[CrmEvent]]] = []
    for event in ordered:
        start, end = event.wall_ns - before_ns, event.wall_ns + after_ns
        if merged and start <= merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), [*last[2], event])
        else:
            merged.append((start, end, [event]))
    out: list[Window] = []
    for first, end, members in merged:
        start, group = first, members
        while end - start > max_ns:
            cut = start + max_ns
            out.append(Window(start, cut, tuple(e for e in group if e.wall_ns < cut), "timeout"))
            group = [e for e in group if e.wall_ns >= cut]
            start = cut
        out.append(Window(start, end, tuple(group)))
    return [w for w in out if w.events]  # a piece no event falls in is no contact


def contiguous(a: Recording, b: Recording, tolerance_ns: int) -> bool:
    """``b`` continues ``a``: same rate, ``b`` starts within the tolerance of ``a``'s end."""
    return a.sample_rate == b.sample_rate and abs(b.start_ns - a.end_ns) <= tolerance_ns


def place(window: Window, recordings: Sequence[Recording], tolerance_ns: int) -> Placement:
    """Where the window's audio is (``recordings`` sorted by start; see the module rules)."""
    overlapping = [
        r for r in recordings if r.start_ns < window.end_ns and window.start_ns < r.end_ns
    ]
    if not overlapping:
        return Placement(window, ())
    anchor = _anchor(window, overlapping)
    chain = [anchor]
    position = recordings.index(anchor)
    k = position  # back while the window starts before the chain and the files join
    while window.start_ns < chain[0].start_ns and k > 0:
        previous = recordings[k - 1]
        if not contiguous(previous, chain[0], tolerance_ns):
            break
        chain.insert(0, previous)
        k -= 1
    k = position
    while window.end_ns > chain[-1].end_ns and k + 1 < len(recordings):
        following = recordings[k + 1]
        if not contiguous(chain[-1], following, tolerance_ns):
            break
        chain.append(following)
        k += 1
    pieces: list[Piece] = []
    taken_until: int | None = None  # wall ns the audio so far reaches
    for rec in chain:
        first = max(0, rec.index_of(window.start_ns))
        if taken_until is not None:  # a file overlapping its predecessor: no sample twice
            first = max(first, min(rec.frames, max(0, rec.index_of(taken_until))))
        last = min(rec.frames, max(0, rec.index_of(window.end_ns)))
        if last > first:
            pieces.append(Piece(rec, first, last))
            taken_until = rec.time_of(last)
    if not pieces:
        return Placement(window, ())
    head, tail = pieces[0], pieces[-1]
    return Placement(
        window,
        tuple(pieces),
        short_start=head.recording.index_of(window.start_ns) < head.start,
        short_end=tail.recording.index_of(window.end_ns) > tail.end,
    )


def _anchor(window: Window, overlapping: list[Recording]) -> Recording:
    for event in window.events:
        for rec in overlapping:
            if rec.start_ns <= event.wall_ns < rec.end_ns:
                return rec
    return max(
        overlapping,
        key=lambda r: min(r.end_ns, window.end_ns) - max(r.start_ns, window.start_ns),
    )


def seconds(ns: int) -> float:
    return ns / NS
