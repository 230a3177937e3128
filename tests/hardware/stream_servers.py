"""Real streaming servers on loopback for the network-audio tests, from Debian's packages.

- :class:`RtspServer`: GStreamer's RTSP server (``rtsp_server.py``, run by the system python3
  with python3-gi) serving a WAV as L16 (lossless) in real time, optionally behind basic auth.
- :class:`HttpWavServer`: ``ffmpeg -listen 1`` serving a WAV over HTTP or HTTPS (one client,
  then it exits), in real time with ``-re``.

Both are killed with SIGKILL to cut a stream in the middle, and started again on the same port.
A signal whose samples encode their own index (:func:`ramp`) makes every loss, duplicate or
reordering visible to the sample.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import wave
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt

from provisioning.broker import free_port

Samples = npt.NDArray[np.int16]

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")
PACKAGES = (
    "ffmpeg python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0 "
    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good (scripts/test installs them)"
)
START_S = 30.0  # a server that says nothing for this long has failed


def ramp(count: int, start: int = 0) -> Samples:
    """Sample ``i`` holds ``i`` modulo 2**16 (as int16): the signal tells where it was cut."""
    return (np.arange(start, start + count) % 65536).astype(np.uint16).view(np.int16)


def ramp_offset(samples: Samples) -> int:
    """Where in the ramp ``samples`` starts (modulo 2**16)."""
    return int(samples[:1].view(np.uint16)[0]) if len(samples) else 0


def write_wav(path: Path, samples: Samples, rate: int, channels: int = 1) -> Path:
    """A 16-bit PCM WAV of ``samples`` (interleaved when ``channels`` > 1)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return path


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (from /proc/net/tcp, no connection)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        return any(
            fields[1] == wanted and fields[3] == "0A"  # 0A: LISTEN
            for fields in (line.split() for line in table)
        )


class _Process:
    """A server subprocess whose output lines are collected by a reader thread."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def _spawn(self, command: list[str]) -> None:
        self.lines = []
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, prefix: str, timeout_s: float = START_S) -> str:
        """The first output line starting with ``prefix``; fails with the output so far."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                exited = self.proc is None or self.proc.poll() is not None
                if left <= 0 or exited:
                    raise AssertionError(
                        f"server: no '{prefix}' line ({'exited' if exited else 'timed out'}); "
                        f"output: {self.lines[-20:]}"
                    )
                self._cond.wait(min(left, 0.2))

    def kill(self) -> None:
        """SIGKILL: the connection drops in the middle of the stream."""
        proc, reader = self.proc, self._reader
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if reader is not None:
            reader.join(10)  # the output is read to its end
        if proc.stdout is not None:
            proc.stdout.close()


class RtspServer(_Process):
    """GStreamer's RTSP server serving ``wav`` at ``rtsp://127.0.0.1:PORT/audio``."""

    def __init__(self, wav: Path, *, user: str | None = None, password: str | None = None) -> None:
        super().__init__()
        self.wav = wav
        self.port = free_port()
        self.auth = (user, password)

    def url(self, credentials: str = "") -> str:
        return f"rtsp://{credentials}127.0.0.1:{self.port}/audio"

    def start(self) -> RtspServer:
        command = [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--wav", str(self.wav)]
        command += ["--port", str(self.port)]
        user, password = self.auth
        if user is not None and password is not None:
            command += ["--user", user, "--password", password]
        self._spawn(command)
        try:
            self.wait_line("ready")
        except AssertionError as exc:
            self.kill()
            raise AssertionError(
                f"the RTSP server did not start (needs {PACKAGES}): {exc}"
            ) from None
        return self

    def wait_position(self, seconds: float, timeout_s: float = START_S) -> None:
        """Wait until the stream has played ``seconds`` (the server's pipeline position)."""
        deadline = time.monotonic() + timeout_s
        while True:
            positions = [float(x.split()[1]) for x in self.lines if x.startswith("position ")]
            if positions and positions[-1] >= seconds:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the stream did not reach {seconds} s: {self.lines[-5:]}")
            with self._cond:
                self._cond.wait(0.2)

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


class HttpWavServer(_Process):
    """``ffmpeg -re -i WAV -listen 1 -f wav http://127.0.0.1:PORT/audio.wav``: one client."""

    def __init__(
        self, wav: Path, *, realtime: bool = True, tls: tuple[Path, Path] | None = None
    ) -> None:
        super().__init__()
        if shutil.which("ffmpeg") is None:
            raise AssertionError(f"ffmpeg not found (needs {PACKAGES})")
        self.wav = wav
        self.port = free_port()
        self.realtime = realtime
        self.tls = tls  # (certificate, key): serve https

    def url(self, credentials: str = "", query: str = "") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{credentials}127.0.0.1:{self.port}/audio.wav{query}"

    def start(self) -> HttpWavServer:
        pace = ["-re"] if self.realtime else []
        tls = ["-cert_file", str(self.tls[0]), "-key_file", str(self.tls[1])] if self.tls else []
        self._spawn(
            [
                *("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", *pace),
                *("-i", str(self.wav), "-c", "copy", "-flush_packets", "1"),
                *("-listen", "1", *tls, "-f", "wav", self.url()),
            ]
        )
        deadline = time.monotonic() + START_S
        while not listening(self.port):  # a test connection would take ffmpeg's only client
            if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                self.kill()
                raise AssertionError(f"ffmpeg did not listen on {self.port}: {self.lines[-5:]}")
            time.sleep(0.02)
        return self

    def __enter__(self) -> HttpWavServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
