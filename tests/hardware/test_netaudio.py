"""Audio from a network stream against real servers on loopback: GStreamer's RTSP server (L16,
lossless) and ffmpeg's HTTP/HTTPS server, killed in the middle of the stream and started again.

The served signal is a ramp (sample ``i`` holds ``i`` mod 2**16), so the audio received is
checked to the sample: nothing lost, doubled or moved inside a connection, and a dropped
connection shows only as a jump of the sample index as long as the time lost.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from gpiozero.pins.mock import MockFactory

import hardware.gpio
from edge.config import Config
from edge.daemon import run_live
from edge.simulate import STORE_NAME
from edge.store import Store
from hardware import (
    AudioPeriod,
    AudioSpec,
    BackendSpec,
    DeviceFault,
    HardwareError,
    HardwareEvent,
    open_backend,
)
from hardware.netaudio import NetworkMicrophone
from provisioning import pki
from provisioning.broker import LocalBroker, free_port
from tests.hardware.stream_servers import (
    HttpWavServer,
    RtspServer,
    ramp,
    ramp_offset,
    write_wav,
)

NS = 1_000_000_000
RATE, FRAMES = 16000, 1600
PERIOD_NS = FRAMES * NS // RATE
WAIT_S = 30.0  # upper bound for anything that should happen within a few seconds


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

    def wait_for(self, done: Callable[[Collector], bool], what: str = "events") -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: done(self), WAIT_S), f"timed out waiting for {what}"

    def periods(self) -> list[tuple[AudioPeriod, int]]:
        """Every period with its arrival time."""
        with self._cond:
            pairs = zip(self.events, self.arrived, strict=True)
            return [(e, t) for e, t in pairs if isinstance(e, AudioPeriod)]

    def faults(self) -> list[DeviceFault]:
        with self._cond:
            return [e for e in self.events if isinstance(e, DeviceFault)]


def periods_at_least(count: int) -> Callable[[Collector], bool]:
    return lambda sink: len(sink.periods()) >= count


def fault(ok: bool) -> Callable[[Collector], bool]:
    return lambda sink: any(f.ok is ok for f in sink.faults())


def wait_until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def mics() -> Iterator[list[NetworkMicrophone]]:
    """Microphones made by a test, stopped at its end whatever happened."""
    made: list[NetworkMicrophone] = []
    yield made
    for mic in made:
        mic.stop()


@pytest.fixture
def ramp_wav(tmp_path: Path) -> Path:
    """Two minutes of the ramp at 16 kHz, mono."""
    return write_wav(tmp_path / "ramp.wav", ramp(120 * RATE), RATE)


def start(mics: list[NetworkMicrophone], url: str, **options: Any) -> Collector:
    sink = Collector()
    mic = NetworkMicrophone(url, sample_rate=options.pop("sample_rate", RATE), **options)
    mics.append(mic)
    mic.start(sink)
    return sink


def audio(pairs: list[tuple[AudioPeriod, int]]) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.concatenate([p.samples for p, _ in pairs])


def split_at_gap(
    pairs: list[tuple[AudioPeriod, int]],
) -> tuple[list[tuple[AudioPeriod, int]], list[tuple[AudioPeriod, int]]]:
    """The periods before and after the one jump of the index (asserted to be the only one)."""
    jumps = [k for k in range(1, len(pairs)) if pairs[k][0].start_index > pairs[k - 1][0].end_index]
    assert len(jumps) == 1, f"jumps at {jumps}"
    return pairs[: jumps[0]], pairs[jumps[0] :]


def lag_s(pair: tuple[AudioPeriod, int]) -> float:
    """How far a period's end arrived behind the sample-index clock's own time (s)."""
    period, arrived = pair
    return arrived / NS - period.end_index / RATE


# -- RTSP ----------------------------------------------------------------------------------------


def test_rtsp_audio_arrives_exact_to_the_sample_on_the_index_clock(
    ramp_wav: Path, mics: list[NetworkMicrophone]
) -> None:
    with RtspServer(ramp_wav) as server:
        sink = start(mics, server.url())
        sink.wait_for(periods_at_least(25), "2.5 s of audio")
        mics[0].stop()
    pairs = sink.periods()
    starts = [p.start_index for p, _ in pairs]
    assert starts == [k * FRAMES for k in range(len(pairs))]  # from 0, no gap, no overlap
    assert {len(p.samples) for p, _ in pairs} == {FRAMES}
    received = audio(pairs)
    # the stream starts when it is asked for: index 0 is its first sample, and every sample
    # after it is the source's sample of the same index
    np.testing.assert_array_equal(received, ramp(len(received)))
    # a period's stamp is its first sample's arrival on the least delay seen: never after the
    # period's actual arrival, and the stamps advance by at most the period's duration
    for period, arrived in pairs:
        assert period.t_ns <= arrived - PERIOD_NS
    steps = [b.t_ns - a.t_ns for (a, _), (b, _) in itertools.pairwise(pairs)]
    assert all(0 < step <= PERIOD_NS for step in steps)
    assert sink.faults() == []
    status = mics[0].status
    assert (status.gaps, status.reconnects, status.state) == (0, 0, "stopped")


def test_rtsp_server_killed_mid_stream_is_a_gap_of_the_time_lost_then_audio_again(
    ramp_wav: Path, mics: list[NetworkMicrophone], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hardware.netaudio")
    with RtspServer(ramp_wav) as server:
        sink = start(mics, server.url(), backoff_min_s=0.1, backoff_max_s=0.4)
        mic = mics[0]
        sink.wait_for(periods_at_least(15), "audio before the kill")
        server.kill()
        killed = time.monotonic_ns()
        sink.wait_for(fault(False), "the fault")
        wait_until(lambda: mic.status.failed_opens >= 3, "reconnect attempts")
        server.start()  # the same port: a camera back after a reboot
        restarted = time.monotonic_ns()
        sink.wait_for(fault(True), "the recovery")
        after = len(sink.periods())
        sink.wait_for(periods_at_least(after + 15), "audio after the recovery")
        mic.stop()

    lost, back = sink.faults()
    assert (lost.ok, back.ok) == (False, True)  # one fault per outage, however many attempts
    assert "lost" in lost.detail
    assert mic.device in lost.detail
    assert killed <= back.t_ns
    assert lost.t_ns <= back.t_ns

    before, after_gap = split_at_gap(sink.periods())
    # each connection's audio is the source's, to the sample: the old server's from its start,
    # the new server's from its own start
    np.testing.assert_array_equal(audio(before), ramp(before[-1][0].end_index))
    np.testing.assert_array_equal(audio(after_gap), ramp(len(audio(after_gap))))

    jump = after_gap[0][0].start_index - before[-1][0].end_index
    status = mic.status
    assert (status.gaps, status.samples_lost, status.reconnects) == (1, jump, 1)
    # the jump is the wall time nothing came: at least while the server was down, at most from
    # the last audio before to the first after
    assert jump >= (restarted - killed) * RATE // NS - FRAMES
    assert jump <= (after_gap[0][1] - before[-1][1]) * RATE // NS + FRAMES
    # so the index stays tied to real time: clips cut after the outage stay aligned
    lag_before = min(lag_s(p) for p in before)
    lag_after = min(lag_s(p) for p in after_gap)
    assert abs(lag_after - lag_before) < 0.3

    # back-off: after a connection that worked the first retry comes soon, then doubles
    delays = [float(m) for m in re.findall(r"next attempt in ([\d.]+) s", caplog.text)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.4]


def test_reconnect_delays_double_up_to_the_maximum(
    mics: list[NetworkMicrophone], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hardware.netaudio")
    sink = start(
        mics, f"rtsp://127.0.0.1:{free_port()}/none", backoff_min_s=0.01, backoff_max_s=0.08
    )
    wait_until(lambda: mics[0].status.failed_opens >= 7, "seven attempts")
    mics[0].stop()
    delays = [float(m) for m in re.findall(r"next attempt in ([\d.]+) s", caplog.text)]
    assert delays[:7] == [0.01, 0.02, 0.04, 0.08, 0.08, 0.08, 0.08]
    (refused,) = sink.faults()  # one fault for the whole outage
    assert not refused.ok
    assert "Connection refused" in refused.detail
    assert mics[0].status.state == "stopped"
    assert sink.periods() == []


# -- HTTP / HTTPS ----------------------------------------------------------------------------------


def test_http_stream_killed_and_served_again(ramp_wav: Path, mics: list[NetworkMicrophone]) -> None:
    with HttpWavServer(ramp_wav) as server:
        sink = start(mics, server.url(), backoff_min_s=0.1, backoff_max_s=0.4)
        mic = mics[0]
        sink.wait_for(periods_at_least(15), "audio before the kill")
        server.kill()
        killed = time.monotonic_ns()
        sink.wait_for(fault(False), "the fault")
        wait_until(lambda: mic.status.failed_opens >= 2, "reconnect attempts")
        server.start()
        restarted = time.monotonic_ns()
        sink.wait_for(fault(True), "the recovery")
        after = len(sink.periods())
        sink.wait_for(periods_at_least(after + 15), "audio after the recovery")
        mic.stop()

    before, after_gap = split_at_gap(sink.periods())
    np.testing.assert_array_equal(audio(before), ramp(before[-1][0].end_index))
    np.testing.assert_array_equal(audio(after_gap), ramp(len(audio(after_gap))))
    jump = after_gap[0][0].start_index - before[-1][0].end_index
    assert mic.status.gaps == 1
    assert mic.status.samples_lost == jump
    assert jump >= (restarted - killed) * RATE // NS - FRAMES
    # at most the time from the last audio before to the first after (which may come in a burst:
    # the client reads ahead while it probes the WAV header)
    assert jump <= (after_gap[0][1] - before[-1][1]) * RATE // NS + FRAMES


@pytest.mark.parametrize(
    ("source_rate", "channels", "rate"), [(48000, 2, 8000), (8000, 1, 16000), (44100, 1, 16000)]
)
def test_any_stream_is_resampled_to_the_configured_rate_mono(
    tmp_path: Path, mics: list[NetworkMicrophone], source_rate: int, channels: int, rate: int
) -> None:
    seconds, tone = 3, 1000.0
    t = np.arange(seconds * source_rate) / source_rate
    wave = np.round(12000 * np.sin(2 * np.pi * tone * t)).astype(np.int16)
    wav = write_wav(tmp_path / "tone.wav", np.repeat(wave, channels), source_rate, channels)
    with HttpWavServer(wav, realtime=False) as server:
        sink = start(mics, server.url(), sample_rate=rate, period_frames=rate // 10)
        sink.wait_for(fault(False), "the end of the stream")  # the file is over: stream lost
        mics[0].stop()
    pairs = sink.periods()
    assert pairs[0][0].start_index == 0
    assert all(b.start_index == a.end_index for (a, _), (b, _) in itertools.pairwise(pairs))
    received = audio(pairs).astype(np.float64)
    assert abs(len(received) - seconds * rate) <= rate // 100  # the same duration at `rate`
    spectrum = np.abs(np.fft.rfft(received))
    peak_hz = np.argmax(spectrum) * rate / len(received)
    assert abs(peak_hz - tone) < 2
    assert np.sqrt(np.mean(received**2)) > 12000 / np.sqrt(2) * 0.5  # not lost in the downmix


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = pki.create_ca(d)
    other = pki.create_ca_cert("some other CA")
    (d / "other-ca.crt").write_bytes(other.cert_pem())
    pki.issue(ca, "camera", server_hosts=("127.0.0.1",)).save(d / "server.crt", d / "server.key")
    return {
        "ca": d / "ca.crt",
        "other": d / "other-ca.crt",
        "cert": d / "server.crt",
        "key": d / "server.key",
    }


def test_https_stream_checked_against_the_ca_file(
    ramp_wav: Path, mics: list[NetworkMicrophone], tls_files: dict[str, Path]
) -> None:
    tls = (tls_files["cert"], tls_files["key"])
    with HttpWavServer(ramp_wav, tls=tls) as server:
        sink = start(mics, server.url(), ca_file=tls_files["ca"])
        sink.wait_for(periods_at_least(5), "audio over TLS")
        mics[0].stop()
    received = audio(sink.periods())
    np.testing.assert_array_equal(received, ramp(len(received)))

    with HttpWavServer(ramp_wav, tls=tls) as server:
        sink = start(mics, server.url(), ca_file=tls_files["other"], backoff_min_s=5)
        sink.wait_for(fault(False), "the refused certificate")
        mics[-1].stop()
    (refused,) = sink.faults()
    assert "cannot open audio stream" in refused.detail
    assert sink.periods() == []


# -- credentials -----------------------------------------------------------------------------------


def test_credentials_never_appear_in_logs_faults_or_errors(
    ramp_wav: Path,
    mics: list[NetworkMicrophone],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = ("Hunter2-Secret", "Wrong-Pa55", "Qu3ry-Token")
    with RtspServer(ramp_wav, user="admin", password="Hunter2-Secret") as server:
        good = start(mics, server.url("admin:Hunter2-Secret@"), backoff_min_s=5)
        good.wait_for(periods_at_least(3), "audio with the right password")  # it reached the server
        bad = start(mics, server.url("admin:Wrong-Pa55@"), backoff_min_s=5)
        bad.wait_for(fault(False), "the refused login")
        server.kill()  # the good one loses its stream: its fault quotes the URL
        good.wait_for(fault(False), "the lost stream")
    refused = start(mics, f"http://127.0.0.1:{free_port()}/a.wav?user=admin&pwd=Qu3ry-Token")
    refused.wait_for(fault(False), "the refused connection")
    for mic in mics:
        mic.stop()

    errors: list[str] = []
    for url in (
        "rtmp://admin:Hunter2-Secret@127.0.0.1/live",
        "rtsp://admin:Hunter2-Secret@127.0.0.1:port/live",
    ):
        with pytest.raises(ValueError) as caught:
            NetworkMicrophone(url)
        errors.append(str(caught.value))
        with pytest.raises(HardwareError) as backend_error:
            open_backend(BackendSpec("pi", audio=AudioSpec(RATE, FRAMES, device=url)))
        errors.append(str(backend_error.value))

    details = [f.detail for sink in (good, bad, refused) for f in sink.faults()]
    out, err = capfd.readouterr()
    texts = [
        *details,
        *errors,
        *(r.getMessage() for r in caplog.records),
        *(str(mic.status) + mic.device for mic in mics),
        out,
        err,
    ]
    leaks = [text for text in texts for secret in secrets if secret in text]
    assert leaks == []
    assert "401 Unauthorized" in bad.faults()[0].detail  # the reason is still told
    assert all("***@127.0.0.1" in d for d in details[:2])
    assert "pwd=***" in refused.faults()[0].detail
    assert len(caplog.records) > 5  # there was something to leak


# -- the whole device ------------------------------------------------------------------------------


def test_a_contact_recorded_from_an_rtsp_camera_has_its_audio_exact_to_the_sample(
    broker: LocalBroker,
    ramp_wav: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The live daemon (backend 'pi') with ``audio.device`` an RTSP URL and a request button on
    gpiozero mock pins: the press cuts a window whose clip is the camera's audio, sample for
    sample, at the clip's own sample indices."""
    factory = MockFactory()
    monkeypatch.setattr(hardware.gpio, "make_pin_factory", lambda *a, **k: factory)
    with RtspServer(ramp_wav, user="cam", password="Cam-Pa55") as server:
        cfg = Config.from_dict(
            {
                "device": {"id": "cp-camera", "site": "shop"},
                "hardware": {"backend": "pi"},
                "mqtt": {"broker": broker.url, "backoff_min_s": 0.05, "backoff_max_s": 0.5},
                "receipts": {"enabled": False},
                "audio": {"device": server.url("cam:Cam-Pa55@"), "sample_rate": RATE},
                "contacts": {
                    "modes": ["window"],
                    "pre_roll_s": 0.5,
                    "post_roll_s": 0.5,
                    "window": {"before_s": 1, "after_s": 1},
                },
                "buttons": [{"name": "request", "role": "request", "pin": 13}],
            }
        )
        stop = threading.Event()
        result: list[object] = []
        daemon = threading.Thread(target=lambda: result.append(run_live(cfg, tmp_path, stop=stop)))
        daemon.start()
        try:
            server.wait_position(3.0)  # the daemon's stream has played 3 s
            pin = factory.pin(13)
            wait_until(lambda: pin.state == 1, "the button's pull-up")
            pin.drive_low()
            time.sleep(0.2)  # held 200 ms of real time: the debouncer measures real edges
            pin.drive_high()
            wait_until(lambda: saved_clips(tmp_path) == 1, "the contact with its clip")
        finally:
            stop.set()
            daemon.join(30)
    assert result, "the daemon did not stop"
    with Store.open(tmp_path / STORE_NAME) as store:
        (contact,) = store.contacts()
    clip = contact.clip
    assert clip is not None
    assert contact.mode == "window"
    assert not clip.truncated
    assert clip.gaps == ()
    samples, rate = sf.read(tmp_path / clip.path, dtype="int16")
    assert rate == RATE
    assert len(samples) == clip.end_index - clip.start_index
    assert clip.end_index - clip.start_index >= 3 * RATE  # 1 s + 1 s + the rolls, at least
    # the camera's sample at each of the clip's indices: exact
    np.testing.assert_array_equal(samples, ramp(len(samples), clip.start_index))
    assert ramp_offset(samples) == clip.start_index % 65536


def saved_clips(data: Path) -> int:
    if not (data / STORE_NAME).exists():
        return 0
    with Store.open(data / STORE_NAME) as store:
        return sum(1 for c in store.contacts() if c.clip is not None)
