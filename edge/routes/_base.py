"""What every route destination shares: the interface, its two kinds of failure, secrets read
from files, and the pure rate limiters (a token bucket, a sliding window)."""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

from edge._errors import UserError
from edge.store import RouteRow


class RouteConfigError(UserError):
    """A route cannot start as configured (a secret file missing, say); says which and how."""


class RetryLater(Exception):  # noqa: N818  (a verdict, not an error of ours)
    """The destination did not take it now (away, busy, 5xx, 429): try again after a backoff,
    or after ``retry_after_s`` when the destination said how long to wait."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class Refused(Exception):  # noqa: N818
    """The destination refused this delivery for good (e.g. 400 Bad Request): retrying the
    same request cannot help. The row becomes a dead letter, kept with the reason."""


class Secret:
    """A secret read from a file: never shown by repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def read_secret(path: str, key: str) -> Secret:
    """The first line of ``path`` (the config key ``key`` names it), without its newline."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RouteConfigError(
            f"{key}: cannot read the secret file {path!r} ({exc.__class__.__name__}: "
            f"{getattr(exc, 'strerror', None) or exc}); create it (mode 0600) or fix the path"
        ) from None
    value = text.splitlines()[0].strip() if text.strip() else ""
    if not value:
        raise RouteConfigError(f"{key}: the secret file {path!r} is empty")
    return Secret(value)


class Route:
    """One destination. ``send`` delivers one queued row or raises :class:`RetryLater` /
    :class:`Refused`; ``acquire`` is asked first and answers how long to wait (0 = go, and the
    slot is taken)."""

    type = "route"

    def __init__(self, name: str, secrets: tuple[Secret, ...] = ()) -> None:
        self.name = name
        self._secrets = secrets

    def acquire(self, now_s: float) -> float:
        return 0.0

    def send(self, row: RouteRow) -> None:
        raise NotImplementedError

    def redact(self, text: str) -> str:
        """``text`` with every secret of this route masked (for logs and the queue)."""
        for secret in self._secrets:
            if secret.reveal():
                text = text.replace(secret.reveal(), "***")
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``capacity`` saved up; pure (time is given)."""

    def __init__(self, rate_per_s: float, capacity: float = 1.0) -> None:
        if rate_per_s <= 0 or capacity < 1:
            raise ValueError(f"need rate_per_s > 0 and capacity >= 1, got {rate_per_s}, {capacity}")
        self.rate = rate_per_s
        self.capacity = capacity
        self._tokens = capacity
        self._at: float | None = None

    def _refill(self, now_s: float) -> None:
        if self._at is not None and now_s > self._at:
            self._tokens = min(self.capacity, self._tokens + (now_s - self._at) * self.rate)
        if self._at is None or now_s > self._at:
            self._at = now_s

    def wait_s(self, now_s: float) -> float:
        """How long until a token is there (0: now)."""
        self._refill(now_s)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self, now_s: float) -> None:
        self._refill(now_s)
        self._tokens -= 1


class SlidingWindow:
    """At most ``limit`` events in any ``window_s`` (exact, unlike a bucket); pure."""

    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError(f"need limit >= 1 and window_s > 0, got {limit}, {window_s}")
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def wait_s(self, now_s: float) -> float:
        while self._times and self._times[0] <= now_s - self.window_s:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window_s - now_s

    def take(self, now_s: float) -> None:
        self._times.append(now_s)


class Limits:
    """Several limiters that must all agree; ``acquire`` takes from all or none."""

    def __init__(self, *limiters: TokenBucket | SlidingWindow) -> None:
        self._limiters = limiters

    def acquire(self, now_s: float) -> float:
        wait = max((lim.wait_s(now_s) for lim in self._limiters), default=0.0)
        if wait > 0:
            return max(wait, 1e-3)
        for lim in self._limiters:
            lim.take(now_s)
        return 0.0


def group_limit(per_min: float) -> SlidingWindow:
    """``per_min`` messages a minute (fractions round down, at least one)."""
    return SlidingWindow(max(1, math.floor(per_min)), 60.0)
