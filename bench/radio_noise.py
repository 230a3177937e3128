"""The 433 MHz decoder on an idle receiver's noise: ~10,000 edges/s, as cheap receivers give.

Prints, from one run: µs of CPU per edge, the share of one core the decoder needs at the
stream's edge rate (CPU seconds / signal seconds), codes reported (must be 0) and reject reasons;
then the same with one EV1527 press in the middle of the noise (must be decoded once); then both
again behind a pigpio-like glitch filter of ``--glitch-us`` (the recommended receiver config),
which in a deployment runs inside pigpiod, so its own Python cost is printed apart.

Noise is ``hardware._remote.noise`` pulses turned into edges by ``to_edges`` (what
``noise_edges`` does): short 20–200 µs spikes mixed with the module's default 50–2000 µs idle
noise, whose long gaps close frames and so exercise the protocol decoders, in the proportion that
gives ``--rate`` edges/s. Ticks start 10 s before the 32-bit wrap, as on a Pi up ~71 minutes.

    .venv/bin/python bench/radio_noise.py [--seconds 30] [--rate 10000] [--glitch-us 100]
                                          [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import Counter
from dataclasses import dataclass

from edge.radio import Decoded, Decoder
from hardware import _remote as remote

WRAP = 1 << 32
START_TICK_US = WRAP - 10_000_000  # the tick wraps 10 s into the stream
SPIKES_US = (20, 200)  # dense short spikes of a receiver at full gain
IDLE_US = (50, 2000)  # hardware._remote.noise's defaults
PRESS_ID, PRESS_KEY, PRESS_PULSE_US, PRESS_REPEATS = 0x5A3C1, 0x9, 320, 8

Edge = tuple[int, int, int]  # (level, tick_us, t_ns)


def edges_of(pulses: list[tuple[int, int]]) -> list[Edge]:
    """Pulses as the pigpio callback reports them: 32-bit ticks, plus monotonic ns."""
    plain = remote.to_edges(pulses, 0)
    return [(level, (START_TICK_US + t) % WRAP, t * 1000) for level, t in plain]


def mean_pulse_us(min_us: int, max_us: int) -> float:
    """Mean mark + gap of :func:`hardware._remote.noise` pulses (log-uniform levels)."""
    return 2 * (max_us - min_us) / math.log(max_us / min_us)


def noise_pulses(seconds: float, rate: float, seed: int) -> list[tuple[int, int]]:
    """``seconds`` of receiver noise at ``rate`` edges/s: short spikes (``SPIKES_US``) mixed
    with the project's idle-receiver noise (``IDLE_US``, whose long gaps close frames and so
    reach the protocol decoders), in the proportion that gives ``rate``."""
    spike, idle = mean_pulse_us(*SPIKES_US), mean_pulse_us(*IDLE_US)
    share = min(1.0, max(0.0, (2e6 / rate - spike) / (idle - spike)))
    count = int(seconds * rate / 2 * 1.1) + 1
    spikes = remote.noise(count, seed, *SPIKES_US)
    idles = remote.noise(count, seed + 1, *IDLE_US)
    pick = random.Random(seed + 2)
    out: list[tuple[int, int]] = []
    total = 0
    for spike_pulse, idle_pulse in zip(spikes, idles, strict=True):
        mark, gap = idle_pulse if pick.random() < share else spike_pulse
        out.append((mark, gap))
        total += mark + gap
        if total >= seconds * 1e6:
            break
    return out


def glitch_filter(edges: list[Edge], steady_us: int) -> list[Edge]:
    """pigpio's ``set_glitch_filter``: a level is reported only once it held ``steady_us``.

    A change undone sooner is dropped together with the change that undid it; a reported edge
    keeps the tick of its change. Time comes from ``t_ns`` (unwrapped).
    """
    steady_ns = steady_us * 1000
    out: list[Edge] = []
    level_out = 0  # the line rests low
    pending: Edge | None = None
    for edge in edges:
        if pending is not None:
            if edge[2] - pending[2] >= steady_ns:
                out.append(pending)
                level_out = pending[0]
            pending = None  # reported, or a glitch undone by this edge
        if edge[0] != level_out:
            pending = edge
    if pending is not None:
        out.append(pending)  # the line holds its last level to the end
    return out


@dataclass(frozen=True, slots=True)
class Run:
    edges: int
    signal_s: float
    cpu_s: float
    codes: list[Decoded]
    rejects: Counter[str]

    @property
    def us_per_edge(self) -> float:
        return self.cpu_s / self.edges * 1e6

    @property
    def core_share(self) -> float:
        return self.cpu_s / self.signal_s


def decode(edges: list[Edge], signal_s: float) -> Run:
    """Feed every edge to a fresh default :class:`Decoder`, timing only the feeding."""
    decoder = Decoder()
    feed = decoder.feed
    codes: list[Decoded] = []
    cpu0 = time.process_time()
    for level, tick, t_ns in edges:
        got = feed(level, tick, t_ns)
        if got:
            codes.extend(got)
    cpu = time.process_time() - cpu0
    return Run(len(edges), signal_s, cpu, codes, decoder.stats)


def report(title: str, run: Run, raw_edges: int) -> None:
    reasons = ", ".join(f"{k} {v:,}" for k, v in run.rejects.most_common())
    print(f"{title}")
    print(
        f"  edges fed: {run.edges:,} ({run.edges / raw_edges:.0%} of the raw stream, "
        f"{run.edges / run.signal_s:,.0f}/s)"
    )
    print(
        f"  CPU per edge: {run.us_per_edge:.2f} µs; share of one core: {run.core_share:.1%} "
        f"(CPU {run.cpu_s:.2f} s / signal {run.signal_s:.0f} s)"
    )
    codes = ", ".join(
        f"{c.protocol} id={c.id:05x} key={c.key} at {c.t_ns / 1e9:.3f} s"
        if c.id is not None and c.key is not None
        else f"{c.protocol} {c.hex}"
        for c in run.codes
    )
    print(f"  codes reported: {len(run.codes)}{' — ' + codes if codes else ''}")
    print(f"  rejects by reason: {reasons or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of noise")
    parser.add_argument("--glitch-us", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10_000, help="noise edges per second")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    noise = noise_pulses(args.seconds, args.rate, args.seed)
    half = len(noise) // 2
    press = remote.ev1527(PRESS_ID, PRESS_KEY, PRESS_PULSE_US, PRESS_REPEATS)
    press_start_us = sum(m + g for m, g in noise[:half])
    press_end_us = press_start_us + sum(m + g for m, g in press) - press[-1][1]
    streams = {
        "noise only": edges_of(noise),
        "noise + one EV1527 press": edges_of([*noise[:half], *press, *noise[half:]]),
    }
    print(
        f"decoder: edge/radio Decoder (defaults); noise: {SPIKES_US[0]}–{SPIKES_US[1]} µs "
        f"spikes + {IDLE_US[0]}–{IDLE_US[1]} µs idle noise, log-uniform, seed {args.seed}; "
        f"press: EV1527 id {PRESS_ID:05x} key {PRESS_KEY}, "
        f"{PRESS_PULSE_US} µs, {PRESS_REPEATS} repeats, sent {press_start_us / 1e6:.3f}–"
        f"{press_end_us / 1e6:.3f} s"
    )
    for name, edges in streams.items():
        signal_s = edges[-1][2] / 1e9
        report(
            f"{name}: {signal_s:.0f} s of signal, no filter", decode(edges, signal_s), len(edges)
        )
        cpu0 = time.process_time()
        kept = glitch_filter(edges, args.glitch_us)
        filter_cpu = time.process_time() - cpu0
        run = decode(kept, signal_s)
        report(f"{name}: behind a {args.glitch_us} µs glitch filter", run, len(edges))
        print(
            f"  (the filter itself, in Python here, pigpiod's C on a Pi: "
            f"{filter_cpu / len(edges) * 1e6:.2f} µs per raw edge)"
        )


if __name__ == "__main__":
    main()
