"""Alert rules, the "expert system": the rule model and the ONE windowed evaluation engine that
the device (``edge/alerts.py``, one device's observations) and the sink (``cloud_sink/alerts.py``,
every device of a site) both use. Pure: no I/O, no clock.

Rules:
- What is counted are *observations*: every event (keys: its kind, e.g. ``red``, ``request``,
  and ``question:N``) at its own wall time, and every contact (keys: ``contact`` and
  ``tag:<tag>`` for each of its tags) at its start time. Times are event times, integer
  wall-clock nanoseconds. An observation delivered twice (same ref, time and keys) is one.
- A rule is checked at the time ``t`` of each observation carrying its ``count`` key, over the
  window ``t - within_s <= time <= t`` (both edges included). When observations arrive, every
  window that holds one of them is checked, oldest first: also windows that end at
  observations which arrived earlier, so a device that delivers late still completes the
  window its observations belong to, however much newer the newest observation is.
- A window fires when, among its observations that no firing of the rule covers (a firing
  covers its own window, ``window_start <= time <= at``),
  * at least ``at_least`` carry the ``count`` key, and
  * if ``share_at_least`` is set: those are at least that share (exact fractions, no float
    rounding) of the observations carrying any ``share_of`` key (default: the ratings);
  and its end ``t`` is itself uncovered and at least ``cooldown_s`` away from every firing of
  the rule (a firing at ``F`` keeps the rule quiet while ``F <= t < F + cooldown_s``; at
  exactly ``F + cooldown_s`` it may fire again). So an observation is reported by one firing
  at most, and firings of a rule are ``cooldown_s`` apart in event time, whatever the order.
- Firings are facts, never withdrawn (they have been sent). The result is therefore the same
  for every delivery order as long as no window reached its threshold before a late
  observation of it arrived; if one did, the late observation counts only where no firing
  covers it (it is not reported twice).
- The alert id is a digest of (scope, rule name, firing time): the same firing has the same id
  on any machine, after any restart and in any delivery order, so a receiver keeps it once.
- :class:`AlertEvaluator` keeps one scope's recent observations in memory (the device);
  :func:`evaluate` is the engine itself, for a caller that keeps them elsewhere (the sink's
  database).

Compliance rules (``[[alerts.compliance]]``, :class:`ComplianceRule`; the sink only, where
transcripts are checked against the service standards) watch a *level*, not a burst:
- The figure is the share of checked contacts meeting one standard (``met / checked``) in a
  window of the scope's checked contacts (a site, or one staff member at a site), ordered by
  the contacts' start: the ``last`` N of them, or those that started within ``within_s`` of
  the newest one (both edges included). :func:`compliance_window` picks the window.
- :func:`compliance_change` says what a new figure does to the rule's alert: with fewer than
  ``min_checked`` contacts in the window, nothing; otherwise an inactive rule is *raised* when
  the share is strictly below ``below``, an active one *cleared* when the share is at or above
  ``clear_at`` (default ``below``; higher: a share hovering at the threshold does not raise
  and clear by turns). Exact fractions, no float rounding.
"""

from __future__ import annotations

import bisect
import difflib
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from msgspec import Meta, field

from contract import wire
from contract.config import FieldError, Section, fields, locate_error

NS: Final = 1_000_000_000
MAX_REFS: Final = 50  # ids listed in one alert
#: names of devices, sites, tags and rules: lower-case letters, digits, '-' and '_'
NAME_PATTERN: Final = f"^{wire.NAME_PATTERN}$"  # a rule name travels as ``alert.rule``
#: the kinds of event the devices report (besides ``question:N`` for one question button)
EVENT_KINDS: Final = (
    "green", "yellow", "red", "request", "seller_short", "seller_long", "question", "receipt",
    "arrival", "departure",
)  # fmt: skip
RATINGS: Final = ("green", "yellow", "red")


