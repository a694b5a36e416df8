"""Run a scenario for real on this machine and set the prediction of the same program beside it.

`run_scenario` builds the scenario's model with random weights and inputs on the local CPU or CUDA GPU,
measures one step with `time_callable` (median with p20/p80), samples power where NVML can, takes a
per-kernel profile, and predicts exactly what ran (same shapes, dtype and layer count) for this machine from
its calibration. What is measured:
- training: ONE micro-batch (forward, backward, AdamW); the scenario's gradient accumulation is not repeated,
  since `emulator predict` already multiplies micro-batches and a CPU would spend minutes on it;
- inference: a prefill of batch x input_tokens and one decode step at the mean context (input + output/2),
  combined as predict does: step = prefill + output_tokens x decode; DLRM: the prefill (forward) only.
A model too large for the free memory runs as a stated scale model: fewer layers (DLRM: fewer embedding rows).
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from emulator.calibrate.local import local_calibration
from emulator.engine.calibration import efficiency_for, profile_for_fingerprint
from emulator.engine.predict import batch_memory, combine_timings, scale_timing, time_trace, training_memory_of
from emulator.engine.timing import KernelTiming, Timing
from emulator.engine.trace import trace_workload, traced_dtype
from emulator.errors import EmulatorError
from emulator.measure.device import OutOfMemory, parse_device, release_memory
from emulator.measure.machine import device_fingerprint, free_memory_bytes
from emulator.measure.power import PowerReading, steady_power
from emulator.measure.profiler import profile_kernels
from emulator.measure.timer import time_callable
from emulator.precision import TRACED_DTYPES
from emulator.results import ResultsStore
from emulator.scenario import Scenario
from emulator.units import fmt_bytes
from emulator.workloads.config import DLRMConfig, ModelConfig
from emulator.workloads.program import build_step
from kernels import Cost
from kernels.registry import classify

# Fractions of the free memory a run may plan for: the CUDA caching allocator and the profiler need headroom;
# on a host the rest of the system (and this process's own torch) needs at least as much again.
CUDA_MEMORY_FRACTION = 0.8
HOST_MEMORY_FRACTION = 0.5
POWER_TIME_S = 2.0  # NVML averages power over about 1 s, so the steady loop lasts at least twice that
# GPU kernel names -> family, first match wins (index_add before index, norm before vectorized).
_KERNEL_FAMILIES = (
    ("optimizer", ("adam", "foreach")), ("scatter", ("index_add", "scatter")),
    ("attention", ("flash", "fmha", "sdpa", "attention")), ("norm", ("norm",)),
    ("softmax", ("softmax", "nll_loss")), ("copy", ("copy", "memcpy", "memset")), ("reduction", ("reduce",)),
    ("embedding", ("embedding", "index", "gather")), ("elementwise", ("elementwise", "vectorized")),
    ("gemm", ("gemm", "nvjet", "cutlass", "xmma", "mm")),
)


@dataclass(frozen=True, slots=True)
class RunResult:
    """A measured step and the prediction of the same program; `to_json` is the `--json` output."""

    scenario: str
    device: str
    mode: str  # training | inference
    model: str
    measured: Timing
    predicted: Timing | None
    tokens_per_step: float
    measured_phases: Mapping[str, Timing] = field(default_factory=dict)
    predicted_phases: Mapping[str, Timing] = field(default_factory=dict)
    scale_model: Mapping[str, int] | None = None
    top_kernels: tuple[Mapping[str, Any], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def error(self) -> float | None:
        """predicted / measured - 1, or None without a prediction."""
        if self.predicted is None or self.measured.total_s <= 0:
            return None
        return self.predicted.total_s / self.measured.total_s - 1

    def to_json(self) -> dict[str, Any]:
        m, p = self.measured, self.predicted
        energy = m.energy_j
        power: Any = dict(m.power) if "reason" not in m.power else str(m.power["reason"]).removeprefix("power: ")
        measured_families = {k.family: k.time_s for k in m.kernels}
        out: dict[str, Any] = {
            "scenario": self.scenario, "device": self.device, "mode": self.mode, "model": self.model,
            "measured": {
                "step_time_s": m.total_s, "p20_s": m.p20_s, "p80_s": m.p80_s,
                "tokens_per_s": self.tokens_per_step / m.total_s if m.total_s > 0 else 0.0,
                "power": power, "energy_per_step_j": energy,
                "energy_per_token_j": energy / self.tokens_per_step if energy is not None else None,
                "kernels": [dict(k) for k in self.top_kernels], "families": measured_families,
            },
            "predicted": None if p is None else {
                "step_time_s": p.total_s, "provenance": p.provenance, "error_band": p.error_band,
                "tokens_per_s": self.tokens_per_step / p.total_s if p.total_s > 0 else 0.0,
                "kernels": {fam: ft.as_dict() for fam, ft in p.by_family().items()},
            },
            "error": self.error,
            "tokens_per_step": self.tokens_per_step,
            "scale_model": dict(self.scale_model) if self.scale_model else None,
            "notes": list(self.notes),
        }
        if self.measured_phases:
            out["phases"] = {name: {"measured_s": t.total_s, "p20_s": t.p20_s, "p80_s": t.p80_s,
                                    "predicted_s": self.predicted_phases[name].total_s
                                    if name in self.predicted_phases else None}
                             for name, t in self.measured_phases.items()}
        return out


# --------------------------------------------------------------------------------------------- device


def available_memory_bytes(device: torch.device) -> float:
    """What a run may plan to use: a fraction of the free device (or host) memory."""
    fraction = CUDA_MEMORY_FRACTION if device.type == "cuda" else HOST_MEMORY_FRACTION
    return free_memory_bytes(device) * fraction


# ------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class _Part:
    """One measured program: a phase of the model at given shapes, weighted `count` times in the step."""

    name: str
    phase: str
    batch_size: int
    seq_len: int
    kv_len: int
    count: int


def _plan(s: Scenario) -> tuple[list[_Part], torch.dtype, float, list[str]]:
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
        return [_Part("train", "train", micro, seq, 0, 1)], dtype, float(micro * (1 if dlrm else seq)), notes
    inf = s.inference
    assert inf is not None
    if dlrm:
        return [_Part("prefill", "prefill", inf.batch_size, 1, 0, 1)], dtype, float(inf.batch_size), notes
    kv = inf.input_tokens + inf.output_tokens // 2
    parts = [_Part("prefill", "prefill", inf.batch_size, inf.input_tokens, 0, 1),
             _Part("decode", "decode", inf.batch_size, 1, kv, inf.output_tokens)]
    return parts, dtype, float(inf.batch_size * inf.output_tokens), notes


def _memory_bytes(s: Scenario, model: ModelConfig, dtype: torch.dtype) -> float:
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


def scale_to_fit(s: Scenario, dtype: torch.dtype, free: float) -> tuple[ModelConfig, dict[str, int] | None, str | None]:
    """The scenario's model, or the largest scale model that fits `free` bytes: (model, scale, note)."""
    model = s.model
    need = _memory_bytes(s, model, dtype)
    if need <= free:
        return model, None, None
    memory = f"(memory: needs {fmt_bytes(need)}, {fmt_bytes(free)} available)"
    if isinstance(model, DLRMConfig):
        # Embedding rows are the only part that grows with the tables; memory is linear in them.
        rows = model.embedding_rows
        rest = _memory_bytes(s, model.scaled(embedding_rows=(1,) * len(rows)), dtype)
        fraction = (free - rest) / (need - rest) if need > rest else 0.0
        while fraction > 0:
            scaled = model.scaled(embedding_rows=tuple(max(1, int(r * fraction)) for r in rows))
            if _memory_bytes(s, scaled, dtype) <= free:
                total = sum(scaled.embedding_rows)
                return scaled, {"embedding_rows": total, "of": sum(rows)}, (
                    f"ran a scale model: {total:,} of {sum(rows):,} embedding rows {memory}")
            fraction *= 0.9
        raise _too_big(s, rest, free, "the model with one row per table")
    layers = model.num_layers
    one = _memory_bytes(s, model.scaled(num_layers=1), dtype)
    if one > free:
        raise _too_big(s, one, free, f"a 1-layer scale model of {model.name}")
    per_layer = (need - one) / max(1, layers - 1)
    k = max(1, min(layers - 1, int((free - one) / per_layer) + 1 if per_layer > 0 else layers - 1))
    while k > 1 and _memory_bytes(s, model.scaled(num_layers=k), dtype) > free:
        k -= 1
    return (model.scaled(num_layers=k), {"num_layers": k, "of": layers},
            f"ran a scale model: {k} of {layers} layers {memory}")


