"""Device memory: peak RSS of the daemon playing a simulated shift, next to its RAM ring.

Runs ``contactpoint edge run --scenario SHIFT --speed N`` — the daemon's own assembly (core loop,
store, publisher to a local mosquitto this bench starts, route workers) on the simulated
hardware at N times real time — in a child process, or ``contactpoint simulate SHIFT`` (virtual
time, no broker) with ``--simulate``. Prints, from one run:

- the ring's size (the default config's ``ring_seconds()`` at 16 kHz, 2 bytes a sample);
- the RSS of the interpreter alone, and of a child that only imports the modules the run had
  loaded at its end (what the code costs before any audio), then the same for each top-level
  package alone;
- the run's peak RSS (``VmHWM``) and ``peak − ring`` against the goal (ring + 45 MiB), with the
  peak's split into anonymous memory (heap, the ring) and file-backed pages (libraries' code);
- with ``--top N`` (default 12), a second run under ``tracemalloc`` (started before any import):
  its traced peak and the largest allocations alive at that peak, by line and by package.

The child samples ``/proc/self/status`` every 0.1 s from a thread; tracemalloc slows the second
run and adds its own bookkeeping, so its figures explain the first run's, they do not replace it.
Needs ``mosquitto`` unless ``--simulate``. The children run as on a device installed with
``contactpoint[edge]``: the sink-only libraries (:data:`SINK_ONLY`) cannot be imported, unless
``--dev-install`` (this virtualenv as it is: peewee then loads psycopg); and with the
environment the device's systemd unit gives the daemon (its ``Environment=`` lines: glibc's
malloc settings), unless ``--no-unit-env``.

    .venv/bin/python bench/memory.py [--hours 8] [--speed 480] [--simulate] [--top 12]
                                     [--dev-install] [--no-unit-env]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The child runs this module, so what it imports counts in the run's figures and module list:
# the modules the daemon itself does not load (subprocess, shlex, tempfile's, tracemalloc with
# pickle) are imported only where used, in the parent or in the traced child.
if TYPE_CHECKING:
    import tracemalloc

HERE = Path(__file__).resolve()
RATE = 16000
MiB = 2**20
GOAL_OVER_RING = 45 * MiB
#: libraries only the central host installs (pyproject's ``sink`` extra) that the daemon's
#: libraries would load if present: peewee 4 imports psycopg at import time when it can (its
#: driver probe), which a device installed with ``contactpoint[edge]`` cannot. The child hides
#: them unless ``--dev-install``, so the figure is the device's, not this virtualenv's.
#: (pydantic: the sink API's models; the device's config is msgspec's)
SINK_ONLY = ("psycopg", "psycopg_binary", "psycopg_c", "psycopg2", "cryptography", "matplotlib",
             "pydantic", "pydantic_core")  # fmt: skip


DEV_INSTALL = [False]  # set from --dev-install for every child
#: the device's service unit: its ``Environment=`` lines are the daemon's environment there
UNIT = HERE.parent.parent / "provisioning" / "systemd" / "contactpoint-edge.service"
UNIT_ENV: dict[str, str] = {}  # set from the unit unless --no-unit-env, for every child


def unit_environment(unit: Path = UNIT) -> dict[str, str]:
    """The variables the unit's ``Environment=`` lines set (systemd's quoting, as shlex's)."""
    import shlex

    out: dict[str, str] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key == "Environment":
            for assignment in shlex.split(value):
                name, _, setting = assignment.partition("=")
                out[name] = setting
    return out


