"""Shared machinery of the fault suite (tests/faults) and the soak (bench/soak.py).

The edge daemon and the sink run as real subprocesses (``contactpoint edge run --scenario``,
``contactpoint sink run``) so that ``kill -9`` is a real kill; crash points
(``CONTACTPOINT_CRASH_AT``, see contract/crashpoint.py) make a process kill itself at a named
spot. Stores are inspected only while their writer is dead, or read-only (``mode=ro``) while it
runs.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from cloud_sink import Sink, SinkConfig
from contract.config import document, fields
from contract.crashpoint import ENV as CRASH_ENV
from edge.config import Config
from edge.records import ClipInfo
from edge.scenario import Scenario
from edge.simulate import STORE_NAME
from edge.store import Store
from tests.waiting import CAP_S, STALL_S, Watch, join, reap, tree_state, wait_exit, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEVICE, SITE = "cp-fault", "shop-fault"


# --- files ------------------------------------------------------------------------------------


def write_scenario(path: Path, scenario: Scenario) -> Path:
    path.write_text(tomlkit.dumps(document(scenario)))
    return path


def config_dict(broker_url: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """A device config for the fault runs: fast reconnects, no till server (port clashes), no
    alert rules (their rows are not what these tests count)."""
    data: dict[str, Any] = {
        "device": {"id": DEVICE, "site": SITE},
        "mqtt": {"broker": broker_url, "backoff_min_s": 0.05, "backoff_max_s": 0.5},
        "receipts": {"enabled": False},
    }
    if "alerts" in fields(Config):
        data["alerts"] = {"rules": []}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def write_config(path: Path, broker_url: str, **sections: dict[str, Any]) -> Path:
    data = config_dict(broker_url, **sections)
    Config.from_dict(data)  # fail here, not in the subprocess
    path.write_text(tomlkit.dumps(data))
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- processes --------------------------------------------------------------------------------


def _env(crash_at: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    env["PYTHONPATH"] = str(ROOT)
    return env


def start_edge(
    config: Path,
    data: Path,
    scenario: Path,
    *,
    speed: float,
    crash_at: str | None = None,
    log: Path | None = None,
    drain_timeout_s: float = 120.0,
) -> subprocess.Popen[bytes]:
    """``contactpoint edge run --scenario`` as a subprocess (it publishes to the config's broker
    and exits 0 once everything is acknowledged)."""
    return contactpoint(
        [
            *("edge", "run", "--config", str(config)),
            *("--data", str(data), "--scenario", str(scenario), "--speed", str(speed)),
            *("--drain-timeout", str(drain_timeout_s)),
        ],
        log or data / "edge.log",
        crash_at,
    )


def contactpoint(
    args: list[str], log: Path, crash_at: str | None, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``contactpoint ARGS...`` of this checkout as a subprocess, its output appended to
    ``log``, with the crash point ``crash_at`` armed (contract/crashpoint.py) and
    ``extra_env`` added to its environment."""
    out = log.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "provisioning.main", *args],
            cwd=ROOT,
            env={**_env(crash_at), **(extra_env or {})},
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    finally:
        out.close()


def start_sink(
    broker_url: str, data: Path, *, crash_at: str | None = None
) -> subprocess.Popen[bytes]:
    """``contactpoint sink run`` as a subprocess (SQLite in ``data``)."""
    data.mkdir(parents=True, exist_ok=True)
    return contactpoint(
        [
            *("sink", "run", "--broker", broker_url),
            *("--data", str(data), "--resend-after", "2", "--check-every", "0.5"),
        ],
        data / "sink.log",
        crash_at,
    )


