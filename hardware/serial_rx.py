"""RFLink-style USB receivers: remote keys arrive already decoded, one text line per packet.

Rules:

- Remote-key convention, shared by every receiver: a key is ``"<protocol>:<code>"`` in lower
  case (:func:`remote_key`), e.g. ``ev1527:27fd49``. The GPIO decoder's ``Decoded`` gives the
  same string as ``f"{d.protocol}:{d.hex}"``, so a remote learned on one receiver works on the
  other. A key always matches the config's code pattern ``^[0-9A-Za-z:._-]{1,64}$``.
- Line protocol (RFLink protocol reference): ``20;CC;Name;LABEL=value;...;`` where 20 is the
  node (gateway to host), CC the rolling packet counter (hex, 00–FF), then the protocol name and
  ``LABEL=value`` fields. :func:`parse_line` turns one line into an :class:`RflinkKey` or a
  :class:`Skip` with one of ``REASONS``; it never raises.
- EV1527: RFLink-esp's Plugin_061 prints ``ID=%06lx`` of the 20-bit id (code bits 23..4) and
  ``display_SWITCH(code & 0x0F)``, which is ``%02x``: SWITCH is the 4-bit key in *hex*
  (``SWITCH=0a`` is key 10). The key is the 24-bit code ``id << 4 | switch`` as 6 hex digits,
  exactly the GPIO decoder's EV1527 ``hex`` (``ID=027fd4;SWITCH=09`` → ``ev1527:27fd49``).
  Firmwares that print ``SWITCH=9`` or a 5-digit id give the same key (values, not text).
- Other protocols with ID and SWITCH/CMD/CHIME (NewKaku, Kaku, Eurodomest, HomeEasy, Conrad RSL2,
  doorbells...): protocol = the name lower-cased, runs of other characters → ``_``
  (``Conrad RSL2`` → ``conrad_rsl2``); code = ``ID[-SWITCH][-CMD]``: hex-looking ID/SWITCH
  lose leading zeros (``SWITCH=01`` and ``SWITCH=1`` are one key), CMD is lower-cased
  (``20;3B;NewKaku;ID=cac142;SWITCH=3;CMD=OFF;`` → ``newkaku:cac142-3-off``). CMD belongs to
  the key because ON and OFF are separate physical keys on those remotes. CHIME (a doorbell's
  melody setting) only marks the line as a key press; it is not part of the code.
- Skipped and counted by reason, never raised: the banner (``Nodo RadioFrequencyLink - RFLink
  Gateway ...``), status replies (PONG, OK, ``setRF433=ON``, no ID), DEBUG dumps, sensors (ID but
  no SWITCH/CMD/CHIME), lines not from node 20, non-printable bytes, malformed fields, values
  that cannot be a key, and lines longer than ``MAX_LINE`` bytes (the rest up to the next
  newline is dropped).
- Repeats: one press makes RFLink print the same key several times within ~100–300 ms (each
  repeat of the radio frame it decodes again). RFLink has already decoded, so there is nothing
  left for the daemon's radio decoder to confirm: the driver reports a key once and drops
  further lines of the same key until it has been silent for ``repeat_window_s`` (a sliding
  window: holding the key down is one press). A different key is reported at once.
- Port: opened with ``serial.serial_for_url`` (device paths, ptys, ``loop://``), 8N1 at
  ``baudrate`` (57600; RFLink32 on an ESP32 uses 115200), read timeout 0.1 s so ``stop()`` is
  bounded. A port that cannot be opened, or a read that fails (``SerialException``/``OSError``:
  the USB stick was unplugged), gives one ``DeviceFault(ok=False)`` per outage, a reopen every
  ``reopen_interval_s``, and ``DeviceFault(ok=True)`` when it is back. ``start()`` never raises
  for a missing device: the daemon keeps running and picks the stick up when plugged.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from hardware._api import EventSink, RemoteCode
from hardware._driver import EmittingDevice

log = logging.getLogger(__name__)

MAX_LINE = 1024  # bytes; RFLink's own lines are < 120 characters except DEBUG pulse dumps
READ_TIMEOUT_S = 0.1
REASONS = (
    "empty",
    "too_long",
    "garbage",
    "not_rflink",
    "banner",
    "status",
    "debug",
    "malformed",
    "sensor",
    "bad_value",
)

_KEY = re.compile(r"^[0-9a-z._-]+:[0-9a-z._-]+$")
_HEX = re.compile(r"^[0-9a-f]+$")
_TOKEN = re.compile(r"^[0-9a-z._-]+$")
_COUNTER = re.compile(r"^[0-9A-Fa-f]{2}$")
_MAX_KEY = 64
_KEY_FIELDS = ("SWITCH", "CMD", "CHIME")


def remote_key(protocol: str, code: str) -> str:
    """The config's name for a remote key: ``"<protocol>:<code>"`` in lower case.

    Raises ``ValueError`` when the result could not be a config code (characters other than
    letters, digits, ``.``, ``_``, ``-``; more than 64 characters; an empty part).
    """
    key = f"{protocol}:{code}".lower()
    if len(key) > _MAX_KEY or not _KEY.match(key):
        raise ValueError(f"{key!r} cannot be a remote key (want protocol:code, [0-9a-z._-])")
    return key


@dataclass(frozen=True, slots=True)
class RflinkKey:
    """One decoded remote key press from an RFLink line."""

    protocol: str
    code: str

    @property
    def key(self) -> str:
        return remote_key(self.protocol, self.code)


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a line is not a key press (one of ``REASONS``)."""

    reason: str


