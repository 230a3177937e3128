"""The one exception the hardware layer raises when a device cannot be opened."""

from __future__ import annotations


class HardwareError(Exception):
    """A device cannot be opened; the message says which, why, and what to do about it."""
