"""`Fields`, the one strict accessor for a mapping read from a file (`emulator.files` reads the file), and
`check_number`, the one check of a number in a file.

Every unknown key is an error naming the nearest valid key; every value is checked for its type and its range,
and each error names the file, the dotted field (`training.parallel.tp`) and the fix. Numbers have an upper bound
as well as a lower one: a whole number in a file is at most `MAX_INTEGER` (YAML writes `1e300` as a float, and
past 2**53 a float no longer holds every whole number, so the count the user meant is lost), and a reader gives a
tighter `maximum` where a size drives an allocation or a loop (devices, requests, batch slots).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from emulator.errors import EmulatorError, nearest
from emulator.files import TOP

MAX_INTEGER = 2**53  # the largest whole number a float (and so a YAML number such as 1e15) holds exactly


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _described(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "an empty value", True: "true", False: "false"}[value]
    if isinstance(value, list):
        return "a list"
    return f"the text {value!r}" if isinstance(value, str) else repr(value)


def _shown(limit: float) -> str:
    return f"{limit:,}" if float(limit).is_integer() and abs(limit) < 1e18 else f"{limit:g}"


def check_number(value: Any, *, file: str, field: str, minimum: float = 0.0, strict: bool = True,
                 integer: bool = False, maximum: float | None = None, why: str = "") -> float:
    """`value` as a finite number above `minimum` (at or above it when not `strict`) and at most `maximum`, whole
    when `integer` (1e3 counts; then at most `MAX_INTEGER` unless `maximum` says less); otherwise an EmulatorError
    naming the field. `why` explains the maximum. Text is never a number: `"15e12"` in quotes is refused."""
    if integer:
        maximum = MAX_INTEGER if maximum is None else min(maximum, MAX_INTEGER)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and not (isinstance(value, float) and not math.isfinite(value))
    ok = ok and (value > minimum if strict else value >= minimum)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or (maximum is not None and value > maximum):
        kind = "a whole number" if integer else "a number"
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        if maximum is not None:
            bound += f" and at most {_shown(maximum)}{f' ({why})' if why else ''}"
        quotes = " without quotes" if isinstance(value, str) else ""
        example = max(1, int(minimum) + 1 if strict else int(minimum))
        shown = _described(value) if isinstance(value, (list, dict, str)) or value is None else repr(value)
        raise EmulatorError(f"is {shown}; it must be {kind} {bound}. Fix: give e.g. {example}{quotes}.", file=file,
                            field=field)
    return int(value) if integer else float(value)


class Fields:
    """Strict access to one mapping of a file: every key not in `allowed` is an error naming the nearest valid
    key, and each getter checks its value, naming the dotted field (`training.parallel.tp`) and the fix. `doc`
    points at the schema's documentation when the keys are too many to list in a message."""

    def __init__(self, data: Any, *, file: str, allowed: Iterable[str], prefix: str = "",
                 doc: str | None = None) -> None:
        self.file, self.prefix, self.allowed, self.doc = file, prefix, tuple(allowed), doc
        if not isinstance(data, Mapping):
            name = prefix.rpartition(".")[2]
            got = "nothing (the file is empty)" if data is None and not prefix else _described(data)
            fix = (f"see {doc} for the keys" if doc else
                   f"write it as '{name}: {{key: value, ...}}' with keys {', '.join(self.allowed)}" if name else
                   f"write one 'key: value' per line, with keys {', '.join(self.allowed)}")
            raise EmulatorError(f"must be a mapping of keys to values, got {got}. Fix: {fix}.", file=file,
                                field=prefix or TOP)
        for key in data:
            if key not in self.allowed:
                hint = nearest(str(key), self.allowed)
                hint = f"; {hint}" if hint.startswith("did you mean") or doc else "."
                fix = f"rename or remove it ({doc} lists the keys)" if doc else f"use one of {', '.join(self.allowed)}"
                raise self.error(str(key), f"unknown key '{key}'{hint} Fix: {fix}.")
        self.data: Mapping[str, Any] = data

    def field(self, key: str) -> str:
        return _join(self.prefix, key)  # the dotted path errors name

    def error(self, key: str | None, message: str) -> EmulatorError:  # about `key`, or with None this mapping
        return EmulatorError(message, file=self.file, field=self.field(key) if key else self.prefix or TOP)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)  # unchecked: for values another parser validates

    def required(self, key: str, hint: str | None = None) -> Any:
        """The raw value of a key that must be present; `hint` is an example line for the fix."""
        if key not in self.data:
            fix = f"add it, e.g. {hint}" if hint else f"add it ({self.doc} lists the keys)" if self.doc else "add it"
            raise self.error(key, f"is missing. Fix: {fix}.")
        return self.data[key]

    def number(self, key: str, default: float | None = None, *, minimum: float = 0.0, strict: bool = True,
               maximum: float | None = None, why: str = "") -> float | None:
        """A number (> minimum, or >= when not strict; at most `maximum`); `default` when the key is absent."""
        if key not in self.data:
            return default
        return check_number(self.data[key], file=self.file, field=self.field(key), minimum=minimum, strict=strict,
                            maximum=maximum, why=why)

    def integer(self, key: str, default: int | None = None, *, minimum: int = 1, maximum: int = MAX_INTEGER,
                why: str = "", hint: str | None = None) -> int:
        """A whole number from minimum to maximum; required when there is no default."""
        if key not in self.data:
            if default is None:
                self.required(key, hint or f"{key}: {max(minimum, 1)}")
            return default  # type: ignore[return-value]
        return int(check_number(self.data[key], file=self.file, field=self.field(key), minimum=minimum,
                                strict=False, integer=True, maximum=maximum, why=why))

    def choice(self, key: str, choices: Iterable[str], default: str | None = None) -> str:
        """One of `choices`; required when there is no default."""
        choices = tuple(choices)
        value = self.required(key) if default is None else self.data.get(key, default)
        if not isinstance(value, str) or value not in choices:
            shown = f"'{value}' is" if isinstance(value, str) else f"{_described(value)} is"
            raise self.error(key, f"{shown} not allowed; {nearest(str(value), choices)} Fix: use one of "
                                  f"{', '.join(choices)}.")
        return value

    def text(self, key: str, default: str | None = None, *, hint: str) -> str:
        """A name or a path; required when there is no default. `hint` is an example line for the fix."""
        value = self.required(key, hint) if default is None else self.data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"is {_described(value)}; it must be a name or a path. Fix: write e.g. {hint}.")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"is {_described(value)}; it must be true or false (yes, no, on and off are "
                                  "text). Fix: write true or false.")
        return value

    def section(self, key: str, allowed: Iterable[str], *, doc: str | None = None) -> Fields:
        """The nested mapping under `key`, checked the same way (absent or empty: no keys)."""
        value = self.data.get(key)
        return Fields({} if value is None else value, file=self.file, allowed=allowed, prefix=self.field(key),
                      doc=doc)


__all__ = ["MAX_INTEGER", "Fields", "check_number"]
