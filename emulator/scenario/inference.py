"""The serving keys of a scenario's `inference:` section, parsed into a frozen `ServingSpec`.

```yaml
inference:
  precision: fp8                 # weights/GEMMs: bf16 | fp16 | fp8 | fp4 | int8
  kv_precision: fp8              # KV cache: bf16 | fp16 | fp8 | int8 (default: bf16, or the precision if 16-bit)
  parallel: {tp: 2, pp: 1, ep: 1}
  input_tokens: {distribution: normal, mean: 1024, std: 300, min: 16, max: 2048}   # or a number
  output_tokens: 256
  batch_size: 64                 # max concurrent sequences per replica (Offline: searched when absent)
  max_batch_tokens: 8192         # token budget of one continuous-batching iteration
  scenario: server               # offline | server
  arrival_rate_per_s: 20         # Server: a fixed rate; absent: search the highest rate meeting the SLO
  trace: requests.csv            # or a trace file: arrival_s,input_tokens,output_tokens per line
  slo: {ttft_p99_s: 2.0, tpot_p99_s: 0.2}          # recommenders: latency_p99_s
  seed: 0
  num_requests: 2000
  scheduler_overhead_s: 0.001    # per-iteration host overhead (default: replica.DEFAULT_SCHEDULER_OVERHEAD_S)
  disaggregation: {prefill_replicas: 2, decode_replicas: 6}
```
Every key is checked; errors name the file, the field and the fix.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emulator.errors import EmulatorError, nearest

PRECISIONS = ("bf16", "fp16", "fp8", "fp4", "int8", "fp32")
KV_PRECISIONS = ("bf16", "fp16", "fp8", "int8")
DISTRIBUTIONS = ("fixed", "normal", "uniform", "lognormal")
SCENARIOS = ("offline", "server")
KEYS = ("precision", "kv_precision", "parallel", "input_tokens", "output_tokens", "batch_size", "max_batch_tokens",
        "scenario", "arrival_rate_per_s", "trace", "slo", "seed", "num_requests", "scheduler_overhead_s",
        "disaggregation", "num_beams", "samples_per_query")
SLO_KEYS = ("ttft_p99_s", "tpot_p99_s", "latency_p99_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class Distribution:
    """A length distribution in tokens (or samples per query), clipped to [minimum, maximum] and rounded."""

    kind: str = "fixed"
    mean: float = 1.0
    std: float = 0.0
    minimum: float = 1.0
    maximum: float = math.inf

    def __post_init__(self) -> None:
        if self.kind not in DISTRIBUTIONS:
            raise EmulatorError(f"unknown distribution '{self.kind}'; use one of {', '.join(DISTRIBUTIONS)}.")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n integer draws >= 1 (deterministic for a seeded generator)."""
        lo = max(self.minimum, 1.0)
        hi = self.maximum if math.isfinite(self.maximum) else max(self.mean * 100, lo)
        if self.kind == "fixed":
            x = np.full(n, self.mean)
        elif self.kind == "normal":
            x = rng.normal(self.mean, self.std, n)
        elif self.kind == "uniform":
            x = rng.uniform(lo, hi, n)
        else:  # lognormal with the given mean and std of the variable itself
            sigma2 = math.log(1 + (self.std / self.mean) ** 2)
            x = rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2), n)
        return np.clip(np.rint(x), lo, hi).astype(np.int64)

    @property
    def expected(self) -> float:
        """Mean before clipping (uniform: the midpoint of its range)."""
        if self.kind == "uniform":
            return (max(self.minimum, 1.0) + self.maximum) / 2
        return self.mean

    @property
    def upper(self) -> int:
        """The largest value a draw can take (for capacity checks)."""
        if math.isfinite(self.maximum):
            return int(self.maximum)
        return int(self.mean if self.kind == "fixed" else self.mean + 4 * self.std)


@dataclass(frozen=True, slots=True, kw_only=True)
class Slo:
    ttft_p99_s: float | None = None
    tpot_p99_s: float | None = None
    latency_p99_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Disaggregation:
    """Separate prefill and decode pools (replica counts); KV moves over the system's fabric."""

    prefill_replicas: int
    decode_replicas: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingSpec:
    """Everything the serving model reads from `inference:`."""

    precision: str = "bf16"
    kv_precision: str | None = None
    tp: int = 1
    pp: int = 1
    ep: int = 1
    input_tokens: Distribution = field(default_factory=lambda: Distribution(mean=1024))
    output_tokens: Distribution = field(default_factory=lambda: Distribution(mean=128))
    batch_size: int | None = None
    max_batch_tokens: int | None = None
    scenario: str = "offline"
    arrival_rate_per_s: float | None = None
    trace: str | None = None
    slo: Slo = field(default_factory=Slo)
    seed: int = 0
    num_requests: int | None = None
    scheduler_overhead_s: float | None = None
    disaggregation: Disaggregation | None = None
    num_beams: int = 1
    samples_per_query: Distribution = field(default_factory=Distribution)
    path: str = ""

    @property
    def kv(self) -> str:
        """The KV-cache precision in effect: as given, else the weights' 16-bit type, else bf16."""
        return self.kv_precision or (self.precision if self.precision in ("bf16", "fp16") else "bf16")


