"""The microphone or the presence sensor gone, at start or mid-run: the daemon keeps running
what still works, reports the fault in its status (``status.faults``) and logs, recovers when
the part returns, and contacts waiting for audio are saved after a bounded wait
(``audio.stall_s``) with the audio there was, truncated, or without a clip."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

import hardware.gpio
from edge.app import Core, settle_ns
from edge.clock import NS
from edge.config import Config
from edge.daemon import run_live
from edge.scenario import busy_shift
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from hardware import AudioPeriod, DeviceFault, Distance, HardwareEvent
from provisioning.broker import LocalBroker
from tests.faults.harness import config_dict, retained_status
from tests.waiting import wait_for

SHIFT = busy_shift(0.5, seed=3)
GONE, BACK = 300 * NS, 900 * NS  # the part is away for ten minutes of the shift


def outage(
    part: str, drops: type
) -> tuple[Callable[[Core], None], list[dict[str, Any]], dict[str, int]]:
    """A core hook: between GONE and BACK the part's events stop and its driver reports the
    fault (as the ALSA / ultrasonic drivers do); what the core's health says during the outage
    and when each contact was saved are recorded."""
    seen: list[dict[str, Any]] = []
    saved_at: dict[str, int] = {}

    def hook(core: Core) -> None:
        handle, save = core.handle, core.store.save_contact
        state = {"down": False}

        def failing(event: HardwareEvent | Any) -> None:
            now = core.clock.monotonic_ns()
            if GONE <= now < BACK:
                if not state["down"]:
                    handle(DeviceFault(part, False, f"{part} unplugged", now))
                    state["down"] = True
                if isinstance(event, drops):
                    if now > GONE + 60 * NS and not seen:
                        seen.append(core.health.snapshot())
                    return
            elif state["down"]:
                handle(DeviceFault(part, True, "back", now))
                state["down"] = False
                seen.append(core.health.snapshot())
            handle(event)

        def saving(record: Any, *args: Any, **kwargs: Any) -> bool:
            saved_at[record.id] = core.clock.monotonic_ns()
            return save(record, *args, **kwargs)

        core.handle = failing  # type: ignore[method-assign]
        core.store.save_contact = saving  # type: ignore[method-assign,assignment]

    return hook, seen, saved_at


def contacts(data: Path) -> list[Any]:
    with Store.open(data / STORE_NAME) as store:
        return store.contacts()


def test_microphone_gone_mid_run_contacts_are_saved_after_a_bounded_wait(
    tmp_path: Path,
) -> None:
    cfg = Config.from_dict(config_dict("mqtt://127.0.0.1:1", audio={"stall_s": 5}))
    hook, seen, saved_at = outage("microphone", AudioPeriod)
    cores: list[Core] = []

    def both(core: Core) -> None:
        hook(core)
        cores.append(core)

    summary = run_simulation(cfg, SHIFT, tmp_path / "s.toml", tmp_path, core_hook=both)
    during, after = seen
    assert during["faults"] == [{"part": "microphone", "detail": "microphone unplugged"}]
    assert after["faults"] == []  # recovered
    # the bound: the segmenter's settle time (a window also waits before_s after its end, in
    # case a press merges with it), the post-roll, stall_s, the once-a-second check
    bound_ns = settle_ns(cfg) + 3 * NS + 5 * NS + 2 * NS
    held_ns = round(cfg.contacts.window.before_s * NS)
    waited = [c for c in contacts(tmp_path) if GONE < c.end_ns < BACK - 60 * NS - held_ns]
    assert len(waited) >= 3
    for c in waited:  # not stuck until the microphone returned: saved within the bound
        assert saved_at[c.id] <= c.end_ns + bound_ns + (held_ns if c.mode == "window" else 0)
        assert c.clip is None or c.clip.truncated
    later = [c for c in contacts(tmp_path) if c.start_ns > BACK + 10 * NS]
    assert later
    assert all(c.clip is not None and not c.clip.truncated for c in later)
    assert cores[0].health.count("audio_stalled") >= len(waited)
    assert summary.contacts == len(contacts(tmp_path))


def test_presence_sensor_gone_buttons_still_make_contacts(tmp_path: Path) -> None:
    cfg = Config.from_dict(config_dict("mqtt://127.0.0.1:1"))
    hook, seen, _ = outage("ranger", Distance)
    run_simulation(cfg, SHIFT, tmp_path / "s.toml", tmp_path, core_hook=hook)
    during, after = seen
    assert during["faults"] == [{"part": "ranger", "detail": "ranger unplugged"}]
    assert after["faults"] == []
    saved = contacts(tmp_path)
    with Store.open(tmp_path / STORE_NAME) as store:
        orphans = store.orphan_events()
    presses = [e for c in saved for e in c.events if e.button] + [e for e in orphans if e.button]
    assert sum(GONE < e.t_ns < BACK for e in presses) >= 3  # the buttons kept working
    assert any(c.mode == "presence" and c.start_ns > BACK for c in saved)  # sensor back


def status_faults(broker_url: str) -> list[str]:
    """The parts the device's retained status names as faulty ([] while there is none yet)."""
    try:
        status = retained_status(broker_url, timeout_s=2)["status"]
    except queue.Empty:
        return []
    return [f["part"] for f in status.get("faults", [])]


def test_microphone_missing_at_start_on_real_drivers(
    broker: LocalBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """backend 'pi' with an ALSA device that does not exist and a button on gpiozero mock pins:
    the daemon runs, the status names the microphone, a request press makes a contact that is
    saved without a clip once ``stall_s`` has passed (not at shutdown)."""
    factory = MockFactory()
    monkeypatch.setattr(hardware.gpio, "make_pin_factory", lambda *a, **k: factory)
    data = config_dict(
        broker.url,
        hardware={"backend": "pi"},
        audio={"device": "hw:CARD=NoSuchCard", "stall_s": 1},
        contacts={"modes": ["window"], "window": {"before_s": 1, "after_s": 1}},
        presence={"arrive_dwell_s": 0.2, "leave_dwell_s": 0.2, "no_echo_as_far_s": 0.2},
        mqtt={"status_interval_s": 1},
    )
    data["buttons"] = [{"name": "request", "role": "request", "pin": 13}]
    cfg = Config.from_dict(data)
    stop = threading.Event()
    result: list[Core] = []
    daemon = threading.Thread(target=lambda: result.append(run_live(cfg, tmp_path, stop=stop)))
    daemon.start()
    try:
        wait_for(lambda: "microphone" in status_faults(broker.url),
                 "the microphone fault in the status")  # fmt: skip
        pin = factory.pin(13)
        wait_for(lambda: pin.state == 1, "the button's pull-up")
        pin.drive_low()
        time.sleep(0.2)  # held for 200 ms of real time: the debouncer measures real edges
        pin.drive_high()
        wait_for(lambda: (tmp_path / STORE_NAME).exists() and len(contacts(tmp_path)) == 1,
                 "the contact saved while the daemon runs")  # fmt: skip
    finally:
        stop.set()
        daemon.join(30)
    assert result, "the daemon did not stop"
    (contact,) = contacts(tmp_path)
    assert contact.clip is None
    assert contact.ended_by == "window"
    assert result[0].health.faults.get("microphone")
