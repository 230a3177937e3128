"""One capture, three paths, one answer: every rtl_433 capture in tests/fixtures/rf433 decodes
to its expected presses through ``rf433 decode`` (the file), through the real pigpio client
against the pigpiod look-alike, and through the gpiod receiver reading real ``gpiod.EdgeEvent``
objects — and the two receivers hand the decoder the same edges.

Both replays run on virtual time from the same start, 5 s before the 32-bit µs tick wraps, so
their ticks are equal; the decoder gets each edge's virtual time (pigpio's callbacks are stamped
by a Python clock, which in a replay says nothing about the signal).
"""

from __future__ import annotations

import itertools
import json
import queue
from pathlib import Path
from typing import Any

import pytest

from edge.radio import Decoder, decode_ook_file, read_ook
from hardware._api import HardwareEvent, RadioEdge
from hardware.gpiod_replay import GpiodReplay, pi5_chips
from hardware.gpiod_rx import GpiodRf433Receiver
from hardware.pigpio_replay import PigpioReplayServer
from hardware.rf433 import Rf433Receiver

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rf433"
CAPTURES = sorted(FIXTURES.glob("*.ook"))
GPIO = 27
MASK = 0xFFFFFFFF
WATCHDOG_MS = 20
START_US = (1 << 32) - 5_000_000
WAIT = 10.0

Edge = tuple[int, int]  # (level, tick_us) as the decoder sees it


def capture_edges(capture: Path) -> list[tuple[int, int]]:
    """``(level, t_us)`` edges of all the capture's packets back to back, from ``START_US``."""
    edges: list[tuple[int, int]] = []
    t = START_US
    for packet in read_ook(capture.read_text()):
        for mark, gap in packet:
            edges += [(1, t), (0, t + mark)]
            t += mark + gap
    return edges


def collect(got: queue.SimpleQueue[HardwareEvent], edges: list[tuple[int, int]]) -> list[Edge]:
    """The receiver's radio edges up to the watchdog after the last edge."""
    out: list[Edge] = []
    levels = 0
    last = (edges[-1][1] + WATCHDOG_MS * 1000) & MASK
    while True:
        event = got.get(timeout=WAIT)
        assert isinstance(event, RadioEdge), event
        out.append((event.level, event.tick_us))
        levels += event.level in (0, 1)
        if levels == len(edges) and event.level == 2 and event.tick_us == last:
            return out


def via_pigpio(edges: list[tuple[int, int]]) -> list[Edge]:
    got: queue.SimpleQueue[HardwareEvent] = queue.SimpleQueue()
    with PigpioReplayServer(start_tick=START_US - 1000) as server:
        receiver = Rf433Receiver(
            GPIO, host="127.0.0.1", port=server.port, watchdog_ms=WATCHDOG_MS, glitch_us=0
        )
        receiver.start(got.put)
        try:
            server.play(GPIO, [(level, t & MASK) for level, t in edges])
            server.idle(2 * WATCHDOG_MS * 1000)
            return collect(got, edges)
        finally:
            receiver.stop()


def via_gpiod(edges: list[tuple[int, int]]) -> list[Edge]:
    got: queue.SimpleQueue[HardwareEvent] = queue.SimpleQueue()
    replay = GpiodReplay(pi5_chips(new_kernel=False), start_ns=(START_US - 1000) * 1000)
    receiver = GpiodRf433Receiver(GPIO, watchdog_ms=WATCHDOG_MS, access=replay)
    receiver.start(got.put)
    try:
        replay.play([(level, t * 1000) for level, t in edges])
        replay.idle(2 * WATCHDOG_MS * 1_000_000)
        out = collect(got, edges)
        assert receiver.lost_edges == 0
        return out
    finally:
        receiver.stop()


def decode(edges: list[Edge], glitch_us: int) -> list[dict[str, Any]]:
    decoder = Decoder(glitch_us=glitch_us)
    out = []
    t_us = START_US
    last = START_US & MASK
    for level, tick in edges:
        t_us += (tick - last) & MASK  # the replay's virtual time, unwrapped
        last = tick
        out += [d.to_json() for d in decoder.feed(level, tick, t_us * 1000)]
    return out


def once_per_silence(edges: list[Edge]) -> list[Edge]:
    """pigpiod repeats its watchdog every period; the gpiod receiver reports a silence once."""
    return [
        e for e, prev in zip(edges, [(-1, -1), *edges], strict=False) if e[0] != 2 or prev[0] != 2
    ]


@pytest.fixture(scope="module")
def expected() -> dict[str, list[Any]]:
    return {
        c.stem: [
            json.loads(line) for line in c.with_suffix(".expected.jsonl").read_text().splitlines()
        ]
        for c in CAPTURES
    }


def test_every_capture_is_covered() -> None:
    assert len(CAPTURES) >= 35


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.stem for c in CAPTURES])
def test_a_capture_decodes_identically_through_the_file_pigpio_and_gpiod(
    capture: Path, expected: dict[str, list[Any]]
) -> None:
    want = expected[capture.stem]
    edges = capture_edges(capture)
    pigpio_edges = via_pigpio(edges)
    gpiod_edges = via_gpiod(edges)
    assert once_per_silence(pigpio_edges) == gpiod_edges
    assert [e for e in gpiod_edges if e[0] != 2] == [(lv, t & MASK) for lv, t in edges]
    for glitch_us in (0, 100):
        assert list(decode_ook_file(capture, glitch_us=glitch_us)) == want
        assert decode(pigpio_edges, glitch_us) == want
        assert decode(gpiod_edges, glitch_us) == want


def test_the_pigpio_and_gpiod_paths_really_differ_in_transport() -> None:
    # the watchdog of pigpiod repeats, the gpiod receiver's does not: the comparison above is
    # between two different streams, not one stream twice
    edges = capture_edges(FIXTURES / "two_keys.ook")
    pigpio_edges = via_pigpio(edges)
    assert len(pigpio_edges) > len(once_per_silence(pigpio_edges))
    assert list(itertools.islice((e for e in pigpio_edges if e[0] == 2), 1))
