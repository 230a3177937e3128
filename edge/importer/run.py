"""One import: recordings + events -> contacts in the device's store -> (optionally) the broker.

The device is assembled exactly as for a simulation (edge/runtime.py, with no hardware): its
store, its core, its route workers and, with a broker, its publisher. Each window's clip is
written like the device's (edge/audio/encode.py, atomically, under ``clips/``) and its contact
is saved by the core's own :meth:`~edge.app.Core.save_record` — contact, events, tags, clip,
outbox rows and route deliveries in one transaction — so it travels to the sink exactly like a
contact cut at the counter. An event no recording covers is saved as an event outside any
contact (:meth:`~edge.app.Core.save_event_record`): reported, sent, never lost.

Idempotent and resumable: every id is derived from the CRM's event ids (a contact's from the
ids of its events), and an event already stored in a contact is not imported again; each
contact is committed on its own, so an interrupted import, run again, goes on where it stopped
(a clip file written but not committed is simply written again under the same name).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge._errors import UserError
from edge.app import Core
from edge.audio import CLIPS_DIR, cleanup_partials
from edge.audio.encode import CODEC_EXTENSIONS, Codec, write_clip
from edge.clock import NS, Clock, SystemClock, seconds_to_ns
from edge.config import Config
from edge.events import Contact
from edge.importer.cut import Placement, Window, place, windows
from edge.importer.events import CrmEvent, derived_id, read_events
from edge.importer.sources import FileProblem, Recording, find_files, read_ranges, scan
from edge.publish.wire import iso
from edge.records import ClipInfo, ContactRecord, EventRecord
from edge.runtime import assemble
from edge.simulate import drain_outbox
from edge.store import Store
from edge.tagging import rule_holds
from hardware import BackendSpec, open_backend

#: the boot id of imported contacts: they have no boot of this device (wall time is their time)
BOOT_ID = "import"
#: sample rates an Ogg/Opus clip can have; other rates are written as FLAC
OPUS_RATES = frozenset({8000, 12000, 16000, 24000, 48000})

Step = Callable[[str, int], None]  # (what, how many done of this stage) -> None


@dataclass(slots=True)
class ImportSummary:
    files: int = 0  # recordings read (distinct content)
    file_problems: list[FileProblem] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (copy, recording)
    events: int = 0  # events read from the file
    posted: int = 0  # events posted to the device (POST /event) not imported before
    row_problems: list[tuple[int, str]] = field(default_factory=list)
    already_imported: int = 0  # events stored in a contact by an earlier run
    contacts: int = 0  # contacts made now
    stitched: int = 0
    cut_short: int = 0
    not_covered: list[CrmEvent] = field(default_factory=list)
    files_without_events: list[Path] = field(default_factory=list)
    audio_seconds: float = 0.0  # of the recordings read
    clip_seconds: float = 0.0  # of the clips made now
    delivered: bool | None = None  # None: no broker given


@dataclass(frozen=True, slots=True)
class Progress:
    """Hooks for a progress display: ``start(stage, total)`` then ``advance(stage)``."""

    start: Callable[[str, int], None]
    advance: Callable[[str], None]


def run_import(
    cfg: Config,
    recordings: Sequence[Path],
    events_path: Path | None,
    data_dir: Path,
    *,
    broker: str | None = None,
    drain_timeout_s: float = 120.0,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> ImportSummary:
    """Import ``recordings`` (files or folders) cut around the events of ``events_path`` (if
    given) and the events posted to the device (``POST /event``, kept in its store) into the
    device store in ``data_dir``; with ``broker``, return once the sink has them all
    (:class:`~edge.simulate.DeliveryError` after ``drain_timeout_s``)."""
    imp = cfg.importer
    summary = ImportSummary()
    file_events: list[CrmEvent] = []
    if events_path is not None:
        events_file = read_events(events_path, imp)
        file_events = events_file.events
        summary.row_problems = [(p.line, p.message) for p in events_file.problems]
    summary.events = len(file_events)
    files, missing = find_files(recordings, imp.extensions)
    summary.file_problems = [FileProblem(m, "no such file or folder") for m in missing]
    if not files and not missing:
        raise UserError(
            "no recordings found in "
            + ", ".join(str(p) for p in recordings)
            + f" (looked for {', '.join(imp.extensions)}; see importer.extensions)"
        )
    clock = clock if clock is not None else SystemClock()
    backend = open_backend(BackendSpec(backend="simulated"))  # no devices: only the store side
    with assemble(cfg, clock, data_dir, backend, publish=broker is not None, broker=broker) as rt:
        rt.start()
        cleanup_partials(data_dir / CLIPS_DIR)
        if progress is not None:
            progress.start("files", len(files))
        found = scan(
            files,
            imp,
            now_ns=clock.wall_ns(clock.monotonic_ns()),
            step=None if progress is None else lambda _p: progress.advance("files"),
        )
        summary.files = len(found.recordings)
        summary.file_problems += found.problems
        summary.duplicates = found.duplicates
        summary.audio_seconds = sum(r.frames / r.sample_rate for r in found.recordings)
        recs = sorted(found.recordings, key=lambda r: (r.start_ns, r.path.as_posix()))
        posted = rt.store.posted_events()
        in_file = {e.id for e in file_events}  # the same id in both: one event (the file's)
        events = [*file_events, *(e for e in posted if e.id not in in_file)]
        summary.posted = len(events) - len(file_events)
        plan = _plan(cfg, events, recs, rt.store.stored_events, summary)
        if progress is not None:
            progress.start("windows", len(plan))
        used: set[str] = set()
        importer = _Saver(cfg, rt.core, data_dir)
        for placement, orphans_stored in plan:
            if placement.covered:
                importer.contact(placement)
                summary.contacts += 1
                summary.stitched += placement.stitched
                summary.cut_short += placement.cut_short
                summary.clip_seconds += (
                    placement.samples / placement.pieces[0].recording.sample_rate
                )
                used.update(p.recording.sha256 for p in placement.pieces)
            else:
                for event in placement.window.events:
                    if derived_id("uncovered", event.id) not in orphans_stored:
                        importer.uncovered(event)
                summary.not_covered.extend(placement.window.events)
            if rt.core.unsaved:
                raise UserError(
                    f"the store in {data_dir} cannot save now ({rt.core.health.snapshot()}); "
                    "nothing imported so far is lost: free space and run the import again"
                )
            if progress is not None:
                progress.advance("windows")
        summary.files_without_events = [r.path for r in recs if r.sha256 not in used]
        _settle_posted(rt.store, posted, clock.wall_ns(clock.monotonic_ns()))
        rt.tick(clock.monotonic_ns())  # wakes the publisher and the route workers
        if broker is not None:
            drain_outbox(rt, drain_timeout_s)
            summary.delivered = True
        rt.drain_routes()
    return summary


def _plan(
    cfg: Config,
    events: Sequence[CrmEvent],
    recs: Sequence[Recording],
    stored_events: Callable[[Sequence[str]], dict[str, str | None]],
    summary: ImportSummary,
) -> list[tuple[Placement, set[str]]]:
    """The placements of the windows of the events not imported yet, each with the ids of its
    events already stored as "not covered" (by an earlier run)."""
    ids = [derived_id(kind, e.id) for e in events for kind in ("event", "uncovered")]
    stored = stored_events(ids)
    fresh = [e for e in events if derived_id("event", e.id) not in stored]
    summary.already_imported = len(events) - len(fresh)
    imp = cfg.importer
    before, after = seconds_to_ns(imp.before_s), seconds_to_ns(imp.after_s)
    longest = seconds_to_ns(cfg.contacts.max_duration_s)
    tolerance = seconds_to_ns(imp.stitch_tolerance_s)
    plan: list[tuple[Placement, set[str]]] = []
    for staff, group in _by_staff(fresh):
        mine = [r for r in recs if r.staff is None or staff is None or r.staff == staff]
        for window in windows(group, before, after, longest):
            placement = place(window, mine, tolerance)
            orphans = {
                derived_id("uncovered", e.id)
                for e in window.events
                if derived_id("uncovered", e.id) in stored
            }
            plan.append((placement, orphans))
    plan.sort(key=lambda item: item[0].window.start_ns)
    return plan


def _settle_posted(store: Store, posted: Sequence[CrmEvent], now_wall_ns: int) -> None:
    """The posted events now stored in a contact (by this import or an interrupted earlier
    one) are not read by the next import; the others (no recording covers them yet) are."""
    if not posted:
        return
    stored = store.stored_events([derived_id("event", e.id) for e in posted])
    done = [e.id for e in posted if derived_id("event", e.id) in stored]
    store.mark_posted_imported(done, now_wall_ns)


def _by_staff(events: Sequence[CrmEvent]) -> Iterator[tuple[str | None, list[CrmEvent]]]:
    """Events per staff member (whose recorder holds their audio: importer.recorders.staff)."""
    groups: dict[str | None, list[CrmEvent]] = {}
    for event in events:
        groups.setdefault(event.staff, []).append(event)
    yield from groups.items()


class _Saver:
    """Turns placements into the device's records and saves them through the core."""

    def __init__(self, cfg: Config, core: Core, data_dir: Path) -> None:
        self.cfg = cfg
        self.core = core
        self.data_dir = data_dir

    def _event_data(self, event: CrmEvent) -> dict[str, Any]:
        data: dict[str, Any] = {
            "crm_id": event.id,
            "order_id": event.order_id,
            "staff": event.staff,
            "rating": event.rating,
            "rating_value": event.rating_value,
            "source": f"{event.source}:{event.line}" if event.line else event.source,
        }
        return {k: v for k, v in data.items() if v is not None}

    def uncovered(self, event: CrmEvent) -> None:
        data = self._event_data(event)
        data["not_covered"] = "no recording covers its window"
        self.core.save_event_record(
            EventRecord(
                id=derived_id("uncovered", event.id),
                kind=event.kind,
                t_ns=event.wall_ns,
                wall_ns=event.wall_ns,
                data=data,
                staff=event.staff,
            )
        )

    def contact(self, placement: Placement) -> None:
        window = placement.window
        contact_id = derived_id("contact", *sorted(e.id for e in window.events))
        clip = self._clip(contact_id, placement)
        first = placement.pieces[0]
        events = [
            EventRecord(
                id=derived_id("event", e.id),
                kind=e.kind,
                t_ns=e.wall_ns,
                wall_ns=e.wall_ns,
                contact_id=contact_id,
                data=self._event_data(e),
            )
            for e in window.events
        ]
        events.append(
            EventRecord(
                id=derived_id("note", contact_id),
                kind="import",
                t_ns=clip.start_ns,
                wall_ns=clip.start_ns,
                contact_id=contact_id,
                data=_note(placement),
            )
        )
        staff = next((e.staff for e in window.events if e.staff), None) or first.recording.staff
        record = ContactRecord(
            id=contact_id,
            mode="import",
            start_ns=window.start_ns,
            end_ns=window.end_ns,
            start_wall_ns=window.start_ns,
            end_wall_ns=window.end_ns,
            ended_by=window.ended_by,
            tags=tuple(self._tags(contact_id, window)),
            events=tuple(sorted(events, key=lambda e: e.t_ns)),
            clip=clip,
            clock_synced=all(p.recording.time_source != "mtime" for p in placement.pieces),
            boot_id=BOOT_ID,
            staff=staff,
        )
        self.core.save_record(record)

    def _tags(self, contact_id: str, window: Window) -> list[str]:
        """The tag rules of the config, on the events' kinds and their ratings' colours."""
        shell = Contact(
            id=contact_id,
            mode="import",
            start_ns=window.start_ns,
            end_ns=window.end_ns,
            ended_by="timeout" if window.ended_by == "timeout" else "window",
        )
        kinds = {e.kind for e in window.events} | {e.rating for e in window.events if e.rating}
        tags: list[str] = []
        for rule in self.cfg.tagging.rules:
            if rule.tag not in tags and rule_holds(rule, shell, kinds):
                tags.append(rule.tag)
        return tags

    def _clip(self, contact_id: str, placement: Placement) -> ClipInfo:
        by_file: dict[str, list[int]] = {}
        for k, piece in enumerate(placement.pieces):
            by_file.setdefault(piece.recording.sha256, []).append(k)
        blocks: list[Any] = [None] * len(placement.pieces)
        for ks in by_file.values():
            rec = placement.pieces[ks[0]].recording
            got = read_ranges(
                rec, [(placement.pieces[k].start, placement.pieces[k].end) for k in ks]
            )
            for k, block in zip(ks, got, strict=True):
                blocks[k] = block
        samples = np.concatenate(blocks)
        first = placement.pieces[0]
        rate = first.recording.sample_rate
        codec: Codec = self.cfg.audio.codec
        if codec == "opus" and rate not in OPUS_RATES:
            codec = "flac"
        relative = f"{CLIPS_DIR}/{contact_id}{CODEC_EXTENSIONS[codec]}"
        sha, size = write_clip(self.data_dir / relative, samples.data, rate, codec)
        start_ns = first.recording.time_of(first.start)
        return ClipInfo(
            contact_id=contact_id,
            path=relative,
            codec=codec,
            sample_rate=rate,
            start_index=first.start,
            end_index=first.start + len(samples),
            start_ns=start_ns,
            end_ns=start_ns + len(samples) * NS // rate,
            sha256=sha,
            bytes=size,
            truncated=placement.cut_short,
        )


