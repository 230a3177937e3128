"""ButtonDecoder: debounce, short/long gestures and deadlines, on fake time."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.buttons import ButtonDecoder
from edge.clock import NS
from edge.config import ButtonConfig, InputSection
from edge.events import Gesture, Press
from hardware import ButtonEdge

MS = 1_000_000
BUTTONS = [
    ButtonConfig(name="green", role="green", pin=5),
    ButtonConfig(name="seller", role="seller", pin=26),
    ButtonConfig(name="q2", role="question", question=2, pin=7, via=["gpio", "rf433"], code="a1"),
]
ROLES = {b.name: b.role for b in BUTTONS}
Reported = list[tuple[int, Press]]  # (time it was reported, press)


def decoder(debounce_ms: float = 30, long_press_s: float = 2.0) -> ButtonDecoder:
    return ButtonDecoder(BUTTONS, InputSection(debounce_ms=debounce_ms, long_press_s=long_press_s))


def down(button: str, t_ms: float) -> ButtonEdge:
    return ButtonEdge(button, True, round(t_ms * MS))


def up(button: str, t_ms: float) -> ButtonEdge:
    return ButtonEdge(button, False, round(t_ms * MS))


def press(button: str, t_ms: float, duration_ms: float, gesture: Gesture = "short") -> Press:
    """A gpio press of one of the plain buttons (green, seller)."""
    return Press(round(t_ms * MS), button, ROLES[button], gesture, round(duration_ms * MS))


def feed(dec: ButtonDecoder, *edges: ButtonEdge) -> list[Press]:
    out: list[Press] = []
    for edge in edges:
        out += dec.feed(edge)
    return out


def drive(dec: ButtonDecoder, edges: list[ButtonEdge], end_ns: int) -> Reported:
    """A core loop: tick at each deadline before the next edge. Checks every deadline on the way:
    nothing is reported just before it, something is reported at it."""
    out: Reported = []

    def until(t_ns: int) -> None:
        while (deadline := dec.next_deadline()) is not None and deadline <= t_ns:
            assert dec.tick(deadline - 1) == []
            reported = dec.tick(deadline)
            assert reported, "next_deadline promised a press"
            out.extend((deadline, p) for p in reported)

    for edge in edges:
        until(edge.t_ns)
        out.extend((edge.t_ns, p) for p in dec.feed(edge))
    until(end_ns)
    assert dec.tick(end_ns) == []
    return out


# --- gestures ----------------------------------------------------------------------------------


def test_clean_short_press_is_reported_when_the_release_is_confirmed() -> None:
    dec = decoder()
    assert dec.feed(down("green", 1000)) == []
    assert dec.feed(up("green", 1200)) == []
    assert dec.tick(1230 * MS - 1) == []
    assert dec.tick(1230 * MS) == [press("green", 1000, 200)]
    assert dec.tick(60_000 * MS) == []
    assert (dec.stats.edges, dec.stats.presses, dec.stats.bounces_ignored) == (2, 1, 0)


def test_press_fields_come_from_the_config() -> None:
    dec = decoder()
    got = feed(dec, down("q2", 0), up("q2", 100)) + dec.tick(NS)
    # edges come from the pin: via gpio, also for a button that has a remote key as well
    assert got == [Press(0, "q2", "question", "short", 100 * MS, question=2, via="gpio")]
    assert got[0].kind == "question"


def test_long_press_is_reported_at_the_threshold_by_tick() -> None:
    dec = decoder()
    assert dec.feed(down("seller", 1000)) == []
    assert dec.tick(3000 * MS - 1) == []
    got = dec.tick(3000 * MS)
    assert got == [press("seller", 1000, 2000, "long")]
    assert got[0].kind == "seller_long"
    assert dec.feed(up("seller", 5000)) == []
    assert dec.tick(10_000 * MS) == []
    assert dec.stats.presses == 1


def test_long_press_is_reported_by_a_later_edge() -> None:
    dec = decoder()
    dec.feed(down("seller", 1000))
    assert dec.feed(up("seller", 4000)) == [press("seller", 1000, 2000, "long")]
    assert dec.tick(10_000 * MS) == []


def test_long_press_is_reported_by_another_buttons_edge() -> None:
    dec = decoder()
    dec.feed(down("seller", 1000))
    assert dec.feed(down("green", 3500)) == [press("seller", 1000, 2000, "long")]


def test_seller_short_press_is_seller_short() -> None:
    dec = decoder()
    got = feed(dec, down("seller", 0), up("seller", 1999)) + dec.tick(NS * 10)
    assert got == [press("seller", 0, 1999)]
    assert got[0].kind == "seller_short"


@pytest.mark.parametrize(
    ("held_ns", "gesture", "duration_ns"),
    [(2 * NS - 1, "short", 2 * NS - 1), (2 * NS, "long", 2 * NS), (5 * NS, "long", 2 * NS)],
)
def test_long_press_boundary(held_ns: int, gesture: Gesture, duration_ns: int) -> None:
    dec = decoder()
    got = feed(dec, down("green", 0), ButtonEdge("green", False, held_ns)) + dec.tick(10 * NS)
    assert got == [Press(0, "green", "green", gesture, duration_ns)]


def test_stuck_button_reports_one_long_press() -> None:
    dec = decoder()
    dec.feed(down("green", 0))
    got: list[Press] = []
    for t in range(0, 3600 * NS, NS // 10):
        got += dec.tick(t)
    assert got == [press("green", 0, 2000, "long")]
    assert dec.next_deadline() is None


def test_long_press_when_debounce_is_longer_than_the_threshold() -> None:
    dec = decoder(debounce_ms=500, long_press_s=0.3)
    dec.feed(down("green", 1000))
    assert dec.next_deadline() == 1500 * MS
    assert dec.tick(1500 * MS - 1) == []
    assert dec.tick(1500 * MS) == [press("green", 1000, 300, "long")]


# --- debounce ----------------------------------------------------------------------------------


def test_bounce_burst_on_press_is_one_press_timed_by_its_first_edge() -> None:
    dec = decoder()
    burst = [down("green", 1000), up("green", 1002), down("green", 1004)]
    burst += [up("green", 1006), down("green", 1008)]
    got = feed(dec, *burst, up("green", 1500)) + dec.tick(2000 * MS)
    assert got == [press("green", 1000, 500)]
    assert dec.stats.bounces_ignored == 4


def test_bounce_burst_on_release_is_timed_by_its_first_edge() -> None:
    dec = decoder()
    edges = [down("green", 1000), up("green", 1500), down("green", 1502)]
    edges += [up("green", 1505), down("green", 1507), up("green", 1509)]
    assert feed(dec, *edges) == []
    assert dec.next_deadline() == 1539 * MS  # confirmed debounce_ms after its last edge
    assert dec.tick(1539 * MS) == [press("green", 1000, 500)]
    assert dec.stats.bounces_ignored == 4


@pytest.mark.parametrize(("held_ms", "presses"), [(29.999, 0), (30, 1)])
def test_glitch_shorter_than_debounce_is_nothing(held_ms: float, presses: int) -> None:
    dec = decoder()
    got = feed(dec, down("green", 1000), up("green", 1000 + held_ms)) + dec.tick(NS * 10)
    assert len(got) == presses
    if presses:
        assert got == [press("green", 1000, 30)]


def test_noise_spike_while_held_does_not_split_the_press() -> None:
    dec = decoder()
    edges = [down("green", 1000), up("green", 1500), down("green", 1510), up("green", 1800)]
    got = feed(dec, *edges) + dec.tick(NS * 10)
    assert got == [press("green", 1000, 800)]


def test_release_glitch_across_the_threshold_reports_long_when_it_is_dropped() -> None:
    dec = decoder()
    dec.feed(down("green", 1000))
    assert dec.feed(up("green", 2990)) == []
    assert dec.tick(3000 * MS) == []  # a release may have started at 2990: undecided
    assert dec.feed(down("green", 3010)) == []  # could still be the bounce of a release
    assert dec.next_deadline() == 3040 * MS
    assert dec.tick(3040 * MS - 1) == []
    assert dec.tick(3040 * MS) == [press("green", 1000, 2000, "long")]
    assert feed(dec, up("green", 4000)) + dec.tick(NS * 10) == []


def test_glitch_just_before_a_release_starts_the_release() -> None:
    """Within the debounce time a spike and a bouncing release look the same."""
    dec = decoder()
    edges = [down("green", 1000), up("green", 1500), down("green", 1510), up("green", 1520)]
    assert feed(dec, *edges) + dec.tick(NS * 10) == [press("green", 1000, 500)]


def test_glitch_before_a_press_is_dropped_once_settled() -> None:
    dec = decoder()
    edges = [down("green", 1000), up("green", 1010), down("green", 1040), up("green", 1100)]
    assert feed(dec, *edges) + dec.tick(NS * 10) == [press("green", 1040, 60)]
    assert dec.stats.bounces_ignored == 2


def test_repeated_level_restarts_the_wait() -> None:
    dec = decoder()
    # pressed since 1020 only: not confirmed when released at 1040, so nothing at all
    assert feed(dec, down("green", 1000), down("green", 1020), up("green", 1040)) == []
    assert dec.tick(NS * 10) == []


def test_repeated_level_is_a_bounce() -> None:
    dec = decoder()
    got = feed(dec, down("green", 0), down("green", 50), up("green", 100), up("green", 120))
    assert got + dec.tick(NS) == [press("green", 0, 100)]
    assert dec.stats.bounces_ignored == 2


def test_press_twice_is_two_presses() -> None:
    dec = decoder()
    edges = [down("green", 0), up("green", 100), down("green", 300), up("green", 450)]
    got = feed(dec, *edges) + dec.tick(NS)
    assert got == [press("green", 0, 100), press("green", 300, 150)]


def test_debounce_zero_counts_every_edge_at_once() -> None:
    dec = decoder(debounce_ms=0)
    assert dec.feed(down("green", 1000)) == []
    assert dec.feed(up("green", 1001)) == [press("green", 1000, 1)]
    assert dec.next_deadline() is None
    assert feed(dec, down("green", 1002), up("green", 1004)) == [press("green", 1002, 2)]
    assert dec.stats.bounces_ignored == 0


def test_two_buttons_interleaved() -> None:
    dec = decoder()
    edges = [down("green", 0), down("seller", 100), up("green", 300), up("seller", 3000)]
    got = drive(dec, edges, 10 * NS)
    assert got == [
        (330 * MS, press("green", 0, 300)),
        (2100 * MS, press("seller", 100, 2000, "long")),
    ]


@pytest.mark.parametrize(("first", "second"), [("green", "seller"), ("seller", "green")])
def test_one_tick_reports_in_the_order_decided(first: str, second: str) -> None:
    dec = decoder()
    feed(dec, down(second, 0), down(first, 1000), up(first, 1500))
    assert dec.tick(10 * NS) == [press(first, 1000, 500), press(second, 0, 2000, "long")]


def test_unknown_button_is_counted_and_ignored() -> None:
    dec = decoder()
    assert dec.feed(ButtonEdge("blue", True, 0)) == []
    assert dec.next_deadline() is None
    got = feed(dec, ButtonEdge("blue", False, 10), down("green", 20), up("green", 120))
    assert got + dec.tick(NS) == [press("green", 20, 100)]
    assert (dec.stats.unknown_button, dec.stats.edges, dec.stats.presses) == (2, 4, 1)


# --- deadlines ---------------------------------------------------------------------------------


def test_next_deadline_follows_the_state() -> None:
    dec = decoder()
    assert dec.next_deadline() is None
    dec.feed(down("green", 1000))
    assert dec.next_deadline() == 3000 * MS  # confirming the press reports nothing
    dec.feed(up("green", 1200))
    assert dec.next_deadline() == 1230 * MS
    dec.feed(down("green", 1210))  # a release glitch: back to waiting for the threshold
    assert dec.next_deadline() == 3000 * MS
    dec.feed(down("seller", 2000))
    assert dec.next_deadline() == 3000 * MS
    assert dec.tick(3000 * MS) == [press("green", 1000, 2000, "long")]
    assert dec.next_deadline() == 4000 * MS
    dec.feed(up("green", 3500))  # release after a long press: nothing to report
    assert dec.next_deadline() == 4000 * MS
    assert dec.tick(4000 * MS) == [press("seller", 2000, 2000, "long")]
    assert dec.next_deadline() is None


def test_drive_reports_each_press_at_its_deadline() -> None:
    dec = decoder()
    edges = [down("green", 0), up("green", 100), down("seller", 200), up("seller", 2500)]
    assert drive(dec, edges, 10 * NS) == [
        (130 * MS, press("green", 0, 100)),
        (2200 * MS, press("seller", 200, 2000, "long")),
    ]


# --- random bounce patterns --------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    pressed_at: int  # first edge of the press burst
    released_at: int  # first edge of the release burst
    release_end: int  # last edge of the release burst
    glitch: tuple[int, int] | None  # a noise spike (its two edges) while held


def burst(draw: st.DrawFn, start: int, level: bool, debounce_ns: int) -> list[tuple[int, bool]]:
    """An edge to ``level`` at ``start``, then bounce pairs; it ends at ``level`` and lasts less
    than the debounce time."""
    pairs = draw(st.integers(0, 3))
    offsets = draw(st.sets(st.integers(1, debounce_ns - 1), min_size=2 * pairs, max_size=2 * pairs))
    edges = [(start, level)]
    edges += [(start + off, level if i % 2 else not level) for i, off in enumerate(sorted(offsets))]
    return edges


def spike(draw: st.DrawFn, after: int, before: int, debounce_ns: int) -> tuple[int, int] | None:
    """Maybe a glitch shorter than the debounce, settled levels of at least the debounce around."""
    room = before - after - 3 * debounce_ns
    if room < 0 or not draw(st.booleans()):
        return None
    start = after + debounce_ns + draw(st.integers(0, room))
    return start, start + draw(st.integers(1, debounce_ns - 1))


@st.composite
def clean_presses(
    draw: st.DrawFn, debounce_ns: int
) -> tuple[list[tuple[int, bool]], list[Planned]]:
    """Up to four presses with bouncy edges and stray spikes; every settled level lasts at least
    the debounce time."""
    t = draw(st.integers(0, NS))
    edges: list[tuple[int, bool]] = []
    plan: list[Planned] = []
    for _ in range(draw(st.integers(0, 4))):
        pressing = burst(draw, t, True, debounce_ns)
        hold_end = pressing[-1][0] + draw(st.integers(debounce_ns, 4 * NS))
        glitch = spike(draw, pressing[-1][0], hold_end, debounce_ns)
        releasing = burst(draw, hold_end, False, debounce_ns)
        edges += pressing + releasing
        if glitch is not None:
            edges += [(glitch[0], False), (glitch[1], True)]
        plan.append(Planned(t, hold_end, releasing[-1][0], glitch))
        t = releasing[-1][0] + draw(st.integers(debounce_ns, 2 * NS))
        gap_spike = spike(draw, releasing[-1][0], t, debounce_ns)
        if gap_spike is not None:
            edges += [(gap_spike[0], True), (gap_spike[1], False)]
    return sorted(edges), plan


def expected_report(p: Planned, name: str, debounce_ns: int, long_ns: int) -> tuple[int, Press]:
    """(when it is reported, the press) by the rules in edge/buttons.py's docstring."""
    held = p.released_at - p.pressed_at
    role = ROLES[name]
    if held < long_ns:
        return p.release_end + debounce_ns, Press(p.pressed_at, name, role, "short", held)
    threshold = p.pressed_at + long_ns
    when = threshold
    if p.glitch is not None and p.glitch[0] < threshold:  # undecided until the glitch is dropped
        when = max(threshold, p.glitch[1] + debounce_ns)
    return when, Press(p.pressed_at, name, role, "long", long_ns)


@settings(deadline=None, max_examples=300)
@given(
    debounce_ms=st.sampled_from([1, 5, 30, 100]),
    long_press_s=st.sampled_from([0.3, 2.0]),
    data=st.data(),
)
def test_random_bounces_around_clean_presses(
    debounce_ms: int, long_press_s: float, data: st.DataObject
) -> None:
    debounce_ns, long_ns = debounce_ms * MS, round(long_press_s * NS)
    plans = {name: data.draw(clean_presses(debounce_ns)) for name in ("green", "seller")}
    edges = sorted(
        (ButtonEdge(name, level, t) for name, (raw, _) in plans.items() for t, level in raw),
        key=lambda e: e.t_ns,
    )
    dec = decoder(debounce_ms, long_press_s)
    got = drive(dec, edges, max((e.t_ns for e in edges), default=0) + 10 * NS)
    for name, (_, plan) in plans.items():
        want = [expected_report(p, name, debounce_ns, long_ns) for p in plan]
        assert [(when, p) for when, p in got if p.button == name] == want
    n_presses = sum(len(plan) for _, plan in plans.values())
    assert dec.stats.presses == n_presses
    assert dec.stats.bounces_ignored == len(edges) - 2 * n_presses
