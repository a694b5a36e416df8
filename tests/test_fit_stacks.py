"""The stack fit's grid search (scripts/fit_stacks.py): the point it fits and its leave-one-group-out errors."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from scripts_loader import load_script

from emulator.stacks import load as stack_load


def _fit_stacks() -> ModuleType:
    return load_script("fit_stacks")


def _two_points(fit: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, item: str, low: Any, high: Any
                ) -> list[tuple[dict[str, list[Any]], str, list[dict[str, Any]], list[dict[str, Any]]]]:
    """Stand in for the fit's grid search: record its grid and grouping and its cases at `item` = `low` and `high`,
    the record going to `tmp_path` and the loader the fit patches restored after the test."""
    seen: list[tuple[dict[str, list[Any]], str, list[dict[str, Any]], list[dict[str, Any]]]] = []

    def fake(grid: dict[str, list[Any]], evaluate: Any, group_of: str, tolerance: float = 0.0) -> dict[str, Any]:
        seen.append((grid, group_of, evaluate({item: low}), evaluate({item: high})))
        return {"fitted": {k: v[0] for k, v in grid.items()}, "summary": {}}

    monkeypatch.setattr(stack_load, "shipped", stack_load.shipped)  # the fit's copies are this test's only
    monkeypatch.setattr(fit, "grid_fit", fake)
    monkeypatch.setattr(fit, "FITS", tmp_path)
    return seen


def _cases(point: dict[str, Any]) -> list[dict[str, Any]]:
    """Two models: m1 best at b = 0.5, m2 at b = 1; an overhead `a` that helps m1 a hair (1e-4 per unit)."""
    best = {"m1": 0.5, "m2": 1.0}
    return [{"id": f"{m}:{i}", "metric": "tpot_ms", "published": 1.0, "model": m, "stack": "test",
             "error": (e := 0.1 * (point["b"] - best[m]) - 1e-4 * point["a"] * (m == "m1")), "predicted": 1.0 + e}
            for m in best for i in range(3)]


def test_least_loss_picks_the_exact_best_and_the_tolerance_the_least_overhead() -> None:
    fit = _fit_stacks()
    grid = {"a": [0.0, 1.0, 2.0], "b": [0.0, 0.5, 1.0]}
    exact = fit.grid_fit(grid, _cases, "model")
    assert exact["fitted"] == {"a": 2.0, "b": 1.0} and exact["selection"] == "least loss"
    tolerant = fit.grid_fit(grid, _cases, "model", 0.05)
    assert tolerant["fitted"] == {"a": 0.0, "b": 1.0}  # the hair's breadth is not worth an overhead
    assert "least overhead within 5.0%" in tolerant["selection"]
    held = {c["id"]: c["error_held_out"] for c in tolerant["cases"]}
    assert held["m1:0"] == pytest.approx(0.05)  # fitted on m2 alone: b = 1, a = 0
    assert held["m2:0"] == pytest.approx(-0.05)  # fitted on m1 alone: b = 0.5


@pytest.mark.parametrize("flag", ["known_regression", "layout_suspect"])
def test_flagged_cases_are_predicted_but_left_out_of_every_loss(flag: str) -> None:
    """m2's cases flagged (a documented regression, a campaign whose layouts cannot have run): the fit takes m1's
    best b, as if m2 were not there; m2 is still predicted at it and reported."""
    fit = _fit_stacks()

    def cases(point: dict[str, Any]) -> list[dict[str, Any]]:
        return [dict(c, **({flag: "why"} if c["model"] == "m2" else {})) for c in _cases(point)]

    record = fit.grid_fit({"a": [0.0], "b": [0.0, 0.5, 1.0]}, cases, "model")
    assert record["fitted"] == {"a": 0.0, "b": 0.5}
    assert {c["model"] for c in record["cases"]} == {"m1", "m2"}
    assert all(c["error_in_sample"] == pytest.approx(0.1 * (0.5 - 1.0)) for c in record["cases"] if c["model"] == "m2")
    assert not fit.in_loss({flag: "why"}) and fit.in_loss({})


def test_a_training_refinement_fits_its_items_into_a_record_of_its_own(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`training --refine item=values ...` fits those items alone (floats) and writes a record beside the joint
    fit's, named by the items' group; an argument without `=` gets the usage."""
    fit = _fit_stacks()
    seen: list[dict[str, list[float]]] = []

    def fake(grid: dict[str, list[float]] | None = None) -> dict[str, Any]:
        seen.append(grid or {})
        return {"fitted": {k: v[0] for k, v in (grid or {}).items()}, "summary": {}}

    monkeypatch.setattr(fit, "fit_training", fake)
    monkeypatch.setattr(fit, "FITS", tmp_path)
    assert fit.main(["training", "--refine", "host.op_dispatch_s=0,2e-5", "host.backward_dispatch_ratio=1"]) == 0
    assert seen == [{"host.op_dispatch_s": [0.0, 2e-5], "host.backward_dispatch_ratio": [1.0]}]
    assert (tmp_path / "megatron-core-hopper-host.json").exists()
    assert not (tmp_path / "megatron-core-hopper.json").exists()
    assert fit.main(["training", "--refine", "host.op_dispatch_s"]) == 2


