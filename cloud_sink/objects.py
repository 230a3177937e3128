"""Verified clips in S3-compatible object storage (``sink run --clips s3://BUCKET/PREFIX``).

Rules:
- Where a clip lives is recorded in its row: ``clips.location`` NULL means the file under the
  data directory at ``clips.path`` (the default, and every clip before it is uploaded);
  ``s3://BUCKET/KEY`` means that object. Readers (the API, retention, ``sink contacts``) go by
  the row, never by the current ``--clips``: a sink moved to object storage still serves the
  clips it kept locally, and one moved back still serves its objects (with the ``[s3]`` table).
- Assembly is unchanged: a clip is verified and fsynced into the data directory first. Only
  then is it uploaded (a background thread per worker, :class:`Uploader`): multipart above
  ``multipart_threshold_mb`` (boto3's TransferConfig), with its sha256 as object metadata
  (``x-amz-meta-sha256``). A HEAD after the upload must show that sha256 and the clip's size;
  then the row gets its location (only if retention did not delete the clip meanwhile: then the
  object is deleted again) and only after that commit is the local file removed. An upload that
  fails (storage down, refused, wrong credentials) leaves the file and the row as they were: it
  is tried again after ``retry_min_s``, doubled up to ``retry_max_s``; nothing is lost.
- A crash between upload and commit uploads the same bytes again (same key: idempotent); one
  between commit and removal leaves a local copy that the next start removes
  (:func:`drop_uploaded_copies`). Any worker uploads any pending clip: several workers on one
  shared data directory may upload the same one, which gives the same object.
- Keys: ``PREFIX/SITE/DEVICE/CLIP_ID.EXT`` (the clip's path under ``clips/``), names already
  checked by :class:`~cloud_sink.storage.ClipStore`.
- Endpoint, region and credentials come from the ``[s3]`` table of the sink config, else from
  boto3's standard chain (``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``/
  ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
  ``~/.aws``, instance roles). No credentials anywhere is a :class:`ObjectConfigError` at
  start, naming the keys and variables to set. A storage that is merely down at start is not an
  error: the sink runs and keeps clips locally until it is back.
- Request checksums are sent only where S3 requires them (botocore's ``when_required``): many
  S3-compatible servers refuse the newer trailing checksums. The sha256 metadata is this
  module's own end-to-end check.
- boto3 is imported only when object storage is used (a sink without it starts as before).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from peewee import Database

from cloud_sink.db import rowcount, transaction
from cloud_sink.models import tables

if TYPE_CHECKING:
    from cloud_sink.config import S3Section

log = logging.getLogger(__name__)

SCHEME: Final = "s3://"
META_SHA256: Final = "sha256"  # sent as x-amz-meta-sha256
MB: Final = 1024 * 1024
# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a
# letter or digit; a prefix: path segments of safe characters
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$")
CONTENT_TYPES: Final = {"wav": "audio/wav", "flac": "audio/flac", "opus": "audio/ogg"}


class ObjectConfigError(ValueError):
    """Object storage is configured wrongly: the message names the setting and the fix."""


class ObjectStoreError(Exception):
    """The object storage failed or holds something else than the clip."""


@dataclass(frozen=True, slots=True)
class ClipsTarget:
    """Where new clips go: ``s3://bucket/prefix``."""

    bucket: str
    prefix: str  # "" or segments without a leading/trailing slash

    def key(self, relpath: str) -> str:
        """The object key of a clip whose path under the data directory is ``relpath``."""
        name = relpath.removeprefix("clips/")
        return f"{self.prefix}/{name}" if self.prefix else name

    def location(self, relpath: str) -> str:
        return f"{SCHEME}{self.bucket}/{self.key(relpath)}"


def parse_clips_url(value: str | None, what: str = "--clips / sink.clips") -> ClipsTarget | None:
    """``s3://BUCKET[/PREFIX]`` -> its target; None (or "") -> None: the data directory."""
    if not value:
        return None
    if not value.startswith(SCHEME):
        raise ObjectConfigError(
            f"{what} = {value!r}: use s3://BUCKET/PREFIX (or leave it unset: clips stay in the "
            "data directory)"
        )
    bucket, _, prefix = value.removeprefix(SCHEME).partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ObjectConfigError(
            f"{what} = {value!r}: {bucket!r} is not an S3 bucket name (3-63 lowercase letters, "
            "digits, dots and hyphens)"
        )
    if prefix and not _PREFIX.match(prefix):
        raise ObjectConfigError(
            f"{what} = {value!r}: the prefix {prefix!r} may hold letters, digits, / and "
            "!_.*'()- only, without empty segments"
        )
    return ClipsTarget(bucket, prefix)


def parse_location(location: str) -> tuple[str, str]:
    """(bucket, key) of a row's ``s3://BUCKET/KEY`` location."""
    bucket, _, key = location.removeprefix(SCHEME).partition("/")
    if not location.startswith(SCHEME) or not _BUCKET.match(bucket) or not key:
        raise ObjectStoreError(f"clip location {location[:200]!r} is not s3://BUCKET/KEY")
    return bucket, key


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    sha256: str | None  # the x-amz-meta-sha256 it was stored with