def parse_line(line: str) -> RflinkKey | Skip:
    """The remote key one RFLink line reports, or why it reports none. Never raises."""
    text = line.strip()
    if not text:
        return Skip("empty")
    if len(text) > MAX_LINE:
        return Skip("too_long")
    if not (text.isascii() and text.isprintable()):
        return Skip("garbage")
    fields = text.split(";")
    if fields[-1] == "":
        fields.pop()  # the line's closing ';'
    if len(fields) < 3 or fields[0] != "20" or not _COUNTER.match(fields[1]):
        return Skip("not_rflink")
    name = fields[2].strip()
    if "RFLink Gateway" in name or name.startswith("Nodo RadioFrequencyLink"):
        return Skip("banner")
    if name == "DEBUG":
        return Skip("debug")
    if not name or "=" in name:
        return Skip("status" if name else "malformed")
    values: dict[str, str] = {}
    for field in fields[3:]:
        label, eq, value = field.partition("=")
        label = label.strip().upper()
        if not eq or not label or label in values:
            return Skip("malformed")
        values[label] = value.strip()
    if "ID" not in values:
        return Skip("status")
    if not any(label in values for label in _KEY_FIELDS):
        return Skip("sensor")
    got = _ev1527(values) if name.upper() == "EV1527" else _generic(name, values)
    if got is None:
        return Skip("bad_value")
    if len(got.protocol) + 1 + len(got.code) > _MAX_KEY:
        return Skip("bad_value")
    return got


def _ev1527(values: dict[str, str]) -> RflinkKey | None:
    ident, switch = values["ID"].lower(), values.get("SWITCH", "").lower()
    if not (_HEX.match(ident) and _HEX.match(switch)):
        return None
    id20, key4 = int(ident, 16), int(switch, 16)
    if id20 >= 1 << 20 or key4 >= 16:
        return None
    return RflinkKey("ev1527", f"{id20 << 4 | key4:06x}")


def _generic(name: str, values: dict[str, str]) -> RflinkKey | None:
    protocol = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")
    parts = [_token(values["ID"])]
    if "SWITCH" in values:
        parts.append(_token(values["SWITCH"]))
    if "CMD" in values:
        parts.append(re.sub(r"[^0-9a-z]+", "_", values["CMD"].lower()).strip("_") or None)
    if not protocol or any(part is None for part in parts):
        return None
    return RflinkKey(protocol, "-".join(p for p in parts if p is not None))


def _token(value: str) -> str | None:
    """A field value as part of a code: lower case, hex-looking values without leading zeros."""
    v = value.lower()
    if _HEX.match(v):
        return v.lstrip("0") or "0"
    return v if _TOKEN.match(v) else None


class RepeatFilter:
    """Drops repeats of a key until the key has been silent for ``window_ns`` (pure logic)."""

    def __init__(self, window_ns: int) -> None:
        if window_ns < 0:
            raise ValueError(f"window must be >= 0, got {window_ns} ns")
        self.window_ns = window_ns
        self._last_seen: dict[str, int] = {}

    def accept(self, key: str, t_ns: int) -> bool:
        """True for a new press of ``key`` at ``t_ns``; False for a repeat of the same press."""
        last = self._last_seen.get(key)
        self._last_seen[key] = t_ns
        if len(self._last_seen) > 64:  # forget keys that fell silent (neighbours' remotes)
            self._last_seen = {
                k: t for k, t in self._last_seen.items() if t_ns - t <= self.window_ns
            }
        return last is None or t_ns - last > self.window_ns


