"""Scenario files: a shift at a simulated counter, in TOML, validated like the config.

Times are seconds from t = 0; ``start`` gives the wall-clock time of t = 0. The scenario only
describes what happens in the world (people arrive, press buttons, the till prints a receipt);
the simulated hardware turns that into raw edges, pings and audio periods for the real pipeline.
"""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from msgspec import Meta, field

from edge.clock import NS, seconds_to_ns
from edge.config import Config, ConfigError, Section, load_toml, parse_model
from edge.staff import check_name
from hardware import SimCustomer, SimGap, SimPress, World

MAX_DURATION_S = 7 * 24 * 3600.0


class ScenarioAudio(Section):
    source: Annotated[
        str,
        Meta(
            min_length=1,
            description="'speech' (built-in speech-like generator) or the path of a 16-bit mono "
            "WAV at the configured rate, looped (relative paths are relative to the scenario)",
        ),
    ] = "speech"
    seed: Annotated[int, Meta(ge=0, description="Seed of the speech generator")] = 0


class ScenarioSensor(Section):
    background_m: (
        Annotated[
            float, Meta(ge=0.05, le=10, description="Distance to the wall behind the customer (m)")
        ]
        | None
    ) = 3.0
    noise_m: Annotated[float, Meta(ge=0, le=0.5, description="Ranging noise (std dev, m)")] = 0.01
    no_echo_rate: Annotated[
        float, Meta(ge=0, le=0.9, description="Share of pings lost on a customer's clothing")
    ] = 0.05
    seed: Annotated[int, Meta(ge=0, description="Seed of the noise")] = 0


class ScenarioCustomer(Section):
    arrive: Annotated[float, Meta(ge=0, description="Arrival (s from t=0)")]
    leave: (
        Annotated[float, Meta(ge=0, description="Departure (s); unset = never leaves")] | None
    ) = None
    distance_m: Annotated[
        float, Meta(ge=0.05, le=4, description="Where the customer stands (m)")
    ] = 0.5

    def __post_init__(self) -> None:
        if self.leave is not None and self.leave <= self.arrive:
            raise ValueError(f"leave ({self.leave}) must be after arrive ({self.arrive})")


class ScenarioPress(Section):
    at: Annotated[float, Meta(ge=0, description="When the button goes down (s)")]
    button: Annotated[str, Meta(min_length=1, description="A button name or role")]
    hold: Annotated[float, Meta(gt=0, le=600, description="How long it is held (s)")] = 0.1
    bounces: Annotated[
        int, Meta(ge=0, le=20, description="Contact bounces at press and release")
    ] = 3
    via: Annotated[
        Literal["gpio", "rf433", "serial", "nrf24"] | None,
        Meta(
            description="How the press reaches the device: 'rf433' replays the remote's pulse "
            "train through the 433 MHz decoder, 'serial' an RFLink line through the serial "
            "parser; unset = the button's own 'via' (the first, if it lists several)"
        ),
    ] = None


class ScenarioReceipt(Section):
    at: Annotated[float, Meta(ge=0, description="When the till reports the sale (s)")]
    id: Annotated[str, Meta(max_length=100, description="The receipt's number")] = ""
    amount: Annotated[float, Meta(ge=0, description="Sale amount")] | None = None


class ScenarioOnDuty(Section):
    at: Annotated[float, Meta(ge=0, description="When the call reaches the device (s)")]
    name: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=64,
                description="Who is on duty from now (like 'POST /staff' at the till); unset = "
                "clear the call, the shift schedule applies again (like 'DELETE /staff')",
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        if self.name is not None:
            check_name(self.name)


class ScenarioGap(Section):
    at: Annotated[float, Meta(ge=0, description="Capture stops delivering audio at (s)")]
    length: Annotated[float, Meta(gt=0, le=3600, description="For this long (s)")]


