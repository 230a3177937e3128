"""The one exception type the CLI turns into a clear message and a non-zero exit: the shared
:class:`contract.cli.UserError`, under the name edge's modules have always imported it by."""

from contract.cli import UserError

__all__ = ["UserError"]
