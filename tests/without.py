"""Python code run in a fresh interpreter where some installed libraries cannot be imported:
what a machine sees whose install (an extra of pyproject.toml) left them out.

A finder first on ``sys.meta_path`` refuses the blocked top-level modules with the error an
absent module gives (``ModuleNotFoundError``), so code that tolerates their absence (peewee
without psycopg) behaves as it would there.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_BLOCKER = """\
import sys


class _NotInstalled:
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


_STARTUP = set(sys.modules)  # loaded by the interpreter itself (site, .pth files)
sys.meta_path.insert(0, _NotInstalled(frozenset(BLOCKED)))
"""


def run_without(
    blocked: Iterable[str], code: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (from the repository root, so its packages are the ones imported) with the
    ``blocked`` top-level modules not importable; stdout and stderr captured as text."""
    program = _BLOCKER.replace("BLOCKED", repr(sorted(set(blocked)))) + code
    return subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def contactpoint_without(
    blocked: Iterable[str], *argv: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``contactpoint ARGV`` with the ``blocked`` modules not importable; afterwards it checks
    that none of them was loaded after all, but for the interpreter's own start (exit 3)."""
    names = sorted(set(blocked))
    code = (
        "from provisioning.main import main\n"
        "try:\n"
        f"    code = main({list(argv)!r})\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        "leaked = sorted(m for m in set(sys.modules) - _STARTUP\n"
        f"                if m.partition('.')[0] in {names!r})\n"
        "if leaked:\n"
        "    print('loaded although blocked:', leaked, file=sys.stderr)\n"
        "    code = 3\n"
        "sys.stdout.flush()\n"
        "sys.exit(code)\n"
    )
    return run_without(names, code, timeout)
