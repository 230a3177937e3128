"""Recordings for the import tests: speech-like audio (hardware/_speech.py) with a little seeded
noise (so no two seconds are alike and a clip's place in its source is unambiguous), written
as plain WAV or as Broadcast WAV with a ``bext`` chunk."""

from __future__ import annotations

import io
import os
import struct
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from hardware._speech import SpeechLike

Samples = npt.NDArray[np.int16]


def speech(seconds: float, rate: int = 16000, seed: int = 0) -> Samples:
    count = round(seconds * rate)
    voice = np.asarray(SpeechLike(rate, seed=seed).render(0, count), np.int16).astype(np.int32)
    noise = np.random.default_rng(seed + 1000).integers(-300, 300, count)
    mixed: Samples = np.clip(voice + noise, -32768, 32767).astype(np.int16)
    return mixed


def write_wav(path: Path, samples: Samples, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate, subtype="PCM_16")
    return path


def bext_chunk(local_start: datetime, rate: int, *, time_reference: bool = True) -> bytes:
    """A ``bext`` chunk saying the recording started at ``local_start`` (naive, local time):
    OriginationDate/Time, and TimeReference in samples since midnight."""
    body = bytearray(602)
    body[320:330] = local_start.strftime("%Y-%m-%d").encode()
    body[330:338] = local_start.strftime("%H:%M:%S").encode()
    midnight = local_start.replace(hour=0, minute=0, second=0, microsecond=0)
    ref = round((local_start - midnight).total_seconds() * rate) if time_reference else 0
    body[338:346] = struct.pack("<II", ref & 0xFFFFFFFF, ref >> 32)
    body[346:348] = struct.pack("<H", 1)
    return b"bext" + struct.pack("<I", len(body)) + bytes(body)


def write_bwf(path: Path, samples: Samples, local_start: datetime, rate: int = 16000) -> Path:
    """A Broadcast WAV: the WAV soundfile writes, with a bext chunk before its data."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    raw = buffer.getvalue()
    at = raw.index(b"data")
    chunk = bext_chunk(local_start, rate)
    body = raw[12:at] + chunk + raw[at:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    return path


def set_mtime(path: Path, wall_s: float) -> None:
    os.utime(path, (wall_s, wall_s))
