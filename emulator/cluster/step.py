"""The one training step: a rank's compute (roofline), its collectives (network) and the schedule, in seconds.

    step = m * (stage compute + exposed tp/ep/cp/fsdp comm per micro-batch)      m micro-batches per step
         + pipeline bubble + pipeline send/recv on the critical path
         + exposed data-parallel gradient reduction + optimizer
The slowest pipeline stage sets the pace: the busiest rank's layers plus the embedding (first stage) or the
head (last stage), whichever is larger. Compute seconds come only from `roofline.kernel_time` on the rank's
traced calls; collective seconds only from `network.Network`. `predict_training` and the sizing search both
time plans with `training_step`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emulator.cluster.network import Group, Network, fanout_of
from emulator.cluster.plan import Plan
from emulator.cluster.schedule import Seconds, bubble_s, exposed, pipeline_slots
from emulator.cluster.shard import RankProgram, data_parallel_collectives, groups_of
from emulator.cluster.stage import stage_times
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.roofline import combined_band, error_band, kernel_time
from emulator.engine.timing import KernelTiming
from emulator.errors import EmulatorError
from emulator.hardware import DeviceProfile
from emulator.precision import ADAM_STATE_BYTES_PER_PARAM
from emulator.stacks import OVERLAP_CLASSES, StackProfile
from kernels import Cost, KernelCall

# Mixed-precision AdamW streams per parameter: the 16-bit gradient twice (global-norm clipping, then the update),
# fp32 master weights and two moments read and written (12 + 12), and the new 16-bit weights written (2)
# (Megatron-LM's FP16/BF16 optimizer; ZeRO paper Sec. 3.1 for the 16 bytes of state).
ADAM_STREAM_BYTES_PER_PARAM = 2 + 2 + 2 * ADAM_STATE_BYTES_PER_PARAM + 2
ADAM_VECTOR_FLOPS_PER_PARAM = 12.0  # moments, bias corrections, the update (a few FLOPs each)


@dataclass(frozen=True, slots=True, kw_only=True)
class Overlap:
    """The share of each collective class a software stack runs beside compute (`overlap.*` of its profile):
    0 leaves it exposed, 1 hides it as far as the compute beside it lasts (`hide`)."""

    dp_grad_reduce: float = 1.0
    dp_param_gather: float = 0.0
    tp: float = 0.0
    pp: float = 0.0
    ep: float = 0.0
    cp: float = 1.0

    @classmethod
    def of(cls, stack: StackProfile, *, overlap_grad_reduce: bool | None = None) -> Overlap:
        """The stack's overlap; `overlap_grad_reduce` False turns the gradient reduction's off (a run that says
        so)."""
        o = cls(**{c: stack.overlap(c) for c in OVERLAP_CLASSES})
        if not stack.get("defaults.ep_overlap"):  # the run does not overlap its expert all-to-all at all
            o = dataclasses.replace(o, ep=0.0)
        return o if overlap_grad_reduce is not False else dataclasses.replace(o, dp_grad_reduce=0.0)


def hide(comm_s: Seconds, fraction: float, cover_s: Seconds | float) -> Seconds:
    """Exposed seconds of a collective whose `fraction` runs beside `cover_s` of compute (numbers or arrays)."""
    return (1.0 - fraction) * comm_s + exposed(fraction * comm_s, cover_s)


def optimizer_kernel(prog: RankProgram, device: DeviceProfile, table: EfficiencyTable,
                     plan: Plan | None = None) -> KernelTiming:
    """The rank's AdamW step over the parameters it updates (its ZeRO shard when sharded; under LoRA the
    adapters), one fused kernel; `plan`: another plan of the same rank program (another dp or ZeRO stage)."""
    plan = plan or prog.plan
    dense, experts = prog.trainable_params - prog.trainable_expert_params, prog.trainable_expert_params
    if plan.shard_stage >= 1:
        dense, experts = dense / (plan.dp * plan.cp), experts / plan.edp
    params = dense + experts
    moved = params * ADAM_STREAM_BYTES_PER_PARAM
    call = KernelCall(family="optimizer", op="aten._fused_adamw_", shapes=((int(params),),), dtype="fp32",
                      cost=Cost(vector_flops=params * ADAM_VECTOR_FLOPS_PER_PARAM, bytes_read=moved * 14 / 30,
                                bytes_written=moved * 16 / 30), phase="optimizer", weight_bytes=moved)
    return kernel_time(call, device, table)


@functools.lru_cache(maxsize=65536)
def _collective_s(net: Network, op: str, size_bytes: float, group: Group, fanout: int) -> float:
    return net.time(op, size_bytes, group, fanout)


def comm_time(prog: RankProgram, net: Network | None, group: str, phase: str | None = None,
              ops: tuple[str, ...] | None = None) -> float:
    """Seconds of a rank's collectives in `group` (and `phase`, `ops`) for one micro-batch or one step."""
    return _comm_s(prog.collectives, prog.groups, net, group, phase, ops)


