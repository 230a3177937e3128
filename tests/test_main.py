"""The ``contactpoint`` front door (provisioning/main.py): every package's commands on one
parser, the lazy groups listed exactly as their modules register them, and a start that loads
nothing heavy for ``--help`` and ``rf433 decode`` (bench/startup.py measures the time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning.main import LAZY, build_parser, command_word, main

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "tests" / "fixtures" / "rf433" / "ev1527_320us.ook"
#: what a quick command must not load: the libraries that take long to import, and the sink
HEAVY = ["pydantic", "msgspec", "numpy", "paho", "peewee", "rich", "soundfile", "tomlkit",
         "cryptography", "matplotlib", "psycopg", "hardware", "cloud_sink",
         "importlib.metadata"]  # fmt: skip


def loaded_by(*argv: str) -> tuple[int, str, list[str]]:
    """Run ``contactpoint ARGV`` in a fresh interpreter: exit code, output, and which of
    :data:`HEAVY` it loaded."""
    code = (
        "import sys\n"
        "from provisioning.main import main\n"
        "try:\n"
        f"    code = main({list(argv)!r})\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', ','.join(heavy))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out, _, heavy = done.stdout.rpartition("HEAVY ")
    return done.returncode, out, [m for m in heavy.strip().split(",") if m]


def test_help_loads_nothing_heavy() -> None:
    code, out, heavy = loaded_by("--help")
    assert code == 0
    assert "sink" in out
    assert "rf433" in out
    assert heavy == []


def test_rf433_decode_loads_nothing_heavy() -> None:
    code, out, heavy = loaded_by("rf433", "decode", str(CAPTURE))
    assert code == 0
    assert [json.loads(line)["protocol"] for line in out.splitlines()]
    assert heavy == []


def test_a_heavy_command_does_load_what_it_needs() -> None:
    # the check above can fail: a command that needs the sink loads it
    code, _, heavy = loaded_by("sink", "run", "--help")
    assert code == 0
    assert {"cloud_sink", "paho", "peewee"} <= set(heavy)


def test_the_lazy_groups_are_listed_as_their_modules_register_them() -> None:
    listed = build_parser().format_help()
    assert build_parser(load=LAZY.keys()).format_help() == listed
    for name in LAZY:
        assert build_parser(load=[name]).format_help() == listed


def test_every_lazy_group_registers_its_commands_when_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in LAZY:
        with pytest.raises(SystemExit) as stop:
            main([name, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: contactpoint {name} ")
        assert "options:" in out


def test_the_command_word_is_the_first_non_option() -> None:
    assert command_word([]) is None
    assert command_word(["--help"]) is None
    assert command_word(["-v", "sink", "run", "--data", "x"]) == "sink"
    assert command_word(["--verbose", "--", "demo"]) == "demo"


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().out


def test_an_unknown_command_is_refused_with_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["sinc", "run"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'sinc'" in err
    assert "'sink'" in err