LinkState = Literal["idle", "connected", "reconnecting", "stopped"]


@dataclass(frozen=True, slots=True)
class RflinkStatus:
    """A snapshot of the receiver: link state, keys reported, repeats dropped, lines skipped."""

    state: LinkState
    keys: int
    repeats: int
    skipped: dict[str, int]
    reconnects: int


class RflinkReceiver(EmittingDevice):
    """An RFLink-style receiver on a serial port, reporting :class:`RemoteCode` presses."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 57600,
        clock: Callable[[], int] = time.monotonic_ns,
        reopen_interval_s: float = 1.0,
        repeat_window_s: float = 0.5,
        stop_timeout_s: float = 1.0,
        name: str = "rflink",
    ) -> None:
        if reopen_interval_s <= 0:
            raise ValueError(f"{name}: reopen_interval_s must be > 0, got {reopen_interval_s}")
        self.name = name
        self.port = port
        self.baudrate = baudrate
        self._clock = clock
        self._reopen_interval_s = reopen_interval_s
        self._stop_timeout_s = stop_timeout_s
        self._repeats = RepeatFilter(round(repeat_window_s * 1e9))
        self._stop = threading.Event()
        self._emit_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._sink: EventSink | None = None
        self._state: LinkState = "idle"
        self._skipped: Counter[str] = Counter()
        self._keys = 0
        self._repeat_count = 0
        self._reconnects = 0

    @property
    def status(self) -> RflinkStatus:
        """Counters and link state, safe to read from any thread."""
        state: LinkState = "stopped" if self._stop.is_set() else self._state
        return RflinkStatus(
            state, self._keys, self._repeat_count, dict(self._skipped), self._reconnects
        )

    def start(self, sink: EventSink) -> None:
        """Start the reader thread (once per object); it opens the port itself."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        self._sink = sink
        self._thread = threading.Thread(target=self._run, name=f"rflink-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and close the port; returns within about ``stop_timeout_s``."""
        self._stop.set()
        with self._emit_lock:
            pass  # an emit in progress has finished; none starts after this
        thread = self._thread
        if thread is not None:
            thread.join(self._stop_timeout_s)

    # -- reader thread -------------------------------------------------------------------------

    def _run(self) -> None:
        import serial  # pyserial: only where an RFLink receiver runs (the parser needs none)

        self._keep_open(
            self._try_open,
            self._read_lines,
            self._close,
            (serial.SerialException, OSError),
            self._lost,
        )

    def _lost(self, exc: BaseException) -> None:
        self._state = "reconnecting"
        self._fault(False, f"serial port {self.port!r} failed: {exc}")

    def _try_open(self) -> Any:
        import serial

        try:
            port = serial.serial_for_url(
                self.port, baudrate=self.baudrate, timeout=READ_TIMEOUT_S, exclusive=True
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            if self._state != "reconnecting":
                self._state = "reconnecting"
                self._fault(
                    False,
                    f"cannot open serial port {self.port!r}: {exc}. Check the USB cable and the "
                    "receiver's port in the config (a /dev/serial/by-id/... path survives "
                    "replugging)",
                )
            return None
        if self._state == "reconnecting":
            self._reconnects += 1
            self._fault(True, f"serial port {self.port!r} open")
        self._state = "connected"
        return port

    def _read_lines(self, port: Any) -> None:
        buffer = bytearray()
        overlong = False  # dropping the rest of a too-long line
        while not self._stop.is_set():
            chunk = port.read(port.in_waiting or 1)
            if not chunk:
                continue
            buffer += chunk
            *lines, rest = bytes(buffer).split(b"\n")
            buffer = bytearray(rest)
            for raw in lines:
                if overlong:
                    overlong = False
                    continue
                self._line(raw)
            if len(buffer) > MAX_LINE:
                if not overlong:
                    self._skipped["too_long"] += 1
                overlong = True
                buffer.clear()

    def _line(self, raw: bytes) -> None:
        now = self._clock()
        got = parse_line(raw.decode("ascii", errors="replace"))
        if isinstance(got, Skip):
            if got.reason != "empty":
                self._skipped[got.reason] += 1
                log.debug("%s: skipped (%s): %r", self.name, got.reason, raw[:80])
            return
        if not self._repeats.accept(got.key, now):
            self._repeat_count += 1
            return
        self._keys += 1
        self._emit(RemoteCode(self.name, got.protocol, got.code, now))

    @staticmethod
    def _close(port: Any) -> None:
        import serial

        with contextlib.suppress(serial.SerialException, OSError):  # already gone
            port.close()
