"""Device transfer at the kernel level, MoE: NVIDIA AIConfigurator's measured TensorRT-LLM fused MoE tables
(emulator/data/aic_moe_trtllm.csv) against the emulator's routed experts on each chip.

The rows are TensorRT-LLM 1.3.0rc20 MoE forwards as AIConfigurator's collector times them
(collector/trtllm/collect_moe.py: `create_moe(...).forward(hidden_states, router_logits)` replayed in a CUDA graph,
routing balanced over the experts): the routing of given logits, the tokens' permutation, both expert GEMMs and the
activation, the un-permutation summing each token's weighted expert rows; not the router's GEMM. Four expert
shapes (hidden / expert FFN / experts / top-k: Qwen3-30B-A3B 2048/768/128/8, Qwen3-235B-A22B 4096/1536/128/8,
Mixtral 4096/14336/8/2, DeepSeek-V3 7168/2048/256/8), in bf16, fp8 (per tensor) and fp8 with 128-wide blocks,
each over eight ranks as expert parallelism (8 x 1/8 of the experts) or tensor parallelism (every expert's FFN
split 8 ways), at 1 to 8192 tokens, on H100, H200, B200, GB200, B300 and GB300. Beside them, TensorRT-LLM 1.2.0rc5's
weight-only MXFP4 experts on Hopper (`w4a16_mxfp4`: gpt-oss-120b's 2880/2880/128/4, 4-bit weights widened to bf16
inside the kernel, no 4-bit matrix units on H100 and H200) at the layouts the published gpt-oss rows ran (tp 1, 2, 4
and 8, tp 2 x ep 2, ep 8), predicted as the `w4a16` precision: what the engine's weight-only items
(`recipe.weight_only_widen_ops`, `recipe.weight_only_math_share`) were fitted on (scripts/fit_stacks.py kernels).

Each row is predicted as one rank's routed experts of a one-layer model of that shape (`serving.replica.shard`:
tp = moe_tp x moe_ep ranks, ep = moe_ep), with the load the table was measured under (`expert_load: balanced`: the T x k
assignments spread evenly over min(E, T x k) experts: 16 tokens x top-8 read 128 experts of a tensor-parallel rank's
128 (Qwen3-235B-A22B) or 256 (DeepSeek-V3), where random routing would touch 82 or 102 and that band came out 23%
fast, 10% fast now), traced at the row's tokens and run as the TensorRT-LLM stack runs it
(`engine_trace`: grouped expert GEMMs, fused kernels; `engine_device`: the graph's gap per kernel; `engine_table`:
fp8 expert GEMMs on the 16-bit shape response, as a serving step times them), timed over the
MoE block's own kernels (`attention_dp.routed_expert_s`: not its router or shared experts). fp8 and fp8 with
blocks are both the `fp8` precision. Where top-k is smaller than the expert-parallel ranks (Mixtral's top 2 of 8
experts at ep 8) a rank's experts receive the k / ep share of the tokens (`shard`'s `routed_per_token`). Nothing
here is fitted: H100 and H200 run on their own calibrations, the
Blackwell chips on the H200's moved to their achievable rates (`engine.transfer`). Error = predicted / measured - 1,
summarised per chip and format and per token-count band. The weight-only rows are in-sample for the engine's
items (their fit record holds the leave-one-chip-out errors); the rest is fitted on nothing.

Section `aic_moe_sglang` checks SGLang the same way (emulator/data/aic_moe_sglang.csv): SGLang 0.5.9's Triton fused
MoE on H200 as AIConfigurator's collector times it (collector/sglang/collect_moe.py, balanced routing), the shapes of
Qwen3-30B-A3B, Qwen3-235B-A22B and DeepSeek-V3 in bf16 and fp8 with 128-wide blocks, at ep 8 and at tensor-parallel
experts (tp 8; Qwen3-30B-A3B's 768-wide experts tp 4 x ep 2), 1 to 8,192 tokens, run as the SGLang stack runs a
serving step, summarised per format and layout: the test of how the engine's MoE kernels are modelled (its fused
permutes, `moe.fused_permute`; its small tiles' operand reloads, `moe.grouped_gemm_tile`, at Hopper's L2 bandwidth,
the one figure fitted on these rows: scripts/fit_stacks.py l2, each expert shape held out in turn).

Section `aic_moe_vllm` checks vLLM likewise (emulator/data/aic_moe_vllm.csv): vLLM 0.14's fused MoE on H200 (kernel
source `vllm_fused_moe`, AIConfigurator's collector/vllm, balanced routing), the shapes of Qwen3-30B-A3B,
Qwen3-235B-A22B, Mixtral-8x7B and DeepSeek-V3 in bf16, fp8 per tensor and fp8 with 128-wide blocks, its experts
split over tp 1, 2, 4 and 8 (as the table has them), 1 to 8,192 tokens, run as the vLLM stack runs a serving step.
Fitted on nothing: the check of vLLM's MoE items (its profile keeps the eager permutes and the calibrated GEMM's
tiles) before any is fitted.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch

from emulator.engine.predict import time_trace
from emulator.engine.stack import engine_trace
from emulator.engine.trace import trace_workload
from emulator.files import shipped
from emulator.hardware import DeviceProfile
from emulator.serving.attention_dp import grouped_gemm_excess_s, routed_expert_s
from emulator.serving.replica import shard
from emulator.stacks import load_stack
from emulator.validation.kernel_tables import check, read_rows, render_by_chip
from emulator.workloads.config import TransformerConfig
from emulator.workloads.presets import preset

CSV = shipped("data") / "aic_moe_trtllm.csv"
SOURCE = "AIConfigurator MoE tables (TRT)"
ENGINE = "trtllm"
# the table's moe_dtype -> the emulator's precision
FORMATS = {"bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8", "w4a16_mxfp4": "w4a16"}
# A model of each expert shape (hidden, expert FFN, experts, top-k): only its MoE block is timed.
SHAPES = {(2048, 768, 128, 8): "qwen3-30b-a3b", (4096, 1536, 128, 8): "qwen3-235b-a22b",
          (4096, 14336, 8, 2): "mixtral-8x7b", (7168, 2048, 256, 8): "deepseek-v3",
          (2880, 2880, 128, 4): "gpt-oss-120b"}
BANDS = (("tokens <= 16", 1, 16), ("tokens 128-1024", 128, 1024), ("tokens >= 4096", 4096, 1 << 30))
WHOLE = ("num_tokens", "hidden_size", "inter_size", "num_experts", "topk", "moe_tp_size", "moe_ep_size")


SGLANG_CSV = shipped("data") / "aic_moe_sglang.csv"
SGLANG_SOURCE = "AIConfigurator MoE tables (SGLang)"
VLLM_CSV = shipped("data") / "aic_moe_vllm.csv"
VLLM_SOURCE = "AIConfigurator MoE tables (vLLM)"
# engine -> its measured table and source
TABLES = {ENGINE: (CSV, SOURCE), "sglang": (SGLANG_CSV, SGLANG_SOURCE), "vllm": (VLLM_CSV, VLLM_SOURCE)}
# The tables summarised per format and layout (every engine's but TensorRT-LLM's): the kernel measured, the engine
BY_LAYOUT = {SGLANG_SOURCE: ("SGLang 0.5.9's Triton fused MoE", "SGLang"),
             VLLM_SOURCE: ("vLLM 0.14's fused MoE", "vLLM")}


def rows(engine: str = ENGINE) -> list[dict[str, Any]]:
    return read_rows(TABLES[engine][0], WHOLE)


@functools.lru_cache(maxsize=64)
def one_layer(hidden: int, ffn: int, experts: int, top_k: int, tp: int, ep: int) -> TransformerConfig:
    """One rank's shard of a one-layer model with this expert shape: all its layers MoE, no shared experts, its
    experts loaded as the collector balanced them."""
    model = preset(SHAPES[(hidden, ffn, experts, top_k)])
    assert isinstance(model, TransformerConfig)
    assert model.hidden_size == hidden and model.moe_ffn_hidden_size == ffn and model.num_experts == experts
    return shard(dataclasses.replace(model, num_layers=1, num_dense_layers=0, num_shared_experts=0,
                                     expert_load="balanced"), tp, ep)


def predict_s(device: DeviceProfile, table: Any, row: dict[str, Any], engine: str = ENGINE) -> float:
    part = one_layer(row["hidden_size"], row["inter_size"], row["num_experts"], row["topk"],
                     row["moe_tp_size"] * row["moe_ep_size"], row["moe_ep_size"])
    stack = load_stack(engine, "serving")
    precision = FORMATS[row["moe_dtype"]]
    timing = time_trace(engine_trace(trace_workload(part, "decode", row["num_tokens"], 1, 1, torch.bfloat16), stack),
                        device, table, precision)
    return routed_expert_s(timing) + grouped_gemm_excess_s(timing, stack, device, precision)


def validate_moe_tables(keep: Callable[[dict[str, Any]], bool] | None = None,
                        engine: str = ENGINE) -> dict[str, Any]:
    """Every row of `engine`'s table predicted (those `keep` keeps); the `--json` section `aic_moe` of
    `validate --published` (`aic_moe_sglang` and `aic_moe_vllm` for SGLang's and vLLM's, their formats kept apart by
    layout)."""
    by_layout = engine != ENGINE  # another engine's table is summarised per format and layout
    prefix = f"aic-moe-{engine}" if by_layout else "aic-moe"

    def case(r: dict[str, Any]) -> dict[str, Any]:
        layout = f"tp{r['moe_tp_size']}ep{r['moe_ep_size']}"
        shape = f"{r['hidden_size']}x{r['inter_size']}x{r['num_experts']}k{r['topk']}:{layout}:{r['num_tokens']}"
        own = {"kernel": f"{r['moe_dtype']} {layout}"} if by_layout else {}
        model = SHAPES[(r["hidden_size"], r["inter_size"], r["num_experts"], r["topk"])]
        return {"id": f"{prefix}:{r['device']}:{r['moe_dtype']}:{shape}", "moe_dtype": r["moe_dtype"], **own,
                "model": model,
                "metric": f"{r['moe_dtype']} MoE layer s, {r['device']}", "num_tokens": r["num_tokens"]}

    chosen = [r for r in rows(engine) if keep is None or keep(r)]
    return check(TABLES[engine][1], load_stack(engine, "serving"), chosen, functools.partial(predict_s, engine=engine),
                 case, "kernel" if by_layout else "moe_dtype", "num_tokens", BANDS)


def render(section: dict[str, Any]) -> str:
    if section["source"] in BY_LAYOUT:
        kernel, name = BY_LAYOUT[section["source"]]
        return render_by_chip(f"Kernel level: {section['source']}, {kernel} on H200, balanced routing, timed as the "
                              f"{name} stack's serving steps time them, by format and layout (error = predicted / "
                              "measured - 1)", section, "kernel", BANDS)
    return render_by_chip(f"Kernel level: {SOURCE}, TensorRT-LLM 1.3.0rc20 fused MoE forwards replayed in a CUDA "
                          "graph (w4a16_mxfp4: 1.2.0rc5's, which the engine's weight-only items were fitted on), "
                          "balanced routing, timed as the engine's serving steps time them (error = predicted / "
                          "measured - 1; Blackwell takes the H200's calibration moved to its achievable rates)",
                          section, "moe_dtype", BANDS)


__all__ = ["CSV", "SGLANG_SOURCE", "SOURCE", "TABLES", "VLLM_SOURCE", "one_layer", "predict_s", "render", "rows",
           "validate_moe_tables"]
