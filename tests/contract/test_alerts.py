"""The one alert engine: event-time windows whatever the delivery order, duplicates counted once,
firings never reported twice nor nearer than the cooldown; in event-time order it is the
classic sliding window (a reference written here, the way the device's evaluator used to work).
Boundary cases of a single window are in tests/edge/test_alerts.py."""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.alerts import (
    NS,
    AlertConfigError,
    AlertEvaluator,
    AlertRule,
    Firing,
    Observation,
    Span,
    alert_id,
    check,
    evaluate,
    parse_rules,
)

T0 = 1_795_424_400 * NS
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rule(**kw: Any) -> AlertRule:
    base: dict[str, Any] = {"name": "reds", "count": "red", "at_least": 3, "within_s": 900}
    return AlertRule(**{**base, **kw})


def obs(kind: str, at_s: float, ref: str | None = None) -> Observation:
    return Observation(T0 + round(at_s * NS), ref or f"{kind}@{at_s}", frozenset([kind]))


# --- rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "msg"),
    [
        ({"at_least": True}, "alerts.rules[0].at_least = True: a number, not true/false"),
        ({"within_s": False}, "alerts.rules[0].within_s = False: a number"),
        ({"share_of": ["greem"]}, "share_of 'greem' is not something to count (did you mean"),
        ({"cooldown_s": -1}, "alerts.rules[0].cooldown_s = -1: Expected `float` >= 0.0; seconds"),
    ],
)
def test_a_bad_rule_names_the_key_the_value_and_the_fix(entry: dict[str, Any], msg: str) -> None:
    doc = {"alerts": {"rules": [{"name": "x", "count": "red", "at_least": 2, **entry}]}}
    with pytest.raises(AlertConfigError) as err:
        parse_rules(doc, "sink.toml")
    assert msg in str(err.value)
    assert str(err.value).startswith("sink.toml: ")


# --- the case: reds at 30 s and 130 s from one device, 40 s from another --------------

A30, A130, B40 = obs("red", 30, "a30"), obs("red", 130, "a130"), obs("red", 40, "b40")


@pytest.mark.parametrize("order", list(itertools.permutations([A30, A130, B40])))
def test_the_same_firing_in_every_delivery_order(order: tuple[Observation, ...]) -> None:
    ev = AlertEvaluator([rule(cooldown_s=0)], "_site", late_s=900)
    fired = [f for o in order for f in ev.feed([o])]
    assert [(f.id, f.count, f.refs) for f in fired] == [
        (alert_id("_site", "reds", T0 + 130 * NS), 3, ("a30", "b40", "a130"))
    ]


def test_a_late_observation_completes_a_window_ending_before_the_newest() -> None:
    ev = AlertEvaluator([rule()], "d", late_s=3600)
    assert ev.feed([A30, A130, obs("red", 1000)]) == []  # the window ending at 1000 s: one red
    (fired,) = ev.feed([B40])
    assert (fired.at_ns, fired.count) == (T0 + 130 * NS, 3)


def test_an_observation_delivered_twice_counts_once() -> None:
    ev = AlertEvaluator([rule()], "d", late_s=900)
    assert ev.feed([A30, B40]) == []
    assert ev.feed([B40]) == []  # again: still two reds
    assert ev.feed([A30, B40]) == []
    (fired,) = ev.feed([A130])
    assert fired.count == 3
    seen = [A30, B40, B40, A130]
    assert evaluate(rule(), seen, [A130], scope="d") == [fired]


def test_within_late_s_an_observation_is_late_beyond_it_the_clock_stepped_back() -> None:
    ev = AlertEvaluator([rule(at_least=2, cooldown_s=900)], "d", late_s=60)
    (fired,) = ev.feed([obs("red", 990), obs("red", 1000)])
    assert ev.feed([obs("red", 940)]) == []  # 60 s late: in the fired window, not again
    assert ev.restarts == 0
    # NTP steps the wall clock back by an hour: the rules start over at the new times instead
    # of staying silent until the clock is past 1000 s again
    assert ev.feed([obs("red", 1000 - 3600)]) == []
    assert ev.restarts == 1
    (again,) = ev.feed([obs("red", 1010 - 3600)])
    assert (again.at_ns, again.count) == (T0 + (1010 - 3600) * NS, 2)
    assert fired.at_ns == T0 + 1000 * NS


def test_a_late_observation_a_firing_covers_is_not_reported_again() -> None:
    ev = AlertEvaluator([rule(cooldown_s=0)], "d", late_s=3600)
    (first,) = ev.feed([obs("red", t) for t in (0, 100, 200)])
    assert ev.feed([obs("red", 50)]) == []  # inside the fired window
    assert ev.feed([obs("red", 210), obs("red", 220)]) == []  # 50 s is not counted again
    (second,) = ev.feed([obs("red", 230)])
    assert second.refs == ("red@210", "red@220", "red@230")
    assert first.at_ns == T0 + 200 * NS


def test_the_cooldown_holds_in_event_time_before_and_after_a_firing() -> None:
    r = rule(within_s=60, cooldown_s=900)
    ev = AlertEvaluator([r], "d", late_s=3600)
    (fired,) = ev.feed([obs("red", t) for t in (150, 170, 200)])
    assert ev.feed([obs("red", t) for t in (10, 20, 30)]) == []  # 170 s before it: quiet
    assert fired.at_ns == T0 + 200 * NS
    assert len(ev.feed([obs("red", t) for t in (1080, 1090, 1100)])) == 1  # 900 s after it


