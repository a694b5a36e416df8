"""Predict a training scenario on a cluster: plan, per-rank program, the one training step, memory, goodput.

Figures (conventions as in `emulator.engine.prediction`, per step, whole cluster):
- flops_per_step: model FLOPs of the unsharded model (GEMM + fused attention matrix FLOPs, causal, backward
  = 2x forward, no recompute) times the micro-batches of all replicas; mfu = flops / (step * devices * peak).
- mfu_without_attention: the same without attention FLOPs (the 6*N*T convention).
- hardware_flops_per_step / hfu: what the ranks execute, recompute included (FlashAttention's backward score
  recompute, full-recompute forwards, vector FLOPs).
Under LoRA (`training.task: lora`) the model is traced with its adapters on a frozen base, so model FLOPs are the
forward, the activation gradients and the adapters' GEMMs: no weight gradient of a base weight.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar

from emulator.cluster.goodput import Goodput, goodput
from emulator.cluster.layout import Layout, plan_layout
from emulator.cluster.memory import plan_memory
from emulator.cluster.network import Network
from emulator.cluster.plan import Plan, Policy, check_plan, plan_from, plan_warnings, recomputed_modules
from emulator.cluster.shard import (
    RankProgram,
    layers_per_stage,
    rank_program,
    rank_shard,
    stage_params,
    trainable_params,
)
from emulator.cluster.step import Overlap, StepBreakdown, stage_times, training_step
from emulator.engine.calibration import efficiency_for
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.memory import ALLOCATOR_ALLOWANCE
from emulator.engine.predict import check_precision
from emulator.engine.prediction import Figure, Memory, Prediction
from emulator.engine.stack import stack_table
from emulator.engine.timing import FamilyTiming, family_totals
from emulator.engine.trace import trace_workload
from emulator.errors import EmulatorError
from emulator.hardware import DeviceProfile, SystemProfile, default_system
from emulator.precision import activation_dtype
from emulator.scenario import Scenario, Training
from emulator.stacks import StackProfile, stack_of
from emulator.units import HOUR_S
from emulator.workloads.config import TransformerConfig
from emulator.workloads.lora import LoraConfig

FLOPS_CONVENTION = ("model FLOPs of the unsharded model: GEMM + fused-attention matrix FLOPs (causal), attention "
                    "backward = 2x forward, no recompute; vector FLOPs excluded; summed over all micro-batches")
NO_SINGLE_FIX = "no single change fits: add devices or use a device with more memory"


@functools.lru_cache(maxsize=256)
def model_flops_per_microbatch(model: TransformerConfig, micro: int, seq: int, precision: str) -> tuple[float, float]:
    """(model FLOPs, attention FLOPs) of one micro-batch of the unsharded model, forward and backward."""
    trace = trace_workload(model, "train", micro, seq, 0, activation_dtype(precision))
    total = sum(c.total.matrix_flops for c in trace.calls if c.phase != "optimizer")
    attention = sum(c.total.matrix_flops for c in trace.calls if c.family == "attention")
    return total, attention


def memory_of(model: TransformerConfig, plan: Plan, precision: str,
              selective: Policy = "attention_core") -> dict[str, float]:
    """Bytes per device of `plan` by component (the busiest pipeline rank); `selective`: what the stack's
    `recompute: selective` reruns (`recompute.selective`)."""
    shard = rank_shard(model, plan)
    params, experts = stage_params(model, shard, plan)
    return plan_memory(model, plan, stage_params=params, expert_params=experts, precision=precision,
                       num_layers=layers_per_stage(model, plan),
                       trainable=trainable_params(model, shard, plan) if model.lora else None, selective=selective)


def trained_model(model: TransformerConfig, training: Training) -> TransformerConfig:
    """The model a training section trains: with task: lora its adapters on the frozen base (the section's, or
    LoRA's defaults), else as given."""
    if training.task != "lora" or model.lora is not None:
        return model
    return dataclasses.replace(model, lora=training.lora or LoraConfig())


@dataclass(frozen=True, slots=True, kw_only=True)
class FitAdvice:
    """By how much a plan misses the device memory, and single changes that would make it fit."""

    over_by_bytes: float
    over_by_fraction: float
    fixes: tuple[tuple[str, float], ...]  # (the change, memory per device with it)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"over_by_bytes": self.over_by_bytes, "over_by_fraction": self.over_by_fraction,
                               "fixes": [{"change": c, "memory_per_device_bytes": b} for c, b in self.fixes]}
        if not self.fixes:
            out["advice"] = NO_SINGLE_FIX
        return out


