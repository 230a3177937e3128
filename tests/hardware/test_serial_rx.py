"""The RFLink line parser (pure) and the receiver on a real pyserial port (a pty pair).

The receiver opens a symlink that the tests point at a pty slave, as udev's
/dev/serial/by-id/... link points at the current ttyUSB/ttyACM node. Unplugging is closing the
pty master (reads on the slave fail with EIO) and removing the link; replugging is a new pty.
"""

from __future__ import annotations

import os
import queue
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.radio import Decoder
from hardware import _remote as remote
from hardware._api import DeviceFault, HardwareEvent, RemoteCode
from hardware.serial_rx import (
    MAX_LINE,
    REASONS,
    RepeatFilter,
    RflinkKey,
    RflinkReceiver,
    Skip,
    parse_line,
    remote_key,
)
from tests.edge.radio.helpers import run
from tests.waiting import STALL_S

WAIT_S = STALL_S  # a bound for what should happen promptly: returns when it does
MS = 1_000_000


# -- remote_key ---------------------------------------------------------------------------------


def test_remote_key_lower_cases_and_joins() -> None:
    assert remote_key("EV1527", "27FD49") == "ev1527:27fd49"


@pytest.mark.parametrize(
    ("protocol", "code"),
    [("", "1"), ("ev1527", ""), ("a:b", "1"), ("ev 1527", "1"), ("x", "1" * 64), ("p/q", "1")],
)
def test_remote_key_refuses_what_cannot_be_a_config_code(protocol: str, code: str) -> None:
    with pytest.raises(ValueError, match="cannot be a remote key"):
        remote_key(protocol, code)


# -- parse_line: EV1527 -------------------------------------------------------------------------


def test_ev1527_key_is_the_gpio_decoders_key_for_the_same_remote() -> None:
    id20, key4 = 0x27FD4, 9
    decoded = run(Decoder(), remote.ev1527(id20, key4))
    assert decoded, "the GPIO decoder should confirm the simulated remote"
    gpio_key = f"{decoded[0].protocol}:{decoded[0].hex}"
    # RFLink prints the 20-bit id as %06lx and the 4-bit key as %02x
    line = f"20;9A;EV1527;ID={id20:06x};SWITCH={key4:02x};CMD=ON;"
    got = parse_line(line)
    assert isinstance(got, RflinkKey)
    assert got.key == gpio_key


@pytest.mark.parametrize(
    ("id20", "key4"), [(0, 0), (0x27FD4, 9), (0x27FD4, 0xA), (0xFFFFF, 0xF), (0x00001, 0x1)]
)
def test_ev1527_switch_is_the_4_bit_key_in_hex(id20: int, key4: int) -> None:
    got = parse_line(f"20;01;EV1527;ID={id20:06x};SWITCH={key4:02x};CMD=ON;")
    assert got == RflinkKey("ev1527", f"{(id20 << 4) | key4:06x}")


@pytest.mark.parametrize(
    "line",
    [
        "20;9A;EV1527;ID=027fd4;SWITCH=09;CMD=ON;",
        "20;9B;EV1527;ID=027FD4;SWITCH=09;CMD=ON;",  # upper-case hex
        "20;9C;EV1527;ID=27fd4;SWITCH=9;CMD=ON;",  # 5-digit id, 1-digit switch
        "20;9D;EV1527;ID=027fd4;SWITCH=09;CMD=ON",  # no closing ';'
        "20;9E;EV1527;ID=027fd4;SWITCH=09;\r\n",  # no CMD, CR LF
        "20;9f;ev1527;id=027fd4;switch=09;cmd=on;",  # lower-case labels and name
    ],
)
def test_ev1527_spellings_give_one_key(line: str) -> None:
    assert parse_line(line) == RflinkKey("ev1527", "27fd49")


@pytest.mark.parametrize(
    "line",
    [
        "20;01;EV1527;ID=100000;SWITCH=01;CMD=ON;",  # id wider than 20 bits
        "20;01;EV1527;ID=027fd4;SWITCH=10;CMD=ON;",  # key wider than 4 bits
        "20;01;EV1527;ID=027fz4;SWITCH=01;CMD=ON;",  # not hex
        "20;01;EV1527;ID=027fd4;CMD=ON;",  # no SWITCH
        "20;01;EV1527;ID=;SWITCH=01;CMD=ON;",
    ],
)
def test_ev1527_values_that_cannot_be_a_code(line: str) -> None:
    assert parse_line(line) == Skip("bad_value")


