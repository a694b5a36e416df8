"""The tracer: FLOP conventions on full presets, de-duplication, module paths, agreement with FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from emulator.engine.trace import trace_workload
from emulator.engine.tracer import trace_program
from emulator.workloads import TransformerConfig, ops
from emulator.workloads.hf import from_hf_config
from emulator.workloads.presets import preset
from emulator.workloads.program import build_program


def transformer(name: str) -> TransformerConfig:
    config = preset(name)
    assert isinstance(config, TransformerConfig)
    return config


@pytest.mark.parametrize("name", ["llama3-70b", "llama3.1-405b"])
def test_training_matrix_flops_are_6NT(name: str) -> None:
    """GEMM FLOPs of a training step equal 6*N*T (N the matmul weights, T the tokens) within 0.1%."""
    model = transformer(name)
    seq = 8192
    trace = trace_workload(model, "train", 1, seq, 0, torch.bfloat16)
    gemm = trace.total_cost("gemm").matrix_flops
    assert gemm == pytest.approx(6 * model.num_matmul_params() * seq, rel=1e-3)
    assert not trace.unknown_ops


@pytest.mark.parametrize("name", ["llama3-70b", "llama3.1-405b"])
def test_training_attention_flops_match_causal_closed_form(name: str) -> None:
    """Attention FLOPs: per layer 4*B*H*D*S(S+1)/2 forward (QK^T and PV), twice that backward."""
    model = transformer(name)
    b, s = 1, 8192
    trace = trace_workload(model, "train", b, s, 0, torch.bfloat16)
    pairs = s * (s + 1) / 2
    forward = 2 * b * model.num_heads * pairs * (model.head_dim + model.head_dim)  # QK^T + PV
    expected = model.num_layers * (forward + 2 * forward)  # backward = 2x forward, recompute excluded
    assert trace.total_cost("attention").matrix_flops == pytest.approx(expected, rel=1e-6)


def test_attention_is_one_fused_call_per_layer_and_direction() -> None:
    """Each layer runs one fused attention forward and one backward, never a materialised S x S softmax."""
    model = transformer("llama3-8b")
    trace = trace_workload(model, "train", 1, 4096, 0, torch.bfloat16)
    att = [c for c in trace.calls if c.family == "attention"]
    assert sum(c.count for c in att if c.phase == "forward") == model.num_layers
    assert sum(c.count for c in att if c.phase == "backward") == model.num_layers
    big = 4096 * 4096
    in_layers = [c for c in trace.calls if c.module.startswith("layers.")]
    assert not [c for c in in_layers if c.family == "softmax" and any(torch.Size(sh).numel() >= big for sh in c.shapes)]


def _math_path_flops(model, batch: int, seq: int) -> float:  # type: ignore[no-untyped-def]
    """FlopCounterMode over a real (meta) run of every stage with the math attention path, non-causal."""
    program = build_program(model, "train", batch_size=batch, seq_len=seq)
    counter = FlopCounterMode(display=False)
    total = 0.0
    for stage in program.stages:
        args, kwargs = stage.make_inputs()
        with counter, sdpa_kernel(SDPBackend.MATH):
            out = stage.module(*args, **kwargs)
            out.backward(None if stage.returns_loss else torch.empty_like(out))
        total += counter.get_total_flops() * stage.count
    return total


def test_noncausal_total_equals_flopcountermode(monkeypatch: pytest.MonkeyPatch) -> None:
    """With causality off, the traced matrix FLOPs equal FlopCounterMode on the decomposed math path."""
    model = from_hf_config({"model_type": "llama", "num_hidden_layers": 3, "hidden_size": 256,
                            "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 512,
                            "vocab_size": 1000, "max_position_embeddings": 512}, origin="test")
    original = ops.attention

    def noncausal(q, k, v, *, causal, scale=None, window=0):  # type: ignore[no-untyped-def]
        return original(q, k, v, causal=False, scale=scale)

    monkeypatch.setattr(ops, "attention", noncausal)
    expected = _math_path_flops(model, 2, 128)
    trace = trace_program(build_program(model, "train", batch_size=2, seq_len=128))
    traced = sum(c.total.matrix_flops for c in trace.calls if c.phase != "optimizer")
    assert traced == pytest.approx(expected, rel=1e-3)


LINEARS = ("attention.wq", "attention.wk", "attention.wv", "attention.wo", "feed_forward.w1", "feed_forward.w3",
           "feed_forward.w2")  # a llama block's seven projections, in the order they run


def test_stages_are_traced_once_and_multiplied() -> None:
    """A model's identical blocks trace as one block whose kernel counts are multiplied by the layer count."""
    model = transformer("llama2-7b")
    trace = trace_workload(model, "prefill", 1, 128, 0, torch.bfloat16)
    gemms = [(c.module, c.count) for c in trace.calls if c.family == "gemm"]
    assert gemms == [(f"layers.0.{name}", model.num_layers) for name in LINEARS] + [("head.output", 1)]


def test_backward_ops_carry_module_paths() -> None:
    """Backward GEMMs are attributed to the linear layer whose forward created them."""
    model = transformer("llama3-8b")
    trace = trace_workload(model, "train", 1, 256, 0, torch.bfloat16)
    modules = {c.module for c in trace.calls if c.phase == "backward" and c.family == "gemm"}
    assert modules == {"head.output", *(f"layers.0.{name}" for name in LINEARS)}


