"""One serving replica (tp x pp devices): the step time of a continuous-batching iteration and its KV capacity.

Step-time model (built once per model, device, precision and layout from traced and predicted kernels; the
simulator never traces):
    step = combine(host(logit rows), dense(tokens) + head(logit rows)) + p_pair * attention pairs of prefill chunks
                    + p_kv * KV tokens read by decodes;  at least the prompt launches with prompt tokens
    host(r) = overhead + per_token * r;  combine = max when the engine overlaps its host work with the device's
    (`host.overlap`), else the sum
- dense(n): every kernel of the tensor-parallel shard except the output head, for n tokens in the batch
  (prefill chunk tokens + one per decoding sequence), taken from decode traces at batch n and interpolated
  piecewise-linearly over a token grid. It holds the GEMMs' weight streaming at small n (memory bound until
  n reaches the device's ridge point), their compute at large n, MoE expert loading (uniform routing; with
  expert parallelism the busiest rank's share, `stats.busiest_rank_factor`, which every rank waits for), and
  the tensor-parallel all-reduces (2 per layer of [n, hidden] bf16, `emulator.cluster.network`), each waiting
  for the slowest rank (`comm.rank_skew_s`).
- head(r): the output projection for the r sequences that produce a token this iteration.
- p_kv: decode attention and cache traffic per KV token (slope between two decode traces of different context),
  scaled by the KV precision's bytes (decode attention is memory bound).
- p_pair: prefill attention per (query, key) pair (slope between two prefill traces); a chunk of c tokens after
  p cached ones has c*p + c(c+1)/2 pairs.
- the eager elementwise chain of each layer (norms, residual adds, activation, rotary, casts, cache copies) is
  replaced by the fused kernels serving engines run (`fused_layer_calls`), timed by the roofline.
- host(r): the engine's host time per iteration: the scheduler's (`host.scheduler_overhead_s` unless the scenario sets
  `scheduler_overhead_s`) plus its time per token produced (`host.per_token_s`: sampling, detokenizing and
  streaming each, per request). An engine that schedules iteration i + 1 while the device runs i (`host.overlap`:
  SGLang's overlap scheduler, TensorRT-LLM's overlap scheduler, vLLM's async scheduling) takes the longer of its
  host time and the device's dense and head work; the attention terms that grow with the context follow it (the
  bound is the device's time apart from them: a simplification that keeps a decode run's time linear in its
  length, so the simulator advances whole runs at once).
- prompt launches: engines that replay CUDA graphs of decode-only batches (TensorRT-LLM, SGLang) launch an
  iteration carrying prompt tokens kernel by kernel from the host, so it takes at least its kernels (and one
  all-reduce per half layer at tp > 1) times `host.prompt_launch_s`: a floor that binds for small models at high
  tp and on fast devices.
Pipeline parallel replicas are timed as the sum of their stages plus the activation hand-offs (no micro-batch
overlap between iterations: a pessimistic throughput). Attention data-parallel replicas: `serving.attention_dp`.

KV capacity: usable memory minus weights (params x precision bytes / (tp x pp)) minus a workspace for one
iteration's activations and logits, times `FREE_MEMORY_FRACTION`, in whole paged blocks of `KV_BLOCK_TOKENS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from emulator.cluster.shard import shard_config
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.memory import (
    kv_bytes_per_token,
    serving_weight_bytes,
    workspace_bytes,
)
from emulator.engine.predict import time_trace
from emulator.engine.roofline import error_band
from emulator.engine.stack import engine_device, engine_table, engine_trace
from emulator.engine.timing import KernelTiming, Timing
from emulator.engine.trace import trace_workload
from emulator.errors import EmulatorError
from emulator.hardware import DeviceProfile, SystemProfile
from emulator.precision import DTYPE_BYTES, activation_dtype
from emulator.serving.attention_dp import (
    attention_rank,
    check_attention_dp,
    grouped_gemm_excess_s,
    kv_bytes_per_token_per_rank,
    routed_expert_s,
)
from emulator.serving.attention_dp import weight_bytes as attention_dp_weight_bytes
from emulator.serving.prediction import ReplicaLayout
from emulator.serving.scheduling import DEFAULT_SCHEDULING, Scheduling
from emulator.serving.stepcomm import attention_dp_comm_s
from emulator.serving.stepcomm import comm_s as _comm_s
from emulator.serving.stepmodel import Speculation, StepModel
from emulator.stacks import StackProfile, load_stack
from emulator.stats import busiest_rank_factor
from emulator.workloads.config import TransformerConfig

KV_BLOCK_TOKENS = 16  # paged-attention block (vLLM's default block size)
TOKEN_GRID = (1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


@dataclass(frozen=True, slots=True, kw_only=True)
class Replica:
    """A replica's layout, memory and step model."""

    model: TransformerConfig
    device: DeviceProfile
    system: SystemProfile | None
    precision: str
    kv_precision: str
    tp: int
    pp: int
    ep: int
    step: StepModel
    weight_bytes: float  # per device
    workspace_bytes: float  # per device
    kv_bytes_per_token: float  # per device
    kv_capacity_tokens: int  # per replica (every device holds its shard of each token)
    max_batch_tokens: int
    provenance: str
    error_band: float
    scheduling: Scheduling = DEFAULT_SCHEDULING  # the engine's scheduler policy (`scheduler.*`)
    max_sequences: int = 2048  # the engine's default cap on running sequences (`defaults.max_batch_size`)
    attention_dp: bool = False  # the tp ranks run attention data parallel: a token's KV lives on one device

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp

    @property
    def kv_cache_bytes(self) -> float:
        """KV-cache bytes of the whole replica."""
        return self.kv_capacity_tokens * self.kv_bytes_per_token * (self.pp if self.attention_dp else self.num_devices)

    def memory_parts(self) -> dict[str, float]:
        """One device's memory as the engine allocates it: weights, the KV pool, the iteration's workspace."""
        kv_tokens = self.kv_capacity_tokens // (self.tp if self.attention_dp else 1)  # a rank holds its own
        return {"weights": self.weight_bytes, "kv_cache": kv_tokens * self.kv_bytes_per_token,
                "activations": self.workspace_bytes}

    def describe(self) -> ReplicaLayout:
        return ReplicaLayout(tp=self.tp, pp=self.pp, ep=self.ep, precision=self.precision,
                             kv_precision=self.kv_precision, num_devices=self.num_devices,
                             attention_dp=self.attention_dp)