# -- parse_line: other protocols ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "protocol", "code"),
    [
        ("20;3B;NewKaku;ID=cac142;SWITCH=3;CMD=OFF;", "newkaku", "cac142-3-off"),
        ("20;3C;NewKaku;ID=cac142;SWITCH=3;CMD=ON;", "newkaku", "cac142-3-on"),
        ("20;E0;NewKaku;ID=cac142;SWITCH=1;CMD=ALLOFF;", "newkaku", "cac142-1-alloff"),
        ("20;06;Kaku;ID=41;SWITCH=1;CMD=ON;", "kaku", "41-1-on"),
        ("20;03;Eurodomest;ID=03696b;SWITCH=00;CMD=OFF;", "eurodomest", "3696b-0-off"),
        ("20;0C;HomeEasy;ID=7900b200;SWITCH=0b;CMD=ALLON;", "homeeasy", "7900b200-b-allon"),
        ("20;41;Conrad RSL2;ID=010002;SWITCH=03;CMD=ON;", "conrad_rsl2", "10002-3-on"),
        ("20;47;Blyss;ID=ff98;SWITCH=A1;CMD=ON;", "blyss", "ff98-a1-on"),
        ("20;47;Blyss;ID=ff98;SWITCH=P2;CMD=ON;", "blyss", "ff98-p2-on"),
        ("20;AF;SelectPlus;ID=1bb4;CHIME=01;", "selectplus", "1bb4"),
        ("20;04;NewKaku;ID=000007;SWITCH=2;CMD=SET_LEVEL=14;", "newkaku", "7-2-set_level_14"),
        (
            "20;08;SilvercrestDB;ID=04d6bb97;SWITCH=1;CMD=ON;CHIME=01;",
            "silvercrestdb",
            "4d6bb97-1-on",
        ),
    ],
)
def test_other_protocols_keep_their_name_with_id_switch_cmd(
    line: str, protocol: str, code: str
) -> None:
    got = parse_line(line)
    assert got == RflinkKey(protocol, code)
    assert isinstance(got, RflinkKey)
    assert got.key == f"{protocol}:{code}"


def test_leading_zeros_of_hex_fields_do_not_change_the_key() -> None:
    a = parse_line("20;01;Eurodomest;ID=03696b;SWITCH=01;CMD=ON;")
    b = parse_line("20;02;Eurodomest;ID=3696b;SWITCH=1;CMD=ON;")
    assert isinstance(a, RflinkKey)
    assert a == b


# -- parse_line: skipped lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "empty"),
        ("   \r\n", "empty"),
        ("20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R48;", "banner"),
        ("20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46;\r", "banner"),
        ("20;01;MySensors=OFF;NO NRF24L01;", "status"),
        ("20;02;setGPIO=ON;", "status"),
        ("20;99;PONG;", "status"),
        ("20;B5;STATUS;setRF433=ON;NodoNRF=OFF;", "status"),
        ("20;9A;DEBUG;Pulses=50;Pulses(uSec)=475,925,400;", "debug"),
        ("20;2D;UPM/Esic;ID=0001;TEMP=00cf;HUM=16;BAT=OK;", "sensor"),
        ("20;12;Pir;ID=aa66;PIR=ON;", "sensor"),
        ("10;NewKaku;00c142;1;ON;", "not_rflink"),
        ("11;20;45;EV1527;ID=295FD5;SWITCH=3;CMD=ON;", "not_rflink"),
        ("20;9A;", "not_rflink"),
        ("20;XYZ;EV1527;ID=027fd4;SWITCH=09;", "not_rflink"),
        ("hello world", "not_rflink"),
        ("20;01;;ID=1;SWITCH=1;", "malformed"),
        ("20;01;NewKaku;ID=1;SWITCH;CMD=ON;", "malformed"),
        ("20;01;NewKaku;ID=1;ID=2;SWITCH=1;", "malformed"),
        ("20;01;NewKaku;ID=1;;SWITCH=1;", "malformed"),
        ("20;01;NewKaku;ID=c a;SWITCH=1;", "bad_value"),
        ("20;01;NewKaku;ID=1;SWITCH=a/b;", "bad_value"),
        ("20;01;+++;ID=1;SWITCH=1;", "bad_value"),
        (f"20;01;NewKaku;ID={'a' * 70};SWITCH=1;", "bad_value"),
        ("20;01;EV1527;ID=027fd4;SWITCH=09;\x00", "garbage"),
        ("20;01;EV1527;ID=027fd4\ufffd;SWITCH=09;", "garbage"),
        ("x" * (MAX_LINE + 1), "too_long"),
    ],
)
def test_lines_that_are_not_key_presses(line: str, reason: str) -> None:
    assert reason in REASONS
    assert parse_line(line) == Skip(reason)


