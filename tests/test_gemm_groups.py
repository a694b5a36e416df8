"""Sibling Linears as one GEMM (`engine.gemm_groups`, `fusion.gemm_groups`): q, k, v and gate, up run as one GEMM in
the forward, the input gradient and the weight gradient, with the same FLOPs, fewer kernels and no slower; their
LoRA adapters run as one adapter in 16-bit."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from emulator.cluster.plan import Plan
from emulator.cluster.shard import rank_program
from emulator.engine.efficiency import SPEC_DEFAULTS
from emulator.engine.gemm_groups import group_gemms
from emulator.engine.predict import time_trace
from emulator.engine.roofline import call_dtype
from emulator.engine.stack import fuse, low_precision_casts
from emulator.engine.trace import Trace, trace_workload
from emulator.hardware import load_system
from emulator.precision import KEEP_DTYPE
from emulator.stacks import Item, load_stack
from emulator.workloads.config import TransformerConfig
from emulator.workloads.lora import LoraConfig
from emulator.workloads.lora_params import adapter_params
from emulator.workloads.presets import preset

FUSIBLE = ("elementwise", "copy", "reduction", "softmax", "norm")
LAYERS = 2


def _model(name: str = "llama3.1-8b", lora: LoraConfig | None = None) -> TransformerConfig:
    m = preset(name)
    assert isinstance(m, TransformerConfig)
    return dataclasses.replace(m.scaled(num_layers=LAYERS), lora=lora)


def _kernels(trace: Trace, phase: str) -> int:
    return sum(c.count for c in trace.calls if c.phase == phase and c.family != "view")


def test_forward_siblings_run_as_one_gemm_reading_the_input_once() -> None:
    """q, k, v (and gate, up) become one forward GEMM over their summed width with the same FLOPs and the shared
    input read once."""
    decode = trace_workload(_model(), "decode", 16, 1, 512, torch.bfloat16)
    grouped = group_gemms(decode)
    qkv = [c for c in grouped.calls if c.module.endswith("attention.wq+wk+wv")]
    up = [c for c in grouped.calls if c.module.endswith("feed_forward.w1+w3")]
    assert qkv and up and qkv[0].shapes == ((16, 4096), (4096, 4096 + 2 * 1024))
    assert up[0].shapes == ((16, 4096), (4096, 2 * 14336))
    assert not [c for c in grouped.calls if c.family == "gemm" and c.module.rpartition(".")[2] in ("wq", "wk", "w3")]
    before, after = decode.total_cost(), grouped.total_cost()
    assert after.matrix_flops == pytest.approx(before.matrix_flops)
    shared = (2 + 1) * 16 * 4096 * 2 * sum(c.count for c in qkv)  # x read by wk, wv and w3 no more
    assert after.bytes_read == pytest.approx(before.bytes_read - shared)
    assert group_gemms(decode) is grouped  # cached: the stack's fusion cache keyed by trace stays warm


def test_training_step_groups_forward_and_backward_with_the_same_flops() -> None:
    """Per layer: the forward loses 2 + 1 GEMMs (q, k, v; gate, up); the backward loses as many input-gradient
    GEMMs, as many weight-gradient GEMMs and the 2 + 1 adds that summed the members' input gradients."""
    step = trace_workload(_model(), "train", 1, 64, 0, torch.bfloat16)
    grouped = group_gemms(step)
    assert grouped.total_cost().matrix_flops == pytest.approx(step.total_cost().matrix_flops)
    assert _kernels(step, "forward") - _kernels(grouped, "forward") == LAYERS * (2 + 1)
    assert _kernels(step, "backward") - _kernels(grouped, "backward") == LAYERS * 3 * (2 + 1)
    backward = {c.shapes: c for c in grouped.calls if c.phase == "backward" and c.module.endswith("wq+wk+wv")}
    width = 4096 + 2 * 1024
    assert set(backward) == {((64, width), (width, 4096)), ((width, 64), (64, 4096))}  # dgrad, wgrad
    dgrad = backward[((64, width), (width, 4096))]
    assert dgrad.cost.bytes_written == 64 * 4096 * 2  # one summed input gradient, in bf16
    sums = [c for c in grouped.calls if c.phase == "backward" and c.op == "aten.add" and c.module.endswith(
        ("attention.wq", "attention.wk", "attention.wv", "feed_forward.w1", "feed_forward.w3"))]
    assert not sums
    assert len(grouped.flows) == len(step.flows) - (2 + 1)  # the adds' data flow goes too (one traced layer)


def test_fusion_after_grouping_has_no_gradient_sum_kernels() -> None:
    """The stack's fusion pass reads the grouped data flow: no fused kernel is left for the members' backward
    regions, whose only ops were the gradient sums."""
    step = trace_workload(_model(), "train", 1, 64, 0, torch.bfloat16)
    plain, grouped = fuse(step, FUSIBLE), fuse(group_gemms(step), FUSIBLE)
    regions = {c.module for c in plain.calls if c.phase == "backward" and c.op.startswith("fused(")}
    assert {m for m in regions if m.endswith(("attention.wq", "attention.wk", "feed_forward.w1"))}
    assert not {c.module for c in grouped.calls if c.phase == "backward" and c.op.startswith("fused(")
                and c.module.endswith(("attention.wq", "attention.wk", "attention.wv", "feed_forward.w1"))}