def _group(call: KernelCall) -> str:
    """A collective's group (`shard._collective` puts it first in its params)."""
    key, value = call.params[0]
    return str(value) if key == "group" else str(dict(call.params)["group"])


def _comm_s(collectives: Iterable[KernelCall], groups: Mapping[str, Group], net: Network | None, group: str,
            phase: str | None = None, ops: tuple[str, ...] | None = None) -> float:
    total = 0.0
    for c in collectives:
        if _group(c) != group or (phase and c.phase != phase) or (ops and c.op not in ops):
            continue
        if net is None:
            raise EmulatorError("a plan over several devices needs a system profile for its network. Fix: set "
                                "hardware.system to a system built from this device.", field="hardware.system")
        total += c.count * _collective_s(net, c.op, c.cost.comm_bytes, groups[group], fanout_of(c))
    return total


@dataclass(frozen=True, slots=True, kw_only=True)
class StepBreakdown:
    """Where one training step's seconds go (whole step unless named per micro-batch)."""

    step_s: float
    compute_s: float  # kernels of all micro-batches and the optimizer
    exposed_communication_s: float
    bubble_s: float
    optimizer_s: float
    tensor_parallel_s: float
    expert_parallel_s: float
    context_parallel_exposed_s: float
    fsdp_exposed_s: float
    pipeline_p2p_s: float
    data_parallel_exposed_s: float
    data_parallel_total_s: float
    communication_total_s: float  # every collective, hidden or not
    recompute_s: float
    microbatch_s: float  # one micro-batch of the busiest stage, compute and exposed comm
    layers_forward_s: float  # per micro-batch
    layers_backward_s: float  # per micro-batch, the recomputed forward included
    embed_s: float
    head_s: float
    optimizer: KernelTiming
    error_band: float  # of the compute, time-weighted over its kernels (the optimizer's included)
    host_wait_s: float = 0.0  # of compute_s: the devices waiting on the host's dispatch (`cluster.host`)

    @property
    def utilisation(self) -> float:
        """The share of the step the devices compute (power follows it)."""
        return self.compute_s / self.step_s if self.step_s > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        """The `breakdown` of `--json`."""
        return {"compute_s": self.compute_s, "exposed_communication_s": self.exposed_communication_s,
                "bubble_s": self.bubble_s, "optimizer_s": self.optimizer_s,
                "tensor_parallel_s": self.tensor_parallel_s, "expert_parallel_s": self.expert_parallel_s,
                "context_parallel_exposed_s": self.context_parallel_exposed_s,
                "fsdp_exposed_s": self.fsdp_exposed_s, "pipeline_p2p_s": self.pipeline_p2p_s,
                "data_parallel_exposed_s": self.data_parallel_exposed_s,
                "data_parallel_total_s": self.data_parallel_total_s,
                "communication_total_s": self.communication_total_s, "recompute_s": self.recompute_s,
                "host_wait_s": self.host_wait_s}


