"""Tags from what happened during a contact: ``[[tagging.rules]]``."""

from __future__ import annotations

import difflib
from typing import Annotated, Literal

from msgspec import Meta, field

from contract.alerts import EVENT_KINDS, NAME_PATTERN, is_question_kind
from edge.config.base import Section
from edge.config.buttons import RATING_ROLES
from edge.config.contacts import Mode

#: the modes a tag rule may name: the device's cutting modes and ``import`` (a dictaphone's
#: recording cut around a CRM's event, edge/importer)
RuleMode = Mode | Literal["import"]

ENDED_BY: tuple[str, ...] = ("departure", "timeout", "window", "answer", "no_answer", "shutdown")


class TagRule(Section):
    tag: Annotated[str, Meta(pattern=NAME_PATTERN, description="Tag given when the rule holds")]
    if_any: Annotated[
        list[str], Meta(description="Holds if at least one of these events happened")
    ] = []
    if_none: Annotated[list[str], Meta(description="Holds if none of these events happened")] = []
    ended_by: Annotated[
        list[str], Meta(description="Holds if the contact ended in one of these ways")
    ] = []
    modes: Annotated[
        list[RuleMode],
        Meta(description="Only for contacts of these modes (empty = all)"),
    ] = []

    def __post_init__(self) -> None:
        if not (self.if_any or self.if_none or self.ended_by):
            raise ValueError(f"rule '{self.tag}' needs if_any, if_none or ended_by")
        for kind in [*self.if_any, *self.if_none]:
            if kind not in EVENT_KINDS and not is_question_kind(kind):
                hint = difflib.get_close_matches(kind, EVENT_KINDS, n=1)
                raise ValueError(
                    f"unknown event kind '{kind}'"
                    + (f" (did you mean '{hint[0]}'?)" if hint else "")
                    + f"; allowed: {', '.join(EVENT_KINDS)}, question:N"
                )
        for way in self.ended_by:
            if way not in ENDED_BY:
                raise ValueError(f"unknown ended_by '{way}'; allowed: {', '.join(ENDED_BY)}")


def default_rules() -> list[TagRule]:
    ratings = list(RATING_ROLES)
    return [
        TagRule(tag="negative", if_any=["red"]),
        TagRule(tag="not_positive", if_none=["green"]),
        TagRule(tag="positive", if_any=["green"]),
        TagRule(tag="unsure", if_any=["yellow"]),
        TagRule(tag="silent", if_none=ratings, modes=["presence", "survey", "import"]),
        TagRule(tag="productive", if_any=["receipt"], modes=["presence"]),
        TagRule(tag="unproductive", if_none=["receipt"], modes=["presence"]),
        TagRule(tag="request", if_any=["request"]),
        TagRule(tag="force_majeure", if_any=["seller_long"]),
        TagRule(tag="timeout", ended_by=["timeout"]),
    ]


class TaggingSection(Section):
    rules: Annotated[
        list[TagRule],
        Meta(description="Tag rules, evaluated on every contact when it closes"),
    ] = field(default_factory=default_rules)
