"""Recordings: which files, what they hold, and when each one started.

Rules:
- A path given is a file, or a folder searched recursively for files with one of
  ``importer.extensions`` (hidden files and folders skipped). Files are identified by the
  SHA-256 of their bytes: the same content found twice (a copy, the dictaphone mounted again
  under another name) is one recording, reported once as a duplicate.
- Decoding: soundfile (libsndfile: WAV of any rate, width and channel count, FLAC, MP3, Ogg);
  what it cannot open goes to PyAV (``av``, FFmpeg: AAC/M4A, WMA, AMR ...). Audio is read as
  16-bit mono at the file's own rate (channels averaged), so a clip is the source's samples.
  A file neither can decode is a :class:`FileProblem`, never a crash.
- Start time, first usable source wins: the Broadcast-WAV ``bext`` chunk (OriginationDate, and
  TimeReference — samples since midnight — for the time of day, else OriginationTime; local
  time in ``importer.timezone``), the first ``importer.filenames`` pattern found in the file's
  name (in its own zone), or the file's mtime minus its duration. A time before
  ``earliest_year`` or more than a day in the future is a reset clock: the next source is
  tried; a file with none usable is a :class:`FileProblem` naming each source's reason.
- The recorder (first ``importer.recorders`` entry whose glob matches the path) corrects the
  recorder's time: ``true = recorder + offset_s + drift_s_per_day * days since offset_at``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import soundfile as sf

from edge.clock import NS
from edge.config import ImporterSection, RecorderClock
from edge.config.importer import PATTERN_DIRECTIVES

TimeSource = Literal["bext", "filename", "mtime"]
Samples = npt.NDArray[np.int16]
DAY_NS = 86_400 * NS
_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class Recording:
    """One audio file with its corrected start time (wall ns of its first sample)."""

    path: Path
    sha256: str
    decoder: Literal["soundfile", "av"]
    sample_rate: int
    frames: int
    channels: int
    start_ns: int
    time_source: TimeSource
    recorder: str | None = None  # the name of the matching importer.recorders entry
    correction_ns: int = 0  # added to the recorder's time
    staff: str | None = None  # the recorder's carrier (importer.recorders.staff)
    other_paths: tuple[Path, ...] = ()  # the same content found here too

    @property
    def end_ns(self) -> int:
        """Wall ns just after the last sample."""
        return self.start_ns + self.frames * NS // self.sample_rate

    def index_of(self, wall_ns: int) -> int:
        """The sample being recorded at ``wall_ns`` (may be outside the file)."""
        return (wall_ns - self.start_ns) * self.sample_rate // NS

    def time_of(self, index: int) -> int:
        """Wall ns of sample ``index``."""
        return self.start_ns + index * NS // self.sample_rate


@dataclass(frozen=True, slots=True)
class FileProblem:
    path: Path
    reason: str


@dataclass(slots=True)
class Scan:
    recordings: list[Recording] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (copy, recording)


# --- finding files --------------------------------------------------------------------------


def find_files(paths: Sequence[Path], extensions: Iterable[str]) -> tuple[list[Path], list[Path]]:
    """The files given and those in the folders given (sorted); and the paths not found."""
    wanted = {e.lower() for e in extensions}
    out: list[Path] = []
    missing: list[Path] = []
    for path in paths:
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out.extend(_walk(path, wanted))
        else:
            missing.append(path)
    seen: set[Path] = set()
    unique = []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, missing


def _walk(folder: Path, extensions: set[str]) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in extensions:
                yield Path(root) / name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


# --- probing and decoding -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    decoder: Literal["soundfile", "av"]
    sample_rate: int
    frames: int
    channels: int


def probe(path: Path) -> Probe:
    """What the file holds; ValueError naming both decoders' complaints if neither can."""
    try:
        info = sf.info(str(path))
        if info.frames <= 0 or info.samplerate <= 0:
            raise ValueError(f"{info.frames} frames at {info.samplerate} Hz")
        return Probe("soundfile", int(info.samplerate), int(info.frames), int(info.channels))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip() or type(exc).__name__
    try:
        rate, frames, channels = _av_probe(path)
    except Exception as exc:  # noqa: BLE001 - PyAV raises many kinds (FFmpegError, decode ...)
        raise ValueError(
            f"not a readable recording (soundfile: {first}; PyAV: "
            f"{str(exc).strip() or type(exc).__name__})"
        ) from None
    return Probe("av", rate, frames, channels)


def _av_probe(path: Path) -> tuple[int, int, int]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.rate or 0)
        channels = int(stream.channels or 0)
        frames = 0
        for chunk in _av_mono(container, stream):
            frames += len(chunk)
    if rate <= 0 or frames <= 0:
        raise ValueError(f"{frames} samples at {rate} Hz")
    return rate, frames, channels


