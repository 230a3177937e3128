"""The contact segmenter, driven in realistic processing order with fake time.

Events are fed only when an upstream detector would know them (an arrival after its dwell, a
departure after the leave dwell, a press after debounce), and time advances by ticking at the
segmenter's own ``next_deadline``, the way the daemon's loop does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import NS
from edge.config import Config, ContactsSection, Mode, Role, SurveySection, WindowSection
from edge.contact import Segmenter
from edge.events import Arrival, Contact, Departure, EdgeEvent, Press, Receipt
from edge.tagging import apply_rules

ARRIVE_DWELL_S = 1.0
LEAVE_DWELL_S = 3.0
DEBOUNCE_S = 0.03
SETTLE_S = 5.0


def ns(seconds: float) -> int:
    return round(seconds * NS)


@dataclass(frozen=True)
class Feed:
    """An event and the processing time at which it is fed to the segmenter."""

    known_ns: int
    event: EdgeEvent


def arrival(t_s: float) -> Feed:
    return Feed(ns(t_s + ARRIVE_DWELL_S), Arrival(ns(t_s)))


def departure(t_s: float) -> Feed:
    return Feed(ns(t_s + LEAVE_DWELL_S), Departure(ns(t_s)))


def press(t_s: float, role: str, *, gesture: str = "short", question: int | None = None) -> Feed:
    event = Press(
        t_ns=ns(t_s),
        button=role,
        role=role,
        gesture="long" if gesture == "long" else "short",
        question=question,
    )
    return Feed(ns(t_s + DEBOUNCE_S), event)


def receipt(t_s: float, known_s: float | None = None) -> Feed:
    return Feed(ns(t_s if known_s is None else known_s), Receipt(ns(t_s), f"r-{t_s}"))


def late(feed: Feed, known_s: float) -> Feed:
    """The same event, known only at ``known_s``."""
    return Feed(ns(known_s), feed.event)


def make(
    *,
    modes: list[Mode] | None = None,
    max_s: float = 900.0,
    before_s: float = 60.0,
    after_s: float = 60.0,
    roles: list[Role] | None = None,
    answer_s: float = 30.0,
    settle_s: float = SETTLE_S,
) -> Segmenter:
    window = WindowSection(
        before_s=before_s, after_s=after_s, roles=roles or ["question", "request"]
    )
    contacts = ContactsSection(
        modes=modes if modes is not None else ["presence", "window", "survey"],
        max_duration_s=max_s,
        window=window,
        survey=SurveySection(answer_window_s=answer_s),
    )
    counter = itertools.count(1)
    return Segmenter(Config(contacts=contacts), lambda: f"c{next(counter)}", ns(settle_s))


@dataclass
class Run:
    """Drives a segmenter and collects what it hands out, with the processing time of each."""

    seg: Segmenter
    now_ns: int = 0
    contacts: list[Contact] = field(default_factory=list)
    orphans: list[EdgeEvent] = field(default_factory=list)
    drained_at: dict[str, int] = field(default_factory=dict)

    def advance_to(self, now_ns: int) -> None:
        while (deadline := self.seg.next_deadline()) is not None and deadline <= now_ns:
            self._tick(deadline)
            after = self.seg.next_deadline()
            assert after is None or after > deadline, "a tick at next_deadline() left it due"
        self._tick(now_ns)

    def play(self, *feeds: Feed, until_s: float | None = None) -> Run:
        for feed in sorted(feeds, key=lambda f: f.known_ns):
            self.advance_to(max(self.now_ns, feed.known_ns))
            self.seg.feed(feed.event)
        if until_s is not None:
            self.advance_to(ns(until_s))
        return self

    def shutdown(self, now_s: float) -> Run:
        self.now_ns = ns(now_s)
        self.seg.shutdown(self.now_ns)
        self._collect()
        return self

    def _tick(self, now_ns: int) -> None:
        self.now_ns = max(self.now_ns, now_ns)
        self.seg.tick(self.now_ns)
        self._collect()

    def _collect(self) -> None:
        contacts, orphans = self.seg.drain()
        for c in contacts:
            self.drained_at[c.id] = self.now_ns
        self.contacts += contacts
        self.orphans += orphans

    def bounds(self) -> list[tuple[str, int | None, int | None, str | None]]:
        return [(c.mode, c.start_ns, c.end_ns, c.ended_by) for c in self.contacts]


def events_of(*feeds: Feed) -> list[EdgeEvent]:
    return [f.event for f in feeds]


def same(a: list[EdgeEvent], b: list[EdgeEvent]) -> bool:
    """Same event objects in the same order (identity, not equality)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


