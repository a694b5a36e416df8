"""The per-rank program: what one rank of a plan executes, as kernel calls (compute traced, collectives explicit).

A rank runs its tensor-parallel shard of its pipeline stage's layers, with its share of the experts, on its
context-parallel chunk of the sequence. That is the model config sharded for one rank:
    num_heads / tp, max(num_kv_heads / tp, 1) (replicated when fewer than tp), ffn / tp, expert ffn / tp,
    experts / ep (top-k kept: under balanced routing each local expert then receives T*k*ep/E tokens, exactly
    what it gets from the ep ranks' all-to-all), vocab / tp, layers of the stage,
traced with `trace_workload` at (microbatch_size, seq_len / cp). Corrections a shard trace cannot see:
- context parallel: ring attention computes cp blocks of (S/cp)^2 per layer, so attention calls count x cp;
- sequence parallel: norms, residual adds and other [b, s, hidden] elementwise work run on s/tp tokens.
The collectives Megatron-LM issues are then listed as explicit `KernelCall`s of family "collective"
(`Cost.comm_bytes` = payload, kernels/collective.py's convention), each tagged with its group and schedule slot:
    tp   per layer 2 all-reduces forward and 2 backward of [b, s, h] (with sequence parallel: all-gather +
         reduce-scatter each), plus the embedding's; full recompute repeats the forward ones
    cp   per layer (cp-1) K/V chunk send/recv forward, twice that backward (ring attention)
    ep   per MoE layer all-to-all dispatch + combine forward and backward
    pp   per micro-batch and model chunk one activation send/recv forward and backward (1/tp of it per rank:
         Megatron's scatter/gather optimisation)
    dp   per step: gradient all-reduce (ZeRO-0), reduce-scatter + parameter all-gather (ZeRO-1/2); ZeRO-3/FSDP
         per layer and micro-batch parameter all-gathers forward and backward and a gradient reduce-scatter.
Gradients (and the parameters the optimizer rewrites) are those of the trainable parameters: all of them, or under
LoRA the adapters alone (`trainable_params`); ZeRO-3/FSDP still gathers the frozen base weights it shards.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from emulator.cluster.host import HostDispatch
from emulator.cluster.network import Group
from emulator.cluster.plan import Plan, Policy, recomputed_modules
from emulator.engine.calls import Trace
from emulator.engine.gemm_groups import group_gemms
from emulator.engine.stack import fuse, group_experts, keep_head_dtype, low_precision_casts
from emulator.engine.trace import trace_workload
from emulator.precision import activation_dtype, dtype_bytes
from emulator.stacks import StackProfile
from emulator.workloads.config import TransformerConfig
from emulator.workloads.lora_params import adapter_params
from kernels import Cost, KernelCall

ELEMENTWISE_FAMILIES = ("norm", "elementwise", "copy", "reduction")


def layers_per_stage(model: TransformerConfig, plan: Plan) -> int:
    """Layers on the busiest pipeline rank (all its virtual chunks together)."""
    return math.ceil(model.num_layers / (plan.pp * plan.virtual_stages)) * plan.virtual_stages


@functools.lru_cache(maxsize=4096)
def shard_config(model: TransformerConfig, *, tp: int = 1, ep: int = 1, expert_tp: int = 1,
                 num_layers: int | None = None) -> TransformerConfig:
    """The config one rank runs: its tensor-parallel shard of attention, the dense MLP and the vocabulary, its
    `num_experts / ep` experts with their feed-forward width split `expert_tp` ways, and its stage's layers.

    KV heads are split over tp, replicated when fewer than tp. The busiest stage is the one furthest from the
    input: it holds the most MoE layers (DeepSeek's dense layers come first).
    """
    n = model.num_layers if num_layers is None else num_layers
    changes: dict[str, object] = {
        "num_heads": model.num_heads // tp,
        "num_kv_heads": max(model.num_kv_heads // tp, 1) if model.attention == "gqa" else model.num_heads // tp,
        "head_dim": model.head_dim,
        "ffn_hidden_size": max(model.ffn_hidden_size // tp, 1),
        "vocab_size": math.ceil(model.vocab_size / tp),
        "num_layers": n,
        "num_dense_layers": max(0, model.num_dense_layers - (model.num_layers - n)),
    }
    if model.is_moe:
        local, k = model.num_experts // ep, model.num_experts_per_token
        # Fewer local experts than the top-k (ep > E / k): a token picks at most `local` of them, but the all-to-all
        # still brings the rank k assignments per token of its own (T * k * ep / E per expert), so the shard's
        # experts receive k per token, some tokens' rows twice (`routed_per_token`).
        changes |= {"num_experts": local, "num_experts_per_token": min(k, local),
                    "routed_per_token": float(k) if k > local else model.routed_per_token,
                    "moe_ffn_hidden_size": max(model.moe_ffn_hidden_size // expert_tp, 1)}
    return model.scaled(**changes)


def rank_shard(model: TransformerConfig, plan: Plan) -> TransformerConfig:
    """The shard a training rank of `plan` traces. Its routed experts are traced split over tp whatever the plan's
    etp: with sequence parallelism each tp rank routes 1/tp of the tokens, so an expert's FLOPs per rank are those
    of tp-split experts on all the tokens; memory and gradient reduction count the experts etp really splits."""
    return shard_config(model, tp=plan.tp, ep=plan.ep, expert_tp=plan.tp, num_layers=layers_per_stage(model, plan))


def part_of(call: KernelCall) -> str:
    """Which part of a stage a traced call belongs to: embed, layers or head."""
    return call.module.split(".", 1)[0] if call.module.startswith(("embed", "head")) else "layers"


@dataclass(frozen=True, slots=True)
class RankProgram:
    """One rank's step: compute calls of one micro-batch (plus the optimizer) and its collectives."""

    shard: TransformerConfig
    plan: Plan
    compute: tuple[KernelCall, ...]  # one micro-batch forward + backward of the stage, and the optimizer
    collectives: tuple[KernelCall, ...]  # params: group, slot (microbatch | step | layer)
    groups: Mapping[str, Group]
    num_layers: int  # layers of the stage
    num_moe_layers: int
    stage_params: float  # parameters on the busiest rank
    expert_params: float  # of which routed-expert weights
    trace: Trace
    trainable_params: float  # parameters the rank's optimizer updates (`trainable_params`)
    trainable_expert_params: float  # of which routed-expert weights
    attention: str = "fused"  # fused (the traced kernel) | unfused (Megatron-LM 2021-22 style)
    end_chunks: int = 0  # pipeline chunks the embedding and the loss take in place of layers (`plan.END_CHUNKS`)
    selective: Policy = "attention_core"  # what `recompute: selective` reruns (`recompute.selective`)
    host: HostDispatch = HostDispatch()  # the stack's host time per op outside CUDA graphs (`cluster.host`)

    @property
    def activation_bytes(self) -> float:
        return float(self.trace.meta.get("activation_bytes", 0.0))


def unfused_attention(shard: TransformerConfig, plan: Plan, precision: str, *, dropout: bool = True
                      ) -> tuple[KernelCall, ...]:
    """The stage's attention as unfused kernels (Megatron-LM 2021-22: batched GEMMs, a fused scale-mask-softmax
    kernel on the full s x s scores, attention dropout with a 1-byte mask), forward and backward per micro-batch.

    B = micro-batch x heads of the rank, q = its query tokens, k = key tokens (all of them under context
    parallelism), d = head dim, w = bytes per element. Selective recompute reruns QK^T, softmax and dropout in
    the backward (Korthikanti et al. 2022, Sec. 5); full recompute reruns the whole forward (added elsewhere).
    """
    w = dtype_bytes(activation_dtype(precision))
    big, q, d = plan.microbatch_size * shard.num_heads, plan.seq_len // plan.cp, shard.head_dim
    k = q * plan.cp
    n = shard.num_layers
    scores = big * q * k  # elements of the s x s score matrix of the rank

    def bmm(shapes: tuple[tuple[int, ...], ...], phase: str, reps: int = 1) -> KernelCall:
        (bb, m, kk), (_, _, nn) = shapes
        cost = Cost(matrix_flops=2.0 * bb * m * nn * kk, bytes_read=w * bb * (m * kk + kk * nn),
                    bytes_written=w * bb * m * nn)
        return KernelCall(family="gemm", op="aten.bmm", shapes=shapes, dtype=precision, cost=cost, count=n * reps,
                          module="layers.attention", phase=phase)

    def stream(family: str, op: str, reads: float, writes: float, phase: str, reps: int = 1) -> KernelCall:
        cost = Cost(vector_flops=5.0 * scores if family == "softmax" else float(scores),
                    bytes_read=reads * w * scores, bytes_written=writes * w * scores)
        return KernelCall(family=family, op=op, shapes=((big, q, k),), dtype=precision, cost=cost, count=n * reps,
                          module="layers.attention", phase=phase)

    mask = 0.5 if dropout else 0.0  # a 1-byte mask per 2-byte element
    again = 1 if plan.recompute == "selective" else 0
    calls = [
        bmm(((big, q, d), (big, d, k)), "forward"),  # scores = Q K^T
        stream("softmax", "aten._softmax", 1, 1, "forward"),
        bmm(((big, q, k), (big, k, d)), "forward"),  # out = P V
        bmm(((big, q, d), (big, d, k)), "backward"),  # dP = dO V^T
        bmm(((big, k, q), (big, q, d)), "backward"),  # dV = P^T dO
        stream("softmax", "aten._softmax_backward_data", 2, 1, "backward"),
        bmm(((big, q, k), (big, k, d)), "backward"),  # dQ = dS K
        bmm(((big, k, q), (big, q, d)), "backward"),  # dK = dS^T Q
    ]
    if dropout:
        calls += [stream("elementwise", "aten.native_dropout", 1, 1 + mask, "forward"),
                  stream("elementwise", "aten.native_dropout_backward", 1 + mask, 1, "backward")]
    if again:
        calls += [bmm(((big, q, d), (big, d, k)), "backward"), stream("softmax", "aten._softmax", 1, 1, "backward")]
        if dropout:
            calls.append(stream("elementwise", "aten.native_dropout", 1, 1 + mask, "backward"))
    return tuple(calls)


def _shard_compute(model: TransformerConfig, plan: Plan, trace: Trace, shard: TransformerConfig, precision: str,
                   attention: str) -> tuple[KernelCall, ...]:
    out: list[KernelCall] = []
    for c in trace.calls:
        if c.family == "attention" and attention == "unfused":
            continue
        if c.family == "attention" and plan.cp > 1:
            c = dataclasses.replace(c, count=c.count * plan.cp)
        elif (plan.sequence_parallel and plan.tp > 1 and c.family in ELEMENTWISE_FAMILIES and part_of(c) == "layers"
              and any(s and s[-1] == model.hidden_size for s in c.shapes)):
            c = dataclasses.replace(c, cost=c.cost * (1.0 / plan.tp))
        out.append(c)
    if attention == "unfused":
        out += unfused_attention(shard, plan, precision)
    return tuple(out)


def stage_params(model: TransformerConfig, shard: TransformerConfig, plan: Plan) -> tuple[float, float]:
    """(parameters, routed-expert parameters) on the busiest rank: its layers plus embedding or head, with its
    experts split etp ways."""
    return _stage_params(model, shard, plan.etp, plan.pp > 1)


@functools.lru_cache(maxsize=4096)
def _stage_params(model: TransformerConfig, shard: TransformerConfig, etp: int, staged: bool) -> tuple[float, float]:
    h, v = shard.hidden_size, shard.vocab_size
    positions = shard.max_seq_len * h if shard.positions == "learned" else 0
    norm = h * (2 if shard.norm == "layernorm" else 1)
    embed = v * h + positions
    head = v * h + norm
    tied = v * h if shard.tie_embeddings else 0
    traced_experts = shard.num_routed_expert_params()
    rank_experts = dataclasses.replace(shard, moe_ffn_hidden_size=model.moe_ffn_hidden_size // etp)
    experts = rank_experts.num_routed_expert_params()  # the shard's experts, each 1/etp of the model's width
    layers = shard.num_params() - embed - head + tied - traced_experts + experts
    total = layers + max(embed, head) if staged else layers + embed + head - tied
    return float(total), float(experts)


def trainable_params(model: TransformerConfig, shard: TransformerConfig, plan: Plan, *,
                     gemm_groups: bool = False) -> tuple[float, float]:
    """(parameters, routed-expert parameters) the busiest rank trains: all of `stage_params`, or under LoRA only
    its layers' adapters (on top of the frozen stage weights; the embedding and head are frozen too), one per
    fused Linear under a stack's `fusion.gemm_groups`."""
    if model.lora is None:
        return stage_params(model, shard, plan)
    return float(adapter_params(shard, model.lora, grouped=gemm_groups)), 0.0


def _collective(op: str, payload: float, count: float, group: str, slot: str, phase: str, dtype: str,
                module: str = "layers", fanout: int = 0) -> KernelCall:
    cost = Cost(comm_bytes=payload, comm_steps=1.0, bytes_read=payload, bytes_written=payload)
    params: tuple[tuple[str, object], ...] = (("group", group), ("slot", slot))
    return KernelCall(family="collective", op=op, shapes=((int(payload),),), dtype=dtype, cost=cost,
                      count=max(int(round(count)), 0), module=module, phase=phase,
                      params=params + ((("fanout", fanout),) if fanout else ()))


def groups_of(plan: Plan) -> dict[str, Group]:
    """Communicators in Megatron's rank order (tp fastest, then cp, dp, pp; expert layers fold tp*cp*dp into
    etp, then ep, then edp)."""
    return {
        "tp": Group(plan.tp, 1),
        "cp": Group(plan.cp, plan.tp),
        "ep": Group(plan.ep, plan.etp),
        "dp": Group(plan.dp * plan.cp, plan.tp),
        "edp": Group(plan.edp, plan.etp * plan.ep),
        "pp": Group(2 if plan.pp > 1 else 1, plan.tp * plan.cp * plan.dp),
    }


def collectives(model: TransformerConfig, shard: TransformerConfig, plan: Plan, precision: str,
                params: float, expert_params: float,
                trainable: tuple[float, float] | None = None, dispatcher: str = "alltoall",
                selective: Policy = "attention_core") -> tuple[KernelCall, ...]:
    """The collectives one rank issues per micro-batch (slot 'microbatch') and per step (slot 'step').

    `params`, `expert_params`: the rank's weights; `trainable`: (parameters, routed-expert parameters) it trains
    when not all of them (LoRA adapters): gradients are reduced, and ZeRO-1/2 parameters gathered, for those only.
    `dispatcher`: the MoE token dispatcher (`moe.token_dispatcher`): `alltoall` sends a token once per routed expert,
    `flex` (DeepEP, HybridEP) once per remote domain and target rank (`network.Network.time`'s `dispatch`).
    A forward the backward reruns communicates again: full recompute's tensor- and expert-parallel collectives,
    and the dispatch and combine of MoE blocks that selective recompute reruns (`selective`: the stack's policy,
    Megatron-Core's `moe` module, `cluster.recompute`).
    """
    w = dtype_bytes(activation_dtype(precision))
    dt = precision
    b, s, h, n = plan.microbatch_size, plan.seq_len // plan.cp, model.hidden_size, shard.num_layers
    act = b * s * h * w  # one [b, s, h] activation of the rank's sequence chunk
    out: list[KernelCall] = []
    modules = recomputed_modules(plan.recompute, selective)
    moe_repeats = 2 if plan.recompute == "full" or "moe" in modules else 1
    if plan.tp > 1:
        # Per layer and direction: two all-reduces (attention, MLP), or with sequence parallelism two all-gathers
        # and two reduce-scatters (Korthikanti et al. 2022, Sec. 4.2.2); full recompute repeats the forward's, a
        # recomputed feed-forward module its own.
        ops = ("all_gather", "reduce_scatter") if plan.sequence_parallel else ("all_reduce",)
        again = 2 * n if plan.recompute == "full" else (
            ("mlp" in modules) * (n - shard.num_moe_layers) + ("moe" in modules) * shard.num_moe_layers)
        for op in ops:
            out.append(_collective(op, act, 2 * n + again, "tp", "microbatch", "forward", dt))
            out.append(_collective(op, act, 2 * n, "tp", "microbatch", "backward", dt))
        out.append(_collective(ops[-1], act, 1, "tp", "microbatch", "forward", dt, module="embed"))
    if plan.cp > 1:
        kv = 2 * b * s * shard.num_kv_heads * shard.head_dim * w
        out.append(_collective("send_recv", kv, n * (plan.cp - 1), "cp", "layer", "forward", dt))
        out.append(_collective("send_recv", kv, 2 * n * (plan.cp - 1), "cp", "layer", "backward", dt))
    if plan.ep > 1 and shard.num_moe_layers:
        tokens = b * s // (plan.tp if plan.sequence_parallel else 1)
        k = model.num_experts_per_token
        a2a = tokens * k * h * w  # one copy per routed expert
        for phase in ("forward", "backward"):  # dispatch and combine
            times = 2 * shard.num_moe_layers * (moe_repeats if phase == "forward" else 1)
            if dispatcher == "flex":  # DeepEP / HybridEP: copies deduplicated per remote domain and target rank
                out.append(_collective("dispatch", a2a, times, "ep", "microbatch", phase, dt, fanout=k))
            else:
                out.append(_collective("all_to_all", a2a, times, "ep", "microbatch", phase, dt))
    if plan.pp > 1:
        p2p = act / plan.tp
        for phase in ("forward", "backward"):
            out.append(_collective("send_recv", p2p, plan.virtual_stages, "pp", "microbatch", phase, dt, "pipeline"))
    kept = tuple(c for c in out if c.count > 0 and c.cost.comm_bytes > 0)
    return kept + data_parallel_collectives(plan, precision, n, params, expert_params, trainable)


def data_parallel_collectives(plan: Plan, precision: str, num_layers: int, params: float, expert_params: float,
                              trainable: tuple[float, float] | None = None) -> tuple[KernelCall, ...]:
    """The data-parallel (dp, edp) part of `collectives`: what differs between plans that share a rank's compute
    (only dp, the ZeRO stage and the batch). Cached by the sizes it reads."""
    sizes = Plan(tp=plan.tp, cp=plan.cp, dp=plan.dp, ep=plan.ep, etp=plan.etp, zero=plan.zero, fsdp=plan.fsdp)
    return _data_parallel_collectives(sizes, precision, num_layers, params, expert_params, trainable)


@functools.lru_cache(maxsize=16384)
def _data_parallel_collectives(plan: Plan, precision: str, num_layers: int, params: float, expert_params: float,
                               trainable: tuple[float, float] | None) -> tuple[KernelCall, ...]:
    w = dtype_bytes(activation_dtype(precision))
    dt, n = precision, num_layers
    out: list[KernelCall] = []
    trained, trained_experts = trainable if trainable is not None else (params, expert_params)
    stage = plan.shard_stage
    if plan.dp * plan.cp > 1 or plan.edp > 1:
        for group, size, grads in (("dp", params - expert_params, trained - trained_experts),
                                   ("edp", expert_params, trained_experts)):
            if stage == 0 and grads > 0:
                out.append(_collective("all_reduce", grads * w, 1, group, "step", "optimizer", dt, "step"))
            elif stage in (1, 2) and grads > 0:
                out.append(_collective("reduce_scatter", grads * w, 1, group, "step", "optimizer", dt, "step"))
                out.append(_collective("all_gather", grads * w, 1, group, "step", "optimizer", dt, "step"))
            elif stage >= 3 and size > 0:  # ZeRO-3 / FSDP: per layer, per micro-batch (prefetched one layer ahead)
                out.append(_collective("all_gather", size * w / max(n, 1), n, group, "layer", "forward", dt))
                out.append(_collective("all_gather", size * w / max(n, 1), n, group, "layer", "backward", dt))
                out.append(_collective("reduce_scatter", grads * w / max(n, 1), n, group, "layer", "backward", dt))
    return tuple(c for c in out if c.count > 0 and c.cost.comm_bytes > 0)


ATTENTION = ("fused", "unfused")


@functools.lru_cache(maxsize=2048)
def _rank_compute(model: TransformerConfig, plan: Plan, precision: str, attention: str, fused: tuple[str, ...],
                  cast_bytes: float, grouped: bool, gemm_groups: bool, low_head: bool = True, streams: int = 0
                  ) -> tuple[TransformerConfig, Trace, tuple[KernelCall, ...]]:
    """(shard, its trace as the stack runs it, one micro-batch's compute calls) of a rank: the same for plans that
    differ only in dp, ZeRO stage, global batch or etp, which the caller normalises away."""
    shard = rank_shard(model, plan)
    traced = trace_workload(shard, "train", plan.microbatch_size, plan.seq_len // plan.cp, 0,
                            activation_dtype(precision))
    traced = group_gemms(traced) if gemm_groups else traced  # before fuse, which reads the grouped data flow
    traced = traced if low_head else keep_head_dtype(traced)
    trace = low_precision_casts(fuse(traced, fused), precision, cast_bytes)
    trace = group_experts(trace, streams) if grouped else trace
    return shard, trace, _shard_compute(model, plan, trace, shard, precision, attention)


def rank_program(model: TransformerConfig, plan: Plan, precision: str, attention: str = "fused",
                 stack: StackProfile | None = None) -> RankProgram:
    """The program one rank of `plan` runs (traces and compute calls are cached across dp, ZeRO and batch), as
    the software `stack` runs it (None: the traced eager program): the kernel families it fuses per module region
    (`engine.stack.fuse`), its low-precision recipe's casts (`engine.stack.low_precision_casts`), its grouped
    MoE kernels (`engine.stack.group_experts`, on the stack's expert GEMM streams), its fused sibling Linears
    (`engine.gemm_groups`), its LM head's precision (`engine.stack.keep_head_dtype`), its MoE token
    dispatcher and its host's dispatch time outside CUDA graphs (`cluster.host`)."""
    fused = stack.fused_families if stack else ()
    cast_bytes = float(stack.get("recipe.cast_bytes_per_element")) if stack else 0.0
    grouped = bool(stack.get("moe.grouped_gemm")) if stack else False
    streams = int(stack.get("moe.expert_gemm_streams")) if stack else 0
    gemm_groups = bool(stack.get("fusion.gemm_groups")) if stack else False
    dispatcher = str(stack.get("moe.token_dispatcher")) if stack else "alltoall"
    low_head = bool(stack.get("recipe.low_precision_head")) if stack else True
    selective = stack.get("recompute.selective") if stack else "attention_core"
    # Only unfused attention's recomputed scores read the recompute policy: otherwise plans of every policy share
    # one compute (recompute changes the schedule, `training_step`, not the traced calls).
    compute_plan = dataclasses.replace(plan, dp=1, zero=0, fsdp=False, global_batch_size=plan.microbatch_size, etp=1,
                                       recompute=plan.recompute if attention == "unfused" else "none")
    shard, trace, compute = _rank_compute(model, compute_plan, precision, attention, fused, cast_bytes,
                                          grouped, gemm_groups, low_head, streams)
    params, experts = stage_params(model, shard, plan)
    trained = trainable_params(model, shard, plan, gemm_groups=gemm_groups)
    return RankProgram(
        shard=shard, plan=plan, compute=compute,
        collectives=collectives(model, shard, plan, precision, params, experts, trained, dispatcher, selective),
        groups=groups_of(plan),
        num_layers=shard.num_layers, num_moe_layers=shard.num_moe_layers, stage_params=params,
        expert_params=experts, trace=trace, trainable_params=trained[0], trainable_expert_params=trained[1],
        attention=attention, end_chunks=max(plan.pp * plan.virtual_stages - model.num_layers, 0),
        selective=selective, host=HostDispatch.of(stack))
