"""The soak: the fault suite's long-running scenarios for a configurable time, with figures.

For ``--minutes`` in total (split 30 / 30 / 20 / 20 %), on loopback with real processes:

1. broker outages in cycles (mosquitto stopped 1.5 s, up 1 s) while ``contactpoint edge run``
   plays a generated busy shift at 600x real time, sized to fill its share;
2. ``kill -9`` of the edge daemon until its share is used up (one run in four killed inside a
   contact's store transaction, one in four during a clip write, the rest at random moments),
   every restart checked, then an undisturbed run drains everything;
3. ``kill -9`` of ``contactpoint sink run`` during ingest and clip reassembly;
4. ``kill -9`` of the broker (mosquitto saving its state once an hour, so a kill loses what it
   acknowledged) whenever rows are acknowledged by it and not yet confirmed by the sink, while
   a device plays a shift at 150x and waits at the end for the sink's delivery receipts;

then, on top (a quarter-hour shift each; the poison's grows with ``--minutes``):

5. a real full disk: the device's data directory on a small tmpfs the soak mounts (root or
   CAP_SYS_ADMIN; otherwise the row says ``skipped`` and why), filled with a real file from a
   third to two thirds of a shift;
6. poison: every kind of hostile payload published as raw bytes to the running sink mid-shift,
   each to be dead-lettered with its reason while the shift's contacts keep being stored;

then the in-process fault tests (disk pressure, clock trouble, corrupt store, parts gone) once
through pytest. Prints, per scenario, contacts produced / delivered / duplicated / lost, the
outbox peak (scenario 4: rows waiting for a receipt), the drain time and the faults injected;
exits 1 if anything was lost, duplicated or a check failed, and then keeps its work directory
(printing its path; ``--keep`` keeps it anyway). ``--report FILE`` (re)writes
docs/RELIABILITY.md with the figures of this run and the load average.

    .venv/bin/python bench/soak.py --minutes 2 --report docs/RELIABILITY.md
    .venv/bin/python bench/soak.py --minutes 30
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.scenario import busy_shift  # noqa: E402
from provisioning.broker import LocalBroker  # noqa: E402
from tests.faults.harness import (  # noqa: E402
    Delivery,
    broker_kill_cycles,
    broker_outage_cycles,
    edge_kill_cycles,
    full_disk_shift,
    poison_mid_shift,
    sink_kill_cycles,
)

OUTAGE_SPEED = 600.0
BROKER_KILL_SPEED = 150.0


@dataclass
class Row:
    scenario: str
    delivery: Delivery | None = None
    outbox_peak: str = "-"
    drain: str = "-"
    kills: str = "-"
    seconds: float = 0.0
    error: str = ""
    skipped: str = ""  # why the scenario could not run here (e.g. no tmpfs may be mounted)

    @property
    def ok(self) -> bool:
        if self.skipped:
            return not self.error
        d = self.delivery
        return not self.error and d is not None and d.lost == 0 and d.duplicated == 0


def run_outages(work: Path, seconds: float) -> Row:
    row = Row("1. broker outages in cycles")
    # the shift plays in about a fifth of the time; the rest is for draining the backlog while
    # the broker keeps going away (it is up only 40 % of the time)
    hours = max(0.25, seconds * 0.2 * OUTAGE_SPEED / 3600)
    started = time.monotonic()
    try:
        with LocalBroker(work / "broker") as broker:
            figures = broker_outage_cycles(
                broker,
                work,
                busy_shift(hours, seed=21),
                speed=OUTAGE_SPEED,
                timeout_s=seconds * 5,
                deliver_timeout_s=max(120.0, seconds),  # the sink catches up after the last outage
            )
        row.delivery = figures.delivery
        row.outbox_peak = str(figures.outbox_peak)
        row.drain = f"{figures.drain_s:.2f} s"
        row.kills = f"{figures.outages} broker outages"
    except Exception:
        row.error = traceback.format_exc(limit=3)
    row.seconds = time.monotonic() - started
    return row


def run_edge_kills(work: Path, seconds: float, seed: int) -> Row:
    row, label = Row("2. kill -9 of the edge daemon"), "edge kill -9"
    started = time.monotonic()
    try:
        with LocalBroker(work / "broker") as broker:
            figures = edge_kill_cycles(
                broker,
                work,
                busy_shift(0.25, seed=5),
                rng=random.Random(seed),
                until=started + seconds,
            )
        row.delivery = figures.delivery
        row.kills = (
            f"{figures.total} {label} ({', '.join(f'{k} {v}' for k, v in figures.kills.items())})"
        )
    except Exception:
        row.error = traceback.format_exc(limit=3)
    row.seconds = time.monotonic() - started
    return row


def run_sink_kills(work: Path, seconds: float, seed: int) -> Row:
    row, label = Row("3. kill -9 of the sink"), "sink kill -9"
    cycles = max(5, int(seconds / 1.5))
    started = time.monotonic()
    try:
        with LocalBroker(work / "broker") as broker:
            figures = sink_kill_cycles(
                broker,
                work,
                busy_shift(max(0.3, cycles / 20), seed=7),
                rng=random.Random(seed),
                cycles=cycles,
            )
        row.delivery = figures.delivery
        row.kills = (
            f"{figures.total} {label} ({', '.join(f'{k} {v}' for k, v in figures.kills.items())})"
        )
    except Exception:
        row.error = traceback.format_exc(limit=3)
    row.seconds = time.monotonic() - started
    return row


def run_broker_kills(work: Path, seconds: float, seed: int) -> Row:
    row = Row("4. kill -9 of the broker")
    # the shift plays in about two thirds of the time; the rest is for the last resends
    hours = max(0.1, seconds * 0.66 * BROKER_KILL_SPEED / 3600)
    started = time.monotonic()
    try:
        with LocalBroker(work / "broker", autosave_interval_s=3600) as broker:
            figures = broker_kill_cycles(
                broker,
                work,
                busy_shift(hours, seed=11),
                rng=random.Random(seed),
                speed=BROKER_KILL_SPEED,
                min_up_s=1.5,
                max_up_s=4.0,
                timeout_s=max(300.0, seconds * 5),
            )
        row.delivery = figures.delivery
        row.outbox_peak = f"{figures.awaiting_peak} awaiting a receipt"
        row.drain = f"{figures.drain_s:.2f} s"
        row.kills = f"{figures.kills} broker kill -9 ({figures.at_risk} rows acked, not confirmed)"
    except Exception:
        row.error = traceback.format_exc(limit=3)
    row.seconds = time.monotonic() - started
    return row


def run_full_disk(work: Path) -> Row:
    row = Row("5. real disk full")
    # a quarter-hour shift (13 contacts of ~2 MB of WAV each) fits the 64 MiB disk once it is
    # freed: a longer one would fill it again
    started = time.monotonic()
    try:
        with LocalBroker(work / "broker") as broker:
            figures = full_disk_shift(broker, work, busy_shift(0.25, seed=3))
        row.delivery = figures.delivery
        row.kills = (
            f"real disk full ({figures.disk_bytes >> 20} MiB tmpfs filled with a file from 1/3 "
            f"to 2/3 of the shift): {figures.flagged} contacts cut while full arrived flagged "
            f"`clip_missing: disk_full` without audio, {figures.clipped} with their clip"
        )
    except pytest.skip.Exception as exc:
        row.skipped = f"skipped: {exc.msg}"
    except Exception:
        row.error = traceback.format_exc(limit=3)
    row.seconds = time.monotonic() - started
    return row


def run_poison(work: Path, seconds: float) -> Row:
    row = Row("6. poison messages mid-shift")
    hours = min(1.0, max(0.25, seconds / 100))
    started = time.monotonic()
    try:
        with LocalBroker(work / "broker") as broker:
            figures = poison_mid_shift(broker, work, busy_shift(hours, seed=4))
        row.delivery = figures.delivery
        reasons = Counter(figures.dead_lettered.values())
        row.kills = (
            f"{figures.kinds} poison kinds ({', '.join(figures.dead_lettered)}), "
            f"{len(figures.dead_lettered)} dead-lettered "
            f"({', '.join(f'{r} {n}' for r, n in sorted(reasons.items()))}); stream never "
            f"stopped: {figures.after} contacts stored after the poison"
        )
    except Exception:
        row.error = traceback.format_exc(limit=3)
    row.seconds = time.monotonic() - started
    return row


def run_in_process_tests() -> tuple[bool, str]:
    tests = [
        "tests/faults/test_disk_pressure.py",
        "tests/faults/test_clock.py",
        "tests/faults/test_corrupt_store.py",
        "tests/faults/test_devices_gone.py",
        "tests/faults/test_wire_health.py",
        "tests/faults/test_bad_input.py",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
    return result.returncode == 0, last


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | contacts produced | delivered | duplicated | lost | MQTT redeliveries "
        "dropped by the sink | outbox peak | drain time | faults injected | run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        d = r.delivery
        figures = (
            [str(d.produced), str(d.delivered), str(d.duplicated), str(d.lost), str(d.redelivered)]
            if d is not None
            else ["skipped"] * 5
            if r.skipped
            else ["FAILED"] * 5
        )
        faults = r.skipped or r.kills
        lines.append(
            f"| {r.scenario} | {' | '.join(figures)} | {r.outbox_peak} | {r.drain} | {faults} "
            f"| {r.seconds:.0f} s |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="total time of scenarios 1-4")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill timings")
    parser.add_argument("--report", type=Path, help="write docs/RELIABILITY.md here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory even when all is well"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the runs' own reconnect warnings are expected
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    total = args.minutes * 60
    started = datetime.now(UTC)
    # not a TemporaryDirectory: when something is missing, the stores stay for a look (a
    # contact lost can then be told from one late)
    base = Path(tempfile.mkdtemp(prefix="contactpoint-soak-"))
    for name in ("outages", "edge", "sink", "broker-kills", "full-disk", "poison"):
        (base / name).mkdir()
    rows = [run_outages(base / "outages", total * 0.3)]
    print(table(rows), flush=True)
    rows.append(run_edge_kills(base / "edge", total * 0.3, args.seed))
    print(table(rows[-1:]).splitlines()[-1], flush=True)
    rows.append(run_sink_kills(base / "sink", total * 0.2, args.seed))
    print(table(rows[-1:]).splitlines()[-1], flush=True)
    rows.append(run_broker_kills(base / "broker-kills", total * 0.2, args.seed))
    print(table(rows[-1:]).splitlines()[-1], flush=True)
    rows.append(run_full_disk(base / "full-disk"))  # on top of the --minutes
    print(table(rows[-1:]).splitlines()[-1], flush=True)
    rows.append(run_poison(base / "poison", total * 0.1))
    print(table(rows[-1:]).splitlines()[-1], flush=True)
    load = load_average()
    in_process_ok, in_process = run_in_process_tests()
    print(f"in-process fault tests (7-11): {in_process}")
    for r in rows:
        if r.error:
            print(f"\n{r.scenario} FAILED:\n{r.error}", file=sys.stderr)
        elif r.delivery is not None and r.delivery.missing:
            print(f"\n{r.scenario}: missing {r.delivery.missing[:10]}", file=sys.stderr)
    ok = all(r.ok for r in rows) and in_process_ok
    if args.report is not None:
        args.report.write_text(report(rows, in_process, args, started, load), encoding="utf-8")
        print(f"wrote {args.report}")
    if ok and not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"work directory kept: {base}", file=sys.stderr)
    print("OK: nothing lost, nothing duplicated" if ok else "FAILED")
    return 0 if ok else 1


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (``os.getloadavg``: /proc/loadavg on Linux)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min, {os.cpu_count()} cores)"


def report(
    rows: list[Row], in_process: str, args: argparse.Namespace, started: datetime, load: str
) -> str:
    machine = f"{platform.machine()}, {platform.system()} {platform.release()}, Python " + (
        platform.python_version()
    )
    command = f".venv/bin/python bench/soak.py --minutes {args.minutes:g} --report {args.report}"
    return TEMPLATE.format(
        table=table(rows),
        in_process=in_process,
        command=command,
        when=started.strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine,
        minutes=f"{args.minutes:g}",
        load=load,
    )


TEMPLATE = """# Reliability: what survives which fault

