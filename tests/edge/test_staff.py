"""Staff attribution: the shift schedule (time zones, DST, midnight), on-duty calls, the config's
checks, the till's /staff endpoint and the staff field through the real pipeline."""

from __future__ import annotations

import json
import queue
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.clock import NS, FakeClock
from edge.config import Config, ConfigError, parse_model
from edge.events import Receipt
from edge.pos import ReceiptServer
from edge.publish import wire
from edge.scenario import load_scenario
from edge.simulate import STORE_NAME, run_simulation
from edge.staff import Roster, Schedule, Shift, StaffCall, find_overlap, parse_hhmm
from edge.store import Store
from tests.waiting import STALL_S

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> int:
    """Wall ns of an ISO time with its offset, e.g. '2026-11-23T09:00+01:00'."""
    stamp = datetime.fromisoformat(text)
    assert stamp.tzinfo is not None
    return int(stamp.timestamp()) * NS


def shift(name: str, days: str, start: str, end: str) -> Shift:
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    return Shift(
        name,
        frozenset(names.index(d) for d in days.split(",")),
        parse_hhmm(start),
        parse_hhmm(end, end=True),
    )


# --- the schedule ------------------------------------------------------------------------------

WEEK = Schedule(
    [
        shift("anna", "mon,tue,wed,thu,fri", "08:00", "14:00"),
        shift("bob", "mon,tue,wed,thu,fri", "14:00", "20:00"),
        shift("night", "sat,sun", "22:00", "06:00"),  # crosses midnight
    ],
    BERLIN,
)


def test_day_shifts_in_local_time_meet_without_a_gap() -> None:
    # Monday 2026-11-23, Berlin is UTC+1 in winter
    assert WEEK.on_duty(at("2026-11-23T07:59:59+01:00")) is None
    assert WEEK.on_duty(at("2026-11-23T08:00:00+01:00")) == "anna"
    assert WEEK.on_duty(at("2026-11-23T07:00:00+00:00")) == "anna"  # the same instant in UTC
    assert WEEK.on_duty(at("2026-11-23T13:59:59+01:00")) == "anna"
    assert WEEK.on_duty(at("2026-11-23T14:00:00+01:00")) == "bob"
    assert WEEK.on_duty(at("2026-11-23T20:00:00+01:00")) is None
    assert WEEK.on_duty(at("2026-11-28T12:00:00+01:00")) is None  # Saturday noon


def test_a_midnight_crossing_shift_belongs_to_the_day_it_starts() -> None:
    assert WEEK.on_duty(at("2026-11-28T21:59:00+01:00")) is None  # Saturday
    assert WEEK.on_duty(at("2026-11-28T22:00:00+01:00")) == "night"
    assert WEEK.on_duty(at("2026-11-29T00:00:00+01:00")) == "night"  # Sunday, from Saturday
    assert WEEK.on_duty(at("2026-11-29T05:59:00+01:00")) == "night"
    assert WEEK.on_duty(at("2026-11-29T06:00:00+01:00")) is None
    # Sunday's night shift runs into Monday morning, where no Monday shift starts before 08:00
    assert WEEK.on_duty(at("2026-11-30T03:00:00+01:00")) == "night"
    assert WEEK.on_duty(at("2026-11-30T06:00:00+01:00")) is None
    # Friday night has no night shift
    assert WEEK.on_duty(at("2026-11-28T03:00:00+01:00")) is None


def test_dst_spring_forward_night_is_an_hour_shorter() -> None:
    # 2026-03-29 (Sunday) 02:00 CET -> 03:00 CEST; Saturday's night shift 22:00 -> 06:00
    start = at("2026-03-28T22:00:00+01:00")
    end = at("2026-03-29T06:00:00+02:00")
    assert (end - start) // NS == 7 * 3600
    assert WEEK.on_duty(start - NS) is None
    assert WEEK.on_duty(start) == "night"
    assert WEEK.on_duty(end - NS) == "night"
    assert WEEK.on_duty(end) is None
    assert WEEK.on_duty(at("2026-03-29T01:30:00+00:00")) == "night"  # 03:30 CEST