def test_grouped_training_step_is_not_slower() -> None:
    """Fewer launches and reads for the same work: a grouped step takes no longer than the ungrouped one."""
    device = load_system("hgx-h100").device
    step = trace_workload(_model(), "train", 1, 512, 0, torch.bfloat16)
    plain = time_trace(fuse(step, FUSIBLE), device, SPEC_DEFAULTS, "bf16").total_s
    grouped = time_trace(fuse(group_gemms(step), FUSIBLE), device, SPEC_DEFAULTS, "bf16").total_s
    assert grouped <= plain


def test_biased_siblings_group_with_their_bias() -> None:
    """Linears with a bias (addmm) group too: the merged call carries the summed bias."""
    step = trace_workload(dataclasses.replace(_model(), qkv_bias=True), "train", 1, 64, 0, torch.bfloat16)
    grouped = group_gemms(step)
    qkv = [c for c in grouped.calls if c.phase == "forward" and c.module.endswith("wq+wk+wv")]
    assert [c.shapes for c in qkv] == [((6144,), (64, 4096), (4096, 6144))]
    assert grouped.total_cost().matrix_flops == pytest.approx(step.total_cost().matrix_flops)


def test_lora_adapters_of_grouped_linears_are_one_adapter() -> None:
    """Under LoRA the frozen base has no weight gradient; each group's adapters become one A of rank r reading the
    input and one B over the summed width, in every pass. Per layer: forward 2 + 1 fewer base, A and B GEMMs;
    backward 2 + 1 fewer base input gradients, A and B input and weight gradients, and 2 x (2 + 1) gradient sums.
    The adapters' parameters are what `adapter_params(grouped=True)` counts."""
    lora = LoraConfig(rank=16)
    step = trace_workload(_model(lora=lora), "train", 1, 64, 0, torch.bfloat16)
    grouped = group_gemms(step)
    assert _kernels(step, "forward") - _kernels(grouped, "forward") == LAYERS * 3 * (2 + 1)
    assert _kernels(step, "backward") - _kernels(grouped, "backward") == LAYERS * (5 + 2) * (2 + 1)
    a = [c for c in grouped.calls if c.phase == "forward" and c.module.endswith("wq+wk+wv.lora_a")]
    b = [c for c in grouped.calls if c.phase == "forward" and c.module.endswith("wq+wk+wv.lora_b")]
    assert [c.shapes for c in a] == [((64, 4096), (4096, 16))] and [c.shapes for c in b] == [((64, 16), (16, 6144))]
    # The extra A's are gone (2 of q, k, v's and 1 of gate, up's: 2 * 64 * 4096 * 16 FLOPs each, in 3 passes).
    fewer = LAYERS * 3 * (2 + 1) * 2 * 64 * 4096 * 16
    assert grouped.total_cost().matrix_flops == pytest.approx(step.total_cost().matrix_flops - fewer)
    adapters = sum(c.weight_bytes / 2 * c.count for c in grouped.calls if c.phase == "forward"
                   and c.family == "gemm" and c.module.endswith((".lora_a", ".lora_b")))
    assert adapters == adapter_params(_model(), lora, grouped=True) < adapter_params(_model(), lora)


def test_grouped_adapters_stay_16_bit_under_an_fp8_recipe() -> None:
    """The one adapter of a fused Linear keeps its adapters' `KEEP_DTYPE`: no cast, no fp8; the fused base GEMM casts
    its input once."""
    device = load_system("hgx-h100").device
    step = group_gemms(trace_workload(_model(lora=LoraConfig()), "train", 1, 64, 0, torch.bfloat16))
    adapters = [c for c in step.calls if c.family == "gemm" and c.module.endswith(("+wv.lora_a", "+w3.lora_b"))]
    assert adapters and all(KEEP_DTYPE in c.params and call_dtype(c, "fp8", device) == "bf16" for c in adapters)
    casts = [c for c in low_precision_casts(step, "fp8", 3.0).calls if c.op == "cast_fp8"]
    assert not [c for c in casts if c.module.endswith((".lora_a", ".lora_b"))]
    qkv = [c for c in casts if c.phase == "forward" and c.module.endswith("wq+wk+wv")]
    assert [c.shapes for c in qkv] == [((64 * 4096,),)]  # x cast once for q, k and v


def test_a_training_stack_may_group_and_its_rank_program_does() -> None:
    """A training stack may set the item (megatron-core does: linear_qkv and linear_fc1); torchtitan keeps its Linears
    apart. The rank program of a grouped stack has the merged GEMMs and counts one adapter per fused Linear."""
    assert load_stack("torchtitan", "training").get("fusion.gemm_groups") is False
    assert load_stack("eager", "training").get("fusion.gemm_groups") is False
    assert load_stack("vllm", "serving").get("fusion.gemm_groups") is True
    megatron = load_stack("megatron-core", "training")
    assert megatron.get("fusion.gemm_groups") is True
    stack = dataclasses.replace(megatron, items={**megatron.items, "fusion.gemm_groups": Item(True, "test")})
    ungrouped = dataclasses.replace(megatron, items={**megatron.items, "fusion.gemm_groups": Item(False, "test")})
    model, plan = _model(lora=LoraConfig()), Plan(global_batch_size=1, seq_len=512)
    on, off = rank_program(model, plan, "bf16", stack=stack), rank_program(model, plan, "bf16", stack=ungrouped)
    assert any(c.module.endswith("wq+wk+wv") for c in on.compute)
    assert not any("+" in c.module for c in off.compute)
    assert on.trainable_params == adapter_params(on.shard, LoraConfig(), grouped=True) < off.trainable_params
