"""What `emulator run` will execute, on which model, and how long that will take, decided before anything runs.

- parts: training runs ONE micro-batch (forward, backward, AdamW), since `emulator predict` already multiplies
  micro-batches and a CPU would spend minutes on them; inference a prefill of batch x input_tokens and one decode
  step at the mean context (input + output/2), combined as predict does (DLRM: the forward only).
- model: the scenario's, or a stated scale model (fewer layers; DLRM fewer embedding rows) when it does not fit
  the free memory or when `--scale` asks for one.
- duration: each part's predicted step on this machine (its calibration at the speed the reference reads now; a
  known GPU's shipped profile; an uncalibrated CPU: spec efficiencies at rates probed here), times the calls the
  timer makes, plus building the model (random weights at the rate probed here).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from emulator.calibrate.local import local_calibration
from emulator.engine.calibration import efficiency_for, local_profile, profile_for_fingerprint
from emulator.engine.efficiency import SPEC_DEFAULTS
from emulator.engine.predict import batch_memory, time_trace, training_memory_of
from emulator.engine.timing import Timing
from emulator.engine.trace import trace_workload
from emulator.engine.tracer import traced_dtype
from emulator.errors import EmulatorError
from emulator.measure.machine import device_fingerprint, free_memory_bytes, last_level_cache_bytes
from emulator.measure.speed import Reference, at_speed, probed_peaks, speed_vs
from emulator.measure.timer import time_callable
from emulator.precision import TRACED_DTYPES
from emulator.scenario import Scenario
from emulator.units import fmt_bytes, fmt_seconds
from emulator.workloads.config import DLRMConfig, ModelConfig

# Fractions of the free memory a run may plan for: the CUDA caching allocator and the profiler need headroom;
# on a host the rest of the system (and this process's own torch) needs at least as much again.
CUDA_MEMORY_FRACTION = 0.8
HOST_MEMORY_FRACTION = 0.5
# The timer's settings for every part (`measure.time_callable`): at most `MAX_REPS` timed calls, at least
# `MIN_REPS`, until `target_time_s` of timed work; `WARMUP` calls before (one when a call outlasts the target).
WARMUP, MIN_REPS, MAX_REPS = 2, 5, 50
PROFILE_STEPS = 2  # steps the torch profiler runs per part (`measure.profile_kernels`)
POWER_TIME_S = 2.0  # NVML averages power over about 1 s, so the steady loop lasts at least twice that


@dataclass(frozen=True, slots=True)
class Part:
    """One measured program: a phase of the model at given shapes, weighted `count` times in the step."""

    name: str
    phase: str
    batch_size: int
    seq_len: int
    kv_len: int
    count: int


@dataclass(frozen=True, slots=True)
class PartEstimate:
    """How long one part's measurement will take: building the model, then `num_calls` steps of `step_s`."""

    name: str
    step_s: float
    num_calls: int
    build_s: float

    @property
    def total_s(self) -> float:
        return self.build_s + self.num_calls * self.step_s


@dataclass(frozen=True, slots=True)
class RunEstimate:
    """The whole run's expected wall time and where its step times came from."""

    parts: tuple[PartEstimate, ...]
    source: str

    @property
    def total_s(self) -> float:
        return sum(p.total_s for p in self.parts)

    def describe(self) -> str:
        steps = ", ".join(f"{p.name} {p.num_calls} x {fmt_seconds(p.step_s)} + {fmt_seconds(p.build_s)} to build"
                          for p in self.parts)
        return f"{fmt_seconds(self.total_s)} ({steps}; step times from {self.source})"


@dataclass(frozen=True, slots=True)
class RunPlan:
    """Everything `run_scenario` executes and predicts, fixed before it starts."""

    parts: tuple[Part, ...]
    dtype: torch.dtype
    tokens_per_step: float
    model: ModelConfig
    scale_model: dict[str, int] | None
    notes: tuple[str, ...]
    free_bytes: float
    profile: Any  # this machine's DeviceProfile, or None when nothing predicts it
    table: Any  # its EfficiencyTable (at calibration speed), or None
    why_no_prediction: str | None
    estimate: RunEstimate
    estimating: tuple[Any, Any, str]  # (profile, table, source) the estimate predicted with
    fill_bytes_per_s: float  # how fast this machine fills a model's tensors with random numbers


def available_memory_bytes(device: torch.device) -> float:
    """What a run may plan to use: a fraction of the free device (or host) memory."""
    fraction = CUDA_MEMORY_FRACTION if device.type == "cuda" else HOST_MEMORY_FRACTION
    return free_memory_bytes(device) * fraction


