"""Writing finished clips to disk, atomically.

Rules:

- Formats: ``wav`` = RIFF WAVE, LPCM 16-bit mono; ``flac`` = FLAC 16-bit mono; ``opus`` = Ogg/Opus
  (extension ``.opus``, RFC 7845). FLAC and Opus go through ``soundfile`` (libsndfile, imported
  only when one is written); WAV (the default) is its canonical 44-byte header followed by the
  samples' own bytes, written straight from the caller's buffers (the same bytes libsndfile
  writes, without a copy of a long clip: the clipper hands over the ring's own views). Samples
  are any 1-D int16 buffers (:func:`edge.audio.ring.as_samples`); writing WAV needs nothing but
  the standard library, FLAC and Opus load soundfile (and with it numpy).
- Atomic: the clip is written to a hidden temporary file ``.<name>.<random>.partial`` in the same
  directory, flushed and fsynced, renamed over the final name with :func:`os.replace`, and the
  directory is fsynced. A half-written file never appears under the final name; on error the
  temporary file is removed. :func:`cleanup_partials` removes the ones a power loss left behind.
- FLAC and Opus are encoded in memory first; every file is written with plain OS writes, so a
  full disk (or any refused write) is an ``OSError`` with its errno (ENOSPC …), never an error
  from inside the encoder; the temporary file is removed then, and nothing else is left behind.
- The returned checksum is the SHA-256 of the file's bytes as written.
- An empty clip is refused: FLAC and Ogg cannot represent zero samples.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import struct
import sys
import tempfile
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

from contract.crashpoint import crashpoint
from edge.audio.ring import SampleBuffer, Samples, as_samples

Codec = Literal["wav", "flac", "opus"]

CODEC_EXTENSIONS: Final[dict[str, str]] = {"wav": ".wav", "flac": ".flac", "opus": ".opus"}
PARTIAL_SUFFIX: Final = ".partial"

_FORMATS: Final[dict[str, tuple[str, str]]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "opus": ("OGG", "OPUS"),
}
_CHUNK = 1 << 20
_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")  # RIFF, fmt (PCM, 16 bytes), data
_WAV_MAX_DATA = 0xFFFFFFFF - (_WAV_HEADER.size - 8)


def write_clip(
    path: Path, samples: SampleBuffer, sample_rate: int, codec: Codec
) -> tuple[str, int]:
    """Write mono int16 ``samples`` (a 1-D int16 buffer) to ``path``; return (sha256 hex of the
    file, size in bytes)."""
    return write_clip_parts(path, (samples,), sample_rate, codec)


def write_clip_parts(
    path: Path, parts: Sequence[SampleBuffer], sample_rate: int, codec: Codec
) -> tuple[str, int]:
    """:func:`write_clip` of the samples of ``parts`` one after the other (e.g. the two views
    of a clip that wraps around the ring's end): a WAV file is written from them without a
    copy; FLAC and Opus join them first (the encoder wants one array)."""
    if codec not in _FORMATS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {sorted(_FORMATS)}")
    blocks = [as_samples(block) for block in parts]  # TypeError unless 1-D int16
    if sum(len(block) for block in blocks) == 0:
        raise ValueError(f"refusing to write an empty clip to {path}")
    if codec == "wav":
        pieces = _wav(blocks, sample_rate)
    else:
        pieces = (_encode(b"".join(blocks), sample_rate, codec),)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=directory)
    try:
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                for piece in pieces:
                    _write_all(f, piece)
                crashpoint("clip.write")  # fault tests only: a no-op unless armed
                os.fsync(f.fileno())
        except OSError:
            crashpoint("clip.write.failed")  # fault tests only: power lost on a full disk
            raise
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(directory)
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return digest.hexdigest(), sum(len(piece) for piece in pieces)


def _wav(blocks: Sequence[Samples], sample_rate: int) -> tuple[memoryview, ...]:
    """A WAV file as pieces: its 44-byte header and the samples' bytes, views of ``blocks``
    (little-endian; copied only on a big-endian machine)."""
    if sys.byteorder != "little":
        blocks = [memoryview(_little_endian(block)) for block in blocks]
    size = sum(block.nbytes for block in blocks)
    if size > _WAV_MAX_DATA:
        raise ValueError(
            f"a clip of {size // 2} samples is too long for a WAV file (at most "
            f"{_WAV_MAX_DATA // 2}); cut it shorter or use codec 'flac'"
        )
    header = _WAV_HEADER.pack(
        b"RIFF",
        size + _WAV_HEADER.size - 8,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        size,
    )  # fmt: PCM, mono, rate, bytes per second, block align, bits per sample
    return (
        memoryview(header),
        *(block.cast("B") for block in blocks if block.nbytes),
    )


def _little_endian(block: Samples) -> array[int]:
    """A copy of native int16 ``block`` with its bytes swapped (on a big-endian machine)."""
    out = array("h")
    out.frombytes(block.cast("B"))
    out.byteswap()
    return out


def load_encoder(codec: Codec) -> None:
    """Import what writing ``codec`` needs now (soundfile for FLAC and Opus; WAV needs nothing),
    so that a missing library stops the start naming it rather than failing every clip."""
    if codec != "wav":
        import soundfile  # noqa: F401 - imported for its side effect: it is there


def _encode(block: bytes, sample_rate: int, codec: Codec) -> memoryview:
    """The whole file in memory. libsndfile reports a failed write to a file only as a short
    count (soundfile turns that into an AssertionError and the OSError into an "exception
    ignored" warning), so the encoder never touches the disk; :func:`_write_all` does."""
    import numpy as np  # soundfile's own dependency: loaded with it, only for FLAC or Opus
    import soundfile as sf  # libsndfile: loaded only by a device that encodes FLAC or Opus

    file_format, subtype = _FORMATS[codec]
    buffer = io.BytesIO()
    with sf.SoundFile(
        buffer, "w", samplerate=sample_rate, channels=1, subtype=subtype, format=file_format
    ) as out:
        out.write(np.frombuffer(block, np.int16))  # native int16, as the ring holds it
    return buffer.getbuffer()


def _write_all(f: io.FileIO, data: memoryview) -> None:
    """Write every byte (a short write is retried; ENOSPC and the like raise OSError)."""
    done = 0
    while done < len(data):
        written = f.write(data[done : done + _CHUNK])
        if not written:
            raise OSError(errno.EIO, f"write returned {written!r}", f.name)
        done += written


def cleanup_partials(directory: Path) -> int:
    """Remove temporary clip files left by an interrupted write; return how many."""
    if not directory.is_dir():
        return 0
    removed = 0
    for entry in directory.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
