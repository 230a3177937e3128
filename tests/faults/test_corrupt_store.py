"""A corrupt store: random bytes written into the device's database file. At the next start it
is detected (SQLite cannot open it, or ``PRAGMA quick_check`` fails), moved aside with a
timestamp, a fresh store is created, the ``store_corrupt`` alarm is raised and every contact
whose JSON sidecar is still in ``clips/`` is re-indexed (with its clip where the file is intact).
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge.app import Core
from edge.clock import NS
from edge.config import Config
from edge.health import Health
from edge.records import ContactRecord, EventRecord
from edge.recovery import open_store, record_to_json, recovered
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from tests.faults.harness import broken_clips, config_dict

SHIFT = busy_shift(0.25, seed=3)
WALL = 1_800_000_000 * NS


def corrupt(path: Path, how: str, seed: int) -> None:
    rng = random.Random(seed)
    raw = bytearray(path.read_bytes())
    if how == "header":
        raw[0:100] = rng.randbytes(100)
    else:  # pages: garbage over a few blocks inside the file
        for _ in range(4):
            at = rng.randrange(4096, len(raw) - 4096)
            raw[at : at + 2048] = rng.randbytes(2048)
    path.write_bytes(raw)


@pytest.mark.parametrize(("how", "seed"), [("header", 1), ("pages", 2), ("pages", 3)])
def test_a_corrupt_store_is_moved_aside_and_its_clips_reindexed(
    tmp_path: Path, how: str, seed: int
) -> None:
    cfg = Config.from_dict(config_dict("mqtt://127.0.0.1:1"))
    run_simulation(cfg, SHIFT, tmp_path / "s.toml", tmp_path)
    with Store.open(tmp_path / STORE_NAME) as store:
        before = {c.id: c for c in store.contacts()}
    assert len(before) == 13
    (tmp_path / "clips" / f"{next(iter(before))}.wav").unlink()  # one clip lost as well
    corrupt(tmp_path / STORE_NAME, how, seed)
    cores: list[Core] = []
    summary = run_simulation(cfg, SHIFT, tmp_path / "s.toml", tmp_path, core_hook=cores.append)
    aside = list(tmp_path.glob(f"{STORE_NAME}.corrupt-*"))
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))], aside
    health = cores[0].health
    assert health.count("store_corrupt") == 1
    assert summary.contacts == 26  # the 13 re-indexed ones and the 13 of this run
    with Store.open(tmp_path / STORE_NAME) as store:
        assert store.integrity_check() == "ok"
        after = {c.id: c for c in store.contacts()}
        pending = {row.ref for row in store.outbox.pending(limit=1000)}
    assert broken_clips(tmp_path, {cid: c.clip for cid, c in after.items()}) == []
    lost_clip = next(iter(before))
    for cid, original in before.items():
        again: ContactRecord = after[cid]
        expected = original.clip if cid != lost_clip else None
        assert again.clip == expected
        assert (again.start_ns, again.end_wall_ns, again.tags, again.events) == (
            original.start_ns,
            original.end_wall_ns,
            original.tags,
            original.events,
        )
        assert cid in pending  # sent again: the sink deduplicates what it had


def old_contact(contact_id: str, **receipt: Any) -> ContactRecord:
    event = EventRecord(f"{contact_id}-r", "receipt", 5 * NS, WALL + 5 * NS, contact_id, **receipt)
    return ContactRecord(
        contact_id, "presence", 0, 9 * NS, WALL, WALL + 9 * NS, "departure",
        ("productive",), (event,), None, True, "boot-1",
    )  # fmt: skip


def test_bad_sidecars_are_cleaned_or_skipped_and_reported_never_stopping_recovery(
    tmp_path: Path,
) -> None:
    """Sidecars as an older release wrote them (NaN and escaped surrogates allowed), and some
    that no release could use: recovery saves what it can, skips the rest and says which."""
    clips = tmp_path / "clips"
    clips.mkdir()

    def sidecar(record: ContactRecord) -> None:
        (clips / f"{record.id}.json").write_text(json.dumps(record_to_json(record)))

    sidecar(old_contact("c-good", receipt_id="R-1", data={"amount": 2.5}))
    sidecar(old_contact("c-nan", receipt_id="R-2", data={"amount": float("nan"), "n": 1}))
    sidecar(old_contact("c-surrogate", receipt_id="R-\udc80"))
    stray = old_contact("c-stray")
    sidecar(replace(stray, events=(replace(stray.events[0], contact_id="c-other"),)))
    sidecar(replace(old_contact("c-huge"), end_ns=1 << 70))
    (clips / "c-garbage.json").write_bytes(b"\x00 not json")
    (clips / "c-shape.json").write_text('{"id": 5}')
    (tmp_path / STORE_NAME).write_bytes(b"not a database " * 1000)

    store, reason = open_store(tmp_path / STORE_NAME)
    assert reason is not None
    health = Health()
    with store:
        recovered(store, tmp_path, device="d", site="s", health=health, reason=reason)
        contacts = {c.id: c for c in store.contacts()}
        pending = {row.ref for row in store.outbox.pending(limit=100)}
    assert set(contacts) == {"c-good", "c-nan", "c-surrogate"} == pending
    assert contacts["c-good"].events[0].data == {"amount": 2.5}
    assert contacts["c-nan"].events[0].data == {"n": 1}  # without the NaN, nothing else lost
    assert contacts["c-surrogate"].events[0].receipt_id == "R-\\udc80"  # spelled out
    [alarm] = [a for a in health.snapshot()["alarms"] if a["kind"] == "store_corrupt"]
    detail = alarm["detail"]
    assert "re-indexed 3 contact(s) from their sidecars, 0 with clip" in detail
    assert "2 of them without values no store can hold" in detail
    assert "4 sidecar(s) skipped:" in detail
    for name in ("c-stray.json", "c-huge.json", "c-garbage.json", "c-shape.json"):
        assert name in detail
    assert "names contact c-other" in detail
    assert "64-bit" in detail
    assert health.count("bad_record") == 6