def is_question_kind(kind: str) -> bool:
    """``question:N``: the presses of one question button."""
    head, _, number = kind.partition(":")
    return head == "question" and number.isdigit()


def is_countable(key: str) -> bool:
    """An observation key a rule can count: an event kind, ``question:N``, ``contact`` or
    ``tag:<tag>``."""
    head, _, rest = key.partition(":")
    if key == "contact" or key in EVENT_KINDS or is_question_kind(key):
        return True
    return head == "tag" and re.fullmatch(NAME_PATTERN, rest) is not None


def _countable(key: str, field: str) -> str:
    if not is_countable(key):
        hint = difflib.get_close_matches(key, [*EVENT_KINDS, "contact"], n=1)
        raise ValueError(
            f"{field} {key!r} is not something to count"
            + (f" (did you mean '{hint[0]}'?)" if hint else "")
            + f"; allowed: an event kind ({', '.join(EVENT_KINDS)}, question:N), 'contact', "
            "or 'tag:<tag>' (contacts with that tag)"
        )
    return key


# --- the rule ------------------------------------------------------------------------------------


class AlertRule(Section):
    """One ``[[alerts.rules]]`` table, the same on the device and in the sink."""

    name: Annotated[str, Meta(pattern=NAME_PATTERN, description="Unique name of the rule")]
    count: Annotated[
        str,
        Meta(
            description="What is counted: an event kind (red, request, question:2 ...), "
            "'contact', or 'tag:<tag>' (contacts with that tag, at their start)"
        ),
    ]
    at_least: Annotated[
        int, Meta(ge=1, le=100_000, description="Fire when at least this many are in the window")
    ]
    share_at_least: (
        Annotated[
            float,
            Meta(
                gt=0,
                le=1,
                description="Also require them to be at least this share of the 'share_of' "
                "observations in the window (unset: no share condition)",
            ),
        ]
        | None
    ) = None
    share_of: Annotated[
        list[str],
        Meta(description="The denominator of the share: observations with any of these keys"),
    ] = field(default_factory=lambda: list(RATINGS))
    within_s: Annotated[
        float, Meta(ge=1, le=7 * 86400, description="Length of the sliding window (s)")
    ] = 900.0
    cooldown_s: Annotated[
        float,
        Meta(ge=0, le=7 * 86400, description="After firing, stay quiet this long (s)"),
    ] = 900.0

    def __post_init__(self) -> None:
        # a number given as TOML true/false is refused where the document is converted
        try:
            _countable(self.count, "count")
        except ValueError as exc:
            raise FieldError("count", str(exc)) from None
        for key in self.share_of:
            try:
                _countable(key, "share_of")
            except ValueError as exc:
                raise FieldError("share_of", str(exc)) from None
        if self.share_at_least is not None and not self.share_of:
            raise ValueError(f"rule '{self.name}': share_at_least needs share_of")