def kill9(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(30)


def sink_config(broker_url: str, data: Path) -> SinkConfig:
    return SinkConfig(
        broker=broker_url,
        data_dir=data,
        resend_after_s=2,
        check_every_s=0.5,
        backoff_min_s=0.05,
        backoff_max_s=0.5,
    )


@contextmanager
def running_sink(broker_url: str, data: Path) -> Iterator[Sink]:
    """An in-process sink worker, subscribed before the body runs."""
    sink = Sink(sink_config(broker_url, data))
    sink.start()
    try:
        # a restarted sink gets its session's backlog before the SUBACK: wait while it ingests
        wait_for(sink.subscribed.is_set, "the sink to subscribe", progress=sink.stats)
        yield sink
    finally:
        sink.stop()


# --- the edge store ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EdgeSnapshot:
    """What the device's store says, read while no daemon runs (what a restart finds)."""

    integrity: str
    clips: dict[str, ClipInfo | None]  # contact id -> its clip
    sent: dict[int, int]  # outbox seq -> sent_ns, acknowledged rows
    seqs: frozenset[int]  # every outbox row
    partials: frozenset[str]  # half-written clip files in clips/

    @property
    def contacts(self) -> frozenset[str]:
        return frozenset(self.clips)


def edge_snapshot(data: Path) -> EdgeSnapshot:
    store = Store.open(data / STORE_NAME)
    try:
        integrity = store.integrity_check()
        clips = {c.id: c.clip for c in store.contacts()}
        with sqlite3.connect(data / STORE_NAME) as raw:
            rows = raw.execute("SELECT seq, sent_ns FROM outbox").fetchall()
    finally:
        store.close()
    clips_dir = data / "clips"
    partials = (
        frozenset(p.name for p in clips_dir.iterdir() if p.name.endswith(".partial"))
        if clips_dir.is_dir()
        else frozenset()
    )
    return EdgeSnapshot(
        integrity=integrity,
        clips=clips,
        sent={seq: sent for seq, sent in rows if sent is not None},
        seqs=frozenset(seq for seq, _ in rows),
        partials=partials,
    )


def broken_clips(data: Path, clips: dict[str, ClipInfo | None]) -> list[str]:
    """Contacts whose recorded clip has no complete file (size and sha256 as recorded)."""
    bad: list[str] = []
    for contact_id, clip in clips.items():
        if clip is None:
            continue
        path = data / clip.path
        if (
            not path.is_file()
            or path.stat().st_size != clip.bytes
            or sha256_of(path) != clip.sha256
        ):
            bad.append(contact_id)
    return bad


def outbox_depth_readonly(store_path: Path) -> int | None:
    """Unsent outbox rows, read without disturbing a running writer (None: not readable now)."""
    try:
        with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=1) as db:
            (depth,) = db.execute("SELECT COUNT(*) FROM outbox WHERE sent_ns IS NULL").fetchone()
            return int(depth)
    except sqlite3.Error:
        return None


# --- the sink ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Delivery:
    """Figures of one check that the edge's contacts are in the sink."""

    produced: int = 0  # contacts in the edge store
    delivered: int = 0  # ... in the sink, exactly once, with a verified clip where one was made
    duplicated: int = 0  # contact ids stored more than once in the sink (must be 0)
    lost: int = 0  # edge contacts missing in the sink, or whose clip never verified
    redelivered: int = 0  # messages the sink saw again and dropped (QoS 1 duplicates, allowed)
    missing: list[str] = field(default_factory=list)


