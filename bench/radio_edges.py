"""The live 433 MHz path per edge: gpiod's event batches → ``RadioEdge`` → the inbox → the decoder.

What a Pi with the default radio backend does for every edge the kernel time-stamps: the reader
thread of :class:`hardware.gpiod_rx.GpiodRf433Receiver` turns each batch of ``gpiod.EdgeEvent``
(read with ``read_edge_events``) into ``RadioEdge`` events put on the daemon's inbox (a
``queue.SimpleQueue``, as ``edge.runtime`` builds it); the core loop takes them off and feeds
:class:`edge.radio.Decoder` (edges → pulses → frames → protocol decoders), as ``edge.app`` does.

The signal: every recorded fixture (``tests/fixtures/rf433/*.ook``, each packet as the remote
sent it) between stretches of an idle receiver's AGC noise (``hardware._remote.agc_noise``:
bursts of 20–400 µs levels between 1.5–20 ms silences), mixed with dense spikes up to
``--rate`` edges/s, repeated for ``--seconds`` of signal; the kernel time starts 10 s before the
tick's 32-bit wrap. The ``EdgeEvent`` objects are built beforehand (the bindings build them in
their ``read_edge_events``, not our code); the timed part is ``_handle`` on each batch of
``--batch`` events (what the reader thread runs after a read), then the core loop's share
(``inbox.get`` and ``Decoder.feed``). Timed with ``time.process_time`` (best of ``--runs``).

Prints µs per edge for each stage and in all, the share of one core at the stream's edge rate
and at 10,000 edges/s, and the codes decoded against the fixtures' expectations (a check that
the path still works). ``--profile`` prints cProfile's top functions for one more run.

    .venv/bin/python bench/radio_edges.py [--seconds 20] [--rate 10000] [--batch 256]
                                          [--runs 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import queue
import random
import time
from pathlib import Path
from typing import Any

import gpiod

from edge.radio import Decoder
from edge.radio.pulses import read_ook
from hardware import RadioEdge
from hardware import _remote as remote
from hardware.gpiod_rx import BATCH, GpiodRf433Receiver

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "rf433"
WRAP_NS = (1 << 32) * 1000
START_NS = WRAP_NS * 3 - 10 * 10**9  # the µs tick wraps 10 s into the stream
GPIO = 27
SPIKE_US = (20, 100)  # dense short levels of a receiver at full gain


def signal(seconds: float, rate: float, seed: int) -> tuple[list[tuple[int, int]], int]:
    """``(mark_us, gap_us)`` pulses: fixtures between AGC noise, with spikes added to the noise to
    reach ``rate`` edges/s; and how many codes the fixtures expect."""
    packets: list[list[tuple[int, int]]] = []
    expected = 0
    for ook in sorted(FIXTURES.glob("*.ook")):
        for packet in read_ook(ook.read_text(), ook.name):
            packets.append([(int(m), int(g)) for m, g in packet])
        wanted = ook.with_suffix(".expected.jsonl")
        if wanted.exists():
            expected += sum(1 for line in wanted.read_text().splitlines() if line.strip())
    rng = random.Random(seed)
    one: list[tuple[bool, tuple[int, int]]] = []  # (noise?, pulse) of one round
    for packet in packets:
        one += [(True, pulse) for pulse in remote.agc_noise(0.05, rng.getrandbits(32))]
        one += [(False, (10_000, 30_000)), *((False, pulse) for pulse in packet)]
        one.append((False, (300, 60_000)))  # a quiet line around each recording
    base_edges = 2 * len(one)
    base_us = sum(m + g for _, (m, g) in one)
    spike_us = 2 * (SPIKE_US[0] + SPIKE_US[1]) / 2
    extra = max(0.0, (rate * base_us / 1e6 - base_edges) / (2 - rate * spike_us / 1e6))
    per_noise = extra / sum(1 for noise, _ in one if noise)
    out: list[tuple[int, int]] = []
    rounds = 0
    total_us = 0
    while total_us < seconds * 1e6:
        rounds += 1
        for noise, pulse in one:
            if noise:
                spikes = int(per_noise) + (rng.random() < per_noise % 1)
                for _ in range(spikes):
                    out.append((rng.randint(*SPIKE_US), rng.randint(*SPIKE_US)))
                    total_us += out[-1][0] + out[-1][1]
            out.append(pulse)
            total_us += pulse[0] + pulse[1]
    return out, expected * rounds


def edge_events(pulses: list[tuple[int, int]]) -> list[Any]:
    """The kernel's events for those pulses, as gpiod's bindings give them."""
    rising, falling = gpiod.EdgeEvent.Type.RISING_EDGE, gpiod.EdgeEvent.Type.FALLING_EDGE
    events = []
    t = START_NS
    seq = 0
    for mark, gap in pulses:
        seq += 1
        events.append(gpiod.EdgeEvent(rising.value, t, 0, seq, seq))
        seq += 1
        events.append(gpiod.EdgeEvent(falling.value, t + mark * 1000, 0, seq, seq))
        t += (mark + gap) * 1000
    assert events[0].event_type == rising
    return events


def receiver(inbox: queue.SimpleQueue[Any]) -> GpiodRf433Receiver:
    """A receiver ready to handle batches (what ``start`` sets up, without a line)."""
    rx = GpiodRf433Receiver(GPIO, watchdog_ms=20)
    rx._rising = gpiod.EdgeEvent.Type.RISING_EDGE
    rx._sink = inbox.put
    return rx


def run(batches: list[list[Any]]) -> tuple[float, float, int]:
    """CPU seconds of the reader's part, of the core loop's part, and codes decoded."""
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    rx = receiver(inbox)
    decoder = Decoder()
    handle = rx._handle
    get = inbox.get_nowait
    feed = decoder.feed
    reader_s = loop_s = 0.0
    codes = 0
    for batch in batches:
        start = time.process_time()
        handle(batch)
        middle = time.process_time()
        while not inbox.empty():
            event = get()
            if isinstance(event, RadioEdge):
                codes += len(feed(event.level, event.tick_us, event.t_ns))
        end = time.process_time()
        reader_s += middle - start
        loop_s += end - middle
    return reader_s, loop_s, codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="at least this much signal (whole rounds)"
    )
    parser.add_argument("--rate", type=float, default=10_000, help="target edges per second")
    parser.add_argument("--batch", type=int, default=BATCH, help="events per read")
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile one more run")
    args = parser.parse_args()

    pulses, expected = signal(args.seconds, args.rate, args.seed)
    events = edge_events(pulses)
    span_s = (events[-1].timestamp_ns - events[0].timestamp_ns) / 1e9
    batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
    best: tuple[float, float, int] | None = None
    for _ in range(args.runs):
        got = run(batches)
        if best is None or got[0] + got[1] < best[0] + best[1]:
            best = got
    assert best is not None
    reader_s, loop_s, codes = best
    n = len(events)
    per_edge = (reader_s + loop_s) / n * 1e6
    print(
        f"radio edges: {n:,} edges over {span_s:.1f} s of signal ({n / span_s:,.0f} edges/s), "
        f"batches of {args.batch}, best of {args.runs}"
    )
    print(f"  reader (_handle → RadioEdge → inbox): {reader_s / n * 1e6:.3f} µs/edge")
    print(f"  core loop (inbox → Decoder.feed):     {loop_s / n * 1e6:.3f} µs/edge")
    print(
        f"  in all: {per_edge:.3f} µs/edge (goal 1 µs: {'met' if per_edge <= 1 else 'NOT met'}); "
        f"{per_edge * n / span_s / 1e4:.1f} % of a core at this stream's rate, "
        f"{per_edge:.1f} % at 10,000 edges/s"
    )
    print(f"  codes decoded: {codes} (the fixtures expect {expected})")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, batches)
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
