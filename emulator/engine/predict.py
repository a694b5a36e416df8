"""Predict one scenario on one device: trace the workload, time its kernels on the profile, add memory.

- Training step: forward and backward of every micro-batch, then one AdamW step (transformers on any plan go
  through `cluster.training`; this path serves the recommender and direct single-device use).
- Inference: one batch of `batch_size` requests: a prefill of `input_tokens`, then `output_tokens` decode
  steps; decode is traced at the mean context length (input + output/2), exact for attention's linear cost.
  `step_time_s` is that batch's end-to-end time and `tokens_per_step` counts output tokens (MLPerf convention).
Conventions of the reported figures are in `engine.prediction`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from emulator.engine.calibration import efficiency_for
from emulator.engine.calls import Trace
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.memory import (
    ALLOCATOR_ALLOWANCE,
    dlrm_workspace_bytes,
    inference_memory,
    kv_bytes_per_token,
    serving_weight_bytes,
    training_memory,
    workspace_bytes,
)
from emulator.engine.prediction import InferencePrediction, Memory, Prediction
from emulator.engine.roofline import combined_band, predict_calls
from emulator.engine.stack import engine_trace, engine_view
from emulator.engine.timing import Timing
from emulator.engine.trace import trace_workload
from emulator.errors import EmulatorError
from emulator.hardware import DeviceProfile
from emulator.precision import activation_dtype, kv_dtype
from emulator.scenario import Scenario
from emulator.stacks import StackProfile
from emulator.workloads.config import DLRMConfig, ModelConfig
from kernels import KernelCall


def scale_timing(timing: Timing, k: float) -> Timing:
    """The timing of `k` repetitions (kernel counts, times and costs multiplied)."""
    kernels = tuple(dataclasses.replace(kt, count=int(kt.count * k), time_s=kt.time_s * k, cost=kt.cost * k,
                                        main_memory_bytes=kt.main_memory_bytes * k) for kt in timing.kernels)
    return dataclasses.replace(timing, kernels=kernels, total_s=timing.total_s * k, device_s=timing.device_s * k,
                               host_s=timing.host_s * k)


def combine_timings(parts: list[Timing]) -> Timing:
    """Timings that run one after another, as one: times add, the error band is their time-weighted mean (as
    `roofline.error_band` weights kernels), provenance is the first's."""
    first = parts[0]
    return dataclasses.replace(
        first,
        kernels=tuple(k for p in parts for k in p.kernels),
        total_s=sum(p.total_s for p in parts),
        device_s=sum(p.device_s for p in parts),
        host_s=sum(p.host_s for p in parts),
        error_band=combined_band(((p.error_band, p.device_s) for p in parts), first.error_band),
    )


def model_flops(calls: tuple[KernelCall, ...] | list[KernelCall]) -> float:
    """Model FLOPs of kernel calls: matrix FLOPs of GEMMs and attention (no recompute)."""
    return sum(c.total.matrix_flops for c in calls)


def hardware_flops(calls: tuple[KernelCall, ...] | list[KernelCall]) -> float:
    """FLOPs the device executes: matrix, recompute and vector."""
    return sum(c.total.matrix_flops + c.total.recompute_flops + c.total.vector_flops for c in calls)


def time_trace(trace: Trace, device: DeviceProfile, table: EfficiencyTable, precision: str | None,
               scale_phases: Mapping[str, float] | None = None) -> Timing:
    """Roofline timing of a trace; `scale_phases` repeats phases (micro-batches) before summing."""
    calls: list[KernelCall] = []
    for c in trace.calls:
        k = (scale_phases or {}).get(c.phase, 1)
        calls.append(dataclasses.replace(c, count=int(c.count * k)) if k != 1 else c)
    return predict_calls(calls, device, table, precision)


def check_precision(s: Scenario) -> None:
    """A low precision the device has no matrix format for is an error naming what it has."""
    section = s.training or s.inference
    assert section is not None  # load_scenario guarantees exactly one
    s.device.check_precision(section.precision, file=s.path,
                             field=f"{'training' if s.training else 'inference'}.precision")


