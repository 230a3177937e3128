"""The config base both files stand on: the loader, the error wording, secrets kept out of
errors, the commented example. The device's and the sink's schemas are tested in
tests/edge/test_config.py and tests/cloud_sink/test_config.py."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

import pytest
from msgspec import Meta, field

from contract.config import (
    HIDDEN,
    MAX_TOML_BYTES,
    SECRET,
    ConfigError,
    FieldError,
    Section,
    document,
    example,
    load,
    read_toml,
    validate,
)


class Account(Section):
    user: Annotated[str, Meta(min_length=1, description="Who logs in")] = "me"
    token: Annotated[str, Meta(min_length=8, extra=SECRET, description="Key")] = "default-token"
    mode: Annotated[Literal["a", "b"], Meta(description="Which mode")] = "a"

    def __post_init__(self) -> None:
        if self.token == self.user:
            raise ValueError("token and user must differ")


class Entry(Section):
    name: Annotated[str, Meta(pattern=r"^[a-z]+$", description="An entry's name")]
    size: Annotated[int, Meta(ge=1, le=10, description="How big")] = 1
    note: Annotated[str | None, Meta(description="Optional note")] = None

    def __post_init__(self) -> None:
        if self.note == "-":
            raise FieldError("note", "write no note rather than '-'")


class Whole(Section):
    level: Annotated[int, Meta(ge=0, le=5, description="A top-level key")] = 2
    account: Account = Account()
    entries: Annotated[list[Entry], Meta(description="Some entries")] = field(
        default_factory=lambda: [Entry(name="one"), Entry(name="two", size=3)]
    )
    extras: Annotated[list[Entry], Meta(description="None by default")] = []  # noqa: RUF012


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
    assert validate(Whole, document(Whole()), "example") == Whole()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "[account]\nmode = 'c'\n",
            "account.mode (got 'c'): Invalid enum value 'c'; allowed: 'a' | 'b'",
        ),
        (
            "[[entries]]\nname = 'Big'\n",
            "entries[0].name (got 'Big'): Expected `str` matching regex '^[a-z]+$'; "
            "allowed: matching ^[a-z]+$",
        ),
        (
            "[[entries]]\nname = 'a'\nsise = 2\n",
            "entries[0].sise: unknown key. Did you mean 'size'? Valid keys here: name, size, note",
        ),
        (
            "[[entries]]\nname = 'a'\n[[entries]]\nname = 'b'\nsize = 11\n",
            "entries[1].size (got 11): Expected `int` <= 10; allowed: >= 1, <= 10",
        ),
        (
            "levle = 1\n",
            "levle: unknown key. Did you mean 'level'? Valid keys here: level, account, entries, "
            "extras",
        ),
        ("level = true\n", "level (got True): a number, not true/false; allowed: >= 0, <= 5"),
        ("[[entries]]\nsize = 2\n", "entries[0].name: required key missing; allowed: matching"),
        (
            "[[entries]]\nname = 'a'\nnote = '-'\n",
            "entries[0].note (got '-'): write no note rather than '-'",
        ),
    ],
)
def test_a_problem_names_the_file_key_value_and_fix(
    tmp_path: Path, text: str, problem: str
) -> None:
    # msgspec stops at the first problem: a file with several is reported one at a time
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load(Whole, path)
    assert str(err.value).startswith(f"{path}: {problem}")


def test_a_secret_is_never_shown_alone_or_in_its_table() -> None:
    with pytest.raises(ConfigError) as err:
        validate(Whole, {"account": {"token": "S3cr3t"}}, "x.toml")  # too short
    assert f"account.token (got {HIDDEN}): Expected `str` of length >= 8" in str(err.value)
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
    assert "S3cr3t" not in repr(Account(user="me", token="S3cr3t-in-repr"))


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