The promise: a contact that happened at the counter reaches the central store exactly once with
its audio intact, whatever the network, the power or the disk does. The fault suite
(`tests/faults/`, part of `scripts/test`, about 1.5 minutes) proves each scenario below on every
run; `bench/soak.py` runs the long-running ones (1-4) for as long as asked, then a real full
disk (5) and poison on the wire (6) mid-shift, and prints the figures. This file is generated
by it (edit the template in bench/soak.py, not this file):

    {command}

## Figures from the last run

{when}, {minutes} minutes of soak on {machine} (loopback, real mosquitto, real subprocesses;
not a Raspberry Pi), while other work shared the machine's cores: load average at the end of
the scenarios {load}.

{table}

In-process fault tests (scenarios 7-11, `tests/faults/test_disk_pressure.py`, `test_clock.py`,
`test_corrupt_store.py`, `test_devices_gone.py`, `test_wire_health.py`, `test_bad_input.py`):
{in_process}

"Delivered" = in the sink exactly once, with a clip whose bytes hash to what the edge recorded
(where the edge recorded one). "Duplicated" = a contact stored twice by the sink (must be 0).
"MQTT redeliveries dropped" counts messages that arrived again (QoS 1, restarts) and that the
sink's idempotent ingest recognised: duplicates on the wire are allowed, in the store never.
"Drain time" = from the broker's return after the last outage to an empty outbox (scenario 4:
after the last kill, to every row confirmed by the sink's delivery receipt). "Faults injected"
= broker outages, broker kill -9, edge kill -9, sink kill -9, a real full disk, poison kinds.
A row that cannot run here says `skipped` with the reason (scenario 5 needs to mount a tmpfs:
root or CAP_SYS_ADMIN), never figures it did not measure. The soak exits 1 if anything was lost
or duplicated and then keeps its work directory (stores, clips, logs) and prints its path, so
that a contact lost can be told from one late; `--keep` keeps it on success too.

