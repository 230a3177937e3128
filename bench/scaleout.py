"""Scale-out of the sink: 1, 2 and 3 workers on one PostgreSQL, and one worker's memory.

(a) Workers. For N = 1, 2, 3 (``--workers``): a fresh database in a throwaway PostgreSQL
    cluster (``tests/services.py``, fsync off), N persistent sessions on one shared
    subscription (``--group``) in a ``LocalBroker``, and a backlog of ``--messages`` contact
    messages (``tests/wire_samples.py``'s shape: 4 events, 3 tags, no clip) from
    ``--devices`` devices queued in the broker while the workers are away. Then N real
    ``contactpoint sink run --group`` processes drain it, timed from their start to the last
    row. Prints messages/s, the scaling factor against one worker, and the workers' CPU
    seconds per 1,000 messages (user + system, from /proc), which the machine's load moves
    less than the wall time.
(b) Memory. One worker (``contactpoint sink run``, PostgreSQL) drains a backlog of
    ``--rss-messages`` small event messages (a button press outside a contact); its RSS
    (/proc/PID/status VmRSS) is sampled every 0.2 s with the rows stored so far. Prints RSS
    at the first stored row, the peak, at the end, and the slope of RSS over messages (least
    squares, KiB per 10,000 messages).

Only loopback; everything lives in a temporary directory that is removed at the end.

    .venv/bin/python bench/scaleout.py [--messages 4000] [--devices 100] [--workers 1,2,3]
        [--rss-messages 100000] [--only a|b]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cloud_sink import Sink, SinkConfig
from cloud_sink.db import execute_sql, open_database
from contract import wire as contract_wire
from edge.publish import wire
from edge.records import ContactRecord, EventRecord
from provisioning.broker import LocalBroker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/ and bench/ are not installed packages
from tests.services import PostgresCluster  # noqa: E402

NS = 1_000_000_000
START_WALL_NS = 1_795_424_400 * NS  # 2026-11-23T09:00:00Z
WAIT_S = 900.0
TICKS = os.sysconf("SC_CLK_TCK")


def contact(n: int) -> ContactRecord:
    """Contact ``n`` in the shape of bench/transport.py's (65 s, arrival, receipt, a red
    press, departure, three tags), without a clip."""
    cid, t0 = f"{n:032x}", n * 100 * NS

    def event(i: int, kind: str, at_s: int, **more: Any) -> EventRecord:
        at = t0 + at_s * NS
        return EventRecord(f"{n:028x}{i:04x}", kind, at, START_WALL_NS + at, cid, **more)

    return ContactRecord(
        id=cid,
        mode="presence",
        start_ns=t0 + 10 * NS,
        end_ns=t0 + 75 * NS,
        start_wall_ns=START_WALL_NS + t0 + 10 * NS,
        end_wall_ns=START_WALL_NS + t0 + 75 * NS,
        ended_by="departure",
        tags=("negative", "not_positive", "productive"),
        events=(
            event(0, "arrival", 10),
            event(1, "receipt", 50, receipt_id=f"R-{n}", data={"amount": 12.5}),
            event(2, "red", 60, button="red", role="red", gesture="short", duration_ns=NS // 10),
            event(3, "departure", 75),
        ),
        clip=None,
        clock_synced=True,
        boot_id="3c1e5a52-5b39-4a8e-9a39-6f0d7c1b2a11",
    )


def backlog(messages: int, devices: int, kind: str) -> list[tuple[str, bytes]]:
    """``messages`` contact (or small event) messages, round-robin over ``devices`` devices
    of 10 sites."""
    out: list[tuple[str, bytes]] = []
    for i in range(messages):
        device, site = f"cp-bench-{i % devices:04d}", f"site-{i % devices % 10}"
        if kind == "contact":
            msg = wire.contact_message(contact(i + 1), device, site)
        else:
            at = (i + 1) * NS
            event = EventRecord(f"{i + 1:032x}", "red", at, START_WALL_NS + at, button="red")
            msg = wire.event_message(event, device, site)
        out.append((contract_wire.topic(site, device, msg.kind), wire.encode_json(msg.payload)))
    return out


def publish(broker: LocalBroker, messages: list[tuple[str, bytes]]) -> float:
    """Publish with QoS 1 and wait for every PUBACK; the seconds it took."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id="bench-publisher",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    t0 = time.perf_counter()
    for start in range(0, len(messages), 5_000):  # a bounded number waiting in paho
        infos = [client.publish(t, p, qos=1) for t, p in messages[start : start + 5_000]]
        for info in infos:
            info.wait_for_publish(WAIT_S)
    took = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return took


def client_id(group: str, n: int) -> str:
    return f"bench-{group}-{n}"


def open_sessions(broker: LocalBroker, data: Path, url: str, group: str | None, n: int) -> None:
    """Each worker connects once and leaves: the broker queues its share from then on."""
    for i in range(n):
        cfg = SinkConfig(
            broker=broker.url,
            data_dir=data,
            db_url=url,
            group=group,
            client_id=client_id(group or "solo", i),
        )
        sink = Sink(cfg).start()
        try:
            if not sink.subscribed.wait(30):
                raise RuntimeError(f"worker {i} did not subscribe")
        finally:
            sink.stop()


def start_worker(
    broker: LocalBroker, data: Path, url: str, group: str | None, i: int
) -> subprocess.Popen[bytes]:
    args = [
        *(sys.executable, "-m", "provisioning.main", "sink", "run", "--broker", broker.url),
        *("--data", str(data), "--db", url, "--client-id", client_id(group or "solo", i)),
    ]
    if group is not None:
        args += ["--group", group]
    log = (data / f"worker-{i}.log").open("ab")
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=log)
    finally:
        log.close()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(60)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


