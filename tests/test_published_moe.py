"""Device transfer at the kernel level for MoE (emulator/validation/published_moe.py): AIConfigurator's measured
TensorRT-LLM fused MoE tables on H100, H200, B200, GB200, B300 and GB300 against each chip's routed experts."""

from __future__ import annotations

import statistics

import pytest

from emulator.validation.published_moe import (
    FORMATS,
    SGLANG_SOURCE,
    SHAPES,
    one_layer,
    render,
    rows,
    validate_moe_tables,
)
from emulator.validation.sources import CASE_KEYS


def test_the_shipped_table_covers_every_chip_and_format_over_the_shapes() -> None:
    table = [r for r in rows() if r["moe_dtype"] != "w4a16_mxfp4"]
    assert {(r["device"], r["moe_dtype"]) for r in table} == {
        (d, f) for d in ("h100-sxm", "h200-sxm", "b200", "gb200", "b300", "gb300")
        for f in ("bfloat16", "fp8", "fp8_block")}
    assert {(r["hidden_size"], r["inter_size"], r["num_experts"], r["topk"]) for r in table} | {
        (2880, 2880, 128, 4)} == set(SHAPES)
    assert {(r["moe_tp_size"], r["moe_ep_size"]) for r in table} == {(1, 8), (8, 1)}
    assert {r["num_tokens"] for r in table} == {1, 16, 128, 1024, 4096, 8192}
    assert all(r["latency_ms"] > 0 for r in rows())


def test_the_weight_only_rows_are_hoppers_gpt_oss_experts_at_the_published_layouts() -> None:
    """TensorRT-LLM 1.2.0rc5's MXFP4 experts (what its weight-only items were fitted on): H100 and H200, at the
    layouts of the published gpt-oss rows, predicted as the w4a16 precision."""
    mine = [r for r in rows() if r["moe_dtype"] == "w4a16_mxfp4"]
    assert {r["device"] for r in mine} == {"h100-sxm", "h200-sxm"} and {r["version"] for r in mine} == {"1.2.0rc5"}
    assert {(r["hidden_size"], r["inter_size"], r["num_experts"], r["topk"]) for r in mine} == {(2880, 2880, 128, 4)}
    assert {(r["moe_tp_size"], r["moe_ep_size"]) for r in mine} == {(1, 1), (2, 1), (4, 1), (8, 1), (2, 2), (1, 8)}
    assert FORMATS["w4a16_mxfp4"] == "w4a16"
    cases = validate_moe_tables(lambda r: r["moe_dtype"] == "w4a16_mxfp4")["cases"]
    assert len(cases) == len(mine) == 72


def test_a_rank_holds_its_share_of_the_experts() -> None:
    """Expert parallelism gives a rank 1/ep of the experts whole; tensor parallelism every expert 1/tp wide."""
    ep = one_layer(4096, 1536, 128, 8, 8, 8)
    tp = one_layer(4096, 1536, 128, 8, 8, 1)
    assert (ep.num_layers, ep.num_dense_layers, ep.num_shared_experts) == (1, 0, 0)
    assert ep.num_experts == 16 and ep.moe_ffn_hidden_size == 1536 and ep.num_experts_per_token == 1
    assert tp.num_experts == 128 and tp.moe_ffn_hidden_size == 192 and tp.num_experts_per_token == 8
    assert ep.expert_load == tp.expert_load == "balanced"  # the collector's load, not random routing


def test_every_row_is_a_case_and_each_chip_and_format_is_summarised() -> None:
    out = validate_moe_tables()
    assert len(out["cases"]) == len(rows())
    assert all(set(CASE_KEYS) <= set(c) for c in out["cases"])
    by = {(s["device"], s["moe_dtype"]): s for s in out["by_chip"]}
    assert by[("h200-sxm", "fp8_block")]["provenance"] == "calibrated"
    assert by[("gb300", "bfloat16")]["provenance"] == "transferred"
    assert set(by[("b300", "fp8")]["bands"]) == {"tokens <= 16", "tokens 128-1024", "tokens >= 4096"}


def test_loose_guard_expert_parallel_layers_of_fine_grained_experts_land_near_the_tables() -> None:
    """A regression guard on fixed data (the figures are reported by `validate --published`): one rank's 16 or 32
    whole experts of Qwen3-235B-A22B and DeepSeek-V3 land within 25% (median over tokens, formats and chips: +3%;
    +6% at 4096-8192 tokens, +14% while each expert ran gate and up as two GEMMs and weighted its [n, H] output)."""
    errors = [c["error"] for c in validate_moe_tables()["cases"]
              if ":4096x1536x128k8:tp1ep8:" in c["id"] or ":7168x2048x256k8:tp1ep8:" in c["id"]]
    assert errors and abs(statistics.median(errors)) <= 0.25


