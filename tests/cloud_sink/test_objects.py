"""Clips in object storage (cloud_sink/objects.py) against a real SeaweedFS S3 gateway on
loopback (tests/services.py), not a mock: upload with the sha256 as metadata, multipart for a
large clip, retention deleting the object, the API serving it, a storage killed mid-upload,
and the whole sink through a real mosquitto on ``--clips s3://...``."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from botocore.exceptions import ClientError
from peewee import Database, OperationalError

from cloud_sink import Sink, SinkConfig
from cloud_sink.api import ApiSettings, accounts, create_app
from cloud_sink.config import S3Section, load_sink_file
from cloud_sink.db import open_database
from cloud_sink.ingest import Ingest
from cloud_sink.migrations import migrate
from cloud_sink.models import tables
from cloud_sink.objects import (
    ClipsTarget,
    ObjectConfigError,
    S3Clips,
    drop_uploaded_copies,
    parse_clips_url,
    upload_pending,
)
from cloud_sink.retention import enforce
from contract.config import ConfigError
from provisioning.broker import LocalBroker, free_port
from tests.cloud_sink.helpers import (
    DEVICE,
    Clip,
    TestClient,
    contact_message,
    encode,
    event_message,
    topic,
    wait_until,
)
from tests.services import SeaweedS3
from tests.waiting import wait_for

CHUNK = 256 * 1024


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS for the module's tests (each writes under a prefix of its own); the test
    that kills its storage has its own (``own_s3_server``)."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_s3_server(tmp_path: Path) -> Iterator[SeaweedS3]:
    server = SeaweedS3(tmp_path / "seaweedfs")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def target() -> ClipsTarget:
    """Where a test's clips go: a prefix of its own in the shared bucket."""
    return ClipsTarget("clips", f"t{uuid.uuid4().hex[:12]}/audio")


@pytest.fixture
def ingest(db_url: str | None, data_dir: Path) -> Iterator[Ingest]:
    db = open_database(db_url, data_dir)
    migrate(db)
    yield Ingest(db, data_dir)
    db.close()


