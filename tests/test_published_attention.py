"""Device transfer at the kernel level for attention (emulator/validation/published_attention.py): AIConfigurator's
measured TensorRT-LLM context-attention tables on H100, H200, B200, GB200, B300 and GB300 against each chip's
efficiency table."""

from __future__ import annotations

import pytest

from emulator.validation.published_attention import context_calls, rows, validate_attention_tables
from emulator.validation.sources import CASE_KEYS
from kernels.attention import causal_pairs


def test_the_shipped_table_covers_every_chip_and_format_over_the_grid() -> None:
    table = rows()
    chips = {(r["device"], r["attn_dtype"], r["head_dim"]) for r in table}
    assert chips == {(d, f, h) for d in ("h100-sxm", "h200-sxm", "b200", "gb200", "b300", "gb300")
                     for f, h in (("bfloat16", 128), ("fp8", 128), ("bfloat16", 64))}
    assert {r["isl"] for r in table} == {512, 1024, 2048, 4096, 8192, 16384}
    assert {(r["num_heads"], r["num_kv_heads"]) for r in table} == {(8, 1), (16, 2), (32, 4), (32, 8), (64, 8)}
    assert all(r["latency_ms"] > 0 and r["batch"] * r["isl"] <= 65536 for r in table)
    shapes = {h: {(r["device"], r["batch"], r["isl"], r["num_heads"], r["num_kv_heads"]) for r in table
                  if r["attn_dtype"] == "bfloat16" and r["head_dim"] == h} for h in (64, 128)}
    assert shapes[64] == shapes[128]  # every head-dim-64 row has its head-dim-128 twin


def test_a_context_attention_is_its_preprocessing_and_the_causal_fused_kernel() -> None:
    """RoPE and the cache write read the fused q/k/v once and write it once; the fused kernel computes the causal
    query-key pairs (s(s+1)/2 per head) over Q K^T and P V and reads queries, keys and values once."""
    b, s, h, g, d = 2, 1024, 32, 8, 128
    pre, fmha = context_calls(b, s, h, g, d)
    qkv = 2 * b * s * (h + 2 * g) * d
    assert (pre.family, fmha.family) == ("elementwise", "attention")
    assert pre.cost.bytes_read == pre.cost.bytes_written == qkv
    assert fmha.cost.matrix_flops == pytest.approx(4 * b * h * d * causal_pairs(s, s, True))
    assert causal_pairs(s, s, True) == s * (s + 1) / 2
    assert fmha.cost.bytes_read == qkv


def test_every_row_is_a_case_and_each_chip_and_format_is_summarised() -> None:
    out = validate_attention_tables()
    assert len(out["cases"]) == len(rows())
    assert all(set(CASE_KEYS) <= set(c) for c in out["cases"])
    by = {(s["device"], s["kernel"]): s for s in out["by_chip"]}
    assert set(by) == {(d, k) for d in ("h100-sxm", "h200-sxm", "b200", "gb200", "b300", "gb300")
                       for k in ("bfloat16", "fp8", "bfloat16 d64")}
    assert by[("h200-sxm", "bfloat16")]["provenance"] == "calibrated"
    assert by[("gb300", "bfloat16")]["provenance"] == "transferred"
    assert set(by[("b300", "fp8")]["bands"]) == {"s <= 1024", "s 2048-4096", "s >= 8192"}


def test_loose_guard_long_attention_lands_alike_on_every_chip() -> None:
    """A regression guard on fixed data (the figures are reported by `validate --published`): at 8k-16k tokens the
    16-bit rows land within 20% on average on every chip, calibrated or transferred (before attention moved by its
    own measured ceilings, B300 and GB300 came out about 20% slow where the H200 is 5%)."""
    by = {(s["device"], s["kernel"]): s for s in validate_attention_tables()["by_chip"]}
    for chip in ("h100-sxm", "h200-sxm", "b200", "gb200", "b300", "gb300"):
        assert abs(by[(chip, "bfloat16")]["bands"]["s >= 8192"]["mean_error"]) <= 0.2, chip


def test_loose_guard_a_small_head_lands_with_its_full_size_twin() -> None:
    """A regression guard on fixed data: on every chip the head-dim-64 rows' mean error stays within 12 points of
    the head-dim-128 rows' (2-8 points now; 19-29 points, too fast, while the per-score work shrank with the head)."""
    by = {(s["device"], s["kernel"]): s for s in validate_attention_tables()["by_chip"]}
    for chip in ("h100-sxm", "h200-sxm", "b200", "gb200", "b300", "gb300"):
        gap = by[(chip, "bfloat16 d64")]["mean_error"] - by[(chip, "bfloat16")]["mean_error"]
        assert abs(gap) <= 0.12, (chip, gap)