class Scenario(Section):
    start: Annotated[
        datetime, Meta(tz=True, description="Wall-clock time of t = 0, with a time zone")
    ]
    duration: Annotated[float, Meta(gt=0, le=MAX_DURATION_S, description="Length of the shift (s)")]
    audio: ScenarioAudio = ScenarioAudio()
    sensor: ScenarioSensor = ScenarioSensor()
    customers: list[ScenarioCustomer] = field(default_factory=list)
    presses: list[ScenarioPress] = field(default_factory=list)
    receipts: list[ScenarioReceipt] = field(default_factory=list)
    audio_gaps: list[ScenarioGap] = field(default_factory=list)
    on_duty: list[ScenarioOnDuty] = field(default_factory=list)

    def __post_init__(self) -> None:
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
        for i, d in enumerate(self.on_duty):
            check("on_duty", i, d.at)

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
            continue
        button = config.button(press.button)
        via = press.via or (button.vias[0] if button else "gpio")
        if via == "nrf24":
            problems.append(
                f"  - presses[{i}].via (got 'nrf24'): nRF24 buttons are not simulated; "
                "allowed: 'gpio', 'rf433', 'serial'"
            )
        elif via != "gpio" and button is not None and button.code is None:
            problems.append(
                f"  - presses[{i}] on {press.button!r} via {via}: the button has no remote "
                "code; bind one with 'contactpoint learn ROLE' or set code = "
                "'<protocol>:<hex>' on the button (e.g. 'ev1527:27fd49')"
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
                via=press.via or button.vias[0],
                code=button.code,
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


def busy_shift(
    hours: float,
    seed: int = 1,
    start: str = "2026-11-23T09:00:00Z",
    *,
    incident_at_s: float | None = None,
    incident_s: float = 600.0,
) -> Scenario:
    """A generated shift at a busy counter: a customer every ~1.5 min staying 20–70 s; ratings,
    receipts, now and then a request, a seller's survey by phone and a force-majeure press.
    With ``incident_at_s``, something goes wrong for ``incident_s`` from then on (the card
    terminal is down): every customer in that spell rates red — what the alert rules are for.
    Deterministic for a seed; used by ``contactpoint demo`` and the benchmarks."""
    rng = random.Random(seed)
    duration = hours * 3600
    customers: list[dict[str, Any]] = []
    presses: list[dict[str, Any]] = []
    receipts: list[dict[str, Any]] = []
    t = 15.0
    while t < duration - 150:
        stay = rng.uniform(20, 70)
        customers.append({"arrive": t, "leave": t + stay, "distance_m": rng.uniform(0.4, 0.8)})
        in_incident = incident_at_s is not None and 0 <= t - incident_at_s < incident_s
        if in_incident:
            presses.append({"at": round(t + stay * 0.8, 3), "button": "red"})
        elif rng.random() < 0.6:
            rating = rng.choice(["green", "green", "green", "yellow", "red"])
            presses.append({"at": round(t + stay * 0.8, 3), "button": rating})
        if rng.random() < 0.55:
            receipts.append({"at": round(t + stay * 0.6, 3), "id": f"R-{len(receipts) + 1:05d}"})
        if rng.random() < 0.08:
            presses.append({"at": round(t + stay * 0.3, 3), "button": "seller", "hold": 3.0})
        t += stay
        gap = rng.uniform(15, 40)
        if gap > 30 and rng.random() < 0.3:  # between customers: staff report a request
            presses.append({"at": round(t + gap / 2, 3), "button": "request"})
        elif gap > 25 and rng.random() < 0.3:  # or the seller runs a survey by phone
            presses.append({"at": round(t + 5, 3), "button": "seller", "hold": 0.3})
            if rng.random() < 0.7:
                presses.append({"at": round(t + 12, 3), "button": rng.choice(["green", "red"])})
        t += gap
    return Scenario.from_dict(
        {
            "start": start,
            "duration": duration,
            "customers": customers,
            "presses": presses,
            "receipts": receipts,
        }
    )