def test_dst_fall_back_night_is_an_hour_longer() -> None:
    # 2026-10-25 (Sunday) 03:00 CEST -> 02:00 CET: 02:xx happens twice
    start = at("2026-10-24T22:00:00+02:00")
    end = at("2026-10-25T06:00:00+01:00")
    assert (end - start) // NS == 9 * 3600
    assert WEEK.on_duty(end - NS) == "night"
    assert WEEK.on_duty(end) is None
    assert WEEK.on_duty(at("2026-10-25T02:30:00+02:00")) == "night"  # first 02:30
    assert WEEK.on_duty(at("2026-10-25T02:30:00+01:00")) == "night"  # second 02:30


def test_a_shift_starting_in_the_skipped_hour_starts_with_the_old_offset() -> None:
    odd = Schedule([shift("early", "sun", "02:30", "05:00")], BERLIN)
    # 02:30 does not exist on 2026-03-29; read with the winter offset it is 01:30 UTC
    assert odd.on_duty(at("2026-03-29T01:29:00+00:00")) is None
    assert odd.on_duty(at("2026-03-29T01:30:00+00:00")) == "early"


def test_a_whole_day_shift_ends_at_24_00() -> None:
    day = Schedule([shift("solo", "wed", "00:00", "24:00")], ZoneInfo("UTC"))
    assert day.on_duty(at("2026-11-25T00:00:00+00:00")) == "solo"
    assert day.on_duty(at("2026-11-25T23:59:59+00:00")) == "solo"
    assert day.on_duty(at("2026-11-26T00:00:00+00:00")) is None


def test_shift_changes_between_two_instants() -> None:
    nine, ten = at("2026-11-23T09:00:00+01:00"), at("2026-11-23T10:00:00+01:00")
    two = at("2026-11-23T14:00:00+01:00")
    assert not WEEK.changes_between(nine, ten)
    assert WEEK.changes_between(nine, two)  # anna -> bob at 14:00 exactly (inclusive)
    assert not WEEK.changes_between(nine, two - NS)
    assert not WEEK.changes_between(two, two + NS)  # the change itself is not after it
    assert WEEK.changes_between(nine, nine + 30 * 24 * 3600 * NS)
    assert not Schedule([], BERLIN).changes_between(nine, nine + 30 * 24 * 3600 * NS)


# --- on-duty calls -----------------------------------------------------------------------------


def test_a_call_overrides_the_schedule_until_the_next_shift_change() -> None:
    roster = Roster(WEEK)
    nine = at("2026-11-23T09:00:00+01:00")
    roster.call("carla", nine)
    assert roster.staff_at(nine - NS) == "anna"  # before the call: the schedule
    assert roster.staff_at(nine) == "carla"
    assert roster.staff_at(at("2026-11-23T13:59:59+01:00")) == "carla"
    assert roster.staff_at(at("2026-11-23T14:00:00+01:00")) == "bob"  # shift change ends it
    assert roster.staff_at(at("2026-11-23T21:00:00+01:00")) is None


def test_a_clear_returns_to_the_schedule_and_calls_may_arrive_late() -> None:
    roster = Roster(WEEK)
    nine, ten = at("2026-11-23T09:00:00+01:00"), at("2026-11-23T10:00:00+01:00")
    roster.call(None, ten)
    roster.call("carla", nine)  # recorded out of order
    assert roster.staff_at(nine + 60 * NS) == "carla"
    assert roster.staff_at(ten) == "anna"
    assert roster.staff_at(ten + 60 * NS) == "anna"


def test_without_a_schedule_a_call_holds_until_cleared() -> None:
    roster = Roster(Schedule([], BERLIN))
    nine = at("2026-11-23T09:00:00+01:00")
    assert roster.staff_at(nine) is None
    roster.call("dana", nine)
    assert roster.staff_at(nine + 40 * 24 * 3600 * NS) == "dana"
    roster.call(None, nine + 41 * 24 * 3600 * NS)
    assert roster.staff_at(nine + 42 * 24 * 3600 * NS) is None


