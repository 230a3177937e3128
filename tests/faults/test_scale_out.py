"""Scale-out that is correct: three workers on one shared subscription, one of them killed -9.

Three ``contactpoint sink run --group g`` processes share one PostgreSQL database and one data
directory and take one stream from a real mosquitto (``$share/g/...``, round-robin per
message), so the chunks of one clip land on different workers and a clip is assembled by
whichever worker commits its last chunk (or by any worker's clip check). Two devices publish
a shift each with FLAC clips in 8 KiB chunks. The clips are kept in the shared data directory,
or in object storage: a real SeaweedFS S3 gateway on loopback (``--clips s3://...``), the
workers given its endpoint in their config file and the credentials in the standard AWS
environment. Mid-run one worker is killed -9 — once at a
random moment, once inside its first clip assembly (``sink.assemble.write``; it runs alone
until then, the others start once it is dead) — and started again
with its client id (its persistent session holds what the broker had assigned to it). At the
end every contact of both devices is in the database exactly once, every clip is marked
complete with a file (or an object) whose sha256 is the device's, each worker took a share of
the stream,
no temporary file is left, and no worker's log says ``deadlock detected``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_sink import Sink, SinkConfig
from cloud_sink.db import execute_sql, open_database
from edge.config import Config
from edge.records import ClipInfo
from edge.scenario import busy_shift
from edge.simulate import run_simulation
from provisioning.broker import LocalBroker
from tests.faults.harness import config_dict, contactpoint, edge_snapshot, kill9
from tests.notify import NotifySocket
from tests.services import SeaweedS3
from tests.waiting import join, reap, tree_state, wait_exit, wait_for

GROUP = "g"
WORKERS = 3
DEVICES = ("cp-scale-a", "cp-scale-b")


def client_id(n: int) -> str:
    return f"contactpoint-sink-{GROUP}-{n}"


class Storage:
    """Where the workers keep verified clips: the data directory, or a SeaweedFS bucket."""

    def __init__(self, s3: SeaweedS3 | None, tmp_path: Path) -> None:
        self.s3 = s3
        self.args: list[str] = []
        self.env: dict[str, str] = {}
        if s3 is not None:
            config = tmp_path / "sink.toml"
            config.write_text(
                f'[s3]\nendpoint_url = "{s3.endpoint}"\naddressing_style = "path"\n'
                "retry_min_s = 0.2\nretry_max_s = 1.0\n"
            )
            self.args = ["--config", str(config), "--clips", f"s3://{s3.bucket}/fleet"]
            self.env = {
                "AWS_ACCESS_KEY_ID": s3.ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": s3.SECRET_KEY,
                "AWS_REGION": s3.REGION,
            }
            self.client = s3.client()

    def read(self, data: Path, path: str | None, location: str | None) -> bytes | None:
        """The clip's bytes where its row says it is; None where it is not there (yet): in
        object storage, a clip counts only once it was uploaded."""
        if self.s3 is not None:
            if location is None:
                return None
            bucket, _, key = location.removeprefix("s3://").partition("/")
            body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body
        return None if path is None else (data / path).read_bytes()


def start_worker(
    n: int,
    broker: str,
    db_url: str,
    data: Path,
    logs: Path,
    *,
    storage: Storage,
    notify: NotifySocket,
    crash_at: str | None = None,
) -> subprocess.Popen[bytes]:
    """Worker ``n``, telling ``notify`` (as systemd's socket) when it is ready."""
    return contactpoint(
        [
            *("sink", "run", "--broker", broker),
            *("--data", str(data), "--db", db_url, "--group", GROUP),
            *("--client-id", client_id(n), "--resend-after", "2", "--check-every", "0.5"),
            *storage.args,
        ],
        logs / f"worker-{n}.log",
        crash_at,
        {**storage.env, "NOTIFY_SOCKET": notify.path},
    )


class Central:
    """Read-only questions to the workers' PostgreSQL database."""

    def __init__(self, url: str, data: Path) -> None:
        self.db = open_database(url, data)

    def scalar(self, sql: str) -> int:
        row = execute_sql(self.db, sql).fetchone()
        return int(row[0]) if row is not None else 0

    def progress(self) -> tuple[int, ...]:
        return (
            self.scalar("SELECT COUNT(*) FROM messages"),
            self.scalar("SELECT COALESCE(SUM(received_count), 0) FROM clips"),  # chunks held
            self.scalar("SELECT COUNT(*) FROM clips WHERE complete"),
        )

    def contacts(self) -> list[tuple[str, str, str | None, str | None]]:
        """(device, contact id, verified clip path, its location in object storage) of every
        row."""
        cursor = execute_sql(
            self.db,
            "SELECT c.device, c.id, k.path, k.location FROM contacts c LEFT JOIN clips k "
            "ON k.device = c.device AND k.clip_id = c.id AND k.complete",
        )
        return [(str(d), str(i), p, loc) for d, i, p, loc in cursor.fetchall()]


@pytest.fixture
def central(postgres_url: str, tmp_path: Path) -> Iterator[Central]:
    reader = Central(postgres_url, tmp_path / "reader")
    yield reader
    reader.db.close()


def delivered(
    central: Central, data: Path, edge: dict[str, dict[str, ClipInfo | None]], storage: Storage
) -> tuple[int, int, list[str]]:
    """(delivered, duplicated, missing) of the devices' contacts in the database."""
    seen: dict[tuple[str, str], int] = {}
    where: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for device, cid, path, location in central.contacts():
        seen[device, cid] = seen.get((device, cid), 0) + 1
        where[device, cid] = (path, location)
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    done, missing = 0, []
    for device, clips in edge.items():
        for cid, clip in clips.items():
            stored = storage.read(data, *where.get((device, cid), (None, None)))
            ok = (device, cid) in seen and (
                clip is None
                or (stored is not None and hashlib.sha256(stored).hexdigest() == clip.sha256)
            )
            if ok:
                done += 1
            else:
                missing.append(f"{device}/{cid}")
    return done, duplicated, missing


def diagnose(
    central: Central,
    data: Path,
    edge: dict[str, dict[str, ClipInfo | None]],
    storage: Storage,
    logs: Path,
) -> str:
    """What the failure message shows: the missing contacts' rows, and the workers' logs."""
    done, duplicated, missing = delivered(central, data, edge, storage)
    lines = [f"{done} delivered, {duplicated} duplicated, missing {missing}"]
    for name in missing[:5]:
        device, cid = name.split("/")
        for sql in (
            f"SELECT COUNT(*) FROM contacts WHERE device = '{device}' AND id = '{cid}'",
            f"SELECT total, received_count, complete, resend_requests, path, location FROM clips "
            f"WHERE device = '{device}' AND clip_id = '{cid}'",
        ):
            lines.append(f"{sql}: {execute_sql(central.db, sql).fetchall()}")
    dead = execute_sql(central.db, "SELECT reason, detail FROM dead_letters").fetchall()
    lines.append(f"dead letters: {dead}")
    for log in sorted(logs.iterdir()):
        lines.append(f"{log.name}: {log.read_text(errors='replace')[-1500:]}")
    return "\n".join(lines)


def final_stats(log: Path) -> dict[str, Any]:
    """The counters a worker prints as its last line when it stops cleanly."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise AssertionError(f"{log.name}: no final counters; log ends {log.read_text()[-800:]}")


@pytest.mark.timeout(900)  # three workers, two devices and PostgreSQL on a loaded machine
@pytest.mark.parametrize("clips", ["directory", "s3"])
@pytest.mark.parametrize("crash_at", [None, "sink.assemble.write@1"], ids=["random", "assembly"])
def test_three_workers_one_killed_lose_and_duplicate_nothing(  # noqa: PLR0917 (fixtures)
    broker: LocalBroker,
    postgres_url: str,
    central: Central,
    tmp_path: Path,
    crash_at: str | None,
    clips: str,
    request: pytest.FixtureRequest,
) -> None:
    data, logs = tmp_path / "sink", tmp_path / "logs"
    logs.mkdir()
    storage = Storage(request.getfixturevalue("s3_server") if clips == "s3" else None, tmp_path)
    # the workers' persistent sessions with the shared subscription exist before any message;
    # armed, only worker 0's: it runs alone until its first assembly kills it (with three, the
    # assemblies go to whichever worker completes a clip, and mosquitto keeps handing an absent
    # member its share, so worker 0 might do none); the others start once it is dead
    for n in range(WORKERS if crash_at is None else 1):
        with Sink(
            SinkConfig(
                broker=broker.url,
                data_dir=data,
                db_url=postgres_url,
                group=GROUP,
                client_id=client_id(n),
            )
        ) as sink:
            wait_for(sink.subscribed.is_set, f"worker {n} to subscribe")

    notify: dict[int, NotifySocket] = {}  # each start's own: a restart says READY=1 anew

    def start(n: int, crash: str | None = None) -> subprocess.Popen[bytes]:
        if n in notify:
            notify.pop(n).close()
        notify[n] = NotifySocket()
        return start_worker(
            n, broker.url, postgres_url, data, logs, storage=storage, notify=notify[n],
            crash_at=crash,
        )  # fmt: skip

    workers = [start(0, crash_at)]
    if crash_at is None:
        workers += [start(n) for n in (1, 2)]
    failures: list[BaseException] = []
    edges = {device: tmp_path / device for device in DEVICES}

    def device(name: str, seed: int) -> None:
        cfg = Config.from_dict(
            config_dict(
                broker.url,
                device={"id": name, "site": "shop-scale"},
                audio={"codec": "flac"},
                mqtt={"chunk_bytes": 8192},
            )
        )
        edges[name].mkdir()
        try:
            run_simulation(
                cfg, busy_shift(0.2, seed=seed), edges[name] / "s.toml", edges[name],
                broker=broker.url,
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            failures.append(exc)

    publishing = [
        threading.Thread(target=device, args=(name, 5 + i)) for i, name in enumerate(DEVICES)
    ]
    try:
        for thread in publishing:
            thread.start()

        def moving() -> Any:
            return central.progress(), [tree_state(edge) for edge in edges.values()]

        if crash_at is None:  # a kill at a random moment: once some clips are complete
            wait_for(
                lambda: central.progress()[2] >= 3, "the first clips assembled", progress=moving
            )
            kill9(workers[0])
        else:
            wait_exit(workers[0], f"worker 0 to die at {crash_at}", progress=moving)
            workers += [start(n) for n in (1, 2)]
        assert workers[0].returncode == -signal.SIGKILL
        # the other two go on with the stream while it is gone ...
        chunks = central.progress()[1]
        wait_for(
            lambda: (
                central.progress()[1] >= chunks + 40 or not any(t.is_alive() for t in publishing)
            ),
            "the two others to go on",
            progress=moving,
        )
        # ... and it comes back for what the broker had assigned to its session
        workers[0] = start(0)
        for thread in publishing:
            join(thread, "the devices to publish their shifts", progress=moving)
        assert not failures, failures
        edge = {name: edge_snapshot(path).clips for name, path in edges.items()}
        produced = sum(len(clips) for clips in edge.values())
        assert produced >= 10
        wait_for(
            lambda: delivered(central, data, edge, storage)[0] == produced,
            f"the devices' {produced} contacts, each with its verified clip",
            progress=central.progress,
            seen=lambda: diagnose(central, data, edge, storage, logs),
        )
        wait_for(
            lambda: not [*data.rglob("*.tmp"), *data.rglob("*.part")], "no temporary file left"
        )
        done, duplicated, missing = delivered(central, data, edge, storage)
        assert (done, duplicated, missing) == (produced, 0, [])
        assert central.scalar("SELECT COUNT(*) FROM clips WHERE NOT complete") == 0
        assert central.scalar("SELECT COUNT(*) FROM dead_letters") == 0
        # a worker started late may still be opening the database, its handlers not yet in
        # place (a SIGTERM then ends it as the signal's default, -15): stop it once it is ready
        for n, sock in notify.items():
            wait_for(
                functools.partial(sock.said, "READY=1"), f"worker {n} to say READY=1",
                progress=central.progress,
            )  # fmt: skip
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for n, process in enumerate(workers):
            assert wait_exit(process, f"worker {n} to stop") == 0
        stats = [final_stats(logs / f"worker-{n}.log") for n in range(WORKERS)]
        shares = [worker.get("stored", 0) for worker in stats]
        # no batch of one worker was failed by PostgreSQL for waiting in a circle with another's
        # (it would be redone, or redelivered, so only the logs tell)
        deadlocks = {
            log.name: text.count("deadlock detected")
            for log in sorted(logs.iterdir())
            if "deadlock detected" in (text := log.read_text(errors="replace"))
        }
        assert deadlocks == {}, deadlocks
        if crash_at is None:  # one stream shared by all three
            assert all(share > 0 for share in shares[1:]), shares
            # worker 0's counters are its second life's: it takes what its session kept while it
            # was dead, but a device may have sent that again to the others first (duplicates)
            took = stats[0].get("stored", 0) + stats[0].get("duplicate", 0)
            assert took > 0, stats[0]
        else:  # the others joined late; worker 0's session kept what came while it was dead
            assert shares[0] > 0, shares
    finally:
        for process in workers:
            reap(process)
        for sock in notify.values():
            sock.close()
