"""The device's alert rules, the "expert system": ``[[alerts.rules]]`` (the rule model is the
contract's, the same in the sink)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from contract.alerts import AlertRule, duplicate_names
from edge.config.base import Section


def default_alert_rules() -> list[AlertRule]:
    return [
        AlertRule(name="negative_burst", count="red", at_least=4, share_at_least=0.5, within_s=900),
        AlertRule(
            name="requests_per_hour",
            count="request",
            at_least=10,
            within_s=3600,
            cooldown_s=3600,
        ),
    ]


class AlertsSection(Section):
    rules: Annotated[
        list[AlertRule],
        Field(
            description="Sliding-window alert rules, checked whenever a contact or event is "
            "saved; a firing is published on <root>/alert"
        ),
    ] = Field(default_factory=default_alert_rules)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        twice = duplicate_names(self.rules)
        if twice:
            raise ValueError(f"alert rule names must be unique: {', '.join(twice)}")
        return self
