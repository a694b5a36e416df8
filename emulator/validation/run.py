"""Run a scenario for real on this machine and set the prediction of the same program beside it.

`run_scenario` builds the scenario's model with random weights and inputs on the local CPU or CUDA GPU,
measures each part of its step (`runplan`: one training micro-batch, or a prefill and one decode step) with
`time_callable` (median with p20/p80), samples power where NVML can, takes a per-kernel profile, and predicts
exactly what ran (same shapes, dtype and layer count) for this machine from its calibration. On a CPU the speed
reference is read between the timed steps and the prediction is made at the speed it read (as `validate` does;
`emulator.measure.speed`). A model too large for the free memory, or scaled down by `--scale`, runs as a stated
scale model. Progress (builds, steps, elapsed, ETA) goes to stderr when asked.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from emulator.engine.predict import combine_timings, scale_timing
from emulator.engine.timing import KernelTiming, Timing
from emulator.errors import EmulatorError
from emulator.measure.device import OutOfMemory, parse_device, release_memory
from emulator.measure.machine import device_fingerprint
from emulator.measure.power import PowerReading, steady_power
from emulator.measure.profiler import profile_kernels
from emulator.measure.speed import Reference, around, at_speed, speed_vs
from emulator.measure.timer import time_callable
from emulator.results import ResultsStore
from emulator.scenario import Scenario
from emulator.units import fmt_bytes
from emulator.validation.progress import Progress
from emulator.validation.runplan import (
    MAX_REPS,
    MIN_REPS,
    POWER_TIME_S,
    WARMUP,
    Part,
    RunPlan,
    available_memory_bytes,
    memory_bytes,
    plan_run,
    predict_parts,
    scale_to_fit,
)
from emulator.workloads.config import ModelConfig
from emulator.workloads.program import build_step
from kernels import Cost
from kernels.registry import classify

_memory_bytes = memory_bytes  # the name tests and older callers use
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
    estimated_s: float | None = None  # the run's own wall time as estimated before it started
    speed_vs_calibration: float | None = None  # the CPU's speed during the run over its speed during calibration

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
                "speed_vs_calibration": self.speed_vs_calibration,
            },
            "error": self.error,
            "tokens_per_step": self.tokens_per_step,
            "scale_model": dict(self.scale_model) if self.scale_model else None,
            "notes": list(self.notes),
            "estimated_run_s": self.estimated_s,
        }
        if self.measured_phases:
            out["phases"] = {name: {"measured_s": t.total_s, "p20_s": t.p20_s, "p80_s": t.p80_s,
                                    "predicted_s": self.predicted_phases[name].total_s
                                    if name in self.predicted_phases else None}
                             for name, t in self.measured_phases.items()}
        return out


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


def _measure_part(model: ModelConfig, part: Part, dtype: torch.dtype, device: torch.device, *,
                  target_time_s: float, profile: bool, progress: Progress, reference: Reference | None) -> _Measured:
    kv = f", KV {part.kv_len}" if part.kv_len else ""
    what = f"the model ({model.name}, {part.batch_size} x {part.seq_len} tokens{kv})"
    built = progress.build(part.name, lambda: build_step(
        model, part.phase, batch_size=part.batch_size, seq_len=part.seq_len,  # type: ignore[arg-type]
        kv_len=part.kv_len, dtype=dtype, device=device), what)
    step = progress.counted(built)
    m = time_callable(step, device=device, warmup=WARMUP, min_reps=MIN_REPS, max_reps=MAX_REPS,
                      target_time_s=target_time_s, flush_l2=False,  # a whole step streams far more than any cache
                      between=reference.read if reference else None)
    reading, num_steps = steady_power(step, device, min_time_s=POWER_TIME_S)
    energy = reading.energy_counter_j or reading.energy_j
    rows = tuple(profile_kernels(step, device, top=None)) if profile else ()
    del step, built
    gc.collect()
    if device.type == "cuda":
        release_memory(device)
    timing = Timing(total_s=m.median_s, provenance="measured", error_band=m.spread / 2, device=str(device),
                    device_s=m.median_s, p20_s=m.p20_s, p80_s=m.p80_s)
    return _Measured(timing, rows, reading, energy / num_steps if energy and num_steps else None)


def _power_summary(parts: tuple[Part, ...], measured: list[_Measured], step_s: float
                   ) -> tuple[dict[str, Any], float | None]:
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


def _families(parts: tuple[Part, ...], measured: list[_Measured], device: torch.device) -> tuple[KernelTiming, ...]:
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


# ------------------------------------------------------------------------------------------- the run


def _predicted(plan: RunPlan, speed: float | None, notes: list[str]) -> tuple[Timing | None, dict[str, Timing]]:
    """The prediction of what ran (at the CPU's speed during the run when the reference read it)."""
    if plan.why_no_prediction:
        notes.append(plan.why_no_prediction)
        return None, {}
    table = at_speed(plan.table, speed)
    if speed is not None:
        notes.append(f"predicted at this CPU's speed during the run: {speed:.2f}x its speed during calibration "
                     "(the speed reference read between steps; emulator/measure/speed.py)")
    phases = predict_parts(plan.model, plan.parts, plan.dtype, plan.profile, table)
    return combine_timings([scale_timing(phases[p.name], p.count) for p in plan.parts]), phases


def run_scenario(scenario: Scenario, device: str, *, target_time_s: float = 1.0, profile: bool = True,
                 record: bool = True, store_path: str | None = None, scale: float = 1.0, progress: bool = False,
                 plan: RunPlan | None = None) -> RunResult:
    """Execute the scenario's workload on `device` ('cpu', 'cuda', 'cuda:N') at `scale` of its model (a fraction
    of its layers), measure it and predict it; `plan` from `runplan.plan_run` when the caller made one already;
    `progress` prints the builds and steps with elapsed time and ETA to stderr."""
    dev = parse_device(device)
    if plan is None:
        plan = plan_run(scenario, dev, free_bytes=available_memory_bytes(dev), scale=scale,
                        target_time_s=target_time_s, profile=profile)
    parts, notes = plan.parts, list(plan.notes)
    reporter = Progress(plan.estimate, enabled=progress)
    reference = Reference(dev) if dev.type == "cpu" and plan.table is not None and plan.table.reference_s else None
    first = len(reference.readings) if reference else 0
    if reference:
        reference.read()
    measured: list[_Measured] = []
    for part in parts:
        try:
            measured.append(_measure_part(plan.model, part, plan.dtype, dev, target_time_s=target_time_s,
                                          profile=profile, progress=reporter, reference=reference))
        except OutOfMemory:
            raise EmulatorError(f"ran out of {dev} memory although the estimate fit ({fmt_bytes(plan.free_bytes)} "
                                "planned). Fix: lower the batch size or sequence length in a copy of the scenario, "
                                "or run a smaller --scale.", file=scenario.path) from None
    reporter.done()
    m_phases = {p.name: x.timing for p, x in zip(parts, measured, strict=True)}
    step = combine_timings([scale_timing(x.timing, p.count) for p, x in zip(parts, measured, strict=True)])
    # The step's p20/p80 as the weighted sum of the phases' (exact when the phases' variations move together).
    p20 = sum((x.timing.p20_s or 0.0) * p.count for p, x in zip(parts, measured, strict=True))
    p80 = sum((x.timing.p80_s or 0.0) * p.count for p, x in zip(parts, measured, strict=True))
    power, energy = _power_summary(parts, measured, step.total_s)
    fingerprint = device_fingerprint(dev)
    speed = (speed_vs(plan.table.reference_s, around(reference.readings[first:]))
             if reference and len(reference.readings) > first + 1 else None)
    predicted, p_phases = _predicted(plan, speed, notes)
    timing = dataclasses.replace(step, p20_s=p20, p80_s=p80, energy_j=energy, power=power, notes=tuple(notes),
                                 device=str(fingerprint.get("name", dev)),
                                 kernels=_families(parts, measured, dev))
    top: list[dict[str, Any]] = []
    for part, x in zip(parts, measured, strict=True):
        top += [{**row, "phase": part.name, "per_step_s": row["total_s"] * part.count} for row in x.rows]
    top.sort(key=lambda r: -r["per_step_s"])
    result = RunResult(
        scenario=scenario.path, device=timing.device, mode="training" if scenario.training else "inference",
        model=plan.model.name, measured=timing, predicted=predicted, tokens_per_step=plan.tokens_per_step,
        measured_phases=m_phases if len(parts) > 1 else {}, predicted_phases=p_phases if len(parts) > 1 else {},
        scale_model=plan.scale_model, top_kernels=tuple(top[:20]), notes=tuple(notes),
        estimated_s=plan.estimate.total_s, speed_vs_calibration=speed)
    if record:
        ResultsStore(store_path).record_run("run", fingerprint, {"path": scenario.path, "device": device,
                                                                 "scenario": dict(scenario.raw)}, result.to_json())
    return result


__all__ = ["RunResult", "available_memory_bytes", "kernel_family", "run_scenario", "scale_to_fit"]
