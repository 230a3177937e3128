"""The shift metrics against values computed by hand."""

from __future__ import annotations

from typing import Any

from cloud_sink.metrics import shift_metrics


def contact(mode: str, tags: list[str], kinds: list[str] = []) -> dict[str, Any]:  # noqa: B006
    return {"mode": mode, "tags": tags, "events": [{"kind": k} for k in kinds]}


def test_metrics_by_hand() -> None:
    contacts = [
        contact("presence", ["negative", "not_positive", "productive"], ["red", "receipt"]),
        contact("presence", ["positive", "productive"], ["green", "receipt", "seller_short"]),
        contact("presence", ["not_positive", "silent", "unproductive"]),
        contact("presence", ["not_positive", "unsure", "force_majeure"], ["seller_long"]),
        contact("survey", ["not_positive", "unsure"], ["seller_short", "yellow"]),
        contact("window", ["request"], ["request"]),
    ]
    m = shift_metrics(contacts)
    assert (m.contacts, m.contacts_served) == (6, 4)  # only presence contacts are "served"
    assert m.support_index == 1 / 4
    assert m.dissatisfaction_index == 1 / 4
    assert m.silent_share == 1 / 4
    assert m.personal_conversion == 2 / 4
    assert (m.surveys, m.force_majeure, m.force_majeure_level) == (2, 1, 1 / 2)


def test_without_presence_every_contact_is_served_and_empty_is_none() -> None:
    m = shift_metrics([contact("survey", ["positive"], ["seller_short", "green"])])
    assert m.contacts_served == 1 and m.support_index == 1.0
    empty = shift_metrics([])
    assert empty.support_index is None and empty.force_majeure_level is None
    assert empty.contacts_served == 0