@dataclass(frozen=True, slots=True)
class _DataParallel:
    """What a plan's data-parallel size and ZeRO stage add to its rank program's step: raw seconds of its dp and
    edp collectives (per micro-batch for ZeRO-3's, per step otherwise) and its optimizer kernel."""

    fsdp: tuple[float, float, float, float]  # ZeRO-3 per micro-batch: (dp forward, dp backward, edp fwd, edp bwd)
    reduce: tuple[float, float]  # ZeRO-0/1/2 gradient all-reduce or reduce-scatter per step (dp, edp)
    gather: tuple[float, float]  # ZeRO-1/2 parameter all-gather per step (dp, edp)
    all_s: float  # every dp and edp collective
    optimizer: KernelTiming
    optimizer_band: float


_DATA_PARALLEL: dict[tuple[Any, ...], tuple[tuple[Any, ...], _DataParallel]] = {}


def _data_parallel(prog: RankProgram, plan: Plan, net: Network | None, device: DeviceProfile,
                   table: EfficiencyTable, precision: str) -> _DataParallel:
    """Cached by what it reads: the plan's sizes and ZeRO stage and the rank's parameter counts (rank programs of
    other micro-batch sizes and recompute policies share them)."""
    key = (plan.tp, plan.cp, plan.dp, plan.ep, plan.etp, plan.shard_stage, prog.num_layers, prog.stage_params,
           prog.expert_params, prog.trainable_params, prog.trainable_expert_params, id(net), id(device), id(table),
           precision)
    hit = _DATA_PARALLEL.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], (net, device, table), strict=True)):  # ids are
        return hit[1]  # reused once objects die
    out = _data_parallel_of(prog, plan, net, device, table, precision)
    if len(_DATA_PARALLEL) > 65536:
        _DATA_PARALLEL.clear()
    _DATA_PARALLEL[key] = ((net, device, table), out)
    return out


def _data_parallel_of(prog: RankProgram, plan: Plan, net: Network | None, device: DeviceProfile,
                      table: EfficiencyTable, precision: str) -> _DataParallel:
    calls, groups = prog.collectives, prog.groups
    if plan != prog.plan:  # the rank program's other collectives, this plan's data-parallel ones
        calls = tuple(c for c in calls if _group(c) not in ("dp", "edp")) + data_parallel_collectives(
            plan, precision, prog.num_layers, prog.stage_params, prog.expert_params,
            (prog.trainable_params, prog.trainable_expert_params))
        groups = groups_of(plan)

    def comm(group: str, phase: str | None = None, ops: tuple[str, ...] | None = None) -> float:
        return _comm_s(calls, groups, net, group, phase, ops)

    zero3 = plan.shard_stage >= 3
    fsdp = (comm("dp", "forward"), comm("dp", "backward"), comm("edp", "forward"), comm("edp", "backward")) \
        if zero3 else (0.0, 0.0, 0.0, 0.0)
    reduce = (0.0, 0.0) if zero3 else (comm("dp", "optimizer", ("all_reduce", "reduce_scatter")),
                                       comm("edp", "optimizer", ("all_reduce", "reduce_scatter")))
    gather = (0.0, 0.0) if zero3 else (comm("dp", "optimizer", ("all_gather",)),
                                       comm("edp", "optimizer", ("all_gather",)))
    optimizer = optimizer_kernel(prog, device, table, plan)
    return _DataParallel(fsdp, reduce, gather, comm("dp") + comm("edp") if net is not None else 0.0, optimizer,
                         error_band([optimizer], table))