def fit_advice(model: TransformerConfig, plan: Plan, precision: str, capacity: float, total: float,
               selective: Policy = "attention_core") -> FitAdvice:
    """Single changes to the plan (ZeRO, recompute, sequence parallelism, micro-batch, more pp or tp for less
    dp) that make it fit `capacity`, at most six."""
    options: list[tuple[str, Plan]] = []
    if plan.dp * plan.cp > 1 and not plan.fsdp:
        options += [(f"zero: {stage}", dataclasses.replace(plan, zero=stage))
                    for stage in range(plan.shard_stage + 1, 4)]
    if plan.recompute != "full":
        options.append(("recompute: full", dataclasses.replace(plan, recompute="full")))
    if plan.tp > 1 and not plan.sequence_parallel:
        options.append(("sequence_parallel: true", dataclasses.replace(plan, sequence_parallel=True)))
    if plan.microbatch_size > 1:
        options.append(("microbatch_size: 1", dataclasses.replace(plan, microbatch_size=1)))
    for k in (2, 4, 8):
        if plan.dp % k == 0:
            options.append((f"pp: {plan.pp * k}, dp: {plan.dp // k}",
                            dataclasses.replace(plan, pp=plan.pp * k, dp=plan.dp // k, virtual_stages=1)))
            options.append((f"tp: {plan.tp * k}, dp: {plan.dp // k}",
                            dataclasses.replace(plan, tp=plan.tp * k, dp=plan.dp // k)))
    fixes = []
    for label, candidate in options:
        try:
            check_plan(model, candidate, candidate.num_devices)
        except EmulatorError:
            continue
        need = sum(memory_of(model, candidate, precision, selective).values())
        if need <= capacity:
            fixes.append((label, need))
    return FitAdvice(over_by_bytes=total - capacity, over_by_fraction=total / capacity - 1, fixes=tuple(fixes[:6]))


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingPrediction(Prediction):
    """A training step of a transformer on a cluster under a plan."""

    plan: Plan
    step: StepBreakdown
    attention_flops_per_step: float
    total_tokens: float | None
    goodput: Goodput
    num_layers: int  # on the busiest stage
    stage_params: float
    fit_advice: FitAdvice | None = None
    layout: Layout | None = None  # ranks on nodes and collectives on links (None: no system profile)

    mode: ClassVar[str] = "training"
    flops_convention: ClassVar[str] = FLOPS_CONVENTION

    @property
    def hfu(self) -> float:
        t, n = self.step_time_s, self.num_devices
        return self.hardware_flops_per_step / t / n / self.peak_flops_per_s if t > 0 else 0.0

    @property
    def mfu_without_attention(self) -> float:
        t, n = self.step_time_s, self.num_devices
        return (self.flops_per_step - self.attention_flops_per_step) / t / n / self.peak_flops_per_s if t > 0 else 0.0

    @property
    def time_to_train_s(self) -> float | None:
        """Ideal time to train on `total_tokens`: steps times step time, no failures."""
        tokens_per_s = self.tokens_per_s
        return self.total_tokens / tokens_per_s if self.total_tokens and tokens_per_s else None

    @property
    def device_hours(self) -> float | None:
        ttt = self.time_to_train_s
        return ttt * self.num_devices / HOUR_S if ttt else None

    def _figures(self) -> dict[str, Figure]:
        values = {"time_to_train_s": self.time_to_train_s, "device_hours": self.device_hours,
                  "effective_time_to_train_s": self.goodput.effective_time_s}
        return {key: self.timed(v) for key, v in values.items() if v is not None}

    def _json(self) -> dict[str, Any]:
        t, n = self.step_time_s, self.num_devices
        s = self.step
        out: dict[str, Any] = {
            "hardware_flops_per_s_per_device": self.hardware_flops_per_step / t / n if t > 0 else 0.0,
            "mfu_without_attention": self.mfu_without_attention, "hfu": self.hfu,
            "breakdown": s.as_dict(), "plan": self.plan.as_dict(),
            "stage": {"layers": self.num_layers, "microbatch_s": s.microbatch_s,
                      "layers_forward_s": s.layers_forward_s, "layers_backward_s": s.layers_backward_s,
                      "embed_s": s.embed_s, "head_s": s.head_s, "params": self.stage_params},
            "time_to_train_s": self.time_to_train_s, "device_hours": self.device_hours,
            "goodput": self.goodput.as_dict(), "effective_time_to_train_s": self.goodput.effective_time_s,
        }
        if self.fit_advice is not None:
            out["fit_advice"] = self.fit_advice.as_dict()
        if self.layout is not None:
            out["layout"] = self.layout.as_dict()
        return out


def _kernels(families: dict[str, FamilyTiming], m: int, step: StepBreakdown, num_collectives: int,
             comm_bytes: float) -> dict[str, FamilyTiming]:
    """The step's families: one micro-batch's times m times, the optimizer once, and the exposed collectives as
    one family."""
    out = {fam: f.scaled(m) for fam, f in families.items()}
    out |= {fam: (f if fam not in out else FamilyTiming(fam, out[fam].time_s + f.time_s, out[fam].count + f.count,
                                                         out[fam].flops + f.flops, out[fam].bytes + f.bytes,
                                                         out[fam].bound))
            for fam, f in family_totals([step.optimizer]).items()}
    if num_collectives:
        out["collective"] = FamilyTiming("collective", step.exposed_communication_s, num_collectives, 0.0, comm_bytes,
                                         "comm")
    return dict(sorted(out.items(), key=lambda kv: -kv[1].time_s))


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingSetup:
    """What a training scenario's step is timed from: the model it trains, the plan, the software stack, the
    efficiency table at the stack's sustained math rate, the system and its network, one rank's program and what
    the stack overlaps."""

    training: Training
    model: TransformerConfig
    device: DeviceProfile
    plan: Plan
    stack: StackProfile
    table: EfficiencyTable
    system: SystemProfile | None
    network: Network | None
    program: RankProgram
    overlap: Overlap

    def step(self) -> StepBreakdown:
        return training_step(self.program, self.network, self.device, self.table, self.training.precision,
                             overlap=self.overlap)


def training_setup(scenario: Scenario, table: EfficiencyTable | None = None, *,
                   overlap_grad_reduce: bool | None = None, attention: str = "fused",
                   stack: StackProfile | None = None) -> TrainingSetup:
    """A training scenario's setup (arguments as `predict_training`'s), its plan checked against the model."""
    s = scenario
    tr = s.training
    model = s.model
    if tr is None or not isinstance(model, TransformerConfig):
        raise EmulatorError("the cluster model predicts training of transformers. Fix: give a 'training:' section "
                            "and a transformer model.", file=s.path, field="training")
    check_precision(s)
    stack = stack or stack_of(tr, "training")
    model = trained_model(model, tr)
    plan = plan_from(s, stack)
    check_plan(model, plan, s.num_devices, s.path)
    system = s.system or default_system(s.device)
    return TrainingSetup(
        training=tr, model=model, device=s.device, plan=plan, stack=stack,
        table=stack_table(table or efficiency_for(s.device), stack, s.device.family), system=system,
        network=Network.of(system) if system is not None else None,
        program=rank_program(model, plan, tr.precision, attention, stack),
        overlap=Overlap.of(stack, overlap_grad_reduce=overlap_grad_reduce))


def predict_training(scenario: Scenario, table: EfficiencyTable | None = None, *,
                     overlap_grad_reduce: bool | None = None, attention: str = "fused",
                     stack: StackProfile | None = None) -> TrainingPrediction:
    """Predict step time, throughput, MFU, memory and time-to-train of a training scenario on its cluster.

    `stack`: the software stack (default: the scenario's `training.framework`); it fuses the traced program's
    kernels, sets what overlaps and fills the plan's defaults.
    `overlap_grad_reduce`: False when a run says its gradient reduction did not overlap backward.
    `attention`: "fused" runs the traced FlashAttention-style kernel; "unfused" the batched-GEMM + softmax
    kernels of Megatron-LM 2021-22 (for reproducing runs made before fused attention).
    """
    setup = training_setup(scenario, table, overlap_grad_reduce=overlap_grad_reduce, attention=attention, stack=stack)
    s, tr, model, plan, table = scenario, setup.training, setup.model, setup.plan, setup.table
    device, precision, system, net, prog = setup.device, tr.precision, setup.system, setup.network, setup.program
    step = setup.step()
    st = stage_times(prog, device, table, precision)
    m = plan.num_microbatches

    full_flops, attention_flops = model_flops_per_microbatch(model, plan.microbatch_size, plan.seq_len, precision)
    replicas_mb = m * plan.dp
    hw = st.hardware_flops
    executed = hw.get("layers", 0.0) + st.recompute_flops(plan.recompute)
    executed += max(hw.get("embed", 0.0), hw.get("head", 0.0)) if plan.pp > 1 else hw.get("embed", 0.0) + hw.get(
        "head", 0.0)
    optimizer_flops = step.optimizer.cost.flops + step.optimizer.cost.recompute_flops
    parts = memory_of(model, plan, precision, prog.selective)
    memory = Memory(parts=parts, capacity_bytes=device.memory_bytes, error_band=ALLOCATOR_ALLOWANCE)
    advice = None if memory.fits else fit_advice(model, plan, precision, device.memory_bytes, memory.total_bytes,
                                                 prog.selective)
    kernels = _kernels(dict(st.families), m, step, sum(c.count for c in prog.collectives) if net else 0,
                       sum(c.total.comm_bytes for c in prog.collectives))
    compute_bound = max(((f.time_s, f.bound) for f in kernels.values() if f.bound != "comm"), default=(0.0, "compute"))
    notes = plan_warnings(model, plan)
    if system is None and plan.num_devices == 1:
        notes.append("no system profile for this device: single-device plan, no network")
    if plan.recompute == "selective" and prog.selective == "every_other_mm":
        notes.append(f"selective recompute as {setup.stack.name} runs it (per-op policy): each block's every second "
                     "16-bit matmul and its non-matrix kernels rerun in backward "
                     f"({st.selective_s * 1e3:.3g} ms per micro-batch)")
    elif set(recomputed_modules(plan.recompute, prog.selective)) - {"core_attn"}:
        notes.append(f"selective recompute of Megatron-Core's modules {', '.join(prog.selective)}: their forward "
                     f"kernels rerun in backward ({st.selective_s * 1e3:.3g} ms per micro-batch), their outputs are "
                     "not kept")
    elif plan.recompute == "selective":
        notes.append("selective recompute: the attention core is recomputed in backward, which the fused attention "
                     "kernel already does (its backward recompute is in the trace); no extra forward")
    if model.lora is not None:
        notes.append(f"LoRA rank {model.lora.rank} on {', '.join(model.lora.targets)}: base weights frozen (no "
                     "weight gradients, optimizer state or gradient reduction for them); adapters trained")
    if tr.task == "sft":
        notes.append("sft: full fine-tuning, timed as pretraining")
    if tr.packed_sequences:
        notes.append("packed sequences: attention spans each whole seq_len sequence (real packing masks it per "
                     "document, which does less attention work)")
    if model.is_moe and prog.shard.num_experts_per_token < model.num_experts_per_token:  # the shard capped its top-k
        notes.append("top-k exceeds the experts per rank: each token reaches at most all of a rank's local experts, "
                     "but the all-to-all still brings the rank k assignments per token of its own, so its experts "
                     "run those rows (some of a token's twice)")
    tokens = float(tr.global_batch_size * tr.seq_len)
    ideal = tr.total_tokens / (tokens / step.step_s) if tr.total_tokens and step.step_s > 0 else None
    return TrainingPrediction(
        scenario=s.path, model=model.name, device=device.name, system=system.name if system else None,
        num_devices=plan.num_devices, step_time_s=step.step_s, tokens_per_step=tokens,
        flops_per_step=full_flops * replicas_mb,
        hardware_flops_per_step=(executed * m + optimizer_flops) * plan.num_devices,
        peak_flops_per_s=device.mfu_peak(precision), memory=memory, provenance=table.provenance,
        error_band=step.error_band,
        bound="comm" if step.exposed_communication_s > step.compute_s else compute_bound[1], kernels=kernels,
        unknown_ops=prog.trace.unknown_ops, notes=tuple(notes), assumed=getattr(model, "assumed", {}),
        plan=plan, step=step, attention_flops_per_step=attention_flops * replicas_mb, total_tokens=tr.total_tokens,
        goodput=goodput(float(model.num_params()), plan.num_devices, ideal), num_layers=prog.num_layers,
        stage_params=prog.stage_params, fit_advice=advice, stack=setup.stack.as_dict(),
        layout=plan_layout(prog, net, system) if net is not None and system is not None else None)


__all__ = ["FitAdvice", "TrainingPrediction", "TrainingSetup", "fit_advice", "memory_of", "model_flops_per_microbatch",
           "predict_training", "trained_model", "training_setup"]
