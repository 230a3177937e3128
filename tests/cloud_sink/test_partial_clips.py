"""Chunks straight into place (issue #13 item 2), on SQLite and PostgreSQL: one sparse
partial file per clip written at the chunks' offsets, the received chunks as a bitmap in the
clip row, the whole clip verified and moved into place; several workers sharing one database
and one data directory; a crash between the write and the commit."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peewee import Database, OperationalError

from cloud_sink.db import open_database
from cloud_sink.ingest import ClipKey, Ingest, Outcome, _gaps
from cloud_sink.migrations import migrate
from cloud_sink.receipts import Confirm
from tests.cloud_sink.helpers import (
    DEVICE,
    NS,
    SITE,
    Clip,
    FakeClock,
    chunk_frame,
    contact_message,
    encode,
    topic,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(db_url: str | None, data_dir: Path) -> Iterator[Database]:
    database = open_database(db_url, data_dir)
    migrate(database)
    yield database
    database.close()


@pytest.fixture
def ingest(db: Database, data_dir: Path, clock: FakeClock) -> Ingest:
    return Ingest(db, data_dir, clock=clock, owner="worker-a")


@pytest.fixture
def other(db_url: str | None, data_dir: Path, clock: FakeClock) -> Iterator[Ingest]:
    """A second worker: its own connection, the same database and data directory."""
    database = open_database(db_url, data_dir)
    yield Ingest(database, data_dir, clock=clock, owner="worker-b")
    database.close()


def row(ingest: Ingest, clip: Clip) -> dict[str, Any]:
    c = ingest.t.clips
    found: dict[str, Any] = c.select().where(c.clip_id == clip.id).dicts().get()
    return found


def bits(ingest: Ingest, clip: Clip) -> set[int]:
    """The seqs whose bit the clip row has set."""
    raw = bytes(row(ingest, clip)["received"] or b"")
    return {i for i in range(len(raw) * 8) if raw[i // 8] >> (i % 8) & 1}


def files(data_dir: Path) -> list[str]:
    """Every file and directory under incoming/ and clips/, relative to the data directory."""
    out: list[str] = []
    for top in ("incoming", "clips"):
        base = data_dir / top
        if base.is_dir():
            out.extend(p.relative_to(data_dir).as_posix() for p in sorted(base.rglob("*")))
    return out


def clip_file(data_dir: Path, clip: Clip) -> Path:
    return data_dir / "clips" / SITE / DEVICE / f"{clip.id}.wav"


def chunks(clip: Clip, *seqs: int) -> list[tuple[str, bytes]]:
    return [(topic("clip"), clip.frame(seq)) for seq in seqs]


def test_one_file_per_clip_written_at_the_offsets(ingest: Ingest, data_dir: Path) -> None:
    clip = Clip(os.urandom(4500), chunk_size=1000)
    results = ingest.handle_batch(chunks(clip, 3, 1, 3))  # out of order, a duplicate
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.STORED, Outcome.DUPLICATE]
    partial = ingest.store.partial_path(SITE, DEVICE, clip.id, clip.sha256)
    rel = partial.relative_to(data_dir).as_posix()
    assert files(data_dir) == ["incoming/site-1", "incoming/site-1/cp-0001", rel]  # no dir per clip
    data = partial.read_bytes()
    assert len(data) == len(clip.data)  # the whole clip's size at once (sparse)
    assert data[1000:2000] == clip.chunk(1)
    assert data[3000:4000] == clip.chunk(3)
    assert data[:1000] == bytes(1000)  # not here yet
    assert bits(ingest, clip) == {1, 3}
    assert row(ingest, clip)["received_count"] == 2

    results = ingest.handle_batch(chunks(clip, 4, 0, 1, 2))
    outcomes = [r.outcome for r in results]
    assert outcomes == [Outcome.STORED, Outcome.STORED, Outcome.DUPLICATE, Outcome.STORED]
    assert [r.ready for r in results] == [None, None, None, ClipKey(SITE, DEVICE, clip.id)]
    assert not clip_file(data_dir, clip).exists()  # not before it is verified
    assert ingest.assemble(ClipKey(SITE, DEVICE, clip.id))
    assert clip_file(data_dir, clip).read_bytes() == clip.data
    assert not partial.exists()  # moved into place, not copied
    assert bool(row(ingest, clip)["complete"])


def test_a_duplicate_in_one_batch_is_stored_once_and_announced_ready_once(
    ingest: Ingest,
) -> None:
    clip = Clip(os.urandom(2000), chunk_size=1000)
    results = ingest.handle_batch(chunks(clip, 0, 1, 1, 0))
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.STORED] + [
        Outcome.DUPLICATE
    ] * 2
    assert [r.ready is not None for r in results] == [False, True, False, False]


def test_a_corrupt_chunk_sets_no_bit_and_writes_nothing(
    ingest: Ingest, data_dir: Path, clock: FakeClock
) -> None:
    clip = Clip(os.urandom(3000), chunk_size=1000)
    results = ingest.handle_batch(
        [*chunks(clip, 0), (topic("clip"), clip.frame(1, corrupt=True)), *chunks(clip, 2)]
    )
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.DEAD_LETTER, Outcome.STORED]
    assert bits(ingest, clip) == {0, 2}
    partial = ingest.store.partial_path(SITE, DEVICE, clip.id, clip.sha256)
    assert partial.read_bytes()[1000:2000] == bytes(1000)
    clock.advance(61)
    (request,) = ingest.check_clips(60 * NS)
    assert request.ranges == ((1, 1),)
    (result,) = ingest.handle_batch(chunks(clip, 1))  # the resend
    assert result.ready is not None
    assert ingest.assemble(result.ready)
    assert clip_file(data_dir, clip).read_bytes() == clip.data


def test_a_clip_that_does_not_verify_is_asked_for_again_and_the_resend_completes_it(
    ingest: Ingest, data_dir: Path, clock: FakeClock
) -> None:
    """Every chunk is right by its own sha256, but one was written over on disk (a bad
    sector, a stray write): the whole clip does not verify, is never marked complete, every
    chunk is asked for again, and the resent chunks complete it."""
    clip = Clip(os.urandom(3000), chunk_size=1000)
    (*_, last) = ingest.handle_batch(chunks(clip, 0, 1, 2))
    assert last.ready is not None
    partial = ingest.store.partial_path(SITE, DEVICE, clip.id, clip.sha256)
    with partial.open("r+b") as f:
        f.seek(1500)
        f.write(b"\xff" * 10)
    assert not ingest.assemble(last.ready)
    assert not clip_file(data_dir, clip).exists()
    assert not bool(row(ingest, clip)["complete"])
    assert bits(ingest, clip) == set()
    assert ingest.counters.snapshot()["clip_corrupt"] == 1
    clock.advance(61)
    (request,) = ingest.check_clips(60 * NS)
    assert request.ranges == ((0, 2),)
    results = ingest.handle_batch(chunks(clip, 2, 0, 1))
    assert [r.outcome for r in results] == [Outcome.STORED] * 3
    assert results[-1].ready is not None
    assert ingest.assemble(results[-1].ready)
    assert clip_file(data_dir, clip).read_bytes() == clip.data


def test_a_crash_between_the_write_and_the_commit_records_nothing(
    ingest: Ingest, data_dir: Path, clock: FakeClock
) -> None:
    """The bytes are in the partial file, the batch never commits: no bit, so the chunk is
    delivered again (or asked for) and written again, and the clip is never complete early."""
    clip = Clip(os.urandom(3000), chunk_size=1000)
    ingest.handle_batch(chunks(clip, 0))

    def crash(_topic: str) -> None:
        raise OperationalError("the database went away")  # the batch is rolled back

    ingest.before_commit = crash
    with pytest.raises(OperationalError):
        ingest.handle_batch(chunks(clip, 1, 2))
    ingest.before_commit = None
    partial = ingest.store.partial_path(SITE, DEVICE, clip.id, clip.sha256)
    assert partial.read_bytes()[:2000] == clip.data[:2000]  # chunk 1 written ...
    assert bits(ingest, clip) == {0}  # ... but not recorded
    assert ingest.check_clips(10**18) == []  # nothing to assemble: not complete
    assert not clip_file(data_dir, clip).exists()
    clock.advance(61)
    (request,) = ingest.check_clips(60 * NS)
    assert request.ranges == ((1, 2),)
    results = ingest.handle_batch(chunks(clip, 1, 2))  # the broker delivers them again
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.STORED]
    assert results[-1].ready is not None
    assert ingest.assemble(results[-1].ready)
    assert clip_file(data_dir, clip).read_bytes() == clip.data


def test_bits_without_their_bytes_are_never_a_complete_clip(
    ingest: Ingest, data_dir: Path, clock: FakeClock
) -> None:
    """Every bit set but the partial file gone (a disk that lost it): no clip is marked
    complete; the bits are cleared and every chunk is asked for again."""
    clip = Clip(os.urandom(2000), chunk_size=1000)
    (_, last) = ingest.handle_batch(chunks(clip, 0, 1))
    assert last.ready is not None
    ingest.store.partial_path(SITE, DEVICE, clip.id, clip.sha256).unlink()
    assert not ingest.assemble(last.ready)
    assert not bool(row(ingest, clip)["complete"])
    assert bits(ingest, clip) == set()
    clock.advance(61)
    (request,) = ingest.check_clips(60 * NS)
    assert request.ranges == ((0, 1),)


def test_a_crash_after_the_move_before_the_mark_completes_on_the_next_check(
    ingest: Ingest, data_dir: Path
) -> None:
    clip = Clip(os.urandom(2000), chunk_size=1000)
    ingest.handle_batch(chunks(clip, 0, 1))
    verified = ingest.store.verify(SITE, DEVICE, clip.id, size=2000, sha256=clip.sha256)
    ingest.store.finish(verified, f"clips/{SITE}/{DEVICE}/{clip.id}.wav")  # then "killed"
    assert not bool(row(ingest, clip)["complete"])
    assert ingest.check_clips(10**18) == []  # the periodic check assembles it
    assert bool(row(ingest, clip)["complete"])
    assert clip_file(data_dir, clip).read_bytes() == clip.data


def test_chunks_of_one_clip_on_two_workers(ingest: Ingest, other: Ingest, data_dir: Path) -> None:
    """A shared subscription hands the chunks of one clip to different workers: the bitmap
    and the partial file are shared, each worker's cache is only a cache."""
    clip = Clip(os.urandom(5000), chunk_size=1000)
    ingest.handle_batch(chunks(clip, 0, 2))
    other.handle_batch(chunks(clip, 1, 2))  # 2 again: a redelivery to the other worker
    assert bits(ingest, clip) == {0, 1, 2}
    ingest.handle_batch(chunks(clip, 3))
    (last,) = other.handle_batch(chunks(clip, 4))
    assert last.ready is not None  # the worker that recorded the last bit sees it
    assert other.assemble(last.ready)
    # the first worker still has the clip cached as incomplete: a late duplicate there is
    # a duplicate (with the clip's receipt), and leaves no partial file behind
    (late,) = ingest.handle_batch(chunks(clip, 1))
    assert late.outcome is Outcome.DUPLICATE
    assert late.receipt == Confirm(SITE, DEVICE, clip_id=clip.id)
    assert clip_file(data_dir, clip).read_bytes() == clip.data
    assert [f for f in files(data_dir) if f.endswith(".part")] == []


