"""Route workers: one per destination, each draining that destination's durable queue.

Rules:
- Rows go in ``id`` order. A row is marked done only after the destination accepted it, and
  before the worker looks at the next row; a refused row (:class:`Refused`) becomes a dead
  letter and the queue moves on; any other failure (:class:`RetryLater`, or an unexpected
  error) keeps the row at the head and waits a jittered, doubling backoff (``backoff_min_s`` to
  ``backoff_max_s``), or exactly the ``retry_after`` the destination asked for.
- Delivery is at least once. The only window for a repeat is a crash after the destination
  accepted a row and before its ``done`` commit: after the restart the row goes again with the
  same delivery id (webhook header, e-mail Message-ID, the MQTT msg_id, the Telegram text) and
  the same FTP file names (so FTP overwrites rather than duplicates).
- Timing is pure: :meth:`RouteWorker.step` reads an injected monotonic clock and returns when
  it wants to run again; :class:`RouteRunner` runs the steps on threads with the real clock.
- Workers write their own rows (done, failed, attempts) through the store's lock, each in a
  short transaction of its own: a success is on disk before the next row is touched.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from edge.config import RoutesSection
from edge.publish._link import backoff_delay
from edge.routes._base import Refused, RetryLater, Route, read_secret
from edge.store import RouteQueue, Store

log = logging.getLogger(__name__)
IDLE_S = 1.0  # an idle worker looks at its queue at least this often (notify() wakes it)


@dataclass(frozen=True, slots=True)
class WorkerStats:
    delivered: int = 0
    refused: int = 0  # dead letters
    retries: int = 0  # failed attempts that will be repeated
    last_error: str = ""


class RouteWorker:
    """Delivers one destination's queue, one row per :meth:`step`."""

    def __init__(
        self,
        route: Route,
        queue: RouteQueue,
        *,
        backoff_min_s: float,
        backoff_max_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        self.route = route
        self._queue = queue
        self._min, self._max = backoff_min_s, backoff_max_s
        self._clock, self._wall, self._random = clock, wall_ns, random_source
        self._failures = 0
        self._not_before = float("-inf")
        self.stats = WorkerStats()

    @property
    def not_before(self) -> float:
        """No attempt before this monotonic time (a backoff or a retry_after)."""
        return self._not_before

    def step(self) -> float | None:
        """Try the oldest open row if its time has come. Returns the monotonic time to call
        again (at or before now: at once), or None when the queue is empty."""
        now = self._clock()
        if now < self._not_before:
            return self._not_before
        row = self._queue.next(self.route.name)
        if row is None:
            return None
        wait = self.route.acquire(now)
        if wait > 0:
            return now + wait
        try:
            self.route.send(row)
        except Refused as exc:
            error = self.route.redact(str(exc))
            self._queue.mark_failed(row.id, error, self._wall())
            self.stats = replace(self.stats, refused=self.stats.refused + 1, last_error=error)
            log.error(
                "route %s refused %s %s for good: %s", self.route.name, row.kind, row.ref, error
            )
            return self._clock()
        except Exception as exc:  # RetryLater, or a surprise: keep the row, wait, try again
            after = exc.retry_after_s if isinstance(exc, RetryLater) else None
            if not isinstance(exc, RetryLater):
                log.exception("route %s: unexpected error", self.route.name)
            error = self.route.redact(f"{exc}" if isinstance(exc, RetryLater) else repr(exc))
            if after is None:
                after = backoff_delay(self._failures, self._min, self._max, self._random)
                self._failures += 1
            self._not_before = self._clock() + after
            self._queue.note_failure(row.id, error)
            self.stats = replace(self.stats, retries=self.stats.retries + 1, last_error=error)
            log.warning(
                "route %s: %s %s not delivered (%s); next try in %.1f s",
                self.route.name,
                row.kind,
                row.ref,
                error,
                after,
            )
            return self._not_before
        self._queue.mark_done(row.id, self._wall())
        self._failures = 0
        self.stats = replace(self.stats, delivered=self.stats.delivered + 1)
        return self._clock()


def build_routes(cfg: RoutesSection, data_dir: Path) -> list[Route]:
    """The queue-fed destinations of ``cfg`` (MQTT ones go through the outbox), secrets read
    now: a missing file stops the start with a message naming the key."""
    routes: list[Route] = []
    url = cfg.clip_url
    # each destination's module (ftplib, smtplib and email, urllib's HTTP) is imported only
    # when the config has one: a device loads the code of the routes it uses (issue #14)
    for t in cfg.telegram:
        from edge.routes.telegram import Telegram

        token = read_secret(t.bot_token_file, f"routes.telegram[{t.name}].bot_token_file")
        routes.append(Telegram(t, token, data_dir, url))
    for f in cfg.ftp:
        from edge.routes.ftp import Ftp

        password = (
            read_secret(f.password_file, f"routes.ftp[{f.name}].password_file")
            if f.password_file
            else None
        )
        routes.append(Ftp(f, password, data_dir, url))
    for e in cfg.email:
        from edge.routes.mail import Email

        password = (
            read_secret(e.password_file, f"routes.email[{e.name}].password_file")
            if e.password_file
            else None
        )
        routes.append(Email(e, password, data_dir, url))
    for w in cfg.webhook:
        from edge.routes.webhook import Webhook

        secret = (
            read_secret(w.secret_file, f"routes.webhook[{w.name}].secret_file")
            if w.secret_file
            else None
        )
        routes.append(Webhook(w, secret, data_dir, url))
    return routes


class RouteRunner:
    """Runs a :class:`RouteWorker` per destination on its own thread."""

    def __init__(
        self,
        cfg: RoutesSection,
        store: Store,
        data_dir: Path,
        *,
        routes: Sequence[Route] | None = None,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        self._cfg = cfg
        self._store = store
        chosen = build_routes(cfg, data_dir) if routes is None else list(routes)
        self.workers = [
            RouteWorker(
                route,
                store.routes,
                backoff_min_s=cfg.backoff_min_s,
                backoff_max_s=cfg.backoff_max_s,
                random_source=random_source,
            )
            for route in chosen
        ]
        self._stop = threading.Event()
        self._wakes = [threading.Event() for _ in self.workers]
        self._threads: list[threading.Thread] = []

    def __bool__(self) -> bool:
        return bool(self.workers)

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the route runner is already started")
        self._stop.clear()
        for worker, wake in zip(self.workers, self._wakes, strict=True):
            thread = threading.Thread(
                target=self._run,
                args=(worker, wake),
                name=f"route-{worker.route.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def notify(self) -> None:
        """New rows were committed: look now rather than at the next poll."""
        for wake in self._wakes:
            wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self.notify()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def depth(self) -> int:
        """Open rows of the destinations this runner delivers."""
        return sum(self._store.routes.depth(w.route.name) for w in self.workers)

    def drain(self, timeout_s: float) -> bool:
        """Wait until every queue is empty (True) or ``timeout_s`` has passed (False)."""
        deadline = time.monotonic() + timeout_s
        self.notify()
        while self.depth() > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stats(self) -> dict[str, WorkerStats]:
        return {w.route.name: w.stats for w in self.workers}

    def _run(self, worker: RouteWorker, wake: threading.Event) -> None:
        while not self._stop.is_set():
            wake.clear()
            try:
                due = worker.step()
            except Exception:  # the store, most likely; keep the thread alive
                log.exception("route %s: worker step failed", worker.route.name)
                due = time.monotonic() + self._cfg.backoff_min_s
            delay = IDLE_S if due is None else due - time.monotonic()
            if delay > 0:
                wake.wait(min(delay, IDLE_S))
