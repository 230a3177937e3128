"""What each machine installs (pyproject.toml): the core both sides need, the ``edge`` (+ ``pi``)
extra of a contact point, the ``sink`` extra of the central host.

- Statically: every library a side's code imports (anywhere, lazily included) is installed by
  that side's requirements, with what they bring along (as the installed metadata says), and
  neither side installs what only the other one needs.
- Running: each side's commands work in an interpreter where the libraries only the other side
  installs cannot be imported (tests/without.py), and a command of the other side says which
  extra to install instead of a traceback.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cloud_sink.db import open_database
from cloud_sink.ingest import Ingest, Outcome
from cloud_sink.migrations import migrate
from edge.radio import decode_ook_file
from provisioning.main import EXTRA_OF
from tests.cloud_sink.helpers import contact_message, encode, topic
from tests.test_layout import imports, top
from tests.without import contactpoint_without

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
CORE: list[str] = PROJECT["dependencies"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
DEVICE = [*CORE, *EXTRAS["edge"], *EXTRAS["pi"]]
SINK = [*CORE, *EXTRAS["sink"]]
OURS = {"edge", "cloud_sink", "contract", "hardware", "provisioning", "tests", "bench"}
CAPTURE = ROOT / "tests" / "fixtures" / "rf433" / "ev1527_320us.ook"
SCENARIO = """
start = "2026-11-23T09:00:00Z"
duration = 120.0
[[customers]]
arrive = 10.0
leave = 40.0
[[presses]]
at = 30.0
button = "green"
"""


def installed_with(requirements: Iterable[str]) -> set[str]:
    """Canonical names of the distributions ``requirements`` install, with everything they
    require in turn (from the installed metadata; one that is not installed here, like lgpio
    off a Pi, counts without its own requirements)."""
    names: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(r), frozenset({""})) for r in requirements]
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        names.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        context = frozenset(req.extras) or frozenset({""})  # the extras asked of this one
        todo.extend((Requirement(line), context) for line in requires)
    return names


@cache
def modules_of() -> dict[str, set[str]]:
    """Installed distribution (canonical name) -> the top-level modules it provides."""
    found: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            found.setdefault(canonicalize_name(dist), set()).add(module)
    return found


def distribution_of(module: str) -> str:
    dists = packages_distributions().get(module)
    assert dists, f"{module} is imported but not installed: add it to pyproject.toml"
    return canonicalize_name(dists[0])


def only_installed_by(side: Iterable[str], other: Iterable[str]) -> set[str]:
    """Top-level modules installed by ``side``'s requirements and not by ``other``'s."""
    mine, theirs = installed_with(side), installed_with(other)
    provided_by_other = {m for d in theirs for m in modules_of().get(d, ())}
    return {m for d in mine - theirs for m in modules_of().get(d, ())} - provided_by_other


def third_party(packages: Iterable[str], skip: Iterable[str] = ()) -> set[str]:
    import sys

    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    skipped = {ROOT / s for s in skip}
    return {
        top(module)
        for package in packages
        for path, module, _ in imports(package)
        if path not in skipped and top(module) not in stdlib | OURS
    }


DEVICE_CODE = third_party(["edge", "hardware", "contract"])
# the central host runs the sink and provisioning; the demo (both sides) installs `dev`
SINK_CODE = third_party(["cloud_sink", "contract", "provisioning"], ["provisioning/demo.py"])


@pytest.mark.parametrize(
    ("code", "requirements"), [(DEVICE_CODE, DEVICE), (SINK_CODE, SINK)], ids=["device", "sink"]
)
def test_each_side_installs_what_its_code_imports(code: set[str], requirements: list[str]) -> None:
    assert code, "the import scan found nothing: is the tree where the test looks?"
    installed = installed_with(requirements)
    missing = {m: distribution_of(m) for m in code if distribution_of(m) not in installed}
    assert missing == {}


def test_neither_side_installs_what_only_the_other_needs() -> None:
    device, sink = installed_with(DEVICE), installed_with(SINK)
    assert {"matplotlib", "psycopg", "psycopg-binary", "cryptography", "pydantic"}.isdisjoint(
        device
    )
    assert {"gpiozero", "pigpio", "pyserial", "pyalsaaudio"}.isdisjoint(sink)
    assert (
        not {"matplotlib", "psycopg", "cryptography", "pydantic"} & DEVICE_CODE
    )  # not even lazily
    assert not {"gpiozero", "pigpio", "serial", "alsaaudio"} & SINK_CODE


def test_the_dev_extra_is_both_sides_and_the_tools() -> None:
    [self_ref] = [Requirement(r) for r in EXTRAS["dev"] if r.startswith("contactpoint")]
    assert self_ref.extras == {"edge", "sink"}


def test_a_missing_library_is_named_with_the_extra_that_installs_it() -> None:
    names = {e: {canonicalize_name(Requirement(r).name) for r in EXTRAS[e]} for e in EXTRAS}
    for module, extra in EXTRA_OF.items():
        dists = packages_distributions().get(module) or [module]  # RPi, lgpio: only on a Pi
        assert any(canonicalize_name(d) in names[extra] for d in dists) or (
            extra == "pi" and any(n.startswith(canonicalize_name(module)) for n in names["pi"])
        ), (module, extra)
    optional = {m for e in ("edge", "sink") for d in names[e] for m in modules_of().get(d, ())}
    assert optional & (DEVICE_CODE | SINK_CODE) <= set(EXTRA_OF)


DEVICE_LEAVES_OUT = only_installed_by(SINK, DEVICE)
SINK_LEAVES_OUT = only_installed_by(DEVICE, SINK)


def test_what_each_side_leaves_out() -> None:
    assert {"matplotlib", "psycopg", "cryptography"} <= DEVICE_LEAVES_OUT
    assert {"gpiozero", "pigpio", "serial", "alsaaudio", "soundfile"} <= SINK_LEAVES_OUT
    assert not DEVICE_LEAVES_OUT & {"msgspec", "paho", "peewee", "rich", "numpy"}
    # the config is msgspec's: pydantic is the sink API's (FastAPI's models) only
    assert "pydantic" in DEVICE_LEAVES_OUT


def device(*argv: str) -> tuple[int, str, str]:
    done = contactpoint_without(DEVICE_LEAVES_OUT, *argv)
    return done.returncode, done.stdout, done.stderr


def sink(*argv: str) -> tuple[int, str, str]:
    done = contactpoint_without(SINK_LEAVES_OUT, *argv)
    return done.returncode, done.stdout, done.stderr


def test_the_device_commands_run_without_the_sinks_libraries(tmp_path: Path) -> None:
    code, example, err = device("config", "example")
    assert code == 0, err
    (tmp_path / "device.toml").write_text(example)
    code, out, err = device("config", "check", str(tmp_path / "device.toml"))
    assert code == 0, err
    assert ": ok (device" in out, err

    (tmp_path / "scenario.toml").write_text(SCENARIO)
    data = tmp_path / "data"
    code, out, err = device("simulate", str(tmp_path / "scenario.toml"), "--data", str(data))
    assert code == 0, err
    assert "1 contacts" in out, err
    code, out, err = device("contacts", "--data", str(data), "--json")
    assert code == 0, err
    [contact] = [json.loads(line) for line in out.splitlines()]
    assert contact["tags"] == ["positive", "unproductive"]
    code, out, err = device("contacts", "--data", str(data))
    assert code == 0, err
    assert "1 contacts in" in out, err
    code, out, err = device("routes", "--data", str(data), "--json")
    assert code == 0, err
    code, out, err = device("retention", "run", "--data", str(data), "--days", "30")
    assert code == 0, err

    code, out, err = device("rf433", "decode", str(CAPTURE))
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == list(decode_ook_file(CAPTURE))
    code, out, err = device("edge", "run", "--help")
    assert code == 0, err
    assert "--scenario" in out, err


def test_the_sink_commands_run_without_the_devices_libraries(tmp_path: Path) -> None:
    code, out, err = sink("sink", "run", "--help")
    assert code == 0, err
    assert "--broker" in out, err

    db = open_database(None, tmp_path)
    try:
        migrate(db)
        message = contact_message()
        assert Ingest(db, tmp_path).handle(topic("contact"), encode(message)).outcome is (
            Outcome.STORED
        )
    finally:
        db.close()
    code, out, err = sink("sink", "contacts", "--data", str(tmp_path), "--json")
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [message["contact"]["id"]]
    code, out, err = sink("sink", "report", "--data", str(tmp_path), "--format", "json")
    assert code == 0, err
    assert re.search(r'"contacts_served": 1\b', out), out
    chart = tmp_path / "report.png"
    code, out, err = sink("sink", "report", "--data", str(tmp_path), "--format", "png",
                          "--out", str(chart))  # fmt: skip
    assert code == 0, err
    assert chart.read_bytes().startswith(b"\x89PNG"), err
    code, out, err = sink("provision", "ca", "--out", str(tmp_path / "ca"))
    assert code == 0, err
    assert (tmp_path / "ca" / "ca.crt").is_file(), err


def test_a_command_of_the_other_side_names_the_extra_to_install(tmp_path: Path) -> None:
    code, _, err = device("provision", "ca", "--out", str(tmp_path / "ca"))
    assert code == 2
    assert "Traceback" not in err
    assert re.search(r"needs cryptography\b.*pip install 'contactpoint\[sink\]'", err), err
    assert not (tmp_path / "ca").exists()
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    (tmp_path / "flac.toml").write_text('[audio]\ncodec = "flac"\n')  # soundfile's encoder
    code, _, err = sink(
        "simulate", str(tmp_path / "scenario.toml"), "--data", str(tmp_path / "d"),
        "--config", str(tmp_path / "flac.toml"),
    )  # fmt: skip
    assert code == 2, err
    assert "pip install 'contactpoint[edge]'" in err, err
