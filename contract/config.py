"""The base of every configuration file, the device's (``edge/config/``) and the sink's
(``cloud_sink/config.py``): a closed, typed TOML schema, one loader, one way to word errors and
one commented example generated from the schema.

Rules:
- A schema is built of :class:`Section` models: every key has a default (or is required in a
  list entry), bounds where numbers are involved and a description; unknown keys are refused.
- :func:`read_toml` reads a file of at most :data:`MAX_TOML_BYTES`, UTF-8 TOML; anything else is
  a :class:`ConfigError` naming the file.
- :func:`validate` checks a parsed document and reports *every* problem at once, each naming
  the file, the dotted key, the bad value and the fix: the nearest valid key for a misspelt one
  ("Did you mean ...?") and the valid keys there, the allowed values or bounds for a bad value.
- A field marked :data:`SECRET` (``json_schema_extra=SECRET``) never has its value shown in an
  error, neither on its own nor inside the table that holds it.
- :func:`example` renders a schema's defaults as a complete TOML file, each key preceded by its
  description and bounds: the file validates against the schema and equals its defaults, so
  the documentation cannot drift from the code.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

if TYPE_CHECKING:
    import tomlkit

M = TypeVar("M", bound=BaseModel)

#: config and scenario files are small; a bigger one is a mistake (or hostile): refused unread
MAX_TOML_BYTES: Final = 1024 * 1024
#: ``Field(json_schema_extra=SECRET)``: the value never appears in an error message
SECRET: Final[dict[str, Any]] = {"secret": True}
HIDDEN: Final = "(hidden)"


class Section(BaseModel):
    """A table of a config file: closed (unknown keys are errors), immutable, defaults checked."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ConfigError(Exception):
    """A configuration file is wrong; the message names the file, the key, the value and the fix."""


# --- loading -----------------------------------------------------------------------------------


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The parsed TOML file ``path``; ``what`` names the kind of file in errors ("config")."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_TOML_BYTES + 1)
        if len(raw) > MAX_TOML_BYTES:
            raise ConfigError(
                f"{path}: the {what} file is larger than {MAX_TOML_BYTES} bytes; is it the "
                f"right file?"
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} file: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses on nested arrays and inline tables
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(model, exc, source)) from None


def load(model: type[M], path: Path, what: str = "config") -> M:
    """Read and validate one file."""
    return validate(model, read_toml(path, what), str(path))


# --- errors ------------------------------------------------------------------------------------


def describe_errors(model: type[BaseModel], exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s):"]
    for err in exc.errors():
        loc = err["loc"]
        key = _dotted(loc)
        if err["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
            lines.append(f"  - {key}: unknown key.{suggestion} Valid keys here: {', '.join(valid)}")
            continue
        allowed = _allowed_at(model, loc)
        shown = "" if err["type"] == "missing" else f" (got {_shown(model, loc, err.get('input'))})"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(
            f"  - {key or '(top level)'}{shown}: {message}"
            + (f"; allowed: {allowed}" if allowed else "")
        )
    return "\n".join(lines)


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or "," in str(part):
            continue  # pydantic's union-branch labels such as 'int' or 'function-after[...]'
        else:
            out += ("." if out else "") + str(part)
    return out


def _unwrap(annotation: Any) -> Any:
    """list[X] -> X, X | None -> X, Annotated[X, ...] -> X."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is list:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [_unwrap(a) for a in typing.get_args(annotation) if a is not type(None)]
        if all(a == args[0] for a in args):  # X | None, X | list[X]
            return args[0]
    return annotation


def _is_model(value: Any) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _field_path(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[list[FieldInfo], bool]:
    """The fields ``loc`` goes through, outermost first, and whether it stays in the schema
    to its end (a part the schema does not name, such as a union branch, ends the walk)."""
    current: Any = model
    path: list[FieldInfo] = []
    for part in loc:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(str(part)) if _is_model(current) else None
        if info is None:
            return path, False
        path.append(info)
        current = _unwrap(info.annotation)
    return path, True


def _field_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    path, whole = _field_path(model, loc)
    return path[-1] if path and whole else None


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    if not [p for p in loc if not isinstance(p, int)]:
        return list(model.model_fields)
    info = _field_at(model, loc)
    inner = _unwrap(info.annotation) if info else None
    if _is_model(inner):
        return list(inner.model_fields)
    return []


def _is_secret(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and extra.get("secret") is True


def _shown(model: type[BaseModel], loc: tuple[int | str, ...], value: Any) -> str:
    """``repr(value)`` for an error at ``loc``, with the values of secret fields hidden."""
    path, whole = _field_path(model, loc)
    if any(_is_secret(info) for info in path):
        return HIDDEN
    holder = (_unwrap(path[-1].annotation) if path else model) if whole else None
    return repr(_redact(holder, value))


def _redact(model: Any, value: Any) -> Any:
    if isinstance(value, list):
        return [_redact(model, item) for item in value]
    if not (isinstance(value, dict) and _is_model(model)):
        return value
    out: dict[Any, Any] = {}
    for key, item in value.items():
        info = model.model_fields.get(key) if isinstance(key, str) else None
        if info is None:
            out[key] = item
        elif _is_secret(info):
            out[key] = HIDDEN
        else:
            out[key] = _redact(_unwrap(info.annotation), item)
    return out


def allowed_text(info: FieldInfo) -> str:
    """A field's allowed values and bounds in words: ``'a' | 'b'``, ``>= 0, <= 1``, ..."""
    parts: list[str] = []
    inner = _unwrap(info.annotation)
    if typing.get_origin(inner) is Literal:
        parts.append(" | ".join(repr(a) for a in typing.get_args(inner)))
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Gt):
            parts.append(f"> {meta.gt}")
        elif isinstance(meta, annotated_types.Ge):
            parts.append(f">= {meta.ge}")
        elif isinstance(meta, annotated_types.Le):
            parts.append(f"<= {meta.le}")
        elif isinstance(meta, annotated_types.MinLen):
            parts.append(f"at least {meta.min_length} characters")
        elif isinstance(meta, annotated_types.MaxLen):
            parts.append(f"at most {meta.max_length} characters")
        elif hasattr(meta, "pattern") and getattr(meta, "pattern", None):
            parts.append(f"matching {meta.pattern}")
    return ", ".join(parts)


