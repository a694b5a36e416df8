"""MLPerf Inference v4.1 (8x H100): one set of device parameters for every case, within the issue's bound; and the
held-out MLPerf results on other chips, run as their submissions state."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from emulator.errors import EmulatorError
from emulator.published import load_cases
from emulator.serving import serving_replica
from emulator.serving.search import steady_throughput
from emulator.stats import Percentiles
from emulator.validation import published_serving
from emulator.validation.published_serving import (
    HELDOUT,
    HELDOUT_SOURCE,
    LATENCIES,
    OPERATING_SOURCE,
    heldout_case,
    implied_step,
    render_operating_points,
    validate_heldout,
    validate_operating_points,
    validate_published,
)


def test_mlperf_median_error_within_15_percent_and_server_never_beats_offline() -> None:
    """Median |error| over Offline and Server throughput is at most 15%, and no LLM Server rate exceeds the
    Offline capacity of the same system (a queue is only stable below it)."""
    result = validate_published()
    assert result["summary"]["median_abs_error"] <= 0.15, result["summary"]
    by_id = {c["id"]: c["predicted"] for c in result["cases"]}
    for case_id, predicted in by_id.items():
        if "-server-" in case_id and "dlrm" not in case_id:  # LLM cases; the recommender batches queries itself
            assert predicted <= by_id[case_id.replace("-server-", "-offline-")] * 1.001, case_id


def test_the_held_out_mlperf_cases_run_as_their_submissions_state() -> None:
    """AMD's MI300X and MI325X results (vLLM) and NVIDIA's H200 and GH200 ones (TensorRT-LLM) run on their own chip's
    system with the engine, formats, layout and limits their submission's code states, and come back summarised per
    device and engine."""
    cases = load_cases(HELDOUT)
    assert cases and {c["hardware"]["device"] for c in cases} >= {"MI300X", "H200-SXM-141GB", "GH200-144GB"}
    for case in cases:
        cfg = case["config"]
        scenario, spec = heldout_case(case)
        assert scenario.system is not None and scenario.system.device.name == scenario.device.name
        assert scenario.device.vendor == ("amd" if case["hardware"]["submitter"] == "AMD" else "nvidia")
        assert spec.engine == cfg["engine"] and (spec.precision, spec.kv_precision) == ("fp8", "fp8")
        assert spec.tp == cfg["parallelism"]["tp"] and scenario.num_devices == case["hardware"]["count"]
        assert spec.scenario == cfg["scenario"].lower() and spec.batch_size == cfg.get("max_batch")
        assert dict(spec.engine_settings).get("defaults.kv_memory_fraction") == cfg.get("kv_memory_fraction")
    result = validate_heldout()
    assert len(result["cases"]) == len(cases) and result["source"] == HELDOUT_SOURCE
    groups = {(g["device"], g["stack"]): g["num_cases"] for g in result["summary"]["by_device_engine"]}
    assert sum(groups.values()) == len(cases)
    assert {("mi300x", "vllm"), ("h200-sxm", "trtllm"), ("gh200", "trtllm")} <= set(groups)
    by_id = {c["id"]: c["predicted"] for c in result["cases"]}
    for case_id, predicted in by_id.items():  # a replica count scales a system's rate, Server never beats Offline
        if "-server-" in case_id:
            assert predicted <= by_id[case_id.replace("-server-", "-offline-")] * 1.001, case_id
    one, eight = (by_id[f"infer-mlperf-v4.1-llama2-70b-{a}-offline-{s}_vllm"] for a, s in
                  (("99.9", "1xmi300x_2xepyc-9374f"), ("99", "8xmi300x_2xepyc-9374f")))
    assert eight == pytest.approx(8 * one, rel=0.02)


def test_a_held_out_case_whose_layout_does_not_cover_its_gpus_is_refused() -> None:
    case = copy.deepcopy(load_cases(HELDOUT)[0])
    case["config"]["parallelism"]["replicas"] = 3
    with pytest.raises(EmulatorError, match="tp x replicas"):
        heldout_case(case)


def test_each_server_run_is_predicted_at_its_own_scheduled_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Server case with an operating point (the in-sample H100 ones and the held-out ones) is predicted once,
    at the rate its LoadGen summary says it was scheduled at, and gives four cases, its TTFT and TPOT p50 and p99,
    each against the run's own figure."""
    runs = {c["id"]: c["operating_point"] for kind in ("inference", HELDOUT) for c in load_cases(kind)
            if c.get("operating_point")}
    assert len(runs) >= 9 and all("-server-" in i for i in runs)
    rates: list[float] = []
    real = published_serving.predict_serving  # what picks an in-sample case's tp (best_tp) keeps predicting

    def fake(scenario: Any, spec: Any) -> Any:  # at a given rate: TTFT 1 s and TPOT 0.1 s at p50, twice that at p99
        if spec.arrival_rate_per_s is None:
            return real(scenario, spec)
        rates.append(spec.arrival_rate_per_s)
        return SimpleNamespace(ttft_s=Percentiles(1.0, 1.5, 2.0), tpot_s=Percentiles(0.1, 0.15, 0.2))

    monkeypatch.setattr(published_serving, "predict_serving", fake)
    monkeypatch.setattr(published_serving, "implied_step", lambda scenario, spec, point: dict.fromkeys(
        ("sequences_per_replica", "emulator_step_s", "tpot_p50_s", "gap_per_sequence_s"), 1.0))
    result = validate_operating_points()
    assert sorted(rates) == sorted(p["scheduled_samples_per_s"] for p in runs.values())
    assert result["source"] == OPERATING_SOURCE and len(result["cases"]) == 4 * len(runs)
    expected = {"ttft_p50": 1.0, "ttft_p99": 2.0, "tpot_p50": 0.1, "tpot_p99": 0.2}
    for case in result["cases"]:
        run, key = case["id"].rsplit(":", 1)
        assert key in {k for k, _, _ in LATENCIES} and case["metric"] == f"{key}_s"
        assert case["published"] == runs[run][f"{key}_s"] and case["predicted"] == expected[key]
        assert case["error"] == pytest.approx(expected[key] / runs[run][f"{key}_s"] - 1)
        assert case["stack"] in {"trtllm", "vllm"} and case["held_out"] == ("-dgx-h100" not in run)
    assert [r["id"] for r in result["runs"]] == list(runs)  # one near-capacity record per run
    groups = {(g["stack"], g["metric"]): g["num_cases"] for g in result["summary"]["by_stack_metric"]}
    assert sum(groups.values()) == len(result["cases"]) and ("vllm", "tpot_p50_s") in groups
    assert "scheduled rate" in render_operating_points(result)


def test_a_runs_own_figures_give_its_load_and_the_emulators_step_there() -> None:
    """Little's law on the H200 run's own figures: 101.25 samples/s over 8 replicas for a mean 35.85 s holds 454
    sequences per replica; the emulator's step at that load is the steady step `steady_throughput` divides by, and the
    gap per sequence is the measured TPOT p50 less that step, over the sequences."""
    case = next(c for c in load_cases(HELDOUT) if c["id"].endswith("-server-h200-sxm-141gbx8_trt"))
    scenario, spec = heldout_case(case)
    point = case["operating_point"]
    got = implied_step(scenario, spec, point)
    assert got["sequences_per_replica"] == pytest.approx(101.25 / 8 * 35.8549)
    replica = serving_replica(scenario, spec)
    n = got["sequences_per_replica"]
    assert got["emulator_step_s"] == pytest.approx(
        n / steady_throughput(replica, n, spec.input_tokens.expected, spec.output_tokens.expected, 1))
    assert got["gap_per_sequence_s"] == pytest.approx((point["tpot_p50_s"] - got["emulator_step_s"]) / n)
    assert 0 < got["emulator_step_s"] < point["tpot_p50_s"]

