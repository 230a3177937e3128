"""Import speed: audio hours per CPU minute for a courier's day through ``contactpoint import``.

The day: ``--hours`` (8) of 16 kHz 16-bit mono speech-like audio (hardware/_speech.py with a
little noise) split into one-hour files the way a dictaphone splits them (contiguous, dated by
their names), and ``--deliveries`` (40) CRM events spread over it (some with a rating), as CSV.
Writing the files is not timed. The import itself runs as the command runs it (``run_import``:
hashing, probing, start times, windows, clips, contacts through the device's core into a fresh
store; no broker) and is timed with ``time.process_time()`` (CPU of every thread of this
process) and wall time. Prints the audio hours per CPU minute, the time per delivery, and the
split between reading the recordings (hash + probe) and cutting the contacts.

    .venv/bin/python bench/import.py [--hours 8] [--deliveries 40] [--format wav|flac]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import soundfile as sf

from edge.config import Config
from edge.importer.run import Progress, run_import
from hardware._speech import SpeechLike

RATE = 16000
ZONE = ZoneInfo("Europe/Moscow")


def write_day(folder: Path, hours: int, fmt: str) -> datetime:
    """``hours`` contiguous one-hour files named REC_YYYYMMDD_HHMMSS; returns the day's start."""
    start = datetime(2026, 11, 24, 9, 0, tzinfo=ZONE)
    voice = SpeechLike(RATE, seed=7)
    rng = np.random.default_rng(7)
    hour = 3600 * RATE
    for h in range(hours):
        samples = np.asarray(voice.render(h * hour, hour), np.int16).astype(np.int32)
        samples += rng.integers(-300, 300, hour)
        block = np.clip(samples, -32768, 32767).astype(np.int16)
        name = (start + timedelta(hours=h)).strftime("REC_%Y%m%d_%H%M%S")
        sf.write(str(folder / f"{name}.{fmt}"), block, RATE, subtype="PCM_16")
    return start


def write_events(path: Path, start: datetime, hours: int, deliveries: int) -> None:
    rng = np.random.default_rng(11)
    seconds = np.sort(rng.uniform(30, hours * 3600 - 30, deliveries))
    ratings = ["5", "4", "3", "1", "", ""]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "time", "kind", "order_id", "staff", "rating"])
        for i, s in enumerate(seconds):
            at = start + timedelta(seconds=float(s))
            writer.writerow(
                [f"D-{i}", at.isoformat(), "delivery", f"ORD-{i}", "ivan", ratings[i % 6]]
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=int, default=8)
    parser.add_argument("--deliveries", type=int, default=40)
    parser.add_argument("--format", choices=["wav", "flac"], default="wav")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cp-bench-import-") as tmp:
        base = Path(tmp)
        folder = base / "dict"
        folder.mkdir()
        print(f"writing {args.hours} h of {args.format} at {RATE} Hz ...", flush=True)
        start = write_day(folder, args.hours, args.format)
        events = base / "crm.csv"
        write_events(events, start, args.hours, args.deliveries)
        size = sum(p.stat().st_size for p in folder.iterdir())
        cfg = Config.from_dict(
            {
                "device": {"id": "courier-pc", "site": "delivery"},
                "importer": {"timezone": "Europe/Moscow"},
            }
        )
        marks: dict[str, tuple[float, float]] = {}

        def stage(name: str, _total: int) -> None:
            marks[name] = (time.process_time(), time.monotonic())

        cpu0, wall0 = time.process_time(), time.monotonic()
        summary = run_import(
            cfg, [folder], events, base / "data", progress=Progress(stage, lambda _s: None)
        )
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    hours = summary.audio_seconds / 3600
    read_cpu = marks["windows"][0] - marks["files"][0]
    cut_cpu = cpu0 + cpu - marks["windows"][0]
    print(
        f"{hours:.1f} h of audio in {summary.files} {args.format} files ({size / 1e6:.0f} MB), "
        f"{summary.events} deliveries -> {summary.contacts} contacts "
        f"({summary.clip_seconds / 60:.0f} min of clips, {summary.stitched} stitched)"
    )
    print(f"CPU {cpu:.2f} s, wall {wall:.2f} s")
    print(f"**{hours / (cpu / 60):.1f} audio hours per CPU minute**")
    print(
        f"reading the recordings (hash, probe, start time): {read_cpu:.2f} CPU-s; "
        f"cutting and saving the contacts: {cut_cpu:.2f} CPU-s "
        f"({cut_cpu / max(1, summary.contacts) * 1000:.0f} ms per contact)"
    )


if __name__ == "__main__":
    main()