def test_optimizer_phase_traces_adamw() -> None:
    """The training step ends in fused AdamW over every parameter element: 12 FLOPs each, reading the bf16
    parameter, gradient and both moments and writing the parameter and both moments back."""
    model = transformer("llama3-8b")
    trace = trace_workload(model, "train", 1, 256, 0, torch.bfloat16)
    assert {c.op for c in trace.calls if c.phase == "optimizer"} == {"aten._fused_adamw_"}
    n = model.num_params()
    cost = trace.total_cost("optimizer")
    assert cost.vector_flops == 12 * n  # two lerps, a square, a sqrt, a divide, the weight decay, the step
    assert cost.bytes_read == 4 * 2 * n  # parameter, gradient, exp_avg, exp_avg_sq
    assert cost.bytes_written == 3 * 2 * n  # parameter, exp_avg, exp_avg_sq


def test_moe_trace_needs_no_data() -> None:
    """An MoE step traces on meta tensors under the balanced-load assumption, with every expert's GEMMs."""
    model = transformer("mixtral-8x7b")
    trace = trace_workload(model, "train", 1, 1024, 0, torch.bfloat16)
    assert not trace.unknown_ops
    active = model.num_active_matmul_params()
    gemm = trace.total_cost("gemm").matrix_flops
    # Balanced routing: the expert GEMMs do the work of k experts per token.
    assert gemm == pytest.approx(6 * active * 1024, rel=0.02)


def test_decode_trace_reads_the_kv_cache() -> None:
    """Decode attention reads the whole KV cache of every sequence."""
    model = transformer("llama3-8b")
    b, kv = 4, 2048
    trace = trace_workload(model, "decode", b, 1, kv, torch.bfloat16)
    att = trace.total_cost("attention")
    cache_bytes = model.num_layers * b * (kv + 1) * 2 * model.num_kv_heads * model.head_dim * 2  # K and V, bf16
    query_bytes = model.num_layers * b * model.num_heads * model.head_dim * 2  # one token's queries, bf16
    assert att.bytes_read == cache_bytes + query_bytes


def test_kv_cache_reads_are_model_state() -> None:
    """The KV cache persists across steps like the weights: decode attention's cache reads are state bytes
    (streamed from main memory), not activations a previous op left in a cache."""
    model = transformer("llama3-8b")
    b, kv = 4, 2048
    trace = trace_workload(model, "decode", b, 1, kv, torch.bfloat16)
    attention = [c for c in trace.calls if c.family == "attention"]
    cache_bytes = b * (kv + 1) * 2 * model.num_kv_heads * model.head_dim * 2  # one layer's K and V
    assert [(c.weight_bytes, c.count) for c in attention] == [(cache_bytes, model.num_layers)]
    assert all(c.weight_bytes == 0 for c in trace_workload(model, "train", 1, 512, 0, torch.bfloat16).calls
               if c.family == "attention")


def test_moe_expert_gradients_come_back_as_one_stack() -> None:
    """Experts are views of the stacked weights taken once (unbind): backward stacks their gradients once per
    weight, instead of zero-filling and adding a whole [E, F, H] gradient per expert (select_backward)."""
    model = transformer("mixtral-8x7b")
    trace = trace_workload(model, "train", 1, 1024, 0, torch.bfloat16)
    ops_seen = {c.op for c in trace.calls}
    assert "aten.select_backward" not in ops_seen
    stacks = sum(c.count for c in trace.calls if c.op == "aten.stack" and c.phase == "backward")
    assert stacks == 2 * model.num_layers  # the gate-and-up and the down weights of every MoE layer


def test_moe_expert_rows_come_back_as_one_gradient() -> None:
    """The experts' rows are split from the permuted tokens: backward concatenates their input gradients once,
    where slicing per expert zero-pads each slice's gradient to all rows and adds them up; and one GEMM per expert
    reads its rows for gate and up together (no add of two input gradients)."""
    model = transformer("mixtral-8x7b")
    trace = trace_workload(model, "train", 1, 1024, 0, torch.bfloat16)
    backward = [c for c in trace.calls if c.phase == "backward" and c.module.endswith("feed_forward")]
    assert not [c for c in backward if c.op == "aten.slice_backward"]
    tokens = 1024 * model.num_experts_per_token  # the permuted rows of a layer
    rows = [c for c in backward if c.op == "aten.cat" and c.shapes[0][-1] == model.hidden_size]
    assert sum(c.count for c in rows) == model.num_layers
    assert sum(s[0] for s in rows[0].shapes) == tokens
    adds = [c for c in backward if c.op == "aten.add" and c.shapes[0] == (tokens, model.hidden_size)]
    assert not adds
    forward = [c for c in trace.calls if c.phase == "forward" and c.module.endswith("feed_forward")
               and c.family == "gemm"]
    widths = sorted({c.shapes[1][-1] for c in forward})
    assert widths == [model.hidden_size, 2 * model.moe_ffn_hidden_size]  # down; gate and up together
