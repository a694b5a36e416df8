"""The stack mechanisms against the shipped H200 measurements (`emulator.validation.measured_stack`)."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.calibrate.sweeps import sweep
from emulator.engine.calibration import MIN_SHAPE_POINTS
from emulator.validation import measured_stack as M


def test_shipped_measurements_name_their_device_and_sections() -> None:
    data = M.measurements()
    for lease in data["leases"]:
        assert lease["fingerprint"]["name"] == "NVIDIA H200"
        assert lease["fingerprint"]["driver_version"] and lease["fingerprint"]["torch_version"]
    for section in ("launch", "experts", "fp8_scaling", "decode", "compiled", "prefill", "fp8_experts", "ceilings"):
        assert data[section], section


def _subset() -> dict[str, Any]:
    data = M.measurements()
    four_layers = [r for r in data["decode"] if r["config"]["num_hidden_layers"] == 4][:1]
    return {**data, "experts": data["experts"][:2], "fp8_experts": data["fp8_experts"][:1],
            "fp8_scaling": data["fp8_scaling"][:1], "decode": four_layers, "compiled": data["compiled"][:1],
            "prefill": []}


def test_every_case_is_predicted_and_summarised(monkeypatch: pytest.MonkeyPatch) -> None:
    subset = _subset()
    monkeypatch.setattr(M, "measurements", lambda: subset)
    out = M.validate_measured_stack()
    assert out["device"] == "h200-sxm" and out["provenance"] == "calibrated"
    ids = [c["id"] for c in out["cases"]]
    assert len(ids) == len(set(ids)) == 2 + 1 + 1 + 2 + 1
    for c in out["cases"]:
        assert c["predicted"] > 0 and c["published"] > 0
        assert c["error"] == pytest.approx(c["predicted"] / c["published"] - 1)
        assert c["stack"] in ("kernel", "eager", "eager+graph", "vllm")
    assert sum(s["num_cases"] for s in out["by_mechanism"].values()) == len(ids)
    assert "grouped:" in M.render(out) and "median |e|" in M.render(out)


def test_graphs_and_fusion_remove_time_from_the_same_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """One decode step three ways: host launches > graph replay > fused graph replay (the measured order too)."""
    data = M.measurements()
    step = next(r for r in data["compiled"] if r["batch_size"] == 1)
    row = {**step, "graph": step["compiled_graph"]}  # the eager and graph cases of the same step
    monkeypatch.setattr(M, "measurements", lambda: {**data, "experts": [], "fp8_experts": [], "fp8_scaling": [],
                                                    "decode": [row], "compiled": [step], "prefill": []})
    by = {c["id"].rsplit(":", 1)[1]: c["predicted"] for c in M.validate_measured_stack()["cases"]}
    assert by["eager"] > by["graph"] > by["compiled+graph"]
    assert step["eager"]["median_s"] > step["compiled_graph"]["median_s"]


def test_fp8_sweep_covers_the_bf16_shape_classes() -> None:
    """Enough fp8 points to fit their own shape response, with decode-shaped (skinny) products among them."""
    fp8 = [p.params for p in sweep("cuda", quick=True) if p.dtype == "fp8"]
    assert len(fp8) >= MIN_SHAPE_POINTS
    assert any(p["m"] <= 16 for p in fp8) and any(p["m"] >= 8192 for p in fp8)
    assert all(p["m"] % 16 == 0 and p["n"] % 16 == 0 and p["k"] % 16 == 0 for p in fp8)  # cuBLASLt's fp8 rule
    grouped = [p.params for p in sweep("cuda", quick=True) if p.name == "bmm" and p.params["batch"] >= 8]
    assert len(grouped) >= 5
