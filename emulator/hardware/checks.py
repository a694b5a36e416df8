"""Validation helpers of the hardware profiles: errors that carry a field path, and the checks every profile passes.

`_FieldError` carries the dotted path of the field it is about; `_under` prefixes it as the error leaves a nested
value and `_in_file` turns it into an `EmulatorError` naming the file. `_check_profile` refuses non-positive,
non-finite and unsourced numbers; `_freeze` makes a profile's mappings and sequences read-only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, NoReturn

from emulator.errors import EmulatorError, nearest

_SCHEMA_DOC = "hw_profiles/README.md"

# --- errors carrying a field path; the loader adds the file -------------------------------------------


class _FieldError(EmulatorError):
    """A validation error whose field path is completed as it propagates out of nested values."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message, field=field)
        self.message = message


def _fail(field: str | None, message: str) -> NoReturn:
    raise _FieldError(message, field)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@contextmanager
def _under(prefix: str) -> Iterator[None]:
    try:
        yield
    except _FieldError as e:
        raise _FieldError(e.message, _join(prefix, e.field) if e.field else prefix or None) from None


@contextmanager
def _in_file(path: str) -> Iterator[None]:
    try:
        yield
    except _FieldError as e:
        raise EmulatorError(e.message, file=path, field=e.field) from None


def _choice(value: str, choices: tuple[str, ...], field: str) -> None:
    if value not in choices:
        _fail(field, f"'{value}' is not allowed; {nearest(value, choices)} Fix: use one of {', '.join(choices)}.")


def _number_fields(obj: Any, prefix: str = "") -> dict[str, tuple[Any, bool]]:
    """{dotted path: (value, may be null)} for every number inside a profile (memory tiers by name)."""
    out: dict[str, tuple[Any, bool]] = {}
    for f in dataclasses.fields(obj):
        value, path, annotation = getattr(obj, f.name), _join(prefix, f.name), str(f.type)
        if f.name == "sources" or (dataclasses.is_dataclass(value) and hasattr(value, "sources")):
            continue  # a nested profile (a system's device) carries its own sources
        if dataclasses.is_dataclass(value):
            out |= _number_fields(value, path)
        elif isinstance(value, tuple):
            for tier in value:
                out |= _number_fields(tier, _join(path, tier.name))
        elif isinstance(value, Mapping):
            out |= {_join(path, key): (item, False) for key, item in value.items()}
        elif annotation.split(" ")[0] in ("float", "int"):
            out[path] = (value, "None" in annotation)
    return out


def _check_profile(obj: Any) -> None:
    """Every number is finite and positive (null only where allowed) and every non-null number has a source."""
    numbers = _number_fields(obj)
    for path, (value, nullable) in numbers.items():
        if value is None and nullable:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            _fail(
                path,
                f"must be a positive number in SI units, got {value!r}. Fix: correct the value "
                "(FLOP/s, bytes, bytes/s, W, s, USD; e.g. 989.4e12).",
            )
    for key, text in obj.sources.items():
        if key not in numbers:
            _fail(
                f"sources.{key}",
                f"names no number in this profile; {nearest(key, numbers)} "
                "Fix: key each source by the dotted path of the field it supports.",
            )
        if not isinstance(text, str) or not text.strip():
            _fail(
                f"sources.{key}",
                "is empty. Fix: cite a document (and quote it briefly) or write 'estimate: <reasoning>'.",
            )
    for path in sorted(p for p, (value, _) in numbers.items() if value is not None and p not in obj.sources):
        _fail(
            path,
            f"has no source. Fix: add `{path}: \"<document and quote, or 'estimate: <reasoning>'>\"` under `sources:`.",
        )


def _freeze(obj: Any, *names: str) -> None:
    """Store mappings as read-only proxies and sequences as tuples, so profiles stay immutable."""
    for name in names:
        value = getattr(obj, name)
        object.__setattr__(obj, name, MappingProxyType(dict(value)) if isinstance(value, Mapping) else tuple(value))
