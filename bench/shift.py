"""An 8-hour shift through the real edge pipeline (simulated hardware, 16 kHz audio).

Prints, from one run: audio-seconds processed per CPU-second, peak RSS next to the ring
buffer's own size, and bytes written to disk per contact (clips + store).

    .venv/bin/python bench/shift.py [--hours 8] [--codec wav|flac|opus] [--data DIR]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from edge.config import Config
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, run_simulation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--codec", choices=["wav", "flac", "opus"], default="wav")
    parser.add_argument("--data", type=Path, help="keep the output here (default: a temp dir)")
    args = parser.parse_args()

    cfg = Config.from_dict({"audio": {"codec": args.codec}})
    scenario = busy_shift(args.hours)
    data = args.data or Path(tempfile.mkdtemp(prefix="cp-bench-"))
    data.mkdir(parents=True, exist_ok=True)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    cpu0, wall0 = time.process_time(), time.perf_counter()
    summary = run_simulation(cfg, scenario, data / "scenario.toml", data)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0

    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ring_bytes = round(cfg.ring_seconds() * cfg.audio.sample_rate) * 2
    clip_bytes = sum(p.stat().st_size for p in (data / "clips").iterdir())
    store_bytes = sum(p.stat().st_size for p in data.iterdir() if p.name.startswith(STORE_NAME))
    per_contact = (clip_bytes + store_bytes) / max(1, summary.contacts)
    print(
        f"shift: {args.hours:g} h, {summary.contacts} contacts, {summary.clips} clips "
        f"({args.codec}), {summary.orphan_events} orphan events"
    )
    print(
        f"audio-seconds per CPU-second: {summary.audio_seconds / cpu:,.0f}  "
        f"(CPU {cpu:.1f} s, wall {wall:.1f} s for {summary.audio_seconds:,.0f} s of audio)"
    )
    print(
        f"peak RSS: {rss_peak / 2**20:.0f} MiB (before the run {rss_before / 2**20:.0f} MiB); "
        f"ring buffer: {ring_bytes / 2**20:.0f} MiB; "
        f"ratio peak RSS / ring = {rss_peak / ring_bytes:.2f}, "
        f"RSS growth during the run / ring = {(rss_peak - rss_before) / ring_bytes:.2f}"
    )
    print(
        f"bytes written per contact: {per_contact / 1e6:.2f} MB "
        f"(clips {clip_bytes / 1e6:.0f} MB + store {store_bytes / 1e6:.1f} MB)"
    )
    print(f"data: {data}")


if __name__ == "__main__":
    main()
