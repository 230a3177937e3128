"""Disk pressure: a disk budget (``storage.max_bytes``) and a full disk (ENOSPC) on the device.

Delivered clips go first, oldest first; undelivered ones only with
``storage.delete_undelivered``; each deletion is counted and raised as an alarm in the status
message. A full disk never stops capture, never crashes the daemon and never loses a contact:
a clip that cannot be written leaves its contact without a clip, a store write that fails
waits in memory and is retried.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from peewee import OperationalError

import edge.audio.clipper
from edge.app import Core
from edge.audio.encode import write_clip
from edge.config import Config
from edge.diskbudget import DiskBudget
from edge.health import Health
from edge.publish import wire
from edge.records import ClipInfo, ContactRecord
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Delivered, Store
from provisioning.broker import LocalBroker
from tests.faults.harness import config_dict, retained_status

SHIFT = busy_shift(0.25, seed=3)  # 13 contacts, each with a clip of ~1-2.5 MB (WAV)


def config(**sections: dict[str, Any]) -> Config:
    return Config.model_validate(config_dict("mqtt://127.0.0.1:1", **sections))


def saved_clip(store: Store, data: Path, n: int) -> ContactRecord:
    cid = f"{n:032x}"
    path = data / "clips" / f"{cid}.wav"
    sha, size = write_clip(path, np.zeros(16000, dtype=np.int16), 16000, "wav")
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
        budget.cfg = cfg.model_copy(update={"max_bytes": budget.usage() - 2 * clip_bytes})
        budget.enforce()  # two clips must go: the two oldest delivered ones
        left = {r.id for r in records if (tmp_path / f"clips/{r.id}.wav").exists()}
        assert left == {r.id for r in records} - {records[1].id, records[3].id}
        assert health.count("clips_deleted_delivered") == 2
        budget.cfg = cfg.model_copy(update={"max_bytes": budget.usage() - 2 * clip_bytes})
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
    assert summary.contacts == 13 and summary.clips == 13  # every contact, recorded with audio
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
        def write(path: Path, samples: Any, rate: int, codec: Any) -> tuple[str, int]:
            used = sum(p.stat().st_size for p in self.clips.glob("*") if p.is_file())
            if used + len(samples) * 2 + 44 > self.size:
                self.refused += 1
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real(path, samples, rate, codec)

        return write


@pytest.mark.parametrize("undelivered", [False, True])
def test_enospc_on_clips_never_stops_capture_nor_loses_a_contact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker: LocalBroker, undelivered: bool
) -> None:
    disk = VirtualDisk(tmp_path, 8_000_000)
    monkeypatch.setattr(edge.audio.clipper, "write_clip", disk.wrap(write_clip))
    cores: list[Core] = []
    cfg = Config.model_validate(
        config_dict(broker.url, storage={"delete_undelivered": undelivered})
    )
    summary = run_simulation(
        cfg, SHIFT, tmp_path / "s.toml", tmp_path, broker=broker.url, core_hook=cores.append
    )
    health = cores[0].health
    assert disk.refused >= 1 and health.count("disk_full") >= 1
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
    assert summary.contacts == 13 and cores[0].unsaved == 0
    assert cores[0].health.count("save_failed") >= 1
    assert cores[0].health.count("disk_full") >= 1
