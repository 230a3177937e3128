"""ALSA capture CPU per audio hour: ``AlsaMicrophone`` into the RAM ring, next to ``arecord``.

Both read a ``type file`` PCM whose ``infile`` is a regular file of ``--minutes`` of 16 kHz S16
mono (deterministic noise); ALSA reads such a file as fast as it can, so the run measures the
cost per period, not real time. Ours is the whole capture path of the device: the capture thread
(poll, read, the sample-index clock, the :class:`AudioPeriod`) and the write of every period into
an :class:`edge.audio.Ring` of the default config's size, done in the sink as the core loop does.
It is timed with ``time.process_time`` of this process from ``start()`` until the sink has written
the file's last sample; ``arecord -s SAMPLES`` with ``RUSAGE_CHILDREN``. arecord runs with the
same period as ours, and with the 20 ms reference period (320 frames × 4) a C recorder would use.
Each of the three runs ``--runs`` times and the least CPU is reported (the machine may be busy).
Past the end of its infile a ``file`` PCM returns zeros, so both are bounded by the sample count.
Afterwards (outside the timing) the ring's content is compared with the file: its newest samples
must be bit-identical and no gap or overlap recorded.

Needs ``arecord`` (Debian package ``alsa-utils``).

    .venv/bin/python bench/capture.py [--minutes 60] [--period FRAMES] [--periods 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.audio import Ring
from edge.config import Config
from hardware._api import AudioPeriod, HardwareEvent
from hardware.alsa import AlsaMicrophone

RATE = 16000
PCM_NAME = "cp_bench_capture"
REFERENCE = (320, 4)  # arecord's 20 ms periods: the figure the goal compares with


def write_alsa_config(directory: Path, infile: Path) -> Path:
    """An ALSA config defining the capture PCM over ``infile`` (see testing-hardware.md)."""
    conf = directory / "asound.conf"
    conf.write_text(
        f'pcm.{PCM_NAME} {{ type file slave.pcm "null" file "/dev/null" '
        f'infile "{infile}" format "raw" }}\n',
        encoding="utf-8",
    )
    return conf


class RingSink:
    """The microphone's sink: writes every period into the ring (what the core loop's clipper
    does) until ``total`` samples arrived, then notes the process CPU time and wakes the waiter."""

    def __init__(self, ring: Ring, total: int) -> None:
        self.ring = ring
        self.total = total
        self.periods = 0
        self.cpu_done = 0.0
        self.done = threading.Event()
        self.other: list[str] = []

    def __call__(self, event: HardwareEvent) -> None:
        if not isinstance(event, AudioPeriod):
            self.other.append(repr(event))
            return
        if self.done.is_set():
            return
        end = min(event.end_index, self.total)  # past the file's end the PCM returns zeros
        self.ring.write(event.start_index, event.samples[: end - event.start_index])
        self.periods += 1
        if end >= self.total:
            self.cpu_done = time.process_time()
            self.done.set()


def run_ours(total: int, ring: Ring, period: int, periods: int) -> tuple[float, float, RingSink]:
    """(CPU s, wall s, sink) for capturing ``total`` samples through AlsaMicrophone."""
    sink = RingSink(ring, total)
    mic = AlsaMicrophone(PCM_NAME, sample_rate=RATE, period_frames=period, periods=periods)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    mic.start(sink)
    if not sink.done.wait(timeout=600):
        mic.stop()
        sys.exit(f"AlsaMicrophone delivered {ring.head} of {total} samples in 600 s: {sink.other}")
    wall = time.perf_counter() - wall0
    mic.stop()
    return sink.cpu_done - cpu0, wall, sink


def run_arecord(total: int, period: int, periods: int) -> tuple[float, float]:
    """(CPU s, wall s) of arecord reading ``total`` samples of the same PCM to /dev/null."""
    command = [
        "arecord",
        "-q",
        "-D",
        PCM_NAME,
        "-f",
        "S16_LE",
        "-r",
        str(RATE),
        "-c",
        "1",
        "-t",
        "raw",
        f"--period-size={period}",
        f"--buffer-size={period * periods}",
        "-s",
        str(total),
        "/dev/null",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def check_ring(ring: Ring, audio: npt.NDArray[np.int16]) -> str:
    """What the ring holds, compared with the file: 'yes' or what differs."""
    if ring.head != len(audio):
        return f"NO: ring head {ring.head}, file {len(audio)} samples"
    if ring.gaps_samples or ring.overlap_samples:
        return f"NO: {ring.gaps_samples} samples of gaps, {ring.overlap_samples} overlapping"
    cut = ring.read(ring.oldest, ring.head)
    if not np.array_equal(cut.samples, audio[ring.oldest :]):
        return "NO: the samples differ"
    return "yes"


def main() -> None:
    default_period = Config().audio.period_frames
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0, help="audio in the infile")
    parser.add_argument(
        "--period", type=int, default=default_period, help="frames per ALSA period (ours)"
    )
    parser.add_argument("--periods", type=int, default=4, help="periods in the ALSA buffer")
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of each; the least CPU of them is reported"
    )
    args = parser.parse_args()
    if shutil.which("arecord") is None:
        sys.exit("arecord not found: apt-get install -y alsa-utils")

    total = round(args.minutes * 60 * RATE)
    capacity = round(Config().ring_seconds() * RATE)
    work = Path(tempfile.mkdtemp(prefix="cp-bench-capture-"))
    try:
        infile = work / "audio.s16"
        audio = np.random.default_rng(1).integers(-8000, 8000, total, dtype=np.int16)
        infile.write_bytes(audio.astype("<i2").tobytes())
        conf = write_alsa_config(work, infile)
        os.environ["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{conf}"

        ours: list[tuple[float, float, RingSink]] = []
        same: list[tuple[float, float]] = []
        ref: list[tuple[float, float]] = []
        identical = "yes"
        for _ in range(args.runs):
            ring = Ring(capacity)
            ours.append(run_ours(total, ring, args.period, args.periods))
            if (check := check_ring(ring, audio)) != "yes":
                identical = check
            same.append(run_arecord(total, args.period, args.periods))
            ref.append(run_arecord(total, *REFERENCE))
        ours_cpu, ours_wall, sink = min(ours, key=lambda run: run[0])
        same_cpu, same_wall = min(same)
        ref_cpu, ref_wall = min(ref)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    hours = total / RATE / 3600
    print(
        f"capture: {args.minutes:g} min of 16 kHz S16 mono from an ALSA 'file' PCM (regular "
        f"infile, read as fast as possible); ring {capacity / RATE / 60:.1f} min; "
        f"least CPU of {args.runs} runs each"
    )
    print(
        f"AlsaMicrophone -> Ring, period {args.period} × {args.periods}: "
        f"{ours_cpu / hours:.2f} CPU-s per audio hour (CPU {ours_cpu:.2f} s, wall "
        f"{ours_wall:.2f} s, {sink.periods:,} periods; ring bit-identical to the file: {identical})"
    )
    print(
        f"arecord, period {args.period} × {args.periods}: {same_cpu / hours:.2f} CPU-s per "
        f"audio hour (CPU {same_cpu:.2f} s, wall {same_wall:.2f} s)"
    )
    print(
        f"arecord, period {REFERENCE[0]} × {REFERENCE[1]} (reference): {ref_cpu / hours:.2f} "
        f"CPU-s per audio hour (CPU {ref_cpu:.2f} s, wall {ref_wall:.2f} s)"
    )
    print(
        f"ratio ours / arecord at the reference period = {ours_cpu / ref_cpu:.1f}; "
        f"ours / arecord at the same period = {ours_cpu / same_cpu:.1f}; share of one core in "
        f"real time: ours {ours_cpu / (hours * 3600):.3%}, arecord (reference) "
        f"{ref_cpu / (hours * 3600):.3%}"
    )


if __name__ == "__main__":
    main()
