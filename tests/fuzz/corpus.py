"""The fuzz target's input layout and seeds (tests/fuzz/fuzz_sink.py), importable without
atheris: the first byte picks the shape (raw payload, golden message with a value replaced,
chunk frame), the next ones the topic, the value or the clip and seq."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "wire"
KINDS = ("contact", "event", "status", "alert", "clip", "cmd/resend", "video", "route/x")
JSON_KINDS = ("contact", "event", "status", "alert")
RAW, TOKEN, CHUNK = 0, 1, 2


class Clip:
    def __init__(self, n: int, size: int, chunk: int) -> None:
        self.id = f"{n:02x}" * 16
        self.data = bytes((n * 7 + i) % 251 for i in range(size))
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.chunk = chunk
        self.total = max(1, -(-size // chunk))

    def header(self, seq: int) -> dict[str, Any]:
        part = self.data[seq * self.chunk : (seq + 1) * self.chunk]
        return {
            "schema": 1, "msg_id": f"{self.id}.{seq}", "kind": "clip_chunk",
            "device": "cp-0001", "site": "site-1", "clip_id": self.id, "seq": seq,
            "total": self.total, "offset": seq * self.chunk, "size": len(part),
            "chunk_sha256": hashlib.sha256(part).hexdigest(), "clip_sha256": self.sha256,
            "clip_bytes": len(self.data), "codec": "wav", "sample_rate": 16000,
        }  # fmt: skip


CLIPS = [Clip(1, 3000, 1000), Clip(2, 1, 1024), Clip(3, 5000, 1024)]


def seeds() -> list[bytes]:
    """Inputs that reach each shape's paths at once: the golden payloads as they are, a few
    values replaced, each clip's chunks."""
    out = []
    for n, kind in enumerate(KINDS[:4]):
        out.append(bytes([RAW, n]) + (GOLDEN / f"{kind}.json").read_bytes())
    out.append(bytes([RAW, 4]) + (GOLDEN / "clip_chunk.bin").read_bytes())
    for n, kind in enumerate(JSON_KINDS):  # every value of each golden message, as it was
        doc = json.loads((GOLDEN / f"{kind}.json").read_text())
        for leaf, path in enumerate(leaves(doc)[:256]):
            value: Any = doc
            for key in path:
                value = value[key]
            out.append(bytes([TOKEN, n, leaf]) + json.dumps(value).encode())
    for n, clip in enumerate(CLIPS):
        out += [bytes([CHUNK, n, seq, 0, 0]) for seq in range(clip.total)]
    return out


def leaves(node: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a value in a JSON document, containers included, in document order."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    out: list[tuple[str | int, ...]] = []
    for key, child in items:
        out.append((*path, key))
        if isinstance(child, dict | list):
            out += leaves(child, (*path, key))
    return out


def write_seeds(corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(seeds()):
        (corpus / f"seed-{n}").write_bytes(seed)


if __name__ == "__main__":
    write_seeds(Path(sys.argv[1]))
