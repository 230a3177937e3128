"""Signals for the simulated microphone.

Rules:

- ``render(start_index, count)`` is a pure function of the absolute sample index: the same index
  always gives the same sample, whatever the call pattern, so a test can recompute what any clip
  must contain.
- Both signals are a table computed once and looped: ``render`` is a modular slice of it (two
  slice copies at most), fast enough to feed an 8-hour shift at thousands of times real time.
- :class:`SpeechLike` is synthetic speech: voiced syllables (a 100–250 Hz pitch with a few
  harmonics under a syllable envelope), pauses between words and phrases, a little noise; about
  −20 dBFS RMS. :class:`LoopedWav` loops a 16-bit mono WAV recorded at the capture rate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float64]

LOOP_SECONDS: Final = 24
TARGET_DBFS: Final = -20.0
FULL_SCALE: Final = 32767


class Signal(Protocol):
    """What the simulated microphone plays."""

    sample_rate: int

    def render(self, start_index: int, count: int) -> Samples: ...


class _Loop:
    """A precomputed table served by modular indexing."""

    def __init__(self, table: Samples, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._table = table

    @property
    def loop_samples(self) -> int:
        return len(self._table)

    def render(self, start_index: int, count: int) -> Samples:
        """The samples with absolute indices ``[start_index, start_index + count)``."""
        if count < 0:
            raise ValueError(f"count cannot be negative: {count}")
        size = len(self._table)
        first = start_index % size
        if first + count <= size:
            return self._table[first : first + count].copy()
        return np.take(self._table, np.arange(first, first + count), mode="wrap")


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
        table, _ = sf.read(str(path), dtype="int16")
        if len(table) == 0:
            raise ValueError(f"{path}: the file holds no samples; need {need}")
        super().__init__(np.ascontiguousarray(table, dtype=np.int16), sample_rate)


def _synthesise(rate: int, seed: int, size: int) -> Samples:
    """Syllables and pauses laid end to end, scaled to ``TARGET_DBFS``."""
    rng = np.random.default_rng(seed)
    out: Floats = np.zeros(size, dtype=np.float64)
    pos = int(0.3 * rate)
    # Leave a phrase pause before the wrap so the loop joins in silence.
    limit = size - int(0.6 * rate)
    while (length := int(rng.uniform(0.12, 0.32) * rate)) <= limit - pos:
        out[pos : pos + length] += _syllable(rng, rate, length)
        phrase_end = rng.random() < 0.2
        pause = rng.uniform(0.3, 0.9) if phrase_end else rng.uniform(0.02, 0.15)
        pos += length + int(pause * rate)
    out += rng.normal(0.0, 0.01, size)  # faint room noise, also in the pauses
    rms = math.sqrt(float(np.mean(out * out)))
    out *= FULL_SCALE * 10 ** (TARGET_DBFS / 20) / rms
    return np.clip(np.round(out), -FULL_SCALE, FULL_SCALE).astype(np.int16)


def _syllable(rng: np.random.Generator, rate: int, length: int) -> Floats:
    """One voiced syllable: a gliding pitch, 4–6 harmonics, a rise-and-fall envelope."""
    t = np.arange(length, dtype=np.float64) / rate
    f0_start = rng.uniform(100.0, 250.0)
    f0 = f0_start * (1.0 + rng.uniform(-0.15, 0.15) * t / t[-1])
    phase = 2.0 * np.pi * np.cumsum(f0) / rate
    voice: Floats = np.zeros(length, dtype=np.float64)
    for k in range(1, int(rng.integers(4, 7)) + 1):
        if k * f0_start * 1.2 < rate / 2:
            voice += rng.uniform(0.3, 1.0) / k * np.sin(k * phase)
    envelope = np.sin(np.pi * np.arange(length) / length) ** 2
    breath = rng.normal(0.0, 0.05, length)  # a little aspiration noise in the syllable
    result: Floats = (voice + breath) * envelope
    return result