def test_a_clip_reset_by_another_worker_is_not_taken_from_a_stale_cache(
    ingest: Ingest, other: Ingest, data_dir: Path
) -> None:
    """Worker A caches a clip as its first chunk header described it; the contact, on worker
    B, announces another clip under that id. A's next chunk of the old clip is refused, and
    the genuine clip completes from chunks on both workers."""
    genuine = Clip(os.urandom(3000), chunk_size=1000)
    liar = Clip(os.urandom(3000), chunk_size=1000, clip_id=genuine.id)
    ingest.handle_batch(chunks(liar, 0))
    other.handle(topic("contact"), encode(contact_message(clip=genuine)))
    (stale,) = ingest.handle_batch(chunks(liar, 1))
    assert stale.outcome is Outcome.DEAD_LETTER
    assert bits(ingest, genuine) == set()
    ingest.handle_batch(chunks(genuine, 0, 1))
    (last,) = other.handle_batch(chunks(genuine, 2))
    assert last.ready is not None
    assert other.assemble(last.ready)
    assert clip_file(data_dir, genuine).read_bytes() == genuine.data
    assert [f for f in files(data_dir) if f.endswith(".part")] == []


def test_a_cached_chunk_costs_no_query_of_its_own(ingest: Ingest, db: Database) -> None:
    """Once its clip is open, a batch of chunks costs a fixed number of statements (device
    row, then the clip row locked and written once), not some per chunk."""
    clip = Clip(os.urandom(40_000), chunk_size=1000)
    ingest.handle_batch(chunks(clip, 0))  # opens the clip (its row read, cached)
    statements: list[str] = []
    real: Any = db.execute_sql

    def counting(sql: str, params: Any = None) -> Any:
        if not sql.startswith(("SAVEPOINT", "RELEASE")):  # one savepoint per message
            statements.append(sql)
        return real(sql, params)

    db.execute_sql = counting  # type: ignore[method-assign]
    try:
        ingest.handle_batch(chunks(clip, *range(1, 40)))
    finally:
        db.execute_sql = real  # type: ignore[method-assign]
    assert len(statements) <= 4, statements
    assert row(ingest, clip)["received_count"] == 40


