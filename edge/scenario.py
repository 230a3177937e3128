"""Scenario files: a shift at a simulated counter, in TOML, validated like the config.

Times are seconds from t = 0; ``start`` gives the wall-clock time of t = 0. The scenario only
describes what happens in the world (people arrive, press buttons, the till prints a receipt);
the simulated hardware turns that into raw edges, pings and audio periods for the real pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import AwareDatetime, Field, model_validator

from edge.clock import NS, seconds_to_ns
from edge.config import Config, ConfigError, Section, load_toml, parse_model
from hardware import SimCustomer, SimGap, SimPress, World

MAX_DURATION_S = 7 * 24 * 3600.0


class ScenarioAudio(Section):
    source: Annotated[
        str,
        Field(
            min_length=1,
            description="'speech' (built-in speech-like generator) or the path of a 16-bit mono "
            "WAV at the configured rate, looped (relative paths are relative to the scenario)",
        ),
    ] = "speech"
    seed: Annotated[int, Field(ge=0, description="Seed of the speech generator")] = 0


class ScenarioSensor(Section):
    background_m: Annotated[
        float | None,
        Field(ge=0.05, le=10, description="Distance to the wall behind the customer (m)"),
    ] = 3.0
    noise_m: Annotated[float, Field(ge=0, le=0.5, description="Ranging noise (std dev, m)")] = 0.01
    no_echo_rate: Annotated[
        float, Field(ge=0, le=0.9, description="Share of pings lost on a customer's clothing")
    ] = 0.05
    seed: Annotated[int, Field(ge=0, description="Seed of the noise")] = 0


class ScenarioCustomer(Section):
    arrive: Annotated[float, Field(ge=0, description="Arrival (s from t=0)")]
    leave: Annotated[
        float | None, Field(ge=0, description="Departure (s); unset = never leaves")
    ] = None
    distance_m: Annotated[
        float, Field(ge=0.05, le=4, description="Where the customer stands (m)")
    ] = 0.5

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.leave is not None and self.leave <= self.arrive:
            raise ValueError(f"leave ({self.leave}) must be after arrive ({self.arrive})")
        return self


class ScenarioPress(Section):
    at: Annotated[float, Field(ge=0, description="When the button goes down (s)")]
    button: Annotated[str, Field(min_length=1, description="A button name or role")]
    hold: Annotated[float, Field(gt=0, le=600, description="How long it is held (s)")] = 0.1
    bounces: Annotated[
        int, Field(ge=0, le=20, description="Contact bounces at press and release")
    ] = 3


class ScenarioReceipt(Section):
    at: Annotated[float, Field(ge=0, description="When the till reports the sale (s)")]
    id: Annotated[str, Field(max_length=100, description="The receipt's number")] = ""
    amount: Annotated[float | None, Field(ge=0, description="Sale amount")] = None


class ScenarioGap(Section):
    at: Annotated[float, Field(ge=0, description="Capture stops delivering audio at (s)")]
    length: Annotated[float, Field(gt=0, le=3600, description="For this long (s)")]


class Scenario(Section):
    start: Annotated[AwareDatetime, Field(description="Wall-clock time of t = 0, with a time zone")]
    duration: Annotated[
        float, Field(gt=0, le=MAX_DURATION_S, description="Length of the shift (s)")
    ]
    audio: ScenarioAudio = ScenarioAudio()
    sensor: ScenarioSensor = ScenarioSensor()
    customers: list[ScenarioCustomer] = Field(default_factory=list)
    presses: list[ScenarioPress] = Field(default_factory=list)
    receipts: list[ScenarioReceipt] = Field(default_factory=list)
    audio_gaps: list[ScenarioGap] = Field(default_factory=list)

    @model_validator(mode="after")
    def _inside(self) -> Self:
        def check(what: str, index: int, t: float | None) -> None:
            if t is not None and t > self.duration:
                raise ValueError(
                    f"{what}[{index}] at {t} s is after the end of the scenario "
                    f"(duration = {self.duration} s)"
                )

        for i, c in enumerate(self.customers):
            check("customers", i, c.arrive)
            check("customers", i, c.leave)
        for i, p in enumerate(self.presses):
            check("presses", i, p.at)
        for i, r in enumerate(self.receipts):
            check("receipts", i, r.at)
        for i, g in enumerate(self.audio_gaps):
            check("audio_gaps", i, g.at)
        return self

    @property
    def start_wall_ns(self) -> int:
        return int(self.start.timestamp()) * NS + self.start.microsecond * 1000

    @property
    def duration_ns(self) -> int:
        return seconds_to_ns(self.duration)


def load_scenario(path: Path, config: Config) -> Scenario:
    """Load and validate a scenario, including its references to the config's buttons."""
    scenario = parse_model(Scenario, load_toml(path, "scenario"), str(path))
    problems: list[str] = []
    for i, press in enumerate(scenario.presses):
        if config.button(press.button) is None:
            names = ", ".join(b.name for b in config.buttons)
            problems.append(
                f"  - presses[{i}].button (got {press.button!r}): no button or role of that "
                f"name in the config; allowed: {names}"
            )
    if scenario.audio.source != "speech":
        wav = (path.parent / scenario.audio.source).resolve()
        if not wav.is_file():
            problems.append(
                f"  - audio.source (got {scenario.audio.source!r}): no such file ({wav}); "
                "allowed: 'speech' or a path to a WAV file"
            )
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem(s):\n" + "\n".join(problems))
    return scenario


def audio_path(scenario: Scenario, scenario_path: Path) -> Path | None:
    if scenario.audio.source == "speech":
        return None
    return (scenario_path.parent / scenario.audio.source).resolve()


def build_world(scenario: Scenario, config: Config) -> World:
    """The scenario as the simulated hardware sees it."""
    presses: list[SimPress] = []
    for press in scenario.presses:
        button = config.button(press.button)
        if button is None:  # load_scenario has checked this
            raise ConfigError(f"press on unknown button {press.button!r}")
        presses.append(
            SimPress(
                button=button.name,
                at_ns=seconds_to_ns(press.at),
                hold_ns=seconds_to_ns(press.hold),
                bounces=press.bounces,
            )
        )
    return World(
        presses=presses,
        customers=[
            SimCustomer(
                arrive_ns=seconds_to_ns(c.arrive),
                leave_ns=None if c.leave is None else seconds_to_ns(c.leave),
                distance_m=c.distance_m,
            )
            for c in scenario.customers
        ],
        audio_gaps=[
            SimGap(at_ns=seconds_to_ns(g.at), length_ns=seconds_to_ns(g.length))
            for g in scenario.audio_gaps
        ],
        background_m=scenario.sensor.background_m,
        noise_m=scenario.sensor.noise_m,
        no_echo_rate=scenario.sensor.no_echo_rate,
        seed=scenario.sensor.seed,
    )
