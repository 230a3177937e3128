"""The idle device: CPU share and wake-ups per second of the daemon doing nothing, next to a bare
50 Hz Python loop measured in the same run (issue #13).

Starts a local mosquitto, then, one after the other, each in its own process:

- ``live``: ``contactpoint edge run`` on backend ``pi`` with no device it can open (audio and
  the 433 MHz receiver off; the wired buttons and the ranger fail to open on a machine without
  GPIO and are reported as faults): the core loop, the publisher (connected, its outbox empty),
  the till's HTTP server and the route runner, with nothing to do;
- ``sim``: ``contactpoint edge run --scenario`` of an empty scenario (no customers) at real
  speed: the same, plus the simulated microphone's 100 ms audio periods (a device's ALSA
  capture thread wakes as often);
- ``bare``: ``while True: time.sleep(0.02)``, the reference.

After ``--warmup`` seconds each is measured for ``--seconds``: CPU time from every thread's
``/proc/PID/task/TID/schedstat`` (ns on a CPU), wake-ups as the sum of every thread's
``voluntary_ctxt_switches`` (a thread that blocks and is woken counts one). Prints each
figure, and the daemon's next to the bare loop's (ratio). ``--root DIR`` runs the daemon from
another checkout (e.g. ``git archive`` of an older commit) to compare before and after.

    .venv/bin/python bench/idle.py [--seconds 30] [--warmup 5] [--only live|sim] [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

GOAL_CPU_PERCENT = 0.5
GOAL_WAKEUPS = 25.0


@dataclass(frozen=True, slots=True)
class Sample:
    cpu_ns: int
    wakeups: int
    involuntary: int
    threads: int


def sample(pid: int) -> Sample:
    """CPU ns and context switches summed over the process's threads now."""
    cpu = voluntary = involuntary = threads = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu += int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "voluntary_ctxt_switches":
                    voluntary += int(value)
                elif key == "nonvoluntary_ctxt_switches":
                    involuntary += int(value)
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
        threads += 1
    return Sample(cpu, voluntary, involuntary, threads)


@dataclass(frozen=True, slots=True)
class Figures:
    name: str
    cpu_percent: float
    wakeups_s: float
    involuntary_s: float
    threads: int
    per_thread: dict[str, float]


def thread_wakeups(pid: int) -> dict[str, int]:
    """Voluntary context switches by thread (``main``, or its thread id: Python does not name
    its threads for the kernel), for where the wake-ups come from."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "main" if task.name == str(pid) else task.name
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    out[name] = out.get(name, 0) + int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def measure(
    name: str,
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    args: argparse.Namespace,
    log: Path,
) -> Figures:
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output)
    try:
        time.sleep(args.warmup)
        if process.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            sys.exit(
                f"{name}: exited with {process.returncode} during the warm-up:\n" + "\n".join(tail)
            )
        first, first_threads = sample(process.pid), thread_wakeups(process.pid)
        started = time.monotonic()
        time.sleep(args.seconds)
        last, last_threads = sample(process.pid), thread_wakeups(process.pid)
        elapsed = time.monotonic() - started
        if process.poll() is not None:
            sys.exit(f"{name}: exited with {process.returncode} while measured (see {log})")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    per_thread = {
        thread: (count - first_threads.get(thread, 0)) / elapsed
        for thread, count in last_threads.items()
    }
    return Figures(
        name=name,
        cpu_percent=100 * (last.cpu_ns - first.cpu_ns) / 1e9 / elapsed,
        wakeups_s=(last.wakeups - first.wakeups) / elapsed,
        involuntary_s=(last.involuntary - first.involuntary) / elapsed,
        threads=last.threads,
        per_thread=per_thread,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per process")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds after start, not measured"
    )
    parser.add_argument("--only", choices=("live", "sim"), help="one of the daemon's two runs")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to run the daemon from")
    args = parser.parse_args()

    from provisioning.broker import LocalBroker

    root = args.root.resolve()
    work = Path(tempfile.mkdtemp(prefix="cp-bench-idle-"))
    env = {**os.environ, "PYTHONPATH": str(root)}
    front = [sys.executable, "-m", "provisioning.main"]
    results: list[Figures] = []
    with LocalBroker(work / "broker") as broker:
        common = f"[mqtt]\nbroker = '{broker.url}'\n[receipts]\nport = 0\n"
        if args.only in (None, "live"):
            config = work / "live.toml"
            config.write_text(
                "[hardware]\nbackend = 'pi'\n[audio]\nenabled = false\n[rf433]\nenabled = false\n"
                + common
            )
            command = [*front, "edge", "run", "--config", str(config), "--data", str(work / "live")]
            results.append(
                measure("live", command, cwd=root, env=env, args=args, log=work / "live.log")
            )
        if args.only in (None, "sim"):
            config = work / "sim.toml"
            config.write_text(common)
            scenario = work / "empty.toml"
            length = args.warmup + args.seconds + 60
            scenario.write_text(f'start = "2026-11-23T09:00:00Z"\nduration = {length:.0f}.0\n')
            command = [
                *front, "edge", "run", "--config", str(config), "--data", str(work / "sim"),
                "--scenario", str(scenario), "--speed", "1",
            ]  # fmt: skip
            results.append(
                measure("sim", command, cwd=root, env=env, args=args, log=work / "sim.log")
            )
    bare = measure(
        "bare",
        [sys.executable, "-c", "import time\nwhile True:\n    time.sleep(0.02)"],
        cwd=root,
        env=env,
        args=args,
        log=work / "bare.log",
    )
    load = os.getloadavg()
    print(
        f"idle: {args.seconds:g} s measured after a {args.warmup:g} s warm-up, daemon from {root}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)"
    )
    for figures in [*results, bare]:
        print(
            f"  {figures.name:>4}: {figures.cpu_percent:.3f} % of a core, "
            f"{figures.wakeups_s:.1f} wake-ups/s ({figures.involuntary_s:.1f} preempted/s), "
            f"{figures.threads} threads"
        )
        busiest = sorted(figures.per_thread.items(), key=lambda kv: -kv[1])[:6]
        print("        by thread: " + ", ".join(f"{name} {rate:.1f}/s" for name, rate in busiest))
    for figures in results:
        print(
            f"  {figures.name} / bare 50 Hz loop: "
            f"CPU {figures.cpu_percent / bare.cpu_percent:.2f}x, "
            f"wake-ups {figures.wakeups_s / bare.wakeups_s:.2f}x; goal <= {GOAL_CPU_PERCENT} % "
            f"and <= {GOAL_WAKEUPS:g} wake-ups/s: "
            + (
                "met"
                if figures.cpu_percent <= GOAL_CPU_PERCENT and figures.wakeups_s <= GOAL_WAKEUPS
                else "NOT met"
            )
        )
    print(f"data: {work}")


if __name__ == "__main__":
    main()
