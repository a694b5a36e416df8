"""Predict a training step on a cluster: per-rank compute (roofline), collectives (network), schedule, memory.

    step = m * (stage compute + exposed tp/ep/cp/fsdp comm per micro-batch)      m micro-batches per step
         + pipeline bubble + pipeline send/recv on the critical path
         + exposed data-parallel gradient reduction + optimizer
The slowest pipeline stage sets the pace: the busiest rank's layers plus the embedding (first stage) or the
head (last stage), whichever is larger. Compute seconds come only from `roofline.kernel_time` on the rank's
traced calls; collective seconds only from `network.Network`.

Figures (conventions as in `emulator.engine.predict`, per step, whole cluster):
- flops_per_step: model FLOPs of the unsharded model (GEMM + fused attention matrix FLOPs, causal, backward
  = 2x forward, no recompute) times the micro-batches of all replicas; mfu = flops / (step * devices * peak).
- mfu_without_attention: the same without attention FLOPs (the 6*N*T convention).
- hardware_flops_per_step / hfu: what the ranks execute, recompute included (FlashAttention's backward score
  recompute, full-recompute forwards, vector FLOPs).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.cluster.goodput import goodput
from emulator.cluster.memory import training_memory
from emulator.cluster.network import Network
from emulator.cluster.plan import Plan, check_plan, plan_from, plan_warnings
from emulator.cluster.schedule import bubble_s, exposed, pipeline_slots
from emulator.cluster.shard import RankProgram, part_of, rank_program, shard_config, stage_params, torch_dtype
from emulator.engine.calibration import efficiency_for
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.roofline import kernel_time
from emulator.engine.trace import trace_workload
from emulator.errors import EmulatorError
from emulator.hardware import DeviceProfile, SystemProfile, list_systems, load_system
from emulator.scenario import Scenario
from emulator.workloads.config import TransformerConfig
from kernels import Cost, KernelCall

FLOPS_CONVENTION = ("model FLOPs of the unsharded model: GEMM + fused-attention matrix FLOPs (causal), attention "
                    "backward = 2x forward, no recompute; vector FLOPs excluded; summed over all micro-batches")


def default_system(device: DeviceProfile) -> SystemProfile | None:
    """The first shipped system built from `device` (hardware is data: no name branches)."""
    for name in list_systems():
        system = load_system(name)
        if system.device.name == device.name:
            return system
    return None


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Seconds of one micro-batch on the busiest rank, by part and phase; per-family totals for reporting."""

    seconds: Mapping[tuple[str, str], float]  # (embed|layers|head, forward|backward|optimizer) -> s
    attention: Mapping[str, float]  # phase -> s of attention kernels
    families: Mapping[str, dict[str, Any]]  # family -> time_s, flops, bytes, count, bound (one micro-batch)
    hardware_flops: Mapping[str, float]  # part -> FLOPs executed (matrix + recompute + vector)
    layer_forward_flops: float

    def get(self, part: str, phase: str) -> float:
        return self.seconds.get((part, phase), 0.0)


_TIMES: dict[tuple[Any, ...], tuple[RankProgram, StageTimes]] = {}