def test_every_reason_is_reachable() -> None:
    samples = [
        "",
        "x" * (MAX_LINE + 1),
        "\x01",
        "10;x;",
        "20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R48;",
        "20;99;PONG;",
        "20;9A;DEBUG;Pulses=50;",
        "20;01;NewKaku;ID=1;SWITCH;",
        "20;12;Pir;ID=aa66;PIR=ON;",
        "20;01;EV1527;ID=fffffff;SWITCH=01;",
    ]
    reasons = {got.reason for got in map(parse_line, samples) if isinstance(got, Skip)}
    assert reasons == set(REASONS)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_never_raise(seed: int) -> None:
    import random

    rng = random.Random(seed)
    for _ in range(500):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        prefix = rng.choice([b"", b"20;", b"20;0A;", b"20;0A;EV1527;"])
        got = parse_line((prefix + raw).decode("ascii", errors="replace"))
        assert isinstance(got, RflinkKey | Skip)
        if isinstance(got, RflinkKey):
            assert got.key == remote_key(got.protocol, got.code)


# -- RepeatFilter -------------------------------------------------------------------------------


def test_repeats_within_the_window_are_one_press() -> None:
    f = RepeatFilter(300 * MS)
    times = [0, 120 * MS, 240 * MS, 360 * MS]  # each repeat within 300 ms of the previous
    assert [f.accept("ev1527:27fd49", t) for t in times] == [True, False, False, False]


def test_silence_longer_than_the_window_ends_the_press() -> None:
    f = RepeatFilter(300 * MS)
    assert f.accept("k", 0)
    assert not f.accept("k", 300 * MS)  # exactly the window: still the same press
    assert f.accept("k", 601 * MS)  # 301 ms after the last line


def test_another_key_is_reported_at_once_and_keys_are_independent() -> None:
    f = RepeatFilter(300 * MS)
    assert f.accept("a", 0)
    assert f.accept("b", 10 * MS)
    assert not f.accept("a", 20 * MS)
    assert not f.accept("b", 30 * MS)


def test_many_keys_are_pruned_without_forgetting_a_live_one() -> None:
    f = RepeatFilter(100 * MS)
    assert f.accept("live", 0)
    for i in range(100):
        assert f.accept(f"k{i}", i * 1000)  # all within 0.1 ms, the window is 100 ms
    assert not f.accept("live", 50 * MS)


# -- the receiver on a pty ----------------------------------------------------------------------


