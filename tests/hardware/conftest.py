"""Fixtures for the real gpiozero drivers: a fresh MockFactory per test, reset afterwards."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory


@pytest.fixture
def mock_factory() -> Iterator[MockFactory]:
    """A fresh mock pin factory, also the default one while the test runs.

    Tests stop their drivers (closing the devices) before this resets the pins and reservations,
    so the next test never gets GPIOPinInUse.
    """
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous


def scripted_clock(*stamps: int) -> Callable[[], int]:
    """A clock returning the given nanoseconds in order (StopIteration when they run out)."""
    it = iter(stamps)
    return lambda: next(it)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``hardware`` need a Raspberry Pi wired for them: opt in with
    ``CONTACTPOINT_HIL=1`` (they are skipped, and say so, everywhere else)."""
    if os.environ.get("CONTACTPOINT_HIL") == "1":
        return
    skip = pytest.mark.skip(
        reason="hardware in the loop: run on a wired Pi with CONTACTPOINT_HIL=1"
    )
    for item in items:
        if item.get_closest_marker("hardware") is not None:
            item.add_marker(skip)
