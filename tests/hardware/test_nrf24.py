"""nRF24 buttons: the payload format and duplicate filter (pure), the SPI checks through the real
pyrf24 import, and the receive loop against a fake radio.

No nRF24L01 exists on this machine: the loop is driven by ``FakeRadio``, which implements the
few ``pyrf24.RF24`` members the driver uses. The error paths use the real pyrf24 module.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hardware._api import DeviceFault, HardwareEvent, RemoteCode
from hardware._errors import HardwareError
from hardware.nrf24 import (
    MAGIC,
    PAYLOAD_SIZE,
    VERSION,
    Nrf24Buttons,
    Reject,
    SeqFilter,
    encode_payload,
    parse_payload,
    spi_device,
)
from tests.waiting import STALL_S

WAIT_S = STALL_S  # a bound for what should happen promptly: returns when it does
S = 1_000_000_000


# -- payload format -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("button_id", "seq", "battery_mv"),
    list(itertools.product([0, 1, 7, 255], [0, 1, 0x1234, 0xFFFF], [0, 2950, 0xFFFF])),
)
def test_payload_round_trip(button_id: int, seq: int, battery_mv: int) -> None:
    payload = encode_payload(button_id, seq, battery_mv)
    assert len(payload) == PAYLOAD_SIZE
    assert parse_payload(payload) == (button_id, seq, battery_mv)
    assert parse_payload(bytearray(payload)) == (button_id, seq, battery_mv)


def test_payload_layout_is_the_documented_one() -> None:
    payload = encode_payload(0x07, 0x0102, 0x0BB8)
    # magic 'CP', version, button id, seq u16 LE, battery mV u16 LE
    assert payload == b"CP" + bytes([VERSION, 0x07, 0x02, 0x01, 0xB8, 0x0B])


@pytest.mark.parametrize("length", [0, 1, 7, 9, 32])
def test_wrong_length_is_rejected(length: int) -> None:
    payload = (encode_payload(1, 1, 1) * 5)[:length]
    assert parse_payload(payload) == Reject("length")


@pytest.mark.parametrize("magic", [b"PC", b"cp", b"\x00\x00", b"C\x00"])
def test_bad_magic_is_rejected(magic: bytes) -> None:
    payload = magic + encode_payload(1, 1, 1)[2:]
    assert parse_payload(payload) == Reject("magic")


@pytest.mark.parametrize("version", [0, 2, 255])
def test_other_versions_are_rejected(version: int) -> None:
    good = encode_payload(1, 1, 1)
    payload = good[:2] + bytes([version]) + good[3:]
    assert parse_payload(payload) == Reject("version")


@pytest.mark.parametrize(("button_id", "seq", "mv"), [(-1, 0, 0), (256, 0, 0), (0, 65536, 0)])
def test_encode_refuses_values_that_do_not_fit(button_id: int, seq: int, mv: int) -> None:
    with pytest.raises(ValueError, match="button id"):
        encode_payload(button_id, seq, mv)


def test_magic_and_size_constants() -> None:
    assert MAGIC == b"CP"
    assert PAYLOAD_SIZE == 8


# -- duplicate suppression ----------------------------------------------------------------------


def test_a_retransmission_within_the_window_is_dropped() -> None:
    f = SeqFilter(2 * S)
    assert f.accept(7, 100, 0)
    assert not f.accept(7, 100, S // 100)  # radio retry 10 ms later
    assert not f.accept(7, 100, 2 * S)  # exactly the window
    assert f.accept(7, 101, 2 * S + 1)  # the next press


def test_the_same_seq_after_the_window_is_a_new_press() -> None:
    f = SeqFilter(2 * S)
    assert f.accept(7, 5, 0)
    assert f.accept(7, 5, 2 * S + 1)  # e.g. the counter restarted after a battery change


def test_any_other_seq_is_a_new_press_so_a_restarted_counter_is_not_locked_out() -> None:
    f = SeqFilter(2 * S)
    assert f.accept(7, 40000, 0)
    assert f.accept(7, 1, S // 10)  # lower than before: battery changed, counter restarted
    assert not f.accept(7, 1, S // 5)


def test_buttons_are_independent() -> None:
    f = SeqFilter(2 * S)
    assert f.accept(1, 9, 0)
    assert f.accept(2, 9, 1)  # same seq, other button
    assert not f.accept(1, 9, 2)
    assert not f.accept(2, 9, 3)


# -- SPI checks, through the real pyrf24 --------------------------------------------------------


@pytest.mark.parametrize(("csn", "node"), [(0, "spidev0.0"), (1, "spidev0.1"), (10, "spidev1.0")])
def test_spi_device_follows_pyrf24_numbering(csn: int, node: str) -> None:
    assert spi_device(csn) == Path("/dev") / node


def sink_never(event: HardwareEvent) -> None:
    raise AssertionError(f"nothing should be reported, got {event}")


@pytest.mark.skipif(Path("/dev/spidev0.0").exists(), reason="this machine has SPI")
def test_missing_spi_is_a_clear_error_before_pyrf24_is_touched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pyrf24", None)  # importing it now would fail
    buttons = Nrf24Buttons()
    with pytest.raises(HardwareError) as info:
        buttons.start(sink_never)
    message = str(info.value)
    assert "SPI not available" in message
    assert "raspi-config" in message
    assert "dtparam=spi=on" in message
    assert "/dev/spidev0.0 missing" in message


@pytest.mark.skipif(Path("/dev/spidev0.0").exists(), reason="this machine has SPI")
def test_a_failing_begin_of_the_real_pyrf24_is_a_hardware_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyrf24")
    # pretend the node exists so the driver goes on into pyrf24, whose begin() then really
    # tries /dev/spidev0.0 and fails
    (tmp_path / "spidev0.0").touch()
    monkeypatch.setattr("hardware.nrf24.SPI_DEV_DIR", tmp_path)
    buttons = Nrf24Buttons()
    with pytest.raises(HardwareError, match=r"did not start .*spidev0\.0"):
        buttons.start(sink_never)


def test_missing_pyrf24_is_a_hardware_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "spidev0.0").touch()
    monkeypatch.setattr("hardware.nrf24.SPI_DEV_DIR", tmp_path)
    monkeypatch.setitem(sys.modules, "pyrf24", None)
    with pytest.raises(HardwareError, match="pip install pyrf24"):
        Nrf24Buttons().start(sink_never)


# -- the receive loop, on a fake radio ----------------------------------------------------------


class FakeRadio:
    """The RF24 members the driver uses; payloads are queued by the test."""

    def __init__(self, *, chip: bool = True) -> None:
        self.channel = 76
        self.payload_size = 32
        self.listen = False
        self.power = True
        self.chip = chip
        self.auto_ack: bool | None = None
        self.pipes: dict[int, bytes] = {}
        self.begins = 0
        self.fail_begins = 0  # begin() raises this many more times
        self.fail_next_poll = False
        self._rx: deque[bytes] = deque()
        self._lock = threading.Lock()

    def push(self, *payloads: bytes) -> None:
        with self._lock:
            self._rx.extend(payloads)

    def begin(self) -> bool:
        self.begins += 1
        if self.fail_begins:
            self.fail_begins -= 1
            raise RuntimeError("[SPI::transfer] bus error")
        return True

    @property
    def is_chip_connected(self) -> bool:
        return self.chip

    def set_auto_ack(self, enable: bool) -> None:
        self.auto_ack = enable

    def open_rx_pipe(self, pipe_number: int, address: bytes) -> None:
        self.pipes[pipe_number] = bytes(address)

    def available(self) -> bool:
        with self._lock:
            if self.fail_next_poll:
                self.fail_next_poll = False
                raise OSError(5, "Input/output error")
            return bool(self._rx)

    def read(self, length: int) -> bytearray:
        with self._lock:
            return bytearray(self._rx.popleft()[:length])


class Events:
    def __init__(self) -> None:
        self.q: queue.Queue[HardwareEvent] = queue.Queue()

    def __call__(self, event: HardwareEvent) -> None:
        self.q.put(event)

    def next(self) -> HardwareEvent:
        return self.q.get(timeout=WAIT_S)

    def none_within(self, seconds: float) -> bool:
        try:
            self.q.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


def wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class StepClock:
    def __init__(self, step_ns: int) -> None:
        self.step_ns = step_ns
        self.now = 0

    def __call__(self) -> int:
        self.now += self.step_ns
        return self.now


@pytest.fixture
def radio() -> FakeRadio:
    return FakeRadio()


@pytest.fixture
def running(radio: FakeRadio) -> Iterator[tuple[Nrf24Buttons, Events]]:
    buttons = Nrf24Buttons(
        22,
        0,
        channel=100,
        address=b"SHOP1",
        clock=StepClock(S // 100),  # 10 ms per stamp
        poll_interval_s=0.001,
        reopen_interval_s=0.02,
        radio_factory=lambda ce, csn: radio,
    )
    events = Events()
    buttons.start(events)
    yield buttons, events
    buttons.stop()


def test_start_sets_the_radio_up_as_configured(
    running: tuple[Nrf24Buttons, Events], radio: FakeRadio
) -> None:
    assert radio.begins == 1
    assert radio.channel == 100
    assert radio.payload_size == PAYLOAD_SIZE
    assert radio.auto_ack is True
    assert radio.pipes == {1: b"SHOP1"}
    assert radio.listen is True


def test_presses_become_remote_codes_and_retransmissions_are_dropped(
    running: tuple[Nrf24Buttons, Events], radio: FakeRadio
) -> None:
    buttons, events = running
    radio.push(
        encode_payload(7, 1, 2950),
        encode_payload(7, 1, 2950),  # retransmission
        encode_payload(7, 1, 2950),  # retransmission
        b"XX" + encode_payload(3, 1)[2:],  # foreign packet
        encode_payload(3, 1, 3100),
        encode_payload(7, 2, 2940),
        b"\x00" * 5,
    )
    got = [events.next() for _ in range(3)]
    assert all(isinstance(e, RemoteCode) for e in got)
    codes = [(e.source, e.protocol, e.code) for e in got if isinstance(e, RemoteCode)]
    assert codes == [("nrf24", "nrf24", "07"), ("nrf24", "nrf24", "03"), ("nrf24", "nrf24", "07")]
    wait_for(lambda: sum(buttons.status.rejected.values()) == 2, "the rejects to be counted")
    status = buttons.status
    assert status.presses == 3
    assert status.duplicates == 2
    assert status.rejected == {"magic": 1, "length": 1}
    assert buttons.batteries == {7: 2940, 3: 3100}
    assert events.none_within(0.05)


def test_a_radio_error_is_a_fault_then_a_recovery(
    running: tuple[Nrf24Buttons, Events], radio: FakeRadio
) -> None:
    buttons, events = running
    radio.fail_begins = 2  # the first two set-up attempts fail too
    radio.fail_next_poll = True
    fault = events.next()
    assert isinstance(fault, DeviceFault)
    assert (fault.part, fault.ok) == ("nrf24", False)
    assert "Input/output error" in fault.detail
    back = events.next()
    assert isinstance(back, DeviceFault)
    assert back.ok
    assert radio.begins == 1 + 3  # start, two failures, the successful set-up
    radio.push(encode_payload(9, 1))
    code = events.next()
    assert isinstance(code, RemoteCode)
    assert code.code == "09"
    assert buttons.status.state == "connected"


def test_stop_powers_the_radio_down_and_nothing_is_reported_after(
    running: tuple[Nrf24Buttons, Events], radio: FakeRadio
) -> None:
    buttons, events = running
    t0 = time.monotonic()
    buttons.stop()
    assert time.monotonic() - t0 < 1.0
    assert radio.listen is False
    assert radio.power is False
    radio.push(encode_payload(1, 1))
    assert events.none_within(0.05)
    buttons.stop()  # idempotent


def test_no_chip_answering_is_a_clear_error() -> None:
    radio = FakeRadio(chip=False)
    buttons = Nrf24Buttons(radio_factory=lambda ce, csn: radio)
    with pytest.raises(HardwareError, match="no nRF24L01 answers"):
        buttons.start(sink_never)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"channel": 126}, "channel"), ({"address": b"ab"}, "5 bytes")]
)
def test_bad_settings_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Nrf24Buttons(**kwargs)  # type: ignore[arg-type]
