"""Coverage-guided fuzzing (atheris / libFuzzer) of the sink's parser and chunk reassembler.

Run: ``python -m tests.fuzz.fuzz_sink [libFuzzer flags] [CORPUS_DIR ...]``, e.g.
``-max_total_time=600 -max_len=8192 -dict=tests/fuzz/sink.dict corpus/`` (write the seeds
first: ``python -m tests.fuzz.corpus corpus/``; the dictionary holds the JSON texts that made
issue #10: surrogate escapes, 1e400, integers past 64 bits). ``tests/fuzz/test_fuzz_sink.py``
runs it for a few thousand inputs in CI, seeded with the golden payloads
(:func:`tests.fuzz.corpus.seeds`).

Each input drives one ``Ingest.handle`` on a SQLite sink that lives for the whole run (so the
inputs build on each other: clips fill up, duplicates arrive), in one of three shapes chosen by
its first byte (:class:`Reader`): raw bytes on a contactpoint topic; a golden JSON message with
one value replaced by raw JSON text (the mutations find what the hypothesis strategies were
taught: non-finite numbers, huge integers, surrogate escapes); a chunk frame of one of a few
small clips with header fields mangled, often to the type limits.

What must hold, or the run stops with the input saved:
- ``wire.parse`` and ``Ingest.handle`` never raise;
- whatever the parser accepts, the database stores: no dead letter ``ingest_error`` or
  ``integrity`` (those mean a message passed the parser and the write failed);
- every resend request fits ``wire.MAX_RESEND_BYTES``, and every file under the data
  directory is inside it; a clip marked complete is byte-exact.
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import atheris

from tests.fuzz.corpus import CLIPS, GOLDEN, JSON_KINDS, KINDS, RAW, TOKEN, leaves

with atheris.instrument_imports(include=["cloud_sink"]):
    from cloud_sink import wire
    from cloud_sink.db import open_database
    from cloud_sink.ingest import Ingest, Limits
    from cloud_sink.migrations import migrate

ROOT = "contactpoint/v1/site-1/cp-0001"
HEADER_INTS = ("seq", "total", "offset", "size", "clip_bytes", "sample_rate")
LIMITS = [
    0, 1, -1, 2**31 - 1, 2**31, 2**32, 2**53, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64,
    wire.MAX_CHUNKS, wire.MAX_CHUNKS + 1, wire.MAX_CLIP_BYTES, wire.MAX_CLIP_BYTES + 1,
]  # fmt: skip


def frame(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return b"CPC1" + struct.pack(">I", len(raw)) + raw + data


class Reader:
    """The input, read front to back; past its end every read is zero."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def pick(self, n: int) -> int:
        """One byte, as a choice among ``n``."""
        value = self.data[self.at] if self.at < len(self.data) else 0
        self.at += 1
        return value % n

    def int65(self) -> int:
        """Nine bytes as a signed integer in -2**64 .. 2**64 (past every type limit)."""
        raw = self.data[self.at : self.at + 9].ljust(9, b"\x00")
        self.at += 9
        return int.from_bytes(raw, "big", signed=True) >> 7

    def rest(self) -> bytes:
        out = self.data[self.at :]
        self.at = len(self.data)
        return out


class Target:
    """One sink for the whole run, on tmpfs when there is one (fsync is the slow part)."""

    def __init__(self) -> None:
        shm = Path("/dev/shm")
        self.tmp = tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None)
        self.root = Path(self.tmp.name) / "sink"
        self.db = open_database(None, self.root)
        migrate(self.db)
        self.now = 1_795_424_400 * 1_000_000_000
        self.ingest = Ingest(
            self.db, self.root, clock=lambda: self.now, limits=Limits(max_attempts=1)
        )
        self.last_dead = 0  # the id of the last dead letter looked at
        self.runs = 0
        self.golden = {k: json.loads((GOLDEN / f"{k}.json").read_text()) for k in JSON_KINDS}
        self.leaves = {k: leaves(doc) for k, doc in self.golden.items()}

    def one(self, data: bytes) -> None:
        src = Reader(data)
        shape = src.pick(3)
        if shape == RAW:
            topic, payload = f"{ROOT}/{KINDS[src.pick(len(KINDS))]}", src.rest()
        elif shape == TOKEN:
            kind = JSON_KINDS[src.pick(len(JSON_KINDS))]
            topic, payload = f"{ROOT}/{kind}", self.with_token(kind, src)
        else:
            topic, payload = f"{ROOT}/clip", self.chunk(src)
        self.handle(topic, payload)
        self.now += 7_000_000_000
        if self.runs % 16 == 0:
            self.check()
        self.runs += 1

    def with_token(self, kind: str, src: Reader) -> bytes:
        """The golden message with one value (a leaf, picked) replaced by raw bytes."""
        marker = "@@token@@"
        doc = json.loads(json.dumps(self.golden[kind]))
        fresh = f"{self.runs:032x}"  # new ids each time: a duplicate would be stored no further
        doc["msg_id"] = fresh
        body = doc[kind]
        if "id" in body:
            body["id"] = fresh
        for event in body.get("events", []):
            event["id"], event["contact_id"] = f"{self.runs + 2**64:032x}", fresh
        path = self.leaves[kind][src.pick(len(self.leaves[kind]))]
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = marker
        return json.dumps(doc).encode().replace(f'"{marker}"'.encode(), src.rest(), 1)

    def chunk(self, src: Reader) -> bytes:
        clip = CLIPS[src.pick(len(CLIPS))]
        seq = src.pick(clip.total)
        header = clip.header(seq)
        data = clip.data[seq * clip.chunk : (seq + 1) * clip.chunk]
        for _ in range(src.pick(3)):  # mangle a field or two
            key = HEADER_INTS[src.pick(len(HEADER_INTS))]
            if src.pick(2):
                header[key] = LIMITS[src.pick(len(LIMITS))]
            else:
                header[key] = src.int65()
        if src.pick(2):
            data = src.rest()
        return frame(header, data)

    def handle(self, topic: str, payload: bytes) -> None:
        self.ingest.handle(topic, payload)  # must not raise
        d = self.ingest.t.dead_letters
        for row in d.select().where(d.id > self.last_dead).order_by(d.id).dicts():
            self.last_dead = row["id"]
            if row["reason"] in ("ingest_error", "integrity"):
                raise AssertionError(
                    f"the parser accepted a message the database refused: {row['detail']}"
                )

    def check(self) -> None:
        for request in self.ingest.check_clips(0):
            assert len(request.payload) <= wire.MAX_RESEND_BYTES, len(request.payload)
        root = self.root.resolve()
        for path in self.root.rglob("*"):
            assert path.resolve().is_relative_to(root), path
        clips = self.ingest.t.clips
        for row in clips.select().where(clips.complete == True).dicts():  # noqa: E712
            path = self.root / row["path"]
            for clip in CLIPS:
                if clip.id == row["clip_id"] and path.exists():
                    assert path.read_bytes() == clip.data, row


def main() -> None:
    target = Target()
    atheris.Setup(sys.argv, target.one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
