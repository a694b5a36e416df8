"""Attention data parallelism in a serving replica (DeepSeek-style DP attention: TensorRT-LLM's
`enable_attention_dp`, SGLang's `--enable-dp-attention`, vLLM's data-parallel attention with expert parallelism).

A replica of `tp` devices runs them as `tp` attention ranks: each rank takes its own share of the requests and runs
attention, the dense layers, the shared experts, the router and the head on its own tokens with whole (unsplit)
weights, and keeps its own requests' KV cache (MLA's latent, which tensor parallelism replicates on every rank, is
held once). The routed experts stay spread over the ranks as without it (ep groups, each expert split tp/ep ways:
TensorRT-LLM's moe_tp x moe_ep = tp) and take every rank's tokens: per MoE layer the ranks all-gather their hidden
states before the experts and reduce-scatter the experts' output after them (TensorRT-LLM's attention-DP MoE without
its all-to-all backend; SGLang's DP attention gathers likewise; `stepcomm.attention_dp_comm_s`).

The step model (`replica.step_model` with `attention_dp`): for an iteration of n = tp x m tokens, a rank's part at
m tokens (its traced kernels but the routed experts', and its head for its rows) + the routed experts' kernels of the
tensor-parallel shard at n tokens + the gathers; the KV and prefill-attention slopes are one rank's over tp (the
ranks read their own caches at once). Memory per device: the whole non-expert weights and 1/tp of the routed
experts; the KV pool per device holds whole tokens of its own requests, so the replica holds tp pools; the token
budget and the running-sequence cap are the engine's per rank, tp times over for the replica.

Simplification: the ranks' loads are taken as equal (each holds 1/tp of the iteration's tokens and sequences). An
engine places each request on one rank, so a lone long prompt runs on one device: at low load the model understates
TTFT, and at any load a rank that drew more requests sets the iteration's time.
"""

from __future__ import annotations

import math

from emulator.cluster.shard import shard_config
from emulator.engine.memory import kv_bytes_per_token, serving_weight_bytes
from emulator.engine.timing import Timing
from emulator.errors import EmulatorError
from emulator.hardware import DeviceProfile
from emulator.precision import DTYPE_BYTES, WEIGHT_ONLY_BYTES, weight_bytes_per_param
from emulator.stacks import StackProfile
from emulator.workloads.config import TransformerConfig


def check_attention_dp(model: TransformerConfig, tp: int, pp: int, path: str | None = None) -> None:
    """Attention data parallelism needs a MoE model (it gathers tokens for the experts), several ranks and one
    pipeline stage."""
    if not model.is_moe:
        raise EmulatorError(f"attention_dp runs attention data parallel beside expert-parallel MoE layers; "
                            f"{model.name} has no experts. Fix: drop attention_dp (a dense model's data parallelism "
                            "is more replicas: raise hardware.num_devices).", file=path,
                            field="inference.parallel.attention_dp")
    if tp < 2:
        raise EmulatorError("attention_dp spreads the requests over the replica's tp ranks; tp is 1. Fix: set "
                            "inference.parallel.tp to the number of attention ranks (e.g. 8 with ep 8).", file=path,
                            field="inference.parallel.attention_dp")
    if pp > 1:
        raise EmulatorError(f"attention_dp with pipeline stages (pp {pp}) is not modelled: its ranks' hand-offs and "
                            "stage balance are not. Fix: use pp 1 (more replicas for more devices).", file=path,
                            field="inference.parallel.pp")


def attention_rank(model: TransformerConfig, tp: int) -> TransformerConfig:
    """What one attention rank runs on its own tokens: every weight whole (its routed experts are the tensor-
    parallel shard's and are timed from it)."""
    return shard_config(model, tp=1, ep=tp, expert_tp=1)


def _routed_blocks(timing: Timing) -> frozenset[str]:
    """The MoE blocks of a timed step: the modules whose `router` child ran."""
    return frozenset(k.module.rpartition(".")[0] for k in timing.kernels if k.module.endswith(".router"))


def routed_expert_s(timing: Timing) -> float:
    """Seconds of a timed step's routed-expert kernels: those of its MoE blocks themselves (grouped GEMMs,
    permute and un-permute, the experts' activation), not of their router or shared experts."""
    blocks = _routed_blocks(timing)
    return sum(k.time_s for k in timing.kernels if k.module in blocks)


def grouped_gemm_excess_s(timing: Timing, engine: StackProfile, device: DeviceProfile, precision: str) -> float:
    """Seconds the engine's grouped expert GEMMs take beyond the calibrated grouped GEMM's in a step timed in
    `precision` (with `moe.grouped_gemm`). Where the engine names its kernel's output tile for the GEMM's format
    (`moe.grouped_gemm_tile`) and the device its L2 bandwidth, each call also takes at least the time its tiles'
    operand reloads stream through the L2: every column tile reads an expert's rows again, every row tile its
    weights, where the calibrated GEMM's large tiles keep those reloads under its math or memory time. The whole
    then takes `moe.grouped_gemm_time_scale` times that. Weight-only formats (w4a16) run other kernels (Marlin and
    the like), which no tile map names."""
    if not engine.get("moe.grouped_gemm"):
        return 0.0
    scale, tiles = float(engine.get("moe.grouped_gemm_time_scale")), engine.get("moe.grouped_gemm_tile")
    l2_bytes_per_s = device.cache_bandwidth_bytes_per_s
    excess = 0.0
    for k in timing.kernels:
        if k.op != "grouped_mm":
            continue
        stretch = 1.0  # the call's time with its reloads over its time without
        if k.dtype in tiles and l2_bytes_per_s and precision not in WEIGHT_ONLY_BYTES:
            (experts, rows, inner), (_, _, cols) = k.shapes
            tile_rows, tile_cols = tiles[k.dtype]
            reload = experts * inner * (rows * math.ceil(cols / tile_cols) + cols * math.ceil(rows / tile_rows))
            busy = max(k.t_math_s, k.t_mem_s)
            stretch = (max(busy, reload * DTYPE_BYTES[k.dtype] / l2_bytes_per_s) + k.t_overhead_s) \
                / (busy + k.t_overhead_s)
        excess += (scale * stretch - 1.0) * k.time_s
    return excess


def weight_bytes(model: TransformerConfig, precision: str, tp: int, low_precision_head: bool = True) -> float:
    """Weights one attention rank holds: the whole model but 1/tp of its routed experts."""
    whole = serving_weight_bytes(model, precision, 1, low_precision_head)
    return whole - model.num_routed_expert_params() * weight_bytes_per_param(precision) * (1.0 - 1.0 / tp)


def kv_bytes_per_token_per_rank(model: TransformerConfig, kv_precision: str, pp: int = 1) -> float:
    """KV bytes a token of the rank's own requests takes on that rank: the whole token, every KV head."""
    return kv_bytes_per_token(model, kv_precision, 1, pp)


__all__ = ["attention_rank", "check_attention_dp", "kv_bytes_per_token_per_rank", "routed_expert_s", "weight_bytes"]
