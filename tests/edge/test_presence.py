"""PresenceDetector: median filter, hysteresis, dwell, backdating and no-echo runs, on fake time.

Scenes are "true distance as a function of time", sampled every 0.1 s. With a near value of
0.5 m and a far value of 1.6 m (their mean, 1.05 m, lies inside the 0.9-1.2 m hysteresis band),
the median of N readings crosses a threshold only once a strict majority has changed: N // 2
readings after the true change. That lag is where the expected (backdated) times come from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import NS, seconds_to_ns
from edge.config import PresenceSection
from edge.events import Arrival, Departure
from edge.presence import PresenceDetector
from hardware import Distance

STEP = NS // 10  # the default ranging interval, 0.1 s
NEAR = 0.5
FAR = 1.6
Scene = Callable[[int], float | None]
Reported = list[tuple[int, Arrival | Departure]]  # (time of the reading that reported it, event)


def cfg(**fields: Any) -> PresenceSection:
    """The defaults (window 5, near 0.9, far 1.2, arrive 1 s, leave 3 s, no echo 2 s) + fields."""
    return PresenceSection.from_dict(fields)


def at(seconds: float) -> int:
    return seconds_to_ns(seconds)


def lag(window: int) -> int:
    return (window // 2) * STEP


def piecewise(*segments: tuple[float, float | None]) -> Scene:
    """Each (start_s, meters) holds from its start until the next segment's start."""
    starts = [(at(start), meters) for start, meters in segments]

    def distance(t_ns: int) -> float | None:
        value: float | None = None
        for start, meters in starts:
            if t_ns >= start:
                value = meters
        return value

    return distance


def readings(scene: Scene, end_s: float, start_s: float = 0.0) -> list[Distance]:
    return [Distance(scene(t), t) for t in range(at(start_s), at(end_s), STEP)]


def replace(rs: list[Distance], t_s: float, meters: float | None) -> list[Distance]:
    """The same readings with the one at ``t_s`` changed."""
    t_ns = at(t_s)
    assert any(r.t_ns == t_ns for r in rs)
    return [Distance(meters, r.t_ns) if r.t_ns == t_ns else r for r in rs]


def run(det: PresenceDetector, rs: list[Distance]) -> Reported:
    out: Reported = []
    for r in rs:
        out.extend((r.t_ns, event) for event in det.feed(r))
    return out


def events(det: PresenceDetector, rs: list[Distance]) -> list[Arrival | Departure]:
    return [event for _, event in run(det, rs)]


# --- clean arrivals and departures -------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5, 6, 7])
def test_clean_visit_is_backdated_to_the_filtered_change(window: int) -> None:
    det = PresenceDetector(cfg(median_window=window))
    got = run(det, readings(piecewise((0, FAR), (10, NEAR), (30, FAR)), 40))
    arrived = at(10) + lag(window)
    left = at(30) + lag(window)
    assert got == [
        (arrived + at(1.0), Arrival(arrived)),  # reported once near held arrive_dwell_s
        (left + at(3.0), Departure(left)),  # reported once far held leave_dwell_s
    ]
    assert not det.present
    assert (det.stats.arrivals, det.stats.departures) == (1, 1)
    assert det.stats.readings == 400
    assert det.stats.no_echo == 0


def test_present_tracks_the_events() -> None:
    det = PresenceDetector(cfg())
    scene = piecewise((0, FAR), (10, NEAR), (30, FAR))
    run(det, readings(scene, 11.1))
    assert not det.present  # near since 10.2, 0.8 s < arrive_dwell_s
    run(det, readings(scene, 11.3, start_s=11.1))
    assert det.present  # the reading at 11.2 completed the dwell
    run(det, readings(scene, 33.2, start_s=11.3))
    assert det.present  # far since 30.2, 2.9 s < leave_dwell_s
    run(det, readings(scene, 33.3, start_s=33.2))
    assert not det.present


def test_someone_already_there_arrives_when_the_window_is_full() -> None:
    det = PresenceDetector(cfg(median_window=5, arrive_dwell_s=0))
    assert events(det, readings(piecewise((0, NEAR)), 2)) == [Arrival(4 * STEP)]


def test_zero_dwell_reports_at_the_change() -> None:
    det = PresenceDetector(cfg(arrive_dwell_s=0, leave_dwell_s=0))
    got = run(det, readings(piecewise((0, FAR), (10, NEAR), (20, FAR)), 30))
    a, d = at(10) + lag(5), at(20) + lag(5)
    assert got == [(a, Arrival(a)), (d, Departure(d))]