DEFAULT_RULES = Config().tagging.rules


# --- presence ---------------------------------------------------------------------------------


def test_scenario_customer_with_receipt_and_red() -> None:
    feeds = (arrival(10), receipt(50), press(60, "red"), departure(75))
    run = Run(make()).play(*feeds, until_s=200)
    assert run.bounds() == [("presence", ns(10), ns(75), "departure")]
    assert same(run.contacts[0].events, events_of(*feeds))
    assert run.orphans == []
    tags = apply_rules(run.contacts[0], DEFAULT_RULES)
    assert {"negative", "not_positive", "productive"} <= set(tags)
    assert not {"silent", "positive", "unproductive", "timeout"} & set(tags)


def test_contact_closes_at_departure_time_but_after_settling() -> None:
    run = Run(make()).play(arrival(10), departure(75), until_s=200)
    assert run.contacts[0].end_ns == ns(75)
    # Known at 78 (leave dwell), processed once the watermark (now - settle) reaches 75.
    assert run.drained_at["c1"] == ns(75 + SETTLE_S)


def test_customer_who_never_leaves_is_one_contact() -> None:
    run = Run(make(modes=["presence"], max_s=60)).play(arrival(10), until_s=500)
    assert run.bounds() == [("presence", ns(10), ns(70), "timeout")]
    assert run.drained_at["c1"] == ns(70 + SETTLE_S)
    assert run.seg.open_contacts() == []
    assert "timeout" in apply_rules(run.contacts[0], DEFAULT_RULES)

    # A stray arrival while still blocked opens nothing.
    stray = arrival(600)
    run.play(stray, until_s=700)
    assert len(run.contacts) == 1
    assert same(run.orphans, [stray.event])
    assert run.seg.stats.blocked_arrivals == 1

    # Only after a departure does the next arrival open a new contact.
    leave, nxt, nxt_leave = departure(800), arrival(810), departure(830)
    run.play(leave, nxt, nxt_leave, until_s=900)
    assert run.bounds()[1:] == [("presence", ns(810), ns(830), "departure")]
    assert same(run.orphans, [stray.event, leave.event])
    assert [c.id for c in run.contacts] == ["c1", "c2"]


def test_departure_at_exactly_the_timeout_comes_after_it() -> None:
    leave = departure(70)
    run = Run(make(modes=["presence"], max_s=60)).play(arrival(10), leave, until_s=200)
    assert run.bounds() == [("presence", ns(10), ns(70), "timeout")]
    assert same(run.orphans, [leave.event])
    # The departure still lifts the block.
    run.play(arrival(300), departure(310), until_s=400)
    assert run.bounds()[1] == ("presence", ns(300), ns(310), "departure")


def test_two_customers_a_few_seconds_apart() -> None:
    run = Run(make()).play(arrival(10), departure(40), arrival(43), departure(70), until_s=200)
    assert run.bounds() == [
        ("presence", ns(10), ns(40), "departure"),
        ("presence", ns(43), ns(70), "departure"),
    ]
    assert [c.id for c in run.contacts] == ["c1", "c2"]
    assert run.orphans == []


def test_second_arrival_while_open_is_an_event_not_a_contact() -> None:
    feeds = (arrival(10), arrival(20), departure(30))
    run = Run(make()).play(*feeds, until_s=100)
    assert run.bounds() == [("presence", ns(10), ns(30), "departure")]
    assert same(run.contacts[0].events, events_of(*feeds))
    assert run.seg.stats.duplicate_arrivals == 1


def test_presses_outside_any_contact_are_orphans() -> None:
    outside = (press(5, "green"), receipt(6), press(7, "request"), press(25, "seller"))
    inside = (arrival(10), press(15, "red"), departure(20))
    run = Run(make(modes=["presence"])).play(*outside, *inside, until_s=100)
    assert run.bounds() == [("presence", ns(10), ns(20), "departure")]
    assert same(run.contacts[0].events, events_of(*inside))
    assert same(run.orphans, events_of(*outside))
    assert run.seg.stats.orphans == 4


def test_rating_with_no_contact_open_is_orphan_in_all_modes() -> None:
    green = press(5, "green")
    run = Run(make()).play(green, until_s=100)
    assert run.contacts == []
    assert same(run.orphans, [green.event])


def test_presence_off_arrival_and_departure_are_orphans() -> None:
    feeds = (arrival(10), departure(20))
    run = Run(make(modes=["window", "survey"])).play(*feeds, until_s=100)
    assert run.contacts == []
    assert same(run.orphans, events_of(*feeds))


# --- window -----------------------------------------------------------------------------------