class _SinkOnly(importlib.abc.MetaPathFinder):
    """Import of a :data:`SINK_ONLY` module fails as it does where it is not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".", maxsplit=1)[0] in SINK_ONLY:
            raise ModuleNotFoundError(f"No module named {name!r} (not on a device)", name=name)


# -- the child ------------------------------------------------------------------------------------


def proc_status() -> dict[str, int]:
    """The memory lines of /proc/self/status, in bytes."""
    out: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key.startswith(("Vm", "Rss")) and value.strip().endswith("kB"):
                out[key] = int(value.split()[0]) * 1024
    return out


class Sampler:
    """Keeps the /proc sample with the largest RSS and, when tracing, the snapshot taken at the
    largest traced size (re-taken whenever the traced size grows by 5 %)."""

    def __init__(self, trace: bool) -> None:
        self.trace = trace
        self.peak: dict[str, int] = proc_status()
        self.snapshot: tracemalloc.Snapshot | None = None
        self._snapshot_size = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._done.wait(0.1):
            self._sample()

    def _sample(self) -> None:
        now = proc_status()
        if now.get("VmRSS", 0) > self.peak.get("VmRSS", 0):
            self.peak = now
        if self.trace:
            import tracemalloc

            current, _ = tracemalloc.get_traced_memory()
            if current > self._snapshot_size * 1.05:
                self.snapshot = tracemalloc.take_snapshot()
                self._snapshot_size = current


def by_package(path: str) -> str:
    """A traceback file's package: ``numpy``, ``edge``, ``<stdlib>``, ``<frozen>``..."""
    if path.startswith("<"):
        return "<frozen importlib>" if "importlib" in path else path
    parts = Path(path).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    for ours in ("edge", "hardware", "contract", "provisioning", "cloud_sink"):
        if ours in parts:
            return ours
    return "<stdlib>" if "python3" in path else path


def child(
    out: Path, trace: int, imports: Path | None, argv: list[str], dev_install: bool = False
) -> None:
    """Run the CLI (or only import ``imports``' modules), then write the figures to ``out``."""
    if not dev_install:
        sys.meta_path.insert(0, _SinkOnly())
    if trace:
        import tracemalloc

        tracemalloc.start(1)
    result: dict[str, Any] = {"start": proc_status()}
    with Sampler(bool(trace)) as sampler:
        if imports is not None:
            for name in json.loads(imports.read_text()):
                try:
                    importlib.import_module(name)
                except Exception as exc:  # a module that cannot be imported alone: say so
                    result.setdefault("not_imported", []).append(f"{name}: {exc}")
            code = 0
        else:
            from provisioning.main import main

            code = main(argv)
    result.update(code=code, peak=sampler.peak, end=proc_status(), modules=sorted(sys.modules))
    if trace and sampler.snapshot is not None:
        result["traced_peak"] = tracemalloc.get_traced_memory()[1]
        snapshot = sampler.snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        lines = snapshot.statistics("lineno")
        result["top_lines"] = [
            (str(s.traceback[0].filename), s.traceback[0].lineno, s.size) for s in lines[:trace]
        ]
        packages: dict[str, int] = {}
        for stat in snapshot.statistics("filename"):
            key = by_package(str(stat.traceback[0].filename))
            packages[key] = packages.get(key, 0) + stat.size
        result["packages"] = sorted(packages.items(), key=lambda kv: -kv[1])[:trace]
        result["traced_at_snapshot"] = sum(s.size for s in lines)
    out.write_text(json.dumps(result))


# -- the parent -----------------------------------------------------------------------------------


