"""The buttons and remote keys at the counter: ``[input]`` (debounce, long press) and
``[[buttons]]`` (role, question, how the presses arrive)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from contract.alerts import NAME_PATTERN
from edge.config.base import FieldError, Section

Role = Literal["green", "yellow", "red", "request", "seller", "question"]

#: How a button's presses arrive: its wired pin, or a wireless remote through a receiver
Via = Literal["gpio", "rf433", "serial", "nrf24"]

RATING_ROLES: tuple[str, ...] = ("green", "yellow", "red")


class InputSection(Section):
    debounce_ms: Annotated[
        float,
        Meta(ge=0, le=500, description="A button level must hold this long to count (ms)"),
    ] = 30.0
    long_press_s: Annotated[
        float,
        Meta(
            ge=0.3,
            le=30,
            description="Seller button held at least this long = force majeure; shorter = "
            "survey/contact start (s)",
        ),
    ] = 2.0


class ButtonConfig(Section):
    name: Annotated[str, Meta(pattern=NAME_PATTERN, description="Unique name of the button")]
    role: Annotated[
        Role,
        Meta(
            description="green/yellow/red: customer rating; request: staff saw a request or "
            "complaint not about their own work; seller: short press starts a survey/contact, "
            "long press = force majeure; question: a numbered question (button-window mode)"
        ),
    ]
    question: (
        Annotated[
            int, Meta(ge=1, le=99, description="Question number, required when role = 'question'")
        ]
        | None
    ) = None
    label: Annotated[str, Meta(max_length=200, description="Human text, e.g. the question")] = ""
    via: Annotated[
        Via | list[Via],
        Meta(
            description="How presses arrive: 'gpio' = wired to 'pin'; 'rf433', 'serial' or "
            "'nrf24' = a wireless remote whose key is 'code'. A button with both lists them, "
            "e.g. ['gpio', 'rf433'] (a scenario press uses the first unless it says)"
        ),
    ] = "gpio"
    pin: (
        Annotated[int, Meta(ge=0, le=27, description="BCM GPIO number (via includes 'gpio')")]
        | None
    ) = None
    pull_up: Annotated[
        bool, Meta(description="Use the internal pull-up (button wired to ground)")
    ] = True
    active_high: Annotated[
        bool | None,
        Meta(
            description="Override the active level (unset: pressed = pulled to the other rail; "
            "set it for normally-closed switches)"
        ),
    ] = None
    code: (
        Annotated[
            str,
            Meta(
                pattern=r"^[0-9A-Za-z:._-]{1,64}$",
                description="Remote key bound to this button (via includes rf433, serial or "
                "nrf24); 'contactpoint learn ROLE' fills it in and keeps a wired pin",
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        if isinstance(self.via, list):
            if not self.via:
                raise FieldError("via", "name at least one way, e.g. 'gpio' or ['gpio', 'rf433']")
            for via in self.via:
                if self.via.count(via) > 1:
                    raise FieldError("via", f"'{via}' is listed twice")
        if self.role == "question" and self.question is None:
            raise ValueError("role 'question' needs 'question = N' (the question's number)")
        if self.role != "question" and self.question is not None:
            raise ValueError(f"'question' is only for role 'question', not '{self.role}'")

    @property
    def vias(self) -> tuple[Via, ...]:
        """The ways this button's presses arrive, in the configured order."""
        return (self.via,) if isinstance(self.via, str) else tuple(self.via)

    @property
    def wired(self) -> bool:
        """Read from its GPIO pin (a wireless key, if it has a ``code``, works as well)."""
        return "gpio" in self.vias


def default_buttons() -> list[ButtonConfig]:
    return [
        ButtonConfig(name="green", role="green", pin=5),
        ButtonConfig(name="yellow", role="yellow", pin=6),
        ButtonConfig(name="red", role="red", pin=13),
        ButtonConfig(name="request", role="request", pin=19),
        ButtonConfig(name="seller", role="seller", pin=26),
    ]
