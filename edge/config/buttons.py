"""The buttons and remote keys at the counter: ``[input]`` (debounce, long press) and
``[[buttons]]`` (role, question, how the presses arrive)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from contract.alerts import NAME_PATTERN
from edge.config.base import Section

Role = Literal["green", "yellow", "red", "request", "seller", "question"]

#: How a button's presses arrive: its wired pin, or a wireless remote through a receiver
Via = Literal["gpio", "rf433", "serial", "nrf24"]

RATING_ROLES: tuple[str, ...] = ("green", "yellow", "red")


class InputSection(Section):
    debounce_ms: Annotated[
        float,
        Field(ge=0, le=500, description="A button level must hold this long to count (ms)"),
    ] = 30.0
    long_press_s: Annotated[
        float,
        Field(
            ge=0.3,
            le=30,
            description="Seller button held at least this long = force majeure; shorter = "
            "survey/contact start (s)",
        ),
    ] = 2.0


class ButtonConfig(Section):
    name: Annotated[str, Field(pattern=NAME_PATTERN, description="Unique name of the button")]
    role: Annotated[
        Role,
        Field(
            description="green/yellow/red: customer rating; request: staff saw a request or "
            "complaint not about their own work; seller: short press starts a survey/contact, "
            "long press = force majeure; question: a numbered question (button-window mode)"
        ),
    ]
    question: Annotated[
        int | None,
        Field(ge=1, le=99, description="Question number, required when role = 'question'"),
    ] = None
    label: Annotated[str, Field(max_length=200, description="Human text, e.g. the question")] = ""
    via: Annotated[
        Via | list[Via],
        Field(
            description="How presses arrive: 'gpio' = wired to 'pin'; 'rf433', 'serial' or "
            "'nrf24' = a wireless remote whose key is 'code'. A button with both lists them, "
            "e.g. ['gpio', 'rf433'] (a scenario press uses the first unless it says)"
        ),
    ] = "gpio"
    pin: Annotated[
        int | None, Field(ge=0, le=27, description="BCM GPIO number (via includes 'gpio')")
    ] = None
    pull_up: Annotated[
        bool, Field(description="Use the internal pull-up (button wired to ground)")
    ] = True
    active_high: Annotated[
        bool | None,
        Field(
            description="Override the active level (unset: pressed = pulled to the other rail; "
            "set it for normally-closed switches)"
        ),
    ] = None
    code: Annotated[
        str | None,
        Field(
            pattern=r"^[0-9A-Za-z:._-]{1,64}$",
            description="Remote key bound to this button (via includes rf433, serial or "
            "nrf24); 'contactpoint learn ROLE' fills it in and keeps a wired pin",
        ),
    ] = None

    @field_validator("via")
    @classmethod
    def _via_list(cls, value: Via | list[Via]) -> Via | list[Via]:
        if isinstance(value, list):
            if not value:
                raise ValueError("name at least one way, e.g. 'gpio' or ['gpio', 'rf433']")
            for via in value:
                if value.count(via) > 1:
                    raise ValueError(f"'{via}' is listed twice")
        return value

    @property
    def vias(self) -> tuple[Via, ...]:
        """The ways this button's presses arrive, in the configured order."""
        return (self.via,) if isinstance(self.via, str) else tuple(self.via)

    @property
    def wired(self) -> bool:
        """Read from its GPIO pin (a wireless key, if it has a ``code``, works as well)."""
        return "gpio" in self.vias

    @model_validator(mode="after")
    def _question_number(self) -> Self:
        if self.role == "question" and self.question is None:
            raise ValueError("role 'question' needs 'question = N' (the question's number)")
        if self.role != "question" and self.question is not None:
            raise ValueError(f"'question' is only for role 'question', not '{self.role}'")
        return self


def default_buttons() -> list[ButtonConfig]:
    return [
        ButtonConfig(name="green", role="green", pin=5),
        ButtonConfig(name="yellow", role="yellow", pin=6),
        ButtonConfig(name="red", role="red", pin=13),
        ButtonConfig(name="request", role="request", pin=19),
        ButtonConfig(name="seller", role="seller", pin=26),
    ]
