"""A pigpiod-compatible server on loopback that replays pulse captures to the real pigpio client.

pigpiod cannot run off a Raspberry Pi; this server speaks enough of its socket protocol for
``pigpio.pi(host, port)`` and gpiozero's ``PiGPIOFactory``, so the real driver code paths run in
tests and demos. Rules it implements (from pigpio.py 1.78 and pigpiod's documented behaviour):

- A command is ``'<IIII' (cmd, p1, p2, p3)`` followed by ``p3`` extension bytes (read, ignored);
  the reply echoes the first three words with the result (a signed int sent as unsigned 32-bit)
  in the fourth. Unknown commands answer ``PI_UNKNOWN_COMMAND`` (-88); bad arguments answer
  pigpio's error codes.
- NOIB (99) turns a connection into an in-band notification handle (0..31); from then on it
  carries 12-byte reports ``'<HHII' (seq, flags, tick, level_bits)`` and only NC (21) is read
  from it, which closes the handle and the socket. NB (19) sets a handle's gpio bitmask.
- A level report (flags 0) is sent only when a gpio's level *changes* (as pigpiod samples do),
  to every handle whose bitmask holds that gpio; ``level_bits`` are the levels of gpios 0..31.
- Time is virtual: a 32-bit µs tick that moves only when :meth:`PigpioReplayServer.play` reaches
  an edge's tick or :meth:`PigpioReplayServer.idle` advances it, so runs are deterministic.
  A watchdog set with WDOG (9) reports ``flags 0x20 | gpio`` each time ``timeout`` ms of virtual
  time pass with no level change on that gpio (repeating, as pigpiod does).
- Pins: MODES/MODEG/PUD/READ/WRITE/BR1/BR2/FG keep per-gpio state. A pull-up/down sets the level
  of an input the server does not drive; WRITE makes the pin an output and sets its level.
- Robustness: a client vanishing mid-stream ends only its own connection; ``stop()`` closes
  every socket and joins every thread it started.

- ``stop()`` drops reports not yet written to a socket: stop the clients first.

Demo: ``python -m hardware.pigpio_replay FILE.ook --gpio 27 --port 8888`` replays an rtl_433
``.ook`` capture to each client that subscribes to the gpio (a callback on it), one at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType

TICK_MASK = 0xFFFFFFFF
USER_GPIOS = 32  # gpios 0..31: the ones pigpio reports on and watches
ALL_GPIOS = 54  # gpios 0..53 accept mode/level commands

# pigpio command numbers (pigpio.py _PI_CMD_*)
MODES, MODEG, PUD, READ, WRITE, WDOG, BR1, BR2 = 0, 1, 2, 3, 4, 9, 10, 11
TICK, HWVER, NB, NC, PIGPV, FG, NOIB = 16, 17, 19, 21, 26, 97, 99

# pigpio error codes (pigpio.py PI_*)
PI_BAD_USER_GPIO = -2
PI_BAD_GPIO = -3
PI_BAD_MODE = -4
PI_BAD_LEVEL = -5
PI_BAD_PUD = -6
PI_BAD_WDOG_TIMEOUT = -15
PI_NO_HANDLE = -24
PI_BAD_HANDLE = -25
PI_UNKNOWN_COMMAND = -88
PI_BAD_FILTER = -125

NTFY_FLAGS_WDOG = 0x20
INPUT, OUTPUT = 0, 1
PIGPIO_VERSION = 79
PI_3B_REVISION = 0xA02082  # a revision gpiozero knows (Raspberry Pi 3 Model B, 1 GB)

_CMD = struct.Struct("<IIII")
_REPORT = struct.Struct("<HHII")
_MAX_EXT = 1 << 16  # extension bytes accepted before a connection is dropped as garbage
_NOTIFY_SLOTS = 32


class _Notify:
    """One in-band notification handle: its bitmask, report sequence and outgoing queue."""

    __slots__ = ("bits", "out", "seq")

    def __init__(self) -> None:
        self.bits = 0
        self.seq = 0
        self.out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()


class PigpioReplayServer:
    """A threaded pigpiod look-alike on ``host`` (loopback by default); ``port=0`` picks one."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        start_tick: int = 0,
        hw_revision: int = PI_3B_REVISION,
    ) -> None:
        self._address = (host, port)
        self._hw_revision = hw_revision
        self._cond = threading.Condition()  # guards all state below; notified on every change
        self._now = start_tick & TICK_MASK  # virtual µs, unwrapped (may pass 2**32)
        self._levels = [0] * ALL_GPIOS
        self._modes = [INPUT] * ALL_GPIOS
        self._glitch = [0] * USER_GPIOS
        self._driven: set[int] = set()  # gpios whose level the server drives (play/set_level)
        self._wdog_ms = [0] * USER_GPIOS
        self._wdog_ref = [0] * USER_GPIOS  # virtual tick the watchdog period counts from
        self._handles: dict[int, _Notify] = {}
        self._received: Counter[int] = Counter()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor: threading.Thread | None = None
        self._running = False

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._listener is None:
            raise RuntimeError("PigpioReplayServer is not started")
        port: int = self._listener.getsockname()[1]
        return port

    def start(self) -> None:
        """Bind, listen and serve connections on background threads."""
        if self._listener is not None:
            raise RuntimeError("PigpioReplayServer is already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(self._address)
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._running = True
        self._acceptor = self._spawn(self._accept_loop, "pigpio-replay-accept")

    def stop(self) -> None:
        """Close the listener and every connection; join the threads. Idempotent."""
        with self._cond:
            listener, self._listener = self._listener, None
            self._running = False
            acceptor, self._acceptor = self._acceptor, None
        if listener is None:
            return
        _shutdown(listener)  # wakes accept()
        if acceptor is not None:
            acceptor.join(timeout=5)  # no connection is added after this
        listener.close()
        with self._cond:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            _shutdown(conn)  # wakes each reader, which closes its socket
        for thread in threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> PigpioReplayServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- driving the pins --------------------------------------------------------------------

    def play(self, gpio: int, edges: Iterable[tuple[int, int]]) -> None:
        """Drive ``gpio`` through ``(level, tick_us)`` edges, reporting each level change.

        Ticks are taken modulo 2**32 and must not go backwards (a step of 2**31 µs or more is
        rejected); watchdogs due before an edge are reported first.
        """
        _check_user_gpio(gpio)
        for level, tick in edges:
            if level not in (0, 1):
                raise ValueError(f"edge level must be 0 or 1, not {level}")
            with self._cond:
                self._advance_to(tick)
                self._driven.add(gpio)
                self._change(gpio, level)
                self._cond.notify_all()

    def set_level(self, gpio: int, level: int) -> None:
        """Drive ``gpio`` to ``level`` now (at the current virtual tick)."""
        self.play(gpio, [(level, self.tick)])

    def idle(self, us: int) -> None:
        """Let ``us`` µs of virtual time pass with no edge, reporting watchdogs that fall due."""
        if not 0 <= us < 1 << 31:
            raise ValueError(f"idle time must be 0 <= us < 2**31, not {us}")
        with self._cond:
            self._advance_to(self._now + us)
            self._cond.notify_all()

    def watchdog_fire(self, gpio: int, tick: int) -> None:
        """Send a watchdog report for ``gpio`` at ``tick`` now, whatever the watchdog setting."""
        _check_user_gpio(gpio)
        with self._cond:
            self._report(gpio, NTFY_FLAGS_WDOG | gpio, tick & TICK_MASK)

    # -- observing ---------------------------------------------------------------------------

    @property
    def tick(self) -> int:
        """The current virtual tick (unsigned 32-bit µs)."""
        with self._cond:
            return self._now & TICK_MASK

    def level(self, gpio: int) -> int:
        with self._cond:
            return self._levels[gpio]

    def mode(self, gpio: int) -> int:
        with self._cond:
            return self._modes[gpio]

    def glitch_us(self, gpio: int) -> int:
        with self._cond:
            return self._glitch[gpio]

    def watchdog_ms(self, gpio: int) -> int:
        with self._cond:
            return self._wdog_ms[gpio]

    def notify_handles(self) -> dict[int, int]:
        """Open notification handles and their gpio bitmasks."""
        with self._cond:
            return {handle: n.bits for handle, n in self._handles.items()}

    def subscribed(self, gpio: int) -> bool:
        """Whether some notification handle currently watches ``gpio``."""
        with self._cond:
            return any(n.bits >> gpio & 1 for n in self._handles.values())

    def received(self, cmd: int) -> int:
        """How many times command ``cmd`` arrived (on any connection)."""
        with self._cond:
            return self._received[cmd]

    def wait_for(self, predicate: Callable[[PigpioReplayServer], bool], timeout: float) -> bool:
        """Wait (bounded) until ``predicate(self)`` holds; re-checked after every state change."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    # -- state changes (called with the lock held) ------------------------------------------

    def _advance_to(self, tick: int) -> None:
        delta = (tick - self._now) & TICK_MASK
        if delta >= 1 << 31:
            raise ValueError(f"tick {tick & TICK_MASK} is before the current tick {self.tick}")
        target = self._now + delta
        due: list[tuple[int, int]] = []
        for gpio, ms in enumerate(self._wdog_ms):
            if ms:
                period = ms * 1000
                fire = self._wdog_ref[gpio] + period
                while fire <= target:
                    due.append((fire, gpio))
                    self._wdog_ref[gpio] = fire
                    fire += period
        for fire, gpio in sorted(due):
            self._report(gpio, NTFY_FLAGS_WDOG | gpio, fire & TICK_MASK)
        self._now = target

    def _change(self, gpio: int, level: int) -> None:
        if self._levels[gpio] == level:
            return
        self._levels[gpio] = level
        if gpio < USER_GPIOS:
            self._wdog_ref[gpio] = self._now
            self._report(gpio, 0, self._now & TICK_MASK)

    def _report(self, gpio: int, flags: int, tick: int) -> None:
        bank1 = self._bank(0)
        for n in self._handles.values():
            if n.bits >> gpio & 1:
                n.out.put(_REPORT.pack(n.seq, flags, tick, bank1))
                n.seq = (n.seq + 1) & 0xFFFF

    def _bank(self, first: int) -> int:
        return sum(level << i for i, level in enumerate(self._levels[first : first + 32]))

    def _execute(self, cmd: int, p1: int, p2: int) -> int:
        """One command on the pin model; returns pigpio's result (negative = error)."""
        if cmd in (MODES, MODEG, PUD, READ, WRITE) and p1 >= ALL_GPIOS:
            return PI_BAD_GPIO
        if cmd in (WDOG, FG) and p1 >= USER_GPIOS:
            return PI_BAD_USER_GPIO
        if cmd == MODES:
            if p2 > 7:
                return PI_BAD_MODE
            self._modes[p1] = p2
            return 0
        if cmd == MODEG:
            return self._modes[p1]
        if cmd == PUD:
            if p2 > 2:
                return PI_BAD_PUD
            if p2 and self._modes[p1] == INPUT and p1 not in self._driven:
                self._change(p1, p2 - 1)  # PUD_DOWN=1 -> 0, PUD_UP=2 -> 1
            return 0
        if cmd == READ:
            return self._levels[p1]
        if cmd == WRITE:
            if p2 > 1:
                return PI_BAD_LEVEL
            self._modes[p1] = OUTPUT
            self._change(p1, p2)
            return 0
        if cmd == WDOG:
            if p2 > 60000:
                return PI_BAD_WDOG_TIMEOUT
            self._wdog_ms[p1] = p2
            self._wdog_ref[p1] = self._now
            return 0
        if cmd == FG:
            if p2 > 300000:
                return PI_BAD_FILTER
            self._glitch[p1] = p2
            return 0
        if cmd == BR1:
            return self._bank(0)
        if cmd == BR2:
            return self._bank(32)
        if cmd == TICK:
            return self._now & TICK_MASK
        if cmd == HWVER:
            return self._hw_revision
        if cmd == PIGPV:
            return PIGPIO_VERSION
        if cmd == NB:
            if p1 not in self._handles:
                return PI_BAD_HANDLE
            self._handles[p1].bits = p2
            return 0
        if cmd == NC:
            if p1 not in self._handles:
                return PI_BAD_HANDLE
            self._close_handle(self._handles[p1])
            return 0
        return PI_UNKNOWN_COMMAND

    def _open_handle(self) -> tuple[int, _Notify] | None:
        free = [h for h in range(_NOTIFY_SLOTS) if h not in self._handles]
        if not free:
            return None
        notify = _Notify()
        self._handles[free[0]] = notify
        return free[0], notify

    def _close_handle(self, notify: _Notify) -> None:
        """Forget ``notify`` (if still open); its writer then shuts its socket down, which ends
        its reader."""
        for handle, open_one in list(self._handles.items()):
            if open_one is notify:
                del self._handles[handle]
                notify.out.put(None)

    # -- sockets -----------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._cond:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def _accept_loop(self) -> None:
        listener = self._listener
        if listener is None:
            raise RuntimeError("not listening")
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # listener shut down by stop()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._cond:
                if not self._running:
                    conn.close()
                    return
                self._conns.add(conn)
            self._spawn(self._serve, "pigpio-replay-conn", conn)

    def _serve(self, conn: socket.socket) -> None:
        """Read commands from one connection until it closes, sends NC, or stop()."""
        notify: _Notify | None = None  # set once this connection sent NOIB
        writer: threading.Thread | None = None
        try:
            while (head := _recv_exact(conn, _CMD.size)) is not None:
                cmd, p1, p2, p3 = _CMD.unpack(head)
                if p3 > _MAX_EXT or (p3 and _recv_exact(conn, p3) is None):
                    break
                with self._cond:
                    self._received[cmd] += 1
                    self._cond.notify_all()
                    if notify is not None:
                        if cmd == NC:
                            self._close_handle(notify)
                            break
                        notify.out.put(
                            _CMD.pack(cmd, p1, p2, self._execute(cmd, p1, p2) & TICK_MASK)
                        )
                        continue
                    if cmd == NOIB:
                        opened = self._open_handle()
                        if opened is not None:
                            handle, notify = opened
                            notify.out.put(_CMD.pack(cmd, p1, p2, handle))
                            writer = self._spawn(
                                self._write_loop, "pigpio-replay-notify", conn, notify
                            )
                            continue
                        result = PI_NO_HANDLE
                    else:
                        result = self._execute(cmd, p1, p2)
                conn.sendall(_CMD.pack(cmd, p1, p2, result & TICK_MASK))
        except OSError:
            pass  # the client went away mid-command or mid-report
        finally:
            with self._cond:
                if notify is not None:
                    self._close_handle(notify)
                self._conns.discard(conn)
                self._cond.notify_all()
            if writer is not None:
                writer.join(timeout=5)
            conn.close()

    def _write_loop(self, conn: socket.socket, notify: _Notify) -> None:
        """Send one handle's replies and reports in order; shut the socket when it closes."""
        while (data := notify.out.get()) is not None:
            try:
                conn.sendall(data)
            except OSError:
                break
        _shutdown(conn)


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < size:
        chunk = conn.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _check_user_gpio(gpio: int) -> None:
    if not 0 <= gpio < USER_GPIOS:
        raise ValueError(f"gpio must be 0..{USER_GPIOS - 1}, not {gpio}")


# -- the demo tool ---------------------------------------------------------------------------

Pulse = tuple[int, int]


def parse_ook(text: str) -> list[list[Pulse]]:
    """rtl_433 pulse data: ``;pulse data`` header, ``mark_us gap_us`` lines, ``;end`` per
    packet, optional ``;timescale Nus``; other ``;`` lines are ignored."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != ";pulse data":
        raise ValueError("not rtl_433 pulse data: the first line must be ';pulse data'")
    packets: list[list[Pulse]] = []
    packet: list[Pulse] = []
    scale = 1
    for number, line in enumerate(lines[1:], start=2):
        if line == ";end":
            if packet:
                packets.append(packet)
            packet = []
        elif line.startswith(";timescale"):
            value = line.split()[-1].removesuffix("us")
            if not value.isdigit() or int(value) == 0:
                raise ValueError(f"line {number}: expected ';timescale Nus', got {line!r}")
            scale = int(value)
        elif not line.startswith(";"):
            fields = line.split()
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                raise ValueError(f"line {number}: expected 'mark_us gap_us', got {line!r}")
            packet.append((int(fields[0]) * scale, int(fields[1]) * scale))
    if packet:
        packets.append(packet)
    return packets


def pulses_to_edges(pulses: Sequence[Pulse], start_tick: int) -> tuple[list[tuple[int, int]], int]:
    """``(level, tick)`` edges of one packet starting at ``start_tick``, and the tick after its
    last gap."""
    edges: list[tuple[int, int]] = []
    tick = start_tick
    for mark, gap in pulses:
        edges.append((1, tick & TICK_MASK))
        edges.append((0, (tick + mark) & TICK_MASK))
        tick += mark + gap
    return edges, tick


def replay(
    server: PigpioReplayServer,
    gpio: int,
    packets: Sequence[Sequence[Pulse]],
    pause_us: int = 100_000,
) -> None:
    """Play each packet at once, then let its trailing gap plus ``pause_us`` of silence pass in
    virtual time (so watchdogs fire) and as long in real time as the packet and pause last."""
    for pulses in packets:
        start = server.tick
        edges, end = pulses_to_edges(pulses, start)
        server.play(gpio, edges)
        server.idle((pulses[-1][1] if pulses else 0) + pause_us)
        time.sleep(((end - start) + pause_us) / 1e6)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hardware.pigpio_replay",
        description="Serve an rtl_433 .ook capture as pigpio edge callbacks on one gpio.",
    )
    parser.add_argument("file", type=Path, help="rtl_433 pulse data (.ook)")
    parser.add_argument("--gpio", type=int, default=27, help="gpio the edges appear on")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8888, help="TCP port (0 = any free port)")
    parser.add_argument(
        "--pause-ms", type=int, default=100, help="silence after each packet (ms, 0..60000)"
    )
    parser.add_argument(
        "--once", action="store_true", help="exit when the first client served disconnects"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.gpio < USER_GPIOS:
        parser.error(f"--gpio must be 0..{USER_GPIOS - 1}")
    if not 0 <= args.pause_ms <= 60_000:
        parser.error("--pause-ms must be 0..60000")
    try:
        packets = parse_ook(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 2
    with PigpioReplayServer(args.host, args.port) as server:
        print(f"pigpio replay listening on {args.host}:{server.port} gpio {args.gpio}", flush=True)
        try:
            while True:
                while not server.wait_for(lambda s: s.subscribed(args.gpio), timeout=1.0):
                    pass
                replay(server, args.gpio, packets, args.pause_ms * 1000)
                print(f"replayed {len(packets)} packet(s)", flush=True)
                while not server.wait_for(lambda s: not s.subscribed(args.gpio), timeout=1.0):
                    pass
                if args.once:
                    return 0
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
