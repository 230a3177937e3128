"""Delivery receipts, sink side: after its commit the sink tells each device what it stored, so
that the device keeps a message (and its clip file) until then and sends it again otherwise.

Rules (docs/WIRE.md, "Delivery receipts"):
- A JSON message (``contact``, ``event``, ``alert``) is confirmed by its msg_id once the
  transaction that stored it committed, and again whenever it arrives once more (a duplicate:
  the device sends again because it never heard the first receipt). A ``status`` is not
  confirmed (the device keeps no outbox row for it), nor is a dead letter.
- A clip is confirmed by its clip id once it is verified and marked complete, and again for
  every chunk of it that arrives after that.
- Receipts are gathered per device and published (QoS 1, not retained) on the device's
  ``cmd/delivered`` topic when the oldest has waited ``linger_s`` or ``MAX_RECEIPT_IDS`` ids
  are waiting: several ids per message. A receipt that is lost (a broker crash, the sink
  killed before publishing) costs one resend by the device, deduplicated and confirmed again.
- Always sent, whatever the device: one older than receipts never subscribes to that topic,
  so the broker drops them.
- Not thread-safe: the worker thread owns it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cloud_sink import wire


@dataclass(frozen=True, slots=True)
class Confirm:
    """One thing a device may now forget: a JSON message (``msg_id``) or a clip (``clip_id``)."""

    site: str
    device: str
    msg_id: str | None = None
    clip_id: str | None = None


class Receipts:
    """Confirmations waiting to be published, per device."""

    def __init__(self, linger_s: float = 0.2, clock: Callable[[], float] = time.monotonic) -> None:
        self.linger_s = linger_s
        self._clock = clock
        # (site, device) -> (msg ids, clip ids); dicts keep the order and drop repeats
        self._waiting: dict[tuple[str, str], tuple[dict[str, None], dict[str, None]]] = {}
        self._count = 0
        self._since: float | None = None

    def __len__(self) -> int:
        return self._count

    def add(self, confirm: Confirm) -> None:
        msg_ids, clips = self._waiting.setdefault((confirm.site, confirm.device), ({}, {}))
        for ids, value in ((msg_ids, confirm.msg_id), (clips, confirm.clip_id)):
            if value is not None and value not in ids:
                ids[value] = None
                self._count += 1
        if self._since is None and self._count:
            self._since = self._clock()

    def due(self) -> bool:
        """Whether to publish now: the oldest waited ``linger_s``, or a message is full."""
        if self._since is None:
            return False
        return self._count >= wire.MAX_RECEIPT_IDS or self._clock() - self._since >= self.linger_s

    def take(self) -> list[tuple[str, bytes]]:
        """Every waiting confirmation as (topic, payload) messages; forgets them."""
        messages: list[tuple[str, bytes]] = []
        for (site, device), (msg_ids, clips) in self._waiting.items():
            ids = [(m, "msg") for m in msg_ids] + [(c, "clip") for c in clips]
            for start in range(0, len(ids), wire.MAX_RECEIPT_IDS):
                part = ids[start : start + wire.MAX_RECEIPT_IDS]
                payload = wire.receipt_payload(
                    site,
                    device,
                    [i for i, what in part if what == "msg"],
                    [i for i, what in part if what == "clip"],
                )
                messages.append((wire.receipt_topic(site, device), payload))
        self._waiting.clear()
        self._count = 0
        self._since = None
        return messages
