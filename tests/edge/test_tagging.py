"""Tag rules applied to hand-built contacts (domain.md, "Tagging")."""

from __future__ import annotations

import pytest

from edge.clock import NS
from edge.config import TaggingSection, TagRule
from edge.events import Arrival, Contact, ContactMode, Departure, EdgeEvent, EndedBy, Press, Receipt
from edge.tagging import apply_rules

DEFAULT_RULES = TaggingSection().rules


def press(t_s: float, role: str, gesture: str = "short", question: int | None = None) -> Press:
    return Press(
        t_ns=round(t_s * NS),
        button=role,
        role=role,
        gesture="long" if gesture == "long" else "short",
        question=question,
    )


def contact(
    mode: ContactMode,
    events: list[EdgeEvent],
    ended_by: EndedBy | None = "departure",
) -> Contact:
    return Contact(
        id="c1",
        mode=mode,
        start_ns=0,
        end_ns=None if ended_by is None else 100 * NS,
        ended_by=ended_by,
        events=events,
    )


def visit(*middle: EdgeEvent, ended_by: EndedBy = "departure") -> Contact:
    """A presence contact: arrival at 0 s, the given events, departure at 100 s."""
    return contact("presence", [Arrival(0), *middle, Departure(100 * NS)], ended_by)


def tags(c: Contact) -> list[str]:
    return apply_rules(c, DEFAULT_RULES)


# --- each default rule, firing and not firing -------------------------------------------------


def test_red_is_negative_and_not_positive() -> None:
    got = tags(visit(press(10, "red")))
    assert "negative" in got
    assert "not_positive" in got
    assert "positive" not in got


def test_no_red_is_not_negative() -> None:
    assert "negative" not in tags(visit(press(10, "yellow")))


def test_green_is_positive_and_not_not_positive() -> None:
    got = tags(visit(press(10, "green")))
    assert "positive" in got
    assert "not_positive" not in got
    assert "negative" not in got


def test_yellow_is_unsure() -> None:
    assert "unsure" in tags(visit(press(10, "yellow")))
    assert "unsure" not in tags(visit(press(10, "green")))


@pytest.mark.parametrize("mode", ["presence", "survey"])
def test_no_rating_is_silent_in_presence_and_survey(mode: ContactMode) -> None:
    assert "silent" in tags(contact(mode, [press(10, "seller")], "no_answer"))


@pytest.mark.parametrize("rating", ["green", "yellow", "red"])
def test_any_rating_is_not_silent(rating: str) -> None:
    assert "silent" not in tags(visit(press(10, rating)))


def test_window_contact_is_never_silent() -> None:
    # The silent rule is limited to presence and survey contacts.
    assert "silent" not in tags(contact("window", [press(10, "request")], "window"))


def test_receipt_is_productive() -> None:
    got = tags(visit(Receipt(50 * NS, "r-1")))
    assert "productive" in got
    assert "unproductive" not in got


def test_no_receipt_is_unproductive() -> None:
    got = tags(visit(press(10, "green")))
    assert "unproductive" in got
    assert "productive" not in got


@pytest.mark.parametrize("mode", ["survey", "window"])
def test_productivity_only_for_presence(mode: ContactMode) -> None:
    got = tags(contact(mode, [Receipt(50 * NS)], "window"))
    assert "productive" not in got
    assert "unproductive" not in got


def test_request_button_is_request() -> None:
    assert "request" in tags(visit(press(10, "request")))
    assert "request" not in tags(visit(press(10, "green")))


def test_seller_long_is_force_majeure_short_is_not() -> None:
    assert "force_majeure" in tags(visit(press(10, "seller", "long")))
    assert "force_majeure" not in tags(visit(press(10, "seller", "short")))


def test_timeout_tag_follows_ended_by() -> None:
    assert "timeout" in tags(visit(ended_by="timeout"))
    assert "timeout" not in tags(visit(ended_by="departure"))


def test_open_contact_matches_no_ended_by_rule() -> None:
    rule = TagRule(tag="any-end", ended_by=["departure", "timeout", "window", "shutdown"])
    assert apply_rules(contact("presence", [], None), [rule]) == []


# --- rule mechanics --------------------------------------------------------------------------


def test_tags_in_rule_order_without_duplicates() -> None:
    rules = [
        TagRule(tag="b", if_any=["green"]),
        TagRule(tag="a", if_any=["arrival"]),
        TagRule(tag="b", if_any=["arrival"]),
        TagRule(tag="c", if_none=["red"]),
    ]
    assert apply_rules(visit(press(10, "green")), rules) == ["b", "a", "c"]


def test_all_conditions_must_hold() -> None:
    rule = TagRule(
        tag="angry-and-left",
        if_any=["red", "yellow"],
        if_none=["receipt"],
        ended_by=["departure"],
        modes=["presence"],
    )
    assert apply_rules(visit(press(10, "red")), [rule]) == ["angry-and-left"]
    # Each condition alone can veto the rule.
    assert apply_rules(visit(press(10, "green")), [rule]) == []
    assert apply_rules(visit(press(10, "red"), Receipt(20 * NS)), [rule]) == []
    assert apply_rules(visit(press(10, "red"), ended_by="timeout"), [rule]) == []
    survey = contact("survey", [press(10, "red")], "departure")
    assert apply_rules(survey, [rule]) == []


def test_a_pressed_twice_button_gives_its_tag_once() -> None:
    got = tags(visit(press(10, "red"), press(11, "red")))
    assert got.count("negative") == 1


def test_question_kind_matches_its_number_only() -> None:
    rules = [
        TagRule(tag="nps", if_any=["question:1"]),
        TagRule(tag="improve", if_any=["question:2"]),
        TagRule(tag="asked", if_any=["question"]),
    ]
    c = contact("window", [press(10, "question", question=1)], "window")
    assert apply_rules(c, rules) == ["nps", "asked"]


def test_scenario_sale_with_red_rating() -> None:
    c = visit(Receipt(50 * NS), press(60, "red"))
    got = tags(c)
    assert {"negative", "not_positive", "productive"} <= set(got)
    assert not {"silent", "positive", "unproductive", "timeout"} & set(got)
