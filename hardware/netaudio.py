"""Audio from an IP camera or a streaming server (RTSP, HTTP, HTTPS) through PyAV (FFmpeg).

Rules of :class:`NetworkMicrophone`:

- ``audio.device = "rtsp://..."`` (or ``rtsps``, ``http``, ``https``) selects it. Whatever the
  stream carries (L16, G.711, AAC, Opus, WAV or MP3 over HTTP; any rate, any channels) is
  decoded and resampled by FFmpeg to mono S16 at ``sample_rate`` (8000 or 16000). RTSP runs
  over TCP (interleaved): no packet loss inside a connection.
- It reports the same :class:`AudioPeriod` blocks as the ALSA microphone, on the same
  sample-index clock (:class:`hardware._capture.IndexClock`): ``period_frames`` per period
  (shorter only before a gap or when a connection ends), the index advancing by the samples
  received and jumping forward by the samples lost. A period's ``t_ns`` is its first sample's
  arrival on the least delay seen (the network's jitter is not in it). The camera's own latency
  (encoding, its buffer) cannot be known from here: the audio is late by it, so a clip holds
  what was said that much before its contact, and the post-roll should cover it.
- Index 0 is the first sample of the first connection that delivers audio; if none could be
  made at ``start()``, it is the sample due at ``start()``, so the outage shows as a jump.
- Lateness up to ``jitter_s`` is the network's (a stream arriving in bursts); beyond that the
  excess counts as lost, as with an ALSA stall.
- A dropped connection (an error, a read stalled for ``read_timeout_s``, the stream ending) is a
  capture gap recorded like an ALSA stall: one ``DeviceFault(name, ok=False)`` per outage, then
  reconnects with exponential back-off (``backoff_min_s`` doubling up to ``backoff_max_s``,
  back to the minimum once a connection delivered audio), and ``DeviceFault(name, ok=True)``
  when audio flows again; the first period after it starts later by the wall time lost, so clips
  stay aligned. The audio of the period being filled when the connection dropped is delivered.
- A packet the decoder refuses is skipped and counted (``decode_errors``); a stream with no
  audio track is an outage like any other (the camera may be reconfigured).
- Credentials never leave this module: the ``user:pass@`` part of the URL and password-like query
  parameters are masked (:class:`hardware._streamurl.Redactor`) in every log line, fault detail
  and exception message; ``device`` is the masked URL. FFmpeg's own log stays off (PyAV's default):
  switching it on (``av.logging.set_level``) would print URLs unmasked.
- TLS (``https``, ``rtsps``): FFmpeg does not check the server's certificate unless ``ca_file``
  is given; then the certificate must chain to it and name the host.
- Stopping: FFmpeg's reads cannot be interrupted from another thread, only by their timeouts.
  ``stop()`` returns after ``stop_timeout_s`` at most; the daemon thread ends (closing its
  connection) when the read returns, and it calls the sink never again after ``stop()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.container import InputContainer
from av.error import FFmpegError, InvalidDataError

from hardware._api import AudioPeriod, EventSink
from hardware._capture import CaptureState, CaptureStatus, IndexClock, stop_capture
from hardware._driver import EmittingDevice
from hardware._streamurl import Redactor, check_stream_url

log = logging.getLogger(__name__)

SUPPORTED_RATES = (8000, 16000)
#: what a broken connection, a stalled read or a stream the resampler cannot follow raise
_STREAM_ERRORS = (FFmpegError, OSError, ValueError, IndexError)


class NetworkMicrophone(EmittingDevice):
    """A network audio stream reporting :class:`AudioPeriod` blocks and :class:`DeviceFault`."""

    def __init__(
        self,
        url: str,
        *,
        sample_rate: int = 16000,
        period_frames: int = 1600,
        clock: Callable[[], int] = time.monotonic_ns,
        jitter_s: float = 2.0,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        stop_timeout_s: float = 1.0,
        ca_file: Path | None = None,
        name: str = "microphone",
    ) -> None:
        self._redact = Redactor(url)
        self.device = self._redact.shown
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"sample_rate must be one of {SUPPORTED_RATES}, got {sample_rate}")
        if period_frames <= 0:
            raise ValueError(f"need period_frames > 0, got {period_frames}")
        if not 0 < backoff_min_s <= backoff_max_s:
            raise ValueError(
                f"need 0 < backoff_min_s <= backoff_max_s, got {backoff_min_s}, {backoff_max_s}"
            )
        if jitter_s < 0 or open_timeout_s <= 0 or read_timeout_s <= 0:
            raise ValueError("jitter_s must not be negative and the timeouts must be positive")
        check_stream_url(url)
        self.name = name
        self.sample_rate = sample_rate
        self._url = url
        self._period = period_frames
        self._clock = clock
        self._timeouts = (open_timeout_s, read_timeout_s)
        self._backoff = (backoff_min_s, backoff_max_s)
        self._stop_timeout_s = stop_timeout_s
        self._options = self._stream_options(url, ca_file)
        self._stop = threading.Event()
        self._emit_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._sink: EventSink | None = None
        self._link: CaptureState = "idle"
        self._reconnects = 0
        self._failed_opens = 0
        self._decode_errors = 0
        self._connections = 0  # connections that delivered audio
        # owned by the capture thread once started: the index clock and the period being filled
        self._index = IndexClock(sample_rate, round(jitter_s * sample_rate))
        self._buf = bytearray(2 * period_frames)  # S16: two bytes a sample
        self._fill_start = 0  # index of the first sample in self._buf
        self._filled = 0

    @staticmethod
    def _stream_options(url: str, ca_file: Path | None) -> dict[str, str]:
        scheme = url.partition("://")[0].lower()
        options: dict[str, str] = {}
        if scheme in ("rtsp", "rtsps"):
            options["rtsp_transport"] = "tcp"
        if ca_file is not None:
            if scheme not in ("https", "rtsps"):
                raise ValueError(f"ca_file is for https:// and rtsps:// streams, not {scheme}://")
            options.update(ca_file=str(ca_file), tls_verify="1")
        return options

    @property
    def status(self) -> CaptureStatus:
        """Connection state and loss counters, safe to read from any thread."""
        thread = self._thread
        state = self._link
        if self._stop.is_set() and thread is not None:
            state = "stopping" if thread.is_alive() else "stopped"
        return CaptureStatus(
            state,
            0,
            self._index.gaps,
            self._index.samples_lost,
            self._reconnects,
            self._failed_opens,
            self._decode_errors,
        )

    def start(self, sink: EventSink) -> None:
        """Start the capture thread (once per object)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        self._sink = sink
        self._index.zero_at(self._clock())
        if self._url.lower().startswith(("https:", "rtsps:")) and "ca_file" not in self._options:
            log.warning("%s: %s: the server's certificate is not checked", self.name, self.device)
        self._thread = threading.Thread(target=self._run, name=f"net-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop capturing; returns within about ``stop_timeout_s`` even if a read is stuck."""
        if not stop_capture(self._stop, self._emit_lock, self._thread, self._stop_timeout_s):
            log.warning(
                "%s: a read of %s is blocked inside FFmpeg; the capture thread ends with it",
                self.name,
                self.device,
            )

    # -- capture thread ------------------------------------------------------------------------

    def _run(self) -> None:
        low, high = self._backoff
        delay = low
        while not self._stop.is_set():
            container = self._connect()
            if container is not None:
                delivered = self._connections
                try:
                    self._serve(container)
                    why = "the stream ended"
                except _STREAM_ERRORS as exc:
                    why = self._describe(exc)
                finally:
                    self._close(container)
                self._flush()  # what arrived before the drop is audio like any other
                if self._stop.is_set():
                    break
                self._lost(why)
                if self._connections > delivered:
                    delay = low  # this one worked: the next attempt comes soon
            log.debug("%s: next attempt in %.2f s", self.name, delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, high)

    def _connect(self) -> InputContainer | None:
        try:
            container = av.open(self._url, "r", options=self._options, timeout=self._timeouts)
        except _STREAM_ERRORS as exc:
            self._failed(f"cannot open audio stream {self.device}: {self._describe(exc)}")
            return None
        if not container.streams.audio:
            self._close(container)
            self._failed(f"audio stream {self.device} has no audio track")
            return None
        return container

    def _failed(self, detail: str) -> None:
        self._failed_opens += 1
        if self._link != "reconnecting":
            self._link = "reconnecting"
            self._fault(False, detail)
        else:
            log.info("%s: %s", self.name, detail)

    def _lost(self, why: str) -> None:
        if self._link == "reconnecting":  # a connection that never delivered: same outage
            log.info("%s: audio stream %s: %s", self.name, self.device, why)
            return
        self._link = "reconnecting"
        self._fault(False, f"audio stream {self.device} lost: {why}")

    def _serve(self, container: InputContainer) -> None:
        stream = container.streams.audio[0]
        resampler = AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
        stopped = self._stop.is_set
        for packet in container.demux(stream):
            if stopped():
                return
            try:
                frames = packet.decode()
            except InvalidDataError as exc:
                self._decode_errors += 1
                log.info("%s: a packet could not be decoded: %s", self.name, self._describe(exc))
                continue
            for frame in frames:
                for out in resampler.resample(frame):
                    self._take(out)
        for out in resampler.resample(None):  # what the resampler still holds
            self._take(out)

    def _take(self, frame: AudioFrame) -> None:
        now = self._clock()
        n = frame.samples  # mono S16, packed (the resampler's output): the plane's first 2n bytes
        if n == 0:
            return
        if self._link != "connected":
            if self._link == "idle":  # index 0 is the first sample of the first audio
                self._index.zero_at(now)
            else:
                self._reconnects += 1
                self._index.resync = True  # the time the stream was away is lost audio
                self._fault(True, f"audio stream {self.device} is back")
            self._link = "connected"
            self._connections += 1
        start = self._index.place(n, now)
        if start != self._fill_start + self._filled:  # a gap: the period being filled ends here
            self._flush()
            self._fill_start = start
        data = memoryview(frame.planes[0]).cast("B")  # a view of FFmpeg's buffer, no copy
        pos = 0
        while pos < n:
            k = min(self._period - self._filled, n - pos)
            self._buf[2 * self._filled : 2 * (self._filled + k)] = data[2 * pos : 2 * (pos + k)]
            self._filled += k
            pos += k
            if self._filled == self._period:
                self._flush()

    def _flush(self) -> None:
        """Deliver the period being filled (full, or cut short by a gap or a lost connection)."""
        if self._filled == 0:
            return
        block = memoryview(self._buf)[: 2 * self._filled].cast("h")
        start = self._fill_start
        self._fill_start += self._filled
        self._filled = 0
        self._buf = bytearray(2 * self._period)  # the delivered one is the sink's
        self._emit(AudioPeriod(start, block, self._index.time_of(start)))

    def _close(self, container: InputContainer) -> None:
        try:
            container.close()
        except _STREAM_ERRORS as exc:
            log.info("%s: closing %s: %s", self.name, self.device, self._describe(exc))

    def _describe(self, exc: BaseException) -> str:
        """An exception in words, with the URL's secrets masked (FFmpeg's errors quote it)."""
        return self._redact(f"{type(exc).__name__}: {exc}")
