"""Fixed records from which the golden wire payloads in tests/fixtures/wire/ were produced."""

from __future__ import annotations

from edge.clock import NS
from edge.records import ClipInfo, ContactRecord, EventRecord

START = 1_795_424_400 * NS  # 2026-11-23T09:00:00Z, the wall clock at monotonic 0
DEVICE, SITE = "cp-0001", "site-1"

CLIP = ClipInfo(
    contact_id="c0ffee00000000000000000000000001",
    path="clips/c0ffee00000000000000000000000001.wav",
    codec="wav",
    sample_rate=16000,
    start_index=112_000,
    end_index=1_248_000,
    start_ns=7 * NS,
    end_ns=78 * NS,
    sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    bytes=2_272_044,
    truncated=False,
    gaps=((480_000, 488_000),),
)

EVENTS = (
    EventRecord(
        id="e0000000000000000000000000000001",
        kind="arrival",
        t_ns=10 * NS,
        wall_ns=START + 10 * NS,
        contact_id=CLIP.contact_id,
    ),
    EventRecord(
        id="e0000000000000000000000000000002",
        kind="receipt",
        t_ns=50 * NS,
        wall_ns=START + 50 * NS,
        contact_id=CLIP.contact_id,
        receipt_id="R-1001",
        data={"amount": 12.5},
    ),
    EventRecord(
        id="e0000000000000000000000000000003",
        kind="red",
        t_ns=60 * NS,
        wall_ns=START + 60 * NS,
        contact_id=CLIP.contact_id,
        button="red",
        role="red",
        gesture="short",
        duration_ns=100_000_000,
        via="gpio",
    ),
    EventRecord(
        id="e0000000000000000000000000000004",
        kind="departure",
        t_ns=75 * NS,
        wall_ns=START + 75 * NS,
        contact_id=CLIP.contact_id,
    ),
)

CONTACT = ContactRecord(
    id=CLIP.contact_id,
    mode="presence",
    start_ns=10 * NS,
    end_ns=75 * NS,
    start_wall_ns=START + 10 * NS,
    end_wall_ns=START + 75 * NS,
    ended_by="departure",
    tags=("negative", "not_positive", "productive"),
    events=EVENTS,
    clip=CLIP,
    clock_synced=True,
    boot_id="3c1e5a52-5b39-4a8e-9a39-6f0d7c1b2a11",
)

ORPHAN = EventRecord(
    id="e0000000000000000000000000000005",
    kind="red",
    t_ns=590 * NS,
    wall_ns=START + 590 * NS,
    button="red",
    role="red",
    gesture="short",
    duration_ns=100_000_000,
    via="gpio",
)

CHUNK_DATA = bytes(range(256)) * 4  # 1024 bytes