def shard(model: TransformerConfig, tp: int, ep: int, path: str | None = None) -> TransformerConfig:
    """The config one tensor-parallel rank of a replica runs (all layers: stages are timed in sequence). Experts
    spread over the tensor-parallel ranks: ep groups of them, each expert split tp/ep ways (TensorRT-LLM's
    moe_tp x moe_ep = tp)."""
    if model.num_heads % tp:
        raise EmulatorError(f"tp {tp} does not divide {model.name}'s {model.num_heads} heads. Fix: use a divisor.",
                            file=path, field="inference.parallel.tp")
    if ep > 1 and (not model.is_moe or model.num_experts % ep or tp % ep):
        raise EmulatorError(f"ep {ep} needs a MoE model whose experts it divides and a tp it divides (experts are "
                            "spread over the tensor-parallel ranks). Fix: use ep 1 or a divisor of both.",
                            file=path, field="inference.parallel.ep")
    part = shard_config(model, tp=tp, ep=ep, expert_tp=tp // ep)
    if ep > 1:
        # Every tensor-parallel rank sees the replica's whole batch, so each expert-parallel rank receives 1/ep of
        # the batch's T * k expert assignments: k / ep per token, a fraction where ep does not divide k (top-2 of 8
        # experts on 8 ranks: a quarter of the tokens reach a rank).
        k = model.num_experts_per_token
        part = dataclasses.replace(part, num_experts_per_token=max(k // ep, 1),
                                   routed_per_token=k / ep if k % ep else 0.0)
    return part


def _split(timing: Timing) -> tuple[float, float]:
    """(seconds outside the head, seconds of the head) of a timed step."""
    head = sum(k.time_s for k in timing.kernels if k.module.startswith("head"))
    return timing.total_s - head, head


_CACHE: dict[tuple[object, ...], tuple[StepModel, int]] = {}  # the device side, and a prompt iteration's launches


def step_model(model: TransformerConfig, device: DeviceProfile, system: SystemProfile | None, table: EfficiencyTable,
               precision: str, kv_precision: str, tp: int, pp: int, ep: int, overhead_s: float,
               engine: StackProfile | None = None, attention_dp: bool = False) -> StepModel:
    """Fit the step model from traces of the shard as the engine runs them (its fused kernels; without CUDA
    graphs, a launch per kernel on the host), cached per configuration. `attention_dp`: the tp ranks run attention
    data parallel (`serving.attention_dp`)."""
    engine = engine or load_stack(None, "serving")
    fused, grouped = engine.fused_families, bool(engine.get("moe.grouped_gemm"))
    base_shape = bool(engine.get("recipe.low_precision_gemm_shape"))
    gemm_groups = bool(engine.get("fusion.gemm_groups"))
    one_shot, skew = float(engine.get("comm.one_shot_allreduce_bytes")), float(engine.get("comm.rank_skew_s"))
    two_shot, link_share = (float(engine.get("comm.two_shot_allreduce_bytes")),
                            float(engine.get("comm.custom_allreduce_link_share")))
    per_token_s = float(engine.get("host.per_token_s"))
    overlap_host = bool(engine.get("host.overlap"))
    moe_kernel = (engine.get("moe.grouped_gemm_time_scale"),  # applied by grouped_gemm_excess_s
                  tuple(sorted(engine.get("moe.grouped_gemm_tile").items())), device.cache_bandwidth_bytes_per_s)
    low_head = bool(engine.get("recipe.low_precision_head"))
    weight_only = (float(engine.get("recipe.weight_only_widen_ops")),
                   float(engine.get("recipe.weight_only_math_share")))
    device, launch_s = engine_device(device, engine)
    prompt_launch_s = float(engine.get("host.prompt_launch_s")) if engine.get("host.cuda_graphs") else 0.0
    prompt_layer_s = float(engine.get("host.prompt_layer_s"))
    prompt_add_s = (prompt_layer_s * model.num_layers
                    + engine.prompt_moe_layer_s(device.family) * model.num_moe_layers)
    ranks = tp if attention_dp else 1  # each rank's own tokens: 1/ranks of the iteration's

    def hosted(device_side: StepModel, prompt_launches: int) -> StepModel:
        """The host's items on the traced device side: cheap, so a fit's grid over them reuses the traces."""
        return dataclasses.replace(device_side, overhead_s=overhead_s, host_per_row_s=per_token_s / ranks,
                                   overlap_host=overlap_host, prompt_host_s=prompt_launch_s * prompt_launches,
                                   prompt_add_s=prompt_add_s)

    # Keyed by the table's content: `efficiency_for` builds an equal table on every call.
    key = (model, device.name, device.launch_overhead_s, system.name if system else None, table.source,
           table.provenance, tuple(sorted(table.families.items())), precision, kv_precision, tp, pp, ep,
           fused, grouped, launch_s, one_shot, two_shot, link_share, base_shape, gemm_groups, moe_kernel,
           skew, low_head, attention_dp, weight_only)
    if key in _CACHE:
        return hosted(*_CACHE[key])
    table = engine_table(table, engine)
    part = shard(model, tp, ep)
    rank_part = attention_rank(model, tp) if attention_dp else part
    dtype = activation_dtype(precision)

    kernels: list[KernelTiming] = []

    def timed(phase: str, b: int, s: int, kv: int, of: TransformerConfig | None = None) -> Timing:
        timing = time_trace(engine_trace(trace_workload(of or rank_part, phase, b, s, kv, dtype), engine), device,
                            table, precision)
        kernels.extend(timing.kernels)
        return timing

    dense, head, launched = [], [], 0
    for m in TOKEN_GRID:  # a rank's tokens; the iteration's are ranks x m
        timing = timed("decode", m, 1, 1)
        launched = sum(k.count for k in timing.kernels)  # the same at every batch size; all-reduces come on top
        body, h = _split(timing)
        experts = timing
        if attention_dp:  # the routed experts take every rank's tokens: the tp shard's experts at ranks x m
            experts = timed("decode", ranks * m, 1, 1, part)
            body += routed_expert_s(experts) - routed_expert_s(timing)
        if ep > 1:  # the combine after the experts waits for the expert-parallel rank that drew the most work
            body += (busiest_rank_factor(ranks * m, model.num_experts_per_token, model.num_experts, ep) - 1.0) \
                * routed_expert_s(experts)
        body += grouped_gemm_excess_s(experts, engine, device, precision)
        launches = launch_s * launched
        comm = (attention_dp_comm_s(model, system, ranks, ranks * m, skew) if attention_dp else
                _comm_s(model, system, tp, pp, m, one_shot, skew, two_shot, link_share))
        dense.append(body + launches + comm)
        head.append(h)
    b0, l1, l2 = 16, 16, min(2048, model.max_seq_len - 1)
    t1, t2 = (_split(timed("decode", b0, 1, kv))[0] for kv in (l1, l2))
    # The traced cache is in the activation dtype; decode attention streams it, so its time scales with the KV bytes.
    kv_scale = DTYPE_BYTES[kv_precision] / DTYPE_BYTES[activation_dtype(precision)]
    kv_slope = max(t2 - t1, 0.0) / (b0 * (l2 - l1)) * kv_scale / ranks  # the ranks read their own caches at once
    s1, s2 = 256, min(4096, model.max_seq_len)

    def attention(s: int) -> float:
        return sum(k.time_s for k in timed("prefill", 1, s, 0).kernels if k.family == "attention")

    pair = max(attention(s2) - attention(s1), 0.0) / (s2 * (s2 + 1) / 2 - s1 * (s1 + 1) / 2) / ranks
    collectives = 2 * (model.num_moe_layers if attention_dp else model.num_layers) if tp > 1 else 0
    device_side = StepModel(grid=tuple(float(ranks * m) for m in TOKEN_GRID), dense_s=tuple(dense),
                            head_s=tuple(head), kv_s_per_token=kv_slope, pair_s=pair, overhead_s=0.0,
                            error_band=error_band(kernels, table))
    if len(_CACHE) > 4096:
        _CACHE.clear()
    _CACHE[key] = (device_side, launched + collectives)
    return hosted(device_side, launched + collectives)


def build_replica(model: TransformerConfig, device: DeviceProfile, system: SystemProfile | None,
                  table: EfficiencyTable, *, precision: str, kv_precision: str, tp: int = 1, pp: int = 1, ep: int = 1,
                  overhead_s: float | None = None, max_batch_tokens: int | None = None,
                  settings: tuple[tuple[str, Any], ...] = (),
                  speculative: tuple[int, float | tuple[float, ...]] | None = None, path: str | None = None,
                  engine: str | None = None, attention_dp: bool = False) -> Replica:
    """A replica with its step model and KV capacity as the serving `engine` (a stack of stack_profiles/serving;
    None: the default) runs it; an error when the weights leave no room for KV. `max_batch_tokens`, `overhead_s`
    and `settings` (stack item, value): the deployment's values instead of the engine's; `speculative`: (drafted
    tokens, acceptance rate or rates) of a `Speculation` by a one-layer drafter; `attention_dp`: the tp ranks run
    attention data parallel (`serving.attention_dp`: memory, KV cache, token budget and batch cap are per rank)."""
    stack = load_stack(engine, "serving", file=path).with_settings(settings)
    if tp * pp > 1 and system is None:
        raise EmulatorError(f"tp x pp = {tp * pp} devices need a system profile for their links. Fix: set "
                            "hardware.system.", file=path, field="hardware.system")
    shard(model, tp, ep, path)  # the layout is valid before anything is sized for it
    if attention_dp:
        check_attention_dp(model, tp, pp, path)
    ranks = tp if attention_dp else 1
    budget = max_batch_tokens or stack.count_for("defaults.max_batch_tokens", device.family, device.memory_bytes)
    overhead = float(stack.get("host.scheduler_overhead_s")) if overhead_s is None else overhead_s
    draft_share = 1.0 / model.num_layers if speculative else 0.0  # the drafter: one more layer, its cache and time
    low_head = bool(stack.get("recipe.low_precision_head"))
    weights = (attention_dp_weight_bytes(model, precision, tp, low_head) if attention_dp else
               serving_weight_bytes(model, precision, tp * pp, low_head)) * (1.0 + draft_share)
    workspace = workspace_bytes(model, budget, min(budget, 2048), 1 if attention_dp else tp)
    per_token = (kv_bytes_per_token_per_rank(model, kv_precision, pp) if attention_dp else
                 kv_bytes_per_token(model, kv_precision, tp, pp)) * (1.0 + draft_share)
    fraction = float(stack.get("defaults.kv_memory_fraction"))
    held_back = float(stack.get("defaults.kv_memory_reserve_bytes"))
    if held_back:  # SGLang: a fixed reserve for its activations and graphs, the rest for weights and the KV pool
        workspace = held_back
    if stack.get("defaults.kv_memory_of_total"):  # vLLM, SGLang: a share of the whole memory, weights inside it
        pool = fraction * device.memory_bytes - weights - workspace
    else:  # TensorRT-LLM: a share of what the weights and workspace leave
        pool = fraction * (device.memory_bytes - weights - workspace)
    capacity = int(max(pool, 0.0) // per_token // KV_BLOCK_TOKENS * KV_BLOCK_TOKENS) * ranks
    if capacity < KV_BLOCK_TOKENS:
        raise EmulatorError(
            f"{model.name} in {precision} needs {weights / 1e9:.1f} GB of weights per device at tp={tp}, pp={pp}, "
            f"leaving no room for a KV cache in {device.name}'s {device.memory_bytes / 1e9:.1f} GB. Fix: raise "
            "inference.parallel.tp (or pp), or use a lower precision.", file=path, field="inference.parallel.tp")
    steps = step_model(model, device, system, table, precision, kv_precision, tp, pp, ep, overhead, stack,
                       attention_dp)
    if speculative:
        steps = Speculation(*speculative).applied(steps, draft_share)
    return Replica(model=model, device=device, system=system, precision=precision, kv_precision=kv_precision, tp=tp,
                   pp=pp, ep=ep, step=steps, weight_bytes=weights, workspace_bytes=workspace,
                   kv_bytes_per_token=per_token, kv_capacity_tokens=capacity, max_batch_tokens=budget * ranks,
                   provenance=table.provenance, error_band=steps.error_band, scheduling=Scheduling.of(stack, ranks),
                   max_sequences=stack.count_for("defaults.max_batch_size", device.family, device.memory_bytes) * ranks,
                   attention_dp=attention_dp)


def check_capacity(requests: Any, kv_capacity_tokens: int, num_beams: int = 1, path: str | None = None) -> None:
    """A clear error when one request cannot fit the KV cache on its own."""
    need = int((requests.input_tokens + requests.output_tokens).max() + KV_BLOCK_TOKENS) * num_beams
    if need > kv_capacity_tokens:
        raise EmulatorError(
            f"one request needs {need} KV-cache tokens (input + output + one block"
            f"{f', x{num_beams} beams' if num_beams > 1 else ''}) but a replica holds only {kv_capacity_tokens}. "
            "Fix: raise inference.parallel.tp, use kv_precision: fp8, or shorten input_tokens/output_tokens.",
            file=path, field="inference.input_tokens")


def with_shared_prefix(replica: Replica, tokens: int) -> Replica:
    """The replica serving prompts that all begin with the same `tokens` tokens (a system prompt): where the engine
    caches prompt blocks (`Scheduling.prefix_caching`), a request admitted after the prefix was first computed
    prefills only past its whole KV blocks, which the cache holds once (vLLM and TensorRT-LLM reuse whole blocks;
    SGLang's radix tree would reuse a last partial block's tokens too, at most one block more)."""
    if not tokens or not replica.scheduling.prefix_caching:
        return replica
    cached = tokens // KV_BLOCK_TOKENS * KV_BLOCK_TOKENS
    return dataclasses.replace(replica, scheduling=dataclasses.replace(replica.scheduling, cached_prefix_tokens=cached))


def prefix_note(replica: Replica, tokens: int) -> str:
    """What a prediction says about a shared prefix of `tokens` tokens on this replica."""
    cached = replica.scheduling.cached_prefix_tokens
    if cached:
        return (f"shared prefix: {tokens} token(s) of every prompt, {cached} of them taken from the engine's prefix "
                "cache once the first request has computed them (defaults.prefix_caching)")
    return (f"shared prefix: {tokens} token(s) of every prompt, recomputed for each request (the engine caches no "
            "prompt blocks here, defaults.prefix_caching false, or the prefix is shorter than one KV block)")


def with_overhead(replica: Replica, overhead_s: float) -> Replica:
    """The same replica under another scheduler overhead."""
    return dataclasses.replace(replica, step=dataclasses.replace(replica.step, overhead_s=overhead_s))


__all__ = ["DEFAULT_SCHEDULING", "KV_BLOCK_TOKENS", "Replica", "Scheduling", "Speculation", "StepModel",
           "build_replica", "check_capacity", "prefix_note", "shard", "step_model", "with_shared_prefix"]