def _av_mono(container: object, stream: object) -> Iterator[Samples]:
    """Every sample of ``stream`` as 16-bit mono blocks at its own rate."""
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=stream.rate)  # type: ignore[attr-defined]
    for frame in container.decode(stream):  # type: ignore[attr-defined]
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1).astype(np.int16, copy=False)
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1).astype(np.int16, copy=False)


def _mono(block: npt.NDArray[np.int16]) -> Samples:
    if block.ndim == 1:
        return block
    if block.shape[1] == 1:
        mono: Samples = block[:, 0].copy()
        return mono
    mixed: Samples = np.rint(block.astype(np.int32).mean(axis=1)).astype(np.int16)
    return mixed


def read_ranges(rec: Recording, ranges: Sequence[tuple[int, int]]) -> list[Samples]:
    """The 16-bit mono samples ``[start, end)`` of each range (within the file)."""
    for start, end in ranges:
        if not 0 <= start <= end <= rec.frames:
            raise ValueError(f"{rec.path}: range [{start}, {end}) outside 0..{rec.frames}")
    if rec.decoder == "soundfile":
        out = []
        with sf.SoundFile(str(rec.path)) as f:
            for start, end in ranges:
                f.seek(start)
                block = f.read(end - start, dtype="int16", always_2d=True)
                out.append(_mono(block))
        return out
    return _av_ranges(rec, ranges)


def _av_ranges(rec: Recording, ranges: Sequence[tuple[int, int]]) -> list[Samples]:
    """One pass over the file, keeping the samples of each range (FFmpeg's seeking is not
    exact to the sample in every format, so nothing is seeked)."""
    import av

    parts: list[list[Samples]] = [[] for _ in ranges]
    position = 0
    with av.open(str(rec.path)) as container:
        stream = container.streams.audio[0]
        last = max((end for _, end in ranges), default=0)
        for chunk in _av_mono(container, stream):
            chunk_end = position + len(chunk)
            for k, (start, end) in enumerate(ranges):
                a, b = max(start, position), min(end, chunk_end)
                if a < b:
                    parts[k].append(chunk[a - position : b - position])
            position = chunk_end
            if position >= last:
                break
    return [np.concatenate(p) if p else np.zeros(0, dtype=np.int16) for p in parts]


# --- start time -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bext:
    origination_date: str
    origination_time: str
    time_reference: int  # samples since midnight


def read_bext(path: Path) -> Bext | None:
    """The ``bext`` chunk of a RIFF/RF64 WAVE file, or None (not a WAVE file, or no chunk)."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:] != b"WAVE":
                return None
            for _ in range(256):
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"bext":
                    body = f.read(min(size, 602))
                    if len(body) < 346:
                        return None
                    date = body[320:330].decode("ascii", "replace")
                    clock = body[330:338].decode("ascii", "replace")
                    low, high = struct.unpack("<II", body[338:346])
                    return Bext(date, clock, (high << 32) | low)
                if cid == b"data" and size == 0xFFFFFFFF:  # RF64: the size is in ds64
                    return None
                f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None
    return None


def bext_start(bext: Bext, sample_rate: int, zone: ZoneInfo) -> datetime:
    """The first sample's local time; ValueError if the chunk's date or time is unusable."""
    text = bext.origination_date.replace(":", "-").replace("/", "-").replace(".", "-")
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"bext OriginationDate {bext.origination_date!r} is not a date") from None
    clock_text = bext.origination_time.replace("-", ":").replace(".", ":")
    origination: datetime | None
    try:
        origination = datetime.strptime(clock_text, "%H:%M:%S").replace(
            year=day.year, month=day.month, day=day.day
        )
    except ValueError:
        origination = None
    if bext.time_reference > 0:
        exact_ns = bext.time_reference * NS // sample_rate
        start = day + timedelta(microseconds=exact_ns // 1000)
        if origination is not None and start - origination > timedelta(hours=12):
            start -= timedelta(days=1)  # started before midnight, the file dated after it
    elif origination is not None:
        start = origination
    else:
        raise ValueError(
            f"bext OriginationTime {bext.origination_time!r} is not a time and TimeReference is 0"
        )
    return start.replace(tzinfo=zone)


def _pattern_regex(fmt: str) -> re.Pattern[str]:
    out = []
    pieces = fmt.split("%")
    out.append(re.escape(pieces[0]))
    for piece in pieces[1:]:
        out.append(PATTERN_DIRECTIVES[piece[0]] if piece[0] != "%" else "%")
        out.append(re.escape(piece[1:]))
    return re.compile("".join(out))


def filename_start(name: str, fmt: str, zone: ZoneInfo) -> datetime | None:
    """The time a pattern finds in ``name`` (the first match that is a valid time), or None."""
    regex = _pattern_regex(fmt)
    for match in regex.finditer(name):
        try:
            return datetime.strptime(match.group(0), fmt).replace(tzinfo=zone)
        except ValueError:
            continue
    return None


def recorder_for(path: Path, recorders: Sequence[RecorderClock]) -> RecorderClock | None:
    text = path.as_posix()
    for recorder in recorders:
        if any(fnmatch.fnmatch(text, pattern) for pattern in recorder.match):
            return recorder
    return None


def correction_ns(recorder: RecorderClock | None, recorder_ns: int) -> int:
    """What to add to the recorder's time ``recorder_ns`` to get the true time."""
    if recorder is None:
        return 0
    total = recorder.offset_s * NS
    since = recorder.offset_at_ns()
    if since is not None and recorder.drift_s_per_day:
        total += recorder.drift_s_per_day * NS * (recorder_ns - since) / DAY_NS
    return round(total)


