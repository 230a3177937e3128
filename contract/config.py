"""The base of every configuration file, the device's (``edge/config/``) and the sink's
(``cloud_sink/config.py``): a closed, typed TOML schema, one loader, one way to word errors and
one commented example generated from the schema.

The models are msgspec structs (not pydantic: the device daemon loads this, and msgspec costs
it a tenth of the memory; bench/README.md, "memory").

Rules:
- A schema is built of :class:`Section` structs: every key has a default (or is required in a
  list entry), bounds where numbers are involved and a description
  (``Annotated[int, Meta(ge=1, le=65535, description=...)]``); unknown keys are refused.
  A check across keys is the section's ``__post_init__``: it raises :class:`FieldError` for a
  problem with one key, ``ValueError`` for one of the whole table.
- :func:`read_toml` reads a file of at most :data:`MAX_TOML_BYTES`, UTF-8 TOML; anything else is
  a :class:`ConfigError` naming the file.
- :func:`validate` checks a parsed document and reports the first problem found (msgspec stops
  at the first), naming the file, the dotted key, the bad value and the fix: the nearest valid
  key for a misspelt one ("Did you mean ...?") and the valid keys there, the allowed values or
  bounds for a bad value.
- A field marked :data:`SECRET` (``Meta(extra=SECRET)``) never has its value shown in an
  error, neither on its own nor inside the table that holds it.
- :func:`example` renders a schema's defaults as a complete TOML file, each key preceded by its
  description and bounds: the file validates against the schema and equals its defaults, so
  the documentation cannot drift from the code.
"""

from __future__ import annotations

import difflib
import functools
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Self, TypeVar

import msgspec
import msgspec.structs

if TYPE_CHECKING:
    import tomlkit

M = TypeVar("M", bound=msgspec.Struct)

#: config and scenario files are small; a bigger one is a mistake (or hostile): refused unread
MAX_TOML_BYTES: Final = 1024 * 1024
#: ``Meta(extra=SECRET)``: the value never appears in an error message
SECRET: Final[dict[str, Any]] = {"secret": True}
HIDDEN: Final = "(hidden)"

Loc = tuple[int | str, ...]


@typing.dataclass_transform(
    kw_only_default=True, frozen_default=True, field_specifiers=(msgspec.field,)
)
class _SectionMeta(msgspec.StructMeta):
    """Every section takes its keys by name only (``kw_only``), so a key with a default may
    come before one without, in the order the example file shows them."""

    def __new__(
        mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> _SectionMeta:
        kwargs.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, namespace, **kwargs)