def test_window_press_cuts_before_and_after() -> None:
    q = press(100, "question", question=1)
    run = Run(make(modes=["window"], before_s=10, after_s=10)).play(q, until_s=300)
    assert run.bounds() == [("window", ns(90), ns(110), "window")]
    assert same(run.contacts[0].events, [q.event])
    # handed out once a press could no longer touch it (one at 120 would start at its end)
    assert run.drained_at["c1"] == ns(120 + SETTLE_S) + 1


def test_overlapping_windows_merge() -> None:
    first, second, rating = (
        press(100, "question", question=1),
        press(105, "request"),
        press(112, "green"),
    )
    apart = press(126, "request")  # its span [116, 136) starts after the merged end, 115
    run = Run(make(modes=["window"], before_s=10, after_s=10))
    run.play(first, second, rating, apart, until_s=300)
    assert run.bounds() == [
        ("window", ns(90), ns(105 + 10), "window"),
        ("window", ns(126 - 10), ns(126 + 10), "window"),
    ]
    assert same(run.contacts[0].events, events_of(first, second, rating))
    assert same(run.contacts[1].events, [apart.event])


def test_merged_window_is_capped_at_max_duration() -> None:
    presses = [press(t, "request") for t in (100, 108, 116)]
    nxt = press(124, "request")
    run = Run(make(modes=["window"], before_s=10, after_s=10, max_s=30))
    run.play(*presses, nxt, until_s=300)
    start = ns(100 - 10)
    # one span [90, 134): cut at the cap, the rest a window of its own, no overlap
    assert run.bounds() == [
        ("window", start, start + ns(30), "timeout"),
        ("window", start + ns(30), ns(124 + 10), "window"),
    ]
    assert same(run.contacts[0].events, events_of(*presses))
    assert same(run.contacts[1].events, [nxt.event])


def test_single_window_longer_than_max_duration_is_split() -> None:
    p = press(100, "request")
    run = Run(make(modes=["window"], before_s=20, after_s=20, max_s=30)).play(p, until_s=300)
    assert run.bounds() == [
        ("window", ns(80), ns(80 + 30), "timeout"),
        ("window", ns(80 + 30), ns(120), "window"),
    ]
    assert same(run.contacts[0].events, [p.event])
    assert run.contacts[1].events == []


def test_window_longer_before_than_max_duration_still_holds_its_press() -> None:
    q = press(100, "request")
    run = Run(make(modes=["window"], before_s=20, after_s=5, max_s=10)).play(q, until_s=300)
    # before_s is limited to max_duration_s: [90, 105), split at 100, the press at the cut
    assert run.bounds() == [
        ("window", ns(100 - 10), ns(100), "timeout"),
        ("window", ns(100), ns(105), "window"),
    ]
    assert run.contacts[0].events == []
    assert same(run.contacts[1].events, [q.event])


def test_window_start_clamped_at_zero() -> None:
    run = Run(make(modes=["window"], before_s=10, after_s=10)).play(
        press(3, "request"), until_s=100
    )
    assert run.bounds() == [("window", 0, ns(13), "window")]


def test_button_pressed_twice_extends_one_window() -> None:
    a, b = press(100, "request"), press(100.5, "request")
    run = Run(make(modes=["window"], before_s=10, after_s=10)).play(a, b, until_s=300)
    assert run.bounds() == [("window", ns(90), ns(110.5), "window")]
    assert same(run.contacts[0].events, events_of(a, b))


def test_only_configured_roles_cut_windows() -> None:
    q, r = press(100, "question", question=2), press(200, "request")
    run = Run(make(modes=["window"], roles=["request"], before_s=5, after_s=5))
    run.play(q, r, until_s=300)
    assert run.bounds() == [("window", ns(195), ns(205), "window")]
    assert same(run.orphans, [q.event])


def test_window_takes_receipts_and_arrivals_it_covers() -> None:
    r = press(100, "request")
    inside = (receipt(104), arrival(106))
    run = Run(make(modes=["window"], before_s=10, after_s=10)).play(r, *inside, until_s=300)
    assert same(run.contacts[0].events, [r.event, *events_of(*inside)])
    assert run.orphans == []


# --- windows: overlap merges, everything inside belongs -------------------------------------


def windows(*, max_s: float = 900.0, settle_s: float = SETTLE_S) -> Segmenter:
    """Window mode with the issue's numbers: 60 s before and after each press."""
    return make(modes=["window"], before_s=60, after_s=60, max_s=max_s, settle_s=settle_s)