def run_child(
    work: Path, name: str, argv: list[str], *, trace: int = 0, imports: Path | None = None
) -> dict[str, Any]:
    import subprocess

    out = work / f"{name}.json"
    command = [sys.executable, str(HERE), "--child", str(out), "--trace", str(trace)]
    if imports is not None:
        command += ["--imports", str(imports)]
    if DEV_INSTALL[0]:
        command.append("--dev-install")
    env = {**os.environ, **UNIT_ENV, "PYTHONPATH": str(HERE.parent.parent)}
    started = time.perf_counter()
    log = work / f"{name}.log"
    with log.open("wb") as output:  # the daemon's log lines (alerts...) are not the figures
        done = subprocess.run(
            [*command, "--", *argv], check=False, env=env, stdout=output, stderr=output
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        sys.exit(f"{name}: the child exited with {done.returncode}:\n" + "\n".join(tail))
    result: dict[str, Any] = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - started
    if result["code"] != 0:
        sys.exit(f"{name}: the run exited with {result['code']}")
    return result


@contextmanager
def broker_url(work: Path, simulate: bool) -> Iterator[str | None]:
    if simulate:
        yield None
        return
    from provisioning.broker import LocalBroker

    with LocalBroker(work / "broker") as broker:
        yield broker.url


def mib(value: float) -> str:
    return f"{value / MiB:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=8.0, help="length of the shift")
    parser.add_argument("--speed", type=float, default=480.0, help="times real time (daemon)")
    parser.add_argument("--simulate", action="store_true", help="virtual time, no broker")
    parser.add_argument("--top", type=int, default=12, help="tracemalloc rows (0: no traced run)")
    parser.add_argument(
        "--dev-install",
        action="store_true",
        help="let the run import the sink-only libraries this virtualenv has (psycopg ...)",
    )
    parser.add_argument(
        "--no-unit-env",
        action="store_true",
        help="run the children without the service unit's Environment= settings",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--imports", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.trace, args.imports, args.argv, args.dev_install)
        return
    DEV_INSTALL[0] = args.dev_install
    if not args.no_unit_env:
        UNIT_ENV.update(unit_environment())

    import tempfile

    import tomlkit

    from contract.config import document
    from edge.config import Config
    from edge.scenario import busy_shift

    cfg = Config()
    ring_bytes = round(cfg.ring_seconds() * cfg.audio.sample_rate) * 2
    scenario = busy_shift(args.hours)
    work = Path(tempfile.mkdtemp(prefix="cp-bench-memory-"))
    shift = work / "shift.toml"
    shift.write_text(tomlkit.dumps(document(scenario)))
    with broker_url(work, args.simulate) as url:

        def argv(data: str) -> list[str]:
            if url is None:
                return ["simulate", str(shift), "--data", str(work / data)]
            config = work / "device.toml"
            config.write_text(f"[mqtt]\nbroker = '{url}'\n[receipts]\nport = 0\n")
            return [
                *("edge", "run", "--config", str(config), "--data", str(work / data)),
                *("--scenario", str(shift), "--speed", f"{args.speed:g}"),
            ]

        bare = run_child(work, "bare", [], imports=_write(work / "none.json", []))
        run = run_child(work, "run", argv("run"))
        modules = [m for m in run["modules"] if not m.startswith("__") and m != "__main__"]
        loaded = run_child(work, "imports", [], imports=_write(work / "modules.json", modules))
        traced = run_child(work, "traced", argv("traced"), trace=args.top) if args.top else None
        packages = import_costs(work, modules, bare["end"]["VmHWM"])
        layers = layer_costs(work, modules, bare["end"]["VmHWM"])

    how = (
        (
            "contactpoint simulate (virtual time)"
            if args.simulate
            else f"contactpoint edge run --scenario --speed {args.speed:g} (to mosquitto)"
        )
        + (
            "; this virtualenv's sink-only libraries importable (--dev-install)"
            if args.dev_install
            else f"; as installed on a device: {', '.join(SINK_ONLY)} not importable"
        )
        + (
            f"; the unit's environment: {' '.join(f'{k}={v}' for k, v in UNIT_ENV.items())}"
            if UNIT_ENV
            else "; without the unit's environment (--no-unit-env)"
        )
    )
    peak = run["peak"]
    hwm = run["end"]["VmHWM"]
    print(f"memory: {args.hours:g} h shift ({len(scenario.customers)} customers) through {how}")
    print(
        f"ring: {mib(ring_bytes)} ({cfg.ring_seconds() / 60:.1f} min at {cfg.audio.sample_rate} Hz)"
    )
    print(
        f"interpreter alone: {mib(bare['end']['VmHWM'])}; the {len(modules)} modules the run "
        f"loaded, imported and nothing else: {mib(loaded['end']['VmHWM'])}"
        + (
            f" (not importable by name: {', '.join(_names(loaded['not_imported']))})"
            if "not_imported" in loaded
            else ""
        )
    )
    over = hwm - ring_bytes
    print(
        f"peak RSS: {mib(hwm)} = ring + {mib(over)} (goal ring + {mib(GOAL_OVER_RING)}: "
        f"{'met' if over <= GOAL_OVER_RING else 'NOT met'}); at the peak: anonymous "
        f"{mib(peak.get('RssAnon', 0))}, file-backed {mib(peak.get('RssFile', 0))}, "
        f"ratio peak / ring = {hwm / ring_bytes:.2f}; run took {run['wall_s']:.0f} s"
    )
    print(
        "import cost by top-level package (RSS of a child importing only that package's modules "
        "the run loaded, over the bare interpreter; shared dependencies count in each):"
    )
    for package, count, cost in packages[: max(args.top, 12)]:
        print(f"  {mib(cost):>10}  {package} ({count} modules)")
    print(
        "the same, in layers (each child imports the run's modules of its layer and of every "
        "layer above; the increment is what the layer adds, counted once):"
    )
    for name, total, step in layers:
        print(f"  {mib(step):>10}  + {name} (total over the bare interpreter {mib(total)})")
    if traced is not None and "top_lines" in traced:
        print(
            f"tracemalloc run: peak RSS {mib(traced['end']['VmHWM'])}, traced peak "
            f"{mib(traced['traced_peak'])}; alive at the largest snapshot "
            f"({mib(traced['traced_at_snapshot'])}), by package:"
        )
        for package, size in traced["packages"]:
            print(f"  {mib(size):>10}  {package}")
        print("  largest allocations by line:")
        for filename, lineno, size in traced["top_lines"]:
            print(f"  {mib(size):>10}  {_short(filename)}:{lineno}")
    print(f"data: {work}")


def import_costs(work: Path, modules: list[str], bare: int) -> list[tuple[str, int, int]]:
    """(package, modules, RSS over ``bare``) for each non-stdlib top-level package, largest
    first."""
    groups: dict[str, list[str]] = {}
    for name in modules:
        top = name.split(".")[0]
        if top not in sys.stdlib_module_names and not top.startswith("_"):
            groups.setdefault(top, []).append(name)
    costs = []
    for top, names in groups.items():
        result = run_child(work, f"import-{top}", [], imports=_write(work / f"{top}.json", names))
        costs.append((top, len(names), result["end"]["VmHWM"] - bare))
    return sorted(costs, key=lambda row: -row[2])


#: the daemon's imports in layers, the libraries first (a layer's modules are the run's modules
#: of these top-level packages; the last layer is all the rest: ours and the standard library)
LAYERS = (
    ("numpy", ("numpy",)),
    ("msgspec (the config)", ("msgspec",)),
    ("paho (MQTT, with ssl)", ("paho",)),
    ("peewee (with sqlite3)", ("peewee",)),
)


def layer_costs(work: Path, modules: list[str], bare: int) -> list[tuple[str, int, int]]:
    """(layer, RSS over ``bare`` with it and the layers above, what it adds) per layer."""
    out: list[tuple[str, int, int]] = []
    chosen: set[str] = set()
    previous = 0
    for index, (name, tops) in enumerate([*LAYERS, ("everything else", ())]):
        if tops:
            chosen |= set(tops)
            names = [m for m in modules if m.split(".")[0] in chosen]
        else:
            names = modules
        result = run_child(
            work, f"layer-{index}", [], imports=_write(work / f"layer-{index}.json", names)
        )
        total = result["end"]["VmHWM"] - bare
        out.append((name, total, total - previous))
        previous = total
    return out


def _names(problems: list[str]) -> list[str]:
    return [problem.partition(":")[0] for problem in problems]


def _write(path: Path, modules: list[str]) -> Path:
    path.write_text(json.dumps(modules))
    return path


def _short(filename: str) -> str:
    parts = Path(filename).parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1 :])
    root = HERE.parent.parent.parts
    return "/".join(parts[len(root) :]) if parts[: len(root)] == root else filename


if __name__ == "__main__":
    main()