# ------------------------------------------------------------------------------------------ measuring


def kernel_family(name: str, device_type: str) -> str:
    """The kernel family of a profiler row: CPU rows by aten op name, GPU kernels by name fragments."""
    if device_type != "cuda":
        if name.startswith(("aten::", "emulator::")):
            return classify(name.replace("::", ".", 1)) or "other"
        return "other"  # autograd engine, optimizer annotations: host time between ops
    lower = name.lower()
    for family, fragments in _KERNEL_FAMILIES:
        if any(f in lower for f in fragments):
            return family
    return "other"


@dataclass(frozen=True, slots=True)
class _Measured:
    timing: Timing  # one call of the part
    rows: tuple[dict[str, Any], ...]  # profiler rows per call
    power: PowerReading
    energy_per_call_j: float | None


def _measure_part(model: ModelConfig, part: _Part, dtype: torch.dtype, device: torch.device, *,
                  target_time_s: float, profile: bool) -> _Measured:
    step = build_step(model, part.phase, batch_size=part.batch_size, seq_len=part.seq_len,  # type: ignore[arg-type]
                      kv_len=part.kv_len, dtype=dtype, device=device)
    m = time_callable(step, device=device, warmup=2, min_reps=5, max_reps=50, target_time_s=target_time_s,
                              flush_l2=False)  # a whole step streams far more than any cache
    reading, num_steps = steady_power(step, device, min_time_s=POWER_TIME_S)
    energy = reading.energy_counter_j or reading.energy_j
    rows = tuple(profile_kernels(step, device, top=None)) if profile else ()
    del step
    gc.collect()
    if device.type == "cuda":
        release_memory(device)
    timing = Timing(total_s=m.median_s, provenance="measured", error_band=m.spread / 2, device=str(device),
                    device_s=m.median_s, p20_s=m.p20_s, p80_s=m.p80_s)
    return _Measured(timing, rows, reading, energy / num_steps if energy and num_steps else None)