def test_prune_keeps_the_call_still_in_force() -> None:
    roster = Roster(Schedule([], BERLIN))
    for i, name in enumerate(["a", "b", "c"]):
        roster.call(name, (i + 1) * 100 * NS)
    roster.prune(250 * NS)
    assert len(roster) == 2
    assert roster.staff_at(260 * NS) == "b"
    assert roster.staff_at(300 * NS) == "c"


# --- the config --------------------------------------------------------------------------------


def test_overlaps_are_found_across_midnight_and_the_week_end() -> None:
    assert (
        find_overlap([shift("a", "mon", "08:00", "14:00"), shift("b", "mon", "14:00", "20:00")])
        is None
    )
    assert find_overlap(
        [shift("a", "sun", "22:00", "06:00"), shift("b", "mon", "05:30", "09:00")]
    ) == (
        0,
        1,
        "mon 05:30",
    )
    assert find_overlap(
        [shift("a", "tue", "09:00", "17:00"), shift("b", "tue", "16:59", "18:00")]
    ) == (
        0,
        1,
        "tue 16:59",
    )


def config_error(staff: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as err:
        parse_model(Config, {"staff": staff}, "device.toml")
    return str(err.value)


def test_config_builds_the_schedule_and_refuses_mistakes_clearly() -> None:
    cfg = Config.from_dict(
        {
            "staff": {
                "timezone": "Europe/Berlin",
                "shifts": [
                    {"name": "anna", "days": ["mon"], "from": "08:00", "to": "14:00"},
                    {"name": "bob", "days": ["mon"], "from": "14:00", "to": "24:00"},
                ],
            }
        }
    )
    schedule = cfg.staff.schedule()
    assert schedule.on_duty(at("2026-11-23T23:00:00+01:00")) == "bob"
    message = config_error(
        {
            "shifts": [
                {"name": "anna", "days": ["mon", "tue"], "from": "08:00", "to": "14:00"},
                {"name": "bob", "days": ["tue"], "from": "13:00", "to": "20:00"},
            ]
        }
    )
    assert "shifts[1] (bob tue 13:00-20:00) overlaps shifts[0] (anna mon,tue 08:00-14:00)" in (
        message
    )
    assert "at tue 13:00" in message
    message = config_error(
        {"shifts": [{"name": "a", "days": ["mon"], "from": "8:00", "to": "9:00"}]}
    )
    assert "staff.shifts[0]" in message
    assert "'8:00' is not a time of day" in message
    message = config_error(
        {"shifts": [{"name": "a", "days": ["mon"], "from": "08:00", "to": "25:00"}]}
    )
    assert "to: '25:00' is not a time of day" in message
    message = config_error(
        {"shifts": [{"name": "a", "days": ["mon"], "from": "24:00", "to": "09:00"}]}
    )
    assert "only allowed as a shift's 'to'" in message
    message = config_error(
        {"shifts": [{"name": "a", "days": ["mon"], "from": "09:00", "to": "09:00"}]}
    )
    assert "from = '00:00', to = '24:00'" in message
    message = config_error(
        {"shifts": [{"name": "a", "days": ["mo"], "from": "09:00", "to": "10:00"}]}
    )
    assert "staff.shifts[0].days[0]" in message
    assert "'mon'" in message
    message = config_error({"timezone": "Europe/Atlantis"})
    assert "staff.timezone (got 'Europe/Atlantis'): not an IANA time zone" in message


# --- the till's /staff endpoint ----------------------------------------------------------------

Inbox = queue.SimpleQueue[Receipt | StaffCall]


@pytest.fixture
def till() -> Iterator[tuple[ReceiptServer, FakeClock, Inbox]]:
    clock = FakeClock()
    inbox: Inbox = queue.SimpleQueue()
    server = ReceiptServer("127.0.0.1", 0, clock, inbox.put, on_staff=inbox.put)
    server.start()
    yield server, clock, inbox
    server.stop()


def request(port: int, method: str, body: bytes | None = None) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/staff",
        data=body,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=STALL_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_post_and_delete_staff_are_stamped_on_arrival(
    till: tuple[ReceiptServer, FakeClock, Inbox],
) -> None:
    server, clock, inbox = till
    clock.advance(12.5)
    assert request(server.port, "POST", b'{"name": "anna"}') == (
        202,
        {"accepted": True, "on_duty": "anna"},
    )
    assert inbox.get(timeout=STALL_S) == StaffCall(t_ns=clock.now_ns, name="anna")
    clock.advance(1)
    assert request(server.port, "DELETE")[0] == 202
    assert inbox.get(timeout=STALL_S) == StaffCall(t_ns=clock.now_ns, name=None)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "send a JSON object with a name"),
        (b"not json", "body is not JSON"),
        (b'{"nom": "anna"}', "send a JSON object with a name"),
        (b'{"name": "anna", "x": 1}', "unknown field(s) ['x']"),
        (b'{"name": 7}', "name: a staff name must be a string"),
        (b'{"name": " anna"}', "name: staff name ' anna' must be non-empty"),
        (b'{"name": "' + b"a" * 65 + b'"}', "at most 64 characters"),
    ],
)
def test_bad_staff_calls_get_400_naming_the_field(
    till: tuple[ReceiptServer, FakeClock, Inbox], body: bytes, needle: str
) -> None:
    server, _, inbox = till
    status, answer = request(server.port, "POST", body)
    assert status == 400
    assert needle in str(answer["error"])
    assert inbox.empty()
    assert server.rejected == 1


