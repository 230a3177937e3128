"""What every ``contactpoint`` command agrees on, on the device and in the sink alike.

Rules:
- :class:`UserError` is bad input from a person (a file, a flag): the command prints its message
  on one line on stderr and exits with its ``exit_code`` (2), no traceback. The message names
  what is wrong and how to fix it.
- A reader of the output that stops early (``contactpoint contacts | head -1``) is a normal
  end: :func:`stdout_closed` makes it exit 0, quietly.
"""

from __future__ import annotations

import os
import sys


class UserError(Exception):
    """Bad input from a person (a file, a flag): the message names what and how to fix it."""

    exit_code = 2


def stdout_closed() -> int:
    """Whoever read our standard output stopped (``| head -1``): a normal end, exit 0. The
    descriptor is pointed at /dev/null so the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return 0
