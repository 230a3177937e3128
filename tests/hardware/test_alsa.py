"""The ALSA microphone and prompt player against real pyalsaaudio PCMs (``type file`` devices).

No sound card is needed: see ``alsa_fixtures`` for the ALSA facts these tests rely on. Timing
tests use a real-time FIFO feeder and derive their bounds from measured times; exact index and
time bookkeeping uses a stepped clock advanced by the reads themselves.
"""

from __future__ import annotations

import itertools
import os
import select
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import alsaaudio
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from hardware._api import AudioPeriod, DeviceFault, HardwareEvent
from hardware.alsa import AlsaMicrophone, PromptPlayer
from tests.hardware.alsa_fixtures import (
    NS,
    FifoFeeder,
    ScriptedPCM,
    SteppedClock,
    capture_pcm,
    playback_pcm,
    use_alsa_config,
)
from tests.waiting import STALL_S

WAIT_S = STALL_S  # a bound for what should happen promptly: returns when it does

Samples = npt.NDArray[np.int16]  # what the tests feed the devices


class Collector:
    """A sink recording events with the monotonic time they arrived."""

    def __init__(self) -> None:
        self.events: list[HardwareEvent] = []
        self.arrived: list[int] = []
        self._cond = threading.Condition()

    def __call__(self, event: HardwareEvent) -> None:
        with self._cond:
            self.events.append(event)
            self.arrived.append(time.monotonic_ns())
            self._cond.notify_all()

    def wait_for(self, done: Callable[[list[HardwareEvent]], bool]) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: done(self.events), WAIT_S), "timed out"

    def periods(self) -> list[AudioPeriod]:
        with self._cond:
            return [e for e in self.events if isinstance(e, AudioPeriod)]

    def faults(self) -> list[DeviceFault]:
        with self._cond:
            return [e for e in self.events if isinstance(e, DeviceFault)]


def n_periods(count: int) -> Callable[[list[HardwareEvent]], bool]:
    return lambda events: sum(isinstance(e, AudioPeriod) for e in events) >= count


def wait_until(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def random_samples(count: int, seed: int) -> Samples:
    return np.random.default_rng(seed).integers(-32768, 32767, count, dtype=np.int16)


@pytest.fixture
def mics() -> Iterator[list[AlsaMicrophone]]:
    """Microphones made by a test, stopped at its end whatever happened."""
    made: list[AlsaMicrophone] = []
    yield made
    for mic in made:
        mic.stop()


def raw_mic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, samples: Samples) -> tuple[Path, str]:
    """A capture PCM ``rawmic`` reading ``samples`` from a regular file."""
    raw = tmp_path / "in.raw"
    samples.astype("<i2").tofile(raw)
    conf = tmp_path / "asound.conf"
    conf.write_text(capture_pcm("rawmic", raw))
    use_alsa_config(monkeypatch, conf)
    return conf, "rawmic"


# -- capture: bookkeeping --------------------------------------------------------------------------


def test_capture_is_bit_exact_and_contiguous_from_a_regular_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mics: list[AlsaMicrophone]
) -> None:
    source = random_samples(60 * 320, seed=1)
    _, device = raw_mic(monkeypatch, tmp_path, source)
    sink = Collector()
    mic = AlsaMicrophone(device, sample_rate=16000, period_frames=320)
    mics.append(mic)
    mic.start(sink)
    sink.wait_for(n_periods(60))
    mic.stop()

    periods = sink.periods()
    assert [p.start_index for p in periods[:60]] == [k * 320 for k in range(60)]
    assert {len(p.samples) for p in periods} == {320}
    # int16 views of the bytes ALSA returned, not copies
    assert all((p.samples.format, p.samples.readonly) == ("h", True) for p in periods)
    np.testing.assert_array_equal(np.concatenate([p.samples for p in periods[:60]]), source)
    assert sink.faults() == []
    assert mic.status.gaps == 0
    assert mic.status.state == "stopped"