@pytest.mark.parametrize(
    ("present", "total", "gaps"),
    [
        (set(), 1, [(0, 0)]),
        (set(), 20, [(0, 19)]),
        ({0}, 1, []),
        (set(range(20)), 20, []),
        ({1, 3}, 5, [(0, 0), (2, 2), (4, 4)]),
        ({0, 1, 2, 3, 4, 5, 6, 7, 16}, 20, [(8, 15), (17, 19)]),
        (set(range(8, 24)), 30, [(0, 7), (24, 29)]),
        (set(range(7)), 9, [(7, 8)]),
    ],
)
def test_missing_ranges_are_read_off_the_bitmap(
    present: set[int], total: int, gaps: list[tuple[int, int]]
) -> None:
    bitmap = bytearray((total + 7) // 8)
    for seq in present:
        bitmap[seq // 8] |= 1 << (seq % 8)
    assert list(_gaps(bytes(bitmap), total)) == gaps
    assert list(_gaps(None, total)) == [(0, total - 1)]


def test_a_clip_of_the_most_chunks_keeps_a_small_bitmap(ingest: Ingest) -> None:
    """2**16 chunks (the default limit) of 1 byte: the bitmap is 8 KiB, the gaps are
    ranges."""
    data = os.urandom(2**16)
    sha = hashlib.sha256(data).hexdigest()

    def frame(seq: int) -> tuple[str, bytes]:
        raw = chunk_frame(
            clip_id=clip_id, seq=seq, total=2**16, offset=seq, data=data[seq : seq + 1],
            clip_sha256=sha, clip_bytes=2**16,
        )  # fmt: skip
        return topic("clip"), raw

    clip_id = "ab" * 16
    ingest.handle_batch([frame(seq) for seq in (0, 1, 5, 2**16 - 1)])
    c = ingest.t.clips
    received = c.select(c.received).where(c.clip_id == clip_id).scalar()
    assert len(bytes(received)) == 2**13
    assert list(_gaps(bytes(received), 2**16)) == [(2, 4), (6, 2**16 - 2)]
