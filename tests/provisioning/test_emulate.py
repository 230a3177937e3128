"""What the emulated arm64 device plays (provisioning/emulate/, docs/EMULATION.md): the boot
proof succeeds when the sink holds one contact of the device with a verified clip, so the
scenario its unit plays must make exactly that on the default configuration the card writes
from the emulated fleet's template (the simulated hardware)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioning.main import main

SCENARIO = Path(__file__).resolve().parents[2] / "provisioning" / "emulate" / "scenario.toml"


def test_the_emulated_devices_scenario_makes_one_contact_with_a_clip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["simulate", str(SCENARIO), "--data", str(data)]) == 0
    capsys.readouterr()
    assert main(["contacts", "--data", str(data), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1
    assert rows[0]["tags"] == ["positive", "unproductive"]
    assert rows[0]["clip"]["duration_s"] > 10
    assert (data / rows[0]["clip"]["path"]).is_file()