def test_kernels_fits_an_engines_weight_only_shares_on_its_measured_kernels(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`kernels trtllm` fits the two weight-only items over their grid, each chip held out in turn, on the
    engine's weight-only MoE rows, into a record of its own; an engine without measured kernels is refused."""
    fit = _fit_stacks()
    seen: list[tuple[dict[str, list[float]], str]] = []

    def fake(grid: dict[str, list[float]], evaluate: Any, group_of: str, tolerance: float = 0.0) -> dict[str, Any]:
        seen.append((grid, group_of))
        return {"fitted": {k: v[0] for k, v in grid.items()}, "summary": {}}

    monkeypatch.setattr(fit, "grid_fit", fake)
    monkeypatch.setattr(fit, "Profiles", lambda: None)  # nothing evaluated: the loader stays the shipped one
    monkeypatch.setattr(fit, "FITS", tmp_path)
    assert fit.main(["kernels", "trtllm"]) == 0
    assert seen == [(fit.WEIGHT_ONLY_GRID, "device")]
    assert set(fit.WEIGHT_ONLY_GRID) == {"recipe.weight_only_widen_ops", "recipe.weight_only_math_share"}
    record = (tmp_path / "trtllm-hopper-weight-only.json").read_text()
    assert "w4a16_mxfp4" in record
    with pytest.raises(SystemExit, match="no measured weight-only kernels of vllm"):
        fit.main(["kernels", "vllm"])


def test_l2_fits_hoppers_l2_bandwidth_on_an_engines_moe_forwards(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`l2 sglang` fits the L2 bandwidth of the grouped GEMMs' tile reloads over its grid, each expert shape held
    out in turn, on SGLang's measured MoE forwards: every point predicts the rows on devices of that bandwidth."""
    fit = _fit_stacks()
    seen: list[tuple[dict[str, list[float]], str, list[dict[str, Any]]]] = []

    def fake(grid: dict[str, list[float]], evaluate: Any, group_of: str, tolerance: float = 0.0) -> dict[str, Any]:
        seen.append((grid, group_of, evaluate({"memory.l2.bandwidth_bytes_per_s": 4e12})))
        return {"fitted": {k: v[0] for k, v in grid.items()}, "summary": {}}

    monkeypatch.setattr(fit, "grid_fit", fake)
    monkeypatch.setattr(fit, "FITS", tmp_path)
    assert fit.main(["l2", "sglang"]) == 0
    (grid, group_of, cases), = seen
    assert grid == fit.L2_GRID and group_of == "model"
    assert {c["model"] for c in cases} == {"qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3"} and len(cases) == 72
    from emulator.validation.published_moe import validate_moe_tables
    shipped = {c["id"]: c["predicted"] for c in validate_moe_tables(None, "sglang")["cases"]}
    # 4 TB/s against the profile's 5.5: every prefill-sized row slower, none faster
    assert all(c["predicted"] > shipped[c["id"]] * 1.05 for c in cases if c["num_tokens"] == 8192)
    assert all(c["predicted"] >= shipped[c["id"]] * (1 - 1e-9) for c in cases)
    assert "aic_moe_sglang.csv" in (tmp_path / "sglang-hopper-l2.json").read_text()
    with pytest.raises(SystemExit, match="no measured MoE forwards of eager"):
        fit.main(["l2", "eager"])
    for engine in ("trtllm", "vllm"):
        with pytest.raises(SystemExit, match=f"{engine}'s profile names no grouped-GEMM tiles"):
            fit.main(["l2", engine])


def test_moe_host_fits_an_engines_host_time_per_moe_layer_on_its_4_bit_moe_rows(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`moe-host vllm` fits Hopper's host time per MoE layer of a prompt iteration over its grid, each model held
    out in turn, on the engine's rows of 4-bit MoE checkpoints: more host time, longer first tokens, and nothing but
    that engine's rows; an engine with no such rows is refused."""
    fit = _fit_stacks()
    seen = _two_points(fit, monkeypatch, tmp_path, "host.prompt_moe_layer_s", {"hopper": 0.0}, {"hopper": 2e-3})
    assert fit.main(["moe-host", "vllm"]) == 0
    (grid, group_of, none, more), = seen
    assert grid == fit.MOE_HOST_GRID and group_of == "model"
    assert {c["stack"] for c in none} == {"vllm"} and {c["model"] for c in none} == {"gpt-oss-120b", "kimi-k2.5"}
    ttft = {c["id"]: c["predicted"] for c in none if c["metric"] == "ttft_ms"}
    assert all(c["predicted"] > ttft[c["id"]] for c in more if c["metric"] == "ttft_ms")
    assert "4-bit MoE checkpoints" in (tmp_path / "vllm-hopper-moe-host.json").read_text()
    with pytest.raises(SystemExit, match="no Hopper rows of 4-bit MoE checkpoints served by sglang"):
        fit.main(["moe-host", "sglang"])


def test_frontend_fits_an_engines_streaming_time_per_token_with_its_other_items_held(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`frontend sglang` fits the API server's time per streamed token over its grid on the joint fit's rows, each
    model held out in turn, the engine's other items held: a slower stream path lengthens TPOT where the engine
    streams fast (elsewhere a closed loop's later sends may shorten it a little)."""
    fit = _fit_stacks()
    seen = _two_points(fit, monkeypatch, tmp_path, "host.frontend_token_s", 0.0, 2e-4)
    assert fit.main(["frontend", "sglang"]) == 0
    (grid, group_of, none, slow), = seen
    assert grid == fit.FRONTEND_GRID and group_of == "model"
    assert {c["stack"] for c in none} == {"sglang"}
    tpot = {c["id"]: c["predicted"] for c in none if c["metric"] == "tpot_ms"}
    later = [c["predicted"] / tpot[c["id"]] for c in slow if c["metric"] == "tpot_ms"]
    assert max(later) > 1.2 and sum(later) > len(later)
    record = (tmp_path / "sglang-hopper-frontend.json").read_text()
    assert "other items held" in record and "host.prompt_layer_s" in record