class S3Clips:
    """Clip objects in one S3-compatible service (any bucket the row names)."""

    def __init__(self, options: S3Section) -> None:
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config
        except ImportError:
            raise ObjectConfigError(
                "clips in object storage need boto3: install contactpoint[sink]"
            ) from None
        self.options = options
        session = boto3.session.Session(
            aws_access_key_id=options.access_key_id,
            aws_secret_access_key=options.secret_access_key,
            region_name=options.region,
        )
        if session.get_credentials() is None:
            raise ObjectConfigError(
                "no S3 credentials: set s3.access_key_id and s3.secret_access_key in the sink "
                "config, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
            )
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": options.addressing_style},
            connect_timeout=options.connect_timeout_s,
            read_timeout=options.read_timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # typed as Any: the S3 client's stubs (boto3-stubs) are a development tool, and the sink
        # must not depend on them at run time
        self.client: Any = session.client("s3", endpoint_url=options.endpoint_url, config=config)
        self.transfer = TransferConfig(
            multipart_threshold=options.multipart_threshold_mb * MB,
            multipart_chunksize=options.multipart_chunk_mb * MB,
            max_concurrency=options.max_concurrency,
        )
        # bytes sent so far of the upload under way (boto3's progress callback; may run on
        # s3transfer's threads)
        self.on_progress: Callable[[int], object] | None = None

    def upload(self, path: Path, bucket: str, key: str, *, sha256: str, size: int) -> None:
        """Upload ``path`` (multipart when large), then check with a HEAD that the object has
        ``size`` bytes and ``sha256`` as its metadata; :class:`ObjectStoreError` when not (the
        object is deleted again)."""
        ext = key.rsplit(".", 1)[-1]
        self.client.upload_file(
            str(path),
            bucket,
            key,
            ExtraArgs={
                "Metadata": {META_SHA256: sha256},
                "ContentType": CONTENT_TYPES.get(ext, "application/octet-stream"),
            },
            Config=self.transfer,
            Callback=self.on_progress,
        )
        info = self.head(bucket, key)
        if info.size != size or info.sha256 != sha256:
            self.delete(bucket, key)
            raise ObjectStoreError(
                f"s3://{bucket}/{key}: stored {info.size} bytes sha256 {info.sha256}, uploaded "
                f"{size} bytes sha256 {sha256}"
            )

    def head(self, bucket: str, key: str) -> ObjectInfo:
        reply = self.client.head_object(Bucket=bucket, Key=key)
        return ObjectInfo(int(reply["ContentLength"]), reply.get("Metadata", {}).get(META_SHA256))

    def read(self, bucket: str, key: str, first: int, last: int) -> Iterator[bytes]:
        """Bytes ``first``..``last`` (inclusive) of the object, in blocks."""
        reply = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
        body = reply["Body"]
        try:
            yield from body.iter_chunks(256 * 1024)
        finally:
            body.close()

    def presign(self, bucket: str, key: str, *, filename: str, content_type: str) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": bucket,
                "Key": key,
                "ResponseContentDisposition": f'inline; filename="{filename}"',
                "ResponseContentType": content_type,
            },
            ExpiresIn=self.options.presign_expiry_s,
        )
        return url

    def delete(self, bucket: str, key: str) -> None:
        """Delete the object (S3 answers the same whether it was there or not)."""
        self.client.delete_object(Bucket=bucket, Key=key)

    def delete_location(self, location: str) -> None:
        self.delete(*parse_location(location))

    def check_bucket(self, bucket: str) -> str | None:
        """None when the bucket answers; else what went wrong (for a warning at start)."""
        try:
            self.client.head_bucket(Bucket=bucket)
        except Exception as exc:  # noqa: BLE001 - only described: the sink runs on regardless
            return str(exc)
        return None


def verified_read(chunks: Iterator[bytes], expected_sha256: str, what: str) -> Iterator[bytes]:
    """Pass the whole object's bytes through, then raise :class:`ObjectStoreError` if they do
    not hash to ``expected_sha256`` (a reader gets a broken transfer, never other bytes)."""
    digest = hashlib.sha256()
    for block in chunks:
        digest.update(block)
        yield block
    if digest.hexdigest() != expected_sha256:
        log.error("%s: the object's bytes do not hash to the clip's sha256", what)
        raise ObjectStoreError(f"{what}: the object's bytes do not hash to the clip's sha256")


# -- the uploader ---------------------------------------------------------------------------------

UPLOAD_BATCH: Final = 50


@dataclass(slots=True)
class UploadPass:
    uploaded: int = 0
    failed: str | None = None  # the error that ended the pass (the storage is down ...)