def _err(path: str, key: str, message: str) -> EmulatorError:
    return EmulatorError(message, file=path, field=f"inference.{key}")


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], path: str, prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise _err(path, f"{prefix}{key}", f"unknown key '{key}'; {nearest(str(key), allowed)} Fix: use one of "
                       f"{', '.join(allowed)}.")


def _number(value: Any, path: str, key: str, *, integer: bool = False, minimum: float = 0.0,
            strict: bool = True) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        kind = "a whole number" if integer else "a number"
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise _err(path, key, f"is {value!r}; it must be {kind} {bound}. Fix: give e.g. {max(1, int(minimum) + 1)}.")
    return int(value) if integer else float(value)


def _choice(value: Any, choices: tuple[str, ...], path: str, key: str) -> str:
    if str(value) not in choices:
        raise _err(path, key, f"'{value}' is not allowed; {nearest(str(value), choices)} Fix: use one of "
                   f"{', '.join(choices)}.")
    return str(value)


def parse_distribution(value: Any, path: str, key: str) -> Distribution:
    """A number (fixed) or {distribution, mean, std, min, max}."""
    if not isinstance(value, Mapping):
        return Distribution(mean=_number(value, path, key, integer=True))
    _check_keys(value, ("distribution", "mean", "std", "min", "max"), path, f"{key}.")
    kind = _choice(value.get("distribution", "fixed"), DISTRIBUTIONS, path, f"{key}.distribution")
    lo = _number(value.get("min", 1), path, f"{key}.min", minimum=1, strict=False)
    hi = _number(value["max"], path, f"{key}.max") if "max" in value else math.inf
    if kind == "uniform":
        if "max" not in value:
            raise _err(path, f"{key}.max", "is missing for a uniform distribution. Fix: add max (and min).")
        mean = (lo + hi) / 2
    else:
        if "mean" not in value:
            raise _err(path, f"{key}.mean", f"is missing for a {kind} distribution. Fix: add e.g. mean: 512.")
        mean = _number(value["mean"], path, f"{key}.mean")
    std = _number(value.get("std", 0.0), path, f"{key}.std", strict=False)
    if kind in ("normal", "lognormal") and std <= 0:
        raise _err(path, f"{key}.std", f"must be > 0 for a {kind} distribution. Fix: add std, or use a fixed number.")
    if hi < lo:
        raise _err(path, f"{key}.max", f"{hi:g} is below min {lo:g}. Fix: swap them.")
    return Distribution(kind=kind, mean=mean, std=std, minimum=lo, maximum=hi)


