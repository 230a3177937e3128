"""ALSA capture CPU per audio hour: our ``AlsaMicrophone`` next to ``arecord``, same device.

Both read a ``type file`` PCM whose ``infile`` is a regular file of ``--minutes`` of 16 kHz S16
mono (deterministic noise); ALSA reads such a file as fast as it can, so the run measures the
cost per sample, not real time. Prints, from one run: process CPU seconds per audio hour for each
(ours: ``time.process_time`` of this process from ``start()`` until the sink got the last sample
of the file; arecord: ``RUSAGE_CHILDREN``), and the ratio ours / arecord. Past the end of its
infile a ``file`` PCM returns whatever it gets (zeros), so both are bounded by the sample count:
``arecord -s``, and the sink stops counting at the file's length. The samples we got are
compared with the file afterwards (outside the timing).

Needs ``arecord`` (Debian package ``alsa-utils``).

    .venv/bin/python bench/capture.py [--minutes 60] [--period 320] [--periods 4]
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

from hardware._api import AudioPeriod, HardwareEvent
from hardware.alsa import AlsaMicrophone

RATE = 16000
PCM_NAME = "cp_bench_capture"


def write_alsa_config(directory: Path, infile: Path) -> Path:
    """An ALSA config defining the capture PCM over ``infile`` (see testing-hardware.md)."""
    conf = directory / "asound.conf"
    conf.write_text(
        f'pcm.{PCM_NAME} {{ type file slave.pcm "null" file "/dev/null" '
        f'infile "{infile}" format "raw" }}\n',
        encoding="utf-8",
    )
    return conf


class Collector:
    """The microphone's sink: keeps the periods until ``total`` samples arrived, then notes the
    process CPU time and wakes the waiter."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.got = 0
        self.periods: list[np.ndarray] = []
        self.cpu_done = 0.0
        self.done = threading.Event()
        self.other: list[str] = []

    def __call__(self, event: HardwareEvent) -> None:
        if not isinstance(event, AudioPeriod):
            self.other.append(repr(event))
            return
        if self.done.is_set():
            return
        self.periods.append(event.samples)
        self.got += len(event.samples)
        if self.got >= self.total:
            self.cpu_done = time.process_time()
            self.done.set()


def run_ours(total: int, period: int, periods: int) -> tuple[float, float, Collector]:
    """(CPU s, wall s, collector) for capturing ``total`` samples through AlsaMicrophone."""
    sink = Collector(total)
    mic = AlsaMicrophone(PCM_NAME, sample_rate=RATE, period_frames=period, periods=periods)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    mic.start(sink)
    if not sink.done.wait(timeout=600):
        mic.stop()
        sys.exit(f"AlsaMicrophone delivered {sink.got} of {total} samples in 600 s: {sink.other}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0, help="audio in the infile")
    parser.add_argument("--period", type=int, default=320, help="frames per ALSA period")
    parser.add_argument("--periods", type=int, default=4, help="periods in the ALSA buffer")
    args = parser.parse_args()
    if shutil.which("arecord") is None:
        sys.exit("arecord not found: apt-get install -y alsa-utils")

    total = round(args.minutes * 60 * RATE)
    work = Path(tempfile.mkdtemp(prefix="cp-bench-capture-"))
    try:
        infile = work / "audio.s16"
        audio = np.random.default_rng(1).integers(-8000, 8000, total, dtype=np.int16)
        infile.write_bytes(audio.astype("<i2").tobytes())
        conf = write_alsa_config(work, infile)
        os.environ["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{conf}"

        ours_cpu, ours_wall, sink = run_ours(total, args.period, args.periods)
        got = np.concatenate(sink.periods)[:total]
        identical = bool(np.array_equal(got, audio))
        rec_cpu, rec_wall = run_arecord(total, args.period, args.periods)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    hours = total / RATE / 3600
    print(
        f"capture: {args.minutes:g} min of 16 kHz S16 mono from an ALSA 'file' PCM (regular "
        f"infile, read as fast as possible), period {args.period} frames × {args.periods}"
    )
    print(
        f"AlsaMicrophone: {ours_cpu / hours:.2f} CPU-s per audio hour "
        f"(CPU {ours_cpu:.2f} s, wall {ours_wall:.2f} s, {len(sink.periods):,} periods, "
        f"samples bit-identical to the file: {'yes' if identical else 'NO'})"
    )
    print(
        f"arecord:        {rec_cpu / hours:.2f} CPU-s per audio hour "
        f"(CPU {rec_cpu:.2f} s, wall {rec_wall:.2f} s)"
    )
    print(
        f"ratio AlsaMicrophone / arecord = {ours_cpu / rec_cpu:.1f}; "
        f"share of one core in real time: ours {ours_cpu / (hours * 3600):.3%}, "
        f"arecord {rec_cpu / (hours * 3600):.3%}"
    )


if __name__ == "__main__":
    main()
