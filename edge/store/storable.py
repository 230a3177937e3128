"""What the store can hold: checked before every write, and made so by the core.

Rules:
- Text is valid Unicode. A string with an unpaired surrogate (``"\\ud800"``, which a JSON
  escape can produce) cannot be encoded as UTF-8: SQLite refuses it, and so would the wire.
- JSON values (an event's ``data``, outbox payloads) are JSON: finite numbers (NaN and the
  infinities are not JSON), text keys, and only the types JSON knows (None, bool, int, float,
  str, lists, tuples, dicts). Integers of any size are JSON; integer *columns* of a record must
  fit SQLite's 64-bit INTEGER.
- :func:`check_record` and :func:`check_json` raise ValueError naming the record, the field
  (``events[1].data.amount``), the value and what is wrong; the store calls them before it
  writes anything.
- :func:`clean_contact` and :func:`clean_event` return a record the store can hold and the
  list of what was changed: text with an unpaired surrogate is spelled out (``\\ud800``,
  nothing lost), a number or None as a key is spelled as text like JSON does, a value that is
  not JSON is dropped (an item of a list becomes None).
  A sound record comes back as it is, with no changes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any, Final

from edge.records import ContactRecord, EventRecord, OutboxMessage

_INT64: Final = (-(1 << 63), (1 << 63) - 1)
_DROP: Final = object()  # a JSON value that has to go


class _Walk:
    """One pass over a record: collects problems, builds the cleaned value."""

    def __init__(self, fix: bool) -> None:
        self.fix = fix
        self.problems: list[str] = []

    def note(self, where: str, value: Any, why: str, fixed: str) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        self.problems.append(f"{where} = {shown}: {why}" + (f" ({fixed})" if self.fix else ""))

    def text(self, value: str, where: str) -> str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.note(where, value, "unpaired surrogate", "escaped")
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value

    def json(self, value: Any, where: str) -> Any:
        """The value as JSON can hold it, or _DROP."""
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            self.note(where, value, "not a finite number", "dropped")
            return _DROP
        if isinstance(value, str):
            return self.text(value, where)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if isinstance(key, str):
                    name = self.text(key, f"{where} key")
                elif key is None or isinstance(key, bool | int | float):
                    name = json.dumps(key)  # what JSON would make of it: 7 -> "7"
                    fixed = f" (spelled {name!r})" if self.fix else ""
                    self.problems.append(f"{where}: key {key!r} is not text{fixed}")
                else:
                    fixed = " (dropped)" if self.fix else ""
                    self.problems.append(f"{where}: key {key!r} is not text{fixed}")
                    continue
                kept = self.json(item, f"{where}.{name}")
                if kept is not _DROP:
                    out[name] = kept
            return out
        if isinstance(value, list | tuple):
            items = [self.json(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return [None if item is _DROP else item for item in items]
        self.note(where, value, f"a {type(value).__name__} is not JSON", "dropped")
        return _DROP

    def record(self, record: Any, where: str) -> Any:
        """A record (dataclass) with every field walked; the same object when sound."""
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(record):
            value = getattr(record, f.name)
            before = len(self.problems)
            at = f"{where}{f.name}"
            if isinstance(value, str):
                new: Any = self.text(value, at)
            elif isinstance(value, int) and not isinstance(value, bool):
                new = value
                if not _INT64[0] <= value <= _INT64[1]:
                    self.note(at, value, "does not fit a 64-bit integer", "kept")
            elif isinstance(value, dict):
                new = self.json(value, at)
                new = {} if new is _DROP else new
            elif isinstance(value, tuple):
                new = tuple(self._item(item, f"{at}[{i}]") for i, item in enumerate(value))
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                new = self.record(value, f"{at}.")
            else:
                new = value
            if self.fix and len(self.problems) > before:
                changes[f.name] = new
        return dataclasses.replace(record, **changes) if changes else record

    def _item(self, item: Any, where: str) -> Any:
        if isinstance(item, str):
            return self.text(item, where)
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return self.record(item, f"{where}.")
        return item


def _name(record: ContactRecord | EventRecord) -> str:
    kind = "contact" if isinstance(record, ContactRecord) else "event"
    return f"{kind} {record.id.encode('utf-8', 'backslashreplace').decode()}"


def check_record(record: ContactRecord | EventRecord) -> None:
    """Raise ValueError naming every field of ``record`` the store cannot hold."""
    walk = _Walk(fix=False)
    walk.record(record, "")
    if walk.problems:
        raise ValueError(
            f"{_name(record)} cannot be stored: {'; '.join(walk.problems)}. "
            "Clean it first (edge.store.clean_contact / clean_event) or fix its source."
        )


def check_json(messages: Sequence[OutboxMessage]) -> None:
    """Raise ValueError naming every outbox payload field that is not JSON."""
    walk = _Walk(fix=False)
    for message in messages:
        before = len(walk.problems)
        walk.json(message.payload, "payload")
        if len(walk.problems) > before:
            walk.problems[before:] = [
                f"outbox {message.msg_id}: {p}" for p in walk.problems[before:]
            ]
    if walk.problems:
        raise ValueError(f"not JSON, not stored: {'; '.join(walk.problems)}")


def clean_contact(record: ContactRecord) -> tuple[ContactRecord, list[str]]:
    """``record`` as the store can hold it, and what was changed (see the module notes)."""
    walk = _Walk(fix=True)
    cleaned: ContactRecord = walk.record(record, "")
    return cleaned, walk.problems


def clean_event(record: EventRecord) -> tuple[EventRecord, list[str]]:
    """``record`` as the store can hold it, and what was changed (see the module notes)."""
    walk = _Walk(fix=True)
    cleaned: EventRecord = walk.record(record, "")
    return cleaned, walk.problems
