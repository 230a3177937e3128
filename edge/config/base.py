"""The device's side of the shared config base (:mod:`contract.config`): its error type and the
loader every device file goes through (the config, the scenarios).

Rules:
- :class:`ConfigError` is both the contract's :class:`~contract.config.ConfigError` and a
  :class:`~edge.UserError`: the ``contactpoint`` command prints it and exits 2.
- :func:`load_toml` and :func:`parse_model` are the contract's :func:`~contract.config.read_toml`
  and :func:`~contract.config.validate`, raising this :class:`ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import msgspec

from contract import config as base
from contract.config import (
    MAX_TOML_BYTES,
    FieldError,
    Section,
    allowed_text,
    describe_error,
    set_value,
)
from edge._errors import UserError

M = TypeVar("M", bound=msgspec.Struct)

__all__ = [
    "MAX_TOML_BYTES",
    "ConfigError",
    "FieldError",
    "Section",
    "allowed_text",
    "describe_error",
    "load_toml",
    "parse_model",
    "set_value",
]


class ConfigError(base.ConfigError, UserError):
    """A configuration (or scenario) file is wrong; the message says where and how to fix it."""


def load_toml(path: Path, what: str) -> dict[str, Any]:
    """The parsed TOML file (at most :data:`MAX_TOML_BYTES`)."""
    try:
        return base.read_toml(path, what)
    except base.ConfigError as exc:
        raise ConfigError(str(exc)) from None


def parse_model(model: type[M], data: dict[str, Any], source: str) -> M:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` naming the first problem."""
    try:
        return base.validate(model, data, source)
    except base.ConfigError as exc:
        raise ConfigError(str(exc)) from None
