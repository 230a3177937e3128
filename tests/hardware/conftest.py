"""Fixtures for the real gpiozero drivers: a fresh MockFactory per test, reset afterwards."""

from __future__ import annotations

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
