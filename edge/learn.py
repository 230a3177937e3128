"""Learn mode: bind a pressed remote key to a button in the config file, keeping the file as is.

Rules:

- A remote key is ``"<protocol>:<code>"`` in lower case (``ev1527:27fd49``, ``nrf24:07``), the
  string every receiver produces; :func:`wait_for_code` returns the first one it sees.
- :func:`bind_code` edits the TOML with tomlkit, so comments, blank lines, key order and
  everything outside the edited ``[[buttons]]`` table stay byte-for-byte. It sets ``code`` and
  ``via`` on the button *named* ``role_or_name``, else on the first button with that *role*;
  other keys of that table (a ``pin``, a ``label``) are kept.
- A wired button stays wired: one whose ``via`` includes ``gpio`` and that has a ``pin`` gets
  the remote *next to* its pin, ``via = ["gpio", "rf433"]`` (another remote it had is
  replaced; the order of ``via`` is kept), and :attr:`ButtonChange.kept_pin` says so. Only
  ``wireless_only=True`` (``contactpoint learn --wireless-only``) makes it remote-only
  (``via = "rf433"``; the ``pin`` line stays but is no longer read). A button without a pin
  simply becomes a remote.
- No such button: a ``[[buttons]]`` table is appended with ``name = "<role>-remote"`` (or
  ``-remote-2``, ...), the role, ``via`` and ``code``. A ``question`` button cannot be created
  this way (its number is needed): add it to the config first.
- A config without a ``buttons`` array runs with the five default buttons, and an explicit
  ``[[buttons]]`` array *replaces* them. So the defaults are written out first (name, role, pin),
  then the code is bound: the device keeps its wired buttons.
- A code already bound to *another* button is refused (:class:`LearnError` names that button);
  the installer removes it there first. Binding the code a button already has changes nothing
  and writes nothing.
- ``via`` defaults to ``nrf24`` for ``nrf24:`` keys and ``rf433`` for everything else (the GPIO
  decoder and an RFLink stick give the same key for the same remote).
- Writing is atomic: a temp file in the same directory, fsync, the original file's mode (and
  owner, when allowed), then ``os.replace``. The temp file is loaded with
  :func:`edge.config.load_config` first; an invalid result raises and the original is untouched.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import tomlkit
import tomlkit.exceptions
from tomlkit.items import AoT, Array, InlineTable, Table

from edge._errors import UserError
from edge.config import Config, ConfigError, Role, load_config

Via = Literal["rf433", "serial", "nrf24"]
_CODE = re.compile(r"^[0-9A-Za-z:._-]{1,64}$")


_DEFAULTS_NOTE = (
    "The default buttons, written out by 'contactpoint learn': a [[buttons]] list replaces "
    "the defaults."
)


class LearnError(UserError):
    """The key cannot be bound as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ButtonChange:
    """What :func:`bind_code` did: ``action`` is ``updated``, ``appended`` or ``unchanged``."""

    name: str
    role: str
    code: str
    via: str
    action: Literal["updated", "appended", "unchanged"]
    previous_code: str | None = None
    defaults_written: bool = False
    kept_pin: int | None = None  # the button stays wired on this pin, the remote next to it


def key_of(item: Any) -> str | None:
    """The remote key of a received item, or None when it is not a remote code.

    Accepts a ``RemoteCode``-like item (``protocol`` and a string ``code``) and the GPIO
    decoder's ``Decoded`` (``protocol`` and ``hex``).
    """
    protocol = getattr(item, "protocol", None)
    code = getattr(item, "code", None)
    if not isinstance(code, str):
        code = getattr(item, "hex", None)
    if not isinstance(protocol, str) or not isinstance(code, str):
        return None
    return f"{protocol}:{code}".lower()