class Section(msgspec.Struct, metaclass=_SectionMeta, frozen=True, forbid_unknown_fields=True):
    """A table of a config file: closed (unknown keys are errors), immutable.

    Building one directly checks only its ``__post_init__``; types and bounds are checked
    where a document is converted (:meth:`from_dict`, :func:`validate`)."""

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """``data`` (a parsed TOML document, or a Python dict) checked against the schema;
        raises ``msgspec.ValidationError`` (:func:`validate` words it for a person)."""
        return msgspec.convert(data, cls)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (not checked again, like a dataclass's ``replace``)."""
        return msgspec.structs.replace(self, **changes)

    def __repr__(self) -> str:
        """The fields, with the values of secret ones hidden (a log line must not show them)."""
        shown = []
        for name, secret in _secrets(type(self)):
            value = getattr(self, name)
            shown.append(f"{name}={HIDDEN if secret and value is not None else repr(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"


class ConfigError(Exception):
    """A configuration file is wrong; the message names the file, the key, the value and the fix."""


class FieldError(ValueError):
    """Raised by a section's ``__post_init__``: the value of its key ``key`` is wrong."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def document(section: msgspec.Struct) -> dict[str, Any]:
    """``section`` as the plain tables of a file (what :func:`validate` takes back): keys by
    their file names, unset (None) values left out, as TOML has no null."""
    return typing.cast(dict[str, Any], _without_none(msgspec.to_builtins(section)))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def set_value(section: msgspec.Struct, name: str, value: Any) -> None:
    """Set a field of a frozen section: for a ``__post_init__`` that normalises a value."""
    msgspec.structs.force_setattr(section, name, value)


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
    """Validate ``data`` against ``model``; raise :class:`ConfigError` naming the problem."""
    try:
        return msgspec.convert(data, model)
    except msgspec.ValidationError as exc:
        raise ConfigError(describe_error(model, exc, data, source)) from None


def load(model: type[M], path: Path, what: str = "config") -> M:
    """Read and validate one file."""
    return validate(model, read_toml(path, what), str(path))


# --- errors ------------------------------------------------------------------------------------

_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>.+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>.+)`$")
_BOOL_FOR_NUMBER = re.compile(r"^Expected `(int|float)[^`]*`, got `bool`$")
_ABSENT: Final = object()


def split_error(exc: msgspec.ValidationError) -> tuple[str, Loc]:
    """msgspec's message without its ``- at `$.a[0].b``` tail, and that path as a tuple."""
    text = str(exc)
    found = _AT.match(text)
    if found is None:
        return text, ()
    loc: list[int | str] = []
    for name, index in _PART.findall(found["path"]):
        loc.append(int(index) if index else name)
    return found["message"], tuple(loc)


def locate_error(exc: msgspec.ValidationError) -> tuple[str, str, Loc]:
    """(kind, message, key path) of a validation error: kind is ``unknown`` (an unknown key;
    the path ends with it), ``missing`` (a required key; the path ends with it), ``check`` (a
    section's ``__post_init__`` refused the key at the path's end: a :class:`FieldError`) or
    ``value`` (a bad value at the path; for a check of a whole table the path is the table's)."""
    message, loc = split_error(exc)
    cause = exc.__cause__
    if isinstance(cause, FieldError):
        return "check", str(cause), (*loc, cause.key)
    if isinstance(cause, ValueError | TypeError):
        return "value", str(cause), loc
    if found := _UNKNOWN.match(message):
        return "unknown", message, (*loc, found["key"])
    if found := _MISSING.match(message):
        return "missing", "required key missing", (*loc, found["key"])
    if _BOOL_FOR_NUMBER.match(message):  # TOML true would otherwise read as 1
        return "value", "a number, not true/false", loc
    return "value", message, loc


def describe_error(model: type[msgspec.Struct], exc: msgspec.ValidationError, data: Any,
                   source: str) -> str:  # fmt: skip
    """One problem of ``data`` (``exc``, msgspec's first) in words: the file, the dotted key,
    the bad value (secrets hidden) and the fix."""
    kind, message, loc = locate_error(exc)
    key = _dotted(loc)
    if kind == "unknown":
        valid = _fields_at(model, loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
        return f"{source}: {key}: unknown key.{suggestion} Valid keys here: {', '.join(valid)}"
    value = _value_at(data, loc)
    shown = "" if value is _ABSENT else f" (got {_shown(model, loc, value)})"
    # a check across keys words its own fix: the key's type would not tell what is wrong
    allowed = "" if kind == "check" else _allowed_at(model, loc)
    return f"{source}: {key or '(top level)'}{shown}: {message}" + (
        f"; allowed: {allowed}" if allowed else ""
    )


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        found = (isinstance(part, int) and isinstance(data, list) and part < len(data)) or (
            isinstance(part, str) and isinstance(data, dict) and part in data
        )
        if not found:
            return _ABSENT
        data = data[part]
    return data


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _unwrap(annotation: Any) -> Any:
    """list[X] -> X, X | None -> X, Annotated[X, ...] -> X."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (list, tuple):
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [_unwrap(a) for a in typing.get_args(annotation) if a is not type(None)]
        if all(a == args[0] for a in args):  # X | None, X | list[X]
            return args[0]
    return annotation


def metas(annotation: Any) -> list[msgspec.Meta]:
    """Every ``msgspec.Meta`` of a field's type, also those inside ``X | None``; a list's
    items' are left out (``list[Annotated[str, Meta(...)]]`` bounds each item, not the key)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner, *extras = typing.get_args(annotation)
        return [m for m in extras if isinstance(m, msgspec.Meta)] + metas(inner)
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in metas(a)]
    return []


def description(field: msgspec.structs.FieldInfo) -> str:
    """A field's description (its ``Meta(description=...)``), or ''."""
    return next((m.description for m in metas(field.type) if m.description), "")


def _is_model(value: Any) -> typing.TypeGuard[type[msgspec.Struct]]:
    return isinstance(value, type) and issubclass(value, msgspec.Struct)


def fields(model: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    """A struct's fields by the key a file names them with."""
    return {f.encode_name: f for f in msgspec.structs.fields(model)}


def _field_path(
    model: type[msgspec.Struct], loc: Loc
) -> tuple[list[msgspec.structs.FieldInfo], bool]:
    """The fields ``loc`` goes through, outermost first, and whether it stays in the schema
    to its end (a part the schema does not name ends the walk)."""
    current: Any = model
    path: list[msgspec.structs.FieldInfo] = []
    for part in loc:
        if isinstance(part, int):
            continue
        info = fields(current).get(str(part)) if _is_model(current) else None
        if info is None:
            return path, False
        path.append(info)
        current = _unwrap(info.type)
    return path, True


def _field_at(model: type[msgspec.Struct], loc: Loc) -> msgspec.structs.FieldInfo | None:
    path, whole = _field_path(model, loc)
    return path[-1] if path and whole else None


def _fields_at(model: type[msgspec.Struct], loc: Loc) -> list[str]:
    if not [p for p in loc if not isinstance(p, int)]:
        return list(fields(model))
    info = _field_at(model, loc)
    inner = _unwrap(info.type) if info else None
    if _is_model(inner):
        return list(fields(inner))
    return []


@functools.cache
def _secrets(model: type[msgspec.Struct]) -> tuple[tuple[str, bool], ...]:
    """(attribute name, whether it is secret) of each field of ``model``."""
    return tuple((info.name, _is_secret(info)) for info in msgspec.structs.fields(model))


def _is_secret(info: msgspec.structs.FieldInfo) -> bool:
    return any(
        isinstance(m.extra, dict) and m.extra.get("secret") is True for m in metas(info.type)
    )


def _shown(model: type[msgspec.Struct], loc: Loc, value: Any) -> str:
    """``repr(value)`` for an error at ``loc``, with the values of secret fields hidden."""
    path, whole = _field_path(model, loc)
    if any(_is_secret(info) for info in path):
        return HIDDEN
    holder = (_unwrap(path[-1].type) if path else model) if whole else None
    return repr(_redact(holder, value))


def _redact(model: Any, value: Any) -> Any:
    if isinstance(value, list):
        return [_redact(model, item) for item in value]
    if not (isinstance(value, dict) and _is_model(model)):
        return value
    known = fields(model)
    out: dict[Any, Any] = {}
    for key, item in value.items():
        info = known.get(key) if isinstance(key, str) else None
        if info is None:
            out[key] = item
        elif _is_secret(info):
            out[key] = HIDDEN
        else:
            out[key] = _redact(_unwrap(info.type), item)
    return out


def allowed_text(info: msgspec.structs.FieldInfo) -> str:
    """A field's allowed values and bounds in words: ``'a' | 'b'``, ``>= 0, <= 1``, ..."""
    parts: list[str] = []
    inner = _unwrap(info.type)
    sized = "items" if _is_list(info.type) else "characters"
    if typing.get_origin(inner) is Literal:
        parts.append(" | ".join(repr(a) for a in typing.get_args(inner)))
    for meta in metas(info.type):
        if meta.gt is not None:
            parts.append(f"> {meta.gt}")
        if meta.ge is not None:
            parts.append(f">= {meta.ge}")
        if meta.lt is not None:
            parts.append(f"< {meta.lt}")
        if meta.le is not None:
            parts.append(f"<= {meta.le}")
        if meta.min_length is not None:
            parts.append(f"at least {meta.min_length} {sized}")
        if meta.max_length is not None:
            parts.append(f"at most {meta.max_length} {sized}")
        if meta.pattern:
            parts.append(f"matching {meta.pattern}")
    return ", ".join(parts)


def _is_list(annotation: Any) -> bool:
    """Whether a field holds a list (bounds on its length count items, not characters)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_list(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation) if a is not type(None))
    return origin is list


def _allowed_at(model: type[msgspec.Struct], loc: Loc) -> str:
    info = _field_at(model, loc)
    return allowed_text(info) if info is not None else ""


# --- the commented example ---------------------------------------------------------------------


def example(model: type[msgspec.Struct], header: list[str]) -> str:
    """A complete file with every default of ``model``, each key preceded by its description;
    ``header`` lines open it as comments."""
    import tomlkit  # only where an example file is written, never on the device

    doc = tomlkit.document()
    for line in header:
        doc.add(tomlkit.comment(line))
    defaults = model()
    tables: list[tuple[str, msgspec.structs.FieldInfo, Any]] = []
    for name, info in fields(model).items():
        value = getattr(defaults, info.name)
        if isinstance(value, msgspec.Struct) or (value and _is_table_list(value, info)):
            tables.append((name, info, value))  # TOML: plain keys first, then the tables
        else:
            _key(doc, name, info, value)
    for name, info, value in tables:
        doc.add(tomlkit.nl())
        if isinstance(value, msgspec.Struct):
            doc.add(name, _table(value))
        else:
            doc.add(tomlkit.comment(f"[[{name}]]: {description(info)}"))
            doc.add(name, _array_of_tables(value))
    return tomlkit.dumps(doc)


def _is_table_list(value: Any, info: msgspec.structs.FieldInfo) -> bool:
    return isinstance(value, list) and _is_model(_unwrap(info.type))


def _plain(value: Any) -> Any:
    """A value as TOML writes it (a tuple as an array)."""
    return list(value) if isinstance(value, tuple) else value


def _key(
    table: tomlkit.TOMLDocument | tomlkit.items.Table,
    name: str,
    info: msgspec.structs.FieldInfo,
    value: Any,
) -> None:
    import tomlkit  # only where an example file is written, never on the device

    _describe(table, name, info)
    if value is None:
        table.add(tomlkit.comment(f"{name} = (unset)"))
    else:
        table.add(name, _plain(value))


def _table(model: msgspec.Struct) -> tomlkit.items.Table:
    import tomlkit  # only where an example file is written, never on the device

    table = tomlkit.table()
    for name, info in fields(type(model)).items():
        value = getattr(model, info.name)
        if isinstance(value, msgspec.Struct):
            table.add(name, _table(value))
            continue
        if isinstance(value, list) and value and isinstance(value[0], msgspec.Struct):
            table.add(tomlkit.comment(f"[[{name}]]: {description(info)}"))
            table.add(name, _array_of_tables(value))
            continue
        _key(table, name, info, value)
    return table


def _array_of_tables(items: list[Any]) -> tomlkit.items.AoT:
    import tomlkit  # only where an example file is written, never on the device

    aot = tomlkit.aot()
    for index, item in enumerate(items):
        table = tomlkit.table()
        for name, info in fields(type(item)).items():
            value = getattr(item, info.name)
            if value is None or value == [] or (value == "" and name == "label"):
                if index == 0:
                    _describe(table, name, info)
                    table.add(tomlkit.comment(f"{name} = (unset)"))
                continue
            if index == 0:
                _describe(table, name, info)
            table.add(name, _plain(value))
        aot.append(table)
    return aot


def _describe(
    table: tomlkit.TOMLDocument | tomlkit.items.Table, name: str, info: msgspec.structs.FieldInfo
) -> None:
    import tomlkit  # only where an example file is written, never on the device

    allowed = allowed_text(info)
    text = description(info) or name
    table.add(tomlkit.comment(text + (f" [{allowed}]" if allowed else "")))