def stage_times(prog: RankProgram, device: DeviceProfile, table: EfficiencyTable, precision: str) -> StageTimes:
    """Roofline times of a rank's calls, cached per (traced shard, corrections, device, table, precision)."""
    p = prog.plan
    key = (id(prog.trace), p.tp, p.cp, p.sequence_parallel, p.recompute, p.microbatch_size, p.seq_len,
           prog.attention, device.name, id(table), precision)
    hit = _TIMES.get(key)
    if hit is not None and hit[0].trace is prog.trace:
        return hit[1]
    seconds: dict[tuple[str, str], float] = {}
    attention: dict[str, float] = {}
    families: dict[str, dict[str, Any]] = {}
    hw: dict[str, float] = {}
    layer_fwd = 0.0
    for call in prog.compute:
        if call.family == "view":
            continue
        kt = kernel_time(call, device, table, precision)
        part = part_of(call)
        seconds[(part, call.phase)] = seconds.get((part, call.phase), 0.0) + kt.time_s
        if call.family == "attention" or call.module == "layers.attention":
            attention[call.phase] = attention.get(call.phase, 0.0) + kt.time_s
        cost = call.total
        hw[part] = hw.get(part, 0.0) + cost.matrix_flops + cost.recompute_flops + cost.vector_flops
        if part == "layers" and call.phase == "forward":
            layer_fwd += cost.matrix_flops + cost.recompute_flops + cost.vector_flops
        f = families.setdefault(call.family, {"time_s": 0.0, "count": 0, "flops": 0.0, "bytes": 0.0, "bounds": {}})
        f["time_s"] += kt.time_s
        f["count"] += call.count
        f["flops"] += cost.flops
        f["bytes"] += cost.bytes
        f["bounds"][kt.bound] = f["bounds"].get(kt.bound, 0.0) + kt.time_s
    for f in families.values():
        bounds = f.pop("bounds")
        f["bound"] = max(bounds, key=bounds.__getitem__) if bounds else "compute"
    out = StageTimes(seconds, attention, families, hw, layer_fwd)
    if len(_TIMES) > 4096:
        _TIMES.clear()
    _TIMES[key] = (prog, out)
    return out


# Mixed-precision AdamW streams per parameter: the 16-bit gradient twice (global-norm clipping, then the update),
# fp32 master weights and two moments read and written (12 + 12), and the new 16-bit weights written (2)
# (Megatron-LM's FP16/BF16 optimizer; ZeRO paper Sec. 3.1 for the 16 bytes of state).
ADAM_STREAM_BYTES_PER_PARAM = 2 + 2 + 12 + 12 + 2
ADAM_VECTOR_FLOPS_PER_PARAM = 12.0  # moments, bias corrections, the update (a few FLOPs each)