def sink_rows(db_path: Path) -> list[tuple[str, str, str | None, bool]]:
    """(contact id, device, verified clip path, clock_synced) of every sink contact row."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
        return [
            (cid, dev, path, bool(synced))
            for cid, dev, path, synced in db.execute(
                "SELECT c.id, c.device, k.path, c.clock_synced FROM contacts c LEFT JOIN clips k "
                "ON k.device = c.device AND k.clip_id = c.id AND k.complete"
            )
        ]


def delivery(edge_data: Path, sink_data: Path, edge_clips: dict[str, ClipInfo | None]) -> Delivery:
    rows = sink_rows(sink_data / "sink.db")
    result = Delivery(produced=len(edge_clips))
    seen: dict[str, int] = {}
    audio: dict[str, str | None] = {}
    for cid, device, path, _ in rows:
        if device != DEVICE:
            continue
        seen[cid] = seen.get(cid, 0) + 1
        audio[cid] = path
    result.duplicated = sum(n - 1 for n in seen.values() if n > 1)
    for cid, clip in edge_clips.items():
        ok = cid in seen
        if ok and clip is not None:
            path = audio.get(cid)
            ok = path is not None and sha256_of(sink_data / path) == clip.sha256
        if ok:
            result.delivered += 1
        else:
            result.lost += 1
            result.missing.append(cid)
    return result


def sink_progress(sink_data: Path) -> tuple[int, ...]:
    """What moves while the sink ingests: its rows (messages, chunks recorded, complete clips,
    dead letters) and its files."""
    try:
        with sqlite3.connect(f"file:{sink_data / 'sink.db'}?mode=ro", uri=True, timeout=5) as db:
            (rows,) = db.execute(
                "SELECT (SELECT COUNT(*) FROM messages) "
                "+ (SELECT COALESCE(SUM(received_count), 0) FROM clips) "
                "+ (SELECT COUNT(*) FROM clips WHERE complete) "
                "+ (SELECT COUNT(*) FROM dead_letters)"
            ).fetchone()
    except sqlite3.Error:  # not created yet, or busy: the files still tell
        rows = -1
    return (int(rows), *tree_state(sink_data))


def wait_delivered(
    edge_data: Path,
    sink_data: Path,
    timeout_s: float = CAP_S,
    redelivered: Callable[[], int] = lambda: 0,
) -> Delivery:
    """Wait until every contact of the (stopped) edge is in the sink, as long as the sink keeps
    ingesting (``STALL_S`` without a new row ends it; ``timeout_s`` caps it); the last
    figures (what is still missing then is in ``lost`` and ``missing``)."""
    edge = edge_snapshot(edge_data)
    watch = Watch(
        "every contact in the sink", progress=lambda: sink_progress(sink_data), cap_s=timeout_s
    )
    while True:
        result = delivery(edge_data, sink_data, edge.clips)
        if result.lost == 0 or watch.expired() is not None:
            result.redelivered = redelivered()
            return result
        time.sleep(0.2)


def sink_integrity(sink_data: Path) -> tuple[str, list[str]]:
    """``PRAGMA integrity_check`` of the sink's SQLite, and the clips marked complete whose file
    is missing or does not hash to the announced sha256 (must be none)."""
    with sqlite3.connect(sink_data / "sink.db", timeout=5) as db:
        integrity = "\n".join(str(r[0]) for r in db.execute("PRAGMA integrity_check"))
        complete = db.execute(
            "SELECT clip_id, path, clip_sha256, clip_bytes FROM clips WHERE complete"
        ).fetchall()
    bad = []
    for clip_id, path, sha, size in complete:
        file = sink_data / path
        if not file.is_file() or file.stat().st_size != size or sha256_of(file) != sha:
            bad.append(clip_id)
    return integrity, bad


# --- broker outages ---------------------------------------------------------------------------


@dataclass(slots=True)
class OutageFigures:
    outages: int = 0
    outbox_peak: int = 0  # most unsent rows seen in the edge store (sampled every 50 ms)
    drain_s: float = 0.0  # broker back after the last outage -> edge outbox empty
    run_s: float = 0.0  # the edge process, start to exit
    delivery: Delivery = field(default_factory=Delivery)


def broker_outage_cycles(
    broker: Any,
    work: Path,
    scenario: Scenario,
    *,
    speed: float,
    up_s: float = 1.0,
    down_s: float = 1.5,
    max_outages: int = 1_000_000,
    timeout_s: float = CAP_S,
    deliver_timeout_s: float = CAP_S,
) -> OutageFigures:
    """Play ``scenario`` with ``contactpoint edge run`` while the broker (a ``LocalBroker``) is
    stopped and started in cycles; then check the sink got every contact exactly once. The run
    may take as long as the edge's data keeps changing (``timeout_s`` caps it)."""
    data, sink_data = work / "edge", work / "sink"
    data.mkdir(parents=True)
    config = write_config(
        work / "device.toml", broker.url, audio={"codec": "flac"}, mqtt={"chunk_bytes": 16384}
    )
    shift = write_scenario(work / "shift.toml", scenario)
    figures = OutageFigures()
    store = data / STORE_NAME
    with running_sink(broker.url, sink_data) as sink:
        started = time.monotonic()
        # the outages go on while the daemon drains its backlog: give it the whole budget
        process = start_edge(config, data, shift, speed=speed, drain_timeout_s=timeout_s)
        next_toggle = started + up_s
        back_at: float | None = None
        watch = Watch(
            "the edge to play its shift and drain",
            progress=lambda: (tree_state(data), sink_progress(sink_data)),
            seen=lambda: f"outbox depth {outbox_depth_readonly(store)}",
            cap_s=timeout_s,
        )
        while process.poll() is None:
            now = time.monotonic()
            try:
                watch.check()
            except AssertionError:
                reap(process)
                raise
            depth = outbox_depth_readonly(store)
            if depth is not None:
                figures.outbox_peak = max(figures.outbox_peak, depth)
                if depth == 0 and back_at is not None and not figures.drain_s:
                    figures.drain_s = now - back_at
            if now >= next_toggle:
                if broker.running:
                    if figures.outages < max_outages:
                        broker.stop()
                        figures.outages += 1
                    next_toggle = now + down_s
                else:
                    broker.start()
                    back_at, figures.drain_s = time.monotonic(), 0.0
                    next_toggle = now + up_s
            time.sleep(0.05)
        figures.run_s = time.monotonic() - started
        if not broker.running:
            broker.start()
        if back_at is not None and not figures.drain_s:
            figures.drain_s = time.monotonic() - back_at
        assert process.returncode == 0, (data / "edge.log").read_text()[-2000:]
        figures.delivery = wait_delivered(
            data, sink_data, deliver_timeout_s, lambda: sink.stats().get("duplicate", 0)
        )
    return figures


