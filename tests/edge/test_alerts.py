"""Alert rules at their boundaries: count N-1/N, share just below/at, window edge, cooldown."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from contract.alerts import AlertEvaluator, AlertRule, Observation, alert_id, check, describe
from edge.alerts import observations
from edge.clock import NS
from edge.config import Config, ConfigError, parse_model
from edge.records import ContactRecord, EventRecord
from edge.scenario import load_scenario
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store

T0 = 1_795_424_400 * NS
W = 900  # s


def rule(**kw: Any) -> AlertRule:
    base: dict[str, Any] = {
        "name": "negative_burst", "count": "red", "at_least": 4, "within_s": W, "cooldown_s": W,
    }  # fmt: skip
    return AlertRule(**{**base, **kw})


def obs(kind: str, at_s: float, ref: str | None = None) -> Observation:
    return Observation(T0 + round(at_s * NS), ref or f"{kind}@{at_s}", frozenset([kind]))


def feed(ev: AlertEvaluator, *items: Observation) -> list[str]:
    return [f.id for f in ev.feed(items)]


# --- count ---------------------------------------------------------------------------------


def test_fires_at_exactly_n_and_not_at_n_minus_1() -> None:
    ev = AlertEvaluator([rule()], "cp-1")
    assert feed(ev, obs("red", 0), obs("red", 10), obs("red", 20)) == []  # N-1
    fired = ev.feed([obs("red", 30)])
    assert len(fired) == 1
    f = fired[0]
    assert (f.count, f.at_least, f.rule, f.scope) == (4, 4, "negative_burst", "cp-1")
    assert f.at_ns == T0 + 30 * NS
    assert f.window_start_ns == T0 + (30 - W) * NS
    assert f.refs == ("red@0", "red@10", "red@20", "red@30")
    assert f.total is None
    assert f.share is None


def test_other_kinds_do_not_count() -> None:
    ev = AlertEvaluator([rule()], "cp-1")
    assert (
        feed(ev, *(obs("green", t) for t in range(10)), *(obs("red", t) for t in (1, 2, 3))) == []
    )


# --- window edge ---------------------------------------------------------------------------


def test_an_observation_exactly_within_s_old_counts() -> None:
    first = obs("red", 0)
    later = [obs("red", t) for t in (100, 200, W)]  # the last is exactly W after the first
    assert check(rule(), [first, *later], T0 + W * NS, scope="d") is not None


def test_an_observation_one_ns_older_than_the_window_does_not() -> None:
    first = Observation(T0 - 1, "old", frozenset(["red"]))
    later = [obs("red", t) for t in (100, 200, W)]
    assert check(rule(), [first, *later], T0 + W * NS, scope="d") is None


def test_observations_after_the_firing_time_are_not_in_its_window() -> None:
    seen = [obs("red", t) for t in (0, 1, 2, 50)]
    assert check(rule(), seen, T0 + 2 * NS, scope="d") is None  # only 3 up to t=2


# --- share ---------------------------------------------------------------------------------


def share_rule(share: float = 0.5) -> AlertRule:
    return rule(share_at_least=share)


def test_share_at_the_threshold_fires() -> None:
    # 4 red of 8 ratings = 0.5 exactly
    seen = [obs("green", t) for t in range(1, 5)] + [obs("red", t) for t in range(5, 9)]
    f = check(share_rule(), seen, T0 + 8 * NS, scope="d")
    assert f is not None
    assert (f.count, f.total, f.share) == (4, 8, 0.5)


def test_share_just_below_the_threshold_does_not() -> None:
    # 4 red of 9 ratings = 0.444
    seen = [obs("green", t) for t in range(0, 5)] + [obs("red", t) for t in range(5, 9)]
    assert check(share_rule(), seen, T0 + 8 * NS, scope="d") is None


def test_share_uses_exact_fractions() -> None:
    # 3 of 10 is exactly 0.3 (0.3 * 10 in floats is 3.0000000000000004)
    seen = [obs("yellow", t) for t in range(0, 7)] + [obs("red", t) for t in range(7, 10)]
    r = rule(at_least=3, share_at_least=0.3)
    assert check(r, seen, T0 + 9 * NS, scope="d") is not None
    r = rule(at_least=3, share_at_least=0.31)
    assert check(r, seen, T0 + 9 * NS, scope="d") is None


def test_non_ratings_are_not_in_the_denominator() -> None:
    seen = [obs("arrival", t) for t in range(0, 20)] + [obs("red", t) for t in range(20, 24)]
    f = check(share_rule(1.0), seen, T0 + 23 * NS, scope="d")
    assert f is not None
    assert f.total == 4
    assert f.share == 1.0


# --- cooldown and de-duplication -----------------------------------------------------------


def test_cooldown_edge() -> None:
    r = rule(at_least=1, cooldown_s=60)
    ev = AlertEvaluator([r], "d")
    assert len(feed(ev, obs("red", 0))) == 1
    assert feed(ev, obs("red", 59.999)) == []  # inside the cooldown
    assert len(feed(ev, obs("red", 60))) == 1  # exactly at its end


def test_one_alert_per_window_even_without_cooldown() -> None:
    ev = AlertEvaluator([rule(cooldown_s=0)], "d")
    fired = feed(ev, *(obs("red", t) for t in range(0, 7)))
    assert len(fired) == 1  # reds 5..7 do not re-report reds 1..4
    fired = feed(ev, obs("red", 7))
    assert len(fired) == 1  # four new ones: 4, 5, 6, 7


def test_the_alert_id_is_stable_for_the_same_firing() -> None:
    items = [obs("red", t) for t in (0, 5, 10, 15)]
    a = AlertEvaluator([rule()], "cp-1").feed(items)
    b = AlertEvaluator([rule()], "cp-1").feed(items)
    assert (
        [f.id for f in a] == [f.id for f in b] == [alert_id("cp-1", "negative_burst", T0 + 15 * NS)]
    )
    c = AlertEvaluator([rule()], "cp-2").feed(items)
    assert c[0].id != a[0].id  # another scope is another alert


def test_requests_per_hour_limit() -> None:
    r = rule(name="requests_per_hour", count="request", at_least=10, within_s=3600, cooldown_s=3600)
    spaced_401 = AlertEvaluator([r], "d")  # the 10th comes 3609 s after the 1st: 9 in an hour
    assert feed(spaced_401, *(obs("request", t * 401) for t in range(10))) == []
    spaced_400 = AlertEvaluator([r], "d")  # the 10th exactly 3600 s after the 1st
    fired = spaced_400.feed([obs("request", t * 400) for t in range(10)])
    assert len(fired) == 1
    assert fired[0].count == 10


def test_rules_are_independent() -> None:
    reds = rule(at_least=2)
    requests = rule(name="requests", count="request", at_least=2)
    ev = AlertEvaluator([reds, requests], "d")
    fired = ev.feed([obs("red", 0), obs("request", 1), obs("red", 2), obs("request", 3)])
    assert [f.rule for f in fired] == ["negative_burst", "requests"]


def test_old_observations_are_forgotten() -> None:
    ev = AlertEvaluator([rule(at_least=100)], "d")
    feed(ev, *(obs("red", t * 100) for t in range(100)))
    assert len(ev) <= W // 100 + 1


# --- records as observations ---------------------------------------------------------------


def test_contacts_and_events_become_observations() -> None:
    red = EventRecord(id="e1", kind="red", t_ns=5 * NS, wall_ns=T0 + 5 * NS, contact_id="c1")
    question = EventRecord(
        id="e2", kind="question", t_ns=6 * NS, wall_ns=T0 + 6 * NS, contact_id="c1", question=2
    )
    contact = ContactRecord(
        id="c1", mode="presence", start_ns=NS, end_ns=9 * NS, start_wall_ns=T0 + NS,
        end_wall_ns=T0 + 9 * NS, ended_by="departure", tags=("negative", "silent"),
        events=(red, question), clip=None, clock_synced=True, boot_id="b",
    )  # fmt: skip
    got = observations(contact)
    assert got[0] == Observation(
        T0 + NS, "c1", frozenset({"contact", "tag:negative", "tag:silent"})
    )
    assert got[1] == Observation(T0 + 5 * NS, "e1", frozenset({"red"}))
    assert got[2] == Observation(T0 + 6 * NS, "e2", frozenset({"question", "question:2"}))
    assert observations(red) == [got[1]]
    tagged = AlertEvaluator([rule(count="tag:negative", at_least=1)], "d").feed(got)
    assert len(tagged) == 1
    assert tagged[0].refs == ("c1",)


def test_describe_says_what_fired() -> None:
    seen = [obs("green", t) for t in range(0, 2)] + [obs("red", t) for t in range(2, 6)]
    r = share_rule()
    f = check(r, seen, T0 + 5 * NS, scope="d")
    assert f is not None
    assert describe(f, r, "site-1/cp-1") == (
        "negative_burst: 4 x red within 15 min at site-1/cp-1 (4 of 6, 67%)"
    )


# --- on the device: contacts reach the evaluator late ----------------------------------------

LATE_CONTACT = """
start = "2026-11-23T09:00:00Z"
duration = 150.0
[[customers]]
arrive = 10.0
leave = 60.0
distance_m = 0.5
[[presses]]
at = 30.0
button = "red"
[[presses]]
at = 40.0
button = "red"
[[presses]]
at = 64.0
button = "red"
"""


def test_a_contact_saved_after_a_later_orphan_event_still_counts(tmp_path: Path) -> None:
    # The contact (10 s .. 60 s, reds at 30 s and 40 s) waits 120 s of post-roll for its clip;
    # the red at 64 s, pressed after the customer left, is an orphan once no window can claim it
    # (``before_s``, 60 s, later): the device saves the third red before the first two. In event
    # time the three are one burst.
    cfg = Config.from_dict(
        {
            "contacts": {"post_roll_s": 120},
            "alerts": {"rules": [{"name": "reds", "count": "red", "at_least": 3}]},
        }
    )
    path = tmp_path / "scenario.toml"
    path.write_text(LATE_CONTACT)
    alerts: list[dict[str, Any]] = []
    data = tmp_path / "data"
    summary = run_simulation(cfg, load_scenario(path, cfg), path, data, on_alert=alerts.append)
    assert (summary.contacts, summary.orphan_events) == (1, 1)
    with closing(Store.open(data / STORE_NAME)) as store:
        kinds = [row.kind for row in store.outbox.pending()]
    assert kinds[:2] == ["event", "contact"]  # the red at 64 s was saved first
    (alert,) = alerts
    assert (alert["alert"]["at"], alert["alert"]["count"]) == ("2026-11-23T09:01:04.000Z", 3)


# --- config --------------------------------------------------------------------------------


def test_default_rules_are_the_issues_examples() -> None:
    rules = {r.name: r for r in Config().alerts.rules}
    burst = rules["negative_burst"]
    assert (burst.count, burst.at_least, burst.share_at_least, burst.within_s) == (
        "red", 4, 0.5, 900.0,
    )  # fmt: skip
    assert rules["requests_per_hour"].within_s == 3600


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"count": "rde"}, "did you mean 'red'"),
        ({"count": "tag:Bad Tag"}, "not something to count"),
        ({"share_of": ["greem"]}, "share_of 'greem'"),
        ({"at_least": 0}, "alerts.rules[0].at_least"),
        ({"share_at_least": 1.5}, "alerts.rules[0].share_at_least"),
        ({"within_s": 0.5}, "alerts.rules[0].within_s"),
        ({"windw_s": 5}, "Did you mean 'within_s'"),
    ],
)
def test_bad_rules_are_refused_naming_the_key(entry: dict[str, Any], message: str) -> None:
    raw = {"name": "x", "count": "red", "at_least": 2, **entry}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_model(Config, {"alerts": {"rules": [raw]}}, "device.toml")


def test_rule_names_are_unique() -> None:
    raw = {"name": "x", "count": "red", "at_least": 2}
    with pytest.raises(ConfigError, match="unique: x"):
        parse_model(Config, {"alerts": {"rules": [raw, raw]}}, "device.toml")