def _allowed_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    info = _field_at(model, loc)
    return allowed_text(info) if info is not None else ""


# --- the commented example ---------------------------------------------------------------------


def example(model: type[BaseModel], header: list[str]) -> str:
    """A complete file with every default of ``model``, each key preceded by its description;
    ``header`` lines open it as comments."""
    import tomlkit  # only where an example file is written, never on the device

    doc = tomlkit.document()
    for line in header:
        doc.add(tomlkit.comment(line))
    defaults = model()
    tables: list[tuple[str, FieldInfo, Any]] = []
    for name, info in type(defaults).model_fields.items():
        value = getattr(defaults, name)
        if isinstance(value, BaseModel) or (value and _is_table_list(value, info)):
            tables.append((name, info, value))  # TOML: plain keys first, then the tables
        else:
            _key(doc, name, info, value)
    for name, info, value in tables:
        doc.add(tomlkit.nl())
        if isinstance(value, BaseModel):
            doc.add(name, _table(value))
        else:
            doc.add(tomlkit.comment(f"[[{name}]]: {info.description}"))
            doc.add(name, _array_of_tables(value))
    return tomlkit.dumps(doc)


def _is_table_list(value: Any, info: FieldInfo) -> bool:
    return isinstance(value, list) and _is_model(_unwrap(info.annotation))


def _key(
    table: tomlkit.TOMLDocument | tomlkit.items.Table, name: str, info: FieldInfo, value: Any
) -> None:
    import tomlkit  # only where an example file is written, never on the device

    _describe(table, name, info)
    if value is None:
        table.add(tomlkit.comment(f"{name} = (unset)"))
    else:
        table.add(name, value)


def _table(model: BaseModel) -> tomlkit.items.Table:
    import tomlkit  # only where an example file is written, never on the device

    table = tomlkit.table()
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            table.add(name, _table(value))
            continue
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            table.add(tomlkit.comment(f"[[{name}]]: {info.description}"))
            table.add(name, _array_of_tables(value))
            continue
        _key(table, name, info, value)
    return table


def _array_of_tables(items: list[Any]) -> tomlkit.items.AoT:
    import tomlkit  # only where an example file is written, never on the device

    aot = tomlkit.aot()
    for index, item in enumerate(items):
        table = tomlkit.table()
        for name, info in type(item).model_fields.items():
            value = getattr(item, name)
            if value is None or value == [] or (value == "" and name == "label"):
                if index == 0:
                    _describe(table, name, info)
                    table.add(tomlkit.comment(f"{name} = (unset)"))
                continue
            if index == 0:
                _describe(table, name, info)
            table.add(name, value)
        aot.append(table)
    return aot


def _describe(
    table: tomlkit.TOMLDocument | tomlkit.items.Table, name: str, info: FieldInfo
) -> None:
    import tomlkit  # only where an example file is written, never on the device

    allowed = allowed_text(info)
    text = info.description or name
    table.add(tomlkit.comment(text + (f" [{allowed}]" if allowed else "")))