## The scenarios, and what the tests do

### 1. Broker outages in cycles (`test_broker_outages.py`)
`contactpoint edge run --scenario` (simulated devices, 300x real time in the suite, 600x in the
soak) produces contacts while the test stops mosquitto (cleanly: it persists its sessions) for
1.5 s and starts it for 1 s, in cycles; an in-process sink (plain persistent subscription,
see cloud_sink/consumer.py) ingests. The edge store's outbox depth is sampled every 50 ms with
a read-only SQLite connection. After the drain (the daemon exits 0 only when the broker has
acknowledged everything) every contact of the edge store must be in the sink exactly once with a
verified clip.

### 2. kill -9 of the edge daemon (`test_edge_kills.py`, 50 kills)
Each cycle starts the daemon on the SAME data directory and kills it. A restarted simulated
scenario plays the shift again from its start with new contact ids (uuid4), like a device that
reboots and keeps recording: the store carries what earlier runs committed. One run in four
dies inside a contact's store transaction (`CONTACTPOINT_CRASH_AT=store.commit@N`: every row
written, not committed), one in four while a clip file is written (`clip.write@N`: the
temporary file written, not fsynced nor renamed), the others at a random moment. The crash
points (contract/crashpoint.py) are a no-op unless that environment variable is set; the code
around them is the production path. After every kill, reading the store as the next start
does: `PRAGMA integrity_check` is ok; every contact committed before is still there; for a
crash point the run committed exactly N-1 contacts (the N-th was rolled back whole); every
recorded clip has its complete file (size and sha256); every outbox row acknowledged before is
still acknowledged with its first acknowledgement time (rows not acked are sent again, and so
are rows acked but not confirmed by the sink's receipt once it is late and may have been lost;
the sink deduplicates them). Half-written clips (`.partial`) are left by the `clip.write` kills
and removed by the next start (`cleanup_partials`). An undisturbed final run drains
everything; the sink must hold every contact exactly once with a verified clip.

