"""The device daemon: inputs -> presence -> contacts -> clips -> tags -> store -> outbox.

``__version__`` (the installed distribution's, from its metadata) is looked up on first use:
loading the package metadata machinery would otherwise slow down every command's start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge._errors import UserError

__all__ = ["UserError", "__version__"]

if TYPE_CHECKING:
    __version__: str


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("contactpoint")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
