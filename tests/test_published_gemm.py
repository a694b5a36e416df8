"""Device transfer at the kernel level (emulator/validation/published_gemm.py): AIConfigurator's measured
TensorRT-LLM GEMM tables on H100, H200, B200, GB200, B300 and GB300 against each chip's efficiency table, and vLLM's
and SGLang's on H100, H200 and B200."""

from __future__ import annotations

import pytest

from emulator.engine.calibration import efficiency_for
from emulator.engine.stack import engine_device, engine_table
from emulator.hardware import load_device
from emulator.stacks import load_stack
from emulator.validation.published_gemm import (
    ENGINE,
    TABLES,
    linear_calls,
    predict_s,
    render,
    rows,
    validate_gemm_tables,
)
from emulator.validation.sources import CASE_KEYS


def test_the_shipped_table_covers_every_chip_and_format_at_every_token_count() -> None:
    table = rows()
    chips = {(r["device"], r["gemm_dtype"]) for r in table}
    blackwell = ("b200", "gb200", "b300", "gb300")
    assert chips == {(d, f) for d in ("h100-sxm", "h200-sxm", *blackwell) for f in ("bfloat16", "fp8")} | {
        (d, "nvfp4") for d in blackwell}
    assert {r["m"] for r in table} == {1, 8, 16, 64, 256, 1024, 4096, 8192}
    assert all(r["latency_ms"] > 0 for r in table)


def test_a_linear_is_the_kernels_its_format_runs() -> None:
    """bf16: the GEMM; fp8 with a run-time input scale: the input's amax, its cast to fp8, the GEMM; NVFP4 with a
    static scale: the cast to fp4 (half a byte a value plus one fp8 scale per 16), the GEMM."""
    m, n, k = 64, 4096, 2048
    assert [c.family for c in linear_calls(m, n, k, "bfloat16")] == ["gemm"]
    amax, cast, gemm = linear_calls(m, n, k, "fp8")
    assert (amax.family, cast.family, gemm.family) == ("reduction", "elementwise", "gemm")
    assert amax.cost.bytes_read == cast.cost.bytes_read == 2 * m * k and cast.cost.bytes_written == m * k
    cast4, gemm4 = linear_calls(m, n, k, "nvfp4")
    assert cast4.cost.bytes_written == pytest.approx(m * k * (0.5 + 1 / 16))
    assert gemm4.cost.matrix_flops == gemm.cost.matrix_flops == 2 * m * n * k
    assert gemm.weight_bytes == 2 * k * n  # bf16 as traced; the precision shrinks it when the GEMM is timed


def test_every_row_is_a_case_and_each_chip_and_format_is_summarised() -> None:
    out = validate_gemm_tables()
    assert len(out["cases"]) == len(rows())
    assert all(set(CASE_KEYS) <= set(c) for c in out["cases"])
    by = {(s["device"], s["gemm_dtype"]): s for s in out["by_chip"]}
    assert by[("h200-sxm", "fp8")]["provenance"] == "calibrated"
    assert by[("b200", "nvfp4")]["provenance"] == "transferred"
    assert set(by[("b200", "nvfp4")]["bands"]) == {"m <= 16", "m 64-1024", "m >= 4096"}


def test_a_row_is_timed_on_the_table_the_engines_serving_steps_take() -> None:
    """The rows check the GEMM times a serving prediction adds up: the engine's view of the chip's table
    (`engine_table`, fp8 on the 16-bit shape response), which at decode sizes streams the H200's fp8 weights faster
    than the calibration's own fp8 shape response does."""
    engine, profile = load_stack(ENGINE, "serving"), load_device("h200-sxm")
    device, calibrated = engine_device(profile, engine)[0], efficiency_for(profile)
    row = next(r for r in rows() if (r["device"], r["gemm_dtype"], r["m"], r["n"], r["k"]) ==
               ("h200-sxm", "fp8", 16, 8192, 8192))
    case = next(c for c in validate_gemm_tables()["cases"] if c["id"] == "aic-gemm:h200-sxm:fp8:16x8192x8192")
    assert case["predicted"] == pytest.approx(predict_s(device, engine_table(calibrated, engine), row))
    assert predict_s(device, calibrated, row) > 1.03 * case["predicted"]


