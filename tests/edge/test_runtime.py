"""The one runtime assembly (edge/runtime.py): what the daemon and the simulation share, its
hooks given at construction, and the rules that keep it the only assembly."""

from __future__ import annotations

import ast
import dataclasses
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from contract.service import Notifier
from edge.app import Core, backend_spec
from edge.clock import NS, FakeClock
from edge.config import Config
from edge.daemon import MAX_WAIT_S, _wait_s
from edge.events import Press
from edge.health import Health
from edge.runtime import STORE_NAME, assemble
from edge.service import Supervisor
from edge.store import Store
from hardware import AudioPeriod, ButtonEdge, DeviceFault, open_backend

ROOT = Path(__file__).resolve().parents[2]


def post_receipt(port: int, receipt_id: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/receipt",
        data=json.dumps({"id": receipt_id}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


def test_the_till_hooks_and_the_core_loop_of_an_assembled_device(tmp_path: Path) -> None:
    cfg = Config.from_dict({"audio": {"enabled": False}, "receipts": {"port": 0}})
    backend = open_backend(dataclasses.replace(backend_spec(cfg), backend="simulated"))
    clock = FakeClock()
    built: list[Core] = []
    changes: list[dict[str, str]] = []

    def on_health(health: Health) -> None:
        changes.append(health.faults)

    runtime = assemble(
        cfg,
        clock,
        tmp_path,
        backend,
        publish=False,
        till=True,
        on_health=on_health,
        on_core=built.append,
    )
    with runtime:
        assert built == [runtime.core]  # the core, handed over once it is built
        assert runtime.publisher is None
        assert runtime.till is None
        runtime.start()
        till = runtime.till
        assert till is not None
        clock.advance(5.0)
        assert post_receipt(till.port, "R-7") == 202  # a real request on loopback
        runtime.take(timeout_s=10.0)  # the receipt, from the till's thread through the inbox
        runtime.core.handle(DeviceFault("ranger", False, "ranger unplugged", clock.now_ns))
        assert changes == [{"ranger": "ranger unplugged"}]  # the hook sees the health change
        runtime.tick(clock.now_ns)
        runtime.shutdown(clock.now_ns + NS)
        assert runtime.till is None
        with pytest.raises(urllib.error.URLError):  # no receipt after the contacts are closed
            post_receipt(till.port, "R-late")
        assert runtime.core.counters.orphan_events == 1
        assert not runtime.deliver(0.1)  # nothing publishes here: the row stays queued
    with Store.open(tmp_path / STORE_NAME) as store:
        assert [e.receipt_id for e in store.orphan_events()] == ["R-7"]
        assert [r.ref for r in store.outbox.pending()] == [store.orphan_events()[0].id]


def test_a_part_that_cannot_be_built_fails_the_assembly_naming_it(tmp_path: Path) -> None:
    cfg = Config.from_dict(
        {
            "audio": {"enabled": False},
            "routes": {
                "telegram": [{"name": "team", "chat_id": "42", "bot_token_file": "/nope"}],
                "rules": [{"to": ["team"]}],
            },
        }
    )
    backend = open_backend(dataclasses.replace(backend_spec(cfg), backend="simulated"))
    with pytest.raises(Exception, match=r"routes\.telegram\[team\]\.bot_token_file"):
        assemble(cfg, FakeClock(), tmp_path, backend, publish=False)
    with Store.open(tmp_path / STORE_NAME) as store:  # the store was closed, not left open
        assert store.contacts() == []


# --- the rules that keep one assembly ------------------------------------------------------------


def calls_and_imports(path: Path) -> tuple[set[str], set[str]]:
    """The names called and the modules imported (absolute imports) in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    called: set[str] = set()
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                called.add(func.id)
            elif isinstance(func, ast.Attribute):
                called.add(func.attr)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    return called, imported


def test_the_device_is_assembled_in_one_place() -> None:
    builders = {"Publisher", "RouteRunner", "ReceiptServer", "Core"}
    where: dict[str, set[str]] = {}
    for path in sorted((ROOT / "edge").rglob("*.py")):
        called, _ = calls_and_imports(path)
        for name in builders & called:
            where.setdefault(name, set()).add(path.relative_to(ROOT).as_posix())
    assert where == {name: {"edge/runtime.py"} for name in builders}
    for user in ("edge/daemon.py", "edge/simulate.py"):
        called, _ = calls_and_imports(ROOT / user)
        assert "assemble" in called, user
    _, daemon_imports = calls_and_imports(ROOT / "edge" / "daemon.py")
    assert "edge.simulate" not in daemon_imports


def test_the_store_only_persists() -> None:
    """No routing inside edge/store: the core decides the routes and passes them in."""
    for path in sorted((ROOT / "edge" / "store").rglob("*.py")):
        _, imported = calls_and_imports(path)
        assert not any(m.startswith("edge.routes") for m in imported), path
    assert not hasattr(Store, "router")
    assert "router" not in Store.__init__.__code__.co_names


def test_the_core_loop_sleeps_until_the_next_thing_is_due(tmp_path: Path) -> None:
    """Issue #13: no fixed tick. Idle, the live daemon's loop waits on its inbox for the core's
    once-a-second checks; with a button released, until the moment its press is confirmed,
    and the press comes out of the tick at that moment, not before."""
    cfg = Config.from_dict({"audio": {"enabled": False}, "input": {"debounce_ms": 30}})
    backend = open_backend(dataclasses.replace(backend_spec(cfg), backend="simulated"))
    clock = FakeClock()
    presses: list[Press] = []
    supervisor = Supervisor(Notifier({}), audio=False, stall_s=10.0)
    with assemble(cfg, clock, tmp_path, backend, publish=False, on_press=presses.append) as rt:
        rt.tick(clock.now_ns)
        assert _wait_s(rt, clock, 0, supervisor) == pytest.approx(MAX_WAIT_S)  # nothing due
        clock.advance(0.5)
        rt.core.handle(ButtonEdge("green", True, clock.now_ns))
        clock.advance(0.2)
        rt.core.handle(ButtonEdge("green", False, clock.now_ns))
        rt.tick(clock.now_ns)
        wait = _wait_s(rt, clock, 0, supervisor)
        assert wait == pytest.approx(0.030)  # the release settles after the debounce
        clock.advance(wait - 0.001)
        rt.tick(clock.now_ns)
        assert presses == []
        clock.advance(0.001)
        rt.tick(clock.now_ns)
        assert [p.button for p in presses] == ["green"]
        assert _wait_s(rt, clock, 0, supervisor) <= MAX_WAIT_S


def test_the_supervisor_sets_no_timer_while_it_waits_for_audio(tmp_path: Path) -> None:
    """The core loop sleeps until the supervisor's next beat is due: before the first audio
    period (no READY yet) and while the capture stalls (pings held) nothing of it is due on
    time, only the periodic status once ready; otherwise the loop would spin."""
    cfg = Config.from_dict({"audio": {"enabled": False}})
    backend = open_backend(dataclasses.replace(backend_spec(cfg), backend="simulated"))
    clock = FakeClock()
    now = [100.0]
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "no-such-socket")})  # sends fail: ok
    supervisor = Supervisor(
        notifier, audio=True, stall_s=2.0, ping_every_s=0.5, monotonic=lambda: now[0]
    )
    with assemble(cfg, clock, tmp_path, backend, publish=False) as rt:
        supervisor.beat(rt.core)
        assert not supervisor.ready  # waiting for the first audio period
        assert supervisor.due_in_s(rt.core) == float("inf")
        rt.tick(clock.now_ns)
        assert _wait_s(rt, clock, 0, supervisor) == pytest.approx(MAX_WAIT_S)  # not 0: no spin
        silence = memoryview(bytes(3200)).cast("h")
        rt.core.handle(AudioPeriod(0, silence, clock.now_ns))  # from the inbox
        supervisor.beat(rt.core)
        assert supervisor.ready
        assert supervisor.due_in_s(rt.core) == pytest.approx(0.5)  # the next ping
        clock.advance(3.0)  # no audio for 3 s: stalled, the pings are held
        now[0] += 3.0
        supervisor.beat(rt.core)
        assert supervisor.stalled
        assert supervisor.due_in_s(rt.core) == pytest.approx(supervisor.status_every_s)