def read_trace(path: str, origin: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival_s, input_tokens, output_tokens) from a CSV trace file; a header line is optional."""
    file = Path(path)
    if not file.is_absolute() and origin:
        file = Path(origin).parent / file
    try:
        rows = list(csv.reader(file.read_text().splitlines()))
    except OSError as e:
        raise _err(origin, "trace", f"cannot read '{file}' ({e.strerror}). Fix: check the path (relative paths are "
                   "relative to the scenario file).") from None
    out: list[tuple[float, int, int]] = []
    for i, row in enumerate(rows):
        if not row or row[0].strip().startswith("#"):
            continue
        try:
            t, a, b = float(row[0]), int(float(row[1])), int(float(row[2]))
        except (ValueError, IndexError):
            if i == 0:
                continue  # a header line
            raise _err(origin, "trace", f"line {i + 1} of '{file}' is {row!r}. Fix: write "
                       "'arrival_s,input_tokens,output_tokens' per line.") from None
        if t < 0 or a < 1 or b < 1:
            raise _err(origin, "trace", f"line {i + 1} of '{file}' has a negative time or a length < 1. Fix it.")
        out.append((t, a, b))
    if not out:
        raise _err(origin, "trace", f"'{file}' holds no requests. Fix: add "
                   "'arrival_s,input_tokens,output_tokens' lines.")
    out.sort()
    arr = np.array(out, dtype=float)
    return arr[:, 0], arr[:, 1].astype(np.int64), arr[:, 2].astype(np.int64)


def parse_inference(data: Mapping[str, Any], path: str) -> ServingSpec:
    """Validate the `inference:` mapping of a scenario file into a ServingSpec."""
    if not isinstance(data, Mapping):
        raise EmulatorError("must be a mapping of keys to values. Fix: write 'inference: {...}'.", file=path,
                            field="inference")
    _check_keys(data, KEYS, path, "")
    kw: dict[str, Any] = {"path": path}
    if "precision" in data:
        kw["precision"] = _choice(data["precision"], PRECISIONS, path, "precision")
    if "kv_precision" in data:
        kw["kv_precision"] = _choice(data["kv_precision"], KV_PRECISIONS, path, "kv_precision")
    parallel = data.get("parallel", {}) or {}
    if not isinstance(parallel, Mapping):
        raise _err(path, "parallel", "must be a mapping such as {tp: 2, pp: 1, ep: 1}. Fix it.")
    _check_keys(parallel, ("tp", "pp", "ep"), path, "parallel.")
    for k in ("tp", "pp", "ep"):
        if k in parallel:
            kw[k] = _number(parallel[k], path, f"parallel.{k}", integer=True)
    if "input_tokens" not in data and "trace" not in data:
        raise _err(path, "input_tokens", "is missing. Fix: add e.g. input_tokens: 1024 (or a distribution, or trace:).")
    for key in ("input_tokens", "output_tokens", "samples_per_query"):
        if key in data:
            kw[key] = parse_distribution(data[key], path, key)
    for key in ("batch_size", "max_batch_tokens", "num_requests", "num_beams"):
        if key in data:
            kw[key] = _number(data[key], path, key, integer=True)
    if "seed" in data:
        kw["seed"] = _number(data["seed"], path, "seed", integer=True, strict=False)
    kw["scenario"] = _choice(data.get("scenario", "offline"), SCENARIOS, path, "scenario")
    if "arrival_rate_per_s" in data:
        kw["arrival_rate_per_s"] = _number(data["arrival_rate_per_s"], path, "arrival_rate_per_s")
    if "trace" in data:
        if "arrival_rate_per_s" in data:
            raise _err(path, "trace", "give arrival_rate_per_s or trace, not both. Fix: delete one.")
        kw["trace"] = str(data["trace"])
        read_trace(kw["trace"], path)  # fail early on a bad file
    if "scheduler_overhead_s" in data:
        kw["scheduler_overhead_s"] = _number(data["scheduler_overhead_s"], path, "scheduler_overhead_s", strict=False)
    if "slo" in data:
        slo = data["slo"]
        if not isinstance(slo, Mapping):
            raise _err(path, "slo", "must be a mapping such as {ttft_p99_s: 2, tpot_p99_s: 0.2}. Fix it.")
        _check_keys(slo, SLO_KEYS, path, "slo.")
        kw["slo"] = Slo(**{k: _number(v, path, f"slo.{k}") for k, v in slo.items()})
    if "disaggregation" in data:
        d = data["disaggregation"]
        if not isinstance(d, Mapping):
            raise _err(path, "disaggregation", "must be {prefill_replicas: N, decode_replicas: M}. Fix it.")
        _check_keys(d, ("prefill_replicas", "decode_replicas"), path, "disaggregation.")
        for k in ("prefill_replicas", "decode_replicas"):
            if k not in d:
                raise _err(path, f"disaggregation.{k}", "is missing. Fix: add it (a whole number >= 1).")
        kw["disaggregation"] = Disaggregation(
            prefill_replicas=_number(d["prefill_replicas"], path, "disaggregation.prefill_replicas", integer=True),
            decode_replicas=_number(d["decode_replicas"], path, "disaggregation.decode_replicas", integer=True))
    if kw["scenario"] == "server" and "arrival_rate_per_s" not in kw and "trace" not in kw:
        slo = kw.get("slo", Slo())
        if slo.ttft_p99_s is None and slo.tpot_p99_s is None and slo.latency_p99_s is None:
            raise _err(path, "slo", "is needed to search the highest Server rate (no arrival_rate_per_s or trace). "
                       "Fix: add slo: {ttft_p99_s: 2.0, tpot_p99_s: 0.2}, or give arrival_rate_per_s.")
    return ServingSpec(**kw)


__all__ = ["Distribution", "Disaggregation", "ServingSpec", "Slo", "parse_distribution", "parse_inference",
           "read_trace"]
