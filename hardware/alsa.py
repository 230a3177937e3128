"""The always-on microphone and the prompt player, through ALSA (pyalsaaudio).

Rules of :class:`AlsaMicrophone`:

- Capture runs on its own thread: mono, S16_LE, ``sample_rate`` 8000 or 16000, ``period_frames``
  per read and ``periods`` periods of ALSA buffer. Each read becomes one :class:`AudioPeriod`
  (normally ``period_frames`` long, shorter only if ALSA returns a short read); its samples are a
  read-only int16 ``memoryview`` of the bytes ALSA returned, not a copy. The cost is per period
  (a wake-up, a read, a record), so longer periods cost less CPU: ``bench/capture.py`` measures
  it.
- Index 0 is the first sample after the first successful open; if the device could not be
  opened at once, it is the sample due at ``start()``, so the outage shows as a jump.
- Sample-index clock (:class:`hardware._capture.IndexClock`, shared with the network stream):
  the index advances by the frames received. It is also tied to the monotonic clock:
  ``lag = now·rate − index`` is tracked, its minimum over the recent past is the baseline
  (re-taken every 10 s so the sound card's crystal drift is followed, not mistaken for loss).
  When a read's lag exceeds the baseline by more than what the ALSA buffer
  can hold (buffer + one period), or by anything at all after an overrun or a reconnect, the
  excess is the number of samples lost: the index jumps forward by it *before* the period just
  read (the fresh data is the newest). The index never goes backwards; a jump *is* the gap.
- Overrun: pyalsaaudio 0.11.0 (read from its ``alsapcm_read``) calls ``snd_pcm_prepare`` itself
  and returns ``(-EPIPE, b"")``; any negative length is counted as an overrun and the next read
  is measured against the clock as above. ``-EAGAIN`` comes back as ``(0, b"")``. Every other
  error raises ``ALSAAudioError``.
- Device gone (``ALSAAudioError`` from open or read, e.g. a USB microphone unplugged): one
  ``DeviceFault(name, ok=False)`` per outage, a reopen every ``reopen_interval_s``, then
  ``DeviceFault(name, ok=True)``; the first period after it is advanced by the time the device
  was gone. A device that opens with another rate, channel count or format than asked counts
  as not opened (the message says so): the index clock would be wrong.
- ``t_ns`` of a period = monotonic stamp when ``read()`` returned − the period's duration. This
  assumes the period had just been completed; if the thread was late and ALSA had a backlog, the
  samples are older than that by at most the buffer duration (``periods × period``).
- Stopping: the PCM is opened ``PCM_NONBLOCK`` and the thread waits in ``poll()`` on its
  descriptors with a short timeout, so it notices ``stop()`` within ~0.1 s on a real device.
  A read can still block inside alsa-lib (a ``file`` plugin whose input FIFO stalled, a hung
  driver): ``stop()`` then gives up after ``stop_timeout_s`` and returns; the daemon thread ends
  (closing its PCM) when the read returns, and it calls the sink never again after ``stop()``.

Rules of :class:`PromptPlayer`:

- ``play()`` checks the WAV header (16-bit PCM, 1 or 2 channels, else ``ValueError``) and returns
  at once; the samples are read and written to ``PCM_PLAYBACK`` on a player thread, so playback
  never blocks the caller or capture.
- One prompt at a time: a ``play()`` while one is playing is dropped (counted in ``dropped``).
  A prompt is feedback for something that just happened; queued prompts would play late.
- Playback errors are logged and counted (``failed``, ``last_error``), never raised.
"""

from __future__ import annotations

import logging
import select
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import alsaaudio

from hardware._api import AudioPeriod, EventSink, Samples
from hardware._capture import NS, CaptureState, CaptureStatus, IndexClock, stop_capture
from hardware._driver import EmittingDevice

log = logging.getLogger(__name__)

_POLL_TIMEOUT_MS = 100
SUPPORTED_RATES = (8000, 16000)


class AudioDeviceError(Exception):
    """An audio device cannot be used as asked; the message says which and why."""


