"""Every metric of cloud_sink/metrics.py against values computed by hand, and the one table of
definitions that the report and the demo take their labels from."""

from __future__ import annotations

from typing import Any

import pytest

import cloud_sink.metrics
from cloud_sink.metrics import DEFINITIONS, METRIC_KEYS, Parameters, compute, count


def contact(mode: str, tags: list[str], kinds: list[str] = []) -> dict[str, Any]:  # noqa: B006
    return {"mode": mode, "tags": tags, "events": [{"kind": k} for k in kinds]}


SHIFT = [
    # one receipt
    contact("presence", ["negative", "not_positive", "productive"], ["red", "receipt"]),
    # two receipts in one contact: two sales, one productive contact
    contact(
        "presence", ["positive", "productive"], ["green", "receipt", "receipt", "seller_short"]
    ),
    contact("presence", ["not_positive", "silent", "unproductive"]),
    contact("presence", ["not_positive", "unsure", "force_majeure"], ["seller_long"]),
    contact("survey", ["not_positive", "unsure"], ["seller_short", "yellow"]),  # not served
    contact("window", ["request"], ["request", "receipt"]),  # not served; its receipt counts
]
OUTSIDE = [{"kind": "receipt"}, {"kind": "red"}]  # events outside any contact


def test_counts_by_hand() -> None:
    c = count(SHIFT, OUTSIDE)
    assert (c.contacts, c.served, c.visitors) == (6, 4, 4)  # only presence contacts are "served"
    assert (c.positive, c.negative, c.silent, c.productive) == (1, 1, 1, 2)
    # 1 + 2 in served contacts, 1 in the window contact, 1 outside any contact
    assert c.receipts == 5
    assert (c.surveys, c.force_majeure) == (2, 1)


def test_every_metric_by_hand() -> None:
    m = compute(SHIFT, OUTSIDE, Parameters(correction_factor=0.5, force_majeure_threshold=0.1))
    assert m.contacts_served == 4
    assert m.support_index == 1 / 4  # 1 positive / 4 served
    assert m.dissatisfaction_index == 1 / 4  # 1 negative / 4 served
    assert m.staff_dissatisfaction_index == (1 + 0.5 * 1) / 4
    assert m.loyalty_index == (1 - 1 - 0.5 * 1) / 4
    # Личная Конверсия: receipts / contacts served; a contact with two receipts counts two and
    # the receipts outside the served contacts count toward the period's receipts
    assert m.personal_conversion == 5 / 4
    assert m.productive_share == 2 / 4  # productive contacts / served
    assert m.exact_conversion == 2 / 5  # 2 surveys / 5 receipts
    assert m.visitor_coverage == 2 / 4  # 2 surveys / 4 visitors
    assert m.force_majeure_level == 1 / 2  # 1 long press / 2 surveys
    assert m.meaningful is False  # 0.5 > 0.1


def test_personal_conversion_is_not_the_productive_share() -> None:
    """The defect this module once had: conversion = productive / served."""
    one_big_sale = [contact("presence", ["productive"], ["receipt", "receipt", "receipt"])]
    m = compute(one_big_sale)
    assert m.personal_conversion == 3.0
    assert m.productive_share == 1.0
    only_outside = compute([contact("presence", ["unproductive"])], [{"kind": "receipt"}])
    assert only_outside.personal_conversion == 1.0
    assert only_outside.productive_share == 0.0


def test_without_presence_every_contact_is_served_and_empty_is_none() -> None:
    m = compute([contact("survey", ["positive"], ["seller_short", "green"])])
    assert m.contacts_served == 1
    assert m.support_index == 1.0
    empty = compute([])
    assert empty.contacts_served == 0
    assert empty.support_index is None
    assert empty.personal_conversion is None
    assert empty.productive_share is None
    assert empty.force_majeure_level is None
    assert empty.meaningful is True


def test_one_definition_per_metric_documented_in_the_module() -> None:
    assert tuple(d.key for d in DEFINITIONS) == METRIC_KEYS
    doc = cloud_sink.metrics.__doc__ or ""
    for d in DEFINITIONS:
        assert d.name, d.key
        assert d.formula, d.key
        # the docstring table carries each formula exactly as the labels print it
        assert f"``{d.key}``" in doc, d.key
        assert d.formula in doc, d.key
    by_key = {d.key: d for d in DEFINITIONS}
    assert by_key["personal_conversion"].formula == "receipts / contacts served"
    assert by_key["productive_share"].formula == "productive contacts / contacts served"
    assert by_key["personal_conversion"].label == (
        "personal conversion (receipts / contacts served)"
    )
    ratios = [d for d in DEFINITIONS if d.key not in ("contacts_served", "meaningful")]
    for d in ratios:  # every ratio says what it divides by what
        assert " / " in d.formula, d.key
        assert d.formula in d.label, d.key


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_parameters_are_bounded(bad: float) -> None:
    with pytest.raises(ValueError, match="correction_factor must be between 0 and 1"):
        Parameters(correction_factor=bad)