def test_without_a_staff_handler_the_path_does_not_exist() -> None:
    server = ReceiptServer("127.0.0.1", 0, FakeClock(), lambda r: None)
    server.start()
    try:
        assert request(server.port, "POST", b'{"name": "anna"}')[0] == 404
        assert request(server.port, "DELETE")[0] == 404
    finally:
        server.stop()


# --- through the pipeline ----------------------------------------------------------------------

SCENARIO = """
start = "2026-11-23T08:50:00+01:00"   # a Monday, Berlin winter time
duration = 1300.0
[[customers]]        # 08:50:10, before any shift: nobody scheduled
arrive = 10.0
leave = 40.0
[[customers]]        # 09:01:40: anna's shift
arrive = 700.0
leave = 740.0
[[on_duty]]          # 09:03:20: carla takes over at the till
at = 800.0
name = "carla"
[[customers]]        # 09:05:00: carla
arrive = 900.0
leave = 950.0
[[on_duty]]          # 09:06:40: cleared, back to the schedule
at = 1000.0
[[customers]]        # 09:08:20: anna again
arrive = 1100.0
leave = 1150.0
"""


def test_the_staff_field_travels_from_the_schedule_and_calls_to_the_store(tmp_path: Path) -> None:
    path = tmp_path / "shift.toml"
    path.write_text(SCENARIO)
    cfg = Config.from_dict(
        {
            "audio": {"enabled": False},
            "staff": {
                "timezone": "Europe/Berlin",
                "shifts": [{"name": "anna", "days": ["mon"], "from": "09:00", "to": "17:00"}],
            },
        }
    )
    run_simulation(cfg, load_scenario(path, cfg), path, tmp_path)
    with Store.open(tmp_path / STORE_NAME) as store:
        contacts = [c for c in store.contacts() if c.mode == "presence"]
    assert [c.staff for c in contacts] == [None, "anna", "carla", "anna"]
    assert [wire.contact_json(c)["staff"] for c in contacts] == [None, "anna", "carla", "anna"]
    start = datetime(2026, 11, 23, 7, 50, tzinfo=UTC)
    assert contacts[2].start_wall_ns >= int(start.timestamp() + 900) * NS


def test_scenario_on_duty_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('start = "2026-11-23T09:00:00Z"\nduration = 10.0\n[[on_duty]]\nat = 20.0\n')
    with pytest.raises(ConfigError, match=r"on_duty\[0\] at 20.0 s is after the end"):
        load_scenario(path, Config())
