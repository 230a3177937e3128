"""How contacts are cut: ``[contacts]`` (modes, maximum length, pre/post roll, the window and the
survey)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, field

from edge.config.base import Section
from edge.config.buttons import Role

Mode = Literal["presence", "window", "survey"]


class WindowSection(Section):
    before_s: Annotated[
        float,
        Meta(
            ge=0,
            le=600,
            description="A window press reaches this far back: audio and events before it are "
            "its window's; so a window (or an event outside every contact) is handed out this "
            "long after its end, in case a later press reaches it (s)",
        ),
    ] = 60.0
    after_s: Annotated[
        float, Meta(ge=0, le=600, description="Audio kept after a window press (s)")
    ] = 60.0
    roles: Annotated[
        list[Role],
        Meta(
            description="Roles whose press cuts a window when no presence or survey contact is "
            "open; overlapping or touching windows are one contact"
        ),
    ] = field(default_factory=lambda: ["question", "request"])


class SurveySection(Section):
    answer_window_s: Annotated[
        float,
        Meta(
            ge=1,
            le=600,
            description="After the seller's short press the customer has this long to rate; "
            "no rating = silent (s)",
        ),
    ] = 30.0


class ContactsSection(Section):
    modes: Annotated[
        list[Mode],
        Meta(
            description="Which cutting modes run: presence (arrival -> departure), window "
            "(around a press), survey (seller's short press -> answer)"
        ),
    ] = field(default_factory=lambda: ["presence", "window", "survey"])
    max_duration_s: Annotated[
        float,
        Meta(
            ge=5,
            le=7200,
            description="A contact longer than this is closed as 'timeout' (s); a longer "
            "window is cut here into pieces that do not overlap",
        ),
    ] = 900.0
    pre_roll_s: Annotated[
        float, Meta(ge=0, le=120, description="Audio kept before a contact's start (s)")
    ] = 3.0
    post_roll_s: Annotated[
        float, Meta(ge=0, le=120, description="Audio kept after a contact's end (s)")
    ] = 3.0
    window: WindowSection = WindowSection()
    survey: SurveySection = SurveySection()

    def __post_init__(self) -> None:
        if len(set(self.modes)) != len(self.modes):
            raise ValueError(f"modes lists a mode twice: {self.modes}")