# --- spikes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [3, 4, 5, 6, 7])
def test_single_near_spike_while_absent_changes_nothing(window: int) -> None:
    det = PresenceDetector(cfg(median_window=window, arrive_dwell_s=0))
    rs = replace(readings(piecewise((0, FAR)), 20), 10, 0.3)
    assert events(det, rs) == []
    assert det.stats.ignored_spikes == 1


@pytest.mark.parametrize("window", [3, 4, 5, 6, 7])
def test_single_far_spike_while_present_changes_nothing(window: int) -> None:
    det = PresenceDetector(cfg(median_window=window, leave_dwell_s=0))
    rs = replace(readings(piecewise((0, FAR), (5, NEAR)), 20), 10, 3.0)
    assert events(det, rs) == [Arrival(at(5) + lag(window))]
    assert det.present
    assert det.stats.ignored_spikes == 1


def test_without_filter_or_dwell_a_spike_does_count() -> None:
    """The contrast to the two tests above: window 1 and zero dwell let one reading through."""
    det = PresenceDetector(cfg(median_window=1, arrive_dwell_s=0, leave_dwell_s=0))
    rs = replace(readings(piecewise((0, FAR)), 20), 10, 0.3)
    assert events(det, rs) == [Arrival(at(10)), Departure(at(10.1))]


def test_window_one_spike_is_stopped_by_the_dwell() -> None:
    det = PresenceDetector(cfg(median_window=1, arrive_dwell_s=0.2))
    rs = replace(readings(piecewise((0, FAR)), 20), 10, 0.3)
    assert events(det, rs) == []


@settings(deadline=None)
@given(
    window=st.integers(3, 9),
    present=st.booleans(),
    gaps=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    spike=st.floats(0.03, 4.4),
)
def test_isolated_spikes_never_cause_an_event(
    window: int, present: bool, gaps: list[int], spike: float
) -> None:
    base = NEAR if present else FAR
    # a spike on the other side of the band
    spike = min(spike, 0.89) if not present else max(spike, 1.21)
    det = PresenceDetector(cfg(median_window=window, arrive_dwell_s=0, leave_dwell_s=0))
    warmup = [Distance(base, i * STEP) for i in range(window)]
    expected = [Arrival(warmup[-1].t_ns)] if present else []
    assert events(det, warmup) == expected
    rs: list[Distance] = []
    t = window * STEP
    for gap in gaps:  # each spike follows at least `window` base readings
        for _ in range(window + gap):
            rs.append(Distance(base, t))
            t += STEP
        rs.append(Distance(spike, t))
        t += STEP
    assert events(det, rs) == []
    assert det.present == present


# --- no echo -----------------------------------------------------------------------------------


def test_short_dropout_while_present_is_ignored() -> None:
    det = PresenceDetector(cfg())
    scene = piecewise((0, FAR), (5, NEAR), (10, None), (11.5, NEAR))
    assert events(det, readings(scene, 40)) == [Arrival(at(5) + lag(5))]
    assert det.present
    assert det.stats.no_echo == 15


def test_dropout_longer_than_no_echo_but_back_before_leave_dwell_is_no_departure() -> None:
    det = PresenceDetector(cfg())
    # no echo 10.0-12.1 (2.1 s >= no_echo_as_far_s): far from 10.0 and the window is emptied;
    # echoes resume at 12.2, the window is full again at 12.6: far held 2.6 s < leave_dwell_s
    scene = piecewise((0, FAR), (5, NEAR), (10, None), (12.2, NEAR))
    assert events(det, readings(scene, 40)) == [Arrival(at(5) + lag(5))]
    assert det.present


def test_customer_leaving_into_nothing_departs_at_the_start_of_the_dropout() -> None:
    det = PresenceDetector(cfg())
    got = run(det, readings(piecewise((0, FAR), (5, NEAR), (20, None)), 60))
    arrived = at(5) + lag(5)
    # far from the run's first reading (20.0) once the run lasted 2 s; departure once 3 s held
    assert got == [(arrived + at(1), Arrival(arrived)), (at(23), Departure(at(20)))]


def test_departure_from_no_echo_waits_for_the_longer_of_no_echo_and_leave() -> None:
    det = PresenceDetector(cfg(no_echo_as_far_s=5.0, leave_dwell_s=3.0))
    got = run(det, readings(piecewise((0, FAR), (5, NEAR), (20, None)), 60))
    assert got[1:] == [(at(25), Departure(at(20)))]