class ComplianceRule(Section):
    """One ``[[alerts.compliance]]`` table of the sink's config: an alert while the share of
    contacts meeting a service standard is below a threshold."""

    name: Annotated[str, Meta(pattern=NAME_PATTERN, description="Unique name of the rule")]
    standard: Annotated[
        str,
        Meta(
            pattern=NAME_PATTERN,
            description="The service-standard rule watched: a [[rules]] name of the rules file "
            "(sink transcribe --rules), e.g. 'greeting'",
        ),
    ]
    below: Annotated[
        float,
        Meta(
            gt=0,
            le=1,
            description="Raise the alert when the share of checked contacts meeting the "
            "standard is below this (0.8 = 80 %)",
        ),
    ]
    clear_at: (
        Annotated[
            float,
            Meta(
                gt=0,
                le=1,
                description="Clear it when the share is back at or above this (unset: 'below')",
            ),
        ]
        | None
    ) = None
    last: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=10_000,
                description="The share over the last N checked contacts (by their start); set this "
                "or within_s",
            ),
        ]
        | None
    ) = None
    within_s: (
        Annotated[
            float,
            Meta(
                ge=1,
                le=90 * 86400,
                description="The share over the checked contacts that started within this many "
                "seconds of the newest one; set this or last",
            ),
        ]
        | None
    ) = None
    min_checked: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=10_000,
                description="Judge only with at least this many checked contacts in the window "
                "(unset: 'last', or 1 with within_s)",
            ),
        ]
        | None
    ) = None
    per: Annotated[
        Literal["site", "staff"],
        Meta(description="One figure per site, or per staff member at a site"),
    ] = "site"

    def __post_init__(self) -> None:
        if (self.last is None) == (self.within_s is None):
            raise ValueError(
                f"rule '{self.name}': set exactly one of last (the last N checked contacts) "
                "and within_s (the contacts of a period)"
            )
        if self.clear_at is not None and self.clear_at < self.below:
            raise ValueError(
                f"rule '{self.name}': clear_at = {self.clear_at} is below below = "
                f"{self.below}; it must be at least that (or unset)"
            )
        if self.last is not None and self.min_checked is not None and self.min_checked > self.last:
            raise ValueError(
                f"rule '{self.name}': min_checked = {self.min_checked} exceeds last = "
                f"{self.last}: the window never holds that many"
            )

    @property
    def clear_level(self) -> float:
        return self.below if self.clear_at is None else self.clear_at

    @property
    def needed(self) -> int:
        """Checked contacts a window needs before the figure counts."""
        if self.min_checked is not None:
            return self.min_checked
        return self.last if self.last is not None else 1


def duplicate_names(rules: Iterable[AlertRule | ComplianceRule]) -> list[str]:
    """Rule names used more than once (names must be unique: they name the alerts)."""
    names = [r.name for r in rules]
    return sorted({n for n in names if names.count(n) > 1})


class AlertConfigError(ValueError):
    """An ``[[alerts.rules]]`` entry is wrong; the message names it, the key, the value and
    what is allowed."""


def parse_rules(doc: dict[str, Any], source: str) -> list[AlertRule]:
    """The ``[[alerts.rules]]`` of a parsed TOML document (none: no rules).

    For a file read outside a larger schema (the sink's ``--config``); the device's
    config validates the same :class:`AlertRule` inside its own schema."""
    section = doc.get("alerts", {})
    if not isinstance(section, dict) or set(section) - {"rules", "compliance"}:
        raise AlertConfigError(
            f"{source}: [alerts] takes only [[alerts.rules]] and [[alerts.compliance]] tables"
        )
    raw = section.get("rules", [])
    if not isinstance(raw, list):
        raise AlertConfigError(f"{source}: alerts.rules must be a list of tables")
    rules = [_rule(entry, f"{source}: alerts.rules[{i}]", AlertRule) for i, entry in enumerate(raw)]
    twice = duplicate_names(rules)
    if twice:
        raise AlertConfigError(f"{source}: alert rule names must be unique: {', '.join(twice)}")
    return rules


_R = TypeVar("_R", AlertRule, ComplianceRule)


def parse_compliance(doc: dict[str, Any], source: str) -> list[ComplianceRule]:
    """The ``[[alerts.compliance]]`` of a parsed TOML document (none: no rules); their names
    must differ from each other and from the ``[[alerts.rules]]``."""
    rules = parse_rules(doc, source)
    raw = doc.get("alerts", {}).get("compliance", [])
    if not isinstance(raw, list):
        raise AlertConfigError(f"{source}: alerts.compliance must be a list of tables")
    found = [
        _rule(entry, f"{source}: alerts.compliance[{i}]", ComplianceRule)
        for i, entry in enumerate(raw)
    ]
    twice = duplicate_names([*rules, *found])
    if twice:
        raise AlertConfigError(f"{source}: alert rule names must be unique: {', '.join(twice)}")
    return found


