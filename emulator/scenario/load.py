"""Scenario files: the unit a user saves, shares and re-runs (model, hardware, training or inference settings).

```yaml
model: llama3-70b                 # preset | path to a config.json | inline mapping with config.json keys
hardware: {device: h100-sxm, system: hgx-h100, num_devices: 1}
training:                         # or `inference:`
  seq_len: 8192
  global_batch_size: 1            # sequences (or global_batch_tokens)
  precision: bf16                 # bf16 | fp16 | fp8 | fp4 (where the device has it)
  parallel: {tp: 1, pp: 1, dp: 1}
```
Every key is checked: unknown keys are errors with the nearest known key, sizes must be positive integers,
and each error names the file, the field and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emulator.errors import EmulatorError, nearest
from emulator.hardware import DeviceProfile, SystemProfile, list_devices, load_device, load_system
from emulator.workloads.config import ModelConfig
from emulator.workloads.load import load_model

TRAIN_PRECISIONS = ("bf16", "fp16", "fp8", "fp4", "fp32")
PARALLEL_KEYS = ("tp", "pp", "dp", "cp", "ep", "virtual_stages", "microbatch_size", "sequence_parallel", "zero", "fsdp")
RECOMPUTE = ("none", "selective", "full")


@dataclass(frozen=True, slots=True, kw_only=True)
class Parallel:
    """A parallel layout (the cluster model of a later stage reads every key; validated here)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    virtual_stages: int = 1
    microbatch_size: int = 1
    sequence_parallel: bool = False
    zero: int = 0
    fsdp: bool = False

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp * self.dp * self.cp


@dataclass(frozen=True, slots=True, kw_only=True)
class Training:
    seq_len: int
    global_batch_size: int  # sequences
    precision: str = "bf16"
    parallel: Parallel = field(default_factory=Parallel)
    recompute: str = "none"
    total_tokens: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Inference:
    input_tokens: int
    output_tokens: int
    batch_size: int = 1
    precision: str = "bf16"
    kv_precision: str | None = None
    parallel: Parallel = field(default_factory=Parallel)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    path: str
    model: ModelConfig
    device: DeviceProfile
    system: SystemProfile | None
    num_devices: int
    training: Training | None = None
    inference: Inference | None = None
    serving: Any = None  # emulator.serving.scenario.ServingSpec of an `inference:` section
    raw: Mapping[str, Any] = field(default_factory=dict)