def check_context(s: Scenario, model: ModelConfig, input_tokens: int, output_tokens: int) -> None:
    """A request longer than the model's context window is an error, as a serving engine would refuse it."""
    if isinstance(model, DLRMConfig) or input_tokens + output_tokens <= model.max_seq_len:
        return
    raise EmulatorError(
        f"input_tokens + output_tokens = {input_tokens + output_tokens} exceeds {model.name}'s context of "
        f"{model.max_seq_len} tokens (max_position_embeddings). Fix: shorten the request (e.g. input_tokens: "
        f"{max(model.max_seq_len - output_tokens, 1)}) or use a model with a longer context.", file=s.path,
        field="inference.input_tokens")


def _check_one_device(s: Scenario) -> None:
    parallel = (s.training or s.inference).parallel  # type: ignore[union-attr]
    used = parallel.tp * parallel.pp * parallel.cp * (parallel.dp if s.training else 1)
    if s.num_devices != 1 or used != 1:
        what = "transformers" if s.training else "transformer training"
        raise EmulatorError(
            f"this path predicts one device (num_devices {s.num_devices}, tp*pp*dp*cp = {used}); plans over several "
            f"devices are predicted for {what} by the cluster model. Fix: set hardware.num_devices: 1 and "
            "parallel sizes of 1.", file=s.path, field="hardware.num_devices")


def predict(s: Scenario, table: EfficiencyTable | None = None) -> Prediction:
    """Predict the step time, throughput, FLOPs and memory of a scenario on one device."""
    _check_one_device(s)
    table = table or efficiency_for(s.device)
    if s.training:
        return _predict_training(s, table)
    return predict_batch(s, table)


def training_memory_of(model: ModelConfig, trace: Trace, precision: str) -> dict[str, float]:
    """One device's training memory: the whole model's state and the activations autograd saved while tracing."""
    sparse = float(model.num_embedding_params()) if isinstance(model, DLRMConfig) else 0.0
    return training_memory(dense_params=float(model.num_params()) - sparse, sparse_params=sparse,
                           precision=precision, activations=float(trace.meta.get("activation_bytes", 0.0)))


def _common(s: Scenario, timing: Timing, parts: dict[str, float]) -> dict[str, object]:
    return {
        "scenario": s.path, "model": s.model.name, "device": s.device.name,
        "system": s.system.name if s.system else None, "num_devices": s.num_devices,
        "step_time_s": timing.total_s, "provenance": timing.provenance, "error_band": timing.error_band,
        "bound": timing.bound, "kernels": timing.by_family(),
        "memory": Memory(parts=parts, capacity_bytes=s.device.memory_bytes, error_band=ALLOCATOR_ALLOWANCE),
        "assumed": getattr(s.model, "assumed", {}),
    }


def _predict_training(s: Scenario, table: EfficiencyTable) -> Prediction:
    tr = s.training
    assert tr is not None
    check_precision(s)
    micro = min(tr.parallel.microbatch_size, tr.global_batch_size)
    if tr.global_batch_size % micro:
        raise EmulatorError(
            f"global_batch_size {tr.global_batch_size} is not a multiple of microbatch_size {micro}. Fix: make it one.",
            file=s.path, field="training.parallel.microbatch_size")
    num_micro = tr.global_batch_size // micro
    trace = trace_workload(s.model, "train", micro, tr.seq_len, 0, activation_dtype(tr.precision))
    timing = time_trace(trace, s.device, table, tr.precision, {"forward": num_micro, "backward": num_micro})
    optimizer = [c for c in trace.calls if c.phase == "optimizer"]
    flops = model_flops(trace.calls) * num_micro - model_flops(optimizer) * (num_micro - 1)
    tokens = tr.global_batch_size * (1 if isinstance(s.model, DLRMConfig) else tr.seq_len)
    notes = []
    if num_micro > 1:
        notes.append(f"{num_micro} micro-batches of {micro} sequence(s) accumulate gradients before one AdamW step")
    return Prediction(
        **_common(s, timing, training_memory_of(s.model, trace, tr.precision)),  # type: ignore[arg-type]
        tokens_per_step=float(tokens), flops_per_step=flops,
        hardware_flops_per_step=hardware_flops(trace.calls) * num_micro,
        peak_flops_per_s=s.device.mfu_peak(tr.precision), unknown_ops=trace.unknown_ops, notes=tuple(notes),
    )


