"""The config base both files stand on: the loader, the error wording, secrets kept out of
errors, the commented example. The device's and the sink's schemas are tested in
tests/edge/test_config.py and tests/cloud_sink/test_config.py."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal, Self

import pytest
from pydantic import Field, model_validator

from contract.config import (
    HIDDEN,
    MAX_TOML_BYTES,
    SECRET,
    ConfigError,
    Section,
    example,
    load,
    read_toml,
    validate,
)


class Account(Section):
    user: Annotated[str, Field(min_length=1, description="Who logs in")] = "me"
    token: Annotated[str, Field(min_length=8, json_schema_extra=SECRET, description="Key")] = (
        "default-token"
    )
    mode: Annotated[Literal["a", "b"], Field(description="Which mode")] = "a"

    @model_validator(mode="after")
    def _not_same(self) -> Self:
        if self.token == self.user:
            raise ValueError("token and user must differ")
        return self


class Entry(Section):
    name: Annotated[str, Field(pattern=r"^[a-z]+$", description="An entry's name")]
    size: Annotated[int, Field(ge=1, le=10, description="How big")] = 1
    note: Annotated[str | None, Field(description="Optional note")] = None


class Whole(Section):
    level: Annotated[int, Field(ge=0, le=5, description="A top-level key")] = 2
    account: Account = Account()
    entries: Annotated[list[Entry], Field(description="Some entries")] = Field(
        default_factory=lambda: [Entry(name="one"), Entry(name="two", size=3)]
    )
    extras: Annotated[list[Entry], Field(description="None by default")] = []  # noqa: RUF012


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "x.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_the_example_is_complete_commented_and_the_defaults(tmp_path: Path) -> None:
    text = example(Whole, ["A test file."])
    assert text.startswith("# A test file.\n")
    doc = tomllib.loads(text)
    assert validate(Whole, doc, "example") == Whole()
    assert load(Whole, write(tmp_path, text)) == Whole()
    assert text.index("level = 2") < text.index("[account]")  # plain keys before the tables
    assert "# A top-level key [>= 0, <= 5]" in text
    assert "# Which mode ['a' | 'b']" in text
    assert "# [[entries]]: Some entries" in text
    assert "# note = (unset)" in text
    assert doc["entries"] == [{"name": "one", "size": 1}, {"name": "two", "size": 3}]


def test_every_problem_names_the_file_key_value_and_fix(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "levle = 1\n[account]\nmode = 'c'\n[[entries]]\nname = 'Big'\nsize = 11\nsise = 2\n",
    )
    with pytest.raises(ConfigError) as err:
        load(Whole, path)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{path}: 5 problem(s):"
    assert sorted(lines[1:]) == [
        "  - account.mode (got 'c'): Input should be 'a' or 'b'; allowed: 'a' | 'b'",
        "  - entries[0].name (got 'Big'): String should match pattern '^[a-z]+$'; "
        "allowed: matching ^[a-z]+$",
        "  - entries[0].sise: unknown key. Did you mean 'size'? Valid keys here: name, size, note",
        "  - entries[0].size (got 11): Input should be less than or equal to 10; allowed: "
        ">= 1, <= 10",
        "  - levle: unknown key. Did you mean 'level'? Valid keys here: level, account, "
        "entries, extras",
    ]


def test_a_secret_is_never_shown_alone_or_in_its_table() -> None:
    with pytest.raises(ConfigError) as err:
        validate(Whole, {"account": {"token": "S3cr3t"}}, "x.toml")  # too short
    assert f"account.token (got {HIDDEN}): String should have at least 8" in str(err.value)
    assert "S3cr3t" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        validate(Whole, {"account": {"token": ["S3cr3t-in-a-list"]}}, "x.toml")  # wrong type
    assert "S3cr3t" not in str(err.value)
    with pytest.raises(ConfigError) as err:  # the table's own check shows the table
        validate(Whole, {"account": {"user": "S3cr3t-same", "token": "S3cr3t-same"}}, "x.toml")
    text = str(err.value)
    assert "token and user must differ" in text
    assert f"'token': '{HIDDEN}'" in text
    assert "'user': 'S3cr3t-same'" in text
    assert text.count("S3cr3t") == 1  # the user name only


def test_the_loader_refuses_what_is_not_a_small_utf8_toml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"x\.toml: not valid TOML"):
        read_toml(write(tmp_path, "[account\n"), "config")
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_toml(write(tmp_path, "a = " + "[" * 100_000 + "]" * 100_000 + "\n"), "config")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        read_toml(write(tmp_path, b"a = '\xff'\n"), "config")
    with pytest.raises(ConfigError, match=f"larger than {MAX_TOML_BYTES} bytes"):
        read_toml(write(tmp_path, b"#" * (MAX_TOML_BYTES + 1)), "config")
    with pytest.raises(ConfigError, match=r"nope\.toml: sink config file not found"):
        read_toml(tmp_path / "nope.toml", "sink config")
