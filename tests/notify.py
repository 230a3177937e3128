"""systemd's end of the notify protocol for tests: a bound ``AF_UNIX`` datagram socket whose
path goes into a daemon's ``NOTIFY_SOCKET``, every message it sends kept in order. Tests use it
to see a real ``contactpoint`` process say ``READY=1`` (so its signal handlers are in place)
and ``STOPPING=1``."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time


class NotifySocket:
    """systemd's end of the notify protocol: a bound datagram socket, every message kept."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sdn")  # short: AF_UNIX paths hold 107 bytes
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def texts(self) -> list[str]:
        with self._lock:
            return [m for _, m in self.messages]

    def said(self, needle: str) -> bool:
        """Whether any message so far holds ``needle`` (e.g. ``READY=1``)."""
        return any(needle in m for m in self.texts())

    def wait_for(self, needle: str, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.said(needle):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)