def test_sglangs_table_is_its_own_section_by_format_and_layout() -> None:
    """SGLang 0.5.9's Triton fused MoE on H200 (emulator/data/aic_moe_sglang.csv): three expert shapes in bf16 and
    block fp8, at ep 8 and at tensor-parallel experts, every row a case of its own source and stack, summarised per
    format and layout."""
    table = rows("sglang")
    assert {(r["device"], r["version"]) for r in table} == {("h200-sxm", "0.5.9")}
    assert {r["moe_dtype"] for r in table} == {"bfloat16", "fp8_block"}
    assert {(r["hidden_size"], r["inter_size"], r["num_experts"], r["topk"]) for r in table} == {
        (2048, 768, 128, 8), (4096, 1536, 128, 8), (7168, 2048, 256, 8)}
    assert {(r["moe_tp_size"], r["moe_ep_size"]) for r in table} == {(1, 8), (8, 1), (4, 2)}
    out = validate_moe_tables(engine="sglang")
    assert len(out["cases"]) == len(table) == 72
    assert {c["stack"] for c in out["cases"]} == {"sglang"} and {c["source"] for c in out["cases"]} == {SGLANG_SOURCE}
    assert all(c["id"].startswith("aic-moe-sglang:h200-sxm:") and set(CASE_KEYS) <= set(c) for c in out["cases"])
    assert {s["kernel"] for s in out["by_chip"]} == {
        f"{f} {layout}" for f in ("bfloat16", "fp8_block") for layout in ("tp1ep8", "tp8ep1", "tp4ep2")}
    assert "fp8_block tp8ep1" in render(out)


def test_vllms_table_is_its_own_section_by_format_and_layout() -> None:
    """vLLM 0.14's fused MoE on H200 (emulator/data/aic_moe_vllm.csv): four expert shapes in bf16, fp8 and block fp8,
    their experts split over tp 1-8 as the table has them, every row a case of vLLM's, summarised per format and
    layout; vLLM's stack times them with its eager permutes and the calibrated GEMM's tiles."""
    from emulator.stacks import load_stack
    from emulator.validation.published_moe import VLLM_SOURCE

    table = rows("vllm")
    assert {(r["device"], r["version"]) for r in table} == {("h200-sxm", "0.14.0")}
    assert {r["moe_dtype"] for r in table} == {"bfloat16", "fp8", "fp8_block"}
    assert {(r["hidden_size"], r["inter_size"], r["num_experts"], r["topk"]) for r in table} == {
        (2048, 768, 128, 8), (4096, 1536, 128, 8), (4096, 14336, 8, 2), (7168, 2048, 256, 8)}
    assert {(r["moe_tp_size"], r["moe_ep_size"]) for r in table} == {(1, 1), (2, 1), (4, 1), (8, 1)}
    assert {r["num_tokens"] for r in table} == {1, 16, 128, 1024, 4096, 8192}
    vllm = load_stack("vllm", "serving")
    assert not vllm.get("moe.fused_permute") and vllm.get("moe.grouped_gemm_tile") == {}
    out = validate_moe_tables(engine="vllm")
    assert len(out["cases"]) == len(table) == 258
    assert {c["stack"] for c in out["cases"]} == {"vllm"} and {c["source"] for c in out["cases"]} == {VLLM_SOURCE}
    assert all(c["id"].startswith("aic-moe-vllm:h200-sxm:") and set(CASE_KEYS) <= set(c) for c in out["cases"])
    assert "fp8_block tp2ep1" in {s["kernel"] for s in out["by_chip"]} and "vLLM 0.14's fused MoE" in render(out)