def retained_status(broker_url: str, timeout_s: float = STALL_S) -> dict[str, Any]:
    """The device's retained status message, as a subscriber arriving now gets it."""
    import json
    import queue
    from urllib.parse import urlsplit

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from edge.publish import wire

    got: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, msg: got.put(bytes(msg.payload))
    url = urlsplit(broker_url)
    client.connect(url.hostname or "127.0.0.1", url.port or 1883)
    client.subscribe(wire.topic(SITE, DEVICE, "status"), qos=1)
    client.loop_start()
    try:
        payload: dict[str, Any] = json.loads(got.get(timeout=timeout_s))
        return payload
    finally:
        client.loop_stop()
        client.disconnect()


# --- kill -9 cycles ---------------------------------------------------------------------------


@dataclass(slots=True)
class KillFigures:
    kills: dict[str, int] = field(default_factory=dict)  # how each run died -> how often
    partials_left: int = 0  # half-written clip files found after a kill (cleaned at start)
    seconds: float = 0.0
    delivery: Delivery = field(default_factory=Delivery)

    @property
    def total(self) -> int:
        return sum(self.kills.values())


#: the fastest pace of a run that is killed at a random moment (a 15-minute shift: 3 s)
RANDOM_KILL_SPEED = 300.0


def edge_crash_point(rng: Any, cycle: int) -> str | None:
    """Cycle 1 of every four dies inside a contact's store transaction, cycle 3 during a clip
    write (the N-th of the run, N random); the others get a kill -9 at a random moment."""
    n = rng.randint(1, 4)
    return {1: f"store.commit@{n}", 3: f"clip.write@{n}"}.get(cycle % 4)


def check_edge_restart(before: EdgeSnapshot, after: EdgeSnapshot, data: Path) -> None:
    """What every restart of the daemon must find (raises AssertionError)."""
    assert after.integrity == "ok", after.integrity
    assert before.contacts <= after.contacts, "a committed contact was lost"
    new = {cid: clip for cid, clip in after.clips.items() if cid not in before.clips}
    assert broken_clips(data, new) == [], "a clip is recorded without its complete file"
    assert before.seqs <= after.seqs, "an outbox row disappeared"
    for seq, sent_ns in before.sent.items():  # acknowledged stays acknowledged, first ack wins
        assert after.sent.get(seq) == sent_ns, f"outbox row {seq} lost its acknowledgement"


def edge_kill_cycles(
    broker: Any,
    work: Path,
    scenario: Scenario,
    *,
    rng: Any,
    cycles: int | None = None,
    until: float | None = None,
    speed: float = 2000.0,
) -> KillFigures:
    """kill -9 the daemon ``cycles`` times (or until monotonic ``until``), checking every
    restart; then one undisturbed run drains everything and the sink is checked."""
    data, sink_data = work / "edge", work / "sink"
    data.mkdir(parents=True)
    config = write_config(
        work / "device.toml", broker.url, audio={"codec": "flac"}, mqtt={"chunk_bytes": 65536}
    )
    shift = write_scenario(work / "shift.toml", scenario)
    figures = KillFigures(kills={"random": 0, "store.commit": 0, "clip.write": 0})

    def edge_moves() -> Any:
        return tree_state(data), sink_progress(sink_data)

    started = time.monotonic()
    with running_sink(broker.url, sink_data) as sink:
        before = edge_snapshot(data)
        cycle = 0
        while (cycles is None or cycle < cycles) and (until is None or time.monotonic() < until):
            crash = edge_crash_point(rng, cycle)
            cycle += 1
            # a random kill lands mid-shift: at most RANDOM_KILL_SPEED, the shift outlasts the
            # 0.5-1.1 s before the kill even on a quiet machine, where the daemon starts in 0.2 s
            run_speed = speed if crash is not None else min(speed, RANDOM_KILL_SPEED)
            process = start_edge(config, data, shift, speed=run_speed, crash_at=crash)
            if crash is None:
                time.sleep(rng.uniform(0.5, 1.1))  # the random moment of the kill
                kill9(process)
            else:  # as long as the daemon works towards its crash point
                wait_exit(process, f"the daemon to die at {crash}", progress=edge_moves)
            assert process.returncode == -9, f"the daemon was not killed ({process.returncode})"
            after = edge_snapshot(data)
            check_edge_restart(before, after, data)
            if crash is not None:  # the N-th commit / clip write died: N-1 contacts committed
                point, n = crash.split("@")
                assert len(after.contacts - before.contacts) == int(n) - 1
                figures.kills[point] += 1
            else:
                figures.kills["random"] += 1
            figures.partials_left += len(after.partials - before.partials)
            before = after
        final_run = start_edge(config, data, shift, speed=speed)
        code = wait_exit(final_run, "the undisturbed run to drain", progress=edge_moves)
        assert code == 0, (data / "edge.log").read_text()[-2000:]
        final = edge_snapshot(data)
        check_edge_restart(before, final, data)
        assert broken_clips(data, final.clips) == []
        assert final.partials == frozenset(), "half-written clips were not cleaned at start"
        assert final.sent.keys() == final.seqs, "the outbox did not drain"
        figures.delivery = wait_delivered(
            data, sink_data, redelivered=lambda: sink.stats().get("duplicate", 0)
        )
    figures.seconds = time.monotonic() - started
    return figures