@dataclass(frozen=True, slots=True)
class StepArrays:
    """`StepBreakdown`s of plans that share one rank program's compute (they differ only in dp, ZeRO stage and
    batch): each per-plan figure an array over the plans."""

    step_s: np.ndarray
    compute_s: np.ndarray
    exposed_communication_s: np.ndarray
    bubble_s: np.ndarray
    optimizer_s: np.ndarray
    tensor_parallel_s: np.ndarray
    expert_parallel_s: np.ndarray
    context_parallel_exposed_s: np.ndarray
    fsdp_exposed_s: np.ndarray
    pipeline_p2p_s: np.ndarray
    data_parallel_exposed_s: np.ndarray
    data_parallel_total_s: np.ndarray
    communication_total_s: np.ndarray
    recompute_s: np.ndarray
    microbatch_s: np.ndarray
    layers_forward_s: float
    layers_backward_s: float
    embed_s: float
    head_s: float
    optimizer: tuple[KernelTiming, ...]
    error_band: np.ndarray
    host_wait_s: np.ndarray

    @property
    def utilisation(self) -> np.ndarray:
        """`StepBreakdown.utilisation` of each plan."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.step_s > 0, self.compute_s / self.step_s, 0.0)

    def breakdown(self, i: int) -> StepBreakdown:
        """Plan i's `StepBreakdown`."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(StepBreakdown)}
        return StepBreakdown(**{k: (v[i] if k == "optimizer" else float(v[i]) if isinstance(v, np.ndarray)
                                    else v) for k, v in values.items()})  # type: ignore[arg-type]