def _note(placement: Placement) -> dict[str, Any]:
    """What the contact's ``import`` event says: where its audio and its time came from."""
    words = {
        "bext": "the Broadcast-WAV bext chunk",
        "filename": "the file name",
        "mtime": "the file's modification time minus its duration",
    }
    files = []
    parts = []
    for piece in placement.pieces:
        rec = piece.recording
        rate = rec.sample_rate
        files.append(
            {
                "name": rec.path.name,
                "sha256": rec.sha256,
                "time_source": rec.time_source,
                "recorder": rec.recorder,
                "correction_s": round(rec.correction_ns / NS, 3),
                "start": iso(rec.start_ns),
                "from_s": round(piece.start / rate, 4),
                "to_s": round(piece.end / rate, 4),
            }
        )
        text = f"{rec.path.name}: start time from {words[rec.time_source]}"
        if rec.recorder is not None:
            text += f", recorder {rec.recorder} clock corrected by {rec.correction_ns / NS:+.3f} s"
        parts.append(text)
    note = "; ".join(parts)
    if placement.stitched:
        note += "; stitched from contiguous files"
    short = [
        side
        for side, flag in (("start", placement.short_start), ("end", placement.short_end))
        if flag
    ]
    if short:
        note += f"; cut short at the {' and '.join(short)}: no contiguous recording there"
    data: dict[str, Any] = {
        "note": note,
        "time_source": placement.pieces[0].recording.time_source,
        "files": files,
        "stitched": placement.stitched,
    }
    if short:
        data["cut_short"] = short
    return data


@contextlib.contextmanager
def rich_progress(enabled: bool) -> Iterator[Progress | None]:
    """A progress bar on stderr when it is a terminal (rich); None otherwise."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    labels = {"files": "reading recordings", "windows": "cutting contacts"}
    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, Any] = {}

        def start(stage: str, total: int) -> None:
            tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)

        def advance(stage: str) -> None:
            bar.advance(tasks[stage])

        yield Progress(start, advance)
