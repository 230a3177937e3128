"""The edge produces exactly the golden payloads the sink is tested against."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from edge.clock import NS
from edge.publish import wire
from tests.wire_samples import CHUNK_DATA, CLIP, CONTACT, DEVICE, ORPHAN, SITE, START, TODAY

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "wire"


def golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text(encoding="utf-8"))
    return data


def without_id(payload: Mapping[str, Any]) -> dict[str, Any]:
    assert len(payload["msg_id"]) == 32
    assert int(payload["msg_id"], 16) >= 0
    return {k: v for k, v in payload.items() if k != "msg_id"}


def test_contact_payload_is_golden() -> None:
    message = wire.contact_message(CONTACT, DEVICE, SITE)
    assert without_id(message.payload) == without_id(golden("contact.json"))
    assert message.kind == "contact"
    assert message.ref == CONTACT.id
    assert message.msg_id == message.payload["msg_id"]


def test_event_payload_is_golden() -> None:
    assert without_id(wire.event_message(ORPHAN, DEVICE, SITE).payload) == without_id(
        golden("event.json")
    )


def test_status_payload_is_golden() -> None:
    payload = wire.status_payload(
        device=DEVICE,
        site=SITE,
        online=True,
        version="0.1.0",
        boot_id=CONTACT.boot_id,
        outbox_depth=3,
        free_disk_bytes=12_345_678_912,
        clock_synced=True,
        at_wall_ns=START + 600 * NS,
        today=TODAY,
    )
    assert without_id(payload) == without_id(golden("status.json"))


def test_chunk_frame_is_golden_and_self_describing() -> None:
    frame = wire.chunk_frame(
        device=DEVICE,
        site=SITE,
        clip_id=CLIP.contact_id,
        seq=1,
        total=3,
        offset=1024,
        data=CHUNK_DATA,
        clip_sha256=CLIP.sha256,
        clip_bytes=3000,
        codec="wav",
        sample_rate=16000,
    )
    assert frame == (GOLDEN / "clip_chunk.bin").read_bytes()
    assert frame[:4] == wire.CHUNK_MAGIC
    (length,) = struct.unpack(">I", frame[4:8])
    header = json.loads(frame[8 : 8 + length])
    body = frame[8 + length :]
    assert body == CHUNK_DATA
    assert header["chunk_sha256"] == hashlib.sha256(CHUNK_DATA).hexdigest()
    assert header["msg_id"] == f"{CLIP.contact_id}.1"
    assert header["size"] == len(CHUNK_DATA)


def test_topics_and_times() -> None:
    assert wire.topic(SITE, DEVICE, "contact") == "contactpoint/v1/site-1/cp-0001/contact"
    assert wire.resend_topic(SITE, DEVICE) == "contactpoint/v1/site-1/cp-0001/cmd/resend"
    assert wire.iso(START + 1_234_567_890) == "2026-11-23T09:00:01.234Z"
    assert wire.chunk_count(0, 1000) == 1
    assert wire.chunk_count(1000, 1000) == 1
    assert wire.chunk_count(1001, 1000) == 2


def test_resend_requests_in_both_forms() -> None:
    clip_id = "ab" * 16
    ranges = json.dumps({"clip_id": clip_id, "ranges": [[0, 2], [5, 5]]}).encode()
    assert wire.parse_resend(ranges) == (clip_id, [(0, 2), (5, 5)])
    old = json.dumps({"clip_id": clip_id, "seqs": [4, 1]}).encode()  # from an older sink
    assert wire.parse_resend(old) == (clip_id, [(4, 4), (1, 1)])
    both = json.dumps({"clip_id": clip_id, "ranges": [[0, 9]], "seqs": [0]}).encode()
    assert wire.parse_resend(both) == (clip_id, [(0, 9)])


def test_malformed_resend_requests_are_refused() -> None:
    for body in (
        {"clip_id": "x", "ranges": [[2, 1]]},
        {"clip_id": "x", "ranges": [[0, True]]},
        {"clip_id": "x", "ranges": [[0]]},
        {"clip_id": "x", "ranges": "0-9"},
        {"clip_id": "x", "seqs": [-1]},
        {"clip_id": "x"},
        {"ranges": [[0, 0]]},
    ):
        with pytest.raises(ValueError, match="resend request"):
            wire.parse_resend(json.dumps(body).encode())


def test_contact_flags_are_optional_keys_a_sink_accepts() -> None:
    """``clip_missing`` (only without a clip) and ``clock_stepped`` (only when true) are added
    keys: a contact without them is byte-for-byte the golden one, and the sink takes both."""
    from cloud_sink import wire as sink_wire

    assert "clip_missing" not in wire.contact_json(CONTACT)
    assert "clock_stepped" not in wire.contact_json(CONTACT)
    with_clip = dataclasses.replace(CONTACT, clip_missing="disk_full")  # a clip: no reason
    assert "clip_missing" not in wire.contact_json(with_clip)
    flagged = dataclasses.replace(CONTACT, clip=None, clip_missing="disk_full", clock_stepped=True)
    message = wire.contact_message(flagged, DEVICE, SITE)
    body = message.payload["contact"]
    assert (body["clip"], body["clip_missing"], body["clock_stepped"]) == (None, "disk_full", True)
    parsed = sink_wire.parse(wire.topic(SITE, DEVICE, "contact"), wire.encode_json(message.payload))
    assert isinstance(parsed, sink_wire.Message), parsed
    assert isinstance(parsed.body, sink_wire.Contact)
    assert parsed.body.id == CONTACT.id


# --- delivery receipts (sink -> device) ------------------------------------------------------


def test_the_golden_receipt_parses_into_the_keys_of_the_rows_it_confirms() -> None:
    raw = (GOLDEN / "delivered.json").read_bytes()
    receipt = wire.parse_receipt(raw, device=DEVICE, site=SITE)
    assert receipt.msg_ids == tuple(golden("delivered.json")["msg_ids"])
    assert receipt.clip_ids == (CLIP.contact_id,)
    assert receipt.keys == [*receipt.msg_ids, f"clip:{CLIP.contact_id}"]
    assert wire.receipt_topic(SITE, DEVICE) == "contactpoint/v1/site-1/cp-0001/cmd/delivered"
    # what a receipt names for each kind of outbox row; a route row (for managers) takes none
    assert wire.receipt_key("contact", "m" * 32, CLIP.contact_id) == "m" * 32
    assert wire.receipt_key("alert", "m" * 32, "a") == "m" * 32
    assert wire.receipt_key("clip", "m" * 32, CLIP.contact_id) == f"clip:{CLIP.contact_id}"
    assert wire.receipt_key("route", "m" * 32, CLIP.contact_id) is None


def test_a_bad_receipt_is_refused_saying_why() -> None:
    good = golden("delivered.json")

    def refused(change: dict[str, Any], **where: str) -> str:
        raw = json.dumps({**good, **change}).encode()
        try:
            wire.parse_receipt(raw, device=where.get("device", DEVICE), site=SITE)
        except ValueError as exc:
            return str(exc)
        raise AssertionError(f"accepted {change}")

    assert "not JSON" in _refused_raw(b"\xff{")
    assert "not a JSON object" in _refused_raw(b"[1]")
    assert "nested too deeply" in _refused_raw(b"[" * 100_000)
    assert "bytes >" in _refused_raw(b" " * (wire.MAX_RECEIPT_BYTES + 1))
    assert "expected 1 and 'delivered'" in refused({"schema": 2})
    assert "expected 1 and 'delivered'" in refused({"kind": "resend"})
    assert "this is site-1/cp-0002" in refused({}, device="cp-0002")
    assert "32 hex digits" in refused({"msg_ids": ["A" * 32]})
    assert "32 hex digits" in refused({"clips": [1]})
    assert "a list of at most" in refused({"msg_ids": "d4" * 16})
    assert "a list of at most" in refused({"msg_ids": ["d4" * 16] * (wire.MAX_RECEIPT_IDS + 1)})
    # an absent list is an empty one
    bare = {k: v for k, v in good.items() if k not in ("msg_ids", "clips")}
    assert wire.parse_receipt(json.dumps(bare).encode(), device=DEVICE, site=SITE) == (
        wire.Receipt((), ())
    )


def _refused_raw(raw: bytes) -> str:
    try:
        wire.parse_receipt(raw, device=DEVICE, site=SITE)
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"accepted {raw[:40]!r}")


def test_the_status_carries_the_delivery_counts() -> None:
    delivery = wire.delivery_status(
        receipts=True, sent=12, delivered=9, awaiting=3, held=1, resent=2, given_up=0
    )
    payload = wire.status_payload(
        device=DEVICE, site=SITE, online=True, version="0.1.0", boot_id="b", outbox_depth=1,
        free_disk_bytes=1, clock_synced=True, at_wall_ns=START, delivery=delivery,
    )  # fmt: skip
    assert payload["status"]["delivery"] == {
        "receipts": True,
        "sent": 12,
        "delivered": 9,
        "awaiting": 3,
        "held": 1,
        "resent": 2,
        "given_up": 0,
    }