def test_windows_that_overlap_are_one_contact() -> None:
    a, b = press(600, "request"), press(670, "question", question=1)
    run = Run(windows()).play(a, b, until_s=1000)
    assert run.bounds() == [("window", ns(540), ns(730), "window")]
    assert same(run.contacts[0].events, events_of(a, b))


def test_windows_that_touch_are_one_contact() -> None:
    # [540, 660) and [660, 780): the second press is exactly before_s after the first's end
    a, b = press(600, "request"), press(720, "request")
    run = Run(windows()).play(a, b, until_s=1000)
    assert run.bounds() == [("window", ns(540), ns(780), "window")]
    assert same(run.contacts[0].events, events_of(a, b))


def test_windows_a_moment_apart_are_two_contacts_that_do_not_overlap() -> None:
    a, b = press(600, "request"), press(720.5, "request")
    run = Run(windows()).play(a, b, until_s=1000)
    assert run.bounds() == [
        ("window", ns(540), ns(660), "window"),
        ("window", ns(660.5), ns(780.5), "window"),
    ]


def test_chained_windows_are_one_contact() -> None:
    # A overlaps B and B overlaps C; A and C do not overlap each other
    a, b, c = press(600, "request"), press(670, "request"), press(740, "question", question=2)
    run = Run(windows()).play(a, b, c, until_s=1000)
    assert run.bounds() == [("window", ns(540), ns(800), "window")]
    assert same(run.contacts[0].events, events_of(a, b, c))


def test_a_chain_longer_than_max_duration_is_split_at_the_cap_without_overlap() -> None:
    a, b, c = press(600, "request"), press(670, "request"), press(740, "request")
    rating = press(695, "red")  # after the cap: the second piece's
    run = Run(windows(max_s=150)).play(a, b, rating, c, until_s=1000)
    assert run.bounds() == [
        ("window", ns(540), ns(690), "timeout"),
        ("window", ns(690), ns(800), "window"),
    ]
    assert same(run.contacts[0].events, events_of(a, b))
    assert same(run.contacts[1].events, events_of(rating, c))
    assert "negative" in apply_rules(run.contacts[1], DEFAULT_RULES)
    assert "negative" not in apply_rules(run.contacts[0], DEFAULT_RULES)


def test_a_press_exactly_at_the_cap_starts_the_next_piece() -> None:
    presses = [press(t, "request") for t in (600, 660, 720, 780, 840)]
    run = Run(windows(max_s=100)).play(*presses, until_s=1200)
    assert run.bounds() == [
        ("window", ns(540), ns(640), "timeout"),
        ("window", ns(640), ns(740), "timeout"),
        ("window", ns(740), ns(840), "timeout"),
        ("window", ns(840), ns(900), "window"),
    ]
    assert [[e.t_ns for e in c.events] for c in run.contacts] == [
        [ns(600)],
        [ns(660), ns(720)],
        [ns(780)],
        [ns(840)],  # exactly at the third piece's end: the fourth piece's
    ]


def test_a_rating_before_the_press_inside_before_s_belongs_to_the_window() -> None:
    red, req = press(1000, "red"), press(1030, "request")
    run = Run(windows()).play(red, req, until_s=2000)
    assert run.bounds() == [("window", ns(970), ns(1090), "window")]
    assert same(run.contacts[0].events, events_of(red, req))
    assert run.orphans == []
    assert "negative" in apply_rules(run.contacts[0], DEFAULT_RULES)


def test_window_boundaries_start_inside_end_outside() -> None:
    before, at_start = receipt(969.9), receipt(970)
    req = press(1030, "request")
    just_inside, at_end = receipt(1089.9), receipt(1090)
    run = Run(windows()).play(before, at_start, req, just_inside, at_end, until_s=2000)
    assert run.bounds() == [("window", ns(970), ns(1090), "window")]
    assert same(run.contacts[0].events, events_of(at_start, req, just_inside))
    assert same(run.orphans, events_of(before, at_end))


def test_a_button_pressed_twice_a_minute_apart_is_one_window() -> None:
    first, second = press(600, "request"), press(700, "request")
    run = Run(windows()).play(first, second, until_s=1000)
    assert run.bounds() == [("window", ns(540), ns(760), "window")]
    assert same(run.contacts[0].events, events_of(first, second))


def test_a_window_reaching_into_a_presence_contact_leaves_its_events_there() -> None:
    arr, rec, dep = arrival(950), receipt(980), departure(990)
    red, req = press(1000, "red"), press(1030, "request")
    run = Run(make(before_s=60, after_s=60)).play(arr, rec, dep, red, req, until_s=2000)
    assert run.bounds() == [
        ("presence", ns(950), ns(990), "departure"),
        ("window", ns(970), ns(1090), "window"),
    ]
    assert same(run.contacts[0].events, events_of(arr, rec, dep))
    assert same(run.contacts[1].events, events_of(red, req))
    assert run.orphans == []