def _power_summary(parts: list[_Part], measured: list[_Measured], step_s: float) -> tuple[dict[str, Any], float | None]:
    readings = [x.power for x in measured]
    if any(r.reason for r in readings):
        return {"reason": next(r.reason for r in readings if r.reason)}, None
    energy = sum((x.energy_per_call_j or 0.0) * p.count for p, x in zip(parts, measured, strict=True))
    peaks = [r.peak_power_w for r in readings if r.peak_power_w is not None]
    clocks = [r.mean_sm_clock_mhz for r in readings if r.mean_sm_clock_mhz is not None]
    temps = [r.max_temperature_c for r in readings if r.max_temperature_c is not None]
    return {"mean_power_w": energy / step_s if step_s > 0 else None, "peak_power_w": max(peaks, default=None),
            "mean_sm_clock_mhz": sum(clocks) / len(clocks) if clocks else None,
            "max_temperature_c": max(temps, default=None), "num_samples": sum(r.num_samples for r in readings),
            "phases": {p.name: r.as_dict() for p, r in zip(parts, readings, strict=True)}}, energy


def _families(parts: list[_Part], measured: list[_Measured], device: torch.device) -> tuple[KernelTiming, ...]:
    times: dict[str, float] = {}
    calls: dict[str, int] = {}
    for part, x in zip(parts, measured, strict=True):
        for row in x.rows:
            fam = kernel_family(row["name"], device.type)
            times[fam] = times.get(fam, 0.0) + row["total_s"] * part.count
            calls[fam] = calls.get(fam, 0) + int(row["calls"]) * part.count
    return tuple(KernelTiming(family=f, op=f, module="", phase="measured", dtype="", shapes=(), count=calls[f],
                              time_s=t, t_math_s=0.0, t_mem_s=0.0, t_overhead_s=0.0, bound="unknown", cost=Cost())
                 for f, t in sorted(times.items(), key=lambda kv: -kv[1]))


