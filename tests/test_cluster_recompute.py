"""Selective recompute as each stack means it (emulator/cluster/recompute.py): Megatron-Core's attention core
(free with fused attention) and torchtitan's per-op policy (every second 16-bit matmul of a block and its
non-matrix kernels rerun in the backward)."""

from __future__ import annotations

import dataclasses

import pytest

from emulator.cluster.plan import Plan
from emulator.cluster.recompute import module_calls, recomputed_calls, replayed_calls
from emulator.cluster.shard import part_of, rank_program
from emulator.cluster.step import stage_times, training_step
from emulator.engine.efficiency import SPEC_DEFAULTS
from emulator.hardware import load_device
from emulator.stacks import load_stack
from emulator.workloads import preset

PLAN = Plan(dp=8, microbatch_size=1, global_batch_size=8, seq_len=2048, zero=3, fsdp=True)
TITAN = load_stack("torchtitan", "training")


def _layer_gemms(precision: str) -> dict[str, bool]:
    prog = rank_program(preset("llama3.1-8b"), PLAN, precision, stack=TITAN)
    flags = recomputed_calls(prog.compute, prog.selective, precision)
    return {c.module.rsplit(".", 1)[-1]: again for c, again in zip(prog.compute, flags, strict=True)
            if c.family == "gemm" and c.phase == "forward" and part_of(c) == "layers"}


def test_torchtitan_reruns_every_second_matmul_of_a_block() -> None:
    """q, k, v, o, then w1, w3, w2 in the block's order: the 2nd, 4th and 6th rerun (k, o, w3)."""
    assert _layer_gemms("bf16") == {"wq": False, "wk": True, "wv": False, "wo": True, "w1": False, "w3": True,
                                    "w2": False}


def test_torchtitan_saves_every_float8_matmul() -> None:
    """Under float8 the layers' GEMMs are `_scaled_mm`, which the policy always saves."""
    assert not any(_layer_gemms("fp8").values())


def test_only_the_forward_of_the_layers_reruns_and_never_attention() -> None:
    prog = rank_program(preset("llama3.1-8b"), PLAN, "bf16", stack=TITAN)
    flags = recomputed_calls(prog.compute, "every_other_mm", "bf16")
    rerun = [c for c, again in zip(prog.compute, flags, strict=True) if again]
    assert rerun and all(c.phase == "forward" and part_of(c) == "layers" for c in rerun)
    assert not any(c.family in ("attention", "view") for c in rerun)
    assert any(c.family != "gemm" for c in rerun)  # norms, activations, RoPE as the stack runs them
    assert not any(recomputed_calls(prog.compute, "attention_core", "bf16"))


def test_a_plan_replays_what_its_recompute_mode_names() -> None:
    """full: every layer's forward; selective: the stack's policy; none: nothing."""
    prog = rank_program(preset("llama3.1-8b"), PLAN, "bf16", stack=TITAN)
    calls = prog.compute
    assert replayed_calls(calls, "full", "every_other_mm", "bf16") == tuple(
        c.phase == "forward" and part_of(c) == "layers" for c in calls)
    assert replayed_calls(calls, "selective", "every_other_mm", "bf16") == recomputed_calls(calls, "every_other_mm",
                                                                                            "bf16")
    assert not any(replayed_calls(calls, "none", "every_other_mm", "bf16"))


def test_selective_recompute_costs_what_its_stack_reruns() -> None:
    """torchtitan's selective step lies between no recompute and full recompute by exactly the rerun kernels;
    Megatron-Core's costs nothing over no recompute (its fused attention already recomputes the scores)."""
    device, one = load_device("h100-sxm"), Plan(microbatch_size=1, global_batch_size=1, seq_len=2048)
    steps = {}
    for stack in ("torchtitan", "megatron-core"):
        for recompute in ("none", "selective", "full"):
            plan = dataclasses.replace(one, recompute=recompute)
            prog = rank_program(preset("llama3.1-8b"), plan, "bf16", stack=load_stack(stack, "training"))
            steps[stack, recompute] = training_step(prog, None, device, SPEC_DEFAULTS, "bf16")
    titan = rank_program(preset("llama3.1-8b"), dataclasses.replace(one, recompute="selective"), "bf16", stack=TITAN)
    rerun = stage_times(titan, device, SPEC_DEFAULTS, "bf16").selective_s
    assert steps["torchtitan", "none"].step_s < steps["torchtitan", "selective"].step_s < \
        steps["torchtitan", "full"].step_s
    assert steps["torchtitan", "selective"].recompute_s == pytest.approx(rerun)
    assert steps["torchtitan", "selective"].step_s - steps["torchtitan", "none"].step_s == pytest.approx(rerun)
    assert steps["megatron-core", "selective"].step_s == steps["megatron-core", "none"].step_s


