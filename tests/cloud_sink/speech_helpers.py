"""Speech for the transcription tests: espeak-ng sentences as 16 kHz WAV clips, stored in a sink
database the way ingest stores a device's clip (contact message, chunks, verified assembly)."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cloud_sink.ingest import Ingest
from cloud_sink.speech.engines import read_clip
from tests.cloud_sink.helpers import Clip, contact_message, encode, new_id, topic

RATE = 16_000


def speak(text: str, tmp: Path) -> npt.NDArray[np.int16]:
    """``text`` spoken by espeak-ng (American English), as 16 kHz int16 samples."""
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is not installed: scripts/test installs the 'espeak-ng' package"
    out = tmp / "spoken.wav"
    subprocess.run(
        [espeak, "-v", "en-us", "-s", "140", "-w", str(out), text], check=True, timeout=60
    )
    return read_clip(out)


def silence(seconds: float) -> npt.NDArray[np.int16]:
    return np.zeros(int(seconds * RATE), np.int16)


def wav_bytes(samples: npt.NDArray[np.int16]) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def store_clip(ingest: Ingest, data: bytes, clip_id: str | None = None) -> str:
    """A contact announcing ``data`` as its WAV clip, then the clip in chunks, assembled and
    verified as ``sink run`` does; the contact's (= clip's) id. The golden contact starts 3 s
    into its clip."""
    clip = Clip(data, chunk_size=64 * 1024, clip_id=clip_id)
    ingest.handle(topic("contact"), encode(contact_message(clip=clip, msg_id=new_id())))
    ready = None
    for seq in range(clip.total):
        ready = ingest.handle(topic("clip"), clip.frame(seq)).ready or ready
    assert ready is not None
    assert ingest.assemble(ready)
    return clip.id


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance / words in the reference."""
    ref, hyp = reference.lower().split(), hypothesis.lower().split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))