### 3. kill -9 of the sink (`test_sink_kills.py`, 15 kills)
A simulated shift is published through mosquitto while `contactpoint sink run` is killed:
inside an ingest transaction (`sink.commit@N`: chunk written into its clip's partial file, rows
not committed, message not acknowledged to the broker), while a clip is assembled
(`sink.assemble.write@N`: its partial file verified, not yet moved into place), after the
verified clip file is in place but before it is marked
complete (`sink.assemble@N`), and at random moments. After every kill: `PRAGMA integrity_check`
ok, no contact the sink had committed is gone, every clip marked complete has a file with the
announced size and sha256. The sink acks only after its commit, so the broker redelivers what
was in hand; a clip whose chunks are all there is assembled again by the periodic check; the
temporary files a kill left are removed at the next start (`ClipStore.cleanup_temporaries`).

### 4. kill -9 of the broker (`test_broker_kills.py`)
mosquitto writes its persistence file only every `autosave_interval`: a power cut loses what it
acknowledged since the last save - to the device as well as to the sink. The tests run it with
`autosave_interval 3600`, so a kill loses everything it held. A PUBACK therefore only lets the
next message go; a message is delivered when the sink's delivery receipt (published on the
device's `cmd/delivered` after its commit, docs/WIRE.md) names it, and until then the device
keeps the row and its clip file and sends it again when the receipt is late
(`mqtt.receipt_timeout_s`) and it may have been lost: after a reconnect (as here), or once the
sink confirmed later messages; while the broker still holds it for a sink that is away, no copy
is added to that queue. One test stops the sink, lets the device publish six contacts with
clips and six events, waits for every PUBACK, kills the broker with SIGKILL, starts it and the
sink again: every contact arrives exactly once with its verified clip, every row is confirmed
(this test failed before receipts: all six contacts were lost). The other (the soak's
scenario) plays a shift at 150x on an in-process device and kills the broker whenever rows are
acknowledged by it and not yet confirmed by the sink (at least 1.5 s apart in the soak); at the
end the device waits for every receipt, and every contact must be in the sink exactly once with
its verified clip.

