"""What ``sink serve`` runs with, and the app's shared state."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cloud_sink.metrics import Parameters
from cloud_sink.reasons import DEFAULT_REASONS, Reason

if TYPE_CHECKING:
    from cloud_sink.config import S3Section


@dataclass(frozen=True)
class ApiSettings:
    data_dir: Path
    db_url: str | None = None
    reasons: tuple[Reason, ...] = DEFAULT_REASONS
    timezone: str = "UTC"  # figures' default zone (the [report] table)
    params: Parameters = field(default_factory=Parameters)
    offline_after_s: float = 300.0  # a device silent this long is offline
    secure_cookies: bool = False  # set with TLS: cookies only over HTTPS
    login_attempts: int = 5  # failed logins allowed per window, per address and per user name
    login_window_s: float = 300.0
    clock_ns: Callable[[], int] = time.time_ns
    s3: S3Section | None = None  # the [s3] table: clips kept in object storage


class LoginLimiter:
    """Failed logins per key in a sliding window (this process's memory: one API process per
    database is the expected deployment; several processes each allow ``attempts``)."""

    def __init__(self, attempts: int, window_s: float, clock: Callable[[], float]) -> None:
        self.attempts, self.window_s, self.clock = attempts, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] >= self.window_s:
            q.popleft()
        return q

    def retry_after(self, *keys: str) -> float:
        """0 when a login may be tried now, else the seconds until it may."""
        now = self.clock()
        with self._lock:
            waits = [
                self.window_s - (now - q[0])
                for q in (self._recent(k, now) for k in keys)
                if len(q) >= self.attempts
            ]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)
            if len(self._failures) > 100_000:  # bounded: forget keys with no recent failure
                for key in [k for k, q in self._failures.items() if not self._recent(k, now)]:
                    del self._failures[key]

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
