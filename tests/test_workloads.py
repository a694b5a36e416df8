"""Specs for the workload configs and modules: preset sizes, tiny real training steps, inference, MoE routing."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from emulator.errors import EmulatorError
from emulator.workloads import DLRMConfig, TransformerConfig, ops, preset
from emulator.workloads.hf import from_hf_config
from emulator.workloads.moe import MoE
from emulator.workloads.program import build_program, build_step


def transformer(name: str) -> TransformerConfig:
    config = preset(name)
    assert isinstance(config, TransformerConfig)
    return config


EXPECTED_PARAMS = {  # (total, active) from the model cards / papers
    "llama2-7b": (6.74e9, None),
    "llama3-8b": (8.03e9, None),
    "llama3-70b": (70.6e9, None),
    "llama3.1-405b": (405.9e9, None),
    "mixtral-8x7b": (46.7e9, 12.9e9),
    "deepseek-v3": (671e9, 37e9),
    "qwen3-235b-a22b": (235e9, 22e9),
    "gpt3-175b": (175e9, None),
    "gpt-j-6b": (6.05e9, None),
    "gpt-oss-120b": (116.8e9, None),  # active 5.1B without the embeddings the count here includes
    "gpt-oss-20b": (20.9e9, None),
    "qwen3-8b": (8.19e9, None),
    "qwen3-14b": (14.8e9, None),
    "llama3.2-1b": (1.24e9, None),
    "llama3.2-3b": (3.21e9, None),
}


def test_checkpoint_names_share_their_architectures_preset() -> None:
    """DeepSeek-R1 and Llama 3.3 70B, as benchmarks name them, are DeepSeek-V3's and Llama 3.1 70B's networks."""
    for alias, base in (("deepseek-r1", "deepseek-v3"), ("llama3.3-70b", "llama3.1-70b")):
        a, b = preset(alias), preset(base)
        assert a.name == alias and a == dataclasses.replace(b, name=alias)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_preset_param_counts(name: str) -> None:
    """Presets have the published parameter counts within 2%."""
    total, active = EXPECTED_PARAMS[name]
    config = preset(name)
    assert config.num_params() == pytest.approx(total, rel=0.02)
    if active is not None:
        assert config.num_active_params() == pytest.approx(active, rel=0.03)
        assert config.num_active_matmul_params() < config.num_matmul_params()


def test_dlrm_v2_size() -> None:
    """DLRM-v2 has 26 tables of dim 128 (about 204M rows) and a DCN interaction."""
    config = preset("dlrm-v2")
    assert isinstance(config, DLRMConfig)
    assert config.num_tables == 26 and config.embedding_dim == 128
    assert sum(config.embedding_rows) == pytest.approx(204e6, rel=0.01)
    assert config.num_params() == pytest.approx(config.num_embedding_params(), rel=0.01)


def test_kv_bytes_per_token() -> None:
    """KV bytes per token: 2 * layers * kv_heads * head_dim for GQA; latent plus rope key for MLA."""
    assert transformer("llama3-8b").kv_bytes_per_token(2) == 2 * 32 * 8 * 128 * 2
    assert transformer("deepseek-v3").kv_bytes_per_token(2) == 61 * (512 + 64) * 2


def test_scaled_and_summary() -> None:
    """A scale model keeps the architecture; summaries are plain dicts."""
    small = transformer("deepseek-v3").scaled(num_layers=2)
    assert small.num_layers == 2 and small.num_dense_layers == 2 and small.attention == "mla"
    assert preset("llama3-8b").summary()["num_params"] == preset("llama3-8b").num_params()
    assert preset("dlrm-small").summary()["kind"] == "dlrm"


def _tiny(**kwargs: object) -> TransformerConfig:
    base: dict[str, object] = {"name": "tiny", "num_layers": 2, "hidden_size": 64, "num_heads": 4, "num_kv_heads": 2,
                                   "ffn_hidden_size": 128, "vocab_size": 256, "max_seq_len": 64}
    base.update(kwargs)
    return TransformerConfig(**base)  # type: ignore[arg-type]


TINY = {
    "llama": _tiny(),
    "gpt": _tiny(num_kv_heads=4, norm="layernorm", mlp="gelu", positions="learned", qkv_bias=True, out_bias=True,
                 mlp_bias=True, tie_embeddings=True),
    "mixtral": _tiny(num_experts=4, num_experts_per_token=2),
    "windowed": _tiny(sliding_window=3, full_attention_every=2),
    "deepseek": _tiny(num_kv_heads=4, num_layers=3, num_experts=4, num_experts_per_token=2, moe_ffn_hidden_size=32,
                      num_shared_experts=1, num_dense_layers=1, router="sigmoid", attention="mla", q_lora_rank=32,
                      kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16),
    "qwen3": _tiny(qk_norm=True, head_dim=32),
}


@pytest.mark.parametrize("arch", sorted(TINY))
def test_tiny_train_step(arch: str) -> None:
    """A real train step on CPU starts near ln(vocab) (small random weights predict uniformly) and its loss falls
    at every one of a few steps on the same batch."""
    step = build_step(TINY[arch], "train", batch_size=2, seq_len=8, dtype=torch.float32)
    losses = []
    for _ in range(4):
        step()
        losses.append(float(step.last_output))  # type: ignore[attr-defined]
    assert losses[0] == pytest.approx(math.log(TINY[arch].vocab_size), rel=0.05)
    assert all(later < earlier for earlier, later in itertools.pairwise(losses)), losses


def test_dlrm_train_updates_tables_sparsely() -> None:
    """DLRM trains: the loss is finite, tables change only in looked-up rows and get no dense gradient."""
    step = build_step(preset("dlrm-small"), "train", batch_size=4, seq_len=1, dtype=torch.float32)
    model = step.model  # type: ignore[attr-defined]
    before = model.tables[0].weight.detach().clone()
    step()
    assert torch.isfinite(step.last_output)  # type: ignore[attr-defined]
    after = model.tables[0].weight.detach()
    changed = (before != after).any(dim=1).sum().item()
    assert 0 < changed <= 4 * 2
    assert model.tables[0].weight.grad is None


def test_dlrm_inference() -> None:
    """DLRM inference returns one probability per sample."""
    step = build_step(preset("dlrm-small"), "prefill", batch_size=4, seq_len=1, dtype=torch.float32)
    step()
    out = step.last_output  # type: ignore[attr-defined]
    assert out.shape == (4,) and ((out > 0) & (out < 1)).all()


@pytest.mark.parametrize("arch", sorted(TINY))
def test_tiny_prefill_then_decode(arch: str) -> None:
    """Prefill gives last-position logits; decode gives one token's logits; repeated decode calls agree."""
    config = TINY[arch]
    prefill = build_step(config, "prefill", batch_size=2, seq_len=8, kv_len=4, dtype=torch.float32)
    prefill()
    assert prefill.last_output.shape == (2, 1, config.vocab_size)  # type: ignore[attr-defined]
    decode = build_step(config, "decode", batch_size=3, seq_len=1, kv_len=16, dtype=torch.float32)
    decode()
    first = decode.last_output.clone()  # type: ignore[attr-defined]
    decode()
    assert first.shape == (3, 1, config.vocab_size)
    torch.testing.assert_close(decode.last_output, first)  # type: ignore[attr-defined]


