"""The device's alert rules, the "expert system": ``[[alerts.rules]]`` (the rule model is the
contract's, the same in the sink)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, field

from contract.alerts import AlertRule, duplicate_names
from edge.config.base import Section


def default_alert_rules() -> list[AlertRule]:
    return [
        AlertRule(
            name="negative_burst", count="red", at_least=4, share_at_least=0.5, within_s=900.0
        ),
        AlertRule(
            name="requests_per_hour",
            count="request",
            at_least=10,
            within_s=3600.0,
            cooldown_s=3600.0,
        ),
    ]


class AlertsSection(Section):
    rules: Annotated[
        list[AlertRule],
        Meta(
            description="Sliding-window alert rules, checked whenever a contact or event is "
            "saved; a firing is published on <root>/alert"
        ),
    ] = field(default_factory=default_alert_rules)

    def __post_init__(self) -> None:
        twice = duplicate_names(self.rules)
        if twice:
            raise ValueError(f"alert rule names must be unique: {', '.join(twice)}")