def test_a_window_reaching_into_a_survey_leaves_its_events_there() -> None:
    seller, green, rec, req = (
        press(1000, "seller"),
        press(1010, "green"),
        receipt(1015),
        press(1040, "request"),
    )
    run = Run(make(before_s=60, after_s=60)).play(seller, green, rec, req, until_s=2000)
    assert run.bounds() == [
        ("survey", ns(1000), ns(1010), "answer"),
        ("window", ns(980), ns(1100), "window"),
    ]
    assert same(run.contacts[0].events, events_of(seller, green))
    assert same(run.contacts[1].events, events_of(rec, req))
    assert run.orphans == []


def test_an_event_no_window_reaches_is_an_orphan_after_before_s() -> None:
    green = press(100, "green")
    run = Run(windows()).play(green, until_s=1000)
    assert same(run.orphans, [green.event])
    assert run.seg.stats.orphans == 1
    # a window press up to before_s later could still have claimed it: held until then
    seg = windows()
    seg.feed(green.event)
    seg.tick(ns(100 + 60 + SETTLE_S))
    assert seg.drain() == ([], [])
    seg.tick(ns(100 + 60 + SETTLE_S) + 1)
    assert seg.drain() == ([], [green.event])


def test_a_window_is_handed_out_once_no_press_can_merge_with_it() -> None:
    req = press(100, "request")
    run = Run(windows()).play(req, until_s=1000)
    # it ends at 160; a press up to 220 would still have touched it
    assert run.drained_at["c1"] == ns(220 + SETTLE_S) + 1
    # presence and survey contacts are not held back
    run = Run(make(before_s=60, after_s=60)).play(arrival(10), departure(40), until_s=1000)
    assert run.drained_at["c1"] == ns(40 + SETTLE_S)


def test_late_presses_never_reopen_or_overlap_a_window_handed_out() -> None:
    req = press(100, "request")
    # handed out at 110 + 10 + settle (+1 ns); these are known only after that
    inside = late(press(105, "request"), known_s=130)
    after = late(press(115, "request"), known_s=130)
    run = Run(make(modes=["window"], before_s=10, after_s=10))
    run.play(req, inside, after, until_s=300)
    assert run.seg.stats.late == 2
    assert run.bounds() == [
        ("window", ns(90), ns(110), "window"),
        ("window", ns(110), ns(125), "window"),  # starts where the first ended
    ]
    assert same(run.orphans, [inside.event])


def test_a_late_event_inside_an_open_window_joins_it() -> None:
    req = press(100, "request")
    rec = late(receipt(95), known_s=115)  # behind the watermark (110), the window still open
    run = Run(windows()).play(req, rec, until_s=1000)
    assert run.seg.stats.late == 1
    assert run.bounds() == [("window", ns(40), ns(160), "window")]
    assert {id(e) for e in run.contacts[0].events} == {id(req.event), id(rec.event)}


def test_shutdown_closes_an_ended_window_as_a_window_and_hands_out_waiting_orphans() -> None:
    req, green = press(400, "request"), press(470, "green")
    run = Run(windows(settle_s=1)).play(req, green, until_s=510)
    assert run.contacts == []
    assert run.orphans == []
    run.shutdown(515)
    assert run.bounds() == [("window", ns(340), ns(460), "window")]
    assert same(run.orphans, [green.event])
    assert run.seg.next_deadline() is None


# --- survey -----------------------------------------------------------------------------------


def test_survey_answered() -> None:
    seller, green = press(100, "seller"), press(110, "green")
    run = Run(make(modes=["survey"])).play(seller, green, until_s=300)
    assert run.bounds() == [("survey", ns(100), ns(110), "answer")]
    assert same(run.contacts[0].events, events_of(seller, green))
    tags = apply_rules(run.contacts[0], DEFAULT_RULES)
    assert "positive" in tags
    assert "silent" not in tags


def test_survey_without_answer_is_silent() -> None:
    seller, green_late = press(100, "seller"), press(140, "green")
    run = Run(make(modes=["survey"], answer_s=30)).play(seller, green_late, until_s=300)
    assert run.bounds() == [("survey", ns(100), ns(130), "no_answer")]
    assert same(run.orphans, [green_late.event])
    tags = apply_rules(run.contacts[0], DEFAULT_RULES)
    assert {"silent", "not_positive"} <= set(tags)
    assert "positive" not in tags


