"""The status message's optional health fields (``alarms``, ``faults``) on both sides of the
wire, against the golden fragment tests/fixtures/wire/status_health.json, and the crash points
being no-ops unless armed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cloud_sink import wire as sink_wire
from contract import crashpoint
from edge.clock import NS
from edge.health import Health
from edge.publish import wire
from tests.wire_samples import CONTACT, DEVICE, SITE, START, TODAY

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "wire"


def golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text(encoding="utf-8"))
    return data


def status(health: dict[str, Any] | None) -> dict[str, Any]:
    return dict(
        wire.status_payload(
            device=DEVICE,
            site=SITE,
            online=True,
            version="0.1.0",
            boot_id=CONTACT.boot_id,
            outbox_depth=3,
            free_disk_bytes=12_345_678_912,
            clock_synced=True,
            at_wall_ns=START + 600 * NS,
            today=TODAY,
            health=health,
        )
    )


def health_sample() -> Health:
    health = Health()
    health.alarm("clips_deleted_delivered", "x", 11)
    health.alarm(
        "clips_deleted_delivered",
        "clip of contact c0ffee00000000000000000000000001 deleted (2272044 bytes)",
    )
    health.alarm(
        "disk_full", "no space left on the device for clip c0ffee00000000000000000000000002"
    )
    health.fault("microphone", False, "ALSA: cannot open 'default': No such device")
    health.fault("ranger", False, "gone")
    health.fault("ranger", True, "back")
    return health


def test_health_fields_are_golden_and_optional() -> None:
    plain, with_health = status(None), status(health_sample().snapshot())
    expected = golden("status.json")
    expected["status"].update(golden("status_health.json"))
    assert {k: v for k, v in with_health.items() if k != "msg_id"} == {
        k: v for k, v in expected.items() if k != "msg_id"
    }
    assert "alarms" not in plain["status"]
    assert "faults" not in plain["status"]
    assert status(Health().snapshot())["status"].keys() == plain["status"].keys()


def test_the_sink_parses_health_and_rejects_a_malformed_one() -> None:
    payload = golden("status.json")
    payload["status"].update(golden("status_health.json"))
    topic = f"contactpoint/v1/{SITE}/{DEVICE}/status"
    parsed = sink_wire.parse(topic, json.dumps(payload).encode())
    assert isinstance(parsed, sink_wire.Message)
    assert isinstance(parsed.body, sink_wire.Status)
    assert parsed.body.alarms[1] == ("disk_full", 1, payload["status"]["alarms"][1]["detail"])
    assert parsed.body.faults == (("microphone", payload["status"]["faults"][0]["detail"]),)
    plain = sink_wire.parse(topic, json.dumps(golden("status.json")).encode())
    assert isinstance(plain, sink_wire.Message)
    assert isinstance(plain.body, sink_wire.Status)
    assert (plain.body.alarms, plain.body.faults) == ((), ())
    for bad in ({"alarms": "disk full"}, {"faults": [{"part": 3, "detail": "x"}]}):
        broken = golden("status.json")
        broken["status"].update(bad)
        result = sink_wire.parse(topic, json.dumps(broken).encode())
        assert isinstance(result, sink_wire.Rejected)
        assert "status." in result.detail


def test_unknown_alarm_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown alarm kind 'disk_ful'"):
        Health().alarm("disk_ful", "typo")


def test_crash_points_are_no_ops_unless_armed() -> None:
    assert os.environ.get(crashpoint.ENV) is None
    assert crashpoint._TARGET is None
    crashpoint.crashpoint("store.commit")  # returns: nothing armed
    crashpoint.crashpoint("sink.commit")
    armed = subprocess.run(
        [sys.executable, "-c", "from contract.crashpoint import crashpoint; crashpoint('x'); "
         "crashpoint('y'); print('alive'); crashpoint('y')"],
        env={**os.environ, crashpoint.ENV: "y@2"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert armed.returncode == -9
    assert armed.stdout == "alive\n"


@pytest.mark.parametrize("spec", ["y@0", "y@two", "@2", "y@"])
def test_a_malformed_crash_point_is_refused_naming_the_variable(spec: str) -> None:
    with pytest.raises(ValueError, match=f"CONTACTPOINT_CRASH_AT={spec!r}: use NAME or NAME@N"):
        crashpoint.parse(spec)
    assert crashpoint.parse("store.commit") == ("store.commit", 1)
    assert crashpoint.parse("store.commit@3") == ("store.commit", 3)
