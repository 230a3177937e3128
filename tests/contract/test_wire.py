"""contract/wire.py: the payload shapes are what the device writes and what the sink reads.

The keys come from the TypedDicts themselves (``get_type_hints``), never from a list here:
- the device writes no key a shape does not declare, and the samples below (built by the
  device from records with every optional field set) write every declared key;
- the sink reads every one of them: taking the key out of the device's payload changes what
  the sink makes of it (a rejection, or a parsed object that differs). A key the sink let pass
  unseen would parse to the same object with and without it. (A null value is the exception:
  the sink reads an absent optional key as null.)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from cloud_sink import wire as sink
from contract import wire as contract
from edge.clock import NS
from edge.publish import wire as device
from edge.records import EventRecord
from tests.wire_samples import (
    ALERT,
    ALERT_TEXT,
    CHUNK_DATA,
    CLIP,
    CONTACT,
    DEVICE,
    ORPHAN,
    SITE,
    START,
    TODAY,
)

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "wire"
Path_ = tuple[str | int, ...]


def declared(shape: type) -> frozenset[str]:
    return frozenset(get_type_hints(shape))


def positions(value: Any, shape: type, path: Path_ = ()) -> Iterator[tuple[type, Path_, Any]]:
    """Every object in ``value`` that a TypedDict describes: (shape, path, object)."""
    yield shape, path, value
    for key, hint in get_type_hints(shape).items():
        if key in value:
            yield from _inside(hint, value[key], (*path, key))


def _inside(hint: Any, value: Any, path: Path_) -> Iterator[tuple[type, Path_, Any]]:
    if is_typeddict(hint):
        yield from positions(value, hint, path)
    elif get_origin(hint) is list and is_typeddict(get_args(hint)[0]):
        for i, item in enumerate(value):
            yield from positions(item, get_args(hint)[0], (*path, i))
    elif get_origin(hint) in (Union, types.UnionType) and value is not None:
        for arg in get_args(hint):
            if is_typeddict(arg):
                yield from positions(value, arg, path)


def without(payload: dict[str, Any], path: Path_, key: str) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    node: Any = out
    for step in path:
        node = node[step]
    del node[key]
    return out


def every_event_field() -> EventRecord:
    return EventRecord(
        id="e0000000000000000000000000000009",
        kind="question",
        t_ns=100 * NS,
        wall_ns=START + 100 * NS,
        contact_id=CONTACT.id,
        button="q1",
        role="question",
        gesture="short",
        duration_ns=200_000_000,
        question=1,
        via="rf433",
        receipt_id="R-7",
        data={"note": "all fields"},
        video_url="https://nvr.local/archive?camera=3&t=1795424500",
        staff="boris",
    )


def health() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / "status_health.json").read_text("utf-8"))
    return data


Sample = tuple[str, type, dict[str, Any], Callable[[dict[str, Any]], sink.Parsed]]


def _json(kind: str) -> Callable[[dict[str, Any]], sink.Parsed]:
    return lambda payload: sink.parse(
        contract.topic(SITE, DEVICE, kind), device.encode_json(payload)
    )


def _chunk(payload: dict[str, Any]) -> sink.Parsed:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    frame = contract.CHUNK_MAGIC + contract.CHUNK_LENGTH.pack(len(raw)) + raw + CHUNK_DATA
    return sink.parse(contract.clip_topic(SITE, DEVICE), frame)


def _header(frame: bytes) -> dict[str, Any]:
    prefix = contract.CHUNK_PREFIX_BYTES
    (length,) = contract.CHUNK_LENGTH.unpack(frame[len(contract.CHUNK_MAGIC) : prefix])
    header: dict[str, Any] = json.loads(frame[prefix : prefix + length])
    return header


def samples() -> list[Sample]:
    """What the device sends, with every optional key it can write somewhere among them."""
    flagged = dataclasses.replace(CONTACT, clip=None, clip_missing="disk_full", clock_stepped=True)
    in_contact = dataclasses.replace(CONTACT, events=(*CONTACT.events, every_event_field()))
    orphan = dataclasses.replace(every_event_field(), contact_id=None)
    status = device.status_payload(
        device=DEVICE, site=SITE, online=True, version="0.1.0", boot_id=CONTACT.boot_id,
        outbox_depth=3, free_disk_bytes=12_345_678_912, clock_synced=True,
        at_wall_ns=START + 600 * NS, today=TODAY, health=health(),
        delivery=device.delivery_status(
            receipts=True, sent=12, delivered=9, awaiting=3, held=1, resent=2, given_up=0
        ),
    )  # fmt: skip
    frame = device.chunk_frame(
        device=DEVICE, site=SITE, clip_id=CLIP.contact_id, seq=1, total=3, offset=1024,
        data=CHUNK_DATA, clip_sha256=CLIP.sha256, clip_bytes=3000, codec="wav",
        sample_rate=16000,
    )  # fmt: skip
    contact_shape, _ = contract.MESSAGES[contract.CONTACT]
    event_shape, _ = contract.MESSAGES[contract.EVENT]
    status_shape, _ = contract.MESSAGES[contract.STATUS]
    alert_shape, _ = contract.MESSAGES[contract.ALERT]
    return [
        ("contact", contact_shape, device.contact_message(in_contact, DEVICE, SITE).payload,
         _json(contract.CONTACT)),
        ("contact without clip", contact_shape,
         device.contact_message(flagged, DEVICE, SITE).payload, _json(contract.CONTACT)),
        ("event", event_shape, device.event_message(ORPHAN, DEVICE, SITE).payload,
         _json(contract.EVENT)),
        ("event, every field", event_shape, device.event_message(orphan, DEVICE, SITE).payload,
         _json(contract.EVENT)),
        ("status", status_shape, dict(status), _json(contract.STATUS)),
        ("alert", alert_shape, device.alert_message(ALERT, ALERT_TEXT, DEVICE, SITE).payload,
         _json(contract.ALERT)),
        ("clip chunk", contract.ChunkHeader, _header(frame), _chunk),
    ]  # fmt: skip


SAMPLES = samples()


@pytest.mark.parametrize("sample", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_the_device_writes_only_declared_keys_and_the_sink_takes_the_sample(
    sample: Sample,
) -> None:
    _, shape, payload, parse = sample
    for part, path, value in positions(payload, shape):
        assert set(value) <= declared(part), (path, set(value) - declared(part))
    assert not isinstance(parse(payload), sink.Rejected | sink.Ignored), parse(payload)


def test_the_samples_write_every_declared_key() -> None:
    written: dict[type, set[str]] = {}
    for _, shape, payload, _ in SAMPLES:
        for part, _, value in positions(payload, shape):
            written.setdefault(part, set()).update(value)
    reachable = {part for part in written}
    assert {contract.ContactBody, contract.EventBody, contract.ClipMeta, contract.StatusBody,
            contract.Alarm, contract.Fault, contract.AlertBody} <= reachable  # fmt: skip
    missing = {part.__name__: declared(part) - keys for part, keys in written.items()}
    assert {name: keys for name, keys in missing.items() if keys} == {}


@pytest.mark.parametrize("sample", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_every_key_the_device_writes_is_a_key_the_sink_reads(sample: Sample) -> None:
    _, shape, payload, parse = sample
    whole = parse(payload)
    unread = [
        ".".join(map(str, (*path, key)))
        for part, path, value in positions(payload, shape)
        for key in declared(part) & set(value)
        if value[key] is not None and parse(without(payload, path, key)) == whole
    ]
    assert unread == []


def test_the_sinks_resend_request_has_the_contracts_keys_and_the_device_reads_it() -> None:
    clip_id = CLIP.contact_id
    for ranges in ([(0, 2), (5, 5)], [(0, contract.LEGACY_SEQS)]):
        body = json.loads(sink.resend_payload(clip_id, ranges))
        assert set(body) <= declared(contract.ResendRequest)
        assert contract.ResendRequest.__required_keys__ <= set(body)
        assert device.parse_resend(json.dumps(body).encode()) == (clip_id, ranges)
        if "seqs" in body:  # a device older than ranges reads the same set from seqs
            old = json.dumps({k: v for k, v in body.items() if k != "ranges"}).encode()
            _, seqs = device.parse_resend(old)
            assert {s for s, _ in seqs} == {s for a, b in ranges for s in range(a, b + 1)}


def test_the_check_finds_a_key_the_sink_does_not_read() -> None:
    """The check above can fail: a contact key the sink drops parses the same without it (as
    ``clip_missing`` and ``clock_stepped`` did before the sink read them)."""
    _, _, payload, parse = SAMPLES[1]
    payload = copy.deepcopy(payload)
    payload["contact"]["unread"] = "dropped by the sink"
    assert parse(without(payload, ("contact",), "unread")) == parse(payload)


def test_topics_are_built_and_taken_apart_by_one_definition() -> None:
    name = contract.topic(SITE, DEVICE, contract.RESEND)
    assert name == "contactpoint/v1/site-1/cp-0001/cmd/resend"
    parsed = contract.parse_topic(name)
    assert parsed == contract.Topic(SITE, DEVICE, "cmd/resend")
    assert parsed.is_command
    route = contract.parse_topic(contract.route_topic(SITE, DEVICE, "managers"))
    assert route is not None
    assert route.is_route
    assert not route.is_command
    assert contract.parse_topic("contactpoint/v1/site-1/cp-0001") is None
    assert contract.parse_topic("other/v1/site-1/cp-0001/contact") is None
    assert contract.alert_topic(SITE) == "contactpoint/v1/site-1/_site/alert"
    assert contract.shared_subscription("g") == "$share/g/contactpoint/v1/+/+/+"
