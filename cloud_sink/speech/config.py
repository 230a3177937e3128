"""The settings of speech analytics: the ``[speech]`` table of the sink's ``--config`` file (the
engine and its model) and the service-standard rules file (``--rules``), both closed, typed
schemas on :mod:`contract.config`'s base.

Rules:
- ``[speech]``: which engine transcribes (``faster-whisper``, the production default; ``vosk``;
  ``pocketsphinx``), the directory its model is loaded from (``model_dir``; only pocketsphinx
  has a default, the English model its wheel ships), the language, the worker count and the
  claim lease. Command-line flags win over the file.
- The rules file: ``fuzzy_threshold`` (0-100, rapidfuzz's ratio a phrase must reach) and
  ``[[rules]]``: a ``name``, a ``kind`` (``required``: at least one phrase must be said,
  within ``within_s`` seconds of the contact's start when set; ``forbidden``: none may be
  said), ``phrases`` and the ``tag`` a failing rule puts on the contact (default
  ``no_<name>`` for a required rule, ``said_<name>`` for a forbidden one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta, field

from contract.alerts import NAME_PATTERN
from contract.config import Section, example, load

ENGINES = ("faster-whisper", "vosk", "pocketsphinx")
Engine = Literal["faster-whisper", "vosk", "pocketsphinx"]
TAG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class _Strict(Section):
    """A table whose values must have the schema's types as written (TOML is typed): msgspec
    converts strictly (an int is taken for a float, nothing else is converted)."""


class SpeechSection(_Strict):
    engine: Annotated[
        Engine,
        Meta(
            description="Speech-to-text engine: faster-whisper (Whisper models, multilingual; "
            "pip install 'contactpoint[speech]'), vosk (light; same extra) or pocketsphinx "
            "(English, its model ships with it); --engine wins"
        ),
    ] = "faster-whisper"
    model_dir: (
        Annotated[
            str,
            Meta(
                max_length=4096,
                description="Directory the engine loads its model from (a CTranslate2 Whisper "
                "model for faster-whisper, an unpacked Vosk model, a PocketSphinx acoustic model "
                "with its .dict and .lm.bin); unset = only pocketsphinx has one, the English "
                "model of its wheel",
            ),
        ]
        | None
    ) = None
    language: (
        Annotated[
            str,
            Meta(
                pattern=r"^[a-z]{2,3}(-[a-z]{2})?$",
                description="Language spoken in the clips ('ru', 'en'); unset = faster-whisper "
                "detects it, the others say their model's",
            ),
        ]
        | None
    ) = None
    device: Annotated[
        Literal["cpu", "cuda", "auto"],
        Meta(description="Where faster-whisper runs"),
    ] = "cpu"
    compute_type: Annotated[
        str,
        Meta(
            pattern=r"^[a-z0-9_]{1,32}$",
            description="faster-whisper's CTranslate2 compute type (int8 on a CPU)",
        ),
    ] = "int8"
    workers: Annotated[
        int, Meta(ge=1, le=64, description="Clips transcribed at once (threads); --workers wins")
    ] = 1
    lease_s: Annotated[
        float,
        Meta(
            ge=10,
            le=7 * 86400,
            description="How long a worker's claim on a clip lasts (s); a claim older than "
            "this is taken over by another worker, so it must exceed the longest "
            "transcription",
        ),
    ] = 3600.0
    max_attempts: Annotated[
        int,
        Meta(
            ge=1,
            le=100,
            description="A clip whose transcription failed this often is left alone (its "
            "error stays in the database)",
        ),
    ] = 3
    rules_file: (
        Annotated[
            str,
            Meta(
                max_length=4096,
                description="Service-standard rules file checked on every new transcript "
                "(contactpoint sink transcribe --rules wins); unset = no checks",
            ),
        ]
        | None
    ) = None


class Rule(_Strict, kw_only=True):
    name: Annotated[str, Meta(pattern=NAME_PATTERN, description="The rule's name, e.g. greeting")]
    kind: Annotated[
        Literal["required", "forbidden"],
        Meta(description="required: one of the phrases must be said; forbidden: none may be"),
    ] = "required"
    phrases: Annotated[
        list[Annotated[str, Meta(min_length=1, max_length=200)]],
        Meta(min_length=1, max_length=200, description="Phrases, any one of which counts"),
    ]
    within_s: (
        Annotated[
            float,
            Meta(
                gt=0,
                le=86400,
                description="A required phrase counts only this many seconds from the contact's "
                "start; unset = anywhere",
            ),
        ]
        | None
    ) = None
    tag: (
        Annotated[
            str,
            Meta(
                pattern=TAG_PATTERN,
                description="Tag of a contact failing the rule; unset = no_<name> (required) or "
                "said_<name> (forbidden)",
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        if self.within_s is not None and self.kind == "forbidden":
            raise ValueError("within_s applies to required rules only; remove it")

    @property
    def fail_tag(self) -> str:
        if self.tag is not None:
            return self.tag
        return f"no_{self.name}" if self.kind == "required" else f"said_{self.name}"


class RulesFile(Section):
    fuzzy_threshold: Annotated[
        float,
        Meta(
            ge=50,
            le=100,
            description="How close (rapidfuzz ratio, 0-100) heard words must be to a phrase "
            "to count; 100 = exact lemmas only",
        ),
    ] = 85.0
    rules: Annotated[list[Rule], Meta(description="The service-standard rules")] = field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"rules[{index}]: name {rule.name!r} appears twice")
            seen.add(rule.name)


def load_rules(path: Path) -> RulesFile:
    """The rules file (a :class:`~contract.config.ConfigError` names the first problem)."""
    return load(RulesFile, path, "rules")


def example_rules() -> str:
    return example(
        RulesFile,
        ["contactpoint service-standard rules (contactpoint sink transcribe --rules FILE)."],
    )
