"""The device daemon: inputs -> presence -> contacts -> clips -> tags -> store -> outbox."""

from importlib.metadata import PackageNotFoundError, version

from edge._errors import UserError

__all__ = ["UserError", "__version__"]

try:
    __version__ = version("contactpoint")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
