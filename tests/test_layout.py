"""The dependency rules of design.md, checked on the source.

- ``hardware`` imports nothing from ``edge`` or ``cloud_sink``; ``edge`` uses only hardware's
  public names (``from hardware import <a name in hardware.__all__>``).
- ``edge`` imports nothing from ``cloud_sink`` or ``provisioning``: the device never loads the
  central service, and the ``contactpoint`` command that offers both sides' commands is
  provisioning's (``provisioning/main.py``).
- ``contract`` (the code both sides must agree on) imports nothing from ``edge``,
  ``cloud_sink``, ``hardware``, ``provisioning``, ``tests`` or ``bench``, and of third-party
  packages only light ones both sides install: msgspec (the config schemas) and tomlkit (the
  commented config example).
- ``cloud_sink`` imports neither ``edge``, ``hardware`` nor ``provisioning``: what it shares
  with the device comes from ``contract``.
- ``provisioning`` (the field and the demo: it wires the device and the sink together) may use
  ``edge``, ``cloud_sink``, ``contract`` and ``hardware``, through public names only: no
  module or name starting with ``_`` (and hardware's as ``edge`` does); never ``tests`` or
  ``bench``.
- Topics are spelled once: no string in the code of ``edge``, ``cloud_sink``, ``contract``,
  ``hardware``, ``provisioning`` or ``bench`` holds the topic root (``contactpoint/v<N>``) or
  the chunk frame's magic but ``contract/wire.py``; docstrings may name them. (tests/ spell
  them on purpose: the golden checks must not borrow the code under test.)
- ``bench`` may import anything but ``tests``; two exceptions stand until the machinery they
  share with the tests moves out of tests/: the soak drives the fault harness
  (tests/faults/harness.py), the transport, api and scale-out benches start a throwaway
  PostgreSQL cluster (tests/services.py).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import hardware
from contract import wire

ROOT = Path(__file__).resolve().parent.parent
OURS = {"edge", "cloud_sink", "contract", "hardware", "provisioning", "tests", "bench"}
# systemd-python: contract/service.py, lazily (both daemons under systemd)
CONTRACT_THIRD_PARTY = {"msgspec", "tomlkit", "systemd"}
#: bench -> tests imports that are allowed for now: (file, module)
BENCH_USES_OF_TESTS = {
    ("bench/soak.py", "tests.faults.harness"),
    ("bench/transport.py", "tests.services"),
    ("bench/api.py", "tests.services"),  # the throwaway PostgreSQL cluster of the tests
    ("bench/objects.py", "tests.services"),  # the tests' SeaweedFS S3 server
    ("bench/scaleout.py", "tests.services"),  # the tests' PostgreSQL cluster
}

Import = tuple[Path, str, list[str]]


def imports(package: str, root: Path = ROOT) -> list[Import]:
    """(file, imported module, imported names) for every absolute import in a package."""
    found: list[Import] = []
    for path in sorted((root / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((path, alias.name, []) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module, [a.name for a in node.names]))
    return found


def top(module: str) -> str:
    return module.split(".", maxsplit=1)[0]


def forbidden(package: str, tops: set[str], root: Path = ROOT) -> list[tuple[str, str]]:
    """(file, module) of every import in ``package`` from one of the ``tops`` packages."""
    return [
        (p.relative_to(root).as_posix(), m) for p, m, _ in imports(package, root) if top(m) in tops
    ]


def private_uses(package: str, of: set[str], root: Path = ROOT) -> list[tuple[str, list[str]]]:
    """Imports in ``package`` of a private module or name of the ``of`` packages; hardware's
    names only from ``hardware`` itself and in its ``__all__``."""
    public = set(hardware.__all__)
    bad = []
    for _, module, names in imports(package, root):
        if top(module) not in of:
            continue
        if top(module) == "hardware":
            if module != "hardware" or not set(names) <= public:
                bad.append((module, names))
        elif any(part.startswith("_") for part in module.split(".")) or any(
            n.startswith("_") and not _dunder(n) for n in names
        ):
            bad.append((module, names))
    return bad


def _dunder(name: str) -> bool:
    """``__version__`` and the like are public, though they start with ``_``."""
    return name.startswith("__") and name.endswith("__") and len(name) > 4


def test_hardware_imports_nothing_from_edge_or_sink() -> None:
    assert forbidden("hardware", {"edge", "cloud_sink"}) == []


def test_edge_uses_only_hardwares_public_names() -> None:
    assert private_uses("edge", {"hardware"}) == []


def test_cloud_sink_imports_neither_edge_hardware_nor_provisioning() -> None:
    assert forbidden("cloud_sink", {"edge", "hardware", "provisioning", "tests", "bench"}) == []


def test_contract_imports_none_of_the_packages_it_is_shared_by() -> None:
    assert forbidden("contract", OURS - {"contract"}) == []


def test_contract_has_only_light_dependencies() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    third_party = {top(m) for _, m, _ in imports("contract")} - stdlib - OURS
    assert third_party <= CONTRACT_THIRD_PARTY


def test_provisioning_uses_public_names_and_no_tests() -> None:
    assert forbidden("provisioning", {"tests", "bench"}) == []
    assert private_uses("provisioning", {"edge", "cloud_sink", "contract", "hardware"}) == []


def test_bench_imports_nothing_from_tests_but_the_listed_machinery() -> None:
    uses = set(forbidden("bench", {"tests"}))
    assert uses <= BENCH_USES_OF_TESTS
    assert uses == BENCH_USES_OF_TESTS, "an exception no longer used: drop it from the list"


def test_edge_imports_neither_the_sink_nor_provisioning() -> None:
    assert forbidden("edge", {"cloud_sink", "provisioning", "tests", "bench"}) == []


#: the topic root of any version, and the chunk magic: what only contract/wire.py may spell
WIRE_SPELLING = re.compile(
    rf"{re.escape(wire.ROOT.split('/')[0])}/v\d|{re.escape(wire.CHUNK_MAGIC.decode())}"
)
WIRE_DEFINITION = "contract/wire.py"
_WITH_DOCSTRING = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def wire_literals(packages: set[str], root: Path = ROOT) -> list[tuple[str, int, str]]:
    """(file, line, text) of every string or bytes literal, docstrings aside, that spells the
    topic root or the chunk magic outside :data:`WIRE_DEFINITION`."""
    found = []
    for package in sorted(packages):
        for path in sorted((root / package).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            if name == WIRE_DEFINITION:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(
                    node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
                )
                and node.body
                and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)
            }
            for node in ast.walk(tree):
                if not isinstance(node, ast.Constant) or id(node) in docstrings:
                    continue
                value = node.value
                text = value.decode("latin-1") if isinstance(value, bytes) else value
                if isinstance(text, str) and WIRE_SPELLING.search(text):
                    found.append((name, node.lineno, text[:80]))
    return found


def test_topics_and_the_chunk_magic_are_spelled_only_in_the_contract() -> None:
    assert wire_literals(OURS - {"tests"}) == []


def test_the_rules_catch_violations(tmp_path: Path) -> None:
    def write(path: str, text: str) -> None:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)

    write(
        "edge/x.py",
        "from hardware._api import ButtonEdge\nfrom hardware import open_backend, _secret\n",
    )
    write("edge/y.py", "from cloud_sink.cli import add_commands\nimport provisioning.demo\n")
    write("cloud_sink/x.py", "import provisioning.broker\nfrom contract.alerts import AlertRule\n")
    write("contract/x.py", "from cloud_sink import wire\nimport numpy\n")
    write(
        "cloud_sink/t.py",
        '"""Reads contactpoint/v1/#."""\nROOT = "contactpoint/v2"\nMAGIC = b"CPC1"\n'
        'def f(site: str) -> str:\n    """On contactpoint/v1/<site>."""\n'
        '    return f"contactpoint/v1/{site}"\n',
    )
    write("contract/wire.py", 'ROOT = "contactpoint/v1"\n')
    write(
        "provisioning/x.py",
        "from edge._errors import UserError\nfrom edge import _private\n"
        "from edge import __version__\n",
    )
    write(
        "provisioning/y.py", "from edge.config import Config\nfrom hardware import open_backend\n"
    )
    assert private_uses("edge", {"hardware"}, tmp_path) == [
        ("hardware._api", ["ButtonEdge"]),
        ("hardware", ["open_backend", "_secret"]),
    ]
    assert forbidden("edge", {"cloud_sink", "provisioning"}, tmp_path) == [
        ("edge/y.py", "cloud_sink.cli"),
        ("edge/y.py", "provisioning.demo"),
    ]
    assert forbidden("cloud_sink", {"edge", "hardware", "provisioning"}, tmp_path) == [
        ("cloud_sink/x.py", "provisioning.broker")
    ]
    assert forbidden("contract", OURS - {"contract"}, tmp_path) == [("contract/x.py", "cloud_sink")]
    assert wire_literals({"cloud_sink", "contract"}, tmp_path) == [
        ("cloud_sink/t.py", 2, "contactpoint/v2"),
        ("cloud_sink/t.py", 3, "CPC1"),
        ("cloud_sink/t.py", 6, "contactpoint/v1/"),
    ]
    assert private_uses("provisioning", {"edge", "cloud_sink", "hardware"}, tmp_path) == [
        ("edge._errors", ["UserError"]),
        ("edge", ["_private"]),
    ]
