"""Video links: template checks with clear errors, time formats and zones, offsets."""

from __future__ import annotations

import pytest

from edge.clock import NS
from edge.config import Config, ConfigError, parse_model
from edge.video import VideoLinks, placeholders

T = 1_795_424_410 * NS + 250_000_000  # 2026-11-23T09:00:10.250Z


def links(**kw: object) -> VideoLinks:
    base: dict[str, object] = {
        "template": "https://nvr.local/archive?camera={camera}&t={time}", "camera": "3",
    }  # fmt: skip
    return VideoLinks(**{**base, **kw})  # type: ignore[arg-type]


def test_epoch_seconds_and_milliseconds() -> None:
    assert links().url(T) == "https://nvr.local/archive?camera=3&t=1795424410"
    assert (
        links(time_format="epoch_ms").url(T) == "https://nvr.local/archive?camera=3&t=1795424410250"
    )


def test_offset_moves_the_time() -> None:
    assert links(offset_s=-5).url(T).endswith("t=1795424405")
    assert links(offset_s=0.75).url(T).endswith("t=1795424411")


def test_strftime_in_a_time_zone_is_url_encoded() -> None:
    moscow = links(time_format="%Y-%m-%d %H:%M:%S", timezone="Europe/Moscow")
    assert moscow.url(T).endswith("t=2026-11-23%2012:00:10")  # UTC+3, the space encoded
    utc = links(time_format="%Y-%m-%dT%H:%M:%S")
    assert utc.url(T).endswith("t=2026-11-23T09:00:10")


def test_device_and_site_placeholders() -> None:
    url = links(template="http://x/{site}/{device}/{camera}?at={time}", device="cp-1", site="s-1")
    assert url.url(T) == "http://x/s-1/cp-1/3?at=1795424410"


def test_unknown_placeholder_is_named_with_the_allowed_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown placeholder \{cam\}.*allowed: \{camera\}, \{time\}"
    ):
        placeholders("http://x/?c={cam}&t={time}")
    with pytest.raises(ValueError, match=r"unknown placeholder \{\}"):
        placeholders("http://x/{}")
    with pytest.raises(ValueError, match="no format spec"):
        placeholders("http://x/{time:%Y}")
    with pytest.raises(ValueError, match="not a valid template"):
        placeholders("http://x/{time")


def test_config_errors_name_the_key() -> None:
    def load(video: dict[str, object]) -> Config:
        return parse_model(Config, {"video": video}, "device.toml")

    with pytest.raises(ConfigError, match=r"video .*unknown placeholder \{camera_id\}"):
        load({"url_template": "http://nvr/{camera_id}"})
    with pytest.raises(ConfigError, match="time_format 'iso'"):
        load({"url_template": "http://nvr/{time}", "time_format": "iso"})
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        load({"url_template": "http://nvr/{time}", "timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError, match=r"video.offset_s .*<= 3600"):
        load({"offset_s": 7200})
    assert load({"url_template": "http://nvr/{camera}/{time}"}).video.camera == "1"