def test_long_dropout_while_present_departs_and_the_customer_arrives_again() -> None:
    det = PresenceDetector(cfg())
    scene = piecewise((0, FAR), (5, NEAR), (10, None), (16, NEAR))
    # after the long run the window starts empty: full again (and near) at 16.0 + 4 readings
    assert events(det, readings(scene, 30)) == [
        Arrival(at(5) + lag(5)),
        Departure(at(10)),
        Arrival(at(16) + 4 * STEP),
    ]


def test_dwell_keeps_running_through_a_short_dropout() -> None:
    det = PresenceDetector(cfg())
    scene = piecewise((0, FAR), (10, NEAR), (10.5, None), (12, NEAR))
    got = run(det, readings(scene, 20))
    arrived = at(10) + lag(5)
    assert got == [(arrived + at(1), Arrival(arrived))]
    assert scene(got[0][0]) is None  # reported during the dropout


@pytest.mark.parametrize("dropout_s", [1.5, 10.0])
def test_dropout_while_absent_changes_nothing(dropout_s: float) -> None:
    det = PresenceDetector(cfg())
    scene = piecewise((0, FAR), (10, None), (10 + dropout_s, FAR))
    assert events(det, readings(scene, 40)) == []
    assert not det.present


def test_after_a_long_dropout_old_near_readings_do_not_vote() -> None:
    """A customer left into nothing; later a few stray near echoes arrive amid no echo."""
    det = PresenceDetector(cfg(arrive_dwell_s=0))
    rs = readings(piecewise((0, FAR), (5, NEAR), (20, None)), 60)
    for t_s in (40, 43, 46, 49, 52):  # runs between them last > no_echo_as_far_s
        rs = replace(rs, t_s, NEAR)
    assert events(det, rs) == [Arrival(at(5) + lag(5)), Departure(at(20))]


def test_soft_clothing_with_sparse_echoes_still_arrives() -> None:
    """Only every third ping comes back: the runs are short, so the echoes fill the window."""
    det = PresenceDetector(cfg())
    rs = readings(piecewise((0, None)), 30)
    rs = [
        Distance(NEAR, r.t_ns) if i % 3 == 0 and r.t_ns >= at(10) else r for i, r in enumerate(rs)
    ]
    got = events(det, rs)
    # echoes at 10.2, 10.5, 10.8, 11.1, 11.4, ...: the fifth fills the window (near at 11.4)
    assert got == [Arrival(at(11.4))]


# --- stepping back, hysteresis, long stays, queues ---------------------------------------------


def test_brief_step_back_is_no_event() -> None:
    det = PresenceDetector(cfg())
    scene = piecewise((0, FAR), (10, NEAR), (30, FAR), (32, NEAR))
    assert events(det, readings(scene, 60)) == [Arrival(at(10) + lag(5))]
    assert det.present


def test_longer_step_back_is_departure_and_new_arrival() -> None:
    det = PresenceDetector(cfg())
    scene = piecewise((0, FAR), (10, NEAR), (30, FAR), (35, NEAR))
    got = run(det, readings(scene, 60))
    a1, d1, a2 = (at(t) + lag(5) for t in (10, 30, 35))
    assert got == [
        (a1 + at(1), Arrival(a1)),
        (d1 + at(3), Departure(d1)),
        (a2 + at(1), Arrival(a2)),
    ]


@pytest.mark.parametrize(("extra_steps", "departs"), [(0, False), (1, True)])
def test_step_back_boundary(extra_steps: int, departs: bool) -> None:
    # far from 30.2 to the last far reading at 30 + L + 0.1: held L - 0.1 s; leave is 3 s
    step_back = at(3) + extra_steps * STEP
    det = PresenceDetector(cfg())
    scene = piecewise((0, FAR), (10, NEAR), (30, FAR), ((at(30) + step_back) / NS, NEAR))
    got = events(det, readings(scene, 60))
    assert (Departure(at(30) + lag(5)) in got) == departs
    assert len(got) == (3 if departs else 1)


def test_hovering_in_the_band_never_toggles() -> None:
    det = PresenceDetector(cfg(arrive_dwell_s=0, leave_dwell_s=0))
    band = [0.95, 1.15, 1.0, 1.19, 0.91]
    absent = [Distance(band[i % 5], t) for i, t in enumerate(range(0, at(60), STEP))]
    assert events(det, absent) == []
    present = readings(piecewise((60, NEAR)), 70, start_s=60)
    assert len(events(det, present)) == 1
    hovering = [Distance(band[i % 5], t) for i, t in enumerate(range(at(70), at(130), STEP))]
    assert events(det, hovering) == []
    assert det.present


