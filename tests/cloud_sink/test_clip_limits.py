"""What a sender can claim about a clip is bounded (issue #10, item 5), on SQLite and PostgreSQL:
clip size and chunk count against the sink's limits, resend requests as ranges within a packet
budget, a clip's identity fixed by its contact, incomplete clips expiring, the check in steps."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from peewee import Database

from cloud_sink import Sink, SinkConfig, wire
from cloud_sink.cli import read_config_file
from cloud_sink.db import open_database
from cloud_sink.ingest import Ingest, Limits, Outcome
from cloud_sink.migrations import migrate
from provisioning.broker import LocalBroker
from tests.cloud_sink.helpers import (
    DEVICE,
    NS,
    SITE,
    Clip,
    FakeClock,
    TestClient,
    chunk_frame,
    contact_message,
    encode,
    event_message,
    new_id,
    topic,
    wait_until,
)

GIB = 1024**3


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(db_url: str | None, data_dir: Path) -> Iterator[Database]:
    database = open_database(db_url, data_dir)
    migrate(database)
    yield database
    database.close()


def make_ingest(db: Database, data_dir: Path, clock: FakeClock, **limits: int | None) -> Ingest:
    return Ingest(db, data_dir, clock=clock, limits=Limits(**limits))  # type: ignore[arg-type]


def claim(clip_id: str, seq: int, *, total: int, clip_bytes: int, sha: str = "0" * 64) -> bytes:
    """A one-byte chunk frame claiming a clip of ``clip_bytes`` in ``total`` chunks."""
    return chunk_frame(
        clip_id=clip_id, seq=seq, total=total, offset=seq, data=b"x", clip_sha256=sha,
        clip_bytes=clip_bytes,
    )  # fmt: skip


def reasons(ingest: Ingest) -> list[str]:
    return [d["reason"] for d in ingest.dead_letters()]


def test_five_tiny_chunks_claiming_a_million_chunks_of_a_gib_are_refused(
    db: Database, data_dir: Path, clock: FakeClock
) -> None:
    ingest = make_ingest(db, data_dir, clock)  # the default limits
    for n in range(5):  # at the wire's own limits: 2**20 chunks, 1 GiB
        frame = claim(new_id(), n, total=wire.MAX_CHUNKS, clip_bytes=wire.MAX_CLIP_BYTES)
        assert isinstance(wire.parse(topic("clip"), frame), wire.Chunk)
        assert ingest.handle(topic("clip"), frame).outcome is Outcome.DEAD_LETTER
    assert reasons(ingest) == ["too_large"] * 5
    detail = ingest.dead_letters()[0]["detail"]
    assert "max_clip_bytes" in detail
    assert str(wire.MAX_CHUNKS) in detail
    assert ingest.t.clips.select().count() == 0
    clock.advance(3600)
    assert ingest.check_clips(0) == []


def test_a_clip_claiming_the_most_chunks_costs_one_small_request_and_little_memory(
    db: Database, data_dir: Path, clock: FakeClock
) -> None:
    """A sink configured to the wire's limits, five clips each claiming 2**20 chunks with one
    chunk present: each request is two ranges, and the check holds no list of missing seqs."""
    ingest = make_ingest(db, data_dir, clock, max_clip_bytes=GIB, max_chunks=wire.MAX_CHUNKS)
    ids = sorted(new_id() for _ in range(5))
    for clip_id in ids:
        frame = claim(clip_id, 1000, total=wire.MAX_CHUNKS, clip_bytes=GIB)
        assert ingest.handle(topic("clip"), frame).outcome is Outcome.STORED
    tracemalloc.start()
    try:
        requests = ingest.check_clips(0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.clip.clip_id for r in requests] == ids
    for request in requests:
        assert request.ranges == ((0, 999), (1001, wire.MAX_CHUNKS - 1))
        body = json.loads(request.payload)
        assert body == {"clip_id": request.clip.clip_id, "ranges": [[0, 999], [1001, 2**20 - 1]]}
    assert peak < 2 * 1024 * 1024, f"the check held {peak} bytes"
    # nor much disk: the partial files are the claimed size but sparse, holding one byte each
    # (preallocated, these five one-byte chunks took 5 GiB)
    parts = list((data_dir / "incoming").rglob("*.part"))
    assert len(parts) == 5
    assert all(part.stat().st_size == GIB for part in parts)
    used = sum(part.stat().st_blocks * 512 for part in parts)
    assert used <= 5 * 1024 * 1024, f"five one-byte chunks take {used} bytes of disk"


def test_many_gaps_are_asked_for_in_requests_that_fit() -> None:
    consumed = 0

    def every_other(n: int) -> Iterator[tuple[int, int]]:
        nonlocal consumed
        for k in range(n):
            consumed += 1
            yield 2 * k, 2 * k

    ranges = wire.fit_ranges(every_other(wire.MAX_CHUNKS // 2))
    payload = wire.resend_payload("ab" * 16, ranges)
    assert len(payload) <= wire.MAX_RESEND_BYTES
    assert len(payload) > wire.MAX_RESEND_BYTES // 2  # not needlessly small either
    assert ranges == [(2 * k, 2 * k) for k in range(len(ranges))]  # the first ones, in order
    assert consumed <= len(ranges) + 1  # the rest was never even generated


def test_a_clip_s_size_and_hash_are_the_ones_its_contact_announced(
    db: Database, data_dir: Path, clock: FakeClock
) -> None:
    ingest = make_ingest(db, data_dir, clock)
    clip = Clip(os.urandom(3000), chunk_size=1000)
    ingest.handle(topic("contact"), encode(contact_message(clip=clip)))
    liars = [
        claim(clip.id, 0, total=3, clip_bytes=3000),  # another sha256
        claim(clip.id, 1, total=30_000, clip_bytes=30_000_000, sha=clip.sha256),  # bigger
    ]
    for frame in liars:
        assert ingest.handle(topic("clip"), frame).outcome is Outcome.DEAD_LETTER
    assert reasons(ingest) == ["clip_mismatch", "clip_mismatch"]
    assert "its contact announced 3000 bytes" in ingest.dead_letters()[0]["detail"]
    assert ingest.t.clips.select().count() == 0  # a lie does not even make the row
    results = [ingest.handle(topic("clip"), clip.frame(seq)) for seq in range(3)]
    ready = results[-1].ready
    assert ready is not None
    assert ingest.assemble(ready)
    assert ingest.verified_clip_count() == 1


def test_a_lying_first_chunk_does_not_pin_the_clip(
    db: Database, data_dir: Path, clock: FakeClock
) -> None:
    """A chunk header that arrives before the contact and lies about the clip makes the row;
    the contact resets it, and the genuine clip is asked for and completes."""
    ingest = make_ingest(db, data_dir, clock)
    clip = Clip(os.urandom(3000), chunk_size=1000)
    other = Clip(os.urandom(3000), chunk_size=1000, clip_id=clip.id)
    assert ingest.handle(topic("clip"), other.frame(0)).outcome is Outcome.STORED
    genuine = ingest.handle(topic("clip"), clip.frame(1))  # disagrees with the row: refused
    assert genuine.outcome is Outcome.DEAD_LETTER
    lying = ingest.store.partial_path(SITE, DEVICE, clip.id, other.sha256)
    assert lying.exists()

    ingest.handle(topic("contact"), encode(contact_message(clip=clip)))
    assert reasons(ingest) == ["clip_mismatch", "clip_mismatch"]
    assert "1 chunk(s) dropped" in ingest.dead_letters()[-1]["detail"]
    assert not lying.exists()
    clock.advance(61)
    (request,) = ingest.check_clips(60 * NS)
    assert request.ranges == ((0, 2),)  # everything, again
    results = [ingest.handle(topic("clip"), clip.frame(seq)) for seq in range(3)]
    ready = results[-1].ready
    assert ready is not None
    assert ingest.assemble(ready)
    (listed,) = ingest.contacts()
    assert hashlib.sha256(Path(listed["audio"]).read_bytes()).hexdigest() == clip.sha256


def test_an_incomplete_clip_expires_into_a_dead_letter(
    db: Database, data_dir: Path, clock: FakeClock
) -> None:
    ingest = make_ingest(db, data_dir, clock, clip_expire_after_ns=3600 * NS)
    clip = Clip(os.urandom(3000), chunk_size=1000)
    ingest.handle(topic("clip"), clip.frame(0))
    partial = ingest.store.partial_path(SITE, DEVICE, clip.id, clip.sha256)
    assert partial.is_file()
    clock.advance(3599)
    assert [r.ranges for r in ingest.check_clips(60 * NS)] == [((1, 2),)]
    assert reasons(ingest) == []
    clock.advance(1)
    assert ingest.check_clips(60 * NS) == []
    assert reasons(ingest) == ["clip_expired"]
    detail = ingest.dead_letters()[0]["detail"]
    assert "1 of 3 chunks after 3600 s" in detail
    assert "clip_expire_after_s" in detail
    assert ingest.t.clips.select().count() == 0
    assert not partial.exists()
    # the device may still send it: a chunk that comes later starts it afresh
    assert ingest.handle(topic("clip"), clip.frame(1)).outcome is Outcome.STORED
    assert ingest.t.clips.select().count() == 1


def test_the_check_goes_through_incomplete_clips_in_steps(
    db: Database, data_dir: Path, clock: FakeClock
) -> None:
    ingest = make_ingest(db, data_dir, clock)
    clips = sorted((Clip(os.urandom(2000), chunk_size=1000) for _ in range(5)), key=lambda c: c.id)
    for clip in clips:
        ingest.handle(topic("clip"), clip.frame(0))
    clock.advance(61)
    seen: list[str] = []
    after: tuple[str, str] | None = None
    steps = 0
    while True:
        requests, after = ingest.check_clips_step(60 * NS, after=after, limit=2)
        steps += 1
        assert len(requests) <= 2
        seen += [r.clip.clip_id for r in requests]
        if after is None:
            break
    assert steps == 3
    assert seen == [c.id for c in clips]
    assert ingest.check_clips(60 * NS) == []  # each was asked just now


def test_limits_are_sink_settings(tmp_path: Path) -> None:
    base = {"broker": "mqtt://127.0.0.1:1", "data_dir": tmp_path}
    limits = SinkConfig(**base, max_chunks=4096, clip_expire_after_s=60).limits()  # type: ignore[arg-type]
    assert (limits.max_chunks, limits.clip_expire_after_ns) == (4096, 60 * NS)
    assert SinkConfig(**base, clip_expire_after_s=None).limits().clip_expire_after_ns is None  # type: ignore[arg-type]
    for bad, says in [
        ({"max_chunks": 0}, "max_chunks"),
        ({"max_clip_bytes": wire.MAX_CLIP_BYTES + 1}, "the wire allows"),
        ({"clip_expire_after_s": 0}, "clip_expire_after_s"),
        ({"max_ingest_attempts": 0}, "max_ingest_attempts"),
    ]:
        with pytest.raises(ValueError, match=says):
            SinkConfig(**base, **bad).limits()  # type: ignore[arg-type]
    config = tmp_path / "sink.toml"
    config.write_text("[sink]\nmax_clip_bytes = 33554432\nmax_chunks = 32768\n")
    assert read_config_file(config) == {"max_clip_bytes": 33554432, "max_chunks": 32768}


def test_through_the_broker_claims_are_refused_and_requests_are_small(
    broker: LocalBroker, data_dir: Path, db_url: str | None, clock: FakeClock
) -> None:
    config = SinkConfig(
        broker=broker.url, data_dir=data_dir, db_url=db_url, backoff_min_s=0.05,
        backoff_max_s=0.2, check_every_s=1.0, resend_after_s=5.0,
    )  # fmt: skip
    client = TestClient(broker.port)
    try:
        client.subscribe("contactpoint/v1/+/+/cmd/resend")  # not cmd/delivered: may come first
        with Sink(config, clock=clock) as sink:
            assert sink.subscribed.wait(10)
            for n in range(5):
                frame = claim(new_id(), n, total=wire.MAX_CHUNKS, clip_bytes=wire.MAX_CLIP_BYTES)
                client.publish(topic("clip"), frame)
            clip = Clip(os.urandom(64 * 1024), chunk_size=1024)  # 64 chunks, only one sent
            client.publish(topic("contact"), encode(contact_message(clip=clip)))
            client.publish(topic("clip"), clip.frame(7))
            good = event_message()
            client.publish(topic("event"), encode(good))
            wait_until(lambda: sink.stats().get("stored", 0) == 3, "contact, chunk and event")
            clock.advance(6)
            where, payload = client.next_message()
            assert where == topic("cmd/resend")
            assert len(payload) <= wire.MAX_RESEND_BYTES
            body = json.loads(payload)
            assert body["ranges"] == [[0, 6], [8, 63]]
            assert body["seqs"] == [s for s in range(64) if s != 7]
            with sink.db.connection_context():
                dead = [d["reason"] for d in sink.ingest.dead_letters()]
            assert dead == ["too_large"] * 5
    finally:
        client.close()