@pytest.mark.parametrize(("rate", "frames"), [(8000, 160), (16000, 320), (16000, 256)])
def test_period_size_indices_and_stamps(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    mics: list[AlsaMicrophone],
    rate: int,
    frames: int,
) -> None:
    source = random_samples(20 * frames, seed=rate + frames)
    _, device = raw_mic(monkeypatch, tmp_path, source)
    clock = SteppedClock()
    t0 = clock.now
    monkeypatch.setattr(alsaaudio, "PCM", ScriptedPCM(clock, rate, {}).factory())
    sink = Collector()
    mic = AlsaMicrophone(device, sample_rate=rate, period_frames=frames, clock=clock)
    mics.append(mic)
    mic.start(sink)
    sink.wait_for(n_periods(20))
    mic.stop()

    periods = sink.periods()[:20]
    assert [len(p.samples) for p in periods] == [frames] * 20
    assert [p.start_index for p in periods] == [k * frames for k in range(20)]
    # each read returns one period's duration after the previous: t_ns is the first sample's time
    assert [p.t_ns for p in periods] == [t0 + k * frames * NS // rate for k in range(20)]
    np.testing.assert_array_equal(np.concatenate([p.samples for p in periods]), source)


def test_rejects_rates_other_than_8_and_16_khz() -> None:
    with pytest.raises(ValueError, match="8000"):
        AlsaMicrophone("default", sample_rate=44100)


# -- capture: loss ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lost_ms", [30, 250])
def test_overrun_advances_the_index_by_the_audio_lost(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mics: list[AlsaMicrophone], lost_ms: int
) -> None:
    # 30 ms is less than the ALSA buffer (80 ms): only the overrun report reveals that loss.
    rate, frames = 16000, 320
    _, device = raw_mic(monkeypatch, tmp_path, random_samples(40 * frames, seed=2))
    clock = SteppedClock()
    script = ScriptedPCM(clock, rate, {5: ("overrun", lost_ms * NS // 1000)})
    monkeypatch.setattr(alsaaudio, "PCM", script.factory())
    sink = Collector()
    mic = AlsaMicrophone(device, sample_rate=rate, period_frames=frames, clock=clock)
    mics.append(mic)
    mic.start(sink)
    sink.wait_for(n_periods(10))
    mic.stop()

    lost = lost_ms * rate // 1000
    starts = [p.start_index for p in sink.periods()[:10]]
    assert starts == [k * frames for k in range(5)] + [k * frames + lost for k in range(5, 10)]
    status = mic.status
    assert (status.overruns, status.gaps, status.samples_lost) == (1, 1, lost)
    assert sink.faults() == []  # an overrun is a gap, not a device failure


def test_a_stalled_real_time_source_shows_as_a_forward_jump(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mics: list[AlsaMicrophone]
) -> None:
    rate, frames, pause_s = 16000, 320, 0.5
    feeder = FifoFeeder(tmp_path / "mic.fifo", rate, frames)
    conf = tmp_path / "asound.conf"
    conf.write_text(capture_pcm("fifomic", tmp_path / "mic.fifo"))
    use_alsa_config(monkeypatch, conf)
    sink = Collector()
    mic = AlsaMicrophone("fifomic", sample_rate=rate, period_frames=frames)
    mics.append(mic)
    try:
        mic.start(sink)
        feeder.start()
        sink.wait_for(n_periods(10))
        feeder.pause(pause_s)
        sink.wait_for(n_periods(20))
        mic.stop()
    finally:
        feeder.close()

    periods = sink.periods()
    starts = [p.start_index for p in periods]
    assert all(b > a for a, b in itertools.pairwise(starts))
    # every sample holds the number of the feeder's period: where it truly belongs on the timeline
    offsets = [p.start_index - int(p.samples[0]) * frames for p in periods]
    numbers = [int(p.samples[0]) for p in periods]
    skipped = [b - a for a, b in itertools.pairwise(numbers) if b - a > 1]
    assert skipped == [int(pause_s * rate) // frames + 1]  # the feeder did lose its pause
    tolerance = rate * 60 // 1000  # 60 ms of scheduling jitter
    assert max(offsets) - min(offsets) <= tolerance  # the index jumped by the audio lost
    assert mic.status.gaps == 1
    assert abs(mic.status.samples_lost - (skipped[0] - 1) * frames) <= tolerance


# -- capture: device gone --------------------------------------------------------------------------


def test_missing_device_is_reported_retried_and_recovered_with_the_index_advanced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mics: list[AlsaMicrophone]
) -> None:
    rate, frames = 16000, 320
    raw = tmp_path / "in.raw"
    random_samples(40 * frames, seed=3).tofile(raw)
    later = tmp_path / "later.conf"  # defines the device once it exists
    use_alsa_config(monkeypatch, later)
    sink = Collector()
    mic = AlsaMicrophone("latemic", sample_rate=rate, period_frames=frames, reopen_interval_s=0.02)
    mics.append(mic)
    before_start = time.monotonic_ns()
    mic.start(sink)
    after_start = time.monotonic_ns()
    wait_until(lambda: mic.status.failed_opens >= 3)
    assert mic.status.state == "reconnecting"
    [gone] = sink.faults()  # one report per outage, not one per attempt
    assert (gone.part, gone.ok) == ("microphone", False)
    assert "latemic" in gone.detail
    assert sink.periods() == []

    before_write = time.monotonic_ns()
    later.write_text(capture_pcm("latemic", raw))
    sink.wait_for(n_periods(3))
    mic.stop()

    kinds = [(type(e).__name__, getattr(e, "ok", None)) for e in sink.events[:3]]
    assert kinds == [("DeviceFault", False), ("DeviceFault", True), ("AudioPeriod", None)]
    first = sink.periods()[0]
    arrived = sink.arrived[2]
    # index 0 was due at start(); the first period ends when its read returned
    lowest = (before_write - after_start) * rate // NS - frames - 1
    highest = (arrived - before_start) * rate // NS - frames + 1
    assert lowest <= first.start_index <= highest
    status = mic.status
    assert (status.reconnects, status.gaps, status.samples_lost) == (1, 1, first.start_index)


def test_unplugged_mid_stream_reopens_and_advances_by_the_time_gone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mics: list[AlsaMicrophone]
) -> None:
    rate, frames, gone_s = 16000, 320, 2
    _, device = raw_mic(monkeypatch, tmp_path, random_samples(40 * frames, seed=4))
    clock = SteppedClock()
    script = ScriptedPCM(clock, rate, {4: ("unplug", gone_s * NS)})
    monkeypatch.setattr(alsaaudio, "PCM", script.factory())
    sink = Collector()
    mic = AlsaMicrophone(
        device, sample_rate=rate, period_frames=frames, clock=clock, reopen_interval_s=0.01
    )
    mics.append(mic)
    mic.start(sink)
    sink.wait_for(n_periods(8))
    mic.stop()

    kinds = [e.ok if isinstance(e, DeviceFault) else type(e).__name__ for e in sink.events[:8]]
    assert kinds == ["AudioPeriod"] * 4 + [False, True] + ["AudioPeriod"] * 2
    starts = [p.start_index for p in sink.periods()[:6]]
    gap = gone_s * rate
    assert starts == [k * frames for k in range(4)] + [k * frames + gap for k in range(4, 6)]
    assert mic.status.reconnects == 1
    assert mic.status.failed_opens == 0  # it came back at the first reopen


# -- capture: stopping -----------------------------------------------------------------------------


def test_stop_is_bounded_while_a_read_is_blocked_on_a_stalled_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rate, frames = 16000, 320
    feeder = FifoFeeder(tmp_path / "mic.fifo", rate, frames)
    conf = tmp_path / "asound.conf"
    conf.write_text(capture_pcm("fifomic", tmp_path / "mic.fifo"))
    use_alsa_config(monkeypatch, conf)
    sink = Collector()
    mic = AlsaMicrophone("fifomic", sample_rate=rate, period_frames=frames, stop_timeout_s=0.2)
    try:
        mic.start(sink)
        feeder.start()
        sink.wait_for(n_periods(3))
        feeder.stall()
        time.sleep(0.1)  # the capture thread is now blocked inside snd_pcm_readi
        began = time.monotonic()
        mic.stop()
        assert time.monotonic() - began < 1.0
        assert mic.status.state == "stopping"
        seen = len(sink.events)
        feeder.write_one()  # the blocked read returns; the thread must end without emitting
        wait_until(lambda: mic.status.state == "stopped")
        assert len(sink.events) == seen
    finally:
        feeder.close()


def test_stop_is_prompt_while_waiting_to_reopen(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_alsa_config(monkeypatch, tmp_path / "absent.conf")
    mic = AlsaMicrophone("nosuchmic", reopen_interval_s=30)
    mic.start(Collector())
    wait_until(lambda: mic.status.failed_opens >= 1)
    began = time.monotonic()
    mic.stop()
    assert time.monotonic() - began < 1.0
    assert mic.status.state == "stopped"


# -- prompts ---------------------------------------------------------------------------------------


def write_wav(path: Path, samples: Samples, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def read_fifo(fd: int, size: int) -> bytes:
    got = b""
    while len(got) < size:
        ready, _, _ = select.select([fd], [], [], WAIT_S)
        assert ready, f"only {len(got)} of {size} bytes arrived"
        got += os.read(fd, size - len(got))
    return got


def test_play_returns_at_once_and_the_prompt_reaches_the_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # 4 s of audio is 128000 bytes: more than a pipe holds, so until this test reads the FIFO
    # the player thread is stuck writing, and play() must already have returned.
    prompt = random_samples(4 * 16000, seed=5)
    wav = tmp_path / "thanks.wav"
    write_wav(wav, prompt, 16000)
    other = tmp_path / "other.wav"
    write_wav(other, random_samples(1600, seed=6), 16000)
    out = tmp_path / "speaker.fifo"
    os.mkfifo(out)
    fd = os.open(out, os.O_RDWR | os.O_NONBLOCK)
    conf = tmp_path / "asound.conf"
    conf.write_text(playback_pcm("spk", out))
    use_alsa_config(monkeypatch, conf)
    player = PromptPlayer("spk")
    try:
        caller = threading.Thread(target=player.play, args=(wav,))
        caller.start()
        caller.join(1.0)
        assert not caller.is_alive(), "play() blocked until the device took the whole prompt"
        assert player.is_playing
        player.play(other)  # still playing: dropped
        assert player.dropped == 1
        played = read_fifo(fd, prompt.nbytes)
        np.testing.assert_array_equal(np.frombuffer(played, dtype="<i2"), prompt)
        wait_until(lambda: not player.is_playing)
        assert select.select([fd], [], [], 0.1)[0] == []  # the dropped prompt never played
        assert (player.played, player.failed) == (1, 0)
    finally:
        player.close()
        os.close(fd)


def test_stereo_8_khz_prompt_is_written_sample_for_sample(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prompt = random_samples(2 * 3001, seed=7)  # interleaved L/R, an odd number of frames
    wav = tmp_path / "stereo.wav"
    write_wav(wav, prompt, 8000, channels=2)
    out = tmp_path / "speaker.raw"
    conf = tmp_path / "asound.conf"
    conf.write_text(playback_pcm("spk", out))
    use_alsa_config(monkeypatch, conf)
    player = PromptPlayer("spk")
    player.play(wav)
    wait_until(lambda: not player.is_playing)
    player.close()
    np.testing.assert_array_equal(np.fromfile(out, dtype="<i2"), prompt)
    assert player.played == 1


def bad_wavs(tmp_path: Path) -> Iterator[Path]:
    eight = tmp_path / "eight.wav"
    with wave.open(str(eight), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(bytes(800))
    yield eight
    floats = tmp_path / "float.wav"
    sf.write(floats, np.zeros(800, dtype=np.float32), 16000, subtype="FLOAT")
    yield floats
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    yield text


def test_a_prompt_that_is_not_16_bit_pcm_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "speaker.raw"
    conf = tmp_path / "asound.conf"
    conf.write_text(playback_pcm("spk", out))
    use_alsa_config(monkeypatch, conf)
    player = PromptPlayer("spk")
    for path in bad_wavs(tmp_path):
        with pytest.raises(ValueError, match="16-bit PCM") as err:
            player.play(path)
        assert path.name in str(err.value)
        assert not player.is_playing
    player.close()
    assert not out.exists()  # the device was never opened


def test_a_missing_playback_device_is_counted_not_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_alsa_config(monkeypatch, tmp_path / "absent.conf")
    wav = tmp_path / "thanks.wav"
    write_wav(wav, random_samples(160, seed=8), 16000)
    player = PromptPlayer("nosuchspeaker")
    player.play(wav)
    wait_until(lambda: not player.is_playing)
    player.close()
    assert (player.played, player.failed) == (0, 1)
    assert player.last_error is not None
    assert "thanks.wav" in player.last_error
