"""Learn mode: binding a remote key in the TOML config without disturbing the rest of it."""

from __future__ import annotations

import os
import queue
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from edge.app import backend_spec
from edge.config import Config, ConfigError, load_config
from edge.learn import ButtonChange, LearnError, bind_code, key_of, wait_for_code
from edge.radio import Decoded
from edge.scenario import load_scenario
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from hardware._api import DeviceFault, RemoteCode

HEAD = """\
# contactpoint at the north counter
[device]
id = "cp-0042"   # sticker on the box
site = "shop-7"

# --- buttons ---
"""
GREEN = """\
[[buttons]]
name = "green"
role = "green"
pin = 5   # left

"""
RED = """\
[[buttons]]
name = "big-red"  # the big one
role = "red"
pin = 13
label = "Not happy"

"""
TAIL = """\
# presence sensor, mounted under the counter
[presence]
near_m = 0.8   # tuned 2024-05
far_m  = 1.1
"""
CONFIG = HEAD + GREEN + RED + TAIL


def write(tmp_path: Path, text: str, mode: int = 0o640) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def buttons_of(path: Path) -> list[dict[str, Any]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    buttons: list[dict[str, Any]] = data["buttons"]
    return buttons


# -- binding to an existing button --------------------------------------------------------------


def test_a_wired_button_keeps_its_pin_and_gains_the_remote(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    change = bind_code(path, "red", "ev1527:27fd49")
    assert change == ButtonChange(
        "big-red", "red", "ev1527:27fd49", "rf433", "updated", kept_pin=13
    )
    text = path.read_text(encoding="utf-8")
    # everything before and after the edited table is byte-for-byte the same
    assert text.startswith(HEAD + GREEN)
    assert text.endswith("\n" + TAIL)
    edited = text.removeprefix(HEAD + GREEN).removesuffix("\n" + TAIL)
    # the table keeps its lines (and comment) and gains via and code after its last key
    assert edited == RED.rstrip("\n") + '\nvia = ["gpio", "rf433"]\ncode = "ev1527:27fd49"\n'
    config = load_config(path)
    red = config.button("red")
    assert red is not None
    assert (red.name, red.vias, red.code, red.pin, red.label) == (
        "big-red",
        ("gpio", "rf433"),
        "ev1527:27fd49",
        13,
        "Not happy",
    )
    # the daemon still opens its pin
    wired = {b.name: b.pin for b in backend_spec(config).buttons}
    assert wired == {"green": 5, "big-red": 13}


def test_a_learned_wired_button_is_pressed_both_ways_in_the_pipeline(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    bind_code(path, "big-red", "ev1527:27fd49")
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        'start = "2026-11-23T09:00:00Z"\nduration = 200.0\n'
        '[[presses]]\nat = 20.0\nbutton = "big-red"\n'  # the button's first way: its pin
        '[[presses]]\nat = 120.0\nbutton = "big-red"\nvia = "rf433"\nhold = 0.5\n'
    )
    cfg = load_config(path)
    run_simulation(cfg, load_scenario(scenario, cfg), scenario, tmp_path / "data")
    with Store.open(tmp_path / "data" / STORE_NAME) as store:
        events = [*store.orphan_events(), *(e for c in store.contacts() for e in c.events)]
    presses = sorted((e.t_ns // 10**9, e.button, e.via) for e in events if e.kind == "red")
    assert presses == [(20, "big-red", "gpio"), (120, "big-red", "rf433")]


def test_wireless_only_gives_up_the_pin_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    change = bind_code(path, "red", "ev1527:27fd49", wireless_only=True)
    assert change == ButtonChange("big-red", "red", "ev1527:27fd49", "rf433", "updated")
    red = load_config(path).button("red")
    assert red is not None
    assert red.vias == ("rf433",)
    assert red.pin == 13
    assert "big-red" not in [b.name for b in backend_spec(load_config(path)).buttons]


def test_a_button_without_a_pin_becomes_a_remote(tmp_path: Path) -> None:
    helper = '[[buttons]]\nname = "help"\nrole = "request"\n\n'
    path = write(tmp_path, HEAD + GREEN + RED + helper + TAIL)
    change = bind_code(path, "help", "ev1527:000011")
    assert change.kept_pin is None
    helper = helper.rstrip("\n") + '\nvia = "rf433"\ncode = "ev1527:000011"\n\n'
    assert path.read_text(encoding="utf-8") == HEAD + GREEN + RED + helper + TAIL


def test_relearning_a_wired_remote_button_replaces_the_code_only(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    bind_code(path, "red", "ev1527:27fd49")
    first = path.read_text(encoding="utf-8")
    change = bind_code(path, "red", "ev1527:000001")
    assert (change.action, change.previous_code, change.kept_pin) == (
        "updated",
        "ev1527:27fd49",
        13,
    )
    assert path.read_text(encoding="utf-8") == first.replace("27fd49", "000001")
    before = path.read_bytes()
    assert bind_code(path, "red", "ev1527:000001").action == "unchanged"
    assert path.read_bytes() == before
    # another receiver for the same key: the wireless way changes, the pin stays
    bind_code(path, "red", "ev1527:000001", via="serial")
    red = load_config(path).button("red")
    assert red is not None
    assert red.vias == ("gpio", "serial")
    assert red.pin == 13


def test_binding_by_name_wins_over_role(tmp_path: Path) -> None:
    text = CONFIG + '\n[[buttons]]\nname = "red"\nrole = "green"\n'
    path = write(tmp_path, text)
    change = bind_code(path, "red", "nrf24:07")
    assert (change.name, change.role, change.via) == ("red", "green", "nrf24")
    by_name = {b["name"]: b for b in buttons_of(path)}
    assert by_name["red"]["code"] == "nrf24:07"
    assert "code" not in by_name["big-red"]


def test_rebinding_replaces_the_code_in_place_and_keeps_its_comment(tmp_path: Path) -> None:
    red = RED.replace(
        "pin = 13\n", 'pin = 13\ncode = "ev1527:000001"  # old remote\nvia = "rf433"\n'
    )
    path = write(tmp_path, HEAD + GREEN + red + TAIL)
    change = bind_code(path, "big-red", "ev1527:27fd49")
    assert change.previous_code == "ev1527:000001"
    expected = HEAD + GREEN + red.replace("000001", "27fd49") + TAIL
    assert path.read_text(encoding="utf-8") == expected


def test_binding_the_same_code_again_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    bind_code(path, "red", "ev1527:27fd49")
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    change = bind_code(path, "red", "EV1527:27FD49")
    assert change.action == "unchanged"
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == mtime


def test_via_is_as_given(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    bind_code(path, "green", "ev1527:27fd49", via="serial")
    green = load_config(path).button("green")
    assert green is not None
    assert green.vias == ("gpio", "serial")


# -- appending a button -------------------------------------------------------------------------


def test_a_role_without_a_button_gets_a_new_table_before_what_followed(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    change = bind_code(path, "request", "ev1527:abcde1")
    assert change == ButtonChange("request-remote", "request", "ev1527:abcde1", "rf433", "appended")
    text = path.read_text(encoding="utf-8")
    new = '[[buttons]]\nname = "request-remote"\nrole = "request"\nvia = "rf433"\n'
    new += 'code = "ev1527:abcde1"\n'
    # the comment that introduced [presence] still sits right above it
    assert text == HEAD + GREEN + RED + new + "\n" + TAIL
    assert [b["name"] for b in buttons_of(path)] == ["green", "big-red", "request-remote"]


def test_a_new_name_does_not_collide(tmp_path: Path) -> None:
    text = CONFIG + '\n[[buttons]]\nname = "seller-remote"\nrole = "green"\ncode = "x:1"\n'
    path = write(tmp_path, text)
    change = bind_code(path, "seller", "ev1527:000011")
    assert change.name == "seller-remote-2"
    load_config(path)


def test_an_unknown_role_or_name_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    with pytest.raises(LearnError, match="not a role"):
        bind_code(path, "purple", "ev1527:000011")
    assert path.read_text(encoding="utf-8") == CONFIG


def test_a_question_button_is_not_invented(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    with pytest.raises(LearnError, match="question = N"):
        bind_code(path, "question", "ev1527:000011")
    assert path.read_text(encoding="utf-8") == CONFIG


# -- defaults -----------------------------------------------------------------------------------


def test_a_config_without_buttons_keeps_the_defaults_when_a_code_is_bound(
    tmp_path: Path,
) -> None:
    text = HEAD + TAIL
    path = write(tmp_path, text)
    change = bind_code(path, "seller", "nrf24:07")
    assert change.defaults_written
    assert (change.name, change.action, change.via) == ("seller", "updated", "nrf24")
    assert change.kept_pin == 26
    written = path.read_text(encoding="utf-8")
    assert written.startswith(text)  # the buttons are appended after everything else
    defaults = Config().buttons
    config = load_config(path)
    assert [(b.name, b.role, b.pin) for b in config.buttons] == [
        (b.name, b.role, b.pin) for b in defaults
    ]
    assert [b.code for b in config.buttons] == [None, None, None, None, "nrf24:07"]
    assert [b.vias for b in config.buttons] == [("gpio",)] * 4 + [("gpio", "nrf24")]
    assert config.presence.near_m == 0.8


def test_a_config_without_buttons_and_an_absent_role_gets_defaults_plus_one(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, HEAD)
    change = bind_code(path, "request", "ev1527:000011")
    assert change.name == "request"  # the default request button, once written out
    bind_code(path, "green", "ev1527:000012")
    config = load_config(path)
    assert len(config.buttons) == len(Config().buttons)
    assert {b.name: b.code for b in config.buttons if b.code} == {
        "request": "ev1527:000011",
        "green": "ev1527:000012",
    }


# -- refusals -----------------------------------------------------------------------------------


def test_a_code_bound_to_another_button_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    bind_code(path, "green", "ev1527:27fd49")
    before = path.read_bytes()
    with pytest.raises(LearnError, match="already bound to button 'green'"):
        bind_code(path, "red", "ev1527:27fd49")
    with pytest.raises(LearnError, match="already bound to button 'green'"):
        bind_code(path, "request", "ev1527:27fd49")  # would be appended
    with pytest.raises(LearnError, match="already bound to button 'green'"):
        bind_code(path, "red", "EV1527:27FD49")  # keys are case-insensitive
    assert path.read_bytes() == before


@pytest.mark.parametrize("code", ["", "no-protocol", "ev1527:27 fd49", "a:" + "1" * 70])
def test_a_code_that_is_not_a_key_is_refused(tmp_path: Path, code: str) -> None:
    path = write(tmp_path, CONFIG)
    with pytest.raises(LearnError, match="not a remote key"):
        bind_code(path, "red", code)
    assert path.read_text(encoding="utf-8") == CONFIG


def test_an_unknown_via_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    with pytest.raises(LearnError, match="via must be one of"):
        bind_code(path, "red", "ev1527:27fd49", via="wifi")  # type: ignore[arg-type]
    assert path.read_text(encoding="utf-8") == CONFIG


def test_validation_failure_leaves_the_file_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, CONFIG)
    calls: list[Path] = []
    real_load = load_config

    def load_then_fail_on_temp(p: Path | None) -> Config:
        assert p is not None
        calls.append(p)
        if p != path:
            raise ConfigError(f"{p}: 1 problem(s):\n  - buttons[2].code: bad")
        return real_load(p)

    monkeypatch.setattr("edge.learn.load_config", load_then_fail_on_temp)
    with pytest.raises(LearnError, match="would be invalid") as info:
        bind_code(path, "red", "ev1527:27fd49")
    assert str(path) in str(info.value)
    assert calls[0] == path
    assert calls[1] != path
    assert path.read_text(encoding="utf-8") == CONFIG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # no temp left


def test_an_already_invalid_config_is_not_edited(tmp_path: Path) -> None:
    text = CONFIG.replace("near_m = 0.8", "near_m = 9.0")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="near_m"):
        bind_code(path, "red", "ev1527:27fd49")
    assert path.read_text(encoding="utf-8") == text


def test_a_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LearnError, match="config example"):
        bind_code(tmp_path / "nope.toml", "red", "ev1527:27fd49")


# -- atomic write -------------------------------------------------------------------------------


def test_a_failing_replace_leaves_the_original_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, CONFIG)

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        bind_code(path, "red", "ev1527:27fd49")
    assert path.read_text(encoding="utf-8") == CONFIG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_the_file_mode_is_kept(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, CONFIG, mode)
    bind_code(path, "red", "ev1527:27fd49")
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_the_file_is_replaced_not_rewritten(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG)
    inode = path.stat().st_ino
    bind_code(path, "red", "ev1527:27fd49")
    assert path.stat().st_ino != inode  # a new file took its place in one rename


def test_inline_buttons_array_is_edited_too(tmp_path: Path) -> None:
    text = 'buttons = [{name = "g", role = "green", pin = 5}]\n\n' + HEAD + TAIL
    path = write(tmp_path, text)
    bind_code(path, "green", "ev1527:000011")
    bind_code(path, "red", "ev1527:000012")
    assert [(b["name"], b.get("via"), b.get("code")) for b in buttons_of(path)] == [
        ("g", ["gpio", "rf433"], "ev1527:000011"),
        ("red-remote", "rf433", "ev1527:000012"),
    ]
    assert path.read_text(encoding="utf-8").endswith("\n\n" + HEAD + TAIL)


# -- wait_for_code ------------------------------------------------------------------------------


def test_wait_for_code_returns_the_first_key_skipping_other_events() -> None:
    q: queue.Queue[Any] = queue.Queue()
    q.put(DeviceFault("rflink", False, "gone", 1))
    q.put(RemoteCode("rflink", "EV1527", "27FD49", 2))
    q.put(RemoteCode("rflink", "ev1527", "000011", 3))
    assert wait_for_code(q, 1.0) == "ev1527:27fd49"
    assert q.qsize() == 1


def test_wait_for_code_times_out_on_an_empty_queue() -> None:
    q: queue.Queue[Any] = queue.Queue()
    with pytest.raises(LearnError, match=r"within 0\.05 s"):
        wait_for_code(q, 0.05)


def test_wait_for_code_on_an_iterable_and_its_end() -> None:
    items = [DeviceFault("nrf24", True, "ok", 1), RemoteCode("nrf24", "nrf24", "07", 2)]
    assert wait_for_code(iter(items), 1.0) == "nrf24:07"
    with pytest.raises(LearnError):
        wait_for_code(iter(items[:1]), 1.0)


def test_wait_for_code_checks_the_deadline_between_items() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def faults() -> Any:
        while True:
            now[0] += 0.4
            yield DeviceFault("rflink", False, "noise", 0)

    with pytest.raises(LearnError):
        wait_for_code(faults(), 1.0, clock=clock)
    assert now[0] == pytest.approx(1.2)  # gave up at the first item past the deadline


def test_the_gpio_decoders_code_gives_the_same_key() -> None:
    decoded = Decoded("ev1527", 24, 0x27FD49, 320, id=0x27FD4, key=9)
    from_gpio = key_of(decoded)
    from_serial = key_of(RemoteCode("rflink", "ev1527", "27fd49", 0))
    assert from_gpio == from_serial == "ev1527:27fd49"
    assert key_of(DeviceFault("x", True, "", 0)) is None