def sink_crash_plan(rng: Any, cycles: int) -> list[str | None]:
    points = [
        f"sink.commit@{rng.randint(5, 80)}",
        f"sink.assemble.write@{rng.randint(1, 3)}",
        f"sink.assemble@{rng.randint(1, 3)}",
    ]
    # the armed points first, while the device is still publishing: a sink that keeps up has
    # no backlog left once the shift is over, and a point needs traffic to be reached
    count = sum(1 for i in range(cycles) if i % 5 < len(points))  # 3 in every 5 cycles
    armed = [points[i % len(points)] for i in range(count)]
    return [*armed, *[None] * (cycles - len(armed))]


def sink_contact_ids(sink_data: Path) -> set[str]:
    with sqlite3.connect(sink_data / "sink.db", timeout=5) as db:
        return {cid for (cid,) in db.execute("SELECT id FROM contacts")}


def sink_kill_cycles(
    broker: Any,
    work: Path,
    scenario: Scenario,
    *,
    rng: Any,
    cycles: int,
) -> KillFigures:
    """Publish ``scenario`` (in-process simulation) while ``contactpoint sink run`` is killed
    ``cycles`` times, at random and at the sink's crash points; every restart is checked; then
    an undisturbed sink must hold every contact exactly once with a verified clip."""
    import threading

    from edge.simulate import run_simulation

    sink_data, edge_data = work / "sink", work / "edge"
    edge_data.mkdir(parents=True)
    with running_sink(broker.url, sink_data):
        pass  # the sink's persistent session exists: the broker queues for it from now on
    cfg = Config.from_dict(
        config_dict(broker.url, audio={"codec": "flac"}, mqtt={"chunk_bytes": 8192})
    )
    failure: list[BaseException] = []

    def device() -> None:
        try:
            run_simulation(cfg, scenario, edge_data / "s.toml", edge_data, broker=broker.url)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's thread
            failure.append(exc)

    started = time.monotonic()
    publishing = threading.Thread(target=device)
    publishing.start()
    figures = KillFigures(
        kills={"random": 0, "sink.commit": 0, "sink.assemble.write": 0, "sink.assemble": 0}
    )
    before: set[str] = set()

    def moving() -> Any:  # the device publishing, the sink ingesting
        return tree_state(edge_data), tree_state(sink_data)

    for armed in sink_crash_plan(rng, cycles):
        process = start_sink(broker.url, sink_data, crash_at=armed)
        how = "random"
        if armed is None:
            time.sleep(rng.uniform(0.6, 1.5))  # the random moment of the kill
        else:
            # while there is work the point may still be reached; once nothing has moved for
            # 20 s there is nothing left to do (and it was not reached)
            watch = Watch(f"the sink to die at {armed}", progress=moving, stall_s=20)
            while process.poll() is None and watch.expired() is None:
                time.sleep(0.05)
            if process.poll() is not None:
                how = armed.split("@")[0]
        kill9(process)
        assert process.returncode == -9
        figures.kills[how] += 1
        integrity, bad = sink_integrity(sink_data)
        assert integrity == "ok", integrity
        assert bad == [], "a clip is marked complete without its verified file"
        after = sink_contact_ids(sink_data)
        assert before <= after, "a contact the sink had committed is gone"
        before = after
    join(publishing, "the device to publish the shift", progress=moving)
    assert not failure, failure
    with running_sink(broker.url, sink_data) as sink:
        figures.delivery = wait_delivered(
            edge_data, sink_data, redelivered=lambda: sink.stats().get("duplicate", 0)
        )
        wait_for(lambda: not list(sink_data.rglob("*.tmp")), "temporary files cleaned")
    figures.seconds = time.monotonic() - started
    return figures