def test_the_kernel_check_runs_the_engines_grouped_gemm_at_its_scale(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A row is predicted as the engine's stack runs its experts: with `moe.grouped_gemm_time_scale` at 1.5 the
    prediction grows by half its grouped GEMMs' time, as in a serving step (`grouped_gemm_excess_s`)."""
    import dataclasses

    from emulator.engine.calibration import efficiency_for
    from emulator.hardware import load_system
    from emulator.stacks import load_stack
    from emulator.validation import published_moe

    base = load_stack("sglang", "serving")
    items = {k: v for k, v in base.items.items() if k != "moe.grouped_gemm_tile"}  # the calibrated GEMM's tiles
    plain = dataclasses.replace(base, items=dict(items))
    items["moe.grouped_gemm_time_scale"] = dataclasses.replace(items["moe.grouped_gemm"], value=1.5)
    slow = dataclasses.replace(base, items=items)
    device = load_system("hgx-h200").device
    table = efficiency_for(device, use_calibrations=False)
    row = next(r for r in rows("sglang") if r["num_tokens"] == 1024 and r["moe_tp_size"] == 8)
    times: list[float] = []
    original = published_moe.time_trace

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        timing = original(*args, **kwargs)
        times.append(sum(k.time_s for k in timing.kernels if k.op == "grouped_mm"))
        return timing

    monkeypatch.setattr(published_moe, "time_trace", recorded)
    monkeypatch.setattr(published_moe, "load_stack", lambda name, kind: plain)
    shipped_s = published_moe.predict_s(device, table, row, "sglang")
    monkeypatch.setattr(published_moe, "load_stack", lambda name, kind: slow)
    assert published_moe.predict_s(device, table, row, "sglang") == pytest.approx(shipped_s + 0.5 * times[0])
    assert times[0] > 0 and times[0] == pytest.approx(times[1])


def test_small_grouped_gemm_tiles_reload_their_operands_through_the_l2(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With SGLang's tiles (`moe.grouped_gemm_tile`) a prefill-sized grouped GEMM takes at least its tiles' operand
    reloads at the device's L2 bandwidth: an expert's rows once per column tile, its weights once per row tile. A
    device without an L2 bandwidth, or a stack without tiles, keeps the calibrated GEMM's time; a one-token row, whose
    weights stream once from HBM, is the same either way."""
    import dataclasses
    import math

    from emulator.engine.calibration import efficiency_for
    from emulator.hardware import load_system
    from emulator.stacks import load_stack
    from emulator.validation import published_moe

    sglang = load_stack("sglang", "serving")
    assert sglang.get("moe.grouped_gemm_tile") == {"bf16": (64, 64), "fp8": (64, 128)}
    plain = dataclasses.replace(sglang, items={k: v for k, v in sglang.items.items() if k != "moe.grouped_gemm_tile"})
    device = load_system("hgx-h200").device
    assert device.cache_bandwidth_bytes_per_s == 5.5e12
    no_l2 = dataclasses.replace(device, memory=tuple(dataclasses.replace(t, bandwidth_bytes_per_s=None)
                                                     if t.kind == "cache" else t for t in device.memory))
    table = efficiency_for(device, use_calibrations=False)
    kernels: list = []
    original = published_moe.time_trace

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        timing = original(*args, **kwargs)
        kernels[:] = [k for k in timing.kernels if k.op == "grouped_mm"]
        return timing

    monkeypatch.setattr(published_moe, "time_trace", recorded)

    def predict(stack, on, tokens: int) -> float:  # type: ignore[no-untyped-def]
        monkeypatch.setattr(published_moe, "load_stack", lambda name, kind: stack)
        row = next(r for r in rows("sglang") if r["num_tokens"] == tokens and r["moe_tp_size"] == 8
                   and r["hidden_size"] == 7168 and r["moe_dtype"] == "bfloat16")
        return published_moe.predict_s(on, table, row, "sglang")

    calibrated = predict(plain, device, 8192)
    reloads = 0.0
    for k in kernels:  # one call each: the hand count of the reloads
        (experts, m, inner), (_, _, n) = k.shapes
        l2_s = experts * inner * (m * math.ceil(n / 64) + n * math.ceil(m / 64)) * 2 / 5.5e12
        assert l2_s > max(k.t_math_s, k.t_mem_s)  # 64 x 64 tiles: the reloads bound both GEMMs
        reloads += l2_s - max(k.t_math_s, k.t_mem_s)
    assert predict(sglang, device, 8192) == pytest.approx(calibrated + reloads)
    assert predict(sglang, no_l2, 8192) == pytest.approx(calibrated)
    assert predict(sglang, device, 1) == pytest.approx(predict(plain, device, 1))
    # weight-only experts (w4a16) run other kernels than the tiled Triton ones: no reloads of their own
    packed = max((r for r in rows() if r["moe_dtype"] == "w4a16_mxfp4" and r["device"] == "h200-sxm"),
                 key=lambda r: r["num_tokens"])
    monkeypatch.setattr(published_moe, "load_stack", lambda name, kind: plain)
    unpacked = published_moe.predict_s(device, table, packed, "sglang")
    monkeypatch.setattr(published_moe, "load_stack", lambda name, kind: sglang)
    assert published_moe.predict_s(device, table, packed, "sglang") == pytest.approx(unpacked)
