"""Predict one scenario on one device: trace the workload, time its kernels on the profile, add memory.

Conventions (also in the README):
- `flops_per_step` counts *model* FLOPs: the matrix FLOPs of every GEMM and of fused attention (forward
  2*pairs*(Dqk+Dv) per head; backward twice that, *without* the score recompute FlashAttention performs).
  Vector FLOPs (norms, softmax, elementwise) are excluded, as in the Megatron/PaLM MFU convention.
  `hardware_flops_per_step` adds the attention recompute and the vector FLOPs.
- MFU = flops_per_step / (step_time_s * num_devices * dense matrix peak of the precision's dtype).
- Training step: forward and backward of every micro-batch, then one AdamW step.
- Inference: one batch of `batch_size` requests: a prefill of `input_tokens`, then `output_tokens` decode
  steps; decode is traced at the mean context length (input + output/2), exact for attention's linear cost.
  `step_time_s` is that batch's end-to-end time and `tokens_per_s` counts output tokens (MLPerf convention).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from emulator.engine.calibration import efficiency_for
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.memory import ALLOCATOR_ALLOWANCE, inference_memory, training_memory
from emulator.engine.roofline import predict_calls
from emulator.engine.timing import Timing
from emulator.engine.trace import Trace, trace_workload
from emulator.errors import EmulatorError
from emulator.hardware import DeviceProfile
from emulator.scenario import Scenario
from emulator.units import DTYPE_BYTES
from emulator.workloads.config import DLRMConfig
from kernels import KernelCall

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True, slots=True)
class Prediction:
    """What `emulator predict` reports for one scenario."""

    scenario: Scenario
    timing: Timing
    step_time_s: float
    tokens_per_step: float
    flops_per_step: float
    hardware_flops_per_step: float
    memory: Mapping[str, float]
    fits: bool
    unknown_ops: Mapping[str, int]
    phases: Mapping[str, Timing] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def num_devices(self) -> int:
        return self.scenario.num_devices

    @property
    def peak_flops_per_s(self) -> float:
        s = self.scenario
        precision = s.training.precision if s.training else s.inference.precision  # type: ignore[union-attr]
        dtype = precision if precision in s.device.matrix_flops_per_s else "bf16"
        return s.device.matrix_peak(dtype)

    def to_json(self) -> dict[str, Any]:
        s = self.scenario
        t = self.step_time_s
        tokens_per_s = self.tokens_per_step / t if t > 0 else 0.0
        per_device = self.flops_per_step / t / self.num_devices if t > 0 else 0.0
        band = self.timing.error_band
        out: dict[str, Any] = {
            "scenario": s.path,
            "model": s.model.name,
            "device": s.device.name,
            "num_devices": self.num_devices,
            "mode": "training" if s.training else "inference",
            "step_time_s": t,
            "tokens_per_step": self.tokens_per_step,
            "tokens_per_s": tokens_per_s,
            "tokens_per_s_per_device": tokens_per_s / self.num_devices,
            "flops_per_step": self.flops_per_step,
            "flops_convention": "model FLOPs: GEMM + fused-attention matrix FLOPs, attention backward = 2x forward "
                                "(no recompute); vector FLOPs excluded",
            "hardware_flops_per_step": self.hardware_flops_per_step,
            "model_flops_per_s_per_device": per_device,
            "mfu": per_device / self.peak_flops_per_s,
            "memory_per_device_bytes": self.memory["total"],
            "memory_breakdown": dict(self.memory),
            "memory_capacity_bytes": s.device.memory_bytes,
            "fits": self.fits,
            "provenance": self.timing.provenance,
            "error_band": band,
            "step_time_range_s": [t * (1 - band), t * (1 + band)],
            "bound": self.timing.bound,
            "unknown_ops": dict(self.unknown_ops),
            "kernels": {fam: ft.as_dict() for fam, ft in self.timing.by_family().items()},
            "notes": list(self.notes),
        }
        out["figures"] = figures_of(out, self.phases)
        if self.phases:
            out["phases"] = {name: {"time_s": p.total_s, "provenance": p.provenance} for name, p in self.phases.items()}
        if s.inference and "decode" in self.phases:
            out["prefill_s"] = self.phases["prefill"].total_s
            out["decode_step_s"] = self.phases["decode"].total_s
        elif s.inference:
            out["batch_latency_s"] = self.phases["prefill"].total_s
        return out


# Figures derived from counts alone (FLOPs, bytes of state) are exact for the traced program.
_COUNTED = {"flops_per_step", "hardware_flops_per_step", "tokens_per_step"}
_TIMED = {"step_time_s", "tokens_per_s", "tokens_per_s_per_device", "model_flops_per_s_per_device", "mfu",
          "prefill_s", "decode_step_s", "batch_latency_s"}


def figure(value: float, provenance: str, error_band: float) -> dict[str, Any]:
    """One reported number with where it came from and its fractional error band."""
    return {"value": value, "provenance": provenance, "error_band": error_band}


def scale_timing(timing: Timing, k: float) -> Timing:
    """The timing of `k` repetitions (kernel counts, times and costs multiplied)."""
    kernels = tuple(dataclasses.replace(kt, count=int(kt.count * k), time_s=kt.time_s * k, cost=kt.cost * k)
                    for kt in timing.kernels)
    return dataclasses.replace(timing, kernels=kernels, total_s=timing.total_s * k, device_s=timing.device_s * k,
                               host_s=timing.host_s * k)


def combine_timings(parts: list[Timing]) -> Timing:
    """Timings that run one after another, as one (provenance and error band of the first)."""
    first = parts[0]
    return dataclasses.replace(
        first,
        kernels=tuple(k for p in parts for k in p.kernels),
        total_s=sum(p.total_s for p in parts),
        device_s=sum(p.device_s for p in parts),
        host_s=sum(p.host_s for p in parts),
    )


def model_flops(trace: Trace) -> float:
    """Model FLOPs of a trace: matrix FLOPs of GEMMs and attention (no recompute)."""
    return sum(c.total.matrix_flops for c in trace.calls)


def hardware_flops(trace: Trace) -> float:
    return sum(c.total.matrix_flops + c.total.recompute_flops + c.total.vector_flops for c in trace.calls)


def time_trace(trace: Trace, device: DeviceProfile, table: EfficiencyTable, precision: str | None,
               scale_phases: Mapping[str, float] | None = None) -> Timing:
    """Roofline timing of a trace; `scale_phases` repeats phases (micro-batches) before summing."""
    calls: list[KernelCall] = []
    for c in trace.calls:
        k = (scale_phases or {}).get(c.phase, 1)
        calls.append(dataclasses.replace(c, count=c.count * k) if k != 1 else c)
    return predict_calls(calls, device, table, precision)


def _torch_dtype(precision: str) -> torch.dtype:
    # Low-precision GEMMs are traced in bf16 and re-costed by the roofline in the requested dtype.
    return TORCH_DTYPES.get(precision, torch.bfloat16)


def _check_plan(s: Scenario) -> None:
    parallel = (s.training or s.inference).parallel  # type: ignore[union-attr]
    used = parallel.tp * parallel.pp * parallel.cp * (parallel.dp if s.training else 1)
    if s.num_devices != 1 or used != 1:
        what = "transformers" if s.training else "transformer training"
        raise EmulatorError(
            f"this path predicts one device (num_devices {s.num_devices}, tp*pp*dp*cp = {used}); plans over several "
            f"devices are predicted for {what} by the cluster model. Fix: set hardware.num_devices: 1 and "
            "parallel sizes of 1.",
            file=s.path,
            field="hardware.num_devices",
        )


def _check_dtype(s: Scenario, precision: str) -> None:
    if precision in ("fp8", "fp4", "int8") and precision not in s.device.matrix_flops_per_s:
        have = [d for d in ("fp8", "fp4", "int8", "bf16") if d in s.device.matrix_flops_per_s]
        section = "training" if s.training else "inference"
        raise EmulatorError(
            f"'{precision}' is not supported by {s.device.name} (it has {', '.join(have)}). Fix: pick one of those "
            "or a device with this precision.",
            file=s.path,
            field=f"{section}.precision",
        )


def predict(s: Scenario, table: EfficiencyTable | None = None) -> Prediction:
    """Predict the step time, throughput, FLOPs and memory of a scenario on one device (see `predict_json`)."""
    _check_plan(s)
    table = table or efficiency_for(s.device)
    if s.training:
        return _predict_training(s, table)
    return _predict_inference(s, table)


def figures_of(out: Mapping[str, Any], phases: Mapping[str, Timing] | None = None) -> dict[str, dict[str, Any]]:
    """Each reported number with its provenance and error band (timed figures share the step's)."""
    figs = {}
    for key in sorted(_TIMED & set(out)):
        phase = {"ttft_s": "prefill", "tpot_s": "decode"}.get(key)
        timing = (phases or {}).get(phase) if phase else None
        provenance = timing.provenance if timing else out["provenance"]
        band = timing.error_band if timing else out["error_band"]
        figs[key] = figure(out[key], provenance, band)
    for key in sorted(_COUNTED & set(out)):
        figs[key] = figure(out[key], "traced", 0.0)
    # Memory: counted from the program, plus an allocator allowance whose size is the uncertainty.
    figs["memory_per_device_bytes"] = figure(out["memory_per_device_bytes"], "traced", ALLOCATOR_ALLOWANCE)
    for key in ("time_to_train_s", "device_hours", "effective_time_to_train_s"):
        if out.get(key) is not None:
            figs[key] = figure(out[key], out["provenance"], out["error_band"])
    return figs


def _predict_training(s: Scenario, table: EfficiencyTable) -> Prediction:
    tr = s.training
    assert tr is not None
    _check_dtype(s, tr.precision)
    micro = min(tr.parallel.microbatch_size, tr.global_batch_size)
    if tr.global_batch_size % micro:
        raise EmulatorError(
            f"global_batch_size {tr.global_batch_size} is not a multiple of microbatch_size {micro}. Fix: make it one.",
            file=s.path, field="training.parallel.microbatch_size")
    num_micro = tr.global_batch_size // micro
    trace = trace_workload(s.model, "train", micro, tr.seq_len, 0, _torch_dtype(tr.precision))
    scale = {"forward": num_micro, "backward": num_micro}
    timing = time_trace(trace, s.device, table, tr.precision, scale)
    flops = model_flops(trace) * num_micro - sum(c.total.matrix_flops for c in trace.calls if c.phase == "optimizer") * (num_micro - 1)
    memory = training_memory(s.model, trace, tr.precision)
    tokens = tr.global_batch_size * (1 if isinstance(s.model, DLRMConfig) else tr.seq_len)
    notes = []
    if num_micro > 1:
        notes.append(f"{num_micro} micro-batches of {micro} sequence(s) accumulate gradients before one AdamW step")
    return Prediction(
        scenario=s, timing=timing, step_time_s=timing.total_s, tokens_per_step=tokens, flops_per_step=flops,
        hardware_flops_per_step=hardware_flops(trace) * num_micro, memory=memory,
        fits=memory["total"] <= s.device.memory_bytes, unknown_ops=trace.unknown_ops, notes=tuple(notes),
    )


def _predict_inference(s: Scenario, table: EfficiencyTable) -> Prediction:
    inf = s.inference
    assert inf is not None
    _check_dtype(s, inf.precision)
    dtype = _torch_dtype(inf.precision)
    b = inf.batch_size
    prefill = trace_workload(s.model, "prefill", b, inf.input_tokens, 0, dtype)
    t_prefill = time_trace(prefill, s.device, table, inf.precision)
    phases = {"prefill": t_prefill}
    parts = [t_prefill]
    flops = model_flops(prefill)
    hw = hardware_flops(prefill)
    unknown = dict(prefill.unknown_ops)
    if isinstance(s.model, DLRMConfig):
        tokens = float(b)
    else:
        kv = inf.input_tokens + inf.output_tokens // 2
        decode = trace_workload(s.model, "decode", b, 1, kv, dtype)
        t_decode = time_trace(decode, s.device, table, inf.precision)
        phases["decode"] = t_decode
        parts.append(scale_timing(t_decode, inf.output_tokens))
        flops += model_flops(decode) * inf.output_tokens
        hw += hardware_flops(decode) * inf.output_tokens
        for op, n in decode.unknown_ops.items():
            unknown[op] = unknown.get(op, 0) + n
        tokens = float(b * inf.output_tokens)
    timing = combine_timings(parts)
    memory = inference_memory(s.model, prefill, inf)
    return Prediction(
        scenario=s, timing=timing, step_time_s=timing.total_s, tokens_per_step=tokens, flops_per_step=flops,
        hardware_flops_per_step=hw, memory=memory, fits=memory["total"] <= s.device.memory_bytes,
        unknown_ops=unknown, phases=phases,
    )


__all__ = ["DTYPE_BYTES", "Prediction", "predict"]