def test_loose_guard_calibrated_chips_and_blackwell_16_bit_land_near_the_measured_linears() -> None:
    """A regression guard on fixed data (the figures are reported by `validate --published`): the chips with their
    own calibration, and Blackwell's bf16 through the transfer, within 15% median |error|; Blackwell's large fp4
    GEMMs within 25% on average (before fp4 had a family of its own they came out 33% fast)."""
    by = {(s["device"], s["gemm_dtype"]): s for s in validate_gemm_tables()["by_chip"]}
    for chip in (("h100-sxm", "bfloat16"), ("h100-sxm", "fp8"), ("h200-sxm", "bfloat16"), ("h200-sxm", "fp8"),
                 ("b200", "bfloat16"), ("gb200", "bfloat16"), ("b300", "bfloat16"), ("gb300", "bfloat16")):
        assert by[chip]["median_abs_error"] <= 0.15, chip
    for chip in ("b200", "gb200"):
        assert abs(by[(chip, "nvfp4")]["bands"]["m >= 4096"]["mean_error"]) <= 0.25, chip


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_the_other_engines_tables_cover_hopper_and_b200_on_the_same_shapes(engine: str) -> None:
    table, trt = rows(engine), rows()
    assert {(r["device"], r["gemm_dtype"]) for r in table} == {
        (d, f) for d in ("h100-sxm", "h200-sxm", "b200") for f in ("bfloat16", "fp8")} | {("b200", "nvfp4")}
    assert {(r["m"], r["n"], r["k"]) for r in table} == {(r["m"], r["n"], r["k"]) for r in trt}
    assert all(r["latency_ms"] > 0 for r in table)
    assert len({r["version"] for r in table}) == 1  # one engine version per table


def test_sglangs_fp8_input_is_scaled_per_token_in_one_kernel_and_vllms_like_tensorrt_llms() -> None:
    """SGLang quantizes the input with a scale per token in one kernel (each row's maximum in registers); vLLM's
    run-time per-tensor scale reduces the whole input first, as TensorRT-LLM's does."""
    m, n, k = 256, 4096, 4096
    cast, gemm = linear_calls(m, n, k, "fp8", "sglang")
    assert (cast.family, gemm.family) == ("elementwise", "gemm") and cast.cost.bytes_read == 2 * m * k
    assert [c.family for c in linear_calls(m, n, k, "fp8", "vllm")] == ["reduction", "elementwise", "gemm"]
    assert [c.family for c in linear_calls(m, n, k, "nvfp4", "sglang")] == ["elementwise", "gemm"]


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_each_engines_rows_are_cases_of_their_own_source_timed_as_that_engine_serves(engine: str) -> None:
    out = validate_gemm_tables(engine)
    assert out["source"] == TABLES[engine][1] != TABLES[ENGINE][1]
    assert len(out["cases"]) == len(rows(engine))
    assert all(c["id"].startswith(f"aic-gemm-{engine}:") and c["stack"] == engine for c in out["cases"])
    assert all(set(CASE_KEYS) <= set(c) for c in out["cases"])
    by = {(s["device"], s["gemm_dtype"]): s for s in out["by_chip"]}
    assert by[("h100-sxm", "bfloat16")]["provenance"] == "calibrated"
    assert by[("b200", "fp8")]["provenance"] == "transferred"
    text = render(out)
    assert TABLES[engine][2] in text and "b200" in text


def test_loose_guard_the_other_engines_16_bit_gemms_land_near_their_measured_forwards() -> None:
    """A regression guard on fixed data (the figures are reported by `validate --published`): every chip's bf16
    within 15% median |error| in both engines' tables, the calibrated chips from their own calibration and B200
    through the transfer."""
    for engine in ("vllm", "sglang"):
        for s in validate_gemm_tables(engine)["by_chip"]:
            if s["gemm_dtype"] == "bfloat16":
                assert s["median_abs_error"] <= 0.15, (engine, s["device"])