def start_time(path: Path, p: Probe, cfg: ImporterSection, now_ns: int) -> tuple[int, TimeSource]:
    """The recorder's time of the first sample (wall ns, before correction) and its source;
    ValueError naming every source's reason when none is usable."""
    earliest = datetime(cfg.earliest_year, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp() * NS
    latest = now_ns + DAY_NS
    reasons: list[str] = []

    def usable(when: datetime, what: str) -> int | None:
        ns = round(when.timestamp() * 1e6) * 1000
        if ns < earliest or ns > latest:
            reasons.append(
                f"{what} {when.isoformat()} is before {cfg.earliest_year} or in the future"
            )
            return None
        return ns

    default_zone = ZoneInfo(cfg.timezone)
    bext = read_bext(path)
    if bext is None:
        reasons.append("no bext chunk")
    else:
        try:
            when = bext_start(bext, p.sample_rate, default_zone)
        except ValueError as exc:
            reasons.append(str(exc))
        else:
            found = usable(when, "bext time")
            if found is not None:
                return found, "bext"
    matched = False
    for pattern in cfg.filenames:
        zone = ZoneInfo(pattern.timezone) if pattern.timezone else default_zone
        when_name = filename_start(path.name, pattern.format, zone)
        if when_name is not None:
            matched = True
            found = usable(when_name, f"file name time ({pattern.format})")
            if found is not None:
                return found, "filename"
    if not matched:
        reasons.append("no file name pattern matches")
    if cfg.use_mtime:
        mtime_ns = path.stat().st_mtime_ns
        start = mtime_ns - p.frames * NS // p.sample_rate
        found = usable(datetime.fromtimestamp(start / NS, tz=ZoneInfo("UTC")), "mtime - duration")
        if found is not None:
            return start, "mtime"
    else:
        reasons.append("importer.use_mtime is off")
    raise ValueError("no usable start time: " + "; ".join(reasons))


def scan(
    files: Sequence[Path],
    cfg: ImporterSection,
    *,
    now_ns: int | None = None,
    step: Callable[[Path], None] | None = None,
) -> Scan:
    """Hash, probe and date every file (:func:`find_files` lists them); problems are collected,
    never raised. ``step`` is called after each file (a progress bar)."""
    now = time.time_ns() if now_ns is None else now_ns
    result = Scan()
    by_hash: dict[str, int] = {}
    for path in files:
        try:
            outcome = _one(path, cfg, now, by_hash, result)
        finally:
            if step is not None:
                step(path)
        if isinstance(outcome, FileProblem):
            result.problems.append(outcome)
    return result


def _one(
    path: Path, cfg: ImporterSection, now: int, by_hash: dict[str, int], result: Scan
) -> Recording | FileProblem | None:
    try:
        digest = file_sha256(path)
    except OSError as exc:
        return FileProblem(path, f"cannot read it: {exc.strerror or exc}")
    if digest in by_hash:
        index = by_hash[digest]
        first = result.recordings[index]
        result.recordings[index] = _with_copy(first, path)
        result.duplicates.append((path, first.path))
        return None
    try:
        p = probe(path)
        raw_ns, source = start_time(path, p, cfg, now)
    except ValueError as exc:
        return FileProblem(path, str(exc))
    except OSError as exc:
        return FileProblem(path, f"cannot read it: {exc.strerror or exc}")
    recorder = recorder_for(path, cfg.recorders)
    fix = correction_ns(recorder, raw_ns)
    rec = Recording(
        path=path,
        sha256=digest,
        decoder=p.decoder,
        sample_rate=p.sample_rate,
        frames=p.frames,
        channels=p.channels,
        start_ns=raw_ns + fix,
        time_source=source,
        recorder=None if recorder is None else recorder.name,
        correction_ns=fix,
        staff=(recorder.staff or None) if recorder is not None else None,
    )
    by_hash[digest] = len(result.recordings)
    result.recordings.append(rec)
    return rec


def _with_copy(rec: Recording, path: Path) -> Recording:
    return replace(rec, other_paths=(*rec.other_paths, path))