def test_rating_at_exactly_the_answer_deadline_is_too_late() -> None:
    seller, green = press(100, "seller"), press(130, "green")
    run = Run(make(modes=["survey"], answer_s=30)).play(seller, green, until_s=300)
    assert run.bounds() == [("survey", ns(100), ns(130), "no_answer")]
    assert same(run.orphans, [green.event])


def test_second_seller_press_does_not_restart_the_survey() -> None:
    first, second = press(100, "seller"), press(120, "seller")
    run = Run(make(modes=["survey"], answer_s=30)).play(first, second, until_s=300)
    assert run.bounds() == [("survey", ns(100), ns(130), "no_answer")]
    assert same(run.contacts[0].events, events_of(first, second))


def test_rating_pressed_twice_second_is_not_the_answer() -> None:
    seller, g1, g2 = press(100, "seller"), press(105, "green"), press(106, "green")
    run = Run(make()).play(seller, g1, g2, until_s=300)
    assert run.bounds() == [("survey", ns(100), ns(105), "answer")]
    assert same(run.orphans, [g2.event])


def test_survey_longer_than_max_duration_times_out() -> None:
    run = Run(make(modes=["survey"], answer_s=60, max_s=30)).play(press(100, "seller"), until_s=300)
    assert run.bounds() == [("survey", ns(100), ns(130), "timeout")]


def test_seller_long_press_does_not_open_a_survey() -> None:
    long = press(100, "seller", gesture="long")
    run = Run(make(modes=["survey"])).play(long, until_s=300)
    assert run.contacts == []
    assert same(run.orphans, [long.event])


def test_survey_off_seller_press_is_orphan() -> None:
    seller = press(100, "seller")
    run = Run(make(modes=["presence", "window"])).play(seller, until_s=300)
    assert run.contacts == []
    assert same(run.orphans, [seller.event])


# --- modes combined ---------------------------------------------------------------------------


def test_survey_and_presence_overlap_rating_answers_the_survey() -> None:
    seller, arr, rec, green, dep = (
        press(5, "seller"),
        arrival(8),
        receipt(10),
        press(12, "green"),
        departure(30),
    )
    run = Run(make()).play(seller, arr, rec, green, dep, until_s=200)
    assert run.bounds() == [
        ("survey", ns(5), ns(12), "answer"),
        ("presence", ns(8), ns(30), "departure"),
    ]
    assert same(run.contacts[0].events, events_of(seller, green))
    assert same(run.contacts[1].events, events_of(arr, rec, dep))


def test_presses_during_presence_belong_to_it() -> None:
    feeds = (
        arrival(10),
        press(12, "seller"),
        press(14, "question", question=1),
        press(16, "request"),
        press(18, "green"),
        press(19, "seller", gesture="long"),
        departure(30),
    )
    run = Run(make()).play(*feeds, until_s=300)
    assert run.bounds() == [("presence", ns(10), ns(30), "departure")]
    assert same(run.contacts[0].events, events_of(*feeds))
    tags = apply_rules(run.contacts[0], DEFAULT_RULES)
    assert {"positive", "request", "force_majeure", "unproductive"} <= set(tags)


def test_window_press_during_survey_belongs_to_survey() -> None:
    seller, req, red = press(100, "seller"), press(105, "request"), press(110, "red")
    run = Run(make()).play(seller, req, red, until_s=300)
    assert run.bounds() == [("survey", ns(100), ns(110), "answer")]
    assert same(run.contacts[0].events, events_of(seller, req, red))


def test_seller_press_inside_an_open_window_joins_it() -> None:
    req, seller = press(100, "request"), press(105, "seller")
    run = Run(make(before_s=10, after_s=10)).play(req, seller, until_s=300)
    assert run.bounds() == [("window", ns(90), ns(110), "window")]
    assert same(run.contacts[0].events, events_of(req, seller))


def test_window_then_customer_arrives_after_it() -> None:
    req, arr, dep = press(100, "request"), arrival(115), departure(130)
    run = Run(make(before_s=10, after_s=10)).play(req, arr, dep, until_s=300)
    assert run.bounds() == [
        ("window", ns(90), ns(110), "window"),
        ("presence", ns(115), ns(130), "departure"),
    ]


# --- processing order -------------------------------------------------------------------------


def test_events_fed_out_of_order_within_settle() -> None:
    # The press is known (after debounce) before the arrival (after its dwell) but happened
    # after it; the receipt is reported after the departure is known but happened before it.
    arr = arrival(10)
    green = press(10.5, "green")
    rec = receipt(39, known_s=44)
    dep = departure(40)
    assert green.known_ns < arr.known_ns
    assert rec.known_ns > dep.known_ns
    run = Run(make()).play(arr, green, rec, dep, until_s=200)
    assert run.bounds() == [("presence", ns(10), ns(40), "departure")]
    assert same(run.contacts[0].events, events_of(arr, green, rec, dep))
    assert run.orphans == []
    assert run.seg.stats.late == 0