@dataclass(frozen=True, slots=True)
class Drain:
    workers: int
    seconds: float
    cpu_s: float
    publish_s: float
    deadlocks: int  # "deadlock detected" in the workers' logs
    load: float  # 1-minute load average at the end of the drain


def drain(
    pg: PostgresCluster,
    work: Path,
    messages: list[tuple[str, bytes]],
    workers: int,
    *,
    group: str | None,
    sample: Callable[[list[subprocess.Popen[bytes]], int], None] | None = None,
) -> Drain:
    """Queue ``messages`` for ``workers`` away, then let them drain it; how long it took."""
    data = work / f"sink-{workers}-{group}"
    data.mkdir(parents=True)
    url = pg.create_database(f"bench_{workers}_{group or 'solo'}".replace("-", "_"))
    with LocalBroker(work / f"broker-{workers}-{group}") as broker:
        open_sessions(broker, data, url, group, workers)
        publish_s = publish(broker, messages)
        db = open_database(url, data)
        try:

            def stored() -> int:
                row = execute_sql(db, "SELECT COUNT(*) FROM messages").fetchone()
                return int(row[0]) if row else 0

            t0 = time.perf_counter()
            procs = [start_worker(broker, data, url, group, i) for i in range(workers)]
            try:
                cpu = 0.0
                while (n := stored()) < len(messages):
                    if time.perf_counter() - t0 > WAIT_S or any(
                        p.poll() is not None for p in procs
                    ):
                        raise RuntimeError(f"{workers} worker(s): {n}/{len(messages)} stored")
                    if sample is not None:
                        sample(procs, n)
                    time.sleep(0.2)
                took = time.perf_counter() - t0
                if sample is not None:
                    sample(procs, len(messages))
                cpu = sum(cpu_s(p.pid) for p in procs)
            finally:
                stop(procs)
        finally:
            db.close()
    deadlocks = sum(
        log.read_text(errors="replace").count("deadlock detected")
        for log in data.glob("worker-*.log")
    )
    return Drain(workers, took, cpu, publish_s, deadlocks, os.getloadavg()[0])


def bench_workers(pg: PostgresCluster, work: Path, args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.workers.split(",")]
    messages = backlog(args.messages, args.devices, "contact")
    print(
        f"(a) {len(messages):,} contact messages from {args.devices} devices, queued in "
        "mosquitto for N workers on one shared subscription, drained by N `sink run --group` "
        "processes into one PostgreSQL (fsync off)"
    )
    base: Drain | None = None
    for n in counts:
        d = drain(pg, work, messages, n, group="bench")
        base = base or d
        rate = len(messages) / d.seconds
        print(
            f"    {n} worker(s): {d.seconds:6.2f} s  {rate:8,.0f} msg/s  scaling x"
            f"{base.seconds / d.seconds:.2f}  worker CPU {1000 * d.cpu_s / len(messages):.2f} "
            f"s per 1,000 msg  deadlocks {d.deadlocks}  load {d.load:.1f}  "
            f"(publish {len(messages) / d.publish_s:,.0f} msg/s)"
        )


def bench_rss(pg: PostgresCluster, work: Path, args: argparse.Namespace) -> None:
    messages = backlog(args.rss_messages, args.devices, "event")
    samples: list[tuple[int, int]] = []  # (rows stored, RSS KiB)

    def sample(procs: list[subprocess.Popen[bytes]], n: int) -> None:
        if n > 0:
            samples.append((n, rss_kib(procs[0].pid)))

    d = drain(pg, work, messages, 1, group=None, sample=sample)
    xs = [float(n) for n, _ in samples]
    ys = [float(r) for _, r in samples]
    slope = statistics.linear_regression(xs, ys).slope if len(samples) > 1 else 0.0
    print(
        f"(b) one worker draining a backlog of {len(messages):,} event messages (PostgreSQL) in "
        f"{d.seconds:.1f} s ({1000 * d.cpu_s / len(messages):.2f} CPU s per 1,000 msg), "
        f"{len(samples)} RSS samples: start {samples[0][1] / 1024:.1f} MiB, "
        f"peak {max(ys) / 1024:.1f} MiB, end {samples[-1][1] / 1024:.1f} MiB; slope "
        f"{slope * 10_000:+.1f} KiB per 10,000 messages"
    )
    half = [(float(n), float(r)) for n, r in samples if n >= len(messages) // 2]
    half_slope = (
        statistics.linear_regression([n for n, _ in half], [r for _, r in half]).slope
        if len(half) > 1
        else 0.0
    )
    low, high = min(r for _, r in half), max(r for _, r in half)
    print(
        f"    second half: {low / 1024:.1f}..{high / 1024:.1f} MiB ({len(half)} samples), "
        f"slope {half_slope * 10_000:+.1f} KiB per 10,000 messages"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=4_000, help="(a) backlog per run")
    parser.add_argument("--devices", type=int, default=100, help="devices sending it")
    parser.add_argument("--workers", default="1,2,3", help="(a) worker counts, comma-separated")
    parser.add_argument("--rss-messages", type=int, default=100_000, help="(b) backlog")
    parser.add_argument("--only", choices=["a", "b"], help="run one part")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    work = Path(tempfile.mkdtemp(prefix="cp-bench-scaleout-"))
    pg = PostgresCluster()
    pg.start()
    try:
        if args.only in (None, "a"):
            bench_workers(pg, work, args)
        if args.only in (None, "b"):
            bench_rss(pg, work, args)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
