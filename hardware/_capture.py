"""What every audio capture source shares: the sample-index clock and the health snapshot.

Rules of :class:`IndexClock` (the ALSA microphone and the network stream both use it):

- The index advances by the samples received; it is also tied to the monotonic clock:
  ``lag = now·rate − end_index`` is tracked for every block, its minimum over the recent past is
  the baseline (re-taken every 10 s, so a crystal's or a sender's drift is followed, not
  mistaken for loss).
- When a block's lag exceeds the baseline by more than ``threshold`` samples (what the source's
  own buffering can explain), or by anything at all when ``resync`` is set (after an overrun or
  a reconnect), the excess is the number of samples lost: the index jumps forward by it *before*
  the block (the fresh data is the newest). The index never goes backwards; a jump *is* the gap.
- :meth:`IndexClock.time_of` maps an index to the monotonic time it was captured, as if it had
  arrived with the least delay seen (the baseline): a stamp free of the arrival jitter.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

NS = 1_000_000_000
BASELINE_WINDOW_NS = 10 * NS

CaptureState = Literal["idle", "connected", "reconnecting", "stopping", "stopped"]


@dataclass(frozen=True, slots=True)
class CaptureStatus:
    """A snapshot of a capture source's health."""

    state: CaptureState
    overruns: int  # reads that reported an overrun (ALSA)
    gaps: int  # forward jumps of the sample index
    samples_lost: int  # total size of those jumps
    reconnects: int  # outages recovered from
    failed_opens: int  # open attempts that failed
    decode_errors: int = 0  # packets that could not be decoded (network streams)


class IndexClock:
    """The absolute sample index of a capture source, tied to the monotonic clock."""

    __slots__ = (
        "_window_end_ns",
        "_window_min",
        "base",
        "gaps",
        "index",
        "rate",
        "resync",
        "samples_lost",
        "threshold",
    )

    def __init__(self, rate: int, threshold: int) -> None:
        self.rate = rate
        self.threshold = threshold  # samples of lateness the source's buffering can explain
        self.index = 0  # the index of the next sample
        self.base = 0  # the baseline lag, in samples
        self.resync = False  # count any lateness as loss at the next block
        self.gaps = 0
        self.samples_lost = 0
        self._window_min = 0
        self._window_end_ns = 0

    def zero_at(self, now: int) -> None:
        """The next sample (``index``) is the one due at ``now``: the baseline starts there."""
        self.base = self._window_min = now * self.rate // NS - self.index
        self._window_end_ns = now + BASELINE_WINDOW_NS

    def place(self, frames: int, now: int) -> int:
        """The start index of a block of ``frames`` samples whose last one arrived at ``now``."""
        index = self.index
        lag = now * self.rate // NS - (index + frames)
        excess = lag - self.base
        if excess > self.threshold or (self.resync and excess > 0):
            index += excess
            self.gaps += 1
            self.samples_lost += excess
            lag = self.base
        self.resync = False
        self.index = index + frames
        self.base = min(self.base, lag)
        self._window_min = min(self._window_min, lag)
        if now >= self._window_end_ns:  # follow the drift: re-take the recent minimum
            self.base, self._window_min = self._window_min, lag
            self._window_end_ns = now + BASELINE_WINDOW_NS
        return index

    def time_of(self, index: int) -> int:
        """Monotonic ns at which sample ``index`` was captured, on the least delay seen."""
        return (index + self.base) * NS // self.rate


def stop_capture(
    stop: threading.Event,
    emit_lock: threading.Lock,
    thread: threading.Thread | None,
    timeout_s: float,
) -> bool:
    """Stop a capture thread (the ALSA and the network microphones): no emit after this
    returns; wait up to ``timeout_s`` for the thread. False when it is still blocked in a read
    (it ends with that read; the caller says where)."""
    stop.set()
    with emit_lock:
        pass  # an emit in progress has finished; none starts after this
    if thread is None:
        return True
    thread.join(timeout_s)
    return not thread.is_alive()
