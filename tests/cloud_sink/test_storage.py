"""The clip store in a data directory that several sink workers share."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cloud_sink.consumer import Sink, SinkConfig
from cloud_sink.storage import ClipStore
from tests.cloud_sink.helpers import DEVICE, SITE, new_id

MINE, OTHER = "contactpoint-sink-g-1", "contactpoint-sink-g-2"


def partial(store: ClipStore, clip_id: str, data: bytes) -> Path:
    """A temporary file ``store``'s writer is in the middle of (as an assembly leaves it)."""
    rel = store.clip_relpath(SITE, DEVICE, clip_id, "wav")
    target = store.root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = store.temporary(target)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return Path(name)


def test_a_starting_worker_removes_only_what_is_provably_abandoned(tmp_path: Path) -> None:
    data = tmp_path / "sink"
    other = ClipStore(data, OTHER)
    busy = partial(other, new_id(), b"another worker is assembling this")
    abandoned = partial(other, new_id(), b"a worker that died long ago")
    hours_ago = time.time() - 2 * 3600
    os.utime(abandoned, (hours_ago, hours_ago))
    mine = partial(ClipStore(data, MINE), new_id(), b"this worker's killed previous run")

    Sink(SinkConfig("mqtt://127.0.0.1:1", data, client_id=MINE, temp_lease_s=3600.0))

    assert busy.read_bytes() == b"another worker is assembling this"  # a live worker's work
    assert not abandoned.exists()  # older than the lease
    assert not mine.exists()  # this worker's own: no run of it writes there any more


def test_temporaries_name_their_writer_whatever_its_client_id(tmp_path: Path) -> None:
    odd = ClipStore(tmp_path, "sink/../with spaces\x00and@signs")
    name = partial(odd, new_id(), b"x").name
    assert name.endswith(".tmp")
    assert "/" not in name
    assert " " not in name
    assert f"@{odd.tag}@" in name
    assert ClipStore(tmp_path, "another").tag != odd.tag