### 5. A real full disk mid-shift (`test_soak_extras.py`)
An in-process device (`run_simulation`, contacts with 30 s pre- and post-roll: every clip about
2 MB of WAV) keeps its store and clips on a 64 MiB tmpfs the soak mounts (`tests/fullfs.py`);
an in-process sink ingests. A third of the way through the shift a real file fills the disk,
leaving room for the store but not for a clip; at two thirds it is deleted, the device still
running. Every contact must arrive exactly once: the ones cut while the disk was full without
audio and flagged `clip_missing: "disk_full"` (counted in the row), the others with their
verified clip. A contact without a clip that does not say why fails the row. When something is
lost, the device's data directory is copied out of the tmpfs before it is unmounted.

### 6. Poison on the wire mid-shift (`test_soak_extras.py`)
A device plays a shift into an in-process sink; half-way through, a paho client publishes to
the real mosquitto, as raw bytes for another device: a retained status with an unpaired
surrogate, an unpaired surrogate in a contact, `1e400`, a 400-digit integer, `schema: 1.0`, a
tiny chunk claiming 2^20 chunks of a 1 GiB clip, broken JSON, an unknown kind in the topic and
a bad device id in the topic (shapes with more or fewer topic levels never reach the sink: its
subscription does not match them). Each must be a dead letter with its reason (`json`,
`schema`, `too_large`, `topic`, `id`), in the order sent, and the shift's later contacts must be
stored (the row counts them): no message stops the stream.

### 7. Disk pressure (`test_disk_pressure.py`)
Config section `storage`: `max_bytes` (a budget for clips + store, 0 = none) and
`delete_undelivered` (default false). `edge/diskbudget.py` runs after every saved clip: over the
budget it deletes clip files, oldest contact first, delivered ones first (the sink confirmed the
verified clip: acknowledged by the broker is not enough), then - only with `delete_undelivered`
- the oldest undelivered ones. Contacts, events and
their outbox rows are never deleted; an undelivered contact whose clip went is still sent (the
publisher finishes its clip row as missing, also when the file disappears while being sent).
Every deleted clip is counted and raised as an alarm (`clips_deleted_delivered`,
`clips_deleted_undelivered`); a budget that cannot be met raises `disk_full`. ENOSPC from the OS
is handled the same way: a clip write that fails frees space by the same rules and is tried
once more, else the contact is saved without a clip; a store write that fails (`database or
disk is full`) frees space and retries, else the contact waits in memory and is retried every
second (`save_failed`). Events outside contacts are saved the same way, and so is any other
trouble of the store (an I/O error, a lock): the record waits, the core loop goes on. The tests
check the deletion order on a real store, a shift bigger than the budget (every contact kept,
the newest clips kept, usage within budget), ENOSPC on clip writes through a virtual disk with
and without `delete_undelivered` (the daemon runs to the end, every contact saved and
delivered, the retained status on the broker shows `disk_full`), a store that refuses three
writes (no contact lost), and events outside contacts on a really full filesystem: a 4 MiB
tmpfs the test mounts (root only; skipped, saying so, where mounting is not permitted) and,
everywhere, `RLIMIT_FSIZE` in a subprocess (the write-ahead log may not grow): the events wait
and are saved in order once the space is back. A COMMIT refused by a full disk raises
`database or disk is full` (SQLite rolls it back itself; peewee's rollback of nothing is not
what is reported).

