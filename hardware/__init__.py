"""Hardware behind a narrow interface: real drivers and simulated devices, chosen in ONE place.

``edge`` uses only the names exported here. :func:`open_backend` is the single place where a
backend is chosen from a :class:`BackendSpec` (built by ``edge`` from its config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hardware._api import (
    AudioPeriod,
    AudioSource,
    ButtonEdge,
    ButtonInput,
    Device,
    DeviceFault,
    Distance,
    EdgeInput,
    EventSink,
    HardwareEvent,
    Inventory,
    RadioEdge,
    RangeSensor,
    RemoteCode,
    Samples,
)
from hardware._errors import HardwareError
from hardware.fake import (
    SimButton,
    SimCustomer,
    SimGap,
    SimMicrophone,
    SimPress,
    SimRanger,
    SimulatedBackend,
    World,
)

__all__ = [
    "AudioPeriod",
    "AudioSource",
    "AudioSpec",
    "BackendSpec",
    "ButtonEdge",
    "ButtonInput",
    "Device",
    "DeviceFault",
    "Distance",
    "EdgeInput",
    "EventSink",
    "HardwareError",
    "HardwareEvent",
    "Inventory",
    "RadioEdge",
    "RangeSensor",
    "RemoteCode",
    "Samples",
    "SimCustomer",
    "SimGap",
    "SimPress",
    "SimulatedBackend",
    "World",
    "open_backend",
]


@dataclass(frozen=True, slots=True)
class AudioSpec:
    sample_rate: int
    period_frames: int
    device: str = "default"
    wav_loop: Path | None = None  # simulated backend: loop this WAV instead of speech
    seed: int = 0


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """Which devices to open, independent of how ``edge`` configures itself."""

    backend: str
    buttons: tuple[str, ...] = ()
    ranger_interval_s: float | None = None
    audio: AudioSpec | None = None
    world: World = field(default_factory=World)


def open_backend(spec: BackendSpec) -> SimulatedBackend:
    """Open the devices ``spec`` asks for on the chosen backend."""
    if spec.backend == "simulated":
        return _open_simulated(spec)
    raise HardwareError(
        f"unknown hardware backend {spec.backend!r}; this build supports: 'simulated'"
    )


def _open_simulated(spec: BackendSpec) -> SimulatedBackend:
    from hardware._speech import LoopedWav, SpeechLike

    world = spec.world
    devices: list[SimButton | SimRanger | SimMicrophone] = []
    for index, name in enumerate(spec.buttons):
        presses = [p for p in world.presses if p.button == name]
        devices.append(SimButton(name, presses, seed=world.seed + 17 * (index + 1)))
    if spec.ranger_interval_s is not None:
        devices.append(SimRanger(world, spec.ranger_interval_s))
    if spec.audio is not None:
        audio = spec.audio
        source = (
            LoopedWav(audio.wav_loop, audio.sample_rate)
            if audio.wav_loop is not None
            else SpeechLike(audio.sample_rate, audio.seed)
        )
        devices.append(
            SimMicrophone(source.render, audio.sample_rate, audio.period_frames, world.audio_gaps)
        )
    return SimulatedBackend(devices)