def plan_parts(s: Scenario) -> tuple[list[Part], torch.dtype, float, list[str]]:
    """(parts, dtype, tokens per step, notes) of what `run` executes for the scenario."""
    notes: list[str] = []
    section = s.training or s.inference
    assert section is not None  # load_scenario guarantees exactly one
    dtype = traced_dtype(section.precision)
    if section.precision not in TRACED_DTYPES:
        notes.append(f"{section.precision} is not run by `run`: the model ran in bf16 (predicted in bf16 too)")
    if s.num_devices > 1 or section.parallel.num_devices > 1:
        notes.append(f"the scenario's plan spans {max(s.num_devices, section.parallel.num_devices)} devices; `run` "
                     "measures the whole model on this one device")
    dlrm = isinstance(s.model, DLRMConfig)
    if s.training:
        tr = s.training
        micro = min(tr.parallel.microbatch_size, tr.global_batch_size)
        seq = 1 if dlrm else tr.seq_len
        num_micro = -(-tr.global_batch_size // micro)
        if num_micro > 1:
            notes.append(f"measured ONE micro-batch of {micro} (forward, backward, AdamW); the scenario's step "
                         f"accumulates {num_micro} of them: `emulator predict` gives the full step")
        return [Part("train", "train", micro, seq, 0, 1)], dtype, float(micro * (1 if dlrm else seq)), notes
    inf = s.inference
    assert inf is not None
    if dlrm:
        return [Part("prefill", "prefill", inf.batch_size, 1, 0, 1)], dtype, float(inf.batch_size), notes
    kv = inf.input_tokens + inf.output_tokens // 2
    parts = [Part("prefill", "prefill", inf.batch_size, inf.input_tokens, 0, 1),
             Part("decode", "decode", inf.batch_size, 1, kv, inf.output_tokens)]
    return parts, dtype, float(inf.batch_size * inf.output_tokens), notes


def memory_bytes(s: Scenario, model: ModelConfig, dtype: torch.dtype) -> float:
    """Bytes the real run of `model` needs (training: one micro-batch; inference: weights, KV cache, work)."""
    if s.training:
        micro = min(s.training.parallel.microbatch_size, s.training.global_batch_size)
        seq = 1 if isinstance(model, DLRMConfig) else s.training.seq_len
        trace = trace_workload(model, "train", micro, seq, 0, dtype)
        return sum(training_memory_of(model, trace, s.training.precision).values())
    return sum(batch_memory(model, s).values())


def _too_big(s: Scenario, need: float, free: float, what: str) -> EmulatorError:
    return EmulatorError(f"even {what} needs {fmt_bytes(need)}, but {fmt_bytes(free)} is available here. Fix: lower "
                         "the batch size or sequence length in a copy of the scenario, or run on a larger device.",
                         file=s.path)


def scaled(model: ModelConfig, fraction: float) -> ModelConfig:
    """`model` with `fraction` of its layers (DLRM: of each table's rows), at least one."""
    if fraction >= 1:
        return model
    if isinstance(model, DLRMConfig):
        return model.scaled(embedding_rows=tuple(max(1, int(r * fraction)) for r in model.embedding_rows))
    return model.scaled(num_layers=max(1, int(model.num_layers * fraction)))


def _scale_of(model: ModelConfig, original: ModelConfig) -> dict[str, int] | None:
    if isinstance(model, DLRMConfig) and isinstance(original, DLRMConfig):
        total, of = sum(model.embedding_rows), sum(original.embedding_rows)
        return {"embedding_rows": total, "of": of} if total < of else None
    if isinstance(model, DLRMConfig) or isinstance(original, DLRMConfig):
        return None
    return {"num_layers": model.num_layers, "of": original.num_layers} if model.num_layers < original.num_layers \
        else None


def scale_to_fit(s: Scenario, dtype: torch.dtype, free: float, fraction: float = 1.0
                 ) -> tuple[ModelConfig, dict[str, int] | None, str | None]:
    """The scenario's model at `fraction` of its size (`--scale`), or the largest scale model of it that fits
    `free` bytes when that is smaller: (model, scale, note)."""
    model = scaled(s.model, fraction)
    asked = f" (--scale {fraction:g})" if fraction < 1 else ""
    need = memory_bytes(s, model, dtype)
    if need <= free:
        scale = _scale_of(model, s.model)
        if scale is None:
            return model, None, None
        what = "layers" if "num_layers" in scale else "embedding rows"
        return model, scale, f"ran a scale model: {next(iter(scale.values())):,} of {scale['of']:,} {what}{asked}"
    memory = f"(memory: needs {fmt_bytes(need)}, {fmt_bytes(free)} available)"
    if isinstance(model, DLRMConfig):
        # Embedding rows are the only part that grows with the tables; memory is linear in them.
        rows = model.embedding_rows
        rest = memory_bytes(s, model.scaled(embedding_rows=(1,) * len(rows)), dtype)
        share = (free - rest) / (need - rest) if need > rest else 0.0
        while share > 0:
            fitted = model.scaled(embedding_rows=tuple(max(1, int(r * share)) for r in rows))
            if memory_bytes(s, fitted, dtype) <= free:
                total, of = sum(fitted.embedding_rows), sum(s.model.embedding_rows)  # type: ignore[union-attr]
                return fitted, {"embedding_rows": total, "of": of}, (
                    f"ran a scale model: {total:,} of {of:,} embedding rows {memory}")
            share *= 0.9
        raise _too_big(s, rest, free, "the model with one row per table")
    layers = model.num_layers
    one = memory_bytes(s, model.scaled(num_layers=1), dtype)
    if one > free:
        raise _too_big(s, one, free, f"a 1-layer scale model of {model.name}")
    per_layer = (need - one) / max(1, layers - 1)
    k = max(1, min(layers - 1, int((free - one) / per_layer) + 1 if per_layer > 0 else layers - 1))
    while k > 1 and memory_bytes(s, model.scaled(num_layers=k), dtype) > free:
        k -= 1
    of = s.model.num_layers  # type: ignore[union-attr]
    return (model.scaled(num_layers=k), {"num_layers": k, "of": of},
            f"ran a scale model: {k} of {of} layers {memory}")


# ----------------------------------------------------------------------------------------- predicting


def local_prediction(device: torch.device) -> tuple[Any, Any, str | None]:
    """(profile, table, None) that predict this machine, or (None, None, why not) when nothing can."""
    try:
        profile, table = local_calibration(str(device))
        return profile, table, None
    except EmulatorError:
        shipped = profile_for_fingerprint(device_fingerprint(device))
        if shipped is not None:  # a known GPU: its shipped profile with spec or transferred efficiencies
            return shipped, efficiency_for(shipped), None
        return None, None, (f"prediction: not available (no calibration of this {device.type}; run `emulator "
                            f"calibrate --device {device} --quick`)")


def predict_parts(model: ModelConfig, parts: tuple[Part, ...] | list[Part], dtype: torch.dtype, profile: Any,
                  table: Any) -> dict[str, Timing]:
    """Each part's predicted timing (one call) on `profile` with `table`."""
    return {p.name: time_trace(trace_workload(model, p.phase, p.batch_size, p.seq_len, p.kv_len, dtype),
                               profile, table, None) for p in parts}


def _estimating_setup(device: torch.device, profile: Any, table: Any) -> tuple[Any, Any, str]:
    """(profile, table, source) the estimate predicts with: the run's own, at the speed the reference reads now
    (CPU), or for an uncalibrated CPU spec efficiencies at the GEMM and copy rates probed here."""
    if profile is not None:
        if device.type == "cpu" and table.reference_s:
            speed = speed_vs(table.reference_s, [Reference(device).read()])
            return profile, at_speed(table, speed), f"{table.source} at this CPU's speed now ({speed:.2f}x)"
        return profile, table, f"{table.source} ({table.provenance})"
    peaks = probed_peaks(device)
    fingerprint = device_fingerprint(device)
    data = {"fingerprint": fingerprint, "peaks": peaks, "created": "now", "cache_bytes": last_level_cache_bytes(device)}
    rough = dataclasses.replace(SPEC_DEFAULTS, peaks=peaks, synchronous=device.type == "cpu")
    return local_profile(data), rough, "spec efficiencies at this CPU's probed GEMM and copy rates (uncalibrated)"


def _fill_rate_bytes_per_s(device: torch.device, dtype: torch.dtype) -> float:
    """Bytes of model this machine builds per second: each weight is filled twice, by its module's default
    initialisation (uniform) and then with the run's random weights (normal); a 4M-element probe of both."""
    x = torch.empty(1 << 22, dtype=dtype, device=device)
    m = time_callable(lambda: x.uniform_().normal_(), device=device, warmup=1, min_reps=3, max_reps=3,
                      target_time_s=0.0, flush_l2=False)
    return x.numel() * x.element_size() / m.median_s


def _num_calls(step_s: float, target_time_s: float, device: torch.device, profile: bool) -> int:
    """Calls of a step the measurement makes (at most): warm-up, timed repetitions, profiler, power loop."""
    warmup = 1 if step_s > target_time_s else WARMUP
    timed = min(MAX_REPS, max(MIN_REPS, math.ceil(target_time_s / max(step_s, 1e-9))))
    power = max(3, math.ceil(POWER_TIME_S / max(step_s, 1e-9))) if device.type == "cuda" else 0
    return warmup + timed + (PROFILE_STEPS if profile else 0) + power


def estimate(s: Scenario, model: ModelConfig, parts: tuple[Part, ...] | list[Part], dtype: torch.dtype,
             device: torch.device, setup: tuple[Any, Any, str], *, target_time_s: float, profile: bool,
             fill_bytes_per_s: float) -> RunEstimate:
    """The run's wall time on this machine with `setup` from `_estimating_setup`."""
    prof, table, source = setup
    steps = predict_parts(model, parts, dtype, prof, table)
    build_s = memory_bytes(s, model, dtype) / fill_bytes_per_s
    return RunEstimate(parts=tuple(PartEstimate(p.name, steps[p.name].total_s,
                                                _num_calls(steps[p.name].total_s, target_time_s, device, profile),
                                                build_s) for p in parts), source=source)


def plan_run(s: Scenario, device: torch.device, *, free_bytes: float, scale: float = 1.0, target_time_s: float = 1.0,
             profile: bool = True) -> RunPlan:
    """What `run` will execute on `device` within `free_bytes`, at `scale` of the model, and how long it takes."""
    if not 0 < scale <= 1:
        raise EmulatorError(f"is {scale:g}; it must be a fraction of the model in (0, 1], e.g. --scale 0.25.",
                            field="--scale")
    parts, dtype, tokens, notes = plan_parts(s)
    model, scale_model, note = scale_to_fit(s, dtype, free_bytes, scale)
    if note:
        notes.append(note)
    prof, table, why_not = local_prediction(device)
    setup = _estimating_setup(device, prof, table)
    fill = _fill_rate_bytes_per_s(device, dtype)
    est = estimate(s, model, parts, dtype, device, setup, target_time_s=target_time_s, profile=profile,
                   fill_bytes_per_s=fill)
    return RunPlan(parts=tuple(parts), dtype=dtype, tokens_per_step=tokens, model=model, scale_model=scale_model,
                   notes=tuple(notes), free_bytes=free_bytes, profile=prof, table=table, why_no_prediction=why_not,
                   estimate=est, estimating=setup, fill_bytes_per_s=fill)


def suggested_scale(s: Scenario, plan: RunPlan, device: torch.device, limit_s: float, *, target_time_s: float,
                    profile: bool) -> tuple[float, RunEstimate] | None:
    """The largest round `--scale` whose run is estimated within `limit_s` (with that estimate), or None when even
    the smallest scale model takes longer. Time is linear in the layers (rows): the estimate at the smallest
    model and at the planned one give the line."""
    smallest = scaled(s.model, 1e-9)
    kwargs: dict[str, Any] = {"target_time_s": target_time_s, "profile": profile,
                              "fill_bytes_per_s": plan.fill_bytes_per_s}
    small = estimate(s, smallest, plan.parts, plan.dtype, device, plan.estimating, **kwargs)
    if small.total_s > limit_s:
        return None
    size, small_size = _size(plan.model), _size(smallest)
    full = _size(s.model)
    per_unit = (plan.estimate.total_s - small.total_s) / max(size - small_size, 1)
    units = small_size + (limit_s - small.total_s) / per_unit if per_unit > 0 else size
    # Whole layers (rows), written with three decimals rounded up so that `scaled` keeps exactly that many.
    fraction = math.ceil(max(int(min(units, size)), small_size) / full * 1000) / 1000
    return fraction, estimate(s, scaled(s.model, fraction), plan.parts, plan.dtype, device, plan.estimating, **kwargs)


def _size(model: ModelConfig) -> int:
    return sum(model.embedding_rows) if isinstance(model, DLRMConfig) else model.num_layers


__all__ = ["Part", "RunEstimate", "RunPlan", "available_memory_bytes", "memory_bytes", "plan_run", "predict_parts",
           "scale_to_fit", "scaled", "suggested_scale"]
