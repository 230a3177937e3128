"""Wired buttons and pin factory selection, through gpiozero's real code with mock pins."""

from __future__ import annotations

import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from hardware._api import ButtonEdge, ButtonInput, Device, HardwareEvent
from hardware._errors import HardwareError
from hardware.gpio import GpioButton, lgpio_chip, make_pin_factory
from hardware.gpiod_replay import GpiodReplay, pi4_chips, pi5_chips
from hardware.gpiod_rx import KernelGpio
from tests.hardware.conftest import scripted_clock

PIN = 17


@pytest.fixture
def events() -> list[HardwareEvent]:
    return []


@pytest.fixture
def buttons(mock_factory: MockFactory) -> Iterator[list[GpioButton]]:
    """Buttons a test started; stopped before the mock factory is reset."""
    started: list[GpioButton] = []
    yield started
    for button in started:
        button.stop()


def start(buttons: list[GpioButton], events: list[HardwareEvent], button: GpioButton) -> GpioButton:
    button.start(events.append)
    buttons.append(button)
    return button


def test_pull_up_button_is_pressed_when_low(
    mock_factory: MockFactory, buttons: list[GpioButton], events: list[HardwareEvent]
) -> None:
    start(
        buttons,
        events,
        GpioButton("green", PIN, pin_factory=mock_factory, clock=scripted_clock(1_000, 2_500)),
    )
    pin = mock_factory.pin(PIN)
    assert pin.state  # the pull-up holds an open button high
    pin.drive_low()
    pin.drive_high()
    assert events == [ButtonEdge("green", True, 1_000), ButtonEdge("green", False, 2_500)]


def test_pull_down_button_is_pressed_when_high(
    mock_factory: MockFactory, buttons: list[GpioButton], events: list[HardwareEvent]
) -> None:
    start(
        buttons,
        events,
        GpioButton("red", PIN, pull_up=False, pin_factory=mock_factory, clock=scripted_clock(7, 9)),
    )
    pin = mock_factory.pin(PIN)
    assert not pin.state
    pin.drive_high()
    pin.drive_low()
    assert events == [ButtonEdge("red", True, 7), ButtonEdge("red", False, 9)]


def test_normally_closed_switch_on_a_pull_up_is_pressed_when_high(
    mock_factory: MockFactory, buttons: list[GpioButton], events: list[HardwareEvent]
) -> None:
    start(
        buttons,
        events,
        GpioButton(
            "nc",
            PIN,
            pull_up=True,
            active_high=True,
            pin_factory=mock_factory,
            clock=scripted_clock(1, 2),
        ),
    )
    pin = mock_factory.pin(PIN)
    pin.drive_low()  # at rest the closed contact pulls the pin low: released
    pin.drive_high()  # pressing opens the contact
    assert events == [ButtonEdge("nc", False, 1), ButtonEdge("nc", True, 2)]


def test_floating_pin_needs_and_uses_active_high(
    mock_factory: MockFactory, buttons: list[GpioButton], events: list[HardwareEvent]
) -> None:
    with pytest.raises(ValueError, match="active_high"):
        GpioButton("x", PIN, pull_up=None, pin_factory=mock_factory)
    start(
        buttons,
        events,
        GpioButton(
            "x",
            PIN,
            pull_up=None,
            active_high=False,
            pin_factory=mock_factory,
            clock=scripted_clock(3, 4),
        ),
    )
    pin = mock_factory.pin(PIN)
    pin.drive_high()  # external pull-up to the open state first
    pin.drive_low()
    assert events == [ButtonEdge("x", False, 3), ButtonEdge("x", True, 4)]


def test_every_bounce_is_reported_with_its_own_stamp(
    mock_factory: MockFactory, buttons: list[GpioButton], events: list[HardwareEvent]
) -> None:
    stamps = [10_000_000 + k * 300_000 for k in range(5)]  # 0.3 ms apart: contact bounce
    start(
        buttons,
        events,
        GpioButton("seller", PIN, pin_factory=mock_factory, clock=scripted_clock(*stamps)),
    )
    pin = mock_factory.pin(PIN)
    for k in range(5):
        pin.drive_low() if k % 2 == 0 else pin.drive_high()
    # low, high, low, high, low: pressed, released, pressed, released, pressed
    expected = [ButtonEdge("seller", k % 2 == 0, t) for k, t in enumerate(stamps)]
    assert events == expected