@contextmanager
def api_server(settings: ApiSettings, token: str) -> Iterator[httpx.Client]:
    """The API under a real uvicorn on a free loopback port; a client with ``token``."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "uvicorn to listen")
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)


def verified_clip(ingest: Ingest, size: int) -> Clip:
    """A clip of ``size`` random bytes, ingested and assembled into the data directory."""
    clip = Clip(os.urandom(size), chunk_size=CHUNK)
    ingest.handle(topic("contact"), encode(contact_message(clip=clip)))
    results = ingest.handle_batch([(topic("clip"), clip.frame(i)) for i in range(clip.total)])
    ready = [r.ready for r in results if r.ready is not None]
    assert len(ready) == 1
    assert ingest.assemble(ready[0])
    return clip


def clip_row(db: Database, clip: Clip) -> dict[str, Any]:
    c = tables(db).clips
    row: dict[str, Any] = c.select().where(c.clip_id == clip.id).dicts().get()
    return row


def object_bytes(server: SeaweedS3, key: str) -> bytes:
    body: bytes = server.client().get_object(Bucket=server.bucket, Key=key)["Body"].read()
    return body


def key_of(clip: Clip, prefix: str) -> str:
    return f"{prefix}/site-1/{DEVICE}/{clip.id}.wav"


def test_a_verified_clip_is_uploaded_with_its_sha256_and_leaves_the_data_directory(
    s3_server: SeaweedS3, target: ClipsTarget, ingest: Ingest, data_dir: Path
) -> None:
    clip = verified_clip(ingest, 600_000)
    row = clip_row(ingest.db, clip)
    local = data_dir / row["path"]
    assert local.read_bytes() == clip.data
    assert row["location"] is None

    done = upload_pending(ingest.db, data_dir, S3Clips(s3_server.section()), target)

    assert (done.uploaded, done.failed) == (1, None)
    head = s3_server.client().head_object(Bucket="clips", Key=key_of(clip, target.prefix))
    assert head["Metadata"] == {"sha256": clip.sha256}
    assert head["ContentLength"] == len(clip.data)
    assert object_bytes(s3_server, key_of(clip, target.prefix)) == clip.data
    assert clip_row(ingest.db, clip)["location"] == f"s3://clips/{key_of(clip, target.prefix)}"
    assert not local.exists()
    (contact,) = ingest.contacts()
    assert contact["audio"] == f"s3://clips/{key_of(clip, target.prefix)}"
    # nothing more to do: a second pass uploads nothing
    assert upload_pending(ingest.db, data_dir, S3Clips(s3_server.section()), target).uploaded == 0


def test_a_large_clip_goes_up_in_parts(
    s3_server: SeaweedS3, target: ClipsTarget, ingest: Ingest, data_dir: Path
) -> None:
    clip = verified_clip(ingest, 12 * 1024 * 1024 + 1234)  # 5 MiB parts: 3
    s3 = S3Clips(s3_server.section(multipart_threshold_mb=5, multipart_chunk_mb=5))

    assert upload_pending(ingest.db, data_dir, s3, target).uploaded == 1

    client = s3_server.client()
    head = client.head_object(Bucket="clips", Key=key_of(clip, target.prefix))
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object's ETag counts its parts
    assert (
        client.head_object(Bucket="clips", Key=key_of(clip, target.prefix), PartNumber=1)[
            "PartsCount"
        ]
        == 3
    )
    assert head["Metadata"]["sha256"] == clip.sha256
    assert (
        hashlib.sha256(object_bytes(s3_server, key_of(clip, target.prefix))).hexdigest()
        == clip.sha256
    )


def test_a_small_clip_goes_up_in_one_piece(
    s3_server: SeaweedS3, target: ClipsTarget, ingest: Ingest, data_dir: Path
) -> None:
    clip = verified_clip(ingest, 300_000)
    assert upload_pending(ingest.db, data_dir, S3Clips(s3_server.section()), target).uploaded == 1
    etag = (
        s3_server.client()
        .head_object(Bucket="clips", Key=key_of(clip, target.prefix))["ETag"]
        .strip('"')
    )
    assert etag == hashlib.md5(clip.data, usedforsecurity=False).hexdigest()


def test_retention_deletes_the_object(
    s3_server: SeaweedS3, target: ClipsTarget, ingest: Ingest, data_dir: Path
) -> None:
    s3 = S3Clips(s3_server.section())
    clip = verified_clip(ingest, 300_000)
    assert upload_pending(ingest.db, data_dir, s3, target).uploaded == 1
    client = s3_server.client()
    client.head_object(Bucket="clips", Key=key_of(clip, target.prefix))

    # without the storage's settings the object cannot go: an error, the clip stays unmarked
    kept = enforce(ingest.db, data_dir, 0.0, ingest.clock() + 10**12)
    assert kept.deleted == 0
    assert "object storage" in kept.errors[0]
    assert clip_row(ingest.db, clip)["audio_deleted_at"] is None

    done = enforce(ingest.db, data_dir, 0.0, ingest.clock() + 10**12, s3)

    assert (done.deleted, done.errors) == (1, [])
    with pytest.raises(ClientError) as caught:
        client.head_object(Bucket="clips", Key=key_of(clip, target.prefix))
    assert caught.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    assert clip_row(ingest.db, clip)["audio_deleted_at"] is not None


def test_a_clip_deleted_by_retention_during_its_upload_leaves_no_object(
    s3_server: SeaweedS3, target: ClipsTarget, ingest: Ingest, data_dir: Path, db_url: str | None
) -> None:
    s3 = S3Clips(s3_server.section())
    clip = verified_clip(ingest, 600_000)
    path = data_dir / clip_row(ingest.db, clip)["path"]
    ran: list[int] = []

    def retention_now(sent: int) -> None:  # retention runs while the bytes are on their way
        if not ran:
            other = open_database(db_url, data_dir)  # its own connection, as in another worker
            try:
                ran.append(enforce(other, data_dir, 0.0, ingest.clock() + 10**12).deleted)
            finally:
                other.close()

    s3.on_progress = retention_now
    assert upload_pending(ingest.db, data_dir, s3, target).uploaded == 0

    assert ran == [1]
    assert not path.exists()
    row = clip_row(ingest.db, clip)
    assert row["audio_deleted_at"] is not None
    assert row["location"] is None
    listed = s3_server.client().list_objects_v2(Bucket="clips", Prefix=target.prefix)
    assert listed.get("KeyCount", 0) == 0


def test_a_clip_its_contact_contradicts_loses_its_object(
    s3_server: SeaweedS3, target: ClipsTarget, ingest: Ingest, data_dir: Path
) -> None:
    s3 = S3Clips(s3_server.section())
    ingest.drop_object = s3.delete_location
    clip = Clip(os.urandom(300_000), chunk_size=CHUNK)
    # the chunks come before their contact: their headers make the clip, which is uploaded
    results = ingest.handle_batch([(topic("clip"), clip.frame(i)) for i in range(clip.total)])
    (ready,) = [r.ready for r in results if r.ready is not None]
    assert ingest.assemble(ready)
    assert upload_pending(ingest.db, data_dir, s3, target).uploaded == 1
    client = s3_server.client()
    client.head_object(Bucket="clips", Key=key_of(clip, target.prefix))

    # the contact announces other bytes under that id: the clip is reset, its object deleted
    other = Clip(os.urandom(300_000), chunk_size=CHUNK, clip_id=clip.id)
    ingest.handle(topic("contact"), encode(contact_message(clip=other)))

    row = clip_row(ingest.db, clip)
    assert (row["complete"], row["location"], row["clip_sha256"]) == (False, None, other.sha256)
    listed = client.list_objects_v2(Bucket="clips", Prefix=target.prefix)
    assert listed.get("KeyCount", 0) == 0


def test_a_local_copy_left_after_the_upload_is_removed_at_start(
    s3_server: SeaweedS3, target: ClipsTarget, ingest: Ingest, data_dir: Path
) -> None:
    clip = verified_clip(ingest, 200_000)
    kept = verified_clip(ingest, 200_000)
    s3 = S3Clips(s3_server.section())
    assert upload_pending(ingest.db, data_dir, s3, target, limit=1).uploaded == 1
    uploaded = clip_row(ingest.db, clip)
    # a worker killed between the commit of the location and the removal of the file
    (data_dir / uploaded["path"]).write_bytes(clip.data)

    assert drop_uploaded_copies(ingest.db, data_dir) == 1

    assert not (data_dir / uploaded["path"]).exists()
    pending = clip_row(ingest.db, kept)  # not uploaded yet: its file stays
    assert (data_dir / pending["path"]).read_bytes() == kept.data


@pytest.mark.parametrize("serve", ["stream", "redirect"])
def test_the_api_serves_a_clip_from_the_storage(
    s3_server: SeaweedS3,
    target: ClipsTarget,
    ingest: Ingest,
    data_dir: Path,
    *,
    db_url: str | None,
    serve: str,
) -> None:
    section = s3_server.section(serve=serve)
    clip = verified_clip(ingest, 700_000)
    assert upload_pending(ingest.db, data_dir, S3Clips(section), target).uploaded == 1
    token = accounts.create_token(
        ingest.db, role="admin", sites=[], name="t", now_ns=ingest.clock()
    ).token
    settings = ApiSettings(data_dir=data_dir, db_url=db_url, s3=section)
    url = f"/api/v1/contacts/{DEVICE}/{clip.id}/clip"
    with api_server(settings, token) as api:
        if serve == "stream":
            whole = api.get(url)
            assert whole.status_code == 200
            assert whole.content == clip.data
            part = api.get(url, headers={"Range": "bytes=1000-200999"})
            assert part.status_code == 206
            assert part.headers["content-range"] == f"bytes 1000-200999/{len(clip.data)}"
            assert part.content == clip.data[1000:201000]
            tail = api.get(url, headers={"Range": "bytes=-500"})
            assert tail.content == clip.data[-500:]
        else:
            moved = api.get(url, follow_redirects=False)
            assert moved.status_code == 307
            presigned = moved.headers["location"]
            assert presigned.startswith(s3_server.endpoint)
            assert "X-Amz-Signature=" in presigned
            assert httpx.get(presigned, timeout=30).content == clip.data
            ranged = httpx.get(presigned, headers={"Range": "bytes=10-19"}, timeout=30)
            assert (ranged.status_code, ranged.content) == (206, clip.data[10:20])
        audit = tables(ingest.db).audit_log
        assert audit.select().where(audit.action == "listen").count() >= 1


def test_the_api_refuses_an_object_that_is_not_the_clip(
    s3_server: SeaweedS3, target: ClipsTarget, ingest: Ingest, data_dir: Path, db_url: str | None
) -> None:
    section = s3_server.section()
    clip = verified_clip(ingest, 200_000)
    assert upload_pending(ingest.db, data_dir, S3Clips(section), target).uploaded == 1
    # someone replaced the object with other bytes (and other metadata)
    s3_server.client().put_object(
        Bucket="clips",
        Key=key_of(clip, target.prefix),
        Body=b"x" * 1000,
        Metadata={"sha256": "0" * 64},
    )
    token = accounts.create_token(
        ingest.db, role="admin", sites=[], name="t", now_ns=ingest.clock()
    ).token
    settings = ApiSettings(data_dir=data_dir, db_url=db_url, s3=section)
    with api_server(settings, token) as api:
        answer = api.get(f"/api/v1/contacts/{DEVICE}/{clip.id}/clip")
    assert answer.status_code == 502
    assert "sha256" in answer.json()["detail"]


def test_storage_killed_during_the_upload_loses_nothing(
    own_s3_server: SeaweedS3,
    target: ClipsTarget,
    broker: LocalBroker,
    data_dir: Path,
    db_url: str | None,
) -> None:
    s3_server = own_s3_server
    section = s3_server.section(multipart_threshold_mb=5, multipart_chunk_mb=5, max_concurrency=1)
    config = SinkConfig(
        broker=broker.url, data_dir=data_dir, db_url=db_url, backoff_min_s=0.05,
        backoff_max_s=0.2, check_every_s=1.0, clips=f"s3://clips/{target.prefix}",
    )  # fmt: skip
    sink = Sink(config, s3=section)
    assert sink.objects is not None
    killed = threading.Event()

    def kill_once(sent: int) -> None:  # the first part is on its way: the storage dies
        if not killed.is_set():
            killed.set()
            s3_server.kill()

    sink.objects.on_progress = kill_once
    client = TestClient(broker.port)
    db = open_database(db_url, data_dir)
    try:
        sink.start()
        wait_for(sink.subscribed.is_set, "the sink to subscribe")
        clip = Clip(os.urandom(11 * 1024 * 1024), chunk_size=CHUNK)
        client.publish(topic("contact"), encode(contact_message(clip=clip)))
        for seq in range(clip.total):
            client.publish(topic("clip"), clip.frame(seq))
        wait_until(
            lambda: sink.stats().get("clip_upload_failed", 0) >= 1,
            "the upload to fail",
            progress=sink.stats,
        )
        assert killed.is_set()
        row = clip_row(db, clip)
        assert row["complete"]
        assert row["location"] is None
        assert (data_dir / row["path"]).read_bytes() == clip.data  # kept in the data directory

        s3_server.start()  # back, same data and ports: the kept clip goes up
        wait_until(
            lambda: clip_row(db, clip)["location"] is not None,
            "the kept clip to be uploaded",
            progress=sink.stats,
        )
        assert not (data_dir / row["path"]).exists()
        assert object_bytes(s3_server, key_of(clip, target.prefix)) == clip.data
        head = s3_server.client().head_object(Bucket="clips", Key=key_of(clip, target.prefix))
        assert head["Metadata"]["sha256"] == clip.sha256
        assert sink.stats()["clip_uploaded"] == 1
    finally:
        sink.stop()
        client.close()
        db.close()


def test_a_sink_started_while_the_storage_is_down_keeps_clips_until_it_is_up(
    tmp_path: Path, target: ClipsTarget, broker: LocalBroker, data_dir: Path
) -> None:
    server = SeaweedS3(tmp_path / "seaweedfs")  # its ports are chosen; nothing listens yet
    config = SinkConfig(
        broker=broker.url, data_dir=data_dir, backoff_min_s=0.05, backoff_max_s=0.2,
        check_every_s=1.0, clips=f"s3://clips/{target.prefix}",
    )  # fmt: skip
    sink = Sink(config, s3=server.section()).start()
    client = TestClient(broker.port)
    db = open_database(None, data_dir)
    try:
        wait_for(sink.subscribed.is_set, "the sink to subscribe")
        clip = Clip(os.urandom(400_000), chunk_size=CHUNK)
        client.publish(topic("contact"), encode(contact_message(clip=clip)))
        for seq in range(clip.total):
            client.publish(topic("clip"), clip.frame(seq))
        wait_until(
            lambda: sink.verified_clip_count() == 1, "the clip verified", progress=sink.stats
        )
        wait_until(
            lambda: sink.stats().get("clip_upload_failed", 0) >= 1,
            "an upload to fail",
            progress=sink.stats,
        )
        row = clip_row(db, clip)
        assert (data_dir / row["path"]).read_bytes() == clip.data

        server.start()
        wait_until(
            lambda: clip_row(db, clip)["location"] is not None,
            "the clip uploaded once the storage is up",
            progress=sink.stats,
        )
        assert object_bytes(server, key_of(clip, target.prefix)) == clip.data
        assert not (data_dir / row["path"]).exists()
    finally:
        sink.stop()
        client.close()
        db.close()
        server.stop()


def test_the_sink_command_keeps_clips_in_the_storage(
    s3_server: SeaweedS3, broker: LocalBroker, tmp_path: Path
) -> None:
    """End to end: ``contactpoint sink run --clips s3://...`` through a real mosquitto."""
    data = tmp_path / "sink"
    config = tmp_path / "sink.toml"
    config.write_text(
        "[s3]\n"
        f'endpoint_url = "{s3_server.endpoint}"\n'
        'region = "us-east-1"\n'
        'addressing_style = "path"\n',
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": s3_server.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": s3_server.SECRET_KEY,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    argv = [
        sys.executable, "-m", "provisioning.main", "sink", "run", "--broker", broker.url,
        "--data", str(data), "--config", str(config), "--clips", "s3://clips/e2e",
    ]  # fmt: skip
    sink = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    client = TestClient(broker.port)
    try:
        clips = [Clip(os.urandom(n), chunk_size=CHUNK) for n in (90_000, 1_000_000)]
        wait_for((data / "sink.db").exists, "the sink to create its database")

        def taking() -> bool:  # an event published until the sink stores one: it subscribed
            client.publish(topic("event"), encode(event_message()))
            db = open_database(None, data)
            try:
                return bool(tables(db).events.select().count())
            except OperationalError:  # not migrated yet
                return False
            finally:
                db.close()

        wait_for(taking, "the sink to subscribe and store an event", poll_s=0.2)
        for clip in clips:
            client.publish(topic("contact"), encode(contact_message(clip=clip)))
            for seq in range(clip.total):
                client.publish(topic("clip"), clip.frame(seq))
        s3 = s3_server.client()

        def uploaded() -> int:
            return int(s3.list_objects_v2(Bucket="clips", Prefix="e2e/").get("KeyCount", 0))

        wait_for(lambda: uploaded() == 2, "both clips in the storage", progress=uploaded)
        for clip in clips:
            assert object_bytes(s3_server, key_of(clip, "e2e")) == clip.data
        assert not list((data / "clips").rglob("*.wav"))
    finally:
        sink.send_signal(signal.SIGTERM)
        _, err = sink.communicate(timeout=60)
        client.close()
    assert sink.returncode == 0, err
    assert '"clip_uploaded": 2' in err


def test_object_storage_settings_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.toml"
    for text, says in [
        ('[s3]\nendpoint = "http://x"\n', "s3.endpoint: unknown key. Did you mean 'endpoint_url'"),
        ('[s3]\naccess_key_id = "k"\n', "s3.access_key_id and s3.secret_access_key go together"),
        ('[s3]\nserve = "proxy"\n', "s3.serve"),
        ("[s3]\nmultipart_chunk_mb = 1\n", "s3.multipart_chunk_mb"),
        ('[sink]\nclips = "s3://A/b"\n', "sink.clips"),
    ]:
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_sink_file(bad)
        assert says in str(caught.value)

    for value, says in [
        ("http://bucket/x", "use s3://BUCKET/PREFIX"),
        ("s3://No_Such/x", "is not an S3 bucket name"),
        ("s3://clips/a//b", "without empty segments"),
    ]:
        with pytest.raises(ObjectConfigError) as refused:
            parse_clips_url(value)
        assert "--clips" in str(refused.value)
        assert says in str(refused.value)
    assert parse_clips_url("s3://clips/shop/audio/") == ClipsTarget("clips", "shop/audio")

    # no credentials in the config nor anywhere in the AWS environment: said at start
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(ObjectConfigError) as none:
        S3Clips(S3Section(endpoint_url="http://127.0.0.1:9"))
    assert "AWS_ACCESS_KEY_ID" in str(none.value)
    assert "s3.access_key_id" in str(none.value)
