"""Finding and loading hardware profiles: YAML files under `hw_profiles/` into validated, frozen dataclasses.

Files are read by the strict file layer (`emulator.files`: YAML 1.2 numbers such as `989.4e12`, duplicate keys
refused); `Fields` refuses unknown and missing keys, and `_convert` values of the wrong type, each with an
`EmulatorError` naming the file, the field and the fix (`hw_profiles/README.md` documents the schema); the
dataclasses in `profiles` check the values themselves. Profiles are cached per file version.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emulator.errors import EmulatorError, nearest
from emulator.fields import Fields
from emulator.files import read_yaml, shipped
from emulator.hardware.checks import _SCHEMA_DOC, _fail, _FieldError, _in_file, _join, _under
from emulator.hardware.profiles import (
    Achievable,
    DeviceProfile,
    Links,
    MemoryTier,
    Power,
    Price,
    ScaleOut,
    ScaleUp,
    Site,
    SystemPower,
    SystemPrice,
    SystemProfile,
)

_NESTED: dict[str, type] = {
    cls.__name__: cls
    for cls in (MemoryTier, Links, Power, Price, Achievable, DeviceProfile, ScaleUp, ScaleOut, SystemPower, SystemPrice)
}

# --- YAML to dataclasses --------------------------------------------------------------------------------


def _convert(annotation: str, value: Any, path: str, file: str) -> Any:
    kind = annotation.split(" ")[0]
    if kind in ("float", "int"):
        if value is None and "None" in annotation:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(path, f"must be a number in SI units, got {value!r}. Fix: write e.g. 989.4e12 (no units, no quotes).")
        if kind == "int":
            if not float(value).is_integer():
                _fail(path, f"must be a whole number, got {value!r}. Fix: round it.")
            return int(value)
        return float(value)
    if kind in ("str", "bool"):
        if not isinstance(value, str if kind == "str" else bool):
            _fail(path, f"must be a {'string' if kind == 'str' else 'true/false'}, got {value!r}. Fix it.")
        return value
    if kind.startswith("Mapping["):
        if not isinstance(value, dict):
            _fail(path, f"must be a mapping, got {value!r}. Fix: write `{{key: value, ...}}`.")
        item = "float" if "float" in annotation else "str"
        return {str(k): _convert(item, v, _join(path, str(k)), file) for k, v in value.items()}
    if kind.startswith("tuple["):
        if not isinstance(value, list) or not value:
            _fail(path, "must be a non-empty list of tiers. Fix: see the schema in " + _SCHEMA_DOC + ".")
        labels = [
            str(t["name"]) if isinstance(t, dict) and isinstance(t.get("name"), str) else f"[{i}]"
            for i, t in enumerate(value)
        ]
        return tuple(_build(MemoryTier, tier, _join(path, label), file)
                     for tier, label in zip(value, labels, strict=True))
    if value is None and "None" in annotation:  # an optional section left out or written as null
        return None
    cls = _NESTED[kind]
    return value if isinstance(value, cls) else _build(cls, value, path, file)


def _build(cls: type, data: Any, prefix: str, file: str) -> Any:
    """Construct `cls` from a YAML mapping: unknown and missing keys are errors; values are type-checked."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    r = Fields(data, file=file, allowed=fields, prefix=prefix, doc=_SCHEMA_DOC)
    kwargs = {}
    for name, f in fields.items():
        if r.has(name):
            kwargs[name] = _convert(str(f.type), r.get(name), _join(prefix, name), file)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            r.required(name)
    with _under(prefix):
        return cls(**kwargs)


# --- finding and loading profiles -----------------------------------------------------------------------


def profiles_root() -> Path:
    """The folder holding devices/, systems/ and sites/ (`$EMULATOR_PROFILES`, else the shipped
    `hw_profiles/`: the package's, or the repository's in a checkout)."""
    env = os.environ.get("EMULATOR_PROFILES")
    return Path(env).expanduser() if env else shipped("hw_profiles")


def _names(folder: str) -> list[str]:
    return sorted(p.stem for p in (profiles_root() / folder).glob("*.yaml"))