# --- broker kill -9 cycles --------------------------------------------------------------------


@dataclass(slots=True)
class BrokerKillFigures:
    kills: int = 0
    at_risk: int = 0  # rows acknowledged by the broker and not yet confirmed, summed over kills
    awaiting_peak: int = 0  # most rows waiting for a receipt (sampled every 20 ms)
    drain_s: float = 0.0  # broker back after the last kill -> every row confirmed by the sink
    seconds: float = 0.0
    delivery: Delivery = field(default_factory=Delivery)


def awaiting_readonly(store_path: Path) -> int | None:
    """Rows the broker acknowledged and the sink has not confirmed, read without disturbing
    the running writer (None: not readable now)."""
    try:
        with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=1) as db:
            (n,) = db.execute(
                "SELECT COUNT(*) FROM outbox WHERE sent_ns IS NOT NULL AND delivered_ns IS NULL"
            ).fetchone()
            return int(n)
    except sqlite3.Error:
        return None


def broker_kill_cycles(
    broker: Any,
    work: Path,
    scenario: Scenario,
    *,
    rng: Any,
    speed: float,
    max_kills: int = 1_000_000,
    min_up_s: float = 0.5,
    max_up_s: float = 3.0,
    timeout_s: float = 300.0,
) -> BrokerKillFigures:
    """Play ``scenario`` on an in-process device (``run_simulation`` against the broker, waiting
    at the end for the sink's receipts) while the broker - a ``LocalBroker`` that saves its
    state rarely - is killed with SIGKILL and started again, each time some rows are
    acknowledged by it and not yet confirmed by the sink (or after ``max_up_s``); an in-process
    sink ingests. Then every contact of the edge store must be in the sink exactly once."""
    import threading

    from edge.simulate import run_simulation

    data, sink_data = work / "edge", work / "sink"
    data.mkdir(parents=True)
    cfg = Config.from_dict(
        config_dict(
            broker.url,
            audio={"codec": "flac"},
            mqtt={
                "chunk_bytes": 16384,
                "receipt_timeout_s": 1.0,
                "receipt_timeout_max_s": 4.0,
                "receipt_max_resends": 1000,
            },
        )
    )
    figures = BrokerKillFigures()
    failure: list[BaseException] = []
    done = threading.Event()

    def device() -> None:
        try:
            run_simulation(
                cfg, scenario, work / "shift.toml", data, realtime=True, speed=speed,
                broker=broker.url, drain_timeout_s=timeout_s, until_delivered=True,
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's thread
            failure.append(exc)
        finally:
            done.set()

    store = data / STORE_NAME
    started = time.monotonic()
    with running_sink(broker.url, sink_data) as sink:
        publishing = threading.Thread(target=device, name="device")
        publishing.start()
        up_since = time.monotonic()
        up_for = rng.uniform(min_up_s, max_up_s)
        back_at = started
        while not done.wait(0.02):
            now = time.monotonic()
            if now - started > timeout_s:
                break
            awaiting = awaiting_readonly(store) or 0
            figures.awaiting_peak = max(figures.awaiting_peak, awaiting)
            up = now - up_since
            if figures.kills < max_kills and up >= min_up_s and (awaiting > 0 or up >= up_for):
                broker.kill()  # a power cut: what it acknowledged since its start is gone
                figures.kills += 1
                figures.at_risk += awaiting
                broker.start()
                back_at = up_since = time.monotonic()
                up_for = rng.uniform(min_up_s, max_up_s)
        publishing.join(timeout_s)
        figures.drain_s = time.monotonic() - back_at
        assert not publishing.is_alive(), f"the device did not finish within {timeout_s} s"
        assert not failure, failure
        figures.delivery = wait_delivered(
            data, sink_data, 60, lambda: sink.stats().get("duplicate", 0)
        )
    final = edge_snapshot(data)
    assert final.integrity == "ok", final.integrity
    assert awaiting_readonly(store) == 0
    assert final.sent.keys() == final.seqs
    figures.seconds = time.monotonic() - started
    return figures


# --- a real full disk, part-way through a shift ------------------------------------------------

DISK_BYTES = 64 << 20  # room for the store and a short shift's clips once the filler is gone
DISK_ROOM_LEFT = 1_500_000  # enough for the store's growth while full, not for one clip
LONG_ROLLS = {"pre_roll_s": 30.0, "post_roll_s": 30.0}  # every clip >= 60 s of WAV (~1.9 MB)


@dataclass(slots=True)
class FullDiskFigures:
    delivery: Delivery = field(default_factory=Delivery)
    flagged: int = 0  # contacts cut while full: kept, delivered, `clip_missing: disk_full`
    clipped: int = 0  # contacts with their complete clip
    disk_bytes: int = DISK_BYTES


def full_disk_shift(
    broker: Any, work: Path, scenario: Scenario, *, timeout_s: float = CAP_S
) -> FullDiskFigures:
    """Play ``scenario`` on an in-process device whose data directory (store and clips) is a
    small tmpfs (``tests.fullfs.small_tmpfs``: skips, saying why, where mounting is impossible),
    filled with a real file a third of the way through the shift and freed again at two
    thirds; an in-process sink ingests. Every contact must arrive: the ones cut while the disk
    was full without audio and flagged, the others with their verified clip. On a loss the
    device's data directory is copied to ``work/edge`` (the tmpfs goes away)."""
    import shutil

    from edge.simulate import run_simulation
    from tests.fullfs import fill, small_tmpfs

    sink_data = work / "sink"
    cfg = Config.from_dict(config_dict(broker.url, contacts=LONG_ROLLS))
    figures = FullDiskFigures()
    fill_at, free_at = scenario.duration_ns // 3, 2 * scenario.duration_ns // 3
    with (
        small_tmpfs(work / "disk", DISK_BYTES) as disk,
        running_sink(broker.url, sink_data) as sink,
    ):
        data = disk / "data"
        data.mkdir()
        filler: list[Path] = []

        def fill_and_free(now_ns: int) -> None:
            if now_ns >= fill_at and not filler:
                filler.append(fill(disk, DISK_ROOM_LEFT))
            elif now_ns >= free_at and filler and filler[0].exists():
                filler[0].unlink()  # room again, the device still running

        try:
            run_simulation(
                cfg,
                scenario,
                work / "shift.toml",
                data,
                broker=broker.url,
                at_step=fill_and_free,
                drain_timeout_s=timeout_s,
                until_delivered=True,
            )
            assert filler, "the shift ended before the disk was filled"
            assert not filler[0].exists(), "the shift ended before the disk was freed"
            figures.delivery = wait_delivered(
                data, sink_data, timeout_s, lambda: sink.stats().get("duplicate", 0)
            )
            with Store.open(data / STORE_NAME) as store:
                contacts = store.contacts()
                confirmed = {cid for cid, _, delivered in store.clip_files() if delivered}
            figures.flagged = sum(1 for c in contacts if c.clip is None)
            figures.clipped = len(contacts) - figures.flagged
            unexplained = [
                c.id for c in contacts if c.clip is None and c.clip_missing != "disk_full"
            ]
            assert not unexplained, f"contacts without a clip that do not say why: {unexplained}"
            # the disk budget frees a full disk by deleting clips the sink confirmed first (the
            # sink's verified copy is what wait_delivered checked); every other clip is whole.
            # A sink quick to confirm makes that likely: no fault of the device's.
            broken = broken_clips(data, {c.id: c.clip for c in contacts if c.clip})
            assert [cid for cid in broken if cid not in confirmed] == []
        finally:
            if figures.delivery.lost or not figures.delivery.produced:
                shutil.copytree(data, work / "edge", dirs_exist_ok=True)
    return figures


# --- poison on the wire, mid-shift ------------------------------------------------------------


def poison_kinds() -> list[tuple[str, str, bytes, bool, str]]:
    """Every kind of hostile payload: (name, topic, raw payload, retained, the dead-letter
    reason it must get). Published for another device (``tests.cloud_sink.helpers``'s) so
    the shift's own figures stay apart."""
    from contract import wire as contract_wire
    from tests.cloud_sink.helpers import (
        chunk_frame,
        event_message,
        new_id,
        poison_message,
        topic,
        with_token,
    )

    surrogate, claims = b'"\\ud800"', []
    for seq in range(3):  # tiny frames claiming the most chunks of the largest clip
        claims.append(
            chunk_frame(
                clip_id=new_id(),
                seq=seq,
                total=contract_wire.MAX_CHUNKS,
                offset=seq,
                data=b"x",
                clip_sha256="0" * 64,
                clip_bytes=contract_wire.MAX_CLIP_BYTES,
            )
        )
    return [
        ("retained status with an unpaired surrogate", topic("status"),
         poison_message("status", ("status", "version"), surrogate), True, "json"),
        ("unpaired surrogate", topic("contact"),
         poison_message("contact", ("contact", "mode"), surrogate), False, "json"),
        ("1e400", topic("event"),
         poison_message("event", ("event", "data"), b"1e400"), False, "json"),
        ("400-digit integer", topic("contact"),
         poison_message("contact", ("contact", "duration_s"), b"9" * 400), False, "json"),
        ("schema: 1.0", topic("event"), with_token(event_message(), ("schema",), b"1.0"), False,
         "schema"),
        ("chunk-count claim", topic("clip"), claims[0], False, "too_large"),
        ("broken JSON", topic("event"), b'{"schema": 1, "kind": "event", "ev', False, "json"),
        ("unknown topic kind", topic("bogus"), json_bytes(event_message()), False, "topic"),
        ("bad id in topic", topic("event", device="Not..A Device"), json_bytes(event_message()),
         False, "id"),
    ]  # fmt: skip


def json_bytes(obj: Any) -> bytes:
    import json

    return json.dumps(obj).encode()


@dataclass(slots=True)
class PoisonFigures:
    delivery: Delivery = field(default_factory=Delivery)
    kinds: int = 0  # hostile payload kinds published
    dead_lettered: dict[str, str] = field(default_factory=dict)  # kind -> reason it got
    after: int = 0  # the shift's contacts stored after the poison (the stream went on)


def dead_letters_readonly(sink_data: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{sink_data / 'sink.db'}?mode=ro", uri=True, timeout=5) as db:
        return list(db.execute("SELECT topic, reason FROM dead_letters ORDER BY id"))


def poison_mid_shift(
    broker: Any, work: Path, scenario: Scenario, *, timeout_s: float = CAP_S
) -> PoisonFigures:
    """Play ``scenario`` on an in-process device with an in-process sink; half-way through,
    publish every kind of :func:`poison_kinds` as raw bytes through a paho client to the real
    broker. Each must become a dead letter with its reason, in order, and the device's later
    contacts must be stored (the stream never stopped)."""
    from edge.simulate import run_simulation
    from tests.cloud_sink.helpers import TestClient

    data, sink_data = work / "edge", work / "sink"
    data.mkdir(parents=True)
    cfg = Config.from_dict(config_dict(broker.url))
    kinds = poison_kinds()
    figures = PoisonFigures(kinds=len(kinds))
    stored_before: list[int] = []
    with running_sink(broker.url, sink_data) as sink:
        client = TestClient(broker.port)
        try:

            def poison(now_ns: int) -> None:
                if now_ns >= scenario.duration_ns // 2 and not stored_before:
                    rows = sink_rows(sink_data / "sink.db")
                    stored_before.append(sum(1 for r in rows if r[1] == DEVICE))
                    for _, where, payload, retain, _ in kinds:
                        client.publish(where, payload, retain=retain)

            run_simulation(
                cfg,
                scenario,
                work / "shift.toml",
                data,
                broker=broker.url,
                at_step=poison,
                drain_timeout_s=timeout_s,
                until_delivered=True,
            )
        finally:
            client.close()
        assert stored_before, "the shift ended before the poison was published"
        figures.delivery = wait_delivered(
            data, sink_data, timeout_s, lambda: sink.stats().get("duplicate", 0)
        )
        wait_for(
            lambda: len(dead_letters_readonly(sink_data)) >= len(kinds),
            "every poison a dead letter",
            progress=lambda: sink_progress(sink_data),
        )
    letters = dead_letters_readonly(sink_data)
    expected = [(t, reason) for _, t, _, _, reason in kinds]
    assert letters == expected, f"dead letters {letters}, expected {expected}"
    figures.dead_lettered = {k[0]: got for k, (_, got) in zip(kinds, letters, strict=True)}
    mine = [r for r in sink_rows(sink_data / "sink.db") if r[1] == DEVICE]
    figures.after = len(mine) - stored_before[0]
    assert figures.after > 0, "no contact of the shift was stored after the poison"
    return figures