def training_steps(prog: RankProgram, plans: Sequence[Plan], net: Network | None, device: DeviceProfile,
                   table: EfficiencyTable, precision: str, *, overlap: Overlap = Overlap()) -> StepArrays:
    """The step time of each plan, all sharing `prog`'s compute (see the module docstring for the schedule):
    what the plans share is computed once, what their micro-batch counts, dp sizes and ZeRO stages change is numpy
    arrays over the plans.

    `overlap`: what the software stack runs beside compute. Tensor- and expert-parallel collectives hide behind
    the micro-batch's compute, pipeline sends behind the schedule's, context-parallel KV exchange behind
    attention, the gradient reduction behind the last micro-batch's backward and the parameter all-gather
    behind the first one's forward.
    """
    plan = prog.plan
    st = stage_times(prog, device, table, precision)
    layers_f = st.get("layers", "forward")
    layers_b = st.get("layers", "backward") + st.recompute_s(plan.recompute)
    first = st.get("embed", "forward") + st.get("embed", "backward")
    last = st.get("head", "forward") + st.get("head", "backward")
    ends = max(first, last) if plan.pp > 1 else first + last
    compute_mb = layers_f + layers_b + ends
    if prog.end_chunks and prog.num_layers > 1:
        # The embedding and the loss sit in chunks of their own: their stages hold a layer fewer than the busiest
        per_layer = (layers_f + layers_b) / prog.num_layers
        compute_mb = max(layers_f + layers_b, layers_f + layers_b - per_layer + ends)

    tp_total, ep_total = comm_time(prog, net, "tp"), comm_time(prog, net, "ep")
    tp_s, ep_s = hide(tp_total, overlap.tp, compute_mb), hide(ep_total, overlap.ep, compute_mb)
    cp_s = hide(comm_time(prog, net, "cp", "forward"), overlap.cp, st.attention.get("forward", 0.0) * plan.cp) + hide(
        comm_time(prog, net, "cp", "backward"), overlap.cp, st.attention.get("backward", 0.0) * plan.cp)
    # Pipeline neighbours are tp * cp * dp ranks apart: whether they share a scale-up domain depends on dp.
    pp_by_dp: dict[int, float] = {}
    if plan.pp > 1:
        for p in plans:
            if p.dp not in pp_by_dp:
                pp_by_dp[p.dp] = _comm_s(prog.collectives, prog.groups if p.dp == plan.dp else groups_of(p), net, "pp")
    cp_all = comm_time(prog, net, "cp") if net is not None else 0.0

    parts = [_data_parallel(prog, p, net, device, table, precision) for p in plans]
    m = np.array([p.num_microbatches for p in plans], dtype=np.int64)
    zero3 = np.array([p.shard_stage >= 3 for p in plans])

    def column(get: Callable[[_DataParallel], float]) -> np.ndarray:
        return np.array([get(d) for d in parts], dtype=float)

    fsdp_s = np.where(zero3, 0.0 + exposed(column(lambda d: d.fsdp[0]), layers_f) + exposed(
        column(lambda d: d.fsdp[1]), layers_b) + exposed(column(lambda d: d.fsdp[2]), layers_f) + exposed(
        column(lambda d: d.fsdp[3]), layers_b), 0.0)
    microbatch_s = compute_mb + tp_s + ep_s + cp_s + fsdp_s
    bubble = bubble_s(plan.pp, plan.virtual_stages, microbatch_s)
    pp_comm = np.array([pp_by_dp.get(p.dp, 0.0) for p in plans])
    pp_total = pp_comm * pipeline_slots(plan.pp, m) if plan.pp > 1 else np.zeros(len(plans))
    pp_s = hide(pp_total, overlap.pp, m * microbatch_s)
    optimizer_s = column(lambda d: d.optimizer.time_s)
    reduce_dp, reduce_edp = column(lambda d: d.reduce[0]), column(lambda d: d.reduce[1])
    gather_dp, gather_edp = column(lambda d: d.gather[0]), column(lambda d: d.gather[1])
    dp_total = np.where(zero3, 0.0, 0.0 + (reduce_dp + gather_dp) + (reduce_edp + gather_edp))
    dp_s = np.where(zero3, 0.0, 0.0 + (hide(reduce_dp, overlap.dp_grad_reduce, layers_b) + hide(
        gather_dp, overlap.dp_param_gather, layers_f)) + (hide(reduce_edp, overlap.dp_grad_reduce, layers_b) + hide(
            gather_edp, overlap.dp_param_gather, layers_f)))
    step = m * microbatch_s + bubble + pp_s + dp_s + optimizer_s
    hidden = m * cp_all + column(lambda d: d.all_s) * np.where(zero3, m, 1) if net is not None else np.zeros(len(plans))
    compute = m * compute_mb
    band = np.array([combined_band([(st.error_band, c), (d.optimizer_band, o)], st.error_band)
                     for c, d, o in zip(compute.tolist(), parts, optimizer_s.tolist(), strict=True)])
    return StepArrays(
        step_s=step, compute_s=compute + optimizer_s,
        exposed_communication_s=m * (tp_s + ep_s + cp_s + fsdp_s) + pp_s + dp_s, bubble_s=bubble,
        optimizer_s=optimizer_s, tensor_parallel_s=m * tp_s, expert_parallel_s=m * ep_s,
        context_parallel_exposed_s=m * cp_s, fsdp_exposed_s=m * fsdp_s, pipeline_p2p_s=pp_s,
        data_parallel_exposed_s=dp_s, data_parallel_total_s=dp_total,
        communication_total_s=m * (tp_total + ep_total) + pp_total + hidden,
        recompute_s=m * st.recompute_s(plan.recompute), microbatch_s=microbatch_s,
        layers_forward_s=layers_f, layers_backward_s=layers_b, embed_s=first, head_s=last,
        optimizer=tuple(d.optimizer for d in parts), error_band=band, host_wait_s=m * st.host_wait_s)


def training_step(prog: RankProgram, net: Network | None, device: DeviceProfile, table: EfficiencyTable,
                  precision: str, *, overlap: Overlap = Overlap()) -> StepBreakdown:
    """The step time of a rank program on its network: `training_steps` of its one plan."""
    return training_steps(prog, [prog.plan], net, device, table, precision, overlap=overlap).breakdown(0)
