"""The constant-MFU reference predictors (emulator/validation/baselines.py): what they predict, how the fitted one is
fitted and held out, and the section validate --published reports them in. Their errors belong to the report."""

from __future__ import annotations

import pytest

from emulator.published import load_cases
from emulator.validation import baselines as b
from emulator.validation import published_torchtitan as titan
from emulator.validation.published_hopper import BLACKWELL, KIND, case_scenario, validate_published

H100_8B = "train-mbridge2509-llama3-8b-dgx-h100-8gpu-fp8-pretrain"


def _case(case_id: str, kind: str = KIND) -> dict:  # type: ignore[type-arg]
    return next(c for c in load_cases(kind) if c["id"] == case_id)


def test_a_constant_share_of_peak_is_that_share_over_the_model_flops_per_token() -> None:
    """Llama 3 8B in FP8 on H100: f x the fp8 dense peak (1,978.9 TFLOP/s) over its model FLOPs per token, and the
    share doubles the prediction when it doubles."""
    case = _case(H100_8B)
    peak, per_token = b.peak_per_token(case)
    assert peak == pytest.approx(case_scenario(case).device.matrix_flops_per_s["fp8"])
    assert 6 * 7.5e9 < per_token < 6 * 9e9 + 3e11  # 6 x ~8B weights, plus attention over 8k tokens
    assert b.constant_mfu(case, 0.4) == pytest.approx(0.4 * peak / per_token)
    assert b.constant_mfu(case, 0.8) == pytest.approx(2 * b.constant_mfu(case, 0.4))


def test_a_model_tflops_case_is_predicted_in_tflops() -> None:
    case = next(c for c in load_cases(KIND) if c["metric"]["name"] == "model_tflops_per_gpu")
    peak, _ = b.peak_per_token(case)
    assert b.constant_mfu(case, 0.4) == pytest.approx(0.4 * peak / 1e12)


def test_the_fitted_share_is_the_grid_point_of_least_log_loss() -> None:
    """On one case the fitted share is the grid point nearest its own achieved share of peak."""
    case = _case(H100_8B)
    peak, per_token = b.peak_per_token(case)
    achieved = float(case["value"]) * per_token / peak
    fitted = b.fit_mfu([case], lambda c: True)
    assert fitted in b.GRID and abs(fitted - achieved) <= 0.0025 + 1e-9


def test_the_section_sets_each_source_beside_the_emulator() -> None:
    """Two Hopper families and two Blackwell runs: each source lists its cases under both predictors, the Hopper
    ones predicted by the share fitted without their family, the Blackwell ones by the share fitted on all Hopper."""
    llama, qwen = "train-mbridge2509-llama3-8b", "train-mbridge2509-qwen3-235b"
    hopper = validate_published(only=lambda c: c["id"].startswith((llama, qwen)))
    blackwell = validate_published(kind=BLACKWELL, only=lambda c: c["id"].startswith("train-mbridge2604-qwen3-30b"))
    res = b.baselines({KIND: hopper, BLACKWELL: blackwell})
    assert res["reference_mfu"] == b.REFERENCE_MFU and res["fitted_mfu"] in b.GRID
    assert set(res["fitted_mfu_by_held_out_family"]) == {"llama3", "qwen3-moe"}
    h, bw = res["sources"]
    assert h["num_cases"] == len(hopper["cases"]) and bw["num_cases"] == len(blackwell["cases"])
    for s, kind in ((h, KIND), (bw, BLACKWELL)):
        for row in s["cases"]:
            case = _case(row["id"], kind)
            assert row["constant_40_percent"] == pytest.approx(b.constant_mfu(case, 0.40))
    fold = res["fitted_mfu_by_held_out_family"]["llama3"]
    first = next(r for r in h["cases"] if r["id"].startswith(llama))
    assert first["constant_fitted"] == pytest.approx(b.constant_mfu(_case(first["id"]), fold))
    assert bw["cases"][0]["constant_fitted"] == pytest.approx(
        b.constant_mfu(_case(bw["cases"][0]["id"], BLACKWELL), res["fitted_mfu"]))
    text = b.render(res)
    assert "40% of peak" in text and h["source"] in text and bw["source"] in text


def test_torchtitan_runs_take_the_hopper_share_and_count_the_whole_square() -> None:
    """A torchtitan run is guessed with the share fitted on the H100 runs, its FLOPs per token counting attention over
    the whole square as torchtitan does (more than the causal half would)."""
    hopper = validate_published(only=lambda c: c["id"].startswith("train-mbridge2509-llama3-8b"))
    case = load_cases(titan.KIND)[0]
    tt = {"cases": [titan.predict_case(case)]}
    res = b.baselines({KIND: hopper, titan.KIND: tt})
    row = next(s for s in res["sources"] if s["source"] == titan.SOURCE)
    assert row["method"] == "held out (fitted on Hopper)" and row["num_cases"] == 1
    assert row["cases"][0]["constant_fitted"] == pytest.approx(b.constant_mfu(case, res["fitted_mfu"], titan.KIND))
    whole = b.peak_per_token(case, titan.KIND)[1]
    model = titan.case_scenario(case).model
    from emulator.validation.published_hopper import model_flops_per_token
    assert whole == pytest.approx(model_flops_per_token(model, int(case["config"]["seq_len"]), causal=False))
