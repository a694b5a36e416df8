"""Cost rules of the kernel library: exact counts on tiny shapes, one registry without duplicates."""

from __future__ import annotations

import pytest
import torch

from emulator.engine.tracer import trace_callable
from kernels import Cost, classify
from kernels.attention import attention_flops, causal_pairs
from kernels.registry import FAMILIES, register, registered_ops


def _meta(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def _only(trace, family: str):  # type: ignore[no-untyped-def]
    calls = [c for c in trace.calls if c.family == family]
    assert len(calls) == 1, calls
    return calls[0]


def test_registry_maps_every_op_to_a_known_family() -> None:
    """Every registered op belongs to one of the declared families, and every family has ops."""
    assert set(registered_ops().values()) == set(FAMILIES)


def test_an_op_registered_twice_is_an_error() -> None:
    """A second rule for an op that has one is refused, naming both families; so is an unknown family."""
    assert classify("aten.mm") == "gemm"
    with pytest.raises(ValueError, match=r"aten\.mm registered twice \(gemm and copy\)"):
        register("copy", "aten.mm")(lambda args, kwargs, out: Cost())
    assert classify("aten.mm") == "gemm"
    with pytest.raises(ValueError, match="unknown kernel family 'dsp'"):
        register("dsp", "aten.fake_op")


def test_mm_counts() -> None:
    """A [M,K] @ [K,N] bf16 GEMM costs 2MNK FLOPs, reads both operands once and writes the output once."""
    m, k, n = 3, 5, 7
    call = _only(trace_callable(torch.mm, _meta(m, k), _meta(k, n)), "gemm")
    assert call.cost.matrix_flops == 2 * m * n * k
    assert call.cost.bytes_read == (m * k + k * n) * 2  # A and B, 2 bytes each
    assert call.cost.bytes_written == m * n * 2  # C
    assert call.dtype == "bf16"


def test_linear_with_bias_is_addmm() -> None:
    """nn.functional.linear with a bias traces as one addmm: GEMM FLOPs plus one add per output element."""
    x, w, b = _meta(4, 8), _meta(16, 8), _meta(16)
    call = _only(trace_callable(torch.nn.functional.linear, x, w, b), "gemm")
    assert call.op == "aten.addmm"
    assert call.cost.matrix_flops == 2 * 4 * 16 * 8
    assert call.cost.vector_flops == 4 * 16  # bias add
    assert call.cost.bytes_read == (4 * 8 + 16 * 8 + 16) * 2  # x, W, bias


def test_bmm_counts() -> None:
    """A batched GEMM costs 2*B*M*N*K."""
    call = _only(trace_callable(torch.bmm, _meta(2, 3, 4), _meta(2, 4, 5)), "gemm")
    assert call.cost.matrix_flops == 2 * 2 * 3 * 5 * 4


def test_elementwise_reads_inputs_writes_output() -> None:
    """x + y reads both operands, writes one output, one FLOP per element; a broadcast operand counts once."""
    call = _only(trace_callable(torch.add, _meta(4, 8), _meta(8)), "elementwise")
    assert call.cost.vector_flops == 32
    assert call.cost.bytes_read == (32 + 8) * 2
    assert call.cost.bytes_written == 32 * 2


def test_causal_pairs_closed_form() -> None:
    """Causal pairs: S(S+1)/2 for square attention; Sq*(Skv-Sq) + Sq(Sq+1)/2 for queries at the end."""
    assert causal_pairs(4, 4, True) == 10
    assert causal_pairs(4, 4, False) == 16
    assert causal_pairs(2, 5, True) == 2 * 3 + 3  # rows see 4 and 5 keys
    assert causal_pairs(1, 100, True) == 100  # decode: one query sees every key


def test_attention_forward_and_backward_counts() -> None:
    """Fused attention: forward 2*B*H*pairs*(Dqk+Dv); backward twice that plus the Q K^T recompute."""
    from emulator.workloads.ops import attention

    b, h, s, d = 2, 4, 8, 16
    q = _meta(b, h, s, d).requires_grad_(True)
    k = _meta(b, h, s, d).requires_grad_(True)
    v = _meta(b, h, s, d).requires_grad_(True)

    def step(q, k, v):  # type: ignore[no-untyped-def]
        out = attention(q, k, v, causal=True)
        out.backward(torch.empty_like(out))

    trace = trace_callable(step, q, k, v)
    fwd = [c for c in trace.calls if c.op == "emulator.attention"][0]
    bwd = [c for c in trace.calls if c.op == "emulator.attention_backward"][0]
    pairs = s * (s + 1) / 2
    assert fwd.cost.matrix_flops == 2 * b * h * pairs * (d + d)
    assert fwd.cost.matrix_flops == attention_flops((b, h, s, d), (b, h, s, d), d, True)
    assert bwd.cost.matrix_flops == 2 * fwd.cost.matrix_flops
    assert bwd.cost.recompute_flops == 2 * b * h * pairs * d


def test_a_sliding_window_caps_the_keys_each_query_sees() -> None:
    """Window w: a query at position p sees min(p + 1, w) keys; the backward counts the same pairs."""
    from emulator.workloads.ops import attention

    assert causal_pairs(6, 6, True, window=2) == 1 + 2 * 5
    assert causal_pairs(3, 10, True, window=4) == 3 * 4  # the last three of ten positions, each four keys
    assert causal_pairs(5, 5, True, window=8) == causal_pairs(5, 5, True)  # a window past the sequence: causal
    b, h, s, d, w = 1, 2, 16, 8, 4
    q, k, v = (_meta(b, h, s, d).requires_grad_(True) for _ in range(3))

    def step(q, k, v):  # type: ignore[no-untyped-def]
        out = attention(q, k, v, causal=True, window=w)
        out.backward(torch.empty_like(out))

    trace = trace_callable(step, q, k, v)
    fwd = next(c for c in trace.calls if c.op == "emulator.attention")
    bwd = next(c for c in trace.calls if c.op == "emulator.attention_backward")
    pairs = causal_pairs(s, s, True, window=w)
    assert fwd.cost.matrix_flops == 2 * b * h * pairs * (d + d) and bwd.cost.matrix_flops == 2 * fwd.cost.matrix_flops


def test_gqa_attention_reads_only_kv_heads() -> None:
    """Grouped-query attention reads K and V once per kv head, not per query head."""
    from emulator.workloads.ops import attention

    q, k, v = _meta(1, 8, 4, 16), _meta(1, 2, 4, 16), _meta(1, 2, 4, 16)
    call = _only(trace_callable(lambda q, k, v: attention(q, k, v, causal=False), q, k, v), "attention")
    assert call.cost.bytes_read == (8 * 4 * 16 + 2 * 2 * 4 * 16) * 2
    assert call.cost.matrix_flops == 2 * 8 * 16 * (16 + 16)


def test_mla_values_viewed_from_the_latent_keys_are_read_once() -> None:
    """MLA's absorbed decode takes V as the first columns of the latent K (one storage): the kernel reads the latent
    once, as FlashMLA does; separate K and V of the same shapes are read both."""
    from emulator.workloads.ops import attention

    def absorbed(q, cache):  # type: ignore[no-untyped-def]
        kv = cache.unsqueeze(1)
        return attention(q, kv, kv[..., :48], causal=False)

    q, cache = _meta(2, 8, 1, 64), _meta(2, 10, 64)
    call = _only(trace_callable(absorbed, q, cache), "attention")
    assert call.cost.bytes_read == (2 * 8 * 64 + 2 * 10 * 64) * 2  # q and the latent, once
    k, v = _meta(2, 1, 10, 64), _meta(2, 1, 10, 48)
    apart = _only(trace_callable(lambda q, k, v: attention(q, k, v, causal=False), q, k, v), "attention")
    assert apart.cost.bytes_read == (2 * 8 * 64 + 2 * 10 * 64 + 2 * 10 * 48) * 2


def test_embedding_reads_only_looked_up_rows() -> None:
    """An embedding lookup reads the indices and the looked-up rows, never the whole table."""
    table, idx = _meta(1000, 64), torch.empty(2, 3, dtype=torch.long, device="meta")
    call = _only(trace_callable(torch.nn.functional.embedding, idx, table), "embedding")
    assert call.cost.bytes_read == 6 * 8 + 6 * 64 * 2  # int64 indices + rows
    assert call.cost.bytes_written == 6 * 64 * 2


def test_views_are_free_and_unknown_ops_are_reported() -> None:
    """Views cost nothing; an op without a rule is listed as unknown with its count, never silently free."""

    def fn(x):  # type: ignore[no-untyped-def]
        x.view(-1).t()
        torch.fft.fft(x.float())

    trace = trace_callable(fn, _meta(4, 4))
    views = [c for c in trace.calls if c.family == "view"]
    assert [c.op for c in views] == ["aten.view", "aten.t"]
    assert all(c.cost == Cost() for c in views)
    assert dict(trace.unknown_ops) == {"aten._fft_r2c": 1}


def test_classify() -> None:
    """The registry answers the family of an op by name."""
    assert classify("aten.mm") == "gemm"
    assert classify("aten.view") == "view"
    assert classify("aten.not_an_op") is None