def pending(db: Database, limit: int = UPLOAD_BATCH) -> list[dict[str, Any]]:
    """Verified clips still in the data directory (not uploaded, not deleted by retention)."""
    c = tables(db).clips
    return list(
        c.select(c.device, c.clip_id, c.site, c.path, c.clip_sha256, c.clip_bytes)
        .where(
            (c.complete == True)  # noqa: E712 - SQL, not Python
            & c.path.is_null(False)
            & c.location.is_null()
            & c.audio_deleted_at.is_null()
        )
        .order_by(c.completed_ns, c.device, c.clip_id)
        .limit(limit)
        .dicts()
    )


def upload_one(
    db: Database, data_dir: Path, s3: S3Clips, target: ClipsTarget, row: dict[str, Any]
) -> bool:
    """Upload one pending clip and record its location; True when it is in the storage now
    (False: it is gone meanwhile, deleted by retention or reset). Storage errors propagate."""
    c = tables(db).clips
    rel = str(row["path"])
    local = data_dir / rel
    location = target.location(rel)
    bucket, key = target.bucket, target.key(rel)
    where = (c.device == row["device"]) & (c.clip_id == row["clip_id"]) & (c.path == rel)
    try:
        s3.upload(local, bucket, key, sha256=row["clip_sha256"], size=int(row["clip_bytes"]))
    except FileNotFoundError:
        return False  # retention or a reset removed it: the row says so by now
    with transaction(db):
        done = rowcount(
            db,
            c.update({c.location: location}).where(
                where & c.location.is_null() & c.audio_deleted_at.is_null()
            ),
        )
        now_at = c.select(c.location).where(where).scalar()
    if not done and now_at != location:  # retention deleted it meanwhile: so is the object
        s3.delete(bucket, key)
        return False
    local.unlink(missing_ok=True)
    return True


def upload_pending(
    db: Database, data_dir: Path, s3: S3Clips, target: ClipsTarget, limit: int = UPLOAD_BATCH
) -> UploadPass:
    """Upload up to ``limit`` pending clips; stop at the first storage error (the rest waits
    for the next pass)."""
    result = UploadPass()
    for row in pending(db, limit):
        try:
            if upload_one(db, data_dir, s3, target, row):
                result.uploaded += 1
        except Exception as exc:  # noqa: BLE001 - any storage failure: kept locally, retried
            result.failed = f"clip {row['device']}/{row['clip_id']}: {exc}"
            break
    return result


def drop_uploaded_copies(db: Database, data_dir: Path) -> int:
    """Remove local files of clips whose row names an object (a crash between the commit of
    the location and the removal left them)."""
    clips_dir = data_dir / "clips"
    if not clips_dir.is_dir():
        return 0
    c = tables(db).clips
    removed = 0
    for entry in clips_dir.rglob("*"):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        rel = entry.relative_to(data_dir).as_posix()
        location = c.select(c.location).where(c.path == rel).scalar()
        if location is not None:
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


class Uploader:
    """A worker's upload thread: a pass when woken (a clip was verified), at start, and every
    ``sweep_s`` (clips other workers left); after a failure, the next pass waits for the retry
    delay instead (``retry_min_s`` doubling to ``retry_max_s``)."""

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        s3: S3Clips,
        target: ClipsTarget,
        *,
        bump: Callable[[str, int], object],
        sweep_s: float = 60.0,
    ) -> None:
        self.db, self.data_dir, self.s3, self.target = db, data_dir, s3, target
        self.bump = bump
        self.sweep_s = sweep_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failing: str | None = None  # the last pass's error, while the storage fails

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="clip-uploader", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        options = self.s3.options
        delay = options.retry_min_s
        problem = self.s3.check_bucket(self.target.bucket)  # here: a storage down at start
        if problem is not None:  # must not hold up the worker
            log.warning(
                "object storage bucket %s does not answer (%s): clips stay in the data "
                "directory until it does",
                self.target.bucket,
                problem,
            )
        self.db.connect(reuse_if_open=True)
        try:
            try:
                if removed := drop_uploaded_copies(self.db, self.data_dir):
                    log.warning("removed %d local copies of uploaded clips", removed)
            except Exception:
                log.exception("looking for local copies of uploaded clips failed")
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    done = upload_pending(self.db, self.data_dir, self.s3, self.target)
                except Exception as exc:  # noqa: BLE001 - the database failing: try again later
                    done = UploadPass(failed=f"database: {exc}")
                self.bump("clip_uploaded", done.uploaded)
                if done.failed is not None:
                    if self.failing is None:
                        log.warning("clip upload failed (kept locally, retried): %s", done.failed)
                    self.failing = done.failed
                    self.bump("clip_upload_failed", 1)
                    self._stop.wait(delay)
                    delay = min(delay * 2, options.retry_max_s)
                    continue
                if self.failing is not None:
                    log.warning("object storage is back: uploading the clips kept locally")
                self.failing = None
                delay = options.retry_min_s
                if done.uploaded >= UPLOAD_BATCH:
                    continue  # more are waiting
                self._wake.wait(self.sweep_s)
        finally:
            self.db.close()