def test_event_behind_the_watermark_after_its_contact_closed_is_orphan() -> None:
    rec = receipt(30, known_s=60)  # watermark at 60 - 5 = 55: the contact closed at 40
    run = Run(make()).play(arrival(10), departure(40), rec, until_s=200)
    assert run.bounds() == [("presence", ns(10), ns(40), "departure")]
    assert same(run.orphans, [rec.event])
    assert run.seg.stats.late == 1


def test_event_behind_the_watermark_joins_a_still_open_contact() -> None:
    arr, rec, dep = arrival(10), receipt(20, known_s=25), departure(40)
    run = Run(make(settle_s=3.5)).play(arr, rec, dep, until_s=200)
    assert run.seg.stats.late == 1
    assert run.bounds() == [("presence", ns(10), ns(40), "departure")]
    assert same(run.contacts[0].events, events_of(arr, rec, dep))


def test_late_departure_never_leaves_an_event_outside_its_contact() -> None:
    arr, rec = arrival(10), receipt(38)
    dep = late(departure(35), known_s=45)
    run = Run(make(settle_s=2)).play(arr, rec, dep, until_s=200)
    assert run.bounds() == [("presence", ns(10), ns(38), "departure")]
    assert same(run.contacts[0].events, events_of(arr, rec, dep))


def test_watermark_never_moves_back() -> None:
    seg = make(modes=["presence"], settle_s=5)
    seg.tick(ns(100))
    seg.tick(ns(50))
    seg.feed(Arrival(ns(80)))  # behind the watermark of 95: processed at once
    assert seg.stats.late == 1
    assert [c.start_ns for c in seg.open_contacts()] == [ns(80)]


# --- shutdown and deadlines -------------------------------------------------------------------


def test_shutdown_processes_buffer_and_closes_open_contacts() -> None:
    req, arr, green = press(5, "question", question=1), arrival(10), press(19.8, "green")
    run = Run(make(before_s=1, after_s=3, settle_s=15)).play(req, arr, green)
    assert run.contacts == []  # nothing settled yet: the watermark is at 19.83 - 15 s
    run.shutdown(20)
    # The window's end (8 s) passed before shutdown: it closes as a window, at its end.
    assert run.bounds() == [
        ("window", ns(4), ns(8), "window"),
        ("presence", ns(10), ns(20), "shutdown"),
    ]
    assert same(run.contacts[1].events, events_of(arr, green))
    assert run.seg.open_contacts() == []
    assert run.seg.next_deadline() is None


def test_next_deadline() -> None:
    seg = make(max_s=60, before_s=10, after_s=10)
    settle = ns(SETTLE_S)
    assert seg.next_deadline() is None

    seg.feed(Arrival(ns(10)))
    assert seg.next_deadline() == ns(10) + settle
    seg.tick(ns(10) + settle - 1)
    assert seg.open_contacts() == []
    seg.tick(ns(10) + settle)
    assert [c.mode for c in seg.open_contacts()] == ["presence"]
    assert seg.next_deadline() == ns(10 + 60) + settle  # the timeout

    seg.feed(Departure(ns(40)))
    assert seg.next_deadline() == ns(40) + settle
    seg.tick(ns(40) + settle - 1)
    assert seg.drain() == ([], [])
    seg.tick(ns(40) + settle)
    closed, _ = seg.drain()
    assert [(c.start_ns, c.end_ns) for c in closed] == [(ns(10), ns(40))]
    assert seg.next_deadline() is None

    seg.feed(Press(ns(100), "request", "request"))
    seg.tick(ns(100) + settle)
    # the window ends at 110; a press up to 120 would still touch it
    assert seg.next_deadline() == ns(120) + 1 + settle
    seg.tick(ns(120) + settle)
    assert seg.drain() == ([], [])
    seg.tick(ns(120) + 1 + settle)
    closed, _ = seg.drain()
    assert [(c.mode, c.end_ns) for c in closed] == [("window", ns(110))]


def test_drain_returns_each_contact_once() -> None:
    run = Run(make()).play(arrival(10), departure(20), until_s=100)
    assert len(run.contacts) == 1
    assert run.seg.drain() == ([], [])


# --- property ---------------------------------------------------------------------------------

KINDS = (
    "arrival",
    "departure",
    "green",
    "yellow",
    "red",
    "request",
    "seller",
    "seller_long",
    "question",
    "receipt",
)