def test_check_honours_firings_on_either_side() -> None:
    seen = [obs("red", t) for t in (0, 10, 20, 30)]
    r = rule(cooldown_s=0)
    assert check(r, seen, T0 + 20 * NS, scope="d") is not None
    later = Span(T0 + 25 * NS - 900 * NS, T0 + 25 * NS)  # a firing at 25 s covers 20 s
    assert check(r, seen, T0 + 20 * NS, scope="d", fired=[later]) is None
    earlier = Span(T0 - 900 * NS, T0 + 5 * NS)  # covers the red at 0 s: two left
    assert check(r, seen, T0 + 20 * NS, scope="d", fired=[earlier]) is None


# --- properties ---------------------------------------------------------------------------------


def reference(r: AlertRule, seen: list[Observation], scope: str) -> list[Firing]:
    """The classic sliding window over the whole history in event-time order: a rule fires at a
    counted observation's time over the observations after its last firing, unless cooling."""
    within, cooldown = round(r.within_s * NS), round(r.cooldown_s * NS)
    unique = sorted(set(seen), key=lambda o: (o.at_ns, o.ref))
    last: int | None = None
    out: list[Firing] = []
    for t in sorted({o.at_ns for o in unique if r.count in o.keys}):
        if last is not None and t < last + cooldown:
            continue
        window = [
            o for o in unique if t - within <= o.at_ns <= t and (last is None or o.at_ns > last)
        ]
        counted = [o for o in window if r.count in o.keys]
        if len(counted) < r.at_least:
            continue
        total, share = None, None
        if r.share_at_least is not None:
            total = sum(1 for o in window if o.keys & set(r.share_of))
            if Fraction(len(counted), total) < Fraction(str(r.share_at_least)):
                continue
            share = round(len(counted) / total, 4)
        firing = Firing(
            alert_id(scope, r.name, t), r.name, scope, t, t - within, len(counted),
            r.at_least, total, share, r.share_at_least, tuple(o.ref for o in counted),
        )  # fmt: skip
        out.append(firing)
        last = t
    return out


rules = st.builds(
    lambda at_least, within, cooldown, share: rule(
        at_least=at_least, within_s=within, cooldown_s=cooldown, share_at_least=share
    ),
    st.integers(1, 4),
    st.sampled_from([30, 60, 300]),
    st.sampled_from([0, 20, 60, 600]),
    st.sampled_from([None, 0.5, 0.75]),
)


def histories(distinct_times: bool = False) -> st.SearchStrategy[list[Observation]]:
    """Up to 30 observations on a 10 s grid over 10 minutes."""
    kinds = st.sampled_from(["red", "red", "green", "yellow", "request"])
    items = st.lists(
        st.tuples(kinds, st.integers(0, 60)),
        max_size=30,
        unique_by=(lambda item: item[1]) if distinct_times else None,
    )
    return items.map(
        lambda drawn: [
            Observation(T0 + at * 10 * NS, f"{kind}{i}", frozenset([kind]))
            for i, (kind, at) in enumerate(drawn)
        ]
    )


@PROPERTY
@given(rules, histories(distinct_times=True))
def test_in_event_time_order_it_is_the_classic_sliding_window(
    r: AlertRule, seen: list[Observation]
) -> None:
    in_order = sorted(seen, key=lambda o: (o.at_ns, o.ref))
    one_by_one = AlertEvaluator([r], "d")
    fired = [f for o in in_order for f in one_by_one.feed([o])]
    assert fired == reference(r, seen, "d")
    assert AlertEvaluator([r], "d").feed(seen) == fired  # all at once, in any order


@PROPERTY
@given(rules, histories())
def test_all_at_once_it_is_the_classic_sliding_window(
    r: AlertRule, seen: list[Observation]
) -> None:
    # (one by one, observations at the same instant are not: the first may fire alone)
    assert AlertEvaluator([r], "d").feed(seen) == reference(r, seen, "d")


@PROPERTY
@given(rules, histories(), st.randoms(use_true_random=False))
def test_in_any_delivery_order_nothing_is_reported_twice_nor_too_soon(
    r: AlertRule, seen: list[Observation], rnd: Any
) -> None:
    shuffled = list(seen)
    rnd.shuffle(shuffled)
    ev = AlertEvaluator([r], "d", late_s=3600)
    fired: list[Firing] = []
    while shuffled:
        n = rnd.randint(1, 4)
        batch, shuffled = shuffled[:n], shuffled[n:]
        fired.extend(ev.feed(batch))
    reported = [ref for f in fired for ref in f.refs]
    assert len(reported) == len(set(reported))
    times = sorted(f.at_ns for f in fired)
    assert all(b - a >= max(r.cooldown_s * NS, 1) for a, b in itertools.pairwise(times))
    by_ref = {o.ref: o for o in seen}
    for f in fired:
        assert f.id == alert_id("d", r.name, f.at_ns)
        assert f.count >= r.at_least
        assert all(f.window_start_ns <= by_ref[ref].at_ns <= f.at_ns for ref in f.refs)
        assert all(r.count in by_ref[ref].keys for ref in f.refs)
