"""A corrupt store: random bytes written into the device's database file. At the next start it
is detected (SQLite cannot open it, or ``PRAGMA quick_check`` fails), moved aside with a
timestamp, a fresh store is created, the ``store_corrupt`` alarm is raised and every contact
whose JSON sidecar is still in ``clips/`` is re-indexed (with its clip where the file is intact).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edge.app import Core
from edge.config import Config
from edge.records import ContactRecord
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from tests.faults.harness import broken_clips, config_dict

SHIFT = busy_shift(0.25, seed=3)


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
    cfg = Config.model_validate(config_dict("mqtt://127.0.0.1:1"))
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
