"""Waiting for the sink's delivery receipts: the outbox rows the broker acknowledged (PUBACK)
and the sink has not yet confirmed as stored, and when each of them goes again.

Rules (docs/WIRE.md, "Delivery receipts"):
- PUBACK is flow control only. A row the sink confirms (``contact``, ``event``, ``alert`` by
  its msg_id; ``clip`` by its clip id, once the sink verified the whole clip) is tracked here
  from its PUBACK until its receipt; the store keeps it undelivered meanwhile.
- A row is *late* when no receipt came ``timeout_s`` after its PUBACK. A late row is sent again
  (the sink deduplicates, and confirms a duplicate it already stored) only when it may have
  been lost on the way: the connection to the broker was established again since it was sent
  (a broker that restarts loses what it had not saved), or the sink has confirmed a row sent
  after it (the sink reads in order, so it has passed this one: a dead letter, a receipt lost
  with a sink that was killed, a queue the broker dropped). Without either, the broker still
  holds it for a sink that is away or busy, and a copy would only lengthen that queue: the row
  is *held* (counted) until one of the two happens.
- Each resend doubles the wait, up to ``timeout_max_s``; the wait runs from the PUBACK of the
  latest send. After ``max_resends`` resends a row is *given up*: kept in the store,
  undelivered (its clip file stays too) and counted, not sent again until the next connection
  to the broker or the next start of the daemon.
- A receipt removes a row whatever its state; a row confirmed while it was being sent again is
  not tracked again by that send's PUBACK.
- Rows a previous run left waiting are tracked as sent on the first connection.
- Times are monotonic seconds handed in by the caller (the publisher: ``time.monotonic``; the
  tests: a fake clock). Not thread-safe: the publisher thread owns it; :attr:`given_up`,
  :attr:`held` and ``len()`` are plain reads for the status.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

INF = math.inf


@dataclass(slots=True)
class _Waiting:
    key: str  # what the receipt names: the msg_id, or "clip:<clip id>" (wire.receipt_key)
    deadline: float  # monotonic s it is late; INF while being sent again, or given up
    order: int  # the order of its latest PUBACK among all PUBACKs
    epoch: int  # the connection it was sent on
    resends: int = 0
    given_up: bool = False


class AwaitingReceipts:
    """The rows between PUBACK and receipt, keyed by outbox seq."""

    def __init__(self, timeout_s: float, timeout_max_s: float, max_resends: int) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_resends < 0:
            raise ValueError(f"max_resends must be >= 0, got {max_resends}")
        self.timeout_s = timeout_s
        self.timeout_max_s = max(timeout_s, timeout_max_s)
        self.max_resends = max_resends
        self._rows: dict[int, _Waiting] = {}
        self._by_key: dict[str, set[int]] = {}
        self._order = 0  # PUBACKs so far
        self._confirmed_order = 0  # the latest-sent row the sink has confirmed (its order)
        self._epoch = 0
        self._connections = 0
        self.given_up = 0  # rows given up now (they wait for the next connection)
        self.held = 0  # late rows not sent again, since nothing says they were lost (last due())

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, seq: object) -> bool:
        return seq in self._rows

    def wait_s(self, resends: int) -> float:
        """How long a row sent ``resends`` times again waits for its receipt."""
        return min(self.timeout_s * 2.0 ** min(resends, 64), self.timeout_max_s)

    def sent(self, seq: int, key: str, now: float, *, resend: bool = False) -> None:
        """Row ``seq`` was acknowledged by the broker (its first send, or ``resend``)."""
        row = self._rows.get(seq)
        self._order += 1
        if row is None:
            if resend:
                return  # confirmed while it was being sent again: nothing to wait for
            self._rows[seq] = _Waiting(key, now + self.timeout_s, self._order, self._epoch)
            self._by_key.setdefault(key, set()).add(seq)
            return
        if row.given_up:
            return
        row.deadline = now + self.wait_s(row.resends)
        row.order, row.epoch = self._order, self._epoch

    def confirm(self, keys: Iterable[str]) -> list[int]:
        """A receipt named ``keys``: the rows it confirms, no longer tracked (ascending)."""
        done: list[int] = []
        for key in keys:
            for seq in self._by_key.pop(key, ()):
                row = self._rows.pop(seq)
                self.given_up -= row.given_up
                self._confirmed_order = max(self._confirmed_order, row.order)
                done.append(seq)
        return sorted(done)

    def forget(self, seqs: Iterable[int]) -> None:
        """Stop tracking ``seqs`` (the store says they are delivered already)."""
        for seq in seqs:
            row = self._rows.pop(seq, None)
            if row is None:
                continue
            self.given_up -= row.given_up
            keyed = self._by_key.get(row.key)
            if keyed is not None:
                keyed.discard(seq)
                if not keyed:
                    del self._by_key[row.key]

    def connected(self, now: float) -> int:
        """A connection to the broker was accepted. From the second one on, what was sent on an
        earlier connection may have been lost with a broker restart, and the rows given up get
        another round. Returns how many were given up."""
        self._connections += 1
        if self._connections == 1:
            return 0
        self._epoch += 1
        count = 0
        for row in self._rows.values():
            if row.given_up:
                row.given_up = False
                row.resends = 0
                row.deadline = now + self.timeout_s
                count += 1
        self.given_up -= count
        return count

    def due(self, now: float) -> tuple[list[int], list[int]]:
        """(rows to send again now, rows given up now), each ascending. A row to send again
        waits for its next PUBACK (:meth:`sent`) before its next deadline runs."""
        again: list[int] = []
        dropped: list[int] = []
        held = 0
        for seq, row in self._rows.items():
            if row.deadline > now:
                continue
            if row.epoch == self._epoch and row.order > self._confirmed_order:
                held += 1  # nothing says it is lost: the broker holds it for the sink
                continue
            row.deadline = INF
            if row.resends >= self.max_resends:
                row.given_up = True
                self.given_up += 1
                dropped.append(seq)
            else:
                row.resends += 1
                again.append(seq)
        self.held = held
        return sorted(again), sorted(dropped)

    def requeue(self, now: float) -> None:
        """The connection was lost: rows that were being sent again are late at once (and
        go on the next connection), since their PUBACK will never come."""
        for row in self._rows.values():
            if row.deadline == INF and not row.given_up:
                row.deadline = now

    def next_deadline(self) -> float:
        """The earliest deadline (INF: nothing is due ever, until something is sent)."""
        return min((row.deadline for row in self._rows.values()), default=INF)