def wait_for_code(
    source: Iterable[Any] | queue.Queue[Any],
    timeout_s: float,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """The key of the first remote code from ``source``; other items (faults) are skipped.

    A queue is waited on for at most ``timeout_s``; an iterable is checked against the deadline
    between items (it can block inside ``next``). Raises :class:`LearnError` on timeout or when
    the iterable ends.
    """
    deadline = clock() + timeout_s
    if isinstance(source, queue.Queue):
        while (left := deadline - clock()) > 0:
            try:
                item = source.get(timeout=left)
            except queue.Empty:
                break
            if (key := key_of(item)) is not None:
                return key
    else:
        for item in source:
            if (key := key_of(item)) is not None:
                return key
            if clock() >= deadline:
                break
    raise LearnError(f"no remote key was received within {timeout_s:g} s")


def bind_code(
    config_path: Path,
    role_or_name: str,
    code: str,
    *,
    via: Via | None = None,
    wireless_only: bool = False,
) -> ButtonChange:
    """Bind remote key ``code`` to a button in the TOML config at ``config_path``; a wired
    button keeps its pin unless ``wireless_only``."""
    code = code.lower()
    if not _CODE.match(code) or ":" not in code:
        raise LearnError(f"{code!r} is not a remote key (protocol:code, [0-9a-z:._-], <= 64)")
    if via is None:
        via = "nrf24" if code.startswith("nrf24:") else "rf433"
    if via not in get_args(Via):
        raise LearnError(f"via must be one of {', '.join(get_args(Via))}, not {via!r}")
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LearnError(
            f"{config_path}: config file not found; create it with "
            f"'contactpoint config example > {config_path}'"
        ) from None
    load_config(config_path)  # refuse to edit a config that is already invalid
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None

    defaults_written = "buttons" not in doc
    if defaults_written:
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment(_DEFAULTS_NOTE))
        doc.append("buttons", _default_buttons())
    buttons = doc["buttons"]
    if not isinstance(buttons, AoT | Array):
        raise LearnError(f"{config_path}: 'buttons' must be an array of [[buttons]] tables")
    tables: list[Table | InlineTable] = list(buttons)

    target = _find(tables, role_or_name)
    for table in tables:
        if table is not target and str(table.get("code", "")).lower() == code:
            raise LearnError(
                f"{code} is already bound to button '{table.get('name')}'; remove its "
                f"'code' line in {config_path} first, or learn that button instead"
            )

    if target is None:
        name, role = _new_button(tables, role_or_name)
        _append_button(buttons, {"name": name, "role": role, "via": via, "code": code})
        change = ButtonChange(name, role, code, via, "appended", None, defaults_written)
    else:
        name, role = str(target["name"]), str(target["role"])
        previous = target.get("code")
        previous_code = None if previous is None else str(previous)
        current = _vias(target.get("via", "gpio"))
        pin = target.get("pin")
        kept_pin = None
        if not wireless_only and "gpio" in current and isinstance(pin, int):
            kept_pin = int(pin)
        vias: list[str] = _with_remote(current, via) if kept_pin is not None else [via]
        if previous_code == code and current == vias:
            return ButtonChange(
                name, role, code, via, "unchanged", previous_code, kept_pin=kept_pin
            )
        _set_keys(target, {"via": vias[0] if len(vias) == 1 else vias, "code": code})
        change = ButtonChange(
            name, role, code, via, "updated", previous_code, defaults_written, kept_pin
        )

    _write_checked(config_path, tomlkit.dumps(doc))
    return change


def _vias(value: object) -> list[str]:
    """A button table's ``via``: one way or a list of them."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _with_remote(current: list[str], via: str) -> list[str]:
    """``current`` with its wireless way (if any) replaced by ``via``; ``gpio`` stays put."""
    vias: list[str] = []
    for way in current:
        kept = way if way == "gpio" else via
        if kept not in vias:
            vias.append(kept)
    if via not in vias:
        vias.append(via)
    return vias


def _default_buttons() -> AoT:
    aot = tomlkit.aot()
    for button in Config().buttons:
        table = tomlkit.table()
        table.update({"name": button.name, "role": button.role})
        if button.pin is not None:
            table["pin"] = button.pin
        aot.append(table)
    return aot


def _pop_trailing(table: Table) -> list[tuple[Any, Any]]:
    """Remove and return the comments and blank lines that end ``table``'s body.

    tomlkit keeps the blank lines and comments between a table and the next one at the end of
    the first table's body: keys added there would land below them. They carry no key, so
    cutting them off the end leaves tomlkit's key index intact.
    """
    body = table.value.body
    cut = len(body)
    while cut > 0 and body[cut - 1][0] is None:
        cut -= 1
    tail = body[cut:]
    del body[cut:]
    return tail


def _set_keys(table: Table | InlineTable, values: dict[str, str | list[str]]) -> None:
    """Set ``values`` on ``table``: existing keys in place, new ones after its last key."""
    if isinstance(table, InlineTable):
        table.update(values)
        return
    tail = _pop_trailing(table)
    for key, value in values.items():
        table[key] = value
    table.value.body.extend(tail)


def _append_button(buttons: AoT | Array, values: dict[str, str]) -> None:
    """Append a button table; what followed the last one (blank lines, comments) follows it."""
    if isinstance(buttons, Array):
        new_inline = tomlkit.inline_table()
        new_inline.update(values)
        buttons.append(new_inline)
        return
    new = tomlkit.table()
    new.update(values)
    tail: list[tuple[Any, Any]] = []
    if len(buttons):
        last = buttons[-1]
        tail = _pop_trailing(last)
        last.add(tomlkit.nl())
    buttons.append(new)
    new.value.body.extend(tail)


def _find(tables: list[Table | InlineTable], role_or_name: str) -> Table | InlineTable | None:
    for table in tables:
        if table.get("name") == role_or_name:
            return table
    for table in tables:
        if table.get("role") == role_or_name:
            return table
    return None


def _new_button(tables: list[Table | InlineTable], role: str) -> tuple[str, str]:
    roles = get_args(Role)
    if role not in roles:
        raise LearnError(
            f"no button is named '{role}' and it is not a role; roles: {', '.join(roles)}"
        )
    if role == "question":
        raise LearnError(
            "a question button needs its number: add a [[buttons]] table with role = "
            "'question' and question = N to the config, then learn it by its name"
        )
    taken = {table.get("name") for table in tables}
    name, n = f"{role}-remote", 1
    while name in taken:
        n += 1
        name = f"{role}-remote-{n}"
    return name, role


def _write_checked(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically, only if ``text`` is a valid config."""
    st = path.stat()
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), st.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.fchown(out.fileno(), st.st_uid, st.st_gid)
            os.fsync(out.fileno())
        try:
            load_config(tmp)
        except ConfigError as exc:
            raise LearnError(
                f"the edited config would be invalid, {path} left unchanged:\n"
                + str(exc).replace(str(tmp), str(path))
            ) from None
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