def batch_memory(model: ModelConfig, s: Scenario) -> dict[str, float]:
    """One device's memory for one batch of the scenario's requests: weights, the batch's KV cache at full
    length, the prefill's workspace."""
    inf = s.inference
    assert inf is not None
    b = inf.batch_size
    weights = serving_weight_bytes(model, inf.precision)
    if isinstance(model, DLRMConfig):
        return inference_memory(weights=weights, workspace=dlrm_workspace_bytes(model, b))
    kv = b * (inf.input_tokens + inf.output_tokens) * kv_bytes_per_token(model, kv_dtype(inf.precision,
                                                                                          inf.kv_precision))
    return inference_memory(weights=weights, kv_cache=kv, workspace=workspace_bytes(model, b * inf.input_tokens, b))


def predict_batch(s: Scenario, table: EfficiencyTable | None = None,
                  engine: StackProfile | None = None) -> InferencePrediction:
    """One batch of `batch_size` requests of an inference scenario on one device of its kind: the eager program
    (what `emulator run` executes), or with a serving `engine` (a transformer's), its kernels as the engine runs them
    (`engine_trace`, `engine_view`: the serving model's step view)."""
    inf = s.inference
    assert inf is not None
    check_precision(s)
    check_context(s, s.model, inf.input_tokens, inf.output_tokens)
    table = table or efficiency_for(s.device)
    device = s.device
    if isinstance(s.model, DLRMConfig) or (engine is not None and engine.name == "eager"):
        engine = None  # the serving engines are LLM stacks; the eager one runs the traced program as it is
    if engine is not None:
        device, table = engine_view(device, table, engine)  # no CUDA graphs: every kernel pays a host launch

    def as_run(trace: Trace) -> Trace:
        return trace if engine is None else engine_trace(trace, engine)

    dtype = activation_dtype(inf.precision)
    b = inf.batch_size
    prefill = as_run(trace_workload(s.model, "prefill", b, inf.input_tokens, 0, dtype))
    t_prefill = time_trace(prefill, device, table, inf.precision)
    phases = {"prefill": t_prefill}
    parts = [t_prefill]
    flops, hardware = model_flops(prefill.calls), hardware_flops(prefill.calls)
    unknown = dict(prefill.unknown_ops)
    tokens = float(b)
    if not isinstance(s.model, DLRMConfig):
        decode = as_run(trace_workload(s.model, "decode", b, 1, inf.input_tokens + inf.output_tokens // 2, dtype))
        t_decode = time_trace(decode, device, table, inf.precision)
        phases["decode"] = t_decode
        parts.append(scale_timing(t_decode, inf.output_tokens))
        flops += model_flops(decode.calls) * inf.output_tokens
        hardware += hardware_flops(decode.calls) * inf.output_tokens
        for op, n in decode.unknown_ops.items():
            unknown[op] = unknown.get(op, 0) + n
        tokens = float(b * inf.output_tokens)
    timing = combine_timings(parts)
    one_device = dataclasses.replace(s, num_devices=1)
    return InferencePrediction(
        **_common(one_device, timing, batch_memory(s.model, s)),  # type: ignore[arg-type]
        tokens_per_step=tokens, flops_per_step=flops, hardware_flops_per_step=hardware,
        peak_flops_per_s=s.device.mfu_peak(inf.precision), unknown_ops=unknown, phases=phases, batch_size=b,
        peak_memory_bytes_per_s=s.device.memory_bandwidth_bytes_per_s,
    )


__all__ = ["check_context", "check_precision", "combine_timings", "hardware_flops", "model_flops",
           "predict", "predict_batch", "scale_timing", "time_trace", "training_memory_of"]
