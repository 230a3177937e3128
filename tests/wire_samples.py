"""Fixed records from which the golden wire payloads in tests/fixtures/wire/ were produced."""

from __future__ import annotations

from contract.alerts import Firing, alert_id
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
        video_url="https://nvr.local/archive?camera=3&t=1795424460",
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
    staff="anna",
    video_url="https://nvr.local/archive?camera=3&t=1795424410",
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

#: the golden alert (tests/fixtures/wire/alert.json): 4 red of 6 ratings within 15 minutes
ALERT = Firing(
    id=alert_id(DEVICE, "negative_burst", START + 590 * NS),
    rule="negative_burst",
    scope=DEVICE,
    at_ns=START + 590 * NS,
    window_start_ns=START + 590 * NS - 900 * NS,
    count=4,
    at_least=4,
    total=6,
    share=0.6667,
    share_at_least=0.5,
    refs=(
        "e0000000000000000000000000000003",
        "e0000000000000000000000000000006",
        "e0000000000000000000000000000007",
        "e0000000000000000000000000000005",
    ),
)
ALERT_TEXT = "negative_burst: 4 x red within 15 min at site-1/cp-0001 (4 of 6, 67%)"

#: today's live counters in the golden status (edge.live.TodayCounters.snapshot's keys)
TODAY = {
    "date": "2026-11-23",
    "served": 4,
    "positive": 1,
    "negative": 1,
    "silent": 2,
    "productive": 2,
    "receipts": 3,
    "surveys": 2,
    "force_majeure": 1,
    "visitors": 4,
    "support_index": 0.25,
    "dissatisfaction_index": 0.25,
    "staff_dissatisfaction_index": 0.5,
    "loyalty_index": -0.25,
    "personal_conversion": 0.75,
    "productive_share": 0.5,
    "exact_conversion": 0.6667,
    "visitor_coverage": 0.5,
    "force_majeure_level": 0.5,
    "meaningful": False,
}