class _Reader:
    """Strict access to one mapping of a scenario file: every key used or reported."""

    def __init__(self, data: Any, path: str, prefix: str, allowed: tuple[str, ...]) -> None:
        if not isinstance(data, Mapping):
            raise EmulatorError(
                f"must be a mapping of keys to values, got {type(data).__name__}. Fix: write it as "
                f"'{prefix or 'key'}: {{...}}' with keys {', '.join(allowed)}.",
                file=path,
                field=prefix or None,
            )
        for key in data:
            if key not in allowed:
                raise EmulatorError(
                    f"unknown key '{key}'; {nearest(str(key), allowed)} Fix: use one of {', '.join(allowed)}.",
                    file=path,
                    field=self._join(prefix, str(key)),
                )
        self.data, self.path, self.prefix = data, path, prefix

    @staticmethod
    def _join(prefix: str, key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    def has(self, key: str) -> bool:
        return key in self.data

    def required(self, key: str, hint: str) -> Any:
        if key not in self.data:
            raise EmulatorError(f"is missing. Fix: add it, e.g. {hint}.", file=self.path, field=self._join(self.prefix, key))
        return self.data[key]

    def int(self, key: str, default: int | None = None, *, minimum: int = 1, hint: str = "") -> int:
        value = self.data.get(key, default) if default is not None else self.required(key, hint or f"{key}: 1")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise EmulatorError(
                f"is {value!r}; it must be an integer >= {minimum}. Fix: give a whole number such as {max(minimum, 1)}.",
                file=self.path,
                field=self._join(self.prefix, key),
            )
        return value

    def number(self, key: str) -> float | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise EmulatorError(
                f"is {value!r}; it must be a positive number (e.g. 15e12). Fix: give a number.",
                file=self.path,
                field=self._join(self.prefix, key),
            )
        return float(value)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = str(self.data.get(key, default))
        if value not in choices:
            raise EmulatorError(
                f"'{value}' is not allowed; {nearest(value, choices)} Fix: use one of {', '.join(choices)}.",
                file=self.path,
                field=self._join(self.prefix, key),
            )
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise EmulatorError(f"is {value!r}; use true or false.", file=self.path, field=self._join(self.prefix, key))
        return value


def read_yaml(path: str) -> Any:
    """Parse a YAML file into plain data, with errors that name the file and line."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise EmulatorError(f"no such file. Fix: check the path (working directory is {os.getcwd()}).", file=path) from None
    except OSError as e:
        raise EmulatorError(f"cannot be read ({e.strerror}). Fix: check its permissions.", file=path) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise EmulatorError(
            f"is not valid YAML{where}: {problem}. Fix: check the indentation and the ':' after each key there.",
            file=path,
        ) from None


def _parallel(r: _Reader, key: str) -> Parallel:
    if not r.has(key):
        return Parallel()
    p = _Reader(r.data[key], r.path, r._join(r.prefix, key), PARALLEL_KEYS)
    zero = p.int("zero", 0, minimum=0)
    if zero > 3:
        raise EmulatorError("must be 0, 1, 2 or 3 (the ZeRO stage). Fix: pick one.", file=r.path, field=f"{p.prefix}.zero")
    return Parallel(
        tp=p.int("tp", 1),
        pp=p.int("pp", 1),
        dp=p.int("dp", 1),
        cp=p.int("cp", 1),
        ep=p.int("ep", 1),
        virtual_stages=p.int("virtual_stages", 1),
        microbatch_size=p.int("microbatch_size", 1),
        sequence_parallel=p.bool("sequence_parallel", False),
        zero=zero,
        fsdp=p.bool("fsdp", False),
    )


def global_batch_sequences(r: _Reader, seq_len: int, *, required: bool) -> int:
    """Sequences per step from `global_batch_size` or `global_batch_tokens` (a multiple of seq_len); one
    sequence when neither is given and the section does not require it."""
    field = f"{r.prefix}.global_batch_tokens"
    if r.has("global_batch_size") and r.has("global_batch_tokens"):
        raise EmulatorError("give global_batch_size or global_batch_tokens, not both. Fix: delete one.",
                            file=r.path, field=field)
    if r.has("global_batch_tokens"):
        tokens = r.int("global_batch_tokens")
        if tokens % seq_len:
            raise EmulatorError(f"{tokens} is not a multiple of seq_len {seq_len}. Fix: use "
                                f"{max(tokens // seq_len, 1) * seq_len} (whole sequences).", file=r.path, field=field)
        return tokens // seq_len
    if required and not r.has("global_batch_size"):
        raise EmulatorError("needs global_batch_size (sequences) or global_batch_tokens. Fix: e.g. "
                            "global_batch_tokens: 16777216.", file=r.path, field=field)
    return r.int("global_batch_size", 1)


def _training(data: Any, path: str) -> Training:
    r = _Reader(data, path, "training", ("seq_len", "global_batch_size", "global_batch_tokens", "precision",
                                         "parallel", "recompute", "total_tokens"))
    seq_len = r.int("seq_len", hint="seq_len: 4096")
    batch = global_batch_sequences(r, seq_len, required=False)
    return Training(
        seq_len=seq_len,
        global_batch_size=batch,
        precision=r.choice("precision", TRAIN_PRECISIONS, "bf16"),
        parallel=_parallel(r, "parallel"),
        recompute=r.choice("recompute", RECOMPUTE, "none"),
        total_tokens=r.number("total_tokens"),
    )


def _inference(data: Any, path: str) -> tuple[Inference, Any]:
    """The `inference:` section, validated by the serving model's parser (it owns the serving keys: scenario,
    arrival rate or trace, SLOs, length distributions); the batch view of it uses the mean lengths."""
    from emulator.scenario.inference import parse_inference

    try:
        spec = parse_inference(data, path)
    except EmulatorError as e:
        field = e.field if (e.field or "").startswith("inference") else f"inference.{e.field}" if e.field else "inference"
        raise EmulatorError(e.message, file=path, field=field) from None
    batch = Inference(
        input_tokens=max(1, round(spec.input_tokens.mean)),
        output_tokens=max(1, round(spec.output_tokens.mean)),
        batch_size=spec.batch_size or 1,
        precision=spec.precision,
        kv_precision=spec.kv_precision,
        parallel=Parallel(tp=spec.tp, pp=spec.pp, ep=spec.ep),
    )
    return batch, spec


def _hardware(data: Any, path: str) -> tuple[DeviceProfile, SystemProfile | None, int]:
    r = _Reader(data, path, "hardware", ("device", "system", "num_devices"))
    name = r.required("device", f"device: h100-sxm (one of {', '.join(list_devices())})")
    try:
        device = load_device(str(name))
    except EmulatorError as e:
        raise EmulatorError(str(e), file=path, field="hardware.device") from None
    system = None
    if r.has("system"):
        try:
            system = load_system(str(r.data["system"]))
        except EmulatorError as e:
            raise EmulatorError(str(e), file=path, field="hardware.system") from None
        if system.device.name != device.name:
            raise EmulatorError(
                f"system '{system.name}' holds '{system.device.name}' devices, not '{device.name}'. "
                f"Fix: set device: {system.device.name}, or pick a system built from {device.name}.",
                file=path,
                field="hardware.system",
            )
    return device, system, r.int("num_devices", 1)


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario file."""
    path = str(path)
    data = read_yaml(path)
    r = _Reader(data, path, "", ("model", "hardware", "training", "inference", "name", "description"))
    spec = r.required("model", "model: llama3-8b")
    try:
        model = load_model(spec, origin=path)
    except EmulatorError as e:
        if e.file:  # the error names the config.json it came from
            raise
        raise EmulatorError(str(e), file=path, field=e.field or "model") from None
    device, system, num_devices = _hardware(r.required("hardware", "hardware: {device: h100-sxm}"), path)
    if r.has("training") == r.has("inference"):
        raise EmulatorError(
            "needs exactly one of 'training:' or 'inference:'. Fix: keep the section you want to predict.",
            file=path,
            field="training" if r.has("training") else None,
        )
    training = _training(r.data["training"], path) if r.has("training") else None
    inference, serving = _inference(r.data["inference"], path) if r.has("inference") else (None, None)
    return Scenario(path=path, model=model, device=device, system=system, num_devices=num_devices,
                    training=training, inference=inference, serving=serving, raw=data)