def list_devices() -> list[str]:
    """Names of the shipped device profiles."""
    return _names("devices")


def list_systems() -> list[str]:
    """Names of the shipped system profiles."""
    return _names("systems")


def list_sites() -> list[str]:
    """Names of the shipped site profiles."""
    return _names("sites")


def _resolve(
    folder: str, name_or_path: str | os.PathLike[str], base: Path | None = None
) -> tuple[str, int, str | None]:
    """(file path, its mtime, the `name` it must hold when given by name) for a profile name or YAML path."""
    text = os.fspath(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text or os.sep in text:
        path = Path(text).expanduser()
        path = (base / path) if base is not None and not path.is_absolute() else path
        if not path.is_file():
            _fail(None, f"profile file '{path}' does not exist. Fix: check the path.")
        return str(path.resolve()), os.stat(path).st_mtime_ns, None
    path = profiles_root() / folder / f"{text}.yaml"
    if not path.is_file():
        kind = folder.rstrip("s")
        _fail(
            None,
            f"unknown {kind} '{text}'; {nearest(text, _names(folder))} Fix: use a name from "
            f"`emulator profiles list` or a path to a {kind} YAML file.",
        )
    return str(path), os.stat(path).st_mtime_ns, text


@functools.lru_cache(maxsize=256)
def _load_file(folder: str, path: str, mtime_ns: int, expected: str | None) -> Any:
    """Parse and validate one profile file; cached per file version (`mtime_ns` is part of the key)."""
    cls = {"devices": DeviceProfile, "systems": SystemProfile, "sites": Site}[folder]
    data = dict(Fields(read_yaml(path), file=path, allowed=[f.name for f in dataclasses.fields(cls)],
                       doc=_SCHEMA_DOC).data)
    with _in_file(path):
        if expected is not None and data.get("name") != expected:
            _fail("name", f"is {data.get('name')!r} but the file is {expected}.yaml. Fix: make them equal.")
        if folder == "systems" and isinstance(data.get("device"), str):
            try:
                device = _resolve("devices", data["device"], base=Path(path).parent)
            except _FieldError as e:
                _fail("device", e.message)
            data = {**data, "device": _load_file("devices", *device)}
        elif folder == "systems" and "device" in data:
            _fail("device", f"must be a device name such as 'h100-sxm', got {data['device']!r}. Fix it.")
        return _build(cls, data, "", path)


def _load(folder: str, name_or_path: str | os.PathLike[str]) -> Any:
    try:
        return _load_file(folder, *_resolve(folder, name_or_path))
    except _FieldError as e:  # an unknown name or a missing file, outside any file
        raise EmulatorError(e.message) from None


def load_device(name_or_path: str | os.PathLike[str] | DeviceProfile) -> DeviceProfile:
    """A device by name (`h100-sxm`) or YAML path; a DeviceProfile passes through. Cached per file version."""
    return name_or_path if isinstance(name_or_path, DeviceProfile) else _load("devices", name_or_path)


def load_system(name_or_path: str | os.PathLike[str] | SystemProfile) -> SystemProfile:
    """A system by name (`hgx-h100`) or YAML path, with its device resolved. Cached per file version."""
    return name_or_path if isinstance(name_or_path, SystemProfile) else _load("systems", name_or_path)


def load_site(name_or_path: str | os.PathLike[str] | Site = "default") -> Site:
    """A site by name (`default`) or YAML path. Cached per file version."""
    return name_or_path if isinstance(name_or_path, Site) else _load("sites", name_or_path)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def profile_summary(profile: DeviceProfile | SystemProfile | Site) -> dict[str, Any]:
    """A JSON-able dict of every field (SI units) with its sources; a system nests its device's summary."""
    kind = {DeviceProfile: "device", SystemProfile: "system", Site: "site"}[type(profile)]
    return {"profile_type": kind, **_plain(profile)}


def default_system(device: DeviceProfile) -> SystemProfile | None:
    """The first shipped system built from `device` (hardware is data: no name branches)."""
    for name in list_systems():
        system = load_system(name)
        if system.device.name == device.name:
            return system
    return None