def test_stop_is_idempotent_silences_the_button_and_releases_the_pin(
    mock_factory: MockFactory, buttons: list[GpioButton], events: list[HardwareEvent]
) -> None:
    first = GpioButton("old", PIN, pin_factory=mock_factory, clock=scripted_clock(1))
    first.start(events.append)
    first.stop()
    first.stop()
    mock_factory.pin(PIN).drive_low()
    assert events == []
    mock_factory.pin(PIN).drive_high()
    start(
        buttons, events, GpioButton("new", PIN, pin_factory=mock_factory, clock=scripted_clock(5))
    )
    mock_factory.pin(PIN).drive_low()
    assert events == [ButtonEdge("new", True, 5)]


def test_a_pin_in_use_gives_a_clear_error(
    mock_factory: MockFactory, buttons: list[GpioButton], events: list[HardwareEvent]
) -> None:
    start(buttons, events, GpioButton("green", PIN, pin_factory=mock_factory))
    with pytest.raises(HardwareError, match=r"button 'red' cannot open GPIO17 \(GPIOPinInUse"):
        GpioButton("red", PIN, pin_factory=mock_factory).start(events.append)


def test_button_is_a_device(mock_factory: MockFactory) -> None:
    button: ButtonInput = GpioButton("green", PIN, pin_factory=mock_factory)
    assert isinstance(button, Device)


def test_mock_factory_by_name() -> None:
    factory = make_pin_factory("mock")
    assert isinstance(factory, MockFactory)
    factory.close()


def test_unknown_factory_names_the_choices() -> None:
    with pytest.raises(HardwareError, match=r"unknown pin factory 'gpiod'.*lgpio, pigpio"):
        make_pin_factory("gpiod")  # type: ignore[arg-type]


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_pigpio_without_daemon_names_host_port_and_fix() -> None:
    port = free_loopback_port()
    with pytest.raises(HardwareError) as info:
        make_pin_factory("pigpio", pigpio_host="127.0.0.1", pigpio_port=port)
    message = str(info.value)
    assert f"pigpiod not reachable at 127.0.0.1:{port}" in message
    assert "sudo pigpiod" in message


def test_missing_lgpio_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lgpio", None)  # makes `import lgpio` fail
    monkeypatch.delitem(sys.modules, "gpiozero.pins.lgpio", raising=False)
    with pytest.raises(HardwareError, match=r"'lgpio': lgpio is not installed .*pip install lgpio"):
        make_pin_factory("lgpio")


def on_a_pi() -> bool:
    model = Path("/proc/device-tree/model")
    return model.exists() and "Raspberry Pi" in model.read_text(errors="replace")


@pytest.mark.skipif(on_a_pi(), reason="these factories open on a Raspberry Pi")
@pytest.mark.parametrize("name", ["lgpio", "rpigpio", "native"])
def test_real_factories_off_a_pi_fail_clearly(name: str) -> None:
    with pytest.raises(HardwareError, match=rf"pin factory '{name}'") as info:
        make_pin_factory(name)  # type: ignore[arg-type]
    assert info.value.__cause__ is not None
    assert str(info.value.__cause__) in str(info.value)


@pytest.mark.parametrize(
    ("chips", "chip"),
    [
        (pi4_chips(), 0),
        (pi5_chips(new_kernel=True), 0),
        (pi5_chips(new_kernel=False), 4),
        ({"/dev/gpiochip0": ["x"] * 32}, None),  # no chip names its lines GPIO<n>: gpiozero guesses
    ],
    ids=["pi4", "pi5-new-kernel", "pi5-old-kernel", "unknown"],
)
def test_lgpio_gets_the_header_chip_found_by_line_names(
    chips: dict[str, list[str]], chip: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = GpiodReplay(chips)
    assert lgpio_chip(replay) == chip
    # gpiozero's lgpio factory cannot be imported here (no lgpio wheel off a Pi): a stand-in
    # module records the arguments make_pin_factory gives it
    opened: list[dict[str, object]] = []
    stand_in = types.ModuleType("gpiozero.pins.lgpio")

    def lgpio_factory(**kwargs: object) -> MockFactory:
        opened.append(kwargs)
        return MockFactory()

    stand_in.LGPIOFactory = lgpio_factory  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gpiozero.pins.lgpio", stand_in)
    factory = make_pin_factory("lgpio", gpio_access=replay)
    factory.close()
    assert opened == ([{}] if chip is None else [{"chip": chip}])


def test_without_gpio_chips_lgpio_keeps_its_own_guess(tmp_path: Path) -> None:
    assert lgpio_chip(KernelGpio(tmp_path)) is None
