"""Memory per device: Korthikanti et al. 2022's activation formulas, ZeRO sharding, pipeline in-flight counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.cluster.memory import (
    LayerShape,
    korthikanti_layer_bytes,
    layer_activation_bytes,
    microbatches_in_flight,
    plan_memory,
)
from emulator.cluster.plan import Plan
from emulator.workloads.presets import preset


def _gpt(h: int, a: int) -> LayerShape:
    return LayerShape(hidden=h, heads=a, q_width=h, kv_width=h, ffn=4 * h, swiglu=False, dropout=True)


# GPT-3 175B (Korthikanti Table 3): s 2048, b 1, h 12288, a 96, t 8.
S, B, H, A, T = 2048, 1, 12288, 96, 8


@pytest.mark.parametrize("tp, sp, recompute", [
    (1, False, "none"), (8, False, "none"), (8, True, "none"), (8, True, "selective"), (8, False, "selective"),
    (8, True, "full"),
])
def test_activation_bytes_match_korthikanti_within_5_percent(tp: int, sp: bool, recompute: str) -> None:
    """sbh(34 + 5as/h) and its tensor-parallel, sequence-parallel and recompute variants (Eqs. 1-6)."""
    ours = layer_activation_bytes(_gpt(H, A), S, B, tp=tp, sequence_parallel=sp, recompute=recompute,
                                  fused_attention=False)
    paper = korthikanti_layer_bytes(S, B, H, A, tp=tp, sequence_parallel=sp, recompute=recompute)
    assert ours == pytest.approx(paper, rel=0.05)


def test_korthikanti_closed_forms() -> None:
    """The paper's closed forms, written out: 34 sbh + 5 a s^2 b without parallelism; sbh(10 + 24/t + 5as/ht)."""
    sbh = S * B * H
    assert korthikanti_layer_bytes(S, B, H, A) == pytest.approx(34 * sbh + 5 * A * S * S * B)
    assert korthikanti_layer_bytes(S, B, H, A, tp=T) == pytest.approx(sbh * (10 + 24 / T + 5 * A * S / (H * T)))
    assert korthikanti_layer_bytes(S, B, H, A, tp=T, sequence_parallel=True, recompute="selective") == \
        pytest.approx(34 * sbh / T)
    assert korthikanti_layer_bytes(S, B, H, A, recompute="full") == pytest.approx(2 * sbh)


def test_fused_attention_keeps_no_score_matrix() -> None:
    """With fused attention the as^2b term is gone, whatever the recompute setting."""
    shape = _gpt(H, A)
    fused = layer_activation_bytes(shape, S, B, tp=T, sequence_parallel=True)
    selective = layer_activation_bytes(shape, S, B, tp=T, sequence_parallel=True, recompute="selective",
                                       fused_attention=False)
    assert fused == pytest.approx(selective)


def test_in_flight_microbatches() -> None:
    """1F1B holds pp micro-batches on the first stage; interleaving adds (pp-1)/(pp v) of that."""
    plan = Plan(pp=8, global_batch_size=64, seq_len=2048)
    assert microbatches_in_flight(plan) == 8
    inter = Plan(pp=8, virtual_stages=3, global_batch_size=64, seq_len=2048)
    assert microbatches_in_flight(inter) == pytest.approx(8 * (1 + 7 / 24))
    few = Plan(pp=8, global_batch_size=2, seq_len=2048)
    assert microbatches_in_flight(few) == 2


