"""The domain's metrics over a set of contacts (as ``sink contacts --json`` gives them).

Pure functions, no I/O. Definitions (domain.md):

- contacts served: presence contacts (the sensor's contact counter); without any presence
  contact (no sensor), every contact counts;
- customer support index = served contacts rated positive / contacts served;
- customer dissatisfaction index = served contacts rated negative / contacts served;
- silent share = served contacts with no rating / contacts served;
- personal conversion = productive served contacts (a receipt while the customer was there) /
  contacts served;
- surveys = seller short presses (survey starts); force-majeure level = seller long presses /
  surveys (None without surveys).

An index whose denominator is 0 is None ("not meaningful"), never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


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


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def shift_metrics(contacts: Iterable[Mapping[str, Any]]) -> ShiftMetrics:
    rows = list(contacts)
    presence = [c for c in rows if c.get("mode") == "presence"]
    served = presence or rows

    def tagged(tag: str) -> int:
        return sum(1 for c in served if tag in c.get("tags", ()))

    kinds = [e.get("kind") for c in rows for e in c.get("events", ())]
    surveys = kinds.count("seller_short")
    force = kinds.count("seller_long")
    positive, negative, silent = tagged("positive"), tagged("negative"), tagged("silent")
    productive = tagged("productive")
    n = len(served)
    return ShiftMetrics(
        contacts=len(rows),
        contacts_served=n,
        positive=positive,
        negative=negative,
        silent=silent,
        productive=productive,
        surveys=surveys,
        force_majeure=force,
        support_index=_ratio(positive, n),
        dissatisfaction_index=_ratio(negative, n),
        silent_share=_ratio(silent, n),
        personal_conversion=_ratio(productive, n),
        force_majeure_level=_ratio(force, surveys),
    )
