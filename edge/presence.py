"""Presence detection: ultrasonic distance readings → customer arrivals and departures.

A pure state machine fed one :class:`~hardware.Distance` per ranging cycle, in ``t_ns`` order.
Every duration is measured between reading timestamps. The rules:

* **No echo.** A reading with ``meters is None``, or outside the sensor's physical range
  (< 0.02 m or > 4.5 m), is a *no-echo* reading. All other readings are *valid*.
* **Median filter.** Valid readings enter a median over the last ``median_window`` of them (for
  an even window, the mean of the two middle values). The filter has no output until it holds
  ``median_window`` readings. With ``median_window`` >= 3 one outlier cannot move the median
  outside the range of the other readings, so a single near (or far) spike changes nothing.
* **Hysteresis.** A filtered distance < ``near_m`` is *near*, > ``far_m`` is *far*; in between,
  or with no filter output, the previous classification holds. The start classification is far.
* **Dwell and backdating.** Arrival when near has held for ``arrive_dwell_s``; departure when far
  has held for ``leave_dwell_s``. Each event's ``t_ns`` is the reading at which that
  classification began, so it marks when the customer really came or went. A classification that
  flips back before its dwell is over (a customer stepping back briefly) produces nothing.
* **No-echo runs.** A run of no-echo readings holds the classification, and the dwell timers keep
  running, until the run has lasted ``no_echo_as_far_s`` (first to latest reading of the run).
  From then on the run counts as far *from its first reading* (so a departure is backdated to it
  once ``leave_dwell_s`` has passed since then), and the median window is emptied: readings from
  before a long gap are stale and must not vote with the next ones. A valid reading ends a run.
* Events alternate, starting with an arrival; their times strictly increase.

An event is reported at most ``max(arrive_dwell_s, no_echo_as_far_s, leave_dwell_s)`` after its
``t_ns`` (plus the gap to the next reading).
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from edge.clock import seconds_to_ns
from edge.config import PresenceSection
from edge.events import Arrival, Departure
from hardware import Distance

MIN_RANGE_M = 0.02
MAX_RANGE_M = 4.5


@dataclass(slots=True)
class PresenceStats:
    readings: int = 0
    no_echo: int = 0  # includes out-of-range readings
    ignored_spikes: int = 0  # best effort: single valid readings that disagreed with the filter
    arrivals: int = 0
    departures: int = 0


class PresenceDetector:
    """Turns distance readings into :class:`Arrival` / :class:`Departure` (rules: module doc)."""

    def __init__(self, cfg: PresenceSection) -> None:
        self._cfg = cfg
        self._window: deque[float] = deque(maxlen=cfg.median_window)
        self._arrive_ns = seconds_to_ns(cfg.arrive_dwell_s)
        self._leave_ns = seconds_to_ns(cfg.leave_dwell_s)
        self._no_echo_ns = seconds_to_ns(cfg.no_echo_as_far_s)
        self._near = False  # the current classification
        self._since_ns = 0  # the reading at which it began
        self._present = False
        self._run_start_ns: int | None = None  # first reading of the current no-echo run
        self._disagreeing = 0  # consecutive valid readings on the other side of the filter
        self.stats = PresenceStats()

    @property
    def present(self) -> bool:
        """Whether a customer is at the counter (an arrival was reported, no departure since)."""
        return self._present

    def feed(self, reading: Distance) -> list[Arrival | Departure]:
        """Take one reading (in ``t_ns`` order); return the event it completes, if any."""
        self.stats.readings += 1
        meters = reading.meters
        if meters is None or not MIN_RANGE_M <= meters <= MAX_RANGE_M:
            self._no_echo(reading.t_ns)
        else:
            self._valid(meters, reading.t_ns)
        return self._dwell(reading.t_ns)

    def _no_echo(self, t_ns: int) -> None:
        self.stats.no_echo += 1
        if self._run_start_ns is None:
            self._run_start_ns = t_ns
        if t_ns - self._run_start_ns >= self._no_echo_ns:
            self._window.clear()
            self._classify(False, self._run_start_ns)

    def _valid(self, meters: float, t_ns: int) -> None:
        self._run_start_ns = None
        self._count_spike(meters)
        self._window.append(meters)
        if len(self._window) < self._cfg.median_window:
            return
        filtered = statistics.median(self._window)
        if filtered < self._cfg.near_m:
            self._classify(True, t_ns)
        elif filtered > self._cfg.far_m:
            self._classify(False, t_ns)

    def _classify(self, near: bool, t_ns: int) -> None:
        if near != self._near:
            self._near = near
            self._since_ns = t_ns

    def _dwell(self, t_ns: int) -> list[Arrival | Departure]:
        held_ns = t_ns - self._since_ns
        if self._near and not self._present and held_ns >= self._arrive_ns:
            self._present = True
            self.stats.arrivals += 1
            return [Arrival(self._since_ns)]
        if not self._near and self._present and held_ns >= self._leave_ns:
            self._present = False
            self.stats.departures += 1
            return [Departure(self._since_ns)]
        return []

    def _count_spike(self, meters: float) -> None:
        if len(self._window) < self._cfg.median_window:
            self._disagreeing = 0
            return
        disagrees = meters > self._cfg.far_m if self._near else meters < self._cfg.near_m
        if disagrees:
            self._disagreeing += 1
            return
        if self._disagreeing == 1:
            self.stats.ignored_spikes += 1
        self._disagreeing = 0