def optimizer_time(prog: RankProgram, device: DeviceProfile, table: EfficiencyTable) -> float:
    """Seconds of the rank's AdamW step over the parameters it updates (its ZeRO shard when sharded)."""
    plan = prog.plan
    dense, experts = prog.stage_params - prog.expert_params, prog.expert_params
    if plan.shard_stage >= 1:
        dense, experts = dense / (plan.dp * plan.cp), experts / max(plan.dp * plan.cp // plan.ep, 1)
    params = dense + experts
    moved = params * ADAM_STREAM_BYTES_PER_PARAM
    call = KernelCall(family="optimizer", op="aten._fused_adamw_", shapes=((int(params),),), dtype="fp32",
                      cost=Cost(vector_flops=params * ADAM_VECTOR_FLOPS_PER_PARAM, bytes_read=moved * 14 / 30,
                                bytes_written=moved * 16 / 30), phase="optimizer", weight_bytes=moved)
    return kernel_time(call, device, table).time_s


@functools.lru_cache(maxsize=256)
def _model_flops(model: TransformerConfig, micro: int, seq: int, precision: str) -> tuple[float, float]:
    """(model FLOPs, attention FLOPs) of one micro-batch of the unsharded model, forward and backward."""
    trace = trace_workload(model, "train", micro, seq, 0, torch_dtype(precision))
    total = sum(c.total.matrix_flops for c in trace.calls if c.phase != "optimizer")
    attention = sum(c.total.matrix_flops for c in trace.calls if c.family == "attention")
    return total, attention


@dataclass(frozen=True, slots=True)
class ClusterPrediction:
    """What `emulator predict` reports for a training scenario on a cluster."""

    scenario: Scenario
    plan: Plan
    system: str | None
    step_time_s: float
    tokens_per_step: float
    flops_per_step: float
    attention_flops_per_step: float
    hardware_flops_per_step: float
    peak_flops_per_s: float
    memory: Mapping[str, float]
    fits: bool
    breakdown: Mapping[str, float]
    kernels: Mapping[str, Mapping[str, Any]]
    provenance: str
    error_band: float
    bound: str
    unknown_ops: Mapping[str, int]
    goodput: Mapping[str, Any]
    notes: tuple[str, ...] = ()
    fit_advice: Mapping[str, Any] | None = None
    stage: Mapping[str, float] = field(default_factory=dict)

    @property
    def num_devices(self) -> int:
        return self.plan.num_devices

    def to_json(self) -> dict[str, Any]:
        s, t, n = self.scenario, self.step_time_s, self.num_devices
        tokens_per_s = self.tokens_per_step / t if t > 0 else 0.0
        per_device = self.flops_per_step / t / n if t > 0 else 0.0
        total_tokens = s.training.total_tokens if s.training else None
        ttt = total_tokens / tokens_per_s if total_tokens and tokens_per_s else None
        out: dict[str, Any] = {
            "scenario": s.path, "model": s.model.name, "device": s.device.name, "system": self.system,
            "num_devices": n, "mode": "training", "step_time_s": t, "tokens_per_step": self.tokens_per_step,
            "tokens_per_s": tokens_per_s, "tokens_per_s_per_device": tokens_per_s / n,
            "flops_per_step": self.flops_per_step, "flops_convention": FLOPS_CONVENTION,
            "hardware_flops_per_step": self.hardware_flops_per_step,
            "model_flops_per_s_per_device": per_device,
            "hardware_flops_per_s_per_device": self.hardware_flops_per_step / t / n if t > 0 else 0.0,
            "mfu": per_device / self.peak_flops_per_s,
            "mfu_without_attention": (self.flops_per_step - self.attention_flops_per_step) / t / n
            / self.peak_flops_per_s if t > 0 else 0.0,
            "hfu": self.hardware_flops_per_step / t / n / self.peak_flops_per_s if t > 0 else 0.0,
            "memory_per_device_bytes": self.memory["total"], "memory_breakdown": dict(self.memory),
            "memory_capacity_bytes": s.device.memory_bytes, "fits": self.fits, "provenance": self.provenance,
            "error_band": self.error_band, "step_time_range_s": [t * (1 - self.error_band), t * (1 + self.error_band)],
            "bound": self.bound, "unknown_ops": dict(self.unknown_ops),
            "kernels": {k: dict(v) for k, v in self.kernels.items()},
            "breakdown": dict(self.breakdown), "plan": self.plan.as_dict(), "stage": dict(self.stage),
            "time_to_train_s": ttt, "device_hours": ttt * n / 3600 if ttt else None,
            "goodput": dict(self.goodput),
            "effective_time_to_train_s": self.goodput.get("effective_time_to_train_s"),
            "notes": list(self.notes),
        }
        if self.fit_advice is not None:
            out["fit_advice"] = dict(self.fit_advice)
        return out


def _comm(prog: RankProgram, net: Network | None, group: str, phase: str | None = None, op: str | None = None) -> float:
    """Seconds of a rank's collectives in `group` (and `phase`, `op`) for one micro-batch or one step."""
    total = 0.0
    for c in prog.collectives:
        params = dict(c.params)
        if params["group"] != group or (phase and c.phase != phase) or (op and c.op != op):
            continue
        if net is None:
            raise EmulatorError("a plan over several devices needs a system profile for its network. Fix: set "
                                "hardware.system to a system built from this device.", field="hardware.system")
        total += c.count * net.time(c.op, c.cost.comm_bytes, prog.groups[group])
    return total


def _memory(model: TransformerConfig, plan: Plan, precision: str) -> dict[str, float]:
    shard = shard_config(model, plan)
    params, experts = stage_params(model, shard, plan)
    return training_memory(model, plan, stage_params=params, expert_params=experts, precision=precision,
                           num_layers=shard.num_layers)


def fit_advice(model: TransformerConfig, plan: Plan, precision: str, capacity: float,
               total: float) -> dict[str, Any]:
    """By how much a plan misses the device memory, and single changes that would make it fit."""
    import dataclasses

    options: list[tuple[str, Plan]] = []
    dpc = plan.dp * plan.cp
    for stage in range(plan.shard_stage + 1, 4):
        if dpc > 1 and not plan.fsdp:
            options.append((f"zero: {stage}", dataclasses.replace(plan, zero=stage)))
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
        need = _memory(model, candidate, precision)["total"]
        if need <= capacity:
            fixes.append({"change": label, "memory_per_device_bytes": need})
    return {"over_by_bytes": total - capacity, "over_by_fraction": total / capacity - 1,
            "fixes": fixes[:6] or ["no single change fits: add devices or use a device with more memory"]}


def predict_training(scenario: Scenario, table: EfficiencyTable | None = None, *,
                     overlap_grad_reduce: bool = True, attention: str = "fused") -> ClusterPrediction:
    """Predict step time, throughput, MFU, memory and time-to-train of a training scenario on its cluster.

    `overlap_grad_reduce`: the data-parallel gradient reduction overlaps the last backward (default) or not.
    `attention`: "fused" runs the traced FlashAttention-style kernel; "unfused" the batched-GEMM + softmax
    kernels of Megatron-LM 2021-22 (for reproducing runs made before fused attention).
    """
    s = scenario
    tr = s.training
    model = s.model
    if tr is None or not isinstance(model, TransformerConfig):
        raise EmulatorError("the cluster model predicts training of transformers. Fix: give a 'training:' section "
                            "and a transformer model.", file=s.path, field="training")
    plan = plan_from(s)
    check_plan(model, plan, s.num_devices, s.path)
    table = table or efficiency_for(s.device)
    system = s.system or default_system(s.device)
    net = Network.of(system) if system is not None else None
    device, precision = s.device, tr.precision
    prog = rank_program(model, plan, precision, attention)
    st = stage_times(prog, device, table, precision)
    m = plan.num_microbatches

    full = plan.recompute == "full"
    layers_f = st.get("layers", "forward")
    layers_b = st.get("layers", "backward") + (layers_f if full else 0.0)
    first = st.get("embed", "forward") + st.get("embed", "backward")
    last = st.get("head", "forward") + st.get("head", "backward")
    ends = max(first, last) if plan.pp > 1 else first + last
    compute_mb = layers_f + layers_b + ends

    tp_s = _comm(prog, net, "tp")
    ep_s = _comm(prog, net, "ep")
    cp_s = exposed(_comm(prog, net, "cp", "forward"), st.attention.get("forward", 0.0) * plan.cp) + exposed(
        _comm(prog, net, "cp", "backward"), st.attention.get("backward", 0.0) * plan.cp)
    fsdp_s = 0.0
    if plan.shard_stage >= 3:
        for grp in ("dp", "edp"):
            fsdp_s += exposed(_comm(prog, net, grp, "forward"), layers_f)
            fsdp_s += exposed(_comm(prog, net, grp, "backward"), layers_b)
    microbatch_s = compute_mb + tp_s + ep_s + cp_s + fsdp_s
    pp_slot = _comm(prog, net, "pp")
    pp_s = pp_slot * pipeline_slots(plan.pp, m) if plan.pp > 1 else 0.0
    bubble = bubble_s(plan.pp, plan.virtual_stages, microbatch_s)

    optimizer_s = optimizer_time(prog, device, table)
    dp_s = 0.0
    dp_total = 0.0
    if plan.shard_stage < 3:
        for grp in ("dp", "edp"):
            reduce = _comm(prog, net, grp, "optimizer", "all_reduce") + _comm(prog, net, grp, "optimizer",
                                                                                "reduce_scatter")
            gather = _comm(prog, net, grp, "optimizer", "all_gather")
            dp_total += reduce + gather
            dp_s += (exposed(reduce, layers_b) if overlap_grad_reduce else reduce) + gather
    step = m * microbatch_s + bubble + pp_s + dp_s + optimizer_s

    full_flops, attn_flops = _model_flops(model, plan.microbatch_size, plan.seq_len, precision)
    replicas_mb = m * plan.dp
    flops = full_flops * replicas_mb
    hw_mb = st.hardware_flops.get("layers", 0.0) + (st.layer_forward_flops if full else 0.0)
    hw_mb += max(st.hardware_flops.get("embed", 0.0), st.hardware_flops.get("head", 0.0)) if plan.pp > 1 else (
        st.hardware_flops.get("embed", 0.0) + st.hardware_flops.get("head", 0.0))
    hardware = hw_mb * m * plan.num_devices

    memory = _memory(model, plan, precision)
    fits = memory["total"] <= device.memory_bytes
    advice = None if fits else fit_advice(model, plan, precision, device.memory_bytes, memory["total"])
    tokens = float(tr.global_batch_size * tr.seq_len)
    ttt = tr.total_tokens / (tokens / step) if tr.total_tokens and step > 0 else None
    peak_dtype = precision if precision in device.matrix_flops_per_s else "bf16"

    comm_hidden = (_comm(prog, net, "cp") + sum(_comm(prog, net, g) for g in ("dp", "edp")) * (m if plan.shard_stage
                   >= 3 else 1)) if net else 0.0
    exposed_comm = m * (tp_s + ep_s + cp_s + fsdp_s) + pp_s + dp_s
    breakdown = {
        "compute_s": m * compute_mb + optimizer_s, "exposed_communication_s": exposed_comm, "bubble_s": bubble,
        "optimizer_s": optimizer_s, "tensor_parallel_s": m * tp_s, "expert_parallel_s": m * ep_s,
        "context_parallel_exposed_s": m * cp_s, "fsdp_exposed_s": m * fsdp_s, "pipeline_p2p_s": pp_s,
        "data_parallel_exposed_s": dp_s, "data_parallel_total_s": dp_total,
        "communication_total_s": m * (tp_s + ep_s) + pp_s + comm_hidden,
        "recompute_s": m * layers_f if full else 0.0,
    }
    kernels: dict[str, dict[str, Any]] = {}
    for fam, f in st.families.items():
        kernels[fam] = {**f, "time_s": f["time_s"] * m, "count": f["count"] * m, "flops": f["flops"] * m,
                        "bytes": f["bytes"] * m}
    if net is not None and prog.collectives:
        kernels["collective"] = {"time_s": exposed_comm, "count": sum(c.count for c in prog.collectives),
                                 "flops": 0.0, "bytes": sum(c.total.comm_bytes for c in prog.collectives),
                                 "bound": "comm"}
    compute_bound = max(((f["time_s"], f["bound"]) for f in kernels.values() if f["bound"] != "comm"),
                        default=(0.0, "compute"))
    bound = "comm" if exposed_comm > breakdown["compute_s"] else compute_bound[1]
    notes = plan_warnings(model, plan)
    if system is None and plan.num_devices == 1:
        notes.append("no system profile for this device: single-device plan, no network")
    if plan.recompute == "selective":
        notes.append("selective recompute: the attention core is recomputed in backward, which the fused attention "
                     "kernel already does (its backward recompute is in the trace); no extra forward")
    if model.is_moe and model.num_experts_per_token > model.num_experts // plan.ep:
        notes.append("top-k exceeds the experts per rank: the shard routes each token to all its local experts")
    num_params = float(model.num_params())
    return ClusterPrediction(
        scenario=s, plan=plan, system=system.name if system else None, step_time_s=step, tokens_per_step=tokens,
        flops_per_step=flops, attention_flops_per_step=attn_flops * replicas_mb, hardware_flops_per_step=hardware,
        peak_flops_per_s=device.matrix_peak(peak_dtype), memory=memory, fits=fits, breakdown=breakdown,
        kernels=kernels, provenance=table.provenance, error_band=table.error_band, bound=bound,
        unknown_ops=prog.trace.unknown_ops, goodput=goodput(num_params, plan.num_devices, ttt), notes=tuple(notes),
        fit_advice=advice,
        stage={"layers": prog.num_layers, "microbatch_s": microbatch_s, "layers_forward_s": layers_f,
               "layers_backward_s": layers_b, "embed_s": first, "head_s": last, "params": prog.stage_params},
    )
