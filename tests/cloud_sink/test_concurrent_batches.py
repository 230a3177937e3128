"""Two workers' batches on one PostgreSQL database, touching the same devices in opposite orders.

Worker A's batch holds a message of device 1 then one of device 2, worker B's the other way
round. Interleaved (A stores device 1's message, B device 2's, then each goes on to the other
device), each would wait for the other's rows if it wrote them as it went: PostgreSQL breaks
the deadlock by failing one batch, which is then redelivered whole — and a message that loses
that way ``max_attempts`` times is dead-lettered. A batch writes its devices' rows at its end,
in one order (sorted), so both commit, and neither waits for the other before that end: a
batch over the same devices commits while another is midway. The interleaving is forced with
the ``before_commit`` hook and ``pg_stat_activity`` (a worker blocked on a lock), not with
sleeps. (A batch that PostgreSQL failed is redone at once with a savepoint per message, so the
deadlock would cost a redo — counted as ``batch_redone`` — before it costs a redelivery; the
test asserts there was none.)

The same holds for the sites' locks that the site alerts take per stored message (batches of
different devices over the same two sites in opposite orders take those locks at their start,
sorted) and for clip rows: chunks of the same two clips in opposite orders, each batch creating
the row of its first clip, take the clips' advisory locks at their start, sorted.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

from cloud_sink.alerts import SiteAlerts
from cloud_sink.db import execute_sql, open_database
from cloud_sink.ingest import Ingest, Outcome
from cloud_sink.migrations import migrate
from contract.alerts import AlertRule
from tests.cloud_sink.helpers import SITE, chunk_frame, encode, event_message, topic
from tests.waiting import join, wait_for

DEVICES = ("cp-lock-1", "cp-lock-2")
SITES = ("site-lock-1", "site-lock-2")
RULE = AlertRule(name="reds", count="red", at_least=2, within_s=60, cooldown_s=120)


def message(device: str, site: str = SITE) -> tuple[str, bytes]:
    msg = event_message()  # a red press: an observation for the site alerts
    msg["device"], msg["site"] = device, site
    return topic("event", site, device), encode(msg)


CLIP_DATA = {clip: bytes([n]) * 2048 for n, clip in enumerate(("c" * 32, "d" * 32))}


def chunk(n: int, seq: int) -> tuple[str, bytes]:
    """Chunk ``seq`` (of 2) of clip ``n`` (of device ``n``)."""
    clip_id, data = list(CLIP_DATA.items())[n]
    frame = chunk_frame(
        clip_id=clip_id, seq=seq, total=2, offset=1024 * seq, data=data[1024 * seq :][:1024],
        clip_sha256=hashlib.sha256(data).hexdigest(), clip_bytes=len(data), device=DEVICES[n],
    )  # fmt: skip
    return topic("clip", SITE, DEVICES[n]), frame


def batches_sharing(shared: str) -> dict[str, list[tuple[str, bytes]]]:
    if shared == "clips":  # each batch creates the row of its first clip
        return {"a": [chunk(0, 0), chunk(1, 1)], "b": [chunk(1, 0), chunk(0, 1)]}
    if shared == "devices":
        return {
            "a": [message(DEVICES[0]), message(DEVICES[1])],
            "b": [message(DEVICES[1]), message(DEVICES[0])],
        }
    return {  # four devices: only the sites are shared
        "a": [message("cp-lock-a1", SITES[0]), message("cp-lock-a2", SITES[1])],
        "b": [message("cp-lock-b1", SITES[1]), message("cp-lock-b2", SITES[0])],
    }


@pytest.mark.parametrize("shared", ["devices", "sites", "clips"])
def test_batches_over_the_same_devices_or_sites_in_opposite_orders_both_commit_at_once(
    postgres_url: str, tmp_path: Path, shared: str
) -> None:
    db = open_database(postgres_url, tmp_path)  # one connection per thread (peewee)
    migrate(db)
    batches = batches_sharing(shared)
    redone: dict[str, int] = {}
    pids: dict[str, int] = {}
    first_done = {name: threading.Event() for name in batches}
    finished = {name: threading.Event() for name in batches}
    results: dict[str, Any] = {}

    def waiting_on_lock(name: str) -> bool:
        row = execute_sql(
            db, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pids[name],)
        ).fetchone()
        return row is not None and row[0] == "Lock"

    def worker(name: str, other: str) -> None:
        ingest = Ingest(db, tmp_path / "sink")
        alerts = SiteAlerts([RULE])  # as Sink wires them
        ingest.on_stored, ingest.lock_sites = alerts.observe, alerts.lock_sites
        pids[name] = int(execute_sql(db, "SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        first_topic = batches[name][0][0]

        def hook(topic_: str) -> None:
            if topic_ != first_topic or first_done[name].is_set():
                return
            first_done[name].set()
            # go on only once the other worker has written its first device's rows too, or
            # waits for a lock (then this one must commit for it to go on), or is done
            wait_for(
                lambda: (
                    first_done[other].is_set()
                    or finished[other].is_set()
                    or (other in pids and waiting_on_lock(other))
                ),
                f"worker {other} to write its first message or to wait",
            )

        ingest.before_commit = hook
        try:
            results[name] = ingest.handle_batch(batches[name])
        except Exception as exc:  # noqa: BLE001 - reported by the test's thread
            results[name] = exc
        finally:
            redone[name] = ingest.counters.snapshot().get("batch_redone", 0)
            finished[name].set()
            db.close()

    threads = [
        threading.Thread(target=worker, args=("a", "b")),
        threading.Thread(target=worker, args=("b", "a")),
    ]
    _run_both_and_check_stored(threads, results, batches)
    if shared == "clips":
        counts = execute_sql(db, "SELECT received_count FROM clips ORDER BY clip_id").fetchall()
        assert [tuple(row) for row in counts] == [(2,), (2,)]
    else:
        (events,) = execute_sql(db, "SELECT COUNT(*) FROM events").fetchone()  # type: ignore[misc]
        assert events == 4
    assert redone == {"a": 0, "b": 0}  # neither was failed by a deadlock and done again
    db.close()


def test_a_batch_over_the_same_devices_commits_while_another_is_midway(
    postgres_url: str, tmp_path: Path
) -> None:
    """Workers sharing devices work at once: B's whole batch commits while A's batch over the
    same two devices waits midway (after storing its first message) for B to be done. (The
    devices are known: a batch creates the rows of new devices at its start, so the first
    batches of a new device take turns.)"""
    db = open_database(postgres_url, tmp_path)
    migrate(db)
    Ingest(db, tmp_path / "sink").handle_batch([message(DEVICES[0]), message(DEVICES[1])])
    batches = batches_sharing("devices")
    midway, done = threading.Event(), threading.Event()
    pid_b: list[int] = []
    results: dict[str, Any] = {}

    def b_waits_on_a_lock() -> bool:
        row = execute_sql(
            db, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid_b[0],)
        ).fetchone()
        return row is not None and row[0] == "Lock"

    def worker(name: str) -> None:
        ingest = Ingest(db, tmp_path / "sink")
        try:
            if name == "a":

                def hook(topic_: str) -> None:
                    if midway.is_set():
                        return
                    midway.set()
                    wait_for(
                        lambda: done.is_set() or (bool(pid_b) and b_waits_on_a_lock()),
                        "worker b to commit (or to wait for a lock of worker a's batch)",
                    )
                    results["b done while a midway"] = done.is_set()

                ingest.before_commit = hook
            else:
                pid_b.append(int(execute_sql(db, "SELECT pg_backend_pid()").fetchone()[0]))  # type: ignore[index]
                wait_for(midway.is_set, "worker a midway through its batch")
            results[name] = ingest.handle_batch(batches[name])
        except Exception as exc:  # noqa: BLE001 - reported by the test's thread
            results[name] = exc
        finally:
            if name == "b":
                done.set()
            db.close()

    threads = [threading.Thread(target=worker, args=(name,)) for name in batches]
    _run_both_and_check_stored(threads, results, batches)
    # B committed while A held its first message uncommitted, not after A's commit
    assert results["b done while a midway"] is True
    (events,) = execute_sql(db, "SELECT COUNT(*) FROM events").fetchone()  # type: ignore[misc]
    assert events == 6
    db.close()


def _run_both_and_check_stored(
    threads: list[threading.Thread], results: dict[str, Any], batches: dict[str, Any]
) -> None:
    """Run both workers' threads to the end; each batch stored both its messages."""
    for thread in threads:
        thread.start()
    for thread in threads:
        join(thread, "both batches")
    for name in batches:
        outcome = results[name]
        assert not isinstance(outcome, Exception), f"batch {name}: {outcome!r}"
        assert [r.outcome for r in outcome] == [Outcome.STORED, Outcome.STORED]