def test_windowed_attention_equals_the_masked_textbook_form() -> None:
    """A sliding window of 3 keys over 7 positions, with a cache (the last 4 queries): the fused call equals
    softmax over the keys each query may see."""
    from emulator.workloads.ops import attention

    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 4, 8, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(1, 2, 7, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    out = attention(q, k, v, causal=True, window=3)
    pos = torch.arange(3, 7)[:, None]  # the queries' positions
    keys = torch.arange(7)[None, :]
    seen = (keys <= pos) & (keys > pos - 3)
    scores = (q @ k.transpose(-1, -2) / 8 ** 0.5).masked_fill(~seen, float("-inf"))
    torch.testing.assert_close(out, scores.softmax(-1) @ v)


def test_gpt_oss_alternates_windowed_and_full_layers() -> None:
    """GPT-OSS: 128-key windows on layers 0, 2, 4, ...; a decode step's windowed layers read 128 cached keys,
    the full ones all of them; one traced representative of each kind, half the layers each."""
    from emulator.engine.trace import trace_workload
    from emulator.workloads.transformer import layer_window

    oss = preset("gpt-oss-120b")
    assert isinstance(oss, TransformerConfig)
    assert (oss.sliding_window, oss.full_attention_every) == (128, 2)
    assert [layer_window(oss, i) for i in range(4)] == [128, 0, 128, 0]
    calls = [c for c in trace_workload(oss, "decode", 4, 1, 4096, torch.bfloat16).calls if c.family == "attention"]
    assert sorted((c.shapes[1][2], c.count) for c in calls) == [(128, 18), (4097, 18)]


def test_a_window_without_a_pattern_or_on_latent_attention_is_refused() -> None:
    with pytest.raises(EmulatorError, match="full_attention_every"):
        _tiny(full_attention_every=2)
    with pytest.raises(EmulatorError, match="layer_types"):
        from_hf_config({"model_type": "gpt_oss", "num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4,
                        "intermediate_size": 64, "vocab_size": 100, "num_local_experts": 4, "num_experts_per_tok": 2,
                        "layer_types": ["full_attention", "sliding_attention", "sliding_attention"]}, origin="t")


def test_mla_absorbed_decode_matches_decompressed() -> None:
    """MLA's weight-absorbed decode equals attention over the decompressed cache."""
    from emulator.workloads.transformer import MLAttention, make_rotary

    config = TINY["deepseek"]
    torch.manual_seed(0)
    attn = MLAttention(config, make_rotary(config, 8, dtype=torch.float32, device="cpu"),  # type: ignore[arg-type]
                       dtype=torch.float32, device="cpu")
    full_cache = torch.randn(2, 8, config.kv_lora_rank + config.qk_rope_head_dim)
    x = torch.randn(2, 1, config.hidden_size)
    absorbed = attn(x, full_cache, start_pos=7)  # one query token with a cache: the absorbed form
    # Reference: decompress the whole latent cache into per-head keys and values.
    c_kv, k_pe = full_cache[:, :, :16], full_cache[:, :, 16:]
    nh, nope, v_dim = 4, 16, 16
    q = attn.wq_b(attn.q_norm(attn.wq_a(x))).view(2, 1, nh, nope + 8).transpose(1, 2)
    q_nope, q_pe = q.split([nope, 8], dim=-1)
    q_pe = attn.rotary(q_pe, 7)
    kv = attn.wkv_b(c_kv).view(2, 8, nh, nope + v_dim).transpose(1, 2)
    k_nope, v = kv.split([nope, v_dim], dim=-1)
    k = torch.cat((k_nope, k_pe.unsqueeze(1).expand(2, nh, 8, 8)), dim=-1)
    y = torch.nn.functional.scaled_dot_product_attention(torch.cat((q_nope, q_pe), -1), k, v, scale=attn.scale)
    expected = attn.wo(y.transpose(1, 2).reshape(2, 1, nh * v_dim))
    torch.testing.assert_close(absorbed, expected, rtol=1e-4, atol=1e-5)


def test_moe_real_routing_sends_each_token_to_k_experts() -> None:
    """Data-dependent routing assigns every token to exactly k distinct experts."""
    config = TINY["mixtral"]
    torch.manual_seed(0)
    moe = MoE(config, dtype=torch.float32, device="cpu")
    torch.nn.init.normal_(moe.router.weight)
    tokens = torch.randn(10, config.hidden_size)
    routing = moe.route(tokens)
    assert sum(routing.counts) == 10 * 2
    assert torch.bincount(routing.token_index, minlength=10).tolist() == [2] * 10
    start = 0
    for n in routing.counts:  # an expert never sees the same token twice
        chunk = routing.token_index[start:start + n]
        assert chunk.unique().numel() == n
        start += n
    torch.testing.assert_close(routing.weights.view(-1).sum(), torch.tensor(10.0))


def test_moe_output_is_the_weighted_sum_of_its_experts() -> None:
    """Each token's output is the sum over its k experts of weight x down(silu(gate x) * up x): the routing weight
    scaling the activation before the down projection and gate and up sharing one stacked weight give the same
    numbers as the textbook form (weight applied to each expert's output)."""
    config = TINY["mixtral"]
    torch.manual_seed(0)
    moe = MoE(config, dtype=torch.float64, device="cpu")
    torch.nn.init.normal_(moe.router.weight)
    x = torch.randn(2, 5, config.hidden_size, dtype=torch.float64)
    tokens = x.reshape(10, -1)
    routing = moe.route(tokens)
    f = config.moe_ffn_hidden_size
    expected = torch.zeros_like(tokens)
    start = 0
    for e, n in enumerate(routing.counts):
        rows = routing.token_index[start:start + n]
        h = tokens[rows]
        gate, up = moe.w1[e, :f], moe.w1[e, f:]
        y = torch.nn.functional.silu(h @ gate.T) * (h @ up.T) @ moe.w2[e].T
        expected.index_add_(0, rows, y * routing.weights[start:start + n, None])
        start += n
    torch.testing.assert_close(moe(x).reshape(10, -1), expected)


def test_moe_balanced_routing_while_tracing() -> None:
    """Under ops.tracing() on meta every expert gets ceil(T*k/E) tokens."""
    config = transformer("mixtral-8x7b")
    moe = MoE(config, dtype=torch.bfloat16, device="meta")  # type: ignore[arg-type]
    tokens = torch.empty(1000, config.hidden_size, dtype=torch.bfloat16, device="meta")
    with ops.tracing():
        routing = moe.route(tokens)
        out = moe(tokens.view(10, 100, -1))
    assert routing.counts == (math.ceil(1000 * 2 / 8),) * 8
    assert out.shape == (10, 100, config.hidden_size) and out.is_meta


def test_a_balanced_load_reaches_as_many_experts_as_a_decode_batch_has_assignments() -> None:
    """16 tokens x top-8 of 256 experts: random routing touches about 102 experts with 2 tokens each; the balanced
    load a kernel benchmark sets (`expert_load: balanced`) gives 128 experts one token each."""
    config = transformer("deepseek-v3")
    tokens = torch.empty(16, config.hidden_size, dtype=torch.bfloat16, device="meta")
    counts = {}
    for load in ("uniform", "balanced"):
        moe = MoE(dataclasses.replace(config, expert_load=load), dtype=torch.bfloat16,  # type: ignore[arg-type]
                  device="meta")
        with ops.tracing():
            counts[load] = [n for n in moe.route(tokens).counts if n]
    assert counts["balanced"] == [1] * 128
    assert len(counts["uniform"]) == round(256 * (1 - (1 - 8 / 256) ** 16)) and set(counts["uniform"]) == {2}
    with pytest.raises(EmulatorError, match="expert_load"):
        _tiny(num_experts=4, num_experts_per_token=2, expert_load="skewed")


def test_train_program_on_meta_keeps_no_memory() -> None:
    """A meta program of llama3.1-405b at seq 8192 builds without allocating."""
    program = build_program(preset("llama3.1-405b"), "train", batch_size=1, seq_len=8192)
    assert all(p.is_meta for stage in program.stages for p in stage.module.parameters())


def test_expected_active_experts() -> None:
    """Uniform routing: big batches touch every expert, a decode batch only E*(1-(1-k/E)^T) of them."""
    from emulator.workloads.moe import expected_active_experts

    assert expected_active_experts(4096, 2, 8) == 8
    assert expected_active_experts(8, 8, 256) == round(256 * (1 - (1 - 8 / 256) ** 8))  # 57
    assert expected_active_experts(1, 2, 8) == 2
    assert expected_active_experts(3, 0.25, 1) == 1  # a quarter of each token's top-k reaches this rank's expert


def test_a_negative_share_of_assignments_is_refused() -> None:
    with pytest.raises(EmulatorError, match="routed_per_token"):
        _tiny(num_experts=4, num_experts_per_token=2, routed_per_token=-1.0)


def test_a_share_beyond_the_experts_reads_tokens_again() -> None:
    """An expert-parallel training rank with fewer experts than the top-k receives k assignments per token of its
    own: every local expert active, each with T * share / E rows."""
    from emulator.workloads.moe import expected_active_experts

    assert expected_active_experts(4096, 4.0, 2) == 2
    assert expected_active_experts(1, 3.0, 2) == 2
    _tiny(num_experts=2, num_experts_per_token=2, routed_per_token=4.0)  # accepted
