"""What stays on the device and for how long: ``[storage]`` (the disk budget) and
``[retention]`` (deleting audio by age)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from edge.config.base import Section


class StorageSection(Section):
    max_bytes: Annotated[
        int,
        Meta(
            ge=0,
            description="Disk budget of this device's data (clips + store) in bytes; when it is "
            "reached the oldest delivered clips are deleted first. 0 = no budget (the disk's "
            "own size; a full disk is handled the same way)",
        ),
    ] = 0
    delete_undelivered: Annotated[
        bool,
        Meta(
            description="When deleting delivered clips is not enough, also delete the oldest "
            "clips not yet delivered (their contacts are kept and still sent, without audio)",
        ),
    ] = False


class RetentionSection(Section):
    audio_days: (
        Annotated[
            float,
            Meta(
                ge=0,
                le=36500,
                description="Delete a clip's audio this many days after its contact ended "
                "(personal data: keep it no longer than needed); the contact, its events and "
                "tags stay. "
                "Unset = keep audio until the disk budget needs the room",
            ),
        ]
        | None
    ) = None
    delete_undelivered: Annotated[
        bool,
        Meta(
            description="Also delete, by age, audio the sink has not acknowledged yet (default: "
            "an undelivered clip is kept until it is delivered, however old)",
        ),
    ] = False
    interval_s: Annotated[
        float,
        Meta(ge=10, le=86400, description="How often the daemon enforces the retention (s)"),
    ] = 3600.0