def _rule(entry: Any, where: str, model: type[_R]) -> _R:
    if not isinstance(entry, dict):
        raise AlertConfigError(f"{where}: must be a table")
    try:
        return msgspec.convert(entry, model)
    except msgspec.ValidationError as exc:
        raise AlertConfigError(_first_problem(exc, entry, where, model)) from None


def _first_problem(
    exc: msgspec.ValidationError,
    entry: dict[str, Any],
    where: str,
    model: type[AlertRule | ComplianceRule] = AlertRule,
) -> str:
    keys = list(fields(model))
    kind, message, loc = locate_error(exc)
    key = str(loc[0]) if loc else ""
    if kind == "unknown":
        close = difflib.get_close_matches(key, keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{where}: unknown key {key!r}{hint}; keys: {', '.join(keys)}"
    if kind == "missing":
        return f"{where}: missing {key!r}"
    if not key:
        return f"{where}: {message}"
    allowed = {
        "name": "use lower-case letters, digits, - and _ (at most 64)",
        "at_least": "a whole number from 1 to 100000",
        "share_at_least": "a number in (0, 1]",
        "within_s": "seconds, from 1 to 604800"
        if model is AlertRule
        else "seconds, from 1 to 7776000",
        "cooldown_s": "seconds, from 0 to 604800",
        "standard": "a [[rules]] name of the rules file (lower-case letters, digits, - and _)",
        "below": "a share in (0, 1], e.g. 0.8",
        "clear_at": "a share in (0, 1], at least 'below'",
        "last": "a whole number from 1 to 10000",
        "min_checked": "a whole number from 1 to 10000",
        "per": "'site' or 'staff'",
    }.get(key)
    return f"{where}.{key} = {entry.get(key)!r}: {message}" + (f"; {allowed}" if allowed else "")


# --- compliance ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checked:
    """A contact checked against one standard: its start (wall ns), its id, the outcome."""

    at_ns: int
    ref: str
    passed: bool


@dataclass(frozen=True, slots=True)
class ComplianceFigure:
    """The share of a window's checked contacts meeting the standard."""

    checked: int
    met: int
    from_ns: int  # the first contact's start in the window
    to_ns: int  # the newest contact's start
    failed: tuple[str, ...]  # contacts not meeting it, newest first (at most MAX_REFS)

    @property
    def share(self) -> Fraction:
        return Fraction(self.met, self.checked)


def compliance_window(rule: ComplianceRule, checks: Iterable[Checked]) -> ComplianceFigure | None:
    """The figure over the rule's window of ``checks`` (any order, a superset of the window is
    fine); None when there is no checked contact."""
    items = sorted(set(checks), key=lambda c: (c.at_ns, c.ref))
    if not items:
        return None
    if rule.last is not None:
        window = items[-rule.last :]
    else:
        newest = items[-1].at_ns
        start = newest - round((rule.within_s or 0) * NS)
        window = [c for c in items if c.at_ns >= start]
    failed = [c.ref for c in reversed(window) if not c.passed]
    return ComplianceFigure(
        checked=len(window),
        met=sum(1 for c in window if c.passed),
        from_ns=window[0].at_ns,
        to_ns=window[-1].at_ns,
        failed=tuple(failed[:MAX_REFS]),
    )


Change = Literal["raise", "clear"]


def compliance_change(
    rule: ComplianceRule, figure: ComplianceFigure | None, *, active: bool
) -> Change | None:
    """What ``figure`` does to the rule's alert (``active``: raised and not cleared)."""
    if figure is None or figure.checked < rule.needed:
        return None
    if not active and figure.share < Fraction(str(rule.below)):
        return "raise"
    if active and figure.share >= Fraction(str(rule.clear_level)):
        return "clear"
    return None


def describe_compliance(rule: ComplianceRule, figure: ComplianceFigure, where: str) -> str:
    """One human line for a compliance figure, e.g. for a chat message."""
    window = (
        f"the last {figure.checked} checked contacts"
        if rule.last is not None
        else f"{figure.checked} checked contacts within {(rule.within_s or 0) / 3600:g} h"
    )
    return (
        f"{rule.name}: {float(figure.share):.0%} of {window} at {where} met "
        f"'{rule.standard}' ({figure.met} of {figure.checked}), below {rule.below:.0%}"
    )


# --- observations and firings --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observation:
    at_ns: int  # wall clock, event time
    ref: str  # the contact's or event's id
    keys: frozenset[str]


@dataclass(frozen=True, slots=True)
class Span:
    """What a firing covers: its window, ``start_ns <= time <= end_ns`` (``end_ns`` is the
    firing time)."""

    start_ns: int
    end_ns: int

    def covers(self, at_ns: int) -> bool:
        return self.start_ns <= at_ns <= self.end_ns


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

    @property
    def span(self) -> Span:
        return Span(self.window_start_ns, self.at_ns)


def alert_id(scope: str, rule: str, at_ns: int) -> str:
    return hashlib.sha256(f"{scope}|{rule}|{at_ns}".encode()).hexdigest()[:32]


def event_keys(kind: str, question: object = None) -> frozenset[str]:
    if kind == "question" and isinstance(question, int) and not isinstance(question, bool):
        return frozenset((kind, f"question:{question}"))
    return frozenset((kind,))


def contact_keys(tags: Iterable[str]) -> frozenset[str]:
    return frozenset(["contact", *(f"tag:{t}" for t in tags)])


def describe(firing: Firing, rule: AlertRule, where: str) -> str:
    """One human line for a firing, e.g. for a chat message."""
    span = f"{rule.within_s / 60:g} min" if rule.within_s >= 60 else f"{rule.within_s:g} s"
    text = f"{rule.name}: {firing.count} x {rule.count} within {span} at {where}"
    if firing.share is not None and firing.total is not None:
        text += f" ({firing.count} of {firing.total}, {firing.share:.0%})"
    return text


# --- the engine ----------------------------------------------------------------------------------


def _order(o: Observation) -> tuple[int, str]:
    return o.at_ns, o.ref


class _Seen:
    """Observations sorted by (time, ref), without repeats."""

    def __init__(self, items: Iterable[Observation] = ()) -> None:
        self.items = sorted(set(items), key=_order)
        self.times = [o.at_ns for o in self.items]

    def between(self, lo_ns: int, hi_ns: int) -> list[Observation]:
        lo = bisect.bisect_left(self.times, lo_ns)
        return self.items[lo : bisect.bisect_right(self.times, hi_ns)]


def _blocked(rule: AlertRule, at_ns: int, fired: Sequence[Span]) -> bool:
    """Already fired at ``at_ns``, inside a firing's window, or nearer a firing (before or
    after) than the cooldown."""
    cooldown = round(rule.cooldown_s * NS)
    return any(
        s.end_ns == at_ns or s.covers(at_ns) or abs(at_ns - s.end_ns) < cooldown for s in fired
    )


def _check(
    rule: AlertRule, seen: _Seen, at_ns: int, scope: str, fired: Sequence[Span]
) -> Firing | None:
    if _blocked(rule, at_ns, fired):
        return None
    start = at_ns - round(rule.within_s * NS)
    window = [o for o in seen.between(start, at_ns) if not any(s.covers(o.at_ns) for s in fired)]
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


def check(
    rule: AlertRule,
    seen: Iterable[Observation],
    at_ns: int,
    *,
    scope: str,
    fired: Sequence[Span] = (),
) -> Firing | None:
    """Does the window of ``rule`` ending at ``at_ns`` fire over ``seen`` (any order), given
    the rule's firings so far (``fired``: any order, before or after ``at_ns``)?"""
    return _check(rule, _Seen(seen), at_ns, scope, fired)


def evaluate(
    rule: AlertRule,
    seen: Iterable[Observation],
    new: Iterable[Observation],
    *,
    scope: str,
    fired: Sequence[Span] = (),
) -> list[Firing]:
    """The firings of ``rule`` that the arrival of ``new`` causes, oldest first.

    ``seen`` holds every observation of the scope that a window holding a new one can hold
    (from ``min(new) - within_s`` to ``max(new) + within_s``), the new ones included; ``fired``
    the rule's firings that end from ``min(new) - max(within_s, cooldown_s)`` on. Every window
    that holds a new observation is checked, oldest first; each firing is a fact for the next.
    """
    arrived = list(new)
    if not arrived:
        return []
    window = _Seen(seen)
    lo = min(o.at_ns for o in arrived)
    hi = max(o.at_ns for o in arrived) + round(rule.within_s * NS)
    ends = sorted({o.at_ns for o in window.between(lo, hi) if rule.count in o.keys})
    spans = list(fired)
    out: list[Firing] = []
    for at_ns in ends:
        firing = _check(rule, window, at_ns, scope, spans)
        if firing is not None:
            out.append(firing)
            spans.append(firing.span)
    return out


class AlertEvaluator:
    """Keeps one scope's recent observations and firings in memory and evaluates every rule
    as observations arrive (the device).

    ``late_s``: how much older than the newest observation seen so far an observation may
    arrive and still be evaluated against everything it shares a window with; observations
    and firings are kept that long (plus the longest window and cooldown). Observations older
    than that mean the wall clock stepped back (NTP on a device without a real-time clock):
    the evaluator starts over from them, forgetting what it kept (counted in
    :attr:`restarts`); refusing them instead would silence every rule until the wall clock
    caught up with the newest time seen before the step.
    """

    def __init__(self, rules: Sequence[AlertRule], scope: str, *, late_s: float = 0.0) -> None:
        self.rules = list(rules)
        self.scope = scope
        self.late_s = late_s
        self.restarts = 0
        self._late_ns = round(late_s * NS)
        self._within_ns = max((round(r.within_s * NS) for r in self.rules), default=0)
        self._reach_ns = max(
            (round(max(r.within_s, r.cooldown_s) * NS) for r in self.rules), default=0
        )
        self._seen: list[Observation] = []  # sorted by (time, ref)
        self._known: set[Observation] = set()
        self._fired: dict[str, list[Span]] = {r.name: [] for r in self.rules}
        self._newest: int | None = None

    def feed(self, items: Iterable[Observation]) -> list[Firing]:
        """Add observations (in any order); the firings they cause, oldest first."""
        if not self.rules:
            return []
        new = [o for o in dict.fromkeys(items) if o not in self._known]  # twice: once
        if not new:
            return []
        oldest = min(o.at_ns for o in new)
        if self._newest is not None and oldest < self._newest - self._late_ns:
            self.restarts += 1  # the clock stepped back: start over
            self._seen, self._known, self._newest = [], set(), None
            self._fired = {r.name: [] for r in self.rules}
        for obs in new:
            bisect.insort(self._seen, obs, key=_order)
            self._known.add(obs)
        fired: list[tuple[int, int, Firing]] = []
        for index, rule in enumerate(self.rules):
            spans = self._fired[rule.name]
            for firing in evaluate(rule, self._seen, new, scope=self.scope, fired=spans):
                spans.append(firing.span)
                fired.append((firing.at_ns, index, firing))
        newest = max(o.at_ns for o in new)
        self._newest = newest if self._newest is None else max(self._newest, newest)
        self._prune()
        return [f for _, _, f in sorted(fired, key=lambda x: (x[0], x[1]))]

    def _prune(self) -> None:
        if self._newest is None:
            return
        oldest = self._newest - self._late_ns - self._within_ns
        cut = bisect.bisect_left([o.at_ns for o in self._seen], oldest)
        for obs in self._seen[:cut]:
            self._known.discard(obs)
        del self._seen[:cut]
        keep_from = self._newest - self._late_ns - self._reach_ns
        for name, spans in self._fired.items():
            self._fired[name] = [s for s in spans if s.end_ns >= keep_from]

    def __len__(self) -> int:
        return len(self._seen)