# Megatron-Core's recompute modules: DeepSeek-V3 cut to one dense and two MoE layers (MLA, shared experts), fp8 as
# its recipes run it, and GPT-OSS's standard attention with MoE.
MEGATRON = load_stack("megatron-core", "training")
SMALL = Plan(microbatch_size=1, global_batch_size=1, seq_len=512, recompute="selective")


def _reruns(model: str, modules: tuple[str, ...], precision: str = "fp8") -> set[tuple[str, str, str]]:
    """(layer kind, submodule, family) of the calls the modules rerun: kind 'moe' or 'dense'."""
    m = preset(model).scaled(num_layers=3, **({"num_dense_layers": 1} if model == "deepseek-v3" else {}))
    prog = rank_program(m, SMALL, precision, stack=MEGATRON)
    moe = {c.module.split(".")[1] for c in prog.compute if ".feed_forward.router" in c.module}
    flags = module_calls(prog.compute, modules)
    return {("moe" if c.module.split(".")[1] in moe else "dense", c.module.split(".", 2)[2], c.family)
            for c, again in zip(prog.compute, flags, strict=True) if again}


def test_megatron_modules_rerun_their_own_forward_kernels() -> None:
    assert _reruns("deepseek-v3", ("core_attn",)) == set()  # fused attention already recomputes its scores
    # Norms that are modules of their own under Transformer Engine's spec: MoE pre-MLP, MLA input
    assert {(kind, sub) for kind, sub, _ in _reruns("deepseek-v3", ("layernorm",))} == {
        ("dense", "attention_norm"), ("moe", "attention_norm"), ("moe", "ffn_norm")}
    assert {sub for _, sub, _ in _reruns("gpt-oss-120b", ("layernorm",), "bf16")} == {"ffn_norm"}
    up = _reruns("deepseek-v3", ("mla_up_proj",))
    assert {sub for _, sub, _ in up} == {"attention.wq_b", "attention.wkv_b", "attention.q_norm", "attention.kv_norm",
                                         "attention.rotary", "attention"}
    assert ("moe", "attention", "attention") not in up and ("moe", "attention", "copy") in up
    assert _reruns("deepseek-v3", ("moe_act",)) == {("moe", "feed_forward", "elementwise")}  # no casts, no GEMMs
    mlp = _reruns("deepseek-v3", ("mlp",))
    assert {kind for kind, _, _ in mlp} == {"dense"} and ("dense", "feed_forward.w2", "gemm") in mlp
    moe = _reruns("deepseek-v3", ("moe",))
    assert {kind for kind, _, _ in moe} == {"moe"} and {"gemm", "elementwise"} <= {f for _, _, f in moe}
    assert any(sub.startswith("feed_forward.router") for _, sub, _ in moe)
    shared = _reruns("deepseek-v3", ("shared_experts",))
    assert shared and all(kind == "moe" and sub.startswith("feed_forward.shared") for kind, sub, _ in shared)
    assert _reruns("deepseek-v3", ("moe_act", "mla_up_proj")) == _reruns("deepseek-v3", ("moe_act",)) | up
    assert _reruns("llama3.1-8b", ("layernorm", "moe_act", "mla_up_proj", "moe", "shared_experts"), "bf16") == set()


def test_recomputed_modules_cost_their_kernels_and_the_moe_all_to_all() -> None:
    """A selective step with modules costs no recompute's step plus the rerun kernels; `moe` doubles the forward
    expert-parallel dispatch and combine, as full recompute does."""
    device = load_device("h100-sxm")
    m = preset("deepseek-v3").scaled(num_layers=3, num_dense_layers=1)
    plan = dataclasses.replace(SMALL, dp=8, ep=8, global_batch_size=8)
    rerun = MEGATRON.with_settings((("recompute.selective", ("mla_up_proj", "moe_act")),))
    base = rank_program(m, dataclasses.replace(plan, recompute="none"), "fp8", stack=MEGATRON)
    prog = rank_program(m, plan, "fp8", stack=rerun)
    assert prog.selective == ("mla_up_proj", "moe_act")
    st = stage_times(prog, device, SPEC_DEFAULTS, "fp8")
    assert st.selective_s > 0 and st.recompute_s("selective") == st.selective_s

    def a2a(p: object) -> dict[str, float]:
        return {ph: sum(c.count for c in p.collectives if c.op == "all_to_all" and c.phase == ph)  # type: ignore[attr-defined]
                for ph in ("forward", "backward")}

    assert a2a(prog) == a2a(base) and a2a(base)["forward"] > 0
    whole = rank_program(m, plan, "fp8", stack=MEGATRON.with_settings((("recompute.selective", ("moe",)),)))
    full = rank_program(m, dataclasses.replace(plan, recompute="full"), "fp8", stack=MEGATRON)
    assert a2a(whole) == a2a(full) == {"forward": 2 * a2a(base)["forward"], "backward": a2a(base)["backward"]}
