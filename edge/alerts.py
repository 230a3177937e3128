"""Alerts, the "expert system": sliding-window rules over what the device saw. Pure, no I/O.

Rules:
- What is counted are *observations*: every event (keys: its kind, e.g. ``red``, ``request``,
  ``question:2``) at its own wall time, and every contact (keys: ``contact`` and ``tag:<tag>``
  for each of its tags) at its start time.
- A rule fires at the time ``t`` of an observation carrying its ``count`` key when, among the
  observations with ``t - within_s <= time <= t`` (both edges included) that no earlier firing
  of the rule has reported (time after the last firing),
  * at least ``at_least`` carry the ``count`` key, and
  * if ``share_at_least`` is set: those are at least that share (exact fractions, no float
    rounding) of the observations carrying any ``share_of`` key (default: the ratings).
- Cooldown: after a firing at ``F`` the rule stays quiet while ``t < F + cooldown_s``; at
  exactly ``F + cooldown_s`` it may fire again. De-duplication: an observation is reported by
  one firing at most (one alert per rule per window).
- The alert id is a digest of (scope, rule name, firing time): feeding the same observations
  again, on any machine, names the same firing with the same id, so a receiver keeps it once.
- Times are integer wall-clock nanoseconds; the evaluator never reads a clock.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from edge.clock import NS
from edge.records import ContactRecord, EventRecord

MAX_REFS = 50  # ids listed in one alert


class Rule(Protocol):
    """What the evaluator needs of a rule (:class:`edge.config.AlertRule`)."""

    @property
    def name(self) -> str: ...
    @property
    def count(self) -> str: ...
    @property
    def at_least(self) -> int: ...
    @property
    def share_at_least(self) -> float | None: ...
    @property
    def share_of(self) -> list[str]: ...
    @property
    def within_s(self) -> float: ...
    @property
    def cooldown_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Observation:
    at_ns: int  # wall clock
    ref: str  # the contact's or event's id
    keys: frozenset[str]


@dataclass(frozen=True, slots=True)
class Firing:
    id: str
    rule: str
    scope: str  # the device id, or "_site" for a site-level alert
    at_ns: int
    window_start_ns: int
    count: int
    at_least: int
    total: int | None  # observations carrying a share_of key (share rules only)
    share: float | None
    share_at_least: float | None
    refs: tuple[str, ...]


def alert_id(scope: str, rule: str, at_ns: int) -> str:
    return hashlib.sha256(f"{scope}|{rule}|{at_ns}".encode()).hexdigest()[:32]


def event_keys(kind: str, question: int | None = None) -> frozenset[str]:
    if question is not None and kind == "question":
        return frozenset((kind, f"question:{question}"))
    return frozenset((kind,))


def observations(item: ContactRecord | EventRecord) -> list[Observation]:
    """A saved contact (itself and its events) or an orphan event, as observations."""
    if isinstance(item, EventRecord):
        return [Observation(item.wall_ns, item.id, event_keys(item.kind, item.question))]
    keys = frozenset(["contact", *(f"tag:{t}" for t in item.tags)])
    out = [Observation(item.start_wall_ns, item.id, keys)]
    out.extend(Observation(e.wall_ns, e.id, event_keys(e.kind, e.question)) for e in item.events)
    return out


def check(
    rule: Rule,
    seen: Sequence[Observation],
    at_ns: int,
    *,
    scope: str,
    last_fired_ns: int | None = None,
) -> Firing | None:
    """Does ``rule`` fire at ``at_ns`` over ``seen`` (any order), given its last firing?"""
    if last_fired_ns is not None and at_ns < last_fired_ns + round(rule.cooldown_s * NS):
        return None
    start = at_ns - round(rule.within_s * NS)
    window = [
        o
        for o in seen
        if start <= o.at_ns <= at_ns and (last_fired_ns is None or o.at_ns > last_fired_ns)
    ]
    counted = [o for o in window if rule.count in o.keys]
    if len(counted) < rule.at_least:
        return None
    total: int | None = None
    share: float | None = None
    if rule.share_at_least is not None:
        of = set(rule.share_of)
        total = sum(1 for o in window if o.keys & of)
        if total == 0 or Fraction(len(counted), total) < Fraction(str(rule.share_at_least)):
            return None
        share = round(len(counted) / total, 4)
    counted.sort(key=lambda o: o.at_ns)
    return Firing(
        id=alert_id(scope, rule.name, at_ns),
        rule=rule.name,
        scope=scope,
        at_ns=at_ns,
        window_start_ns=start,
        count=len(counted),
        at_least=rule.at_least,
        total=total,
        share=share,
        share_at_least=rule.share_at_least,
        refs=tuple(o.ref for o in counted[:MAX_REFS]),
    )


class AlertEvaluator:
    """Keeps the recent observations of one scope and checks every rule as they arrive."""

    def __init__(self, rules: Sequence[Rule], scope: str) -> None:
        self.rules = list(rules)
        self.scope = scope
        self._seen: list[Observation] = []  # sorted by time
        self._last: dict[str, int] = {}
        self._horizon_ns = max((round(r.within_s * NS) for r in self.rules), default=0)

    def feed(self, items: Iterable[Observation]) -> list[Firing]:
        """Add observations (in the order given); the firings they cause, oldest first."""
        fired: list[Firing] = []
        if not self.rules:
            return fired
        for obs in items:
            bisect.insort(self._seen, obs, key=lambda o: o.at_ns)
            for rule in self.rules:
                if rule.count not in obs.keys:
                    continue
                firing = check(
                    rule, self._seen, obs.at_ns, scope=self.scope,
                    last_fired_ns=self._last.get(rule.name),
                )  # fmt: skip
                if firing is not None:
                    self._last[rule.name] = firing.at_ns
                    fired.append(firing)
        self._prune()
        return fired

    def _prune(self) -> None:
        if not self._seen:
            return
        oldest = self._seen[-1].at_ns - self._horizon_ns
        cut = bisect.bisect_left(self._seen, oldest, key=lambda o: o.at_ns)
        del self._seen[:cut]

    def __len__(self) -> int:
        return len(self._seen)


def describe(firing: Firing, rule: Rule, where: str) -> str:
    """One human line for a firing, e.g. for a chat message."""
    minutes = rule.within_s / 60
    span = f"{minutes:g} min" if rule.within_s >= 60 else f"{rule.within_s:g} s"
    text = f"{rule.name}: {firing.count} x {rule.count} within {span} at {where}"
    if firing.share is not None and firing.total is not None:
        text += f" ({firing.count} of {firing.total}, {firing.share:.0%})"
    return text
