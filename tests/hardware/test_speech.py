"""The simulated microphone's signals: pure in the sample index, speech-like, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware._speech import LoopedWav, SpeechLike

RATE = 16000
SHIFT_8H = 8 * 3600 * RATE
SPEECH = SpeechLike(RATE, seed=0)


def dbfs(x: np.ndarray[tuple[int, ...], np.dtype[np.float64]]) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) / 32767 + 1e-12))


def test_same_seed_same_signal_other_seed_other_signal() -> None:
    again = SpeechLike(RATE, seed=0)
    np.testing.assert_array_equal(again.render(12345, 40000), SPEECH.render(12345, 40000))
    other = SpeechLike(RATE, seed=1).render(0, 5 * RATE)
    assert not np.array_equal(other, SPEECH.render(0, 5 * RATE))


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, SHIFT_8H),
    count=st.integers(0, 3 * RATE),
    back=st.integers(0, 40 * RATE),
)
def test_render_is_a_pure_function_of_the_index(start: int, count: int, back: int) -> None:
    back = min(back, start)
    wide = SPEECH.render(start - back, count + back)
    np.testing.assert_array_equal(SPEECH.render(start, count), wide[back:])


def test_chunked_rendering_equals_one_shot_across_the_loop_point() -> None:
    start = 2 * SPEECH.loop_samples - 1000  # spans a wrap of the loop table
    whole = SPEECH.render(start, 3 * RATE)
    pieces = [SPEECH.render(i, 320) for i in range(start, start + 3 * RATE, 320)]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    np.testing.assert_array_equal(
        SPEECH.render(7, 500), SPEECH.render(7 + SPEECH.loop_samples, 500)
    )


def test_render_returns_read_only_int16_samples() -> None:
    block = SPEECH.render(100, 10)
    across = SPEECH.render(SPEECH.loop_samples - 5, 10)  # joined across the loop point
    for samples in (block, across):
        assert (samples.format, samples.ndim, len(samples), samples.readonly) == ("h", 1, 10, True)
        with pytest.raises(TypeError):
            samples[0] = 0  # the table is shared: no caller can change what others play
    assert any(SPEECH.render(100, 10).tolist())
    with pytest.raises(ValueError, match="negative"):
        SPEECH.render(0, -1)


def test_rendering_more_than_the_loop_repeats_it() -> None:
    size = SPEECH.loop_samples
    block = SPEECH.render(size - 3, 2 * size + 6)
    table = SPEECH.render(0, size).tolist()
    assert block.tolist() == [*table[-3:], *table, *table, *table[:3]]


def test_level_is_about_minus_20_dbfs_with_pauses_and_a_voice_pitch() -> None:
    x = np.asarray(SPEECH.render(0, SPEECH.loop_samples), np.int16).astype(np.float64)
    assert -23.0 < dbfs(x) < -17.0
    assert np.abs(x).max() < 32767  # not clipped

    frames = x[: len(x) // 320 * 320].reshape(-1, 320)  # 20 ms
    frame_db = np.array([dbfs(f) for f in frames])
    quiet = float(np.mean(frame_db < -40.0))
    assert 0.15 < quiet < 0.7, "speech has pauses, but is not mostly silence"
    assert frame_db.min() > -70.0, "the pauses carry some room noise"

    # the loudest 40 ms frames are voiced: their autocorrelation peaks at a 85–300 Hz pitch
    long = x[: len(x) // 640 * 640].reshape(-1, 640)
    energy = (long * long).mean(axis=1)
    pitches = []
    for loud in long[energy > np.percentile(energy, 80)]:
        frame = loud - loud.mean()
        ac = np.correlate(frame, frame, "full")[len(frame) - 1 :]
        lo, hi = RATE // 400, RATE // 60
        pitches.append(RATE / (lo + int(np.argmax(ac[lo:hi]))))
    in_range = np.mean((np.array(pitches) > 85) & (np.array(pitches) < 300))
    assert in_range > 0.9


def test_looped_wav_repeats_the_file(tmp_path: Path) -> None:
    content = np.asarray(SpeechLike(RATE, seed=5).render(0, 12345), np.int16)
    path = tmp_path / "voice.wav"
    sf.write(str(path), content, RATE, subtype="PCM_16", format="WAV")
    looped = LoopedWav(path, RATE)
    assert looped.sample_rate == RATE
    np.testing.assert_array_equal(looped.render(0, 12345), content)
    block = looped.render(12345 * 3 - 45, 100)  # across the loop point
    np.testing.assert_array_equal(block, np.concatenate([content[-45:], content[:55]]))


@pytest.mark.parametrize(
    ("rate", "channels", "subtype", "file_format", "found"),
    [
        (8000, 1, "PCM_16", "WAV", "8000 Hz"),
        (RATE, 2, "PCM_16", "WAV", "2 channel(s)"),
        (RATE, 1, "FLOAT", "WAV", "FLOAT"),
        (RATE, 1, "PCM_16", "FLAC", "FLAC"),
    ],
)
def test_looped_wav_names_what_does_not_fit(
    tmp_path: Path, *, rate: int, channels: int, subtype: str, file_format: str, found: str
) -> None:
    path = tmp_path / "bad.audio"
    shape = (rate // 10, channels) if channels > 1 else (rate // 10,)
    sf.write(str(path), np.zeros(shape, np.float64), rate, subtype=subtype, format=file_format)
    with pytest.raises(ValueError) as err:
        LoopedWav(path, RATE)
    message = str(err.value)
    assert str(path) in message
    assert found in message
    assert f"need a 16-bit PCM mono WAV at {RATE} Hz" in message


def test_looped_wav_rejects_missing_garbage_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.wav"):
        LoopedWav(tmp_path / "missing.wav", RATE)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(ValueError, match=r"garbage\.wav: not a readable audio file"):
        LoopedWav(garbage, RATE)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, np.int16), RATE, subtype="PCM_16", format="WAV")
    with pytest.raises(ValueError, match="no samples"):
        LoopedWav(empty, RATE)
