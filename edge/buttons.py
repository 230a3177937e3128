"""Button decoding: raw, bouncing edges → debounced presses with a short/long gesture.

A pure state machine fed :class:`~hardware.ButtonEdge` records in ``t_ns`` order, with
:meth:`ButtonDecoder.tick` letting time pass between edges. Debouncing is ours: gpiozero's mock
pins ignore ``bounce_time`` and real contacts bounce. The rules, per button:

* **Debounce.** Every button starts released. The first edge away from the confirmed level
  starts a *change*. The change is confirmed once the raw level has stayed at the new level for
  ``debounce_ms``, and dropped once it has stayed back at the confirmed level for
  ``debounce_ms``; edges in between are bounces and do not move the change's start. So a bounce
  burst counts from its first edge, and a glitch that returns to the old level (a noise spike, a
  burst that gives up) produces nothing. An edge ``debounce_ms`` or more after the previous edge
  comes too late to interrupt. An edge repeating the latest level (its opposite was missed) is
  a bounce too and restarts the wait. With ``debounce_ms = 0`` every edge counts at once.
* **Times.** A press's ``t_ns`` is the start of the change that became the press (not the
  moment it was confirmed); its release time is the start of the change that ended it.
* **Short.** A press released less than ``long_press_s`` after it started is ``short``; it is
  reported when the release is confirmed, with ``duration_ns`` = release time − press time.
* **Long.** A press not released by ``long_press_s`` after it started is ``long``. It is reported
  once that is certain: at the threshold (by :meth:`~ButtonDecoder.tick` or any later edge, of
  any button), or when the press is confirmed or a release glitch is dropped, if that is later.
  ``duration_ns`` = ``long_press_s``. Its release reports nothing, so a stuck button reports
  exactly one long press. This holds for every role (``Press.kind`` names seller_long).
* Fields come from the button's config: ``button`` (its name), ``role``, ``question``; ``via`` is
  ``"gpio"`` (a button may also have a wireless key: those presses come from its receiver).
* Edges of a button not in the config are counted and ignored.

Presses are returned in the order they were decided, which is not always ``t_ns`` order (a short
press is reported at its release).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.clock import seconds_to_ns
from edge.config import ButtonConfig, InputSection
from edge.events import Gesture, Press
from hardware import ButtonEdge


@dataclass(slots=True)
class ButtonStats:
    edges: int = 0  # every edge fed, unknown buttons included
    bounces_ignored: int = 0  # edges that did not lead to a confirmed level change
    unknown_button: int = 0
    presses: int = 0


@dataclass(slots=True)
class _Button:
    config: ButtonConfig
    level: bool = False  # the confirmed (debounced) level: True = pressed
    raw: bool = False  # the latest edge's level
    raw_ns: int = 0  # the edge that set ``raw``
    change_ns: int | None = None  # start of a pending change (to be confirmed or dropped)
    press_ns: int = 0  # start of the confirmed press
    long_done: bool = False  # the current press has been reported as long


class ButtonDecoder:
    """Debounces the configured buttons and reports their presses (rules: module doc)."""

    def __init__(self, buttons: Sequence[ButtonConfig], cfg: InputSection) -> None:
        self._buttons = {b.name: _Button(b) for b in buttons}
        self._debounce_ns = round(cfg.debounce_ms * 1_000_000)
        self._long_ns = seconds_to_ns(cfg.long_press_s)
        self.stats = ButtonStats()

    def feed(self, edge: ButtonEdge) -> list[Press]:
        """Take one raw edge (in ``t_ns`` order); return the presses decided up to its time."""
        self.stats.edges += 1
        button = self._buttons.get(edge.button)
        if button is None:
            self.stats.unknown_button += 1
            return []
        presses = self._advance(edge.t_ns)
        if edge.pressed != button.level and button.change_ns is None:
            button.change_ns = edge.t_ns
        else:
            self.stats.bounces_ignored += 1
        button.raw = edge.pressed
        button.raw_ns = edge.t_ns
        presses += self._advance(edge.t_ns)
        return presses

    def tick(self, now_ns: int) -> list[Press]:
        """Let time pass with no edge; return the presses decided up to ``now_ns``."""
        return self._advance(now_ns)

    def next_deadline(self) -> int | None:
        """The earliest ``t_ns`` at which :meth:`tick` would report a press; None if never."""
        deadlines = [d for b in self._buttons.values() if (d := self._report_due(b)) is not None]
        return min(deadlines, default=None)

    def _report_due(self, b: _Button) -> int | None:
        settled_ns = b.raw_ns + self._debounce_ns  # when a pending change is confirmed/dropped
        if b.change_ns is not None and b.raw != b.level:
            if b.raw:  # a press to confirm; it is reported once it reaches the threshold
                return max(settled_ns, b.change_ns + self._long_ns)
            return None if b.long_done else settled_ns  # a release to confirm: short
        if not b.level or b.long_done:
            return None
        if b.change_ns is None:
            return b.press_ns + self._long_ns
        return max(settled_ns, b.press_ns + self._long_ns)  # a release glitch to drop first

    def _step_due(self, b: _Button) -> int | None:
        """When this button's state next changes by itself."""
        if b.change_ns is not None:
            return b.raw_ns + self._debounce_ns
        if b.level and not b.long_done:
            return b.press_ns + self._long_ns
        return None

    def _advance(self, now_ns: int) -> list[Press]:
        presses: list[Press] = []
        while True:
            ready = [
                (d, b)
                for b in self._buttons.values()
                if (d := self._step_due(b)) is not None and d <= now_ns
            ]
            if not ready:
                return presses
            _, button = min(ready, key=lambda item: item[0])
            press = self._step(button)
            if press is not None:
                presses.append(press)

    def _step(self, b: _Button) -> Press | None:
        if b.change_ns is None:  # held down past the threshold
            b.long_done = True
            return self._press(b, "long", self._long_ns)
        start_ns, b.change_ns = b.change_ns, None
        if b.raw == b.level:  # the glitch is over: its first edge led nowhere either
            self.stats.bounces_ignored += 1
            return None
        b.level = b.raw
        if b.level:
            b.press_ns = start_ns
            b.long_done = False
            return None
        if b.long_done:
            return None
        return self._press(b, "short", start_ns - b.press_ns)

    def _press(self, b: _Button, gesture: Gesture, duration_ns: int) -> Press:
        self.stats.presses += 1
        c = b.config
        return Press(
            t_ns=b.press_ns,
            button=c.name,
            role=c.role,
            gesture=gesture,
            duration_ns=duration_ns,
            question=c.question,
            via="gpio",
        )