def build(kind: str, t_ns: int) -> EdgeEvent:
    if kind == "arrival":
        return Arrival(t_ns)
    if kind == "departure":
        return Departure(t_ns)
    if kind == "receipt":
        return Receipt(t_ns)
    if kind == "seller_long":
        return Press(t_ns, "seller", "seller", gesture="long")
    if kind == "question":
        return Press(t_ns, "q1", "question", question=1)
    return Press(t_ns, kind, kind)


streams = st.lists(
    st.tuples(
        st.integers(0, 400_000),  # event time, ms
        st.sampled_from(KINDS),
        st.integers(0, 8_000),  # how long after it happened it is known, ms
    ),
    max_size=40,
)


@dataclass(frozen=True)
class Conf:
    modes: list[Mode]
    max_s: int
    before_s: int
    after_s: int
    answer_s: int
    settle_s: int

    def segmenter(self) -> Segmenter:
        return make(
            modes=self.modes,
            max_s=self.max_s,
            before_s=self.before_s,
            after_s=self.after_s,
            answer_s=self.answer_s,
            settle_s=self.settle_s,
        )


MODES: list[Mode] = ["presence", "window", "survey"]
configs = st.builds(
    Conf,
    modes=st.lists(st.sampled_from(MODES), unique=True),
    max_s=st.integers(5, 60),
    before_s=st.integers(0, 20),
    after_s=st.integers(0, 20),
    answer_s=st.integers(1, 40),
    settle_s=st.integers(0, 5),
)


def simulate(stream: list[tuple[int, str, int]], conf: Conf) -> tuple[Run, list[EdgeEvent]]:
    feeds = [Feed((t + d) * 1_000_000, build(k, t * 1_000_000)) for t, k, d in stream]
    run = Run(conf.segmenter()).play(*feeds)
    run.shutdown(max((f.known_ns for f in feeds), default=0) / NS + 1)
    return run, [f.event for f in feeds]


@settings(max_examples=300, deadline=None)
@given(streams, configs)
def test_every_event_has_exactly_one_owner(stream: list[tuple[int, str, int]], conf: Conf) -> None:
    run, events = simulate(stream, conf)
    owned = [id(e) for c in run.contacts for e in c.events] + [id(e) for e in run.orphans]
    assert sorted(owned) == sorted(id(e) for e in events)
    assert run.seg.open_contacts() == []
    assert len({c.id for c in run.contacts}) == len(run.contacts)
    for c in run.contacts:
        assert c.end_ns is not None
        assert c.ended_by is not None
        assert 0 <= c.start_ns <= c.end_ns
        assert c.mode in conf.modes
        assert all(c.start_ns <= e.t_ns <= c.end_ns for e in c.events)
        if c.ended_by != "shutdown":
            assert c.end_ns - c.start_ns <= ns(conf.max_s)
    for before, after in itertools.pairwise(window_contacts(run)):  # never any shared audio
        assert before.end_ns is not None
        assert after.start_ns >= before.end_ns


def window_contacts(run: Run) -> list[Contact]:
    return sorted((c for c in run.contacts if c.mode == "window"), key=lambda c: c.start_ns)


@settings(max_examples=300, deadline=None)
@given(streams, configs)
def test_on_time_streams_give_disjoint_presence_contacts(
    stream: list[tuple[int, str, int]], conf: Conf
) -> None:
    on_time = [(t, k, min(d, conf.settle_s * 1000)) for t, k, d in stream]
    run, _ = simulate(on_time, conf)
    assert run.seg.stats.late == 0
    presence = [c for c in run.contacts if c.mode == "presence"]
    for before, after in itertools.pairwise(presence):
        assert before.end_ns is not None
        assert after.start_ns >= before.end_ns


@settings(max_examples=300, deadline=None)
@given(streams, configs)
def test_on_time_streams_give_each_window_everything_inside_it(
    stream: list[tuple[int, str, int]], conf: Conf
) -> None:
    on_time = [(t, k, min(d, conf.settle_s * 1000)) for t, k, d in stream]
    run, _ = simulate(on_time, conf)
    assert run.seg.stats.late == 0
    windows = window_contacts(run)
    for c in windows:  # no orphan inside a window's span [start, end)
        assert c.end_ns is not None
        assert not [e for e in run.orphans if c.start_ns <= e.t_ns < c.end_ns]
    for before, after in itertools.pairwise(windows):
        # windows that overlap or touch are one contact: touching pieces come from a cut
        assert before.end_ns is not None
        assert after.start_ns > before.end_ns or (
            after.start_ns == before.end_ns and before.ended_by == "timeout"
        )
