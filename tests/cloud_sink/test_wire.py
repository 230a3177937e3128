"""The sink's parser against the golden payloads and against everything it must refuse."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import pytest

from cloud_sink import wire
from tests.cloud_sink.helpers import (
    DEVICE,
    POISON_PLACES,
    POISON_TOKENS,
    SITE,
    chunk_frame,
    contact_message,
    encode,
    golden,
    golden_bytes,
    poison_message,
    topic,
    with_token,
)


def test_golden_contact_parses_to_the_same_object() -> None:
    msg = wire.parse(topic("contact"), golden_bytes("contact.json"))
    assert isinstance(msg, wire.Message)
    assert (msg.kind, msg.device, msg.site) == ("contact", DEVICE, SITE)
    assert msg.msg_id == golden("contact.json")["msg_id"]
    assert isinstance(msg.body, wire.Contact)
    assert msg.body.as_json() == golden("contact.json")["contact"]
    assert len(msg.body.events) == 4
    assert len(msg.body.tags) == 3


def test_golden_event_and_status_parse() -> None:
    event = wire.parse(topic("event"), golden_bytes("event.json"))
    assert isinstance(event, wire.Message)
    assert isinstance(event.body, wire.Event)
    assert event.body.body == golden("event.json")["event"]
    assert event.body.contact_id is None
    status = wire.parse(topic("status"), golden_bytes("status.json"))
    assert isinstance(status, wire.Message)
    assert isinstance(status.body, wire.Status)
    expected = golden("status.json")["status"]
    assert status.body.outbox_depth == expected["outbox_depth"]
    assert status.body.free_disk_bytes == expected["free_disk_bytes"]
    assert status.body.online is True


def test_golden_chunk_parses_and_verifies() -> None:
    frame = golden_bytes("clip_chunk.bin")
    chunk = wire.parse(topic("clip"), frame)
    assert isinstance(chunk, wire.Chunk)
    (length,) = struct.unpack(">I", frame[4:8])
    header = json.loads(frame[8 : 8 + length])
    assert (chunk.seq, chunk.total, chunk.offset, chunk.size) == (
        header["seq"], header["total"], header["offset"], header["size"],
    )  # fmt: skip
    assert chunk.data == frame[8 + length :]
    assert chunk.corruption() is None
    assert chunk.extension == "wav"


def test_command_topics_are_ignored() -> None:
    assert isinstance(wire.parse(topic("cmd/resend"), b"{}"), wire.Ignored)


def _mutated(change: Any) -> bytes:
    msg = contact_message()
    change(msg)
    return encode(msg)


REJECTS: list[tuple[str, str, bytes, str]] = [
    ("not json", topic("contact"), b"{not json", "json"),
    ("json array", topic("contact"), b"[1, 2]", "json"),
    ("not utf-8", topic("contact"), b"\xff\xfe", "json"),
    ("unknown schema", topic("contact"), _mutated(lambda m: m.update(schema=2)), "schema"),
    ("schema as bool", topic("contact"), _mutated(lambda m: m.update(schema=True)), "schema"),
    ("schema as float", topic("contact"), _mutated(lambda m: m.update(schema=1.0)), "schema"),
    (
        "device mismatch",
        topic("contact"),
        _mutated(lambda m: m.update(device="cp-0002")),
        "mismatch",
    ),
    ("site mismatch", topic("contact"), _mutated(lambda m: m.update(site="site-2")), "mismatch"),
    (  # found by tests/fuzz/fuzz_sink.py: the parser raised KeyError, the sink stalled
        "device mismatch, no site",
        topic("contact"),
        _mutated(lambda m: (m.update(device="cp-0002"), m.pop("site"))),
        "field",
    ),
    ("kind mismatch", topic("contact"), _mutated(lambda m: m.update(kind="event")), "mismatch"),
    ("missing contact", topic("contact"), _mutated(lambda m: m.pop("contact")), "field"),
    ("msg_id not hex", topic("contact"), _mutated(lambda m: m.update(msg_id="../../etc")), "id"),
    (
        "contact id not hex",
        topic("contact"),
        _mutated(lambda m: m["contact"].update(id="X" * 32)),
        "id",
    ),
    (
        "duration as text",
        topic("contact"),
        _mutated(lambda m: m["contact"].update(duration_s="65")),
        "field",
    ),
    (
        "tags not strings",
        topic("contact"),
        _mutated(lambda m: m["contact"].update(tags=[1])),
        "field",
    ),
    (
        "event of another contact",
        topic("contact"),
        _mutated(lambda m: m["contact"]["events"][0].update(contact_id="f" * 32)),
        "mismatch",
    ),
    (  # read since contract/wire.py: every key the device writes is one the sink reads
        "clock_stepped as text",
        topic("contact"),
        _mutated(lambda m: m["contact"].update(clock_stepped="yes")),
        "field",
    ),
    (
        "clip_missing not a string",
        topic("contact"),
        _mutated(lambda m: m["contact"].update(clip=None, clip_missing=["disk_full"])),
        "field",
    ),
    (
        "bad time",
        topic("contact"),
        _mutated(lambda m: m["contact"].update(start="yesterday")),
        "field",
    ),
    ("too large", topic("contact"), b" " * (wire.MAX_JSON_BYTES + 1), "too_large"),
    ("unknown kind", topic("video"), encode({"schema": 1}), "topic"),
    (
        "bad device id in topic",
        topic("contact", device="../cp"),
        golden_bytes("contact.json"),
        "id",
    ),
    ("chunk without magic", topic("clip"), b"XXXX" + b"\0" * 20, "frame"),
    ("chunk header past end", topic("clip"), b"CPC1" + struct.pack(">I", 999) + b"{}", "frame"),
    ("chunk too large", topic("clip"), b"CPC1" + b"\0" * wire.MAX_FRAME_BYTES, "too_large"),
]


@pytest.mark.parametrize(
    ("where", "payload", "reason"),
    [r[1:] for r in REJECTS],
    ids=[r[0] for r in REJECTS],
)
def test_rejected_with_a_reason(where: str, payload: bytes, reason: str) -> None:
    result = wire.parse(where, payload)
    assert isinstance(result, wire.Rejected), result
    assert result.reason == reason, result.detail


def _frame(**changes: Any) -> bytes:
    data = b"abcd" * 10
    sha = hashlib.sha256(data).hexdigest()
    args: dict[str, Any] = {
        "clip_id": "c" * 32, "seq": 0, "total": 1, "offset": 0, "data": data,
        "clip_sha256": sha, "clip_bytes": len(data),
    }  # fmt: skip
    args.update(changes)
    return chunk_frame(**args)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (_frame(header_extra={"msg_id": "c" * 32 + ".7"}), "id"),
        (_frame(clip_id="../../../../tmp/x"), "id"),
        (_frame(seq=1, total=1), "field"),
        (_frame(offset=8), "field"),
        (_frame(codec="mp3"), "field"),
        (_frame(header_extra={"schema": 9}), "schema"),
        (_frame(device="cp-0002"), "mismatch"),
        (_frame(header_extra={"size": "40"}), "field"),
        (_frame(clip_sha256="nothex"), "field"),
    ],
    ids=["msg_id", "traversal", "seq", "offset", "codec", "schema", "device", "size", "sha"],
)
def test_bad_chunk_headers_are_rejected(frame: bytes, reason: str) -> None:
    result = wire.parse(topic("clip"), frame)
    assert isinstance(result, wire.Rejected), result
    assert result.reason == reason, result.detail


def test_chunk_corruption_is_reported_not_rejected() -> None:
    good = wire.parse(topic("clip"), _frame())
    assert isinstance(good, wire.Chunk)
    assert good.corruption() is None
    flipped = wire.parse(topic("clip"), _frame(chunk_sha256="0" * 64))
    assert isinstance(flipped, wire.Chunk)
    assert flipped.corruption() is not None
    assert "sha256" in str(flipped.corruption())
    short = wire.parse(topic("clip"), _frame(header_extra={"size": 39}))
    assert isinstance(short, wire.Chunk)
    assert "bytes" in str(short.corruption())


def test_resend_payload_and_subscriptions() -> None:
    assert json.loads(wire.resend_payload("a" * 32, [(1, 1), (3, 5)])) == {
        "clip_id": "a" * 32,
        "ranges": [[1, 1], [3, 5]],
        "seqs": [1, 3, 4, 5],  # for devices that read only the old list form
    }
    many = json.loads(wire.resend_payload("a" * 32, [(0, wire.LEGACY_SEQS)]))
    assert many == {"clip_id": "a" * 32, "ranges": [[0, wire.LEGACY_SEQS]]}
    assert wire.resend_topic(SITE, DEVICE) == topic("cmd/resend")
    assert wire.shared_subscription("g1") == "$share/g1/contactpoint/v1/+/+/+"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_mutated(lambda m: m["contact"].update(mode="a\x00b")), "field"),
        (_mutated(lambda m: m["contact"].update(tags=["a\x00"])), "field"),
        (golden_bytes("contact.json").replace(b'"duration_s": 65.0', b'"duration_s": NaN'), "json"),
    ],
    ids=["nul", "nul-tag", "nan"],
)
def test_values_a_database_cannot_hold_are_rejected(payload: bytes, reason: str) -> None:
    assert payload != golden_bytes("contact.json")
    result = wire.parse(topic("contact"), payload)
    assert isinstance(result, wire.Rejected), result
    assert result.reason == reason, result


def test_integers_beyond_64_bits_are_rejected() -> None:
    status = golden("status.json")
    status["status"]["outbox_depth"] = 2**64
    result = wire.parse(topic("status"), encode(status))
    assert isinstance(result, wire.Rejected)
    assert result.reason == "json"
    assert "64-bit" in result.detail


@pytest.mark.parametrize("token", list(POISON_TOKENS.values()), ids=list(POISON_TOKENS))
@pytest.mark.parametrize(
    ("kind", "path"), POISON_PLACES, ids=[".".join(map(str, p)) for _, p in POISON_PLACES]
)
def test_poison_anywhere_in_a_message_is_a_json_rejection(
    kind: str, path: tuple[str | int, ...], token: bytes
) -> None:
    """Non-finite numbers, integers beyond 64 bits and unpaired surrogates, in a field the parser
    checks or in one it keeps as sent: json reads them all, no database can hold them."""
    payload = poison_message(kind, path, token)
    result = wire.parse(topic(kind), payload)
    assert isinstance(result, wire.Rejected), result
    assert result.reason == "json", result.detail
    assert len(result.detail) < 400


@pytest.mark.parametrize(
    ("token", "says"),
    [(b'"\\ud800"', "surrogate"), (b"1e400", "not finite"), (b"9" * 400, "64-bit")],
)
def test_poison_rejections_say_what_and_how_to_fix(token: bytes, says: str) -> None:
    result = wire.parse(topic("event"), with_token(golden("event.json"), ("event", "via"), token))
    assert isinstance(result, wire.Rejected), result
    assert says in result.detail, result


def test_poison_in_a_key_or_a_chunk_header_is_rejected() -> None:
    raw = golden_bytes("event.json").replace(b'"via"', b'"v\\udc00"')
    result = wire.parse(topic("event"), raw)
    assert isinstance(result, wire.Rejected), result
    assert result.reason == "json", result
    header = _frame(header_extra={"sample_rate": 10**30})
    result = wire.parse(topic("clip"), header)
    assert isinstance(result, wire.Rejected), result
    assert result.reason == "json", result


def test_what_is_valid_json_and_in_range_still_parses() -> None:
    edges = [str(2**63 - 1), str(-(2**63)), "1e308", "-1e-400", '"\\ud83d\\ude00"']
    for token in edges:
        raw = with_token(golden("event.json"), ("event", "data"), token.encode())
        assert isinstance(wire.parse(topic("event"), raw), wire.Message), token
