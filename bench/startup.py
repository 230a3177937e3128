"""How long ``contactpoint`` takes to start: wall time of whole commands, run as a user would.

For each command it prints the median, fastest and slowest wall time of ``--runs`` fresh
processes, next to the bare interpreter (``python -c pass``), and from one more run under
``python -X importtime`` the time spent importing in all and the modules that cost the most
(cumulative: with what they import).

    .venv/bin/python bench/startup.py [--runs 20] [--top 5]
                                      [--command "python -m provisioning.main"]

``--command`` is what starts contactpoint (default: this interpreter with ``-m
provisioning.main``, the entry point of the ``contactpoint`` script); to measure another tree
(before the entry point moved: ``python -m edge.cli``), run this file from that tree's root.
Run it from the repository root: the commands run in the current directory.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time

CAPTURE = "tests/fixtures/rf433/ev1527_320us.ook"
COMMANDS = [["--help"], ["--version"], ["rf433", "decode", CAPTURE], ["sink", "run", "--help"]]


def wall_times(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=120)
        times.append(time.perf_counter() - start)
    return times


def top_level_imports(argv: list[str]) -> list[tuple[float, str]]:
    """(cumulative ms, module) of every import not made by another module, slowest first."""
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
    )  # fmt: skip
    found = []
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[1].strip().isdigit():
            continue  # the header, or what the command itself wrote
        name = fields[2].rstrip()
        if name.startswith("  "):  # imported by another module: counted in that one
            continue
        found.append((int(fields[1]) / 1000, name.strip()))
    return sorted(found, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="processes per command")
    parser.add_argument("--top", type=int, default=5, help="slowest imports to show")
    parser.add_argument(
        "--command",
        default=f"{shlex.quote(sys.executable)} -m provisioning.main",
        help="what starts contactpoint (the first word must be a Python interpreter)",
    )
    args = parser.parse_args()
    command = shlex.split(args.command)
    base = wall_times([command[0], "-c", "pass"], args.runs)
    print(f"{args.runs} runs each; the bare interpreter: median {statistics.median(base):.3f} s")
    print(
        f"{'command':<32} {'median':>8} {'fastest':>8} {'slowest':>8} {'imports':>8}   "
        "slowest imports (ms)"
    )
    for extra in COMMANDS:
        argv = [*command, *extra]
        times = wall_times(argv, args.runs)
        imports = top_level_imports(argv)
        slowest = ", ".join(f"{name} {ms:.0f}" for ms, name in imports[: args.top])
        total = sum(ms for ms, _ in imports) / 1000
        shown = " ".join(["contactpoint", *extra]).replace(CAPTURE, "FILE.ook")
        print(
            f"{shown:<32} {statistics.median(times):7.3f}s {min(times):7.3f}s "
            f"{max(times):7.3f}s {total:7.3f}s   {slowest}"
        )


if __name__ == "__main__":
    main()
