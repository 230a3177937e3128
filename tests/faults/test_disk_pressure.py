"""Disk pressure: a disk budget (``storage.max_bytes``) and a full disk (ENOSPC) on the device.

Delivered clips go first, oldest first; undelivered ones only with
``storage.delete_undelivered``; each deletion is counted and raised as an alarm in the status
message. A full disk never stops capture, never crashes the daemon and never loses a contact:
a clip that cannot be written leaves its contact without a clip, a store write that fails
waits in memory and is retried.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from peewee import OperationalError

import edge.audio.clipper
from edge.app import Core, settle_ns
from edge.audio.encode import write_clip, write_clip_parts
from edge.clock import NS, FakeClock
from edge.config import Config
from edge.diskbudget import DiskBudget, is_disk_full
from edge.events import Receipt
from edge.health import Health
from edge.publish import wire
from edge.records import ClipInfo, ContactRecord, EventRecord, OutboxMessage
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Delivered, Store
from provisioning.broker import LocalBroker
from tests.faults.harness import (
    ROOT,
    broken_clips,
    config_dict,
    edge_snapshot,
    kill9,
    retained_status,
    start_edge,
    write_config,
    write_scenario,
)
from tests.fullfs import fill, small_tmpfs
from tests.waiting import tree_state, wait_exit

SHIFT = busy_shift(0.25, seed=3)  # 13 contacts, each with a clip of ~1-2.5 MB (WAV)


def config(**sections: dict[str, Any]) -> Config:
    return Config.from_dict(config_dict("mqtt://127.0.0.1:1", **sections))


def saved_clip(store: Store, data: Path, n: int) -> ContactRecord:
    cid = f"{n:032x}"
    path = data / "clips" / f"{cid}.wav"
    sha, size = write_clip(path, np.zeros(16000, dtype=np.int16).data, 16000, "wav")
    clip = ClipInfo(cid, f"clips/{cid}.wav", "wav", 16000, 0, 16000, 0, 10**9, sha, size)
    record = ContactRecord(
        cid, "presence", 0, 10**9, 0, 10**9, "departure", (), (), clip, True, "b"
    )
    store.save_contact(record, [wire.clip_message(clip, "d", "s")])
    return record


@pytest.mark.parametrize("undelivered", [False, True])
def test_the_budget_deletes_delivered_clips_first_oldest_first(
    tmp_path: Path, undelivered: bool
) -> None:
    with Store.open(tmp_path / STORE_NAME) as store:
        records = [saved_clip(store, tmp_path, n) for n in range(6)]
        delivered = {records[1].id, records[3].id, records[4].id}
        rows = store.outbox.pending(limit=100)
        # the broker acknowledged every clip, the sink confirmed three: only those are delivered
        # (acknowledged is not stored: a broker that crashes loses what it acknowledged)
        store.outbox.mark_sent([r.seq for r in rows], 1)
        store.outbox.mark_delivered(Delivered(clip_ids=tuple(delivered)), 2)
        health = Health()
        cfg = config(storage={"max_bytes": 1, "delete_undelivered": undelivered}).storage
        budget = DiskBudget(cfg, store, tmp_path, health, "clips")
        clip_bytes = records[0].clip.bytes if records[0].clip else 0
        budget.cfg = cfg.replace(max_bytes=budget.usage() - 2 * clip_bytes)
        budget.enforce()  # two clips must go: the two oldest delivered ones
        left = {r.id for r in records if (tmp_path / f"clips/{r.id}.wav").exists()}
        assert left == {r.id for r in records} - {records[1].id, records[3].id}
        assert health.count("clips_deleted_delivered") == 2
        budget.cfg = cfg.replace(max_bytes=budget.usage() - 2 * clip_bytes)
        budget.enforce()  # two more: the last delivered one, then (if allowed) the oldest other
        left = {r.id for r in records if (tmp_path / f"clips/{r.id}.wav").exists()}
        if undelivered:
            assert left == {records[2].id, records[5].id}
            assert health.count("clips_deleted_undelivered") == 1
        else:
            assert left == {records[0].id, records[2].id, records[5].id}
            assert health.count("disk_full") == 1  # nothing more may go: said, not hidden
        assert health.count("clips_deleted_delivered") == 3
        assert len(store.contacts()) == 6  # contacts are never deleted, only clip files


def test_a_budget_smaller_than_a_shift_keeps_every_contact_and_says_so(tmp_path: Path) -> None:
    cores: list[Core] = []
    cfg = config(storage={"max_bytes": 6_000_000, "delete_undelivered": True})
    summary = run_simulation(cfg, SHIFT, tmp_path / "s.toml", tmp_path, core_hook=cores.append)
    assert summary.contacts == 13
    assert summary.clips == 13
    health = cores[0].health
    deleted = health.count("clips_deleted_undelivered")
    assert deleted >= 5  # nothing was delivered (no broker): undelivered ones had to go
    assert health.count("clips_deleted_delivered") == 0
    assert cores[0].budget.usage() <= 6_000_000
    on_disk = sorted((tmp_path / "clips").glob("*.wav"), key=lambda p: p.stat().st_mtime_ns)
    assert len(on_disk) == 13 - deleted  # the newest stayed
    status = wire.status_payload(
        device="d", site="s", online=True, version="v", boot_id="b", outbox_depth=0,
        free_disk_bytes=0, clock_synced=True, at_wall_ns=0, health=health.snapshot(),
    )  # fmt: skip
    kinds = {a["kind"]: a["count"] for a in status["status"]["alarms"]}
    assert kinds["clips_deleted_undelivered"] == deleted


class VirtualDisk:
    """Clip writes fail with ENOSPC once the clips directory would hold more than ``size``."""

    def __init__(self, data: Path, size: int) -> None:
        self.clips = data / "clips"
        self.size = size
        self.refused = 0

    def wrap(self, real: Callable[..., tuple[str, int]]) -> Callable[..., tuple[str, int]]:
        def write(path: Path, parts: Any, rate: int, codec: Any) -> tuple[str, int]:
            used = sum(p.stat().st_size for p in self.clips.glob("*") if p.is_file())
            if used + sum(len(part) for part in parts) * 2 + 44 > self.size:
                self.refused += 1
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real(path, parts, rate, codec)

        return write


@pytest.mark.parametrize("undelivered", [False, True])
def test_enospc_on_clips_never_stops_capture_nor_loses_a_contact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker: LocalBroker, undelivered: bool
) -> None:
    disk = VirtualDisk(tmp_path, 8_000_000)
    monkeypatch.setattr(edge.audio.clipper, "write_clip_parts", disk.wrap(write_clip_parts))
    cores: list[Core] = []
    cfg = Config.from_dict(config_dict(broker.url, storage={"delete_undelivered": undelivered}))
    summary = run_simulation(
        cfg, SHIFT, tmp_path / "s.toml", tmp_path, broker=broker.url, core_hook=cores.append
    )
    health = cores[0].health
    assert disk.refused >= 1
    assert health.count("disk_full") >= 1
    assert summary.contacts == 13  # no contact lost; the daemon ran to the end
    if undelivered:  # space was made (delivered clips first, then the oldest others)
        assert summary.clips == 13
        assert (
            health.count("clips_deleted_delivered") + health.count("clips_deleted_undelivered") >= 1
        )
    else:  # only delivered clips may go: some contacts could still be saved without a clip
        assert summary.clips + health.count("disk_full") >= 13
    assert summary.outbox_depth == 0  # delivered all the same (missing clips are finished)
    status = retained_status(broker.url)["status"]
    assert "disk_full" in {a["kind"] for a in status["alarms"]}


def test_a_full_disk_under_the_store_delays_contacts_but_loses_none(tmp_path: Path) -> None:
    failures = {"left": 3}

    def hook(core: Core) -> None:
        real = core.store.save_contact

        def save(*args: Any, **kwargs: Any) -> bool:
            if failures["left"] > 0:
                failures["left"] -= 1
                raise OperationalError("database or disk is full")
            return real(*args, **kwargs)

        core.store.save_contact = save  # type: ignore[method-assign]
        cores.append(core)

    cores: list[Core] = []
    summary = run_simulation(config(), SHIFT, tmp_path / "s.toml", tmp_path, core_hook=hook)
    assert summary.contacts == 13
    assert cores[0].unsaved == 0
    assert cores[0].health.count("save_failed") >= 1
    assert cores[0].health.count("disk_full") >= 1


# --- a real full filesystem (a tmpfs mounted by the test) --------------------------------------

DISK_BYTES = 64 << 20  # room for the store and this shift's clips once the filler is gone
ROOM_LEFT = 1_500_000  # enough for the store's growth over the shift, not for one clip
ROLLS = {"pre_roll_s": 30.0, "post_roll_s": 30.0}  # every clip >= 60 s of WAV (~1.9 MB)
FREE_AT_NS = SHIFT.duration_ns // 2  # the operator frees space half-way through the shift


def flagged_and_clipped(data: Path) -> tuple[list[ContactRecord], list[ContactRecord]]:
    """The stored contacts without a clip (each must say why: the disk was full) and those with
    one (each with its complete file)."""
    with Store.open(data / STORE_NAME) as store:
        contacts = store.contacts()
        payloads = {r.ref: r.payload["contact"] for r in store.outbox.of_kind("contact")}
    flagged = [c for c in contacts if c.clip is None]
    clipped = [c for c in contacts if c.clip is not None]
    for c in flagged:
        assert c.clip_missing == "disk_full", c
        assert payloads[c.id]["clip"] is None
        assert payloads[c.id]["clip_missing"] == "disk_full"  # on the wire too
    for c in clipped:
        assert c.clip_missing is None
        assert "clip_missing" not in payloads[c.id]
    assert broken_clips(data, {c.id: c.clip for c in clipped}) == []
    return flagged, clipped


def test_a_real_full_disk_keeps_capture_and_contacts_and_clips_resume_with_room(
    tmp_path: Path, broker: LocalBroker
) -> None:
    with small_tmpfs(tmp_path / "disk", DISK_BYTES) as disk:
        data = disk / "data"  # the store and the clips
        data.mkdir()
        filler = fill(disk, ROOM_LEFT)
        cores: list[Core] = []

        def free_half_way(now_ns: int) -> None:
            if now_ns >= FREE_AT_NS and filler.exists():
                filler.unlink()  # room again, the daemon still running

        cfg = Config.from_dict(config_dict(broker.url, contacts=ROLLS))
        summary = run_simulation(
            cfg,
            SHIFT,
            tmp_path / "s.toml",
            data,
            broker=broker.url,
            core_hook=cores.append,
            at_step=free_half_way,
        )
        assert not filler.exists()
        assert summary.contacts == 13
        assert summary.outbox_depth == 0
        flagged, clipped = flagged_and_clipped(data)
        assert len(flagged) >= 3
        assert len(clipped) >= 3
        assert summary.clips == len(clipped)
        assert list((data / "clips").glob("*.partial")) == []
        health = cores[0].health
        assert health.count("disk_full") >= len(flagged)
        status = retained_status(broker.url)["status"]
        assert "disk_full" in {a["kind"] for a in status["alarms"]}
        assert "storage" not in {f["part"] for f in status.get("faults", [])}  # room again


def test_a_full_disk_fails_no_restart_and_clips_resume_when_room_returns(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """The real daemon (``contactpoint edge run``): power is lost while a clip write fails on
    the full disk, leaving a half-written clip; restarts on the still-full disk run to the end
    (contacts kept without audio, flagged); once there is room, clips are written again."""
    config = write_config(tmp_path / "device.toml", broker.url, contacts=ROLLS)
    shift = write_scenario(tmp_path / "shift.toml", SHIFT)
    log = tmp_path / "edge.log"  # not on the full disk
    with small_tmpfs(tmp_path / "disk", DISK_BYTES) as disk:
        data = disk / "data"
        data.mkdir()
        filler = fill(disk, ROOM_LEFT)

        def run(crash_at: str | None = None) -> int:
            daemon = start_edge(config, data, shift, speed=300, crash_at=crash_at, log=log)
            try:  # as long as it writes (store, clips, log)
                return wait_exit(
                    daemon,
                    "the daemon's run",
                    progress=lambda: (tree_state(disk), log.stat().st_size),
                )
            finally:
                kill9(daemon)

        assert run("clip.write.failed") == -9, log.read_text()[-3000:]
        killed = edge_snapshot(data)
        assert len(killed.partials) == 1  # the half-written clip the power loss left
        assert killed.contacts == frozenset()  # the first contact was waiting for that clip

        assert run() == 0, log.read_text()[-3000:]  # still full: runs, delivers, exits 0
        full = edge_snapshot(data)
        assert full.partials == frozenset()  # cleaned at start
        flagged, clipped = flagged_and_clipped(data)
        assert (len(flagged), clipped) == (13, [])

        filler.unlink()
        assert run() == 0, log.read_text()[-3000:]
        flagged, clipped = flagged_and_clipped(data)
        assert (len(flagged), len(clipped)) == (13, 13)  # the new run's contacts have clips
        assert edge_snapshot(data).partials == frozenset()


# --- orphan events on a really full filesystem -----------------------------------------------


def orphans_through_a_full_disk(
    data: Path, fill: Callable[[Path], None], free: Callable[[], None]
) -> dict[str, Any]:
    """Orphan receipts (nobody at the counter) saved by the real core into a real store while
    ``fill`` makes the filesystem refuse writes, until ``free`` gives the space back; returns
    what was seen on the way (asserted by the caller, also from a subprocess)."""
    cfg = config()
    clock = FakeClock()
    seen: dict[str, Any] = {}
    with Store.open(data / STORE_NAME) as store:
        core = Core(cfg, clock, store, data, audio=False)

        def orphan(receipt_id: str) -> None:
            """A receipt now, then time enough for the segmenter to let it go."""
            core.handle(Receipt(t_ns=clock.now_ns, receipt_id=receipt_id))
            # an event nobody claims is an orphan once no window can reach back to it
            reach = settle_ns(cfg) + int(cfg.contacts.window.before_s * NS)
            end = clock.now_ns + reach + 2 * NS
            while clock.now_ns < end:
                clock.advance(0.1)
                core.tick(clock.now_ns)

        def stored() -> list[str | None]:
            return [e.receipt_id for e in store.orphan_events()]

        orphan("R-before")
        fill(store.path)
        orphan("R-full-1")
        seen["while_full"] = {"stored": stored(), "waiting": core.unsaved}
        orphan("R-full-2")  # the loop goes on; this one waits too
        seen["still_full"] = {"stored": stored(), "waiting": core.unsaved}
        free()
        for _ in range(30):  # the waiting ones are retried once a second
            clock.advance(0.1)
            core.tick(clock.now_ns)
        seen["after"] = {
            "stored": stored(),
            "waiting": core.unsaved,
            "outbox": sorted(row.ref for row in store.outbox.pending(limit=100)),
            "orphans": sorted(e.id for e in store.orphan_events()),
            "saved": core.counters.orphan_events,
        }
        seen["health"] = {k: core.health.count(k) for k in ("save_failed", "disk_full")}
    return seen


def check_orphans_waited_and_were_saved(seen: dict[str, Any]) -> None:
    assert seen["while_full"] == {"stored": ["R-before"], "waiting": 1}
    assert seen["still_full"] == {"stored": ["R-before"], "waiting": 2}
    after = seen["after"]
    assert after["stored"] == ["R-before", "R-full-1", "R-full-2"]  # in order, none lost
    assert after["waiting"] == 0
    assert after["saved"] == 3
    assert after["outbox"] == after["orphans"]  # each with its event message
    assert seen["health"]["save_failed"] >= 2


def fill_up(directory: Path) -> Callable[[Path], None]:
    """Write a file in ``directory`` until the filesystem has not one byte left."""

    def fill(_: Path) -> None:
        fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            while True:
                os.write(fd, b"\0" * 65536)  # the last one short, then ENOSPC
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc  # noqa: PT017
        finally:
            os.close(fd)

    return fill


def test_a_commit_refused_by_a_full_tmpfs_says_disk_full(tmp_path: Path) -> None:
    """SQLite rolls a failed COMMIT back itself; the store raises that failure, not peewee's
    rollback of nothing, so the core can tell a full disk from other trouble."""
    disk = tmp_path / "disk"
    with small_tmpfs(disk, 2 * 1024 * 1024), Store.open(disk / STORE_NAME) as store:
        fill_up(disk)(store.path)
        orphan = EventRecord("e1", "receipt", 0, 0, receipt_id="R-1")
        message = OutboxMessage("m1", "event", "e1", {"id": "e1"})
        with pytest.raises(OperationalError) as refused:
            store.save_event(orphan, [message])
        assert is_disk_full(refused.value), repr(refused.value)
        (disk / "filler").unlink()
        assert store.save_event(orphan, [message])
        assert store.orphan_events() == [orphan]


def test_orphans_wait_for_space_on_a_full_tmpfs_and_are_saved_when_it_returns(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk", 4 * 1024 * 1024) as disk:
        data = disk / "data"
        data.mkdir()
        seen = orphans_through_a_full_disk(data, fill_up(disk), (disk / "filler").unlink)
    check_orphans_waited_and_were_saved(seen)
    assert seen["health"]["disk_full"] >= 1  # ENOSPC: the budget was asked for space


_RLIMIT_SCRIPT = """
import json, os, resource, signal, sys
from pathlib import Path
from tests.faults.test_disk_pressure import orphans_through_a_full_disk

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

def fill(store: Path) -> None:  # the write-ahead log cannot grow by another page
    size = os.path.getsize(f"{store}-wal")
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))

def free() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))

print(json.dumps(orphans_through_a_full_disk(Path(sys.argv[1]), fill, free)))
"""


def test_orphans_wait_when_the_store_file_may_not_grow_rlimit_fsize(tmp_path: Path) -> None:
    """The same through RLIMIT_FSIZE in a subprocess (runs everywhere, also without root):
    the real write path fails (EFBIG, 'disk I/O error'), the orphans wait and are saved."""
    done = subprocess.run(
        [sys.executable, "-c", _RLIMIT_SCRIPT, str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    check_orphans_waited_and_were_saved(json.loads(done.stdout.strip().splitlines()[-1]))