# ----------------------------------------------------------------------------------------- predicting


def _local_prediction_setup(device: torch.device) -> tuple[Any, Any, str | None]:
    """(profile, table, None) for this machine, or (None, None, why not) when nothing can predict it."""
    try:
        profile, table = local_calibration(str(device))
        return profile, table, None
    except EmulatorError:
        shipped = profile_for_fingerprint(device_fingerprint(device))
        if shipped is not None:  # a known GPU: its shipped profile with spec or transferred efficiencies
            return shipped, efficiency_for(shipped), None
        return None, None, (f"prediction: not available (no calibration of this {device.type}; run `emulator "
                            f"calibrate --device {device} --quick`)")


def _predict_parts(model: ModelConfig, parts: list[_Part], dtype: torch.dtype, profile: Any, table: Any
                   ) -> dict[str, Timing]:
    return {p.name: time_trace(trace_workload(model, p.phase, p.batch_size, p.seq_len, p.kv_len, dtype),
                               profile, table, None) for p in parts}


# ------------------------------------------------------------------------------------------- the run


def run_scenario(scenario: Scenario, device: str, *, target_time_s: float = 1.0, profile: bool = True,
                 record: bool = True, store_path: str | None = None) -> RunResult:
    """Execute the scenario's workload on `device` ('cpu', 'cuda', 'cuda:N'), measure it and predict it."""
    dev = parse_device(device)
    parts, dtype, tokens, notes = _plan(scenario)
    free = available_memory_bytes(dev)
    model, scale, note = scale_to_fit(scenario, dtype, free)
    if note:
        notes.append(note)
    measured: list[_Measured] = []
    for part in parts:
        try:
            measured.append(_measure_part(model, part, dtype, dev, target_time_s=target_time_s, profile=profile))
        except OutOfMemory:
            raise EmulatorError(f"ran out of {dev} memory although the estimate fit ({fmt_bytes(free)} planned). "
                                "Fix: lower the batch size or sequence length in a copy of the scenario.",
                                file=scenario.path) from None
    m_phases = {p.name: x.timing for p, x in zip(parts, measured, strict=True)}
    step = combine_timings([scale_timing(x.timing, p.count) for p, x in zip(parts, measured, strict=True)])
    # The step's p20/p80 as the weighted sum of the phases' (exact when the phases' variations move together).
    p20 = sum((x.timing.p20_s or 0.0) * p.count for p, x in zip(parts, measured, strict=True))
    p80 = sum((x.timing.p80_s or 0.0) * p.count for p, x in zip(parts, measured, strict=True))
    power, energy = _power_summary(parts, measured, step.total_s)
    fingerprint = device_fingerprint(dev)
    timing = dataclasses.replace(step, p20_s=p20, p80_s=p80, energy_j=energy, power=power, notes=tuple(notes),
                                 device=str(fingerprint.get("name", dev)),
                                 kernels=_families(parts, measured, dev))
    top: list[dict[str, Any]] = []
    for part, x in zip(parts, measured, strict=True):
        top += [{**row, "phase": part.name, "per_step_s": row["total_s"] * part.count} for row in x.rows]
    top.sort(key=lambda r: -r["per_step_s"])
    prof, table, why_not = _local_prediction_setup(dev)
    predicted, p_phases = None, {}
    if why_not:
        notes.append(why_not)
    else:
        p_phases = _predict_parts(model, parts, dtype, prof, table)
        predicted = combine_timings([scale_timing(p_phases[p.name], p.count) for p in parts])
    result = RunResult(
        scenario=scenario.path, device=timing.device, mode="training" if scenario.training else "inference",
        model=model.name, measured=timing, predicted=predicted, tokens_per_step=tokens,
        measured_phases=m_phases if len(parts) > 1 else {}, predicted_phases=p_phases if len(parts) > 1 else {},
        scale_model=scale, top_kernels=tuple(top[:20]), notes=tuple(notes))
    if record:
        ResultsStore(store_path).record_run("run", fingerprint, {"path": scenario.path, "device": device,
                                                                 "scenario": dict(scenario.raw)}, result.to_json())
    return result


__all__ = ["RunResult", "available_memory_bytes", "kernel_family", "run_scenario", "scale_to_fit"]