A real full disk: the tests mount a 64 MiB tmpfs (skipped, saying why, where mounting is not
permitted; `tests/edge/test_encode.py` then still proves the write path under a file-size limit,
`RLIMIT_FSIZE`), put the data directory (store and clips) on it and fill it with a real file,
leaving room for the store but not for a clip. Clips are encoded in memory and written with
plain OS writes (`edge/audio/encode.py`), so the refusal is an `OSError` (ENOSPC) and never an
error from inside libsndfile (soundfile turned it into an `AssertionError`, which crashed the
daemon at the first clip and again at every restart). A clip that cannot be written leaves its
contact in the store without audio and flagged `clip_missing: "disk_full"` (on the wire too;
`no_audio` and `write_failed` are the other reasons), raises the `disk_full` alarm and the
`storage` fault in `status.faults`; the fault is cleared by the next clip written. The
in-process test frees the space half-way through a shift: the daemon never stops, every contact
is kept and delivered, the contacts before carry the flag and the ones after have their
complete clips. The daemon test (`contactpoint edge run`) loses power while a clip write fails
on the full disk (`clip.write.failed`: the half-written clip stays), restarts on the still-full
disk (the half-written clip is removed, the whole shift runs and is delivered, every contact
flagged), then restarts with room again: every new contact has its clip.

### 8. Clock trouble (`test_clock.py`)
The device starts with a wall clock 5 h ahead or 7 h behind (`FakeClock(synced=False)`,
`schedule_sync`) and NTP corrects it 500 s after boot. Durations and ordering come from the
monotonic clock and never change. Contacts saved before the sync carry `clock_synced: false`.
Decision: a contact keeps its monotonic times and boot id, so at the first sync of a boot the
core (`Core._check_clock` -> `Store.correct_clock`) recomputes the wall times of that boot's
unsynchronised contacts and events as `monotonic + true offset`, sets `clock_synced`, rewrites
their still-unsent messages in place and sends each again (same contact id, new msg_id; a row
might be in flight with the old times). The sink replaces the times of a contact it holds with
`clock_synced: false` when the same contact comes with `clock_synced: true`. The tests check
the edge store and outbox (every wall time = true start + monotonic) and, with a real broker
and sink, that the sink's start/end/event times are the true ones and its order by start time
is the true order. Not corrected: contacts of an earlier boot that never saw a synchronised
clock (their monotonic base is gone; they stay flagged), and events outside contacts already
sent (they carry no flag).

Steps while synchronised: NTP steps a clock it already trusted (back an hour mid-shift). The
core (`edge/clock.py` `StepWatch`, `Core._watch_clock`) compares the wall clock with the
monotonic clock at least once a second and before stamping a contact; a jump by more than
`clock.step_threshold_s` (default 2 s) raises the `clock_stepped` alarm, and the `clock` fault
stays in `status.faults` while the clock is off the boot's earlier time. Decision: wall times
keep following the system's clock (re-anchored at each step: no side of a step is known to be
the true one), and a contact is flagged `clock_stepped` (store and wire; `clock_synced` stays
true) when it was stamped while the clock was off, or a step happened between its start and its
stamping - the contacts in between a step back and the step forward again. A daemon restart
takes the clock as it finds it. The tests drive the real `SystemClock` with an injected wall
clock stepped back and forward, and a simulated shift whose clock steps back an hour at 300 s
and forward at 600 s: contacts before and after are unflagged with true times, the ones in
between (or across a step) are flagged in the store and the outbox, two alarms, the fault
raised and cleared.

