"""The domain's metrics over a set of contacts (as ``sink contacts --json`` gives them).

Pure functions, no I/O. The definitions follow domain.md and its source (the "customer
service monitoring" methodology in ``seeds/``): a contact point asks every customer one *key
question* on its rating panel (green = yes, yellow = hard to say, red = no), the seller's
short press marks the start of a *survey*, the seller's long press a *force-majeure* situation,
and the till reports each sale (a *receipt*, a transaction).

Counts over the contacts of a period (and, for event counts, the events outside any contact):

- **contacts served** (``contacts_served``) = the presence sensor's contact counter: contacts of
  mode ``presence``. Without any presence contact (a counter without a sensor) every contact
  counts. The *served* contacts are the base of the rating shares below.
- positive / negative / silent = served contacts tagged ``positive`` (green), ``negative``
  (red), ``silent`` (no rating at all: a "молчун");
- productive = served contacts tagged ``productive`` (a receipt while the customer was there);
- receipts = ``receipt`` events (transactions), surveys = ``seller_short`` events,
  force majeure = ``seller_long`` events, wherever they happened (inside a contact or not);
- visitors = contacts of mode ``presence`` (customers the sensor saw arrive at the counter:
  it counts contacts, not the shop's visitors; a door counter is not wired).

Metrics (``k`` = the correction factor, ``T`` = the force-majeure threshold):

- ``support_index`` (customer support index) = positive / served;
- ``dissatisfaction_index`` (customer dissatisfaction index) = negative / served;
- ``staff_dissatisfaction_index`` (ИНК@Персонал, dissatisfaction with staff) = (negative + k ×
  silent) / served: the share of "no" answers plus the share of silent customers weighted by
  ``k``, read when the key question is about the staff member ("Are you satisfied with the
  work of ...?");
- ``loyalty_index`` (ИЭЛ, emotional loyalty index, an NPS adapted to retail) = (positive −
  negative − k × silent) / served, from −1 to 1, read when the key question is "Would you
  recommend us?";
- ``personal_conversion`` = productive / served (of one seller when grouped by staff);
- ``exact_conversion`` (точная конверсия) = surveys / receipts;
- ``visitor_coverage`` (коэффициент охвата посетителей) = surveys / visitors;
- ``force_majeure_level`` (уровень форс-мажора) = force majeure / surveys;
- ``meaningful`` = False when the force-majeure level is above ``T`` (or there were
  force-majeure presses but no survey at all): the period's quality scores should not be
  judged until the causes are removed. True otherwise.

``k`` (``correction_factor``, 0..1, default 0.5: half the silent customers are taken as
dissatisfied) and ``T`` (``force_majeure_threshold``, default 0.1) are parameters: the source
names them without fixing values. An index whose denominator is 0 is None ("no data"), never 0.
The device computes the same figures for today in its status (``edge.live``), from its own
copy of the two parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: The metric keys of :meth:`Metrics.as_json`, in order.
METRIC_KEYS: tuple[str, ...] = (
    "contacts_served",
    "support_index",
    "dissatisfaction_index",
    "staff_dissatisfaction_index",
    "loyalty_index",
    "personal_conversion",
    "exact_conversion",
    "visitor_coverage",
    "force_majeure_level",
    "meaningful",
)


@dataclass(frozen=True, slots=True)
class Parameters:
    correction_factor: float = 0.5
    force_majeure_threshold: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.correction_factor <= 1:
            raise ValueError(
                f"correction_factor must be between 0 and 1, got {self.correction_factor!r}"
            )
        if not 0 <= self.force_majeure_threshold <= 10:
            raise ValueError(
                "force_majeure_threshold must be between 0 and 10, got "
                f"{self.force_majeure_threshold!r}"
            )


@dataclass(frozen=True, slots=True)
class Counts:
    contacts: int = 0
    served: int = 0
    positive: int = 0
    negative: int = 0
    silent: int = 0
    productive: int = 0
    receipts: int = 0
    surveys: int = 0
    force_majeure: int = 0
    visitors: int = 0

    def as_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Metrics:
    contacts_served: int
    support_index: float | None
    dissatisfaction_index: float | None
    staff_dissatisfaction_index: float | None
    loyalty_index: float | None
    personal_conversion: float | None
    exact_conversion: float | None
    visitor_coverage: float | None
    force_majeure_level: float | None
    meaningful: bool

    def as_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in METRIC_KEYS}


def _ratio(numerator: float, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def count(
    contacts: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]] = ()
) -> Counts:
    """The counts of a set of contacts plus ``events`` outside any contact."""
    rows = list(contacts)
    presence = [c for c in rows if c.get("mode") == "presence"]
    served = presence or rows

    def tagged(tag: str) -> int:
        return sum(1 for c in served if tag in c.get("tags", ()))

    kinds = [e.get("kind") for c in rows for e in c.get("events", ())]
    kinds += [e.get("kind") for e in events]
    return Counts(
        contacts=len(rows),
        served=len(served),
        positive=tagged("positive"),
        negative=tagged("negative"),
        silent=tagged("silent"),
        productive=tagged("productive"),
        receipts=kinds.count("receipt"),
        surveys=kinds.count("seller_short"),
        force_majeure=kinds.count("seller_long"),
        visitors=len(presence),
    )


def metrics(c: Counts, params: Parameters = Parameters()) -> Metrics:
    """The metrics of some counts (definitions in the module docstring)."""
    k, n = params.correction_factor, c.served
    level = _ratio(c.force_majeure, c.surveys)
    too_much = c.force_majeure > 0 and (level is None or level > params.force_majeure_threshold)
    return Metrics(
        contacts_served=n,
        support_index=_ratio(c.positive, n),
        dissatisfaction_index=_ratio(c.negative, n),
        staff_dissatisfaction_index=_ratio(c.negative + k * c.silent, n),
        loyalty_index=_ratio(c.positive - c.negative - k * c.silent, n),
        personal_conversion=_ratio(c.productive, n),
        exact_conversion=_ratio(c.surveys, c.receipts),
        visitor_coverage=_ratio(c.surveys, c.visitors),
        force_majeure_level=level,
        meaningful=not too_much,
    )


def compute(
    contacts: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]] = (),
    params: Parameters = Parameters(),
) -> Metrics:
    return metrics(count(contacts, events), params)


# --- the first subset, kept for ``contactpoint demo`` ----------------------------------------


@dataclass(frozen=True, slots=True)
class ShiftMetrics:
    contacts: int
    contacts_served: int
    positive: int
    negative: int
    silent: int
    productive: int
    surveys: int
    force_majeure: int
    support_index: float | None
    dissatisfaction_index: float | None
    silent_share: float | None
    personal_conversion: float | None
    force_majeure_level: float | None


def shift_metrics(contacts: Iterable[Mapping[str, Any]]) -> ShiftMetrics:
    c = count(contacts)
    m = metrics(c)
    return ShiftMetrics(
        contacts=c.contacts,
        contacts_served=c.served,
        positive=c.positive,
        negative=c.negative,
        silent=c.silent,
        productive=c.productive,
        surveys=c.surveys,
        force_majeure=c.force_majeure,
        support_index=m.support_index,
        dissatisfaction_index=m.dissatisfaction_index,
        silent_share=_ratio(c.silent, c.served),
        personal_conversion=m.personal_conversion,
        force_majeure_level=m.force_majeure_level,
    )
