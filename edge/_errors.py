"""The one exception type the CLI turns into a clear message and a non-zero exit."""


class UserError(Exception):
    """Bad input from a person (a file, a flag): the message names what and how to fix it."""

    exit_code = 2
