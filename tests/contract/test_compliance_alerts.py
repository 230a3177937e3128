"""Compliance alert rules (``[[alerts.compliance]]``): the window of checked contacts, the
threshold and its edges, the hysteresis, and the config errors that name the key and the fix."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from contract.alerts import (
    NS,
    AlertConfigError,
    Checked,
    ComplianceRule,
    compliance_change,
    compliance_window,
    describe_compliance,
    parse_compliance,
)

T0 = 1_795_424_400 * NS


def rule(**kw: Any) -> ComplianceRule:
    base: dict[str, Any] = {"name": "greeting_low", "standard": "greeting", "below": 0.8}
    if "within_s" not in kw:
        base["last"] = 5
    return ComplianceRule(**{**base, **kw})


def checks(*passed: bool, step_s: int = 60) -> list[Checked]:
    """Contacts ``c0, c1, ...`` starting ``step_s`` apart, meeting the standard or not."""
    return [Checked(T0 + i * step_s * NS, f"c{i}", ok) for i, ok in enumerate(passed)]


def test_the_window_is_the_last_n_contacts_by_start_whatever_the_order_given() -> None:
    given = checks(False, False, True, True, True, True, True)
    figure = compliance_window(rule(last=5), list(reversed(given)))
    assert figure is not None
    assert (figure.checked, figure.met) == (5, 5)  # the two failures are older than the last 5
    assert figure.from_ns == T0 + 2 * 60 * NS
    assert figure.to_ns == T0 + 6 * 60 * NS
    figure = compliance_window(rule(last=6), given)
    assert figure is not None
    assert (figure.checked, figure.met, figure.failed) == (6, 5, ("c1",))
    assert compliance_window(rule(), []) is None


def test_a_within_s_window_holds_both_edges() -> None:
    given = checks(False, True, True, step_s=600)  # at 0, 600 and 1200 s
    figure = compliance_window(rule(within_s=1200), given)
    assert figure is not None
    assert figure.checked == 3  # 0 s is exactly 1200 s before the newest: inside
    figure = compliance_window(rule(within_s=1199), given)
    assert figure is not None
    assert (figure.checked, figure.met) == (2, 2)


def test_exactly_at_the_threshold_is_not_below_it() -> None:
    r = rule(below=0.8, last=5)
    at = compliance_window(r, checks(True, True, True, True, False))  # 4/5 = 0.8 exactly
    assert at is not None
    assert at.share == Fraction(4, 5)
    assert compliance_change(r, at, active=False) is None
    under = compliance_window(r, checks(True, True, True, False, False))  # 3/5
    assert compliance_change(r, under, active=False) == "raise"
    # once raised, a figure still below does nothing more (one active alert at a time)
    assert compliance_change(r, under, active=True) is None


def test_a_share_whose_float_is_not_exact_is_compared_exactly() -> None:
    r = rule(below=0.7, last=10)  # 0.7 is not exact in binary; 7/10 must not count as below
    figure = compliance_window(r, checks(*([True] * 7 + [False] * 3)))
    assert compliance_change(r, figure, active=False) is None


def test_too_few_checked_contacts_change_nothing() -> None:
    r = rule(last=5)  # min_checked unset: the window must be full
    few = compliance_window(r, checks(False, False, False, False))
    assert compliance_change(r, few, active=False) is None
    assert compliance_change(r, few, active=True) is None
    r = rule(within_s=3600, min_checked=3)
    two = compliance_window(r, checks(False, False))
    assert compliance_change(r, two, active=False) is None
    three = compliance_window(r, checks(False, False, False))
    assert compliance_change(r, three, active=False) == "raise"
    one = rule(within_s=3600)  # min_checked unset with within_s: one contact is enough
    assert compliance_change(one, compliance_window(one, checks(False)), active=False) == "raise"
    assert compliance_change(r, None, active=True) is None


def test_clear_at_keeps_a_share_at_the_threshold_from_flapping() -> None:
    r = rule(below=0.6, clear_at=0.8, last=5)
    assert r.clear_level == 0.8
    back_to_60 = compliance_window(r, checks(True, True, True, False, False))  # 3/5
    assert compliance_change(r, back_to_60, active=True) is None  # not below, not recovered
    assert compliance_change(r, back_to_60, active=False) is None
    at_80 = compliance_window(r, checks(True, True, True, True, False))
    assert compliance_change(r, at_80, active=True) == "clear"
    # without clear_at the alert clears as soon as the share is no longer below
    plain = rule(below=0.6, last=5)
    assert compliance_change(plain, back_to_60, active=True) == "clear"


def test_describe_says_the_share_the_window_and_the_threshold() -> None:
    r = rule(below=0.8, last=5)
    figure = compliance_window(r, checks(True, False, True, False, False))
    assert figure is not None
    text = describe_compliance(r, figure, "site shop-1, staff anna")
    assert text == (
        "greeting_low: 40% of the last 5 checked contacts at site shop-1, staff anna met "
        "'greeting' (2 of 5), below 80%"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"last": 5, "within_s": 600}, "set exactly one of last"),
        ({}, "set exactly one of last"),
        ({"last": 5, "clear_at": 0.5}, "clear_at = 0.5 is below below = 0.8"),
        ({"last": 5, "min_checked": 6}, "min_checked = 6 exceeds last = 5"),
        ({"last": 5, "below": 0}, "alerts.compliance[0].below = 0"),
        ({"last": 5, "below": True}, "below = True: a number, not true/false"),
        ({"last": 0}, "alerts.compliance[0].last = 0"),
        ({"last": 5, "per": "device"}, "'site' or 'staff'"),
        ({"last": 5, "standard": "Greeting!"}, "a [[rules]] name of the rules file"),
        ({"last": 5, "treshold": 1}, "unknown key 'treshold'"),
    ],
)
def test_a_bad_compliance_rule_names_the_key_the_value_and_the_fix(
    entry: dict[str, Any], message: str
) -> None:
    doc = {"alerts": {"compliance": [{"name": "x", "standard": "greeting", "below": 0.8, **entry}]}}
    with pytest.raises(AlertConfigError) as err:
        parse_compliance(doc, "sink.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("sink.toml: alerts.compliance[0]")


def test_compliance_rule_names_must_differ_from_the_window_rules() -> None:
    doc = {
        "alerts": {
            "rules": [{"name": "low", "count": "red", "at_least": 2}],
            "compliance": [{"name": "low", "standard": "greeting", "below": 0.8, "last": 5}],
        }
    }
    with pytest.raises(AlertConfigError, match="names must be unique: low"):
        parse_compliance(doc, "sink.toml")
    doc["alerts"]["compliance"][0]["name"] = "greeting_low"
    (found,) = parse_compliance(doc, "sink.toml")
    assert (found.standard, found.needed, found.per) == ("greeting", 5, "site")