class AlsaMicrophone(EmittingDevice):
    """An ALSA capture device reporting :class:`AudioPeriod` blocks and :class:`DeviceFault`."""

    def __init__(
        self,
        device: str = "default",
        *,
        sample_rate: int = 16000,
        period_frames: int = 1600,
        periods: int = 4,
        clock: Callable[[], int] = time.monotonic_ns,
        reopen_interval_s: float = 1.0,
        stop_timeout_s: float = 1.0,
        name: str = "microphone",
    ) -> None:
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"sample_rate must be one of {SUPPORTED_RATES}, got {sample_rate}")
        if period_frames <= 0 or periods < 2:
            raise ValueError(
                f"need period_frames > 0 and periods >= 2, got {period_frames}, {periods}"
            )
        self.name = name
        self.sample_rate = sample_rate
        self.device = device
        self._period_frames = period_frames
        self._periods = periods
        self._clock = clock
        self._reopen_interval_s = reopen_interval_s
        self._stop_timeout_s = stop_timeout_s
        self._stop = threading.Event()
        self._emit_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._sink: EventSink | None = None
        self._link: CaptureState = "idle"
        self._overruns = 0
        self._reconnects = 0
        self._failed_opens = 0
        # sample-index clock (owned by the capture thread once started)
        self._index = IndexClock(sample_rate, (periods + 1) * period_frames)

    @property
    def status(self) -> CaptureStatus:
        """Connection state and loss counters, safe to read from any thread."""
        thread = self._thread
        state = self._link
        if self._stop.is_set() and thread is not None:
            state = "stopping" if thread.is_alive() else "stopped"
        return CaptureStatus(
            state,
            self._overruns,
            self._index.gaps,
            self._index.samples_lost,
            self._reconnects,
            self._failed_opens,
        )

    def start(self, sink: EventSink) -> None:
        """Start the capture thread (once per object)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        self._sink = sink
        self._index.zero_at(self._clock())
        self._thread = threading.Thread(target=self._run, name=f"alsa-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop capturing; returns within about ``stop_timeout_s`` even if a read is stuck."""
        if not stop_capture(self._stop, self._emit_lock, self._thread, self._stop_timeout_s):
            log.warning(
                "%s: a read is blocked inside ALSA; the capture thread ends with it", self.name
            )

    # -- capture thread ------------------------------------------------------------------------

    def _run(self) -> None:
        self._keep_open(
            self._try_open,
            self._capture,
            lambda pcm: pcm.close(),
            (alsaaudio.ALSAAudioError,),
            self._lost,
        )

    def _lost(self, exc: BaseException) -> None:
        self._link = "reconnecting"
        self._fault(False, f"capture from ALSA device {self.device!r} failed: {exc}")

    def _try_open(self) -> Any:
        try:
            pcm = self._open()
        except (alsaaudio.ALSAAudioError, AudioDeviceError) as exc:
            self._failed_opens += 1
            if self._link != "reconnecting":
                self._link = "reconnecting"
                self._fault(False, f"cannot open ALSA capture device {self.device!r}: {exc}")
            return None
        if self._link == "idle":  # index 0 is the first sample of this first open
            self._index.zero_at(self._clock())
        elif self._link == "reconnecting":
            self._reconnects += 1
            self._index.resync = True
            self._fault(True, f"ALSA capture device {self.device!r} reopened")
        self._link = "connected"
        return pcm

    def _open(self) -> Any:
        pcm = alsaaudio.PCM(
            alsaaudio.PCM_CAPTURE,
            alsaaudio.PCM_NONBLOCK,
            device=self.device,
            rate=self.sample_rate,
            channels=1,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=self._period_frames,
            periods=self._periods,
        )
        info = pcm.info()
        got = (info["rate"], info["channels"], info["format"])
        want = (self.sample_rate, 1, alsaaudio.PCM_FORMAT_S16_LE)
        if got != want:
            pcm.close()
            raise AudioDeviceError(
                f"device gives (rate, channels, format) {got}, asked {want}; "
                "use a converting device such as 'plughw:CARD=...' or 'default'"
            )
        self._index.threshold = int(info["buffer_size"]) + int(info["period_size"])
        return pcm

    def _capture(self, pcm: Any) -> None:
        poller = select.poll()
        for fd, events in pcm.polldescriptors():
            poller.register(fd, events)
        idle_s = self._period_frames / self.sample_rate / 4
        # the loop runs once per period for as long as the device lives: names bound once
        poll, read, clock, stopped = poller.poll, pcm.read, self._clock, self._stop.is_set
        deliver = self._deliver
        while not stopped():
            if not poll(_POLL_TIMEOUT_MS):
                continue
            frames, data = read()
            now = clock()
            if frames > 0:
                # a read-only view of the bytes ALSA returned: no copy (the ring copies once);
                # S16_LE is native int16 on the little-endian machines this runs on
                deliver(memoryview(data)[: 2 * frames].cast("h"), now)
            elif frames < 0:
                self._overruns += 1
                self._index.resync = True
                log.info("%s: ALSA overrun #%d", self.name, self._overruns)
            else:
                self._stop.wait(idle_s)  # woke up without data (plugin poll quirk): do not spin

    def _deliver(self, samples: Samples, now: int) -> None:
        frames = len(samples)
        start = self._index.place(frames, now)
        self._emit(AudioPeriod(start, samples, now - frames * NS // self.sample_rate))


class PromptPlayer:
    """Plays short 16-bit WAV prompts on an ALSA playback device, one at a time."""

    def __init__(
        self,
        device: str = "default",
        clock: Callable[[], int] = time.monotonic_ns,
        close_timeout_s: float = 2.0,
    ) -> None:
        self.device = device
        self._clock = clock
        self._close_timeout_s = close_timeout_s
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.played = 0
        self.dropped = 0
        self.failed = 0
        self.last_error: str | None = None
        self.last_started_ns: int | None = None

    @property
    def is_playing(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def play(self, path: Path) -> None:
        """Start playing ``path`` and return at once; dropped if a prompt is still playing."""
        if self._closing.is_set():
            raise RuntimeError("PromptPlayer is closed")
        rate, channels = _check_wav(path)
        with self._lock:
            if self.is_playing:
                self.dropped += 1
                log.info("prompt %s dropped: another prompt is playing", path)
                return
            self.last_started_ns = self._clock()
            self._thread = threading.Thread(
                target=self._play, args=(path, rate, channels), name="alsa-prompt", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Cut a prompt short and wait (bounded) for the player thread; idempotent."""
        self._closing.set()
        thread = self._thread
        if thread is not None:
            thread.join(self._close_timeout_s)

    def _play(self, path: Path, rate: int, channels: int) -> None:
        chunk = max(1, rate // 50)  # 20 ms periods
        try:
            with wave.open(str(path), "rb") as wav:
                pcm = alsaaudio.PCM(
                    alsaaudio.PCM_PLAYBACK,
                    alsaaudio.PCM_NORMAL,
                    device=self.device,
                    rate=rate,
                    channels=channels,
                    format=alsaaudio.PCM_FORMAT_S16_LE,
                    periodsize=chunk,
                    periods=4,
                )
                try:
                    while not self._closing.is_set():
                        data = wav.readframes(chunk)
                        if not data:
                            break
                        pcm.write(data)
                    if self._closing.is_set():
                        pcm.drop()
                finally:
                    pcm.close()  # drains what is left of the prompt
            self.played += 1
        except (alsaaudio.ALSAAudioError, OSError, wave.Error, EOFError) as exc:
            self.failed += 1
            self.last_error = f"{path}: {exc}"
            log.warning("prompt %s failed on ALSA device %r: %s", path, self.device, exc)


def _check_wav(path: Path) -> tuple[int, int]:
    """(rate, channels) of a 16-bit PCM WAV, else ValueError saying what it is."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, rate, channels = wav.getsampwidth(), wav.getframerate(), wav.getnchannels()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc}); prompts must be 16-bit PCM") from exc
    if width != 2 or channels not in (1, 2):
        raise ValueError(
            f"{path}: prompts must be 16-bit PCM mono or stereo, got {8 * width}-bit, "
            f"{channels} channel(s)"
        )
    return rate, channels
