"""Real ALSA devices without a sound card: ``type file`` PCMs over the ``null`` PCM.

Facts checked here (alsa-lib 1.2.8, pyalsaaudio 0.11.0):

- ``ALSA_CONFIG_PATH`` is read again on every ``snd_pcm_open`` and the files in it are re-parsed
  when they change or appear, so a test may set it (monkeypatch) at any time in the process, and
  a PCM defined by a file written later becomes openable from then on. A listed file that does
  not exist yet only makes ALSA print "Cannot access file" to stderr.
- A capture ``file`` PCM reads its ``infile`` on every read: a regular file as fast as possible
  (zeros/garbage past its end), a FIFO at the pace of whoever writes it. The ``null`` slave never
  overruns, so an ALSA overrun cannot be produced this way (see :class:`ScriptedPCM`).
- A playback ``file`` PCM writes the samples, byte for byte, to its ``file``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import alsaaudio
import numpy as np
import numpy.typing as npt
import pytest

Samples = npt.NDArray[np.int16]

NS = 1_000_000_000


def capture_pcm(name: str, infile: Path) -> str:
    """ALSA config text for a capture PCM ``name`` that reads raw S16 samples from ``infile``."""
    return (
        f'pcm.{name} {{ type file slave.pcm "null" file "/dev/null" '
        f'infile "{infile}" format "raw" }}\n'
    )


def playback_pcm(name: str, outfile: Path) -> str:
    """ALSA config text for a playback PCM ``name`` that writes raw samples to ``outfile``."""
    return f'pcm.{name} {{ type file slave.pcm "null" file "{outfile}" format "raw" }}\n'


def use_alsa_config(monkeypatch: pytest.MonkeyPatch, *files: Path) -> None:
    """Make ALSA read the system alsa.conf and then ``files`` (which may not exist yet)."""
    paths = ["/usr/share/alsa/alsa.conf", *map(str, files)]
    monkeypatch.setenv("ALSA_CONFIG_PATH", ":".join(paths))


def period_samples(number: int, frames: int) -> Samples:
    """Period ``number`` of a feeder: every sample holds the period number (mod 2**15)."""
    return np.full(frames, number % 32768, dtype=np.int16)


class FifoFeeder:
    """Writes whole periods into a FIFO in real time, like a sound card producing them.

    ``pause(seconds)`` loses audio: the periods due during the pause are never written (their
    numbers are skipped), as when a device stalls. ``stall()`` stops writing for good.
    """

    def __init__(self, fifo: Path, rate: int, frames: int) -> None:
        os.mkfifo(fifo)
        self.fd = os.open(fifo, os.O_RDWR)  # a writer exists, so ALSA's open does not block
        self._period_ns = frames * NS // rate
        self._frames = frames
        self._pause_ns = 0
        self._stall = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.written = 0  # periods written so far
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._pause_ns = int(seconds * NS)

    def stall(self) -> None:
        self._stall.set()

    def write_one(self) -> None:
        """Write one more period now (unblocks a read waiting on a stalled FIFO)."""
        os.write(self.fd, period_samples(self.written, self._frames).tobytes())

    def close(self) -> None:
        self._done.set()
        self._stall.set()
        self._thread.join(2)
        os.close(self.fd)

    def _run(self) -> None:
        t0 = time.monotonic_ns()
        number = 0
        while not self._stall.is_set():
            with self._lock:
                pause, self._pause_ns = self._pause_ns, 0
            number += pause // self._period_ns  # the periods due during a pause are lost
            due = t0 + number * self._period_ns
            if self._done.wait(max(0, due - time.monotonic_ns()) / NS):
                return
            if self._stall.is_set():
                return
            os.write(self.fd, period_samples(number, self._frames).tobytes())
            number += 1
            self.written = number


class SteppedClock:
    """A monotonic clock that only moves when told to (by :class:`ScriptedPCM`)."""

    def __init__(self, start_ns: int = 1_000 * NS) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


class ScriptedPCM:
    """A real ``alsaaudio.PCM`` whose reads are wrapped to script time and faults.

    Every successful read advances ``clock`` by the duration of the frames it returned, as if a
    sound card had just produced them. ``script`` maps a read number (from 0, counted over all
    PCMs made) to ``("overrun", lost_ns)`` — return ``(-EPIPE, b"")`` as pyalsaaudio 0.11.0 does
    after ALSA discarded ``lost_ns`` of audio — or ``("unplug", gone_ns)`` — raise
    ``ALSAAudioError`` and let ``gone_ns`` pass before the device can be reopened.
    """

    def __init__(self, clock: SteppedClock, rate: int, script: dict[int, tuple[str, int]]) -> None:
        self.reads = 0
        self.clock = clock
        self.rate = rate
        self.script = script

    def factory(self) -> Callable[..., Any]:
        real = alsaaudio.PCM

        def make(*args: Any, **kwargs: Any) -> _Wrapped:
            return _Wrapped(real(*args, **kwargs), self)

        return make


class _Wrapped:
    def __init__(self, pcm: Any, script: ScriptedPCM) -> None:
        self._pcm = pcm
        self._script = script

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pcm, name)

    def read(self) -> tuple[int, bytes]:
        script = self._script
        number = script.reads
        script.reads += 1
        if number in script.script:
            what, ns = script.script[number]
            script.clock.advance(ns)
            if what == "overrun":
                return -32, b""
            raise alsaaudio.ALSAAudioError("No such device [scripted unplug]")
        frames, data = self._pcm.read()
        if frames > 0:
            script.clock.advance(frames * NS // script.rate)
        return int(frames), bytes(data)