def test_customer_who_never_leaves_arrives_once() -> None:
    det = PresenceDetector(cfg())
    rs = readings(piecewise((0, FAR), (10, NEAR)), 3600)
    assert events(det, rs) == [Arrival(at(10) + lag(5))]
    assert det.present
    assert det.stats.readings == 36_000


@pytest.mark.parametrize("gap_s", [2.0, 5.0])
def test_two_customers_a_few_seconds_apart(gap_s: float) -> None:
    det = PresenceDetector(cfg())
    scene = piecewise((0, FAR), (10, NEAR), (30, FAR), (30 + gap_s, 0.7), (60, FAR))
    got = events(det, readings(scene, 80))
    first, second = at(10) + lag(5), at(30 + gap_s) + lag(5)
    if gap_s < 3.0:  # shorter than leave_dwell_s: one contact
        assert got == [Arrival(first), Departure(at(60) + lag(5))]
    else:
        assert got == [
            Arrival(first),
            Departure(at(30) + lag(5)),
            Arrival(second),
            Departure(at(60) + lag(5)),
        ]


# --- physical range ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.01, 4.6, 20.0])
def test_out_of_range_is_no_echo(bad: float) -> None:
    det = PresenceDetector(cfg(median_window=1, arrive_dwell_s=0))
    rs = replace(readings(piecewise((0, FAR)), 20), 10, bad)
    assert events(det, rs) == []  # (0.01 m, were it valid, would be an instant arrival)
    assert det.stats.no_echo == 1


def test_range_limits_are_valid() -> None:
    det = PresenceDetector(cfg(median_window=1, arrive_dwell_s=0))
    assert events(det, [Distance(4.5, 0), Distance(0.02, STEP)]) == [Arrival(STEP)]
    assert det.stats.no_echo == 0


def test_long_out_of_range_run_while_present_departs_from_its_start() -> None:
    det = PresenceDetector(cfg())
    scene = piecewise((0, FAR), (5, NEAR), (10, 0.01), (11, NEAR), (20, 9.0))
    assert events(det, readings(scene, 40)) == [Arrival(at(5) + lag(5)), Departure(at(20))]
    assert det.stats.no_echo == 10 + 200


# --- invariants on arbitrary input -------------------------------------------------------------


@settings(deadline=None)
@given(
    window=st.integers(1, 8),
    arrive=st.sampled_from([0.0, 0.3, 1.0]),
    leave=st.sampled_from([0.0, 0.5, 3.0]),
    no_echo=st.sampled_from([0.0, 0.4, 2.0]),
    samples=st.lists(
        st.tuples(
            st.integers(60, 700),  # ms since the previous reading
            st.one_of(st.none(), st.floats(0.0, 6.0), st.sampled_from([NEAR, FAR])),
        ),
        max_size=300,
    ),
)
def test_events_alternate_in_time_order(
    window: int,
    arrive: float,
    leave: float,
    no_echo: float,
    samples: list[tuple[int, float | None]],
) -> None:
    det = PresenceDetector(
        cfg(
            median_window=window,
            arrive_dwell_s=arrive,
            leave_dwell_s=leave,
            no_echo_as_far_s=no_echo,
        )
    )
    t = 0
    rs: list[Distance] = []
    for gap_ms, meters in samples:
        t += gap_ms * 1_000_000
        rs.append(Distance(meters, t))
    got = run(det, rs)
    kinds = [type(e) for _, e in got]
    assert kinds == [Arrival, Departure] * (len(kinds) // 2) + [Arrival] * (len(kinds) % 2)
    times = [e.t_ns for _, e in got]
    assert times == sorted(set(times))
    longest_wait = at(max(arrive, leave, no_echo)) + 700 * 1_000_000
    assert all(0 <= reported - e.t_ns <= longest_wait for reported, e in got)
    assert det.present == (bool(got) and isinstance(got[-1][1], Arrival))
    assert (det.stats.arrivals, det.stats.departures) == (
        kinds.count(Arrival),
        kinds.count(Departure),
    )
    invalid = [r for r in rs if r.meters is None or not 0.02 <= r.meters <= 4.5]
    assert det.stats.readings == len(rs)
    assert det.stats.no_echo == len(invalid)
