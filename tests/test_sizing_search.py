"""The sizing search: Pareto correctness, rejections by reason, exact agreement with the cluster model, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.cluster import Plan, predict_training
from emulator.sizing import load_sizing, size, write_report
from emulator.sizing.pareto import dominates, pareto_mask
from emulator.sizing.search import training_scenario

SIZING = """goal: train
model: llama3-8b
train: {total_tokens: 1e12, deadline_days: 60, seq_len: 4096, global_batch_size: 256}
candidates: [{device: h100-sxm, system: hgx-h100}, {device: b200, system: hgx-b200}]
constraints: {max_devices: 512}
search: {tp: [1, 2, 8], pp: [1, 2, 4], microbatch_size: [1], recompute: [none, full], zero: [0, 1]}
"""


def _sizing(tmp_path: Path) -> str:
    path = tmp_path / "small.yaml"
    path.write_text(SIZING)
    return str(path)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=30))
def test_pareto_mask_is_the_non_dominated_set(points: list[tuple[int, int, int]]) -> None:
    """A point is kept exactly when no other point dominates it."""
    pts = np.array(points, dtype=float)
    mask = pareto_mask(pts)
    for i in range(len(pts)):
        dominated = any(dominates(pts[j], pts[i]) for j in range(len(pts)) if j != i)
        assert mask[i] == (not dominated)


def test_rejections_are_counted_by_reason(tmp_path: Path) -> None:
    """Plans pruned by memory say how much they need and have; counts add up to the plans enumerated."""
    res = size(load_sizing(_sizing(tmp_path)))
    memory = res.rejected["memory"]
    assert memory["count"] > 0 and "needs" in memory["example"] and "GiB" in memory["example"]
    post = ("deadline_days", "power_cap_mw", "budget_usd")
    pruned = sum(v["count"] for k, v in res.rejected.items() if k not in post)
    assert pruned + res.num_evaluated == res.num_enumerated
    assert len(res.feasible) + res.rejected.get("deadline_days", {"count": 0})["count"] == res.num_evaluated


def test_search_agrees_with_predict_training(tmp_path: Path) -> None:
    """Every evaluated plan's step time and memory equal predict_training's for the same plan."""
    sz = load_sizing(_sizing(tmp_path))
    res = size(sz)
    cands = {c.device.name: c for c in sz.candidates}
    for row in res.rows[:: max(len(res.rows) // 25, 1)]:
        p = row["plan"]
        plan = Plan(tp=p["tp"], pp=p["pp"], dp=p["dp"], microbatch_size=p["microbatch_size"], zero=p["zero"],
                    sequence_parallel=p["sequence_parallel"], recompute=p["recompute"], global_batch_size=256,
                    seq_len=4096)
        out = predict_training(training_scenario(sz, cands[row["device"]], plan)).to_json()
        assert abs(out["step_time_s"] / row["step_time_s"] - 1) < 1e-9
        assert abs(out["memory_per_device_bytes"] / row["memory_per_device_bytes"] - 1) < 1e-9


def test_zero_3_plans_are_searched_with_the_same_step(tmp_path: Path) -> None:
    """ZeRO-3 plans go through the one training step: the search's step time and memory are predict_training's."""
    path = tmp_path / "z3.yaml"
    path.write_text(SIZING.replace("zero: [0, 1]", "zero: [3]"))
    sz = load_sizing(str(path))
    res = size(sz)
    rows = [r for r in res.rows if r["plan"]["zero"] == 3]
    assert rows
    cand = sz.candidates[0]
    row = next(r for r in rows if r["device"] == cand.device.name)
    p = row["plan"]
    plan = Plan(tp=p["tp"], pp=p["pp"], dp=p["dp"], microbatch_size=p["microbatch_size"], zero=3,
                sequence_parallel=p["sequence_parallel"], recompute=p["recompute"], global_batch_size=256, seq_len=4096)
    pred = predict_training(training_scenario(sz, cand, plan))
    assert pred.step_time_s == row["step_time_s"] and pred.step.fsdp_exposed_s >= 0
    assert sum(pred.memory.parts.values()) == row["memory_per_device_bytes"]


def test_pareto_and_best_are_consistent(tmp_path: Path) -> None:
    """No feasible plan dominates a Pareto plan, and each objective's best is minimal on its axis."""
    res = size(load_sizing(_sizing(tmp_path)))
    key = "effective_time_to_train_s"
    pts = {i: np.array([res.rows[i][key], res.rows[i]["cost_usd"], res.rows[i]["facility_mw"]]) for i in res.feasible}
    for i in res.pareto:
        assert not any(dominates(pts[j], pts[i]) for j in res.feasible)
    assert res.rows[res.best["cost"]]["cost_usd"] == min(res.rows[i]["cost_usd"] for i in res.feasible)
    assert res.rows[res.best["time"]][key] == min(res.rows[i][key] for i in res.feasible)
    assert res.rows[res.best["devices"]]["num_devices"] == min(res.rows[i]["num_devices"] for i in res.feasible)


def test_same_file_gives_byte_identical_report_json(tmp_path: Path) -> None:
    """Two runs of one sizing file write byte-identical report.json files."""
    path = _sizing(tmp_path)
    blobs = []
    for k in range(2):
        sz = load_sizing(path)
        write_report(size(sz), sz, tmp_path / f"out{k}")
        blobs.append((tmp_path / f"out{k}" / "report.json").read_bytes())
    assert blobs[0] == blobs[1]
    assert b'"schema_version": 1' in blobs[0] and str(tmp_path).encode() not in blobs[0]


def test_a_named_engine_skips_the_candidates_it_does_not_run_on(tmp_path: Path) -> None:
    """A serving sizing naming TensorRT-LLM rejects the AMD candidate's layouts as unsupported (counted with the
    others) and sizes the NVIDIA one; naming none, the AMD candidate is sized on its vendor's default engine."""
    text = """goal: serve
model: llama3-8b
serve:
  traffic: {arrival_rate_per_s: 20, input_tokens: 512, output_tokens: 64}
  slo: {ttft_p99_s: 2.0, tpot_p99_s: 0.1}
  engine: trtllm
candidates: [{device: h100-sxm, system: hgx-h100}, {device: mi300x, system: mi300x-node}]
"""
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    res = size(load_sizing(str(path)))
    assert "mi300x" in res.rejected["unsupported"]["example"] and "trtllm" in res.rejected["unsupported"]["example"]
    assert {res.rows[i]["device"] for i in res.feasible} == {"h100-sxm"}
    path.write_text(text.replace("  engine: trtllm\n", ""))
    again = size(load_sizing(str(path)))
    assert "unsupported" not in again.rejected and "mi300x" in {again.rows[i]["device"] for i in again.feasible}
