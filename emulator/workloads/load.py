"""A model from whatever a user names: a preset, a Hugging Face config.json (file or folder), or inline keys."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from emulator.errors import EmulatorError, nearest
from emulator.files import read_json
from emulator.workloads.config import ModelConfig
from emulator.workloads.hf import from_hf_config
from emulator.workloads.presets import PRESETS, preset


def _read_json(path: str) -> tuple[dict[str, Any], str]:
    if os.path.isdir(path):  # a downloaded Hugging Face model folder
        path = os.path.join(path, "config.json")
    if not os.path.exists(path):
        raise EmulatorError("does not exist. Fix: give a preset name or the path of a config.json.", file=path)
    data = read_json(path, fix="correct the file, or download it again")  # duplicate keys refused there
    if not isinstance(data, dict):
        raise EmulatorError("must hold a JSON object of config keys. Fix: use the model's config.json.", file=path,
                            field="(top level)")
    return data, path


def load_model(spec: str | Mapping[str, Any], *, origin: str) -> ModelConfig:
    """A model from a preset name, a path to a config.json (relative to `origin`'s folder), or inline keys."""
    if isinstance(spec, ModelConfig):  # type: ignore[misc, arg-type]
        return spec  # type: ignore[return-value]
    if isinstance(spec, Mapping):
        return from_hf_config(spec, origin=origin)
    if not isinstance(spec, str):
        raise EmulatorError(f"must be a preset name, a config.json path or a mapping of config.json keys, got "
                            f"{spec!r}. Fix: write e.g. 'model: llama3-8b' (`emulator models list`).", file=origin,
                            field="model")
    if spec in PRESETS:
        return preset(spec)
    path = os.path.expanduser(spec)
    if not os.path.isabs(path) and os.path.isfile(origin):
        path = os.path.join(os.path.dirname(os.path.abspath(origin)), path)
    if spec.endswith(".json") or os.path.exists(path) or os.sep in spec:
        data, path = _read_json(path)
        return from_hf_config(data, origin=path)
    raise EmulatorError(f"'{spec}' is neither a preset nor a file; {nearest(spec, PRESETS)} Fix: use a preset "
                        "(`emulator models list`), a path to a Hugging Face config.json, or an inline mapping of its "
                        "keys.", file=origin, field="model")