def test_zero_stages_shard_state() -> None:
    """ZeRO-1 divides optimizer states by dp, ZeRO-2 also gradients, ZeRO-3 also weights."""
    model = preset("llama3-8b")
    p = float(model.num_params())
    parts = [plan_memory(model, Plan(dp=8, zero=z, global_batch_size=8, seq_len=1024), stage_params=p,
                         expert_params=0.0, precision="bf16", num_layers=32) for z in range(4)]
    assert parts[0]["optimizer_states"] == pytest.approx(12 * p)
    assert parts[1]["optimizer_states"] == pytest.approx(12 * p / 8)
    assert parts[1]["gradients"] == pytest.approx(2 * p) and parts[2]["gradients"] == pytest.approx(2 * p / 8)
    assert parts[3]["weights"] == pytest.approx(2 * p / 8 + 2 * 2 * p / 32)  # plus two gathered layers
    totals = [sum(m.values()) for m in parts]
    assert totals == sorted(totals, reverse=True)


@given(st.sampled_from([1, 2, 4, 8]), st.sampled_from(["none", "selective", "full"]), st.booleans())
def test_more_tensor_parallel_never_needs_more_activation_memory(tp: int, recompute: str, sp: bool) -> None:
    """Activation bytes per layer fall (or stay) as tp grows; full recompute is the smallest."""
    shape = _gpt(4096, 32)
    a = layer_activation_bytes(shape, 2048, 1, tp=tp, sequence_parallel=sp, recompute=recompute)
    b = layer_activation_bytes(shape, 2048, 1, tp=tp * 2, sequence_parallel=sp, recompute=recompute)
    assert b <= a
    assert layer_activation_bytes(shape, 2048, 1, tp=tp, sequence_parallel=sp, recompute="full") <= a


def test_recomputed_megatron_modules_drop_their_outputs() -> None:
    """Each of Megatron-Core's recompute modules drops the tensors its forward made (s b per unit of width, 16-bit):
    MLA's Q, K, V; the routed experts' activation output; their whole gate/up/product; the shared experts'; the
    MoE pre-MLP norm's output; a dense MLP's; core_attn nothing (fused attention)."""
    moe = LayerShape(hidden=1000, heads=8, q_width=1000, kv_width=250, ffn=3000, swiglu=True, routed_ffn=2000,
                     mla=True)
    s, b = 100, 2

    def drop(*modules: str, shape: LayerShape = moe) -> float:
        keep = layer_activation_bytes(shape, s, b, recompute="selective", modules=modules)
        return layer_activation_bytes(shape, s, b, recompute="selective") - keep

    assert drop() == drop("core_attn") == 0.0
    assert drop("mla_up_proj") == 2 * s * b * (1000 + 2 * 250)
    assert drop("moe_act") == 2 * s * b * 2000
    assert drop("shared_experts") == 3 * 2 * s * b * 1000
    assert drop("moe") == 3 * 2 * s * b * 3000 == drop("moe", "moe_act", "shared_experts")
    assert drop("layernorm") == 2 * (2 * s * b * 1000)  # the MLA input norm's and the MoE pre-MLP norm's outputs
    assert drop("mlp") == 0.0  # no dense MLP in an MoE layer
    dense = LayerShape(hidden=1000, heads=8, q_width=1000, kv_width=250, ffn=3000, swiglu=True)
    assert drop("mlp", shape=dense) == 3 * 2 * s * b * 3000
    assert drop("layernorm", "moe_act", "mla_up_proj", shape=dense) == 0.0  # LayerNormLinear holds its norm
    # Modules only count under selective recompute
    assert layer_activation_bytes(moe, s, b, modules=("moe",)) == layer_activation_bytes(moe, s, b)


def test_plan_memory_takes_the_stack_policy() -> None:
    model = preset("deepseek-v3").scaled(num_layers=4, num_dense_layers=1)
    plan = Plan(microbatch_size=1, global_batch_size=1, seq_len=4096, recompute="selective")
    kw = {"stage_params": 1e9, "expert_params": 5e8, "precision": "bf16", "num_layers": 4}
    assert plan_memory(model, plan, **kw, selective=("mla_up_proj",))["activations"] < \
        plan_memory(model, plan, **kw)["activations"] == plan_memory(model, plan, **kw, selective="every_other_mm")[
            "activations"]
