"""Battery buttons on 2.4 GHz: an nRF24L01+ on the Pi's SPI bus, read with pyrf24 (optional).

Payload (our design; the button firmware sends exactly this, 8 bytes, static payload size):

    offset  size  field
    0       2     magic b"CP"
    2       1     version = 1
    3       1     button id (0–255, set in the button's firmware)
    4       2     sequence number, u16 little-endian, +1 per press (wraps at 65536)
    6       2     battery voltage in mV, u16 little-endian (0 = not measured)

A button sends each press a few times with the same sequence number (and the radio's
auto-retransmit may duplicate it further); the receiver reports the first copy and drops the
rest. Rules:

- :func:`parse_payload` returns ``(button_id, seq, battery_mv)`` or a :class:`Reject` with one of
  ``REASONS``; :func:`encode_payload` is its inverse (tests, firmware docs).
- :class:`SeqFilter`: a payload is a retransmission when it repeats the last accepted sequence
  number of the same button within ``dup_window_s`` (default 2 s). A different number is a new
  press, whatever its value, so a button whose counter restarted after a battery change is not
  locked out; a repeat after the window is a new press too.
- Each press is a :class:`RemoteCode` ``(source=name, protocol="nrf24", code=f"{id:02x}")``,
  key ``nrf24:07`` for button 7. The last battery reading per button is in ``batteries``.
- Radio setup: channel (default 76), one receive pipe (pipe 1) on a 5-byte ``address``, auto-ack
  on, static payload of 8 bytes, the library's default data rate (1 Mbps) and CRC (16 bit); the
  buttons must use the same channel, address and rate.
- ``start()`` raises :class:`HardwareError` when the radio cannot be used: the SPI device node
  ``/dev/spidev<bus>.<cs>`` (``csn`` = bus × 10 + cs, as pyrf24 numbers it) is checked *before*
  pyrf24 is imported, with the fix in the message; then a failing ``begin()`` (SPI or GPIO
  error, or no chip answering) and a missing pyrf24 are reported the same way.
- A reader thread polls ``available()`` every ``poll_interval_s`` (waiting on the stop event,
  so ``stop()`` is bounded) and reads each payload. A radio call that raises (SPI error) gives
  ``DeviceFault(ok=False)``; the radio is set up again every ``reopen_interval_s`` and
  ``DeviceFault(ok=True)`` is reported when that works.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hardware._api import EventSink, RemoteCode
from hardware._driver import EmittingDevice
from hardware._errors import HardwareError

log = logging.getLogger(__name__)

MAGIC = b"CP"
VERSION = 1
PAYLOAD_SIZE = 8
_FORMAT = struct.Struct("<2sBBHH")
REASONS = ("length", "magic", "version")
SPI_DEV_DIR = Path("/dev")


@dataclass(frozen=True, slots=True)
class Reject:
    """Why a payload is not a button press (one of ``REASONS``)."""

    reason: str


def encode_payload(button_id: int, seq: int, battery_mv: int = 0) -> bytes:
    """The 8 bytes a button sends for one press."""
    if not 0 <= button_id <= 0xFF or not 0 <= seq <= 0xFFFF or not 0 <= battery_mv <= 0xFFFF:
        raise ValueError(
            f"button id must be 0..255, seq and battery_mv 0..65535; got "
            f"{button_id}, {seq}, {battery_mv}"
        )
    return _FORMAT.pack(MAGIC, VERSION, button_id, seq, battery_mv)


def parse_payload(payload: bytes | bytearray) -> tuple[int, int, int] | Reject:
    """``(button_id, seq, battery_mv)`` of a payload, or why it is not one. Never raises."""
    if len(payload) != PAYLOAD_SIZE:
        return Reject("length")
    magic, version, button_id, seq, battery_mv = _FORMAT.unpack(bytes(payload))
    if magic != MAGIC:
        return Reject("magic")
    if version != VERSION:
        return Reject("version")
    return button_id, seq, battery_mv


class SeqFilter:
    """Tells a new press from a retransmission of the last one (pure logic)."""

    def __init__(self, dup_window_ns: int) -> None:
        self.dup_window_ns = dup_window_ns
        self._last: dict[int, tuple[int, int]] = {}  # button -> (seq, t_ns accepted)

    def accept(self, button_id: int, seq: int, t_ns: int) -> bool:
        """True for a new press; False for a copy of the press accepted last from this button."""
        last = self._last.get(button_id)
        if last is not None and last[0] == seq and t_ns - last[1] <= self.dup_window_ns:
            return False
        self._last[button_id] = (seq, t_ns)
        return True


class Radio(Protocol):
    """The few pyrf24 ``RF24`` members this driver uses (a fake implements them in tests)."""

    channel: int
    payload_size: int
    listen: bool
    power: bool

    def begin(self) -> bool: ...

    @property
    def is_chip_connected(self) -> bool: ...

    def set_auto_ack(self, enable: bool) -> None: ...

    def open_rx_pipe(self, pipe_number: int, address: bytes) -> None: ...

    def available(self) -> bool: ...

    def read(self, length: int) -> bytes | bytearray: ...


def spi_device(csn: int) -> Path:
    """The spidev node pyrf24 opens for ``csn`` (bus × 10 + chip select)."""
    return SPI_DEV_DIR / f"spidev{csn // 10}.{csn % 10}"


def open_pyrf24(ce_pin: int, csn: int) -> Radio:
    """A real ``pyrf24.RF24``, after checking that its SPI device node exists."""
    node = spi_device(csn)
    if not node.exists():
        raise HardwareError(
            f"SPI not available: enable SPI with raspi-config (Interface Options → SPI) or "
            f"'dtparam=spi=on' in /boot/firmware/config.txt and reboot; {node} missing"
        )
    try:
        from pyrf24 import RF24
    except ImportError as exc:
        raise HardwareError(
            f"the nRF24 backend needs pyrf24 ('pip install pyrf24'): {exc}"
        ) from exc
    radio: Radio = RF24(ce_pin, csn)
    return radio


@dataclass(frozen=True, slots=True)
class Nrf24Status:
    """A snapshot: link state, presses reported, retransmissions dropped, payloads rejected."""

    state: str
    presses: int
    duplicates: int
    rejected: dict[str, int]


class Nrf24Buttons(EmittingDevice):
    """nRF24L01+ battery buttons, reported as :class:`RemoteCode` presses."""

    def __init__(
        self,
        ce_pin: int = 22,
        csn: int = 0,
        *,
        channel: int = 76,
        address: bytes = b"CPBTN",
        clock: Callable[[], int] = time.monotonic_ns,
        poll_interval_s: float = 0.005,
        reopen_interval_s: float = 1.0,
        dup_window_s: float = 2.0,
        stop_timeout_s: float = 1.0,
        radio_factory: Callable[[int, int], Radio] = open_pyrf24,
        name: str = "nrf24",
    ) -> None:
        if not 0 <= channel <= 125:
            raise ValueError(f"{name}: channel must be 0..125, got {channel}")
        if len(address) != 5:
            raise ValueError(f"{name}: address must be 5 bytes, got {address!r}")
        self.name = name
        self.ce_pin = ce_pin
        self.csn = csn
        self.channel = channel
        self.address = bytes(address)
        self._clock = clock
        self._poll_interval_s = poll_interval_s
        self._reopen_interval_s = reopen_interval_s
        self._stop_timeout_s = stop_timeout_s
        self._radio_factory = radio_factory
        self._seq = SeqFilter(round(dup_window_s * 1e9))
        self._radio: Radio | None = None
        self._stop = threading.Event()
        self._emit_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._sink: EventSink | None = None
        self._state = "idle"
        self._presses = 0
        self._duplicates = 0
        self._rejected: Counter[str] = Counter()
        self.batteries: dict[int, int] = {}  # button id -> last battery reading (mV)

    @property
    def status(self) -> Nrf24Status:
        state = "stopped" if self._stop.is_set() else self._state
        return Nrf24Status(state, self._presses, self._duplicates, dict(self._rejected))

    def start(self, sink: EventSink) -> None:
        """Open and set up the radio (or raise :class:`HardwareError`), then start reading."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        radio = self._radio_factory(self.ce_pin, self.csn)
        self._setup(radio)
        self._radio = radio
        self._sink = sink
        self._state = "connected"
        self._thread = threading.Thread(target=self._run, name=f"nrf24-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader thread and power the radio down. Idempotent."""
        self._stop.set()
        with self._emit_lock:
            pass  # an emit in progress has finished; none starts after this
        thread = self._thread
        if thread is not None:
            thread.join(self._stop_timeout_s)
        radio, self._radio = self._radio, None
        if radio is not None:
            try:
                radio.listen = False
                radio.power = False
            except (RuntimeError, OSError):
                pass  # the radio is already unreachable

    def _setup(self, radio: Radio) -> None:
        where = f"CE GPIO {self.ce_pin}, {spi_device(self.csn)}"
        try:
            ok = radio.begin() and radio.is_chip_connected
        except (RuntimeError, OSError) as exc:
            raise HardwareError(
                f"{self.name}: the nRF24L01 did not start ({where}): {exc}"
            ) from exc
        if not ok:
            raise HardwareError(
                f"{self.name}: no nRF24L01 answers on {where}: check wiring (MOSI/MISO/SCK, CSN, "
                "CE), 3.3 V power with a 10 µF capacitor across VCC/GND, and ce_pin/csn in the "
                "config"
            )
        radio.channel = self.channel
        radio.payload_size = PAYLOAD_SIZE
        radio.set_auto_ack(True)
        radio.open_rx_pipe(1, self.address)
        radio.listen = True

    # -- reader thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            radio = self._radio
            if radio is None:
                return
            try:
                if radio.available():
                    self._payload(bytes(radio.read(PAYLOAD_SIZE)))
                    continue
            except (RuntimeError, OSError) as exc:
                self._state = "reconnecting"
                self._fault(False, f"nRF24L01 read failed: {exc}")
                self._recover(radio)
                continue
            self._stop.wait(self._poll_interval_s)

    def _recover(self, radio: Radio) -> None:
        while not self._stop.wait(self._reopen_interval_s):
            try:
                self._setup(radio)
            except (HardwareError, RuntimeError, OSError):
                continue
            self._state = "connected"
            self._fault(True, "nRF24L01 set up again")
            return

    def _payload(self, payload: bytes) -> None:
        now = self._clock()
        got = parse_payload(payload)
        if isinstance(got, Reject):
            self._rejected[got.reason] += 1
            log.debug("%s: rejected payload (%s): %s", self.name, got.reason, payload.hex())
            return
        button_id, seq, battery_mv = got
        if battery_mv:
            self.batteries[button_id] = battery_mv
        if not self._seq.accept(button_id, seq, now):
            self._duplicates += 1
            return
        self._presses += 1
        self._emit(RemoteCode(self.name, "nrf24", f"{button_id:02x}", now))
