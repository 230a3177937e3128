"""Hardware behind a narrow interface: real drivers and simulated devices, chosen in ONE place.

``edge`` uses only the names exported here. :func:`open_backend` is the single place where a
backend is chosen from a :class:`BackendSpec` (built by ``edge`` from its config): ``simulated``
(:class:`SimulatedBackend`, driven by ``advance_to`` in virtual time) or ``pi``
(:class:`LiveBackend`, the real drivers). Both have an ``inventory`` and ``start(sink)`` /
``stop()``. Within ``pi``, the 433 MHz receiver's own backend (``Rf433Spec.backend``: ``gpiod``
by default, or ``pigpio``) and the pin factory of buttons and ranger are chosen in ``_pi.py``.
Wiring of the real parts, and which backend each part uses: ``hardware/WIRING.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

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
from hardware._pi import LiveBackend, open_pi
from hardware._streamurl import check_stream_url
from hardware.fake import (
    SimButton,
    SimCustomer,
    SimDevice,
    SimGap,
    SimMicrophone,
    SimPress,
    SimRadio,
    SimRanger,
    SimRflink,
    SimulatedBackend,
    World,
)
from hardware.serial_rx import remote_key

if TYPE_CHECKING:
    from hardware.alsa import PromptPlayer

__all__ = [
    "RF433_BACKENDS",
    "AudioPeriod",
    "AudioSource",
    "AudioSpec",
    "Backend",
    "BackendSpec",
    "ButtonEdge",
    "ButtonInput",
    "ButtonSpec",
    "Device",
    "DeviceFault",
    "Distance",
    "EdgeInput",
    "EventSink",
    "HardwareError",
    "HardwareEvent",
    "Inventory",
    "LiveBackend",
    "Nrf24Spec",
    "RadioEdge",
    "RangeSensor",
    "RangerSpec",
    "RemoteCode",
    "Rf433Spec",
    "Samples",
    "SerialSpec",
    "SimCustomer",
    "SimGap",
    "SimPress",
    "SimulatedBackend",
    "World",
    "check_stream_url",
    "open_backend",
    "open_prompt_player",
    "remote_key",
]

#: What :func:`open_backend` returns: both start/stop with a sink and have an ``inventory``;
#: only the simulated one is driven by ``advance_to`` (narrow with ``isinstance``).
Backend = LiveBackend | SimulatedBackend

#: The 433 MHz receiver's data pin the simulation uses when the spec names none (BCM 27, the
#: pin WIRING.md assigns to it).
DEFAULT_RF433_GPIO = 27


@dataclass(frozen=True, slots=True)
class ButtonSpec:
    """A wired button (``pin`` is a BCM number; ``pin=None`` for simulated buttons)."""

    name: str
    pin: int | None = None
    pull_up: bool = True
    active_high: bool | None = None


@dataclass(frozen=True, slots=True)
class RangerSpec:
    trigger_pin: int
    echo_pin: int
    interval_s: float = 0.1
    temperature_c: float = 20.0
    max_distance_m: float = 4.0


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """The microphone: ``device`` is an ALSA name, or a stream URL (``rtsp://``, ``rtsps://``,
    ``http://``, ``https://``) read through PyAV; ``ca_file`` checks a TLS stream's certificate."""

    sample_rate: int
    period_frames: int
    device: str = "default"
    ca_file: str | None = None
    wav_loop: Path | None = None  # simulated backend: loop this WAV instead of speech
    seed: int = 0


#: How the 433 MHz receiver's data pin is read: the kernel's GPIO character device through
#: libgpiod (default, every Pi incl. the Pi 5), or the pigpio daemon (older setups).
RF433_BACKENDS = ("gpiod", "pigpio")


@dataclass(frozen=True, slots=True)
class Rf433Spec:
    """A 433 MHz OOK receiver's data pin (BCM ``gpio``), read by ``backend``: ``gpiod``
    (the kernel time-stamps edges; ``glitch_us`` is applied by the decoder's pulse layer) or
    ``pigpio`` (pigpiod's callbacks and its glitch filter)."""

    gpio: int
    watchdog_ms: int = 20
    glitch_us: int = 100
    backend: str = "gpiod"


@dataclass(frozen=True, slots=True)
class SerialSpec:
    """An RFLink-style USB receiver."""

    port: str
    baudrate: int = 57600
    repeat_window_s: float = 0.5


@dataclass(frozen=True, slots=True)
class Nrf24Spec:
    ce_pin: int = 22
    csn: int = 0
    channel: int = 76
    address: bytes = b"CPBTN"


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """Which devices to open, independent of how ``edge`` configures itself."""

    backend: str  # "simulated" | "pi"
    buttons: tuple[ButtonSpec, ...] = ()
    ranger: RangerSpec | None = None
    audio: AudioSpec | None = None
    rf433: Rf433Spec | None = None
    serial: SerialSpec | None = None
    nrf24: Nrf24Spec | None = None
    pin_factory: str = "lgpio"  # lgpio | pigpio | rpigpio | native | mock
    pigpio_host: str = "localhost"
    pigpio_port: int = 8888
    world: World = field(default_factory=World)  # the simulated backend's script


def open_prompt_player(device: str) -> PromptPlayer:
    """An ALSA player for short prompts (played on its own thread, never blocking capture)."""
    from hardware.alsa import PromptPlayer

    return PromptPlayer(device)


def open_backend(spec: BackendSpec) -> Backend:
    """Open the devices ``spec`` asks for on the chosen backend (``simulated`` or ``pi``).

    Nothing is started yet: call ``start(sink)``. A configuration error raises
    :class:`HardwareError`; a missing or broken device on ``pi`` is reported at start.
    """
    if spec.backend == "simulated":
        return _open_simulated(spec)
    if spec.backend == "pi":
        return open_pi(spec)
    raise HardwareError(
        f"unknown hardware backend {spec.backend!r}; this build supports: 'simulated', 'pi'"
    )


def _open_simulated(spec: BackendSpec) -> SimulatedBackend:
    from hardware._speech import LoopedWav, SpeechLike

    world = spec.world
    devices: list[SimDevice] = []
    for index, button in enumerate(spec.buttons):
        presses = [p for p in world.presses if p.button == button.name and p.via == "gpio"]
        devices.append(SimButton(button.name, presses, seed=world.seed + 17 * (index + 1)))
    if spec.rf433 is not None or any(p.via == "rf433" for p in world.presses):
        rf433 = spec.rf433 or Rf433Spec(DEFAULT_RF433_GPIO)
        devices.append(
            _simulated(
                "rf433",
                lambda: SimRadio(
                    world,
                    rf433.gpio,
                    seed=world.seed + 433,
                    noise_edges_per_s=world.rf_noise_edges_per_s,
                    watchdog_ms=rf433.watchdog_ms,
                ),
            )
        )
    if spec.serial is not None or any(p.via == "serial" for p in world.presses):
        window = spec.serial.repeat_window_s if spec.serial is not None else 0.5
        devices.append(
            _simulated(
                "rflink",
                lambda: SimRflink(world, seed=world.seed + 57600, repeat_window_s=window),
            )
        )
    if spec.ranger is not None:
        devices.append(SimRanger(world, spec.ranger.interval_s))
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


def _simulated(part: str, make: Callable[[], SimDevice]) -> SimDevice:
    """``make()``; a press the device cannot send (no code, unknown key) is a HardwareError."""
    try:
        return make()
    except ValueError as exc:
        raise HardwareError(f"simulated {part}: {exc}") from exc
