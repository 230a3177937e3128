"""The dependency rule of design.md, checked on the source: hardware imports nothing from edge;
edge uses only hardware's public names; cloud_sink imports neither."""

from __future__ import annotations

import ast
from pathlib import Path

import hardware

ROOT = Path(__file__).resolve().parent.parent


def imports(package: str, root: Path = ROOT) -> list[tuple[Path, str, list[str]]]:
    """(file, imported module, imported names) for every import in a package."""
    found: list[tuple[Path, str, list[str]]] = []
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


def test_hardware_imports_nothing_from_edge_or_sink() -> None:
    bad = [(p, m) for p, m, _ in imports("hardware") if top(m) in {"edge", "cloud_sink"}]
    assert bad == []


def test_cloud_sink_imports_neither_edge_nor_hardware() -> None:
    bad = [(p, m) for p, m, _ in imports("cloud_sink") if top(m) in {"edge", "hardware"}]
    assert bad == []


def private_hardware_imports(root: Path) -> list[tuple[str, list[str]]]:
    public = set(hardware.__all__)
    bad = []
    for _, module, names in imports("edge", root):
        if top(module) == "hardware" and (module != "hardware" or not set(names) <= public):
            bad.append((module, names))
    return bad


def test_edge_uses_only_hardwares_public_names() -> None:
    assert private_hardware_imports(ROOT) == []


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "x.py").write_text(
        "from hardware._api import ButtonEdge\nfrom hardware import open_backend, _secret\n"
    )
    assert private_hardware_imports(tmp_path) == [
        ("hardware._api", ["ButtonEdge"]),
        ("hardware", ["open_backend", "_secret"]),
    ]


def test_edge_reaches_the_sink_only_through_the_command_line() -> None:
    # the device daemon never loads the central service; only the CLI front door offers
    # `contactpoint sink ...` (imported lazily)
    users = {
        p.relative_to(ROOT).as_posix() for p, m, _ in imports("edge") if top(m) == "cloud_sink"
    }
    assert users == {"edge/cli.py"}
