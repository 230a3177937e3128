"""The domain's metrics over a set of contacts (as ``sink contacts --json`` gives them).

Pure functions, no I/O. The definitions follow domain.md ("Metrics") and its source (the Russian
product pages in ``seeds/``): a contact point asks every customer one *key question* on its
rating panel (green = yes, yellow = hard to say, red = no), the seller's short press marks the
start of a *survey*, the seller's long press a *force-majeure* situation, and the till reports
each sale (a *receipt*, a transaction).

Counts over the contacts of a period (and, for event counts, the events outside any contact):

- **contacts served** = the presence sensor's contact counter: contacts of mode ``presence``.
  Without any presence contact (a counter without a sensor) every contact counts. The served
  contacts are the denominator of the per-contact shares below.
- positive / negative / silent = served contacts tagged ``positive`` (green), ``negative``
  (red), ``silent`` (no rating at all: a "молчун");
- productive contacts = served contacts tagged ``productive`` (at least one receipt while the
  customer was there: a contact with two receipts is *one* productive contact);
- receipts = ``receipt`` events (sales, transactions) of the period wherever they happened:
  inside a served contact, inside another contact, or outside any contact. A contact with two
  receipts counts two. Surveys = ``seller_short`` events, force majeure = ``seller_long``
  events, counted the same way;
- visitors = contacts of mode ``presence`` (customers the sensor saw arrive at the counter:
  it counts contacts, not the shop's visitors; a door counter is not wired).

The metrics, one row each (``k`` = the correction factor, ``T`` = the force-majeure
threshold). The middle column is the formula every label prints (:data:`DEFINITIONS`), the
right one what domain.md says (its source's Russian name in brackets):

==============================  ================================================================
key                             formula / domain.md
==============================  ================================================================
``contacts_served``             presence-sensor contacts (all contacts without a sensor)
                                "Contacts served (the presence sensor's contact counter)."
``support_index``               positive / contacts served
                                "Customer support index = positive ratings / contacts served."
``dissatisfaction_index``       negative / contacts served
                                "Customer dissatisfaction index = negative ratings / contacts
                                served."
``staff_dissatisfaction_index`` (negative + k x silent) / contacts served
                                "Dissatisfaction with staff = share of negative answers + share
                                of silent customers × a correction factor, for the question
                                about the staff member." (ИНК@Персонал)
``loyalty_index``               (positive - negative - k x silent) / contacts served
                                "Emotional loyalty index (an NPS adapted to retail) = share
                                positive − share negative − share silent × correction factor,
                                for 'Would you recommend us?'." (ИЭЛ; from -1 to 1)
``personal_conversion``         receipts / contacts served
                                "Personal conversion = receipts / contacts of that seller."
                                (Личная Конверсия: "отношение числа продаж (чеков) к числу
                                контактов продавца с покупателями"; of one seller when the
                                report groups by staff)
``productive_share``            productive contacts / contacts served
                                not in domain.md: the share of served contacts with at least
                                one receipt (the tags "Результативный контакт" /
                                "Безрезультатный контакт"); at most 1, unlike the conversion
``exact_conversion``            surveys / receipts
                                "Exact conversion = surveys / transactions" (Точная Конверсия)
``visitor_coverage``            surveys / visitors
                                "visitor coverage = surveys / visitors" (Коэффициент Охвата
                                Посетителей)
``force_majeure_level``         force majeure / surveys
                                "force-majeure level = force-majeure presses / surveys (above a
                                threshold, quality scores for the period are not meaningful)"
``meaningful``                  force-majeure level <= T
                                False when the level is above ``T`` (or there were
                                force-majeure presses but no survey at all): the period's
                                quality scores should not be judged until the causes are gone
==============================  ================================================================

``k`` (``correction_factor``, 0..1, default 0.5: half the silent customers are taken as
dissatisfied) and ``T`` (``force_majeure_threshold``, default 0.1) are parameters: the source
names them without fixing values. A ratio whose denominator is 0 is None ("no data"), never 0.
The device computes the same figures for today in its status (``edge.live``), from its own
copy of the two parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Definition:
    """One metric: its key, its name and the formula every label prints beside the name."""

    key: str
    name: str
    formula: str  # what it divides by what (the docstring table's middle column)
    short: str  # a narrow table's column header: a short name over the formula in two
    over: str  # terse lines, the numerator (words as in :data:`TERSE_WORDS`) ...
    under: str  # ... and "/ denominator"

    @property
    def label(self) -> str:
        """``name (formula)``: what a person reads."""
        return f"{self.name} ({self.formula})"

    @property
    def header(self) -> str:
        """Three short lines for a narrow column: name, numerator, "/ denominator"."""
        return f"{self.short}\n{self.over}\n{self.under}"


#: The metrics in report order (the module docstring's table, one row each).
DEFINITIONS: tuple[Definition, ...] = (
    # key, name,
    #     formula (every label prints it),
    #     a narrow column's header: short name, numerator, denominator
    Definition("contacts_served", "contacts served",
               "presence-sensor contacts (all contacts without a sensor)",
               "served", "count", ""),
    Definition("support_index", "customer support index",
               "positive / contacts served",
               "support", "pos", "/ served"),
    Definition("dissatisfaction_index", "customer dissatisfaction index",
               "negative / contacts served",
               "dissat.", "neg", "/ served"),
    Definition("staff_dissatisfaction_index", "dissatisfaction with staff",
               "(negative + k x silent) / contacts served",
               "staff dis.", "neg+k*sil", "/ served"),
    Definition("loyalty_index", "emotional loyalty index",
               "(positive - negative - k x silent) / contacts served",
               "loyalty", "pos-neg-k*sil", "/ served"),
    Definition("personal_conversion", "personal conversion",
               "receipts / contacts served",
               "pers. conv.", "receipts", "/ served"),
    Definition("productive_share", "productive share",
               "productive contacts / contacts served",
               "productive", "prod", "/ served"),
    Definition("exact_conversion", "exact conversion",
               "surveys / receipts",
               "exact conv.", "surveys", "/ receipts"),
    Definition("visitor_coverage", "visitor coverage",
               "surveys / visitors",
               "coverage", "surveys", "/ visitors"),
    Definition("force_majeure_level", "force-majeure level",
               "force majeure / surveys",
               "f.m. level", "f.m.", "/ surveys"),
    Definition("meaningful", "period meaningful",
               "force-majeure level <= T",
               "meaningful", "f.m. level", "<= T"),
)  # fmt: skip

#: The abbreviations of :attr:`Definition.header`, for a legend.
TERSE_WORDS: str = (
    "served = contacts served; pos, neg, sil, prod = positive, negative, silent, productive "
    "contacts served; f.m. = force-majeure presses; k = correction factor; T = force-majeure "
    "threshold"
)

#: The metric keys of :meth:`Metrics.as_json`, in order.
METRIC_KEYS: tuple[str, ...] = tuple(d.key for d in DEFINITIONS)


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
    productive_share: float | None
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
        personal_conversion=_ratio(c.receipts, n),
        productive_share=_ratio(c.productive, n),
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
