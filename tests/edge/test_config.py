"""The config schema: defaults, bounds, clear errors, the generated example."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from contract.config import description, fields
from edge.config import Config, ConfigError, example_config, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_defaults() -> None:
    cfg = load_config(None)
    assert cfg == Config()
    assert [b.role for b in cfg.buttons] == ["green", "yellow", "red", "request", "seller"]
    assert cfg.audio.sample_rate == 16000
    assert cfg.contacts.window.before_s == 60.0
    assert cfg.contacts.window.after_s == 60.0


def test_example_is_the_defaults_and_documents_every_field() -> None:
    text = example_config()
    assert Config.from_dict(tomllib.loads(text)) == Config()
    # every scalar field's description appears as a comment above it
    for section in ("device", "input", "presence", "contacts", "audio", "receipts"):
        model = type(getattr(Config(), section))
        for name, info in fields(model).items():
            if description(info) and not name.startswith("_"):
                assert f"# {description(info)}" in text, (section, name)


def test_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    path = write(tmp_path, "[presence]\nnear_meters = 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text
    assert "presence.near_meters: unknown key" in text
    assert "Did you mean 'near_m'?" in text


def test_unknown_section_suggests_the_nearest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'presence'"):
        load_config(write(tmp_path, "[presense]\n"))


def test_out_of_bounds_names_key_value_and_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[presence]\ninterval_s = 0.01\n"))
    text = str(err.value)
    assert "presence.interval_s (got 0.01)" in text
    assert ">= 0.06" in text


def test_literal_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[audio]\ncodec = 'mp3'\n"))
    assert "audio.codec (got 'mp3')" in str(err.value)
    assert "'wav' | 'flac' | 'opus'" in str(err.value)


def test_problems_are_reported_one_at_a_time(tmp_path: Path) -> None:
    # msgspec stops at the first problem: fixing it shows the next (README, "Configuration")
    path = write(tmp_path, "[audio]\nsample_rate = 44100\n[contacts]\nmax_duration_s = 1\n")
    with pytest.raises(ConfigError, match=r"audio\.sample_rate \(got 44100\)") as first:
        load_config(path)
    assert "max_duration_s" not in str(first.value)
    write(tmp_path, "[contacts]\nmax_duration_s = 1\n")
    with pytest.raises(ConfigError, match=r"contacts\.max_duration_s \(got 1\): Expected"):
        load_config(path)


def test_hysteresis_must_be_ordered(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"far_m .* must be >= near_m"):
        load_config(write(tmp_path, "[presence]\nnear_m = 1.5\nfar_m = 1.0\n"))


def test_question_button_needs_its_number(tmp_path: Path) -> None:
    text = "[[buttons]]\nname = 'q'\nrole = 'question'\npin = 4\n"
    with pytest.raises(ConfigError, match=r"buttons\[0\].*needs 'question = N'"):
        load_config(write(tmp_path, text))
    ok = load_config(write(tmp_path, text + "question = 2\n"))
    assert ok.buttons[0].question == 2


def test_a_button_can_be_wired_and_wireless(tmp_path: Path) -> None:
    text = (
        '[[buttons]]\nname = "red"\nrole = "red"\npin = 13\nvia = ["gpio", "rf433"]\n'
        'code = "ev1527:27fd49"\n'
        '[[buttons]]\nname = "green"\nrole = "green"\nvia = "serial"\ncode = "ev1527:1"\n'
        '[[buttons]]\nname = "yellow"\nrole = "yellow"\npin = 6\n'
    )
    red, green, yellow = load_config(write(tmp_path, text)).buttons
    assert (red.vias, red.pin, red.code) == (("gpio", "rf433"), 13, "ev1527:27fd49")
    assert green.vias == ("serial",)
    assert yellow.vias == ("gpio",)


@pytest.mark.parametrize(
    ("via", "message"),
    [
        ("[]", "at least one"),
        ('["gpio", "gpio"]', "twice"),
        ('["gpio", "wifi"]', "via[1] (got 'wifi'): Invalid enum value 'wifi'; allowed: 'gpio'"),
    ],
)
def test_a_bad_via_list_names_the_key(tmp_path: Path, via: str, message: str) -> None:
    text = f'[[buttons]]\nname = "red"\nrole = "red"\npin = 13\nvia = {via}\n'
    with pytest.raises(ConfigError, match=r"buttons\[0\]\.via") as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value)


def test_duplicate_button_names_rejected(tmp_path: Path) -> None:
    text = "[[buttons]]\nname='a'\nrole='red'\n[[buttons]]\nname='a'\nrole='green'\n"
    with pytest.raises(ConfigError, match="two buttons are named 'a'"):
        load_config(write(tmp_path, text))


def test_tag_rule_with_typo_suggests_kind(tmp_path: Path) -> None:
    text = "[[tagging.rules]]\ntag = 'x'\nif_any = ['recipt']\n"
    with pytest.raises(ConfigError, match="did you mean 'receipt'"):
        load_config(write(tmp_path, text))


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[audio\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_ring_defaults_to_longest_clip() -> None:
    cfg = Config.from_dict({"contacts": {"max_duration_s": 100, "pre_roll_s": 2, "post_roll_s": 4}})
    # a window is handed out before_s (60) after its end: its audio must still be there
    assert cfg.ring_seconds() == 2 + 100 + 60 + 4 + 30
    no_windows = {"modes": ["presence", "survey"], "max_duration_s": 100, "pre_roll_s": 2}
    assert Config.from_dict({"contacts": no_windows}).ring_seconds() == 2 + 100 + 3 + 30
    assert Config.from_dict({"audio": {"ring_s": 50}}).ring_seconds() == 50


def test_button_lookup_by_name_then_role() -> None:
    cfg = Config.from_dict(
        {"buttons": [{"name": "big-red", "role": "red"}, {"name": "green", "role": "green"}]}
    )
    assert cfg.button("big-red") is cfg.buttons[0]
    assert cfg.button("red") is cfg.buttons[0]
    assert cfg.button("yellow") is None


def test_audio_device_may_be_a_stream_url_whose_password_is_never_shown(tmp_path: Path) -> None:
    url = "rtsp://admin:S3cret-pw@192.0.2.10:554/live?channel=1"
    assert load_config(write(tmp_path, f"[audio]\ndevice = '{url}'\n")).audio.device == url
    cases = {
        "rtmp://admin:S3cret-pw@cam/live": "scheme 'rtmp' is not supported",
        "rtsp://admin:S3cret-pw@cam:rtsp/live": "cannot be parsed",
        "rtsp://admin:S3cret/pw@cam/live": "must be percent-encoded (%2F",
        "https://admin:S3cret-pw@/live": "has no host",
        "rtsp://admin:S3cret-pw@cam/" + "x" * 3000: "at most 2048 characters",
    }
    for device, problem in cases.items():
        with pytest.raises(ConfigError) as err:
            load_config(write(tmp_path, f"[audio]\ndevice = '{device}'\n"))
        text = str(err.value)
        assert problem in text, text
        assert "audio" in text, text
        assert "S3cret" not in text, text


def test_audio_ca_file_is_for_tls_streams_only(tmp_path: Path) -> None:
    ok = "[audio]\ndevice = 'https://cam.local/audio.wav'\nca_file = '/etc/cam-ca.crt'\n"
    assert load_config(write(tmp_path, ok)).audio.ca_file == "/etc/cam-ca.crt"
    for device in ("default", "rtsp://cam.local/live", "http://cam.local/a.wav"):
        text = f"[audio]\ndevice = '{device}'\nca_file = '/etc/cam-ca.crt'\n"
        with pytest.raises(ConfigError, match=r"ca_file is for a device that is an https://"):
            load_config(write(tmp_path, text))
