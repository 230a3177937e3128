"""``contactpoint``: the one command, the front door of the device's and the sink's commands.

Rules:
- Each package registers its own commands: the device's in ``edge.cli`` (config, simulate,
  edge, rf433, learn, contacts), ``edge.routes.cli`` (routes), ``edge.retention``
  (retention) and ``edge.update.cli`` (update), the sink's in ``cloud_sink.cli`` (sink),
  provisioning's in ``provisioning.cli`` (provision) and ``provisioning.demo`` (demo). Only
  this module puts them together: ``edge`` imports neither the sink nor provisioning.
- Start-up is fast and each machine needs only its own libraries (the extras in
  pyproject.toml): importing ``edge.cli`` loads nothing heavy, and every other group is in
  :data:`LAZY`: ``contactpoint --help`` lists it by the name and line of help written there,
  and its module is imported only when it is the command being run.
- Errors the user can fix (:class:`~contract.cli.UserError`) print one line on stderr and exit
  with its code (2); so does a library this machine's install left out, naming the extra that
  brings it. A reader that stops early (``| head -1``) is a normal end (exit 0); Ctrl-C exits 130.
- ``contactpoint --version`` prints the installed distribution's version (package metadata).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from contract.cli import UserError, stdout_closed
from edge import cli as edge_cli

Handler = Callable[[argparse.Namespace], int]

#: the extra of pyproject.toml that installs each optional library (module name -> extra)
EXTRA_OF = {
    "numpy": "edge",
    "nacl": "edge",
    "soundfile": "edge",
    "gpiozero": "edge",
    "pigpio": "edge",
    "serial": "edge",
    "alsaaudio": "edge",
    "av": "edge",
    "lgpio": "pi",
    "RPi": "pi",
    "pyrf24": "pi",
    "psycopg": "sink",
    "matplotlib": "sink",
    "cryptography": "sink",
    "fastapi": "sink",
    "uvicorn": "sink",
    "pydantic": "sink",  # the API's request and response models (cloud_sink/api/app.py)
    "argon2": "sink",
    "prometheus_client": "sink",
    "jinja2": "sink",
    "multipart": "sink",
    "rapidfuzz": "sink",
    "pymorphy3": "sink",
    "boto3": "sink",
}


@dataclass(frozen=True)
class Lazy:
    """A command group whose module is imported only when the group runs."""

    help: str  # the group's line in ``contactpoint --help``, as its module registers it
    register: Callable[[Any], None]  # adds the group to argparse's subparsers object


def _routes(sub: Any) -> None:
    from edge.routes.cli import add_command

    add_command(sub)


def _retention(sub: Any) -> None:
    from edge.retention import add_commands

    add_commands(sub)


def _import(sub: Any) -> None:
    from edge.importer import add_import_command

    add_import_command(sub)


def _update(sub: Any) -> None:
    from edge.update.cli import add_command

    add_command(sub)


def _sink(sub: Any) -> None:
    from cloud_sink.cli import add_commands

    add_commands(sub)


def _provision(sub: Any) -> None:
    from provisioning.cli import add_commands

    add_commands(sub)


def _fleet(sub: Any) -> None:
    from provisioning.enroll import add_commands

    add_commands(sub)


def _demo(sub: Any) -> None:
    from provisioning.demo import add_command

    add_command(sub)


LAZY: dict[str, Lazy] = {
    "routes": Lazy("the route queues of a device's store: waiting, delivered, refused", _routes),
    "retention": Lazy("personal data: delete old clip audio", _retention),
    "import": Lazy(
        "cut recordings (a dictaphone's files) around a CRM's events into contacts", _import
    ),
    "update": Lazy("install a release, switch to it, roll back if it does not come up", _update),
    "sink": Lazy("the central ingest service (MQTT → database)", _sink),
    "provision": Lazy(
        "credentials: project CA, broker certificate and configuration, device, sink and Home "
        "Assistant accounts",
        _provision,
    ),
    "fleet": Lazy("enrollment by claim: claims, devices, the service", _fleet),
    "demo": Lazy(
        "the whole system on this machine: a local broker, the sink, and a simulated contact "
        "point playing a shift",
        _demo,
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        return _run(arguments)
    except BrokenPipeError:
        return stdout_closed()
    except UserError as exc:
        print(f"contactpoint: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("contactpoint: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        print(
            f"contactpoint: error: this command needs {exc.name}, which is not installed here: "
            f"pip install 'contactpoint[{extra}]'",
            file=sys.stderr,
        )
        return 2


def _run(arguments: list[str]) -> int:
    command = command_word(arguments)
    parser = build_parser(load=() if command is None else (command,))
    args = parser.parse_args(arguments)
    _logging(args.verbose)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    code = handler(args)
    sys.stdout.flush()  # the reader may be gone while the last lines were buffered
    return code


def _logging(verbose: bool) -> None:
    """To the journal when stderr is the journal (a systemd unit): INFO and up, structured
    fields, no timestamp of ours (contract/service.py); otherwise WARNING and up on stderr."""
    if os.environ.get("JOURNAL_STREAM"):
        from contract.service import journal_logging, under_journal

        if under_journal():
            try:
                journal_logging(logging.DEBUG if verbose else logging.INFO)
                return
            except ImportError:  # no systemd-python: stderr still reaches the journal
                pass
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def command_word(arguments: Sequence[str]) -> str | None:
    """The command in ``arguments``: the first one that is not an option (none of the top-level
    options takes a value)."""
    return next((a for a in arguments if not a.startswith("-")), None)


def build_parser(load: Collection[str] = ()) -> argparse.ArgumentParser:
    """The ``contactpoint`` parser. Of the :data:`LAZY` groups only those named in ``load`` are
    registered for real; the others are listed by name and help (all ``--help`` shows of them)."""
    parser = argparse.ArgumentParser(
        prog="contactpoint",
        description="Customer-contact recorder for a shop counter: buttons, remotes, presence "
        "sensor and always-on audio, cut into tagged contacts.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    edge_cli.add_commands(sub)
    for name, group in LAZY.items():
        if name in load:
            group.register(sub)
        else:
            sub.add_parser(name, help=group.help)
    return parser


class _Version(argparse.Action):
    """``--version``: the package metadata is read only when asked (it is slow to load)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(
            option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from edge import __version__

        print(f"contactpoint {__version__}")
        parser.exit()


if __name__ == "__main__":
    sys.exit(main())