class Pty:
    """A pty pair whose slave is reached through a stable symlink (the 'USB port')."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.plug()

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        path = os.ttyname(slave)
        os.close(slave)  # the master keeps the pty alive until the receiver opens it
        self.master = master
        tmp = self.link.with_suffix(".new")
        tmp.symlink_to(path)
        tmp.replace(self.link)

    def unplug(self) -> None:
        self.link.unlink()
        os.close(self.master)
        self.master = -1

    def write(self, text: str) -> None:
        os.write(self.master, text.encode("ascii"))

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[Pty]:
    p = Pty(tmp_path / "ttyRFLINK")
    yield p
    p.close()


class Events:
    """A thread-safe sink with bounded waits."""

    def __init__(self) -> None:
        self.q: queue.Queue[HardwareEvent] = queue.Queue()

    def __call__(self, event: HardwareEvent) -> None:
        self.q.put(event)

    def next(self, timeout: float = WAIT_S) -> HardwareEvent:
        return self.q.get(timeout=timeout)

    def codes(self, n: int) -> list[RemoteCode]:
        out: list[RemoteCode] = []
        while len(out) < n:
            event = self.next()
            assert isinstance(event, RemoteCode), event
            out.append(event)
        return out

    def quiet(self, seconds: float) -> list[HardwareEvent]:
        out: list[HardwareEvent] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.q.get(timeout=left))
            except queue.Empty:
                break
        return out


def wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class StepClock:
    """Each call returns the next multiple of ``step_ns`` (deterministic stamps)."""

    def __init__(self, step_ns: int) -> None:
        self.step_ns = step_ns
        self.now = 0

    def __call__(self) -> int:
        self.now += self.step_ns
        return self.now


@pytest.fixture
def started(pty: Pty) -> Iterator[tuple[RflinkReceiver, Events, Pty]]:
    rx = RflinkReceiver(str(pty.link), reopen_interval_s=0.05, repeat_window_s=0.3)
    events = Events()
    rx.start(events)
    wait_for(lambda: rx.status.state == "connected", "the receiver to open the pty")
    yield rx, events, pty
    rx.stop()


def test_lines_become_remote_codes_and_garbage_is_counted(
    started: tuple[RflinkReceiver, Events, Pty],
) -> None:
    rx, events, pty = started
    pty.write(
        "20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R48;\r\n"
        "20;01;EV1527;ID=027fd4;SWITCH=09;CMD=ON;\r\n"
        "20;02;Cresta;ID=3001;TEMP=00b4;HUM=50;BAT=OK;\r\n"
        "20;03;NewKaku;ID=cac142;SWITCH=3;CMD=OFF;\r\n"
    )
    os.write(pty.master, b"\x00\x17gar\xffbage\r\n")
    pty.write("20;04;EV1527;ID=027fd4;SWITCH=0a;CMD=ON;\r\n")
    got = events.codes(3)
    assert [remote_key(c.protocol, c.code) for c in got] == [
        "ev1527:27fd49",
        "newkaku:cac142-3-off",
        "ev1527:27fd4a",
    ]
    assert all(c.source == "rflink" for c in got)
    assert [c.t_ns for c in got] == sorted(c.t_ns for c in got)
    wait_for(lambda: sum(rx.status.skipped.values()) == 3, "the skipped lines to be counted")
    assert rx.status.skipped == {"banner": 1, "sensor": 1, "garbage": 1}
    assert rx.status.keys == 3


def test_a_line_split_across_reads_is_reassembled(
    started: tuple[RflinkReceiver, Events, Pty],
) -> None:
    _, events, pty = started
    line = "20;05;EV1527;ID=0abcde;SWITCH=01;CMD=ON;\r\n"
    for part in (line[:7], line[7:20], line[20:]):
        pty.write(part)
        time.sleep(0.02)
    (code,) = events.codes(1)
    assert (code.protocol, code.code) == ("ev1527", "abcde1")


def test_an_overlong_line_is_dropped_whole_and_the_next_one_is_read(
    started: tuple[RflinkReceiver, Events, Pty],
) -> None:
    rx, events, pty = started
    # more than MAX_LINE bytes without a newline, in pieces, ending like a valid line would
    for _ in range(3):
        pty.write("9" * (MAX_LINE // 2))
        time.sleep(0.02)
    pty.write(";20;06;EV1527;ID=000001;SWITCH=02;CMD=ON;\n")
    pty.write("20;07;EV1527;ID=000002;SWITCH=03;CMD=ON;\n")
    (code,) = events.codes(1)
    assert code.code == "000023"  # only the line after the overlong one
    assert rx.status.skipped == {"too_long": 1}


def test_repeats_of_one_press_are_reported_once() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    clock = StepClock(100 * MS)  # every line is stamped 100 ms after the previous one
    rx = RflinkReceiver(path, clock=clock, repeat_window_s=0.25)
    events = Events()
    rx.start(events)
    try:
        wait_for(lambda: rx.status.state == "connected", "the receiver to open the pty")
        press = "20;{:02X};EV1527;ID=027fd4;SWITCH=09;CMD=ON;\r\n"
        other = "20;{:02X};EV1527;ID=027fd4;SWITCH=0a;CMD=ON;\r\n"
        # one press repeated 4 times (100 ms apart, window 250 ms), another key, then the first
        # key again 400 ms after its last repeat: a second press
        lines = [press.format(1), press.format(2), press.format(3), press.format(4)]
        lines += [other.format(5), "20;06;PONG;\r\n", "20;07;PONG;\r\n", press.format(8)]
        os.write(master, "".join(lines).encode())
        got = events.codes(3)
        assert [c.code for c in got] == ["27fd49", "27fd4a", "27fd49"]
        # stamps: line n is stamped at n × 100 ms
        assert [c.t_ns for c in got] == [100 * MS, 500 * MS, 800 * MS]
        assert rx.status.repeats == 3
    finally:
        rx.stop()
        os.close(master)


def test_unplug_gives_a_fault_replug_a_recovery_and_codes_flow_again(
    started: tuple[RflinkReceiver, Events, Pty],
) -> None:
    rx, events, pty = started
    pty.write("20;01;EV1527;ID=000001;SWITCH=01;CMD=ON;\n")
    (before,) = events.codes(1)
    assert before.code == "000011"

    pty.unplug()
    fault = events.next()
    assert isinstance(fault, DeviceFault)
    assert (fault.part, fault.ok) == ("rflink", False)
    assert str(pty.link) in fault.detail
    # while it is gone: retries every 50 ms, but one fault per outage
    assert events.quiet(0.3) == []
    assert rx.status.state == "reconnecting"

    pty.plug()
    back = events.next()
    assert isinstance(back, DeviceFault)
    assert (back.part, back.ok) == ("rflink", True)
    assert rx.status.reconnects == 1
    pty.write("20;02;EV1527;ID=000002;SWITCH=02;CMD=ON;\n")
    (after,) = events.codes(1)
    assert after.code == "000022"


def test_a_port_missing_at_start_is_a_fault_then_opens_when_plugged(tmp_path: Path) -> None:
    link = tmp_path / "ttyRFLINK"
    rx = RflinkReceiver(str(link), reopen_interval_s=0.05)
    events = Events()
    rx.start(events)  # does not raise: the stick may be plugged later
    pty: Pty | None = None
    try:
        fault = events.next()
        assert isinstance(fault, DeviceFault)
        assert not fault.ok
        assert "cannot open serial port" in fault.detail
        pty = Pty(link)
        back = events.next()
        assert isinstance(back, DeviceFault)
        assert back.ok
        pty.write("20;01;EV1527;ID=000003;SWITCH=04;CMD=ON;\n")
        (code,) = events.codes(1)
        assert code.code == "000034"
    finally:
        rx.stop()
        if pty is not None:
            pty.close()


def test_stop_is_bounded_and_nothing_is_reported_after_it(
    started: tuple[RflinkReceiver, Events, Pty],
) -> None:
    rx, events, pty = started
    t0 = time.monotonic()
    rx.stop()
    assert time.monotonic() - t0 < 1.0
    assert rx.status.state == "stopped"
    pty.write("20;01;EV1527;ID=000001;SWITCH=01;CMD=ON;\n")
    assert events.quiet(0.2) == []
    rx.stop()  # idempotent


def test_start_twice_is_refused(started: tuple[RflinkReceiver, Events, Pty]) -> None:
    rx, events, _ = started
    with pytest.raises(RuntimeError, match="already started"):
        rx.start(events)


def test_a_sink_that_raises_does_not_end_the_reader(
    started: tuple[RflinkReceiver, Events, Pty],
) -> None:
    rx, _, pty = started
    rx.stop()
    seen: list[HardwareEvent] = []

    def flaky(event: HardwareEvent) -> None:
        seen.append(event)
        if len(seen) == 1:
            raise RuntimeError("sink bug")

    rx2 = RflinkReceiver(str(pty.link), repeat_window_s=0.0)
    rx2.start(flaky)
    try:
        wait_for(lambda: rx2.status.state == "connected", "the second receiver to open")
        pty.write("20;01;EV1527;ID=000001;SWITCH=01;CMD=ON;\n")
        pty.write("20;02;EV1527;ID=000001;SWITCH=02;CMD=ON;\n")
        wait_for(lambda: len(seen) == 2, "both codes to reach the sink")
    finally:
        rx2.stop()