### 9. Corrupt store (`test_corrupt_store.py`)
Every contact also leaves a JSON sidecar `clips/<id>.json` (the whole record, no audio),
written atomically before its store transaction. At start (`edge/recovery.py`, used by the
daemon and the simulation) the store is opened and `PRAGMA quick_check` run; a file SQLite
cannot open or whose check fails is renamed `contactpoint.db.corrupt-<UTC time>` (with its
`-wal`/`-shm`), a fresh store created, the `store_corrupt` alarm raised, and every sidecar's
contact saved again with its outbox rows - with its clip when the file is intact, without it
otherwise. The sink deduplicates what it already had. Lost for good: events outside contacts,
and which rows had been delivered (everything re-indexed is sent again). A sidecar that cannot
be used (unreadable, not a record, refused by the store) is skipped and named in the alarm; a
value no store can hold (NaN, an unpaired surrogate: older releases wrote them) is dropped or
spelled out and the contact saved (`bad_record`). The tests overwrite the header, or blocks
inside the file, with random bytes (three seeds), and recover from sidecars with NaN, an
escaped surrogate, an event of another contact, a time beyond 64 bits and no JSON at all.

### 10. Microphone or sensor gone (`test_devices_gone.py`)
A part that fails reports a `DeviceFault` (real drivers: ALSA, ultrasonic, serial, nRF24; the
hardware backend turns start failures into faults); the core logs it and keeps it in
`status.faults` until the part reports it is back. Contacts waiting for audio are saved after a
bounded wait: when no audio period arrived for `audio.stall_s` (default 10 s) they get the audio
there was (truncated) or no clip (`audio_stalled` alarm). The tests take the microphone away
for ten minutes of a shift (faults reported and cleared, contacts saved within settle +
post-roll + `stall_s` + 1 s, windows `before_s` later, full clips again after), take the
presence sensor away (buttons keep producing events, presence contacts resume), and run the
real-driver daemon (`backend = "pi"`, gpiozero mock pins) with an ALSA device that does not
exist: the retained status on the broker names the microphone, and a button press still makes a
contact, saved without a clip while the daemon runs.

### 11. Bad values from the till (`test_bad_input.py`)
The till's HTTP input (`edge/pos.py`) refuses what the device cannot keep with a `400` naming
the field (NaN, infinities, amounts over 1e12, unpaired surrogates) and bounds every request
(Content-Length required and at most 64 KiB, a 10 s deadline, at most 16 connections;
tests/edge/test_pos.py sends raw bytes over real sockets). Behind it the core does not rely
on that: a record with a value no store can hold is saved without it (`bad_record` says which
field went), one the store refuses outright is logged whole and reported, and the core loop
goes on. The test plays a shift whose receipts carry NaN and infinite amounts through the real
simulation path: every contact and receipt is saved, the sidecars are strict JSON.

## Fixed on the way
- The device forgot a message when the broker acknowledged it; mosquitto saves its state only
  periodically, so a broker killed in between lost contacts the device had marked sent (3 in a
  shift with 17 kills). The sink now confirms every message after its commit (delivery
  receipts) and the device keeps it, and its clip, until then.
- The publisher retried a clip whose file the disk budget had deleted while it was being sent
  only after a reconnect, holding the outbox until then; it now finishes such a row as missing.
- A clock correction rewritten into a contact message that was already in flight would have been
  lost; corrections are now always sent as a new message as well.
- On a real full disk soundfile reported a failed clip write as an `AssertionError` (not an
  `OSError`): the disk-full path never ran and the daemon crashed at the first clip, and again
  at every restart. Clips are now encoded in memory and written with plain OS writes.
- A step of the synchronised wall clock (NTP, back an hour mid-shift) went unnoticed: later
  contacts were stamped an hour early and still looked right (`clock_synced: true`). Steps are
  now detected, alarmed, and the contacts they may have shifted flagged `clock_stepped`.
"""


if __name__ == "__main__":
    sys.exit(main())
