"""The regression suite: every capture decodes to exactly its expected lines."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from edge.radio import decode_ook_file, read_ook

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rf433"
CAPTURES = sorted(FIXTURES.glob("*.ook"))


def expected_of(capture: Path) -> list[object]:
    lines = capture.with_name(capture.stem + ".expected.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_the_suite_covers_the_required_cases() -> None:
    names = {c.stem for c in CAPTURES}
    required = {"ev1527_280us", "ev1527_320us", "ev1527_370us", "pt2262_floating", "noise"}
    required |= {f"rcswitch{n}" for n in range(1, 7)}
    required |= {"ev1527_jitter20pct", "two_keys", "truncated", "lookalike_rcswitch1_24bit"}
    assert required <= names


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.stem for c in CAPTURES])
def test_capture_decodes_to_exactly_its_expected_lines(capture: Path) -> None:
    assert list(decode_ook_file(capture)) == expected_of(capture)


def test_noise_capture_is_seconds_of_dense_edges() -> None:
    pulses = [p for packet in read_ook((FIXTURES / "noise.ook").read_text()) for p in packet]
    seconds = sum(mark + gap for mark, gap in pulses) / 1e6
    edges_per_s = 2 * len(pulses) / seconds
    assert seconds >= 3
    assert 8_000 <= edges_per_s <= 12_000


def test_fixtures_are_what_the_generator_makes() -> None:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files: dict[str, str] = module.render()
    on_disk = {p.name for p in FIXTURES.iterdir() if p.name != "make_fixtures.py"}
    assert set(files) == on_disk - {"__pycache__"}
    for name, text in files.items():
        assert (FIXTURES / name).read_text() == text, f"{name} is stale: run make_fixtures.py"
