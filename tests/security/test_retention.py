"""Audio retention on the device and in the sink: old clip files deleted for real, rows marked,
contacts and metadata kept, undelivered clips kept unless configured, idempotent."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cloud_sink import Sink, SinkConfig
from cloud_sink.db import open_database
from cloud_sink.ingest import Ingest, Outcome
from cloud_sink.migrations import migrate as migrate_sink
from cloud_sink.retention import enforce as sink_enforce
from edge.clock import NS, FakeClock
from edge.config import RetentionSection
from edge.publish import wire
from edge.records import ClipInfo, ContactRecord
from edge.retention import AudioFile, due, enforce, periodic
from edge.store import Delivered, Store
from provisioning.broker import LocalBroker
from provisioning.main import main
from tests.cloud_sink.helpers import Clip, contact_message, encode, wait_until
from tests.cloud_sink.helpers import FakeClock as SinkClock
from tests.wire_samples import CLIP, CONTACT, DEVICE, SITE

DAY = 86_400 * NS
NOW = 1_800_000_000 * NS


def cfg(**kw: object) -> RetentionSection:
    return RetentionSection.from_dict({"audio_days": 30, **kw})


# --- the device ---------------------------------------------------------------------------------


def test_due_is_a_pure_choice() -> None:
    files = [
        AudioFile("old-sent", "clips/a.wav", NOW - 31 * DAY, True),
        AudioFile("old-unsent", "clips/b.wav", NOW - 40 * DAY, False),
        AudioFile("edge", "clips/c.wav", NOW - 30 * DAY, True),
        AudioFile("young", "clips/d.wav", NOW - 29 * DAY, True),
    ]
    chosen, kept = due(files, NOW, cfg())
    assert [f.contact_id for f in chosen] == ["old-sent", "edge"]
    assert kept == 1
    chosen, kept = due(files, NOW, cfg(delete_undelivered=True))
    assert [f.contact_id for f in chosen] == ["old-sent", "old-unsent", "edge"]
    assert kept == 0
    assert due(files, NOW, RetentionSection()) == ([], 0)  # unset: keep


class Device:
    def __init__(self, root: Path) -> None:
        self.data = root / "device"
        self.store = Store.open(self.data / "contactpoint.db")

    def contact(
        self,
        n: int,
        age_days: float,
        *,
        delivered: bool,
        acked: bool = False,
        rel: str = "",
        now: int = NOW,
    ) -> ContactRecord:
        """``acked``: the broker acknowledged its rows; ``delivered``: the sink confirmed them."""
        contact_id = f"c{n:031d}"
        rel = rel or f"clips/{contact_id}.wav"
        path = self.data / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = bytes([n]) * 1000
        path.write_bytes(audio)
        clip = replace(
            CLIP, contact_id=contact_id, path=rel, sha256=hashlib.sha256(audio).hexdigest(),
            bytes=len(audio),
        )  # fmt: skip
        end = now - round(age_days * DAY)
        rec = replace(
            CONTACT, id=contact_id, events=(), clip=clip, start_wall_ns=end - 60 * NS,
            end_wall_ns=end,
        )  # fmt: skip
        messages = [wire.contact_message(rec, DEVICE, SITE), wire.clip_message(clip, DEVICE, SITE)]
        assert self.store.save_contact(rec, messages)
        seqs = [r.seq for r in self.store.outbox.pending(1000) if r.ref == contact_id]
        if acked or delivered:
            self.store.outbox.mark_sent(seqs, NOW)
        if delivered:
            self.store.outbox.mark_delivered(Delivered(seqs=tuple(seqs)), NOW)
        return rec

    def clip_path(self, rec: ContactRecord) -> Path:
        assert rec.clip is not None
        return self.data / rec.clip.path

    def clips(self) -> dict[str, ClipInfo | None]:
        return {c.id: c.clip for c in self.store.contacts()}


@pytest.fixture
def device(tmp_path: Path) -> Iterator[Device]:
    d = Device(tmp_path)
    yield d
    d.store.close()


def test_the_device_deletes_old_delivered_audio_and_keeps_the_rest(device: Device) -> None:
    old = device.contact(1, 31, delivered=True)
    # acknowledged by the broker, not confirmed by the sink: not delivered, kept
    undelivered = device.contact(2, 45, delivered=False, acked=True)
    young = device.contact(3, 2, delivered=True)
    before = device.clips()

    result = enforce(device.store, device.data, cfg(), NOW)
    assert (result.deleted, result.already_gone, result.kept_undelivered) == (1, 0, 1)
    assert not device.clip_path(old).exists()
    assert device.clip_path(undelivered).exists()
    assert device.clip_path(young).exists()
    assert device.clips() == before  # contacts, tags, clip metadata: all kept
    on_disk = {row[0] for row in device.store.audio_on_disk()}
    assert on_disk == {undelivered.id, young.id}  # the old one's row is marked

    again = enforce(device.store, device.data, cfg(), NOW)  # idempotent
    assert (again.marked, again.kept_undelivered) == (0, 1)

    forced = enforce(device.store, device.data, cfg(delete_undelivered=True), NOW)
    assert forced.deleted == 1
    assert not device.clip_path(undelivered).exists()
    assert device.clip_path(young).exists()
    assert device.store.outbox.undelivered() == 2  # the undelivered contact still waits


def test_a_file_gone_before_its_row_was_marked_is_marked_next_time(device: Device) -> None:
    rec = device.contact(1, 31, delivered=True)
    device.clip_path(rec).unlink()  # a crash after the unlink, or the disk budget
    result = enforce(device.store, device.data, cfg(), NOW)
    assert (result.deleted, result.already_gone) == (0, 1)
    assert device.store.audio_on_disk() == []


def test_retention_never_deletes_outside_the_data_directory(device: Device, tmp_path: Path) -> None:
    outside = tmp_path / "precious.wav"
    rec = device.contact(1, 31, delivered=True, rel="../precious.wav")
    assert device.clip_path(rec).resolve() == outside.resolve()
    result = enforce(device.store, device.data, cfg(), NOW)
    assert result.deleted == 0
    assert len(result.errors) == 1
    assert outside.exists()


def test_the_daemon_hook_waits_for_a_synchronised_clock(device: Device) -> None:
    rec = device.contact(1, 31, delivered=True)
    clock = FakeClock(NOW, synced=False)
    every = cfg(interval_s=60)
    nxt = periodic(device.store, device.data, every, clock, 0)
    assert nxt == 60 * NS
    assert device.clip_path(rec).exists()
    clock.synced = True
    clock.advance_to(30 * NS)
    assert periodic(device.store, device.data, every, clock, nxt) == nxt  # not due yet
    clock.advance_to(60 * NS)
    assert periodic(device.store, device.data, every, clock, nxt) == 120 * NS
    assert not device.clip_path(rec).exists()


def test_retention_run_command(
    tmp_path: Path, device: Device, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time_ns()
    old = device.contact(1, 40, delivered=True, now=now)
    young = device.contact(2, 1, delivered=True, now=now)
    data = str(device.data)
    assert main(["retention", "run", "--data", data]) == 2
    assert "no retention configured" in capsys.readouterr().err
    config = tmp_path / "device.toml"
    config.write_text("[retention]\naudio_days = 30\n")
    assert main(["retention", "run", "--data", data, "--config", str(config)]) == 0
    assert "1 clip file(s) deleted" in capsys.readouterr().out
    assert not device.clip_path(old).exists()
    assert device.clip_path(young).exists()
    assert main(["retention", "run", "--data", data, "--days", "0"]) == 0
    assert not device.clip_path(young).exists()


# --- the sink -----------------------------------------------------------------------------------

TOPIC = f"contactpoint/v1/{SITE}/{DEVICE}"


@pytest.fixture(params=["sqlite", "postgresql"])
def sink_db(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_the_sink_deletes_old_audio_drops_stale_chunks_and_keeps_contacts(
    tmp_path: Path, sink_db: str | None
) -> None:
    data = tmp_path / "sink"
    db = open_database(sink_db, data)
    try:
        migrate_sink(db)
        clock = SinkClock()
        ingest = Ingest(db, data, clock=clock)
        done = Clip(bytes(range(256)) * 20, 2048, clip_id="ab" * 16)
        stale = Clip(bytes(range(256)) * 20, 2048, clip_id="cd" * 16)
        assert ingest.handle(f"{TOPIC}/contact", encode(contact_message(clip=done))).outcome == (
            Outcome.STORED
        )
        for seq in range(done.total):
            result = ingest.handle(f"{TOPIC}/clip", done.frame(seq))
        assert result.ready is not None
        assert ingest.assemble(result.ready)
        ingest.handle(f"{TOPIC}/clip", stale.frame(0))  # one chunk of three, never the rest
        (audio,) = [c["audio"] for c in ingest.contacts()]
        assert audio is not None
        assert Path(audio).is_file()
        partial = ingest.store.partial_path(SITE, DEVICE, stale.id, stale.sha256)
        assert partial.is_file()

        # the golden contact ended on 2026-11-23; the stale chunk came at the clock's start
        now = clock() + 31 * DAY
        kept = sink_enforce(db, data, 60, now)
        assert kept.marked == 0
        assert Path(audio).is_file()
        result1 = sink_enforce(db, data, 30, now)
        assert (result1.deleted, result1.dropped_incomplete, result1.errors) == (1, 1, [])
        assert not Path(audio).exists()
        assert not partial.exists()
        (listed,) = ingest.contacts()
        assert listed["id"] == done.id
        assert listed["audio"] is None
        assert listed["clip"] is not None  # and its clip's metadata
        assert sink_enforce(db, data, 30, now).marked == 0  # idempotent
        # a late chunk of the dropped clip is not kept, and no resend is asked for it
        assert ingest.handle(f"{TOPIC}/clip", stale.frame(1)).outcome == Outcome.DUPLICATE
        assert not partial.exists()
        assert ingest.check_clips(0) == []
        rows = {r["clip_id"]: r["audio_deleted_at"] for r in ingest.t.clips.select().dicts()}
        assert rows == {done.id: now, stale.id: now}
    finally:
        db.close()


def test_sink_retention_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "sink"
    db = open_database(None, data)
    try:
        migrate_sink(db)
        ingest = Ingest(db, data, clock=SinkClock())
        clip = Clip(b"x" * 5000, 2048, clip_id="ef" * 16)
        old = contact_message(clip=clip)
        old["contact"]["start"], old["contact"]["end"] = (
            "2020-01-01T09:00:00Z",
            "2020-01-01T09:01:00Z",
        )
        ingest.handle(f"{TOPIC}/contact", encode(old))
        for seq in range(clip.total):
            result = ingest.handle(f"{TOPIC}/clip", clip.frame(seq))
        assert result.ready is not None
        assert ingest.assemble(result.ready)
    finally:
        db.close()
    files = list((data / "clips").rglob("*.wav"))
    assert len(files) == 1
    argv = ["sink", "retention", "--data", str(data)]
    assert main(argv) == 2
    assert "no retention configured" in capsys.readouterr().err
    config = tmp_path / "sink.toml"
    config.write_text("[sink]\nbroker = 'mqtt://h:1'\nretention_audio_days = 36500\n")
    assert main([*argv, "--config", str(config)]) == 0  # a century: nothing is that old
    assert files[0].exists()
    assert main([*argv, "--days", "1"]) == 0  # the contact is from 2020
    assert "1 clip file(s) deleted" in capsys.readouterr().out
    assert not files[0].exists()


def test_the_sink_worker_enforces_retention_on_its_own(tmp_path: Path, broker: LocalBroker) -> None:
    data = tmp_path / "sink"
    db = open_database(None, data)
    try:
        migrate_sink(db)
        ingest = Ingest(db, data, clock=SinkClock())
        clip = Clip(b"y" * 3000, 2048, clip_id="12" * 16)
        ingest.handle(f"{TOPIC}/contact", encode(contact_message(clip=clip)))
        for seq in range(clip.total):
            result = ingest.handle(f"{TOPIC}/clip", clip.frame(seq))
        assert result.ready is not None
        assert ingest.assemble(result.ready)
    finally:
        db.close()
    (path,) = (data / "clips").rglob("*.wav")
    clock = SinkClock()
    clock.advance(40 * 86_400)  # 40 days after the golden contact
    config = SinkConfig(broker=broker.url, data_dir=data, retention_audio_days=30)
    with Sink(config, clock=clock) as sink:
        wait_until(lambda: sink.stats().get("retention_deleted") == 1, "the worker's retention")
        assert not path.exists()
