"""Clip files: every codec readable back, checksums of the bytes, atomic writes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge.audio import CODEC_EXTENSIONS, PARTIAL_SUFFIX, Codec, cleanup_partials, write_clip
from hardware._speech import SpeechLike
from tests.fullfs import fill, small_tmpfs

RATE = 16000
PERIOD = 320
CODECS: list[Codec] = ["wav", "flac", "opus"]


@pytest.fixture(scope="module")
def speech() -> np.ndarray[tuple[int], np.dtype[np.int16]]:
    return np.array(SpeechLike(RATE, seed=3).render(5 * RATE, 3 * RATE))


@pytest.mark.parametrize(
    ("codec", "file_format", "subtype"),
    [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("opus", "OGG", "OPUS")],
)
def test_each_codec_writes_a_file_soundfile_reads_back(
    tmp_path: Path,
    speech: np.ndarray[tuple[int], np.dtype[np.int16]],
    codec: Codec,
    file_format: str,
    subtype: str,
) -> None:
    path = tmp_path / "clips" / f"c1{CODEC_EXTENSIONS[codec]}"
    digest, size = write_clip(path, speech.data, RATE, codec)

    data = path.read_bytes()
    assert digest == hashlib.sha256(data).hexdigest()
    assert size == len(data)
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.channels, info.samplerate) == (
        file_format,
        subtype,
        1,
        RATE,
    )
    back, rate = sf.read(str(path), dtype="int16")
    assert rate == RATE
    if codec == "opus":
        assert abs(len(back) - len(speech)) <= PERIOD
        assert np.sqrt(np.mean(back.astype(np.float64) ** 2)) > 300  # about -40 dBFS: not silent
    else:
        np.testing.assert_array_equal(back, speech)
    assert os.listdir(path.parent) == [path.name]  # no temporary file left


def test_wav_is_plain_lpcm_of_the_expected_size(
    tmp_path: Path, speech: np.ndarray[tuple[int], np.dtype[np.int16]]
) -> None:
    _, size = write_clip(tmp_path / "a.wav", speech.data, RATE, "wav")
    assert size == 44 + 2 * len(speech)  # RIFF header + 16-bit mono samples


def test_failed_rename_leaves_nothing_under_the_final_name(
    tmp_path: Path,
    speech: np.ndarray[tuple[int], np.dtype[np.int16]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(src: str, dst: str) -> None:
        raise OSError("disk pulled")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk pulled"):
        write_clip(tmp_path / "c.flac", speech.data, RATE, "flac")
    assert os.listdir(tmp_path) == []


def test_failure_while_encoding_keeps_the_previous_file_intact(
    tmp_path: Path,
    speech: np.ndarray[tuple[int], np.dtype[np.int16]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (WAV has no encoder: its header and samples are written as they are)
    path = tmp_path / "c.flac"
    old_digest, _ = write_clip(path, speech.data, RATE, "flac")

    def fail(self: sf.SoundFile, data: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(sf.SoundFile, "write", fail)
    with pytest.raises(OSError, match="no space"):
        write_clip(path, speech[:100].data, RATE, "flac")
    assert os.listdir(tmp_path) == [path.name]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == old_digest


def test_cleanup_removes_only_partials(tmp_path: Path) -> None:
    (tmp_path / f".c1.wav.k2j3{PARTIAL_SUFFIX}").write_bytes(b"RIFF")
    (tmp_path / f".c2.opus.x9{PARTIAL_SUFFIX}").write_bytes(b"")
    (tmp_path / "c3.wav").write_bytes(b"RIFF")
    (tmp_path / f"c4{PARTIAL_SUFFIX}").write_bytes(b"")  # not one of ours: not hidden
    assert cleanup_partials(tmp_path) == 2
    assert sorted(os.listdir(tmp_path)) == ["c3.wav", f"c4{PARTIAL_SUFFIX}"]
    assert cleanup_partials(tmp_path / "missing") == 0


def test_a_temporary_left_by_power_loss_is_cleaned_up(
    tmp_path: Path,
    speech: np.ndarray[tuple[int], np.dtype[np.int16]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_clip(tmp_path / "c.wav", speech.data, RATE, "wav")
    assert len(seen) == 1
    # power lost before the rename: the temporary file survives under its own name
    (tmp_path / seen[0]).write_bytes(b"RIFF half")
    assert cleanup_partials(tmp_path) == 1
    assert os.listdir(tmp_path) == ["c.wav"]


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        write_clip(tmp_path / "e.wav", np.zeros(0, np.int16).data, RATE, "wav")
    with pytest.raises(TypeError, match="int16"):
        write_clip(tmp_path / "f.wav", np.zeros(10, np.float32).data, RATE, "wav")
    with pytest.raises(ValueError, match="codec"):
        write_clip(tmp_path / "g.mp3", np.zeros(10, np.int16).data, RATE, "mp3")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("codec", CODECS)
def test_a_real_full_filesystem_raises_enospc_and_leaves_no_file(
    tmp_path: Path, speech: np.ndarray[tuple[int], np.dtype[np.int16]], codec: Codec
) -> None:
    """libsndfile reports a failed write as a short count (soundfile: AssertionError, and the
    OSError only as an "exception ignored" warning): the daemon's disk-full path never ran."""
    clip = np.tile(speech, 6)  # 30 s: more than the room left, in every codec
    with small_tmpfs(tmp_path / "fs", 1 << 20) as fs:
        filler = fill(fs, 8192)
        path = fs / "clips" / f"c1{CODEC_EXTENSIONS[codec]}"
        with pytest.raises(OSError) as caught:
            write_clip(path, clip.data, RATE, codec)
        assert caught.value.errno == errno.ENOSPC
        assert os.listdir(path.parent) == []  # no clip, no half-written temporary
        filler.unlink()  # room again: the same write succeeds
        digest, size = write_clip(path, clip.data, RATE, codec)
        assert (size, digest) == (
            path.stat().st_size,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        assert os.listdir(path.parent) == [path.name]


_FSIZE_SCRIPT = """
import json, os, resource, signal, sys
from pathlib import Path
import numpy as np
from edge.audio import write_clip
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
directory = Path(sys.argv[1])
try:
    write_clip(directory / "c.wav", np.ones(16000 * 10, np.int16).data, 16000, "wav")
    print(json.dumps({"raised": None}))
except BaseException as exc:
    print(json.dumps({"raised": type(exc).__name__, "errno": getattr(exc, "errno", None)}))
print(json.dumps(sorted(os.listdir(directory))))
"""


def test_a_file_size_limit_fails_the_write_with_an_oserror(tmp_path: Path) -> None:
    """The real write path without privileges: a process file-size limit (RLIMIT_FSIZE) makes
    the OS refuse the write (EFBIG), as a full disk does (ENOSPC)."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _FSIZE_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr
    raised, files = (json.loads(line) for line in done.stdout.splitlines())
    assert raised == {"raised": "OSError", "errno": errno.EFBIG}
    assert files == []  # the temporary file was removed
    assert "Exception ignored" not in done.stderr, done.stderr


def test_a_wav_clip_is_the_bytes_soundfile_would_write(
    tmp_path: Path, speech: np.ndarray[tuple[int], np.dtype[np.int16]]
) -> None:
    import io

    expected = io.BytesIO()
    with sf.SoundFile(
        expected, "w", samplerate=RATE, channels=1, subtype="PCM_16", format="WAV"
    ) as out:
        out.write(speech)
    path = tmp_path / "c.wav"
    digest, size = write_clip(path, speech.data, RATE, "wav")

    assert path.read_bytes() == expected.getvalue()
    assert (digest, size) == (hashlib.sha256(expected.getvalue()).hexdigest(), len(speech) * 2 + 44)


def test_writing_a_wav_clip_holds_no_copy_of_its_samples(tmp_path: Path) -> None:
    import tracemalloc

    samples = np.arange(4 * 2**20, dtype=np.int64).astype(np.int16)  # 8 MiB of samples
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        write_clip(tmp_path / "long.wav", samples.data, RATE, "wav")
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()

    assert peak < samples.nbytes // 8, f"{peak} bytes allocated to write {samples.nbytes}"
    assert np.array_equal(sf.read(str(tmp_path / "long.wav"), dtype="int16")[0], samples)
