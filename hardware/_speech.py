"""Signals for the simulated microphone.

Rules:

- ``render(start_index, count)`` is a pure function of the absolute sample index: the same index
  always gives the same sample, whatever the call pattern, so a test can recompute what any clip
  must contain. It returns read-only int16 samples (:data:`hardware.Samples`): a view of the
  table where the range does not wrap, else a copy joined from it.
- Both signals are a table computed once and looped: ``render`` is a slice of it (a copy of two
  or more slices only across the loop point), fast enough to feed an 8-hour shift at thousands
  of times real time.
- :class:`SpeechLike` is synthetic speech: voiced syllables (a 100–250 Hz pitch with a few
  harmonics under a syllable envelope), pauses between words and phrases, a little noise; about
  −20 dBFS RMS. It is computed with the standard library only (``random.Random(seed)``, ``math``;
  the daemon imports no numpy, issue #14), once per (rate, seed) in a process: the 24-s table
  takes about half a CPU-second at 16 kHz on the bench machine, twice what numpy's import and
  synthesis took (``bench/README.md``, "memory, issue #14, third step").
  :class:`LoopedWav` loops a 16-bit mono WAV recorded at the capture rate (read with soundfile).
"""

from __future__ import annotations

import functools
import math
import random
from array import array
from collections.abc import Iterable, Iterator
from itertools import accumulate, repeat
from math import sin
from operator import add, mul
from pathlib import Path
from typing import Final, Protocol

from hardware._api import Samples

LOOP_SECONDS: Final = 24
TARGET_DBFS: Final = -20.0
FULL_SCALE: Final = 32767


class Signal(Protocol):
    """What the simulated microphone plays."""

    sample_rate: int

    def render(self, start_index: int, count: int) -> Samples: ...


class _Loop:
    """A precomputed table (native int16 bytes) served by modular indexing."""

    def __init__(self, table: bytes, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._table = table
        self._samples = memoryview(table).cast("h")  # read-only: bytes

    @property
    def loop_samples(self) -> int:
        return len(self._samples)

    def render(self, start_index: int, count: int) -> Samples:
        """The samples with absolute indices ``[start_index, start_index + count)``."""
        if count < 0:
            raise ValueError(f"count cannot be negative: {count}")
        size = len(self._samples)
        first = start_index % size
        if first + count <= size:
            return self._samples[first : first + count]
        out = bytearray()
        while count > 0:  # across the loop point (more than once if count > size)
            take = min(count, size - first)
            out += self._table[2 * first : 2 * (first + take)]
            count -= take
            first = 0
        return memoryview(out).cast("h").toreadonly()


class SpeechLike(_Loop):
    """Deterministic speech-like audio: the same ``seed`` always gives the same signal."""

    def __init__(self, sample_rate: int, seed: int = 0) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        super().__init__(_synthesise(sample_rate, seed, LOOP_SECONDS * sample_rate), sample_rate)


class LoopedWav(_Loop):
    """A 16-bit mono WAV at ``sample_rate``, repeated forever."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        import soundfile as sf  # only for a WAV file to loop (the synthetic speech needs none)

        need = f"a 16-bit PCM mono WAV at {sample_rate} Hz"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (need {need})")
        try:
            info = sf.info(str(path))
        except sf.LibsndfileError as e:
            raise ValueError(f"{path}: not a readable audio file ({e}); need {need}") from e
        found = f"{info.format} {info.subtype}, {info.channels} channel(s), {info.samplerate} Hz"
        fits = (
            info.format == "WAV"
            and info.subtype == "PCM_16"
            and info.channels == 1
            and info.samplerate == sample_rate
        )
        if not fits:
            raise ValueError(f"{path}: found {found}; need {need}")
        table, _ = sf.read(str(path), dtype="int16")  # a numpy array: soundfile's own type
        if len(table) == 0:
            raise ValueError(f"{path}: the file holds no samples; need {need}")
        super().__init__(table.tobytes(), sample_rate)


@functools.lru_cache(maxsize=4)
def _synthesise(rate: int, seed: int, size: int) -> bytes:
    """Syllables and pauses laid end to end, scaled to ``TARGET_DBFS``: native int16 bytes.

    Every per-sample step is a C-level loop (``map``/``accumulate`` over builtins, the noise
    from ``randbytes``), not Python code per sample. Kept per (rate, seed, size) for the process
    (the table is immutable; 0.75 MiB at 16 kHz), so another simulated microphone, as in the
    tests, does not compute it again."""
    rng = random.Random(seed)  # noqa: S311 - a simulated signal, not a secret
    # faint room noise everywhere, also in the pauses; the syllables are added to it in place
    # (one float array of the table's size, 3 MiB at 16 kHz, alive only here)
    out = array("d", _noise(rng, size, 0.01))
    pos = int(0.3 * rate)
    # Leave a phrase pause before the wrap so the loop joins in silence.
    limit = size - int(0.6 * rate)
    while (length := int(rng.uniform(0.12, 0.32) * rate)) <= limit - pos:
        out[pos : pos + length] = array(
            "d", map(add, out[pos : pos + length], _syllable(rng, rate, length))
        )
        phrase_end = rng.random() < 0.2
        pause = rng.uniform(0.3, 0.9) if phrase_end else rng.uniform(0.02, 0.15)
        pos += length + int(pause * rate)
    rms = math.sqrt(math.fsum(map(mul, out, out)) / size)
    gain = FULL_SCALE * 10 ** (TARGET_DBFS / 20) / rms
    # round() is round-half-even, as numpy's was
    scaled: Iterable[int] = map(round, map(mul, out, repeat(gain)))
    # clipped to the int16 range only if a peak needs it (slow; the peaks stay below)
    if max(out) * gain > FULL_SCALE or -min(out) * gain > FULL_SCALE:
        scaled = map(max, repeat(-FULL_SCALE), map(min, repeat(FULL_SCALE), scaled))
    table = array("h", scaled)
    return table.tobytes()


def _syllable(rng: random.Random, rate: int, length: int) -> Iterator[float]:
    """One voiced syllable: a gliding pitch, 4–6 harmonics, a rise-and-fall envelope, a little
    aspiration noise."""
    f0_start = rng.uniform(100.0, 250.0)
    glide = rng.uniform(-0.15, 0.15) / max(1, length - 1)  # relative pitch change per sample
    step = 2.0 * math.pi * f0_start / rate  # phase advance per sample at the starting pitch
    # phase[i] = sum of the pitch up to sample i: advance step * (1 + glide * j) at sample j
    advance = accumulate(repeat(step * glide, length - 1), initial=step)
    phase = list(accumulate(advance))
    voice: Iterable[float] = repeat(0.0, length)
    for k in range(1, rng.randint(4, 6) + 1):
        if k * f0_start * 1.2 < rate / 2:
            amplitude = rng.uniform(0.3, 1.0) / k
            harmonic = map(sin, map(mul, phase, repeat(float(k))))
            voice = map(add, voice, map(mul, harmonic, repeat(amplitude)))
    envelope = list(map(sin, accumulate(repeat(math.pi / length, length - 1), initial=0.0)))
    loud = map(add, voice, _noise(rng, length, 0.05))
    return map(mul, map(mul, loud, envelope), envelope)


def _noise(rng: random.Random, count: int, rms: float) -> Iterator[float]:
    """``count`` samples of white noise at ``rms``: uniform, from ``rng``'s random bytes."""
    raw = array("h")
    raw.frombytes(rng.randbytes(2 * count))
    return map(mul, raw, repeat(rms * math.sqrt(3.0) / 32768.0))  # uniform: rms = half-width/√3
