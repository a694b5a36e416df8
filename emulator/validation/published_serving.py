"""MLPerf Inference v4.1 cases (published_inference.yaml) against the serving model, with one set of parameters.

Each case runs on its system's shipped profile (hgx-h100: 8 x H100 SXM) with the device's efficiency table
(`efficiency_for`: the H200 calibration transferred) and the workload of `mlperf_inference_rules.yaml`. The
replica's tensor parallelism is the submitter's kind of choice, made by the model: the tp in 1, 2, 4, 8 with
the highest predicted Offline throughput among those whose weights fit (the same tp serves Server).
Error = predicted / published - 1 on the published throughput metric (tokens/s for Llama 2 and Mixtral, samples/s
for GPT-J and DLRM-v2).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from emulator.errors import EmulatorError
from emulator.files import read_yaml, shipped
from emulator.hardware import load_system
from emulator.published import load_cases
from emulator.scenario import Scenario, ServingSpec, parse_inference
from emulator.serving import ServingResult, predict_serving
from emulator.stats import median
from emulator.workloads.config import DLRMConfig
from emulator.workloads.presets import preset

RULES = shipped("data") / "mlperf_inference_rules.yaml"
SYSTEM = "hgx-h100"
TP_CHOICES = (1, 2, 4, 8)


@functools.lru_cache(maxsize=1)
def rules() -> dict[str, Any]:
    return dict(read_yaml(RULES))


def workload_of(case_id: str) -> str:
    for token, name in rules()["case_workloads"].items():
        if f"-{token}-" in case_id:
            return str(name)
    raise EmulatorError(f"case '{case_id}' names no workload of {RULES.name}. Fix: add it to case_workloads.")


def case_spec(name: str, scenario: str) -> ServingSpec:
    entry = {k: v for k, v in rules()[name].items() if k not in ("model", "sources")}
    return parse_inference({**entry, "scenario": scenario}, str(RULES))


def _scenario(model_name: str) -> Scenario:
    system = load_system(SYSTEM)
    return Scenario(path=str(RULES), model=preset(model_name), device=system.device, system=system,
                    num_devices=system.devices_per_node)


@functools.lru_cache(maxsize=16)
def best_tp(name: str) -> int:
    """The tp with the highest predicted Offline throughput among those that fit."""
    scenario = _scenario(rules()[name]["model"])
    spec = case_spec(name, "offline")
    best, best_tput = 1, -1.0
    for tp in TP_CHOICES:
        if scenario.model.num_heads % tp or scenario.num_devices % tp:  # type: ignore[union-attr]
            continue
        try:
            got = predict_serving(scenario, dataclasses.replace(spec, tp=tp))
        except EmulatorError:
            continue
        if got.throughput_tokens_per_s > best_tput:
            best, best_tput = tp, got.throughput_tokens_per_s
    return best


def predict_case(case: dict[str, Any]) -> tuple[float, ServingResult]:
    name = workload_of(case["id"])
    scenario = _scenario(rules()[name]["model"])
    spec = case_spec(name, case["config"]["scenario"].lower())
    if not isinstance(scenario.model, DLRMConfig):
        spec = dataclasses.replace(spec, tp=best_tp(name))
    pred = predict_serving(scenario, spec)
    tokens = "tokens" in case["metric"]["unit"]
    return (pred.throughput_tokens_per_s if tokens else pred.throughput_samples_per_s), pred


def validate_published() -> dict[str, Any]:
    """Predicted vs published throughput for every inference case, with the median and maximum |error|."""
    cases = []
    for case in load_cases("inference"):
        predicted, pred = predict_case(case)
        cases.append({"id": case["id"], "published": float(case["value"]), "predicted": predicted,
                      "error": predicted / float(case["value"]) - 1, "unit": case["metric"]["unit"],
                      "replica": pred.replica.as_dict(), "max_batch": pred.max_batch, "meets_slo": pred.meets_slo})
    errors = [abs(c["error"]) for c in cases]
    return {"cases": cases, "summary": {"median_abs_error": median(errors) if errors else None,
                                        "max_abs_error": max(errors) if errors else None,
                                        "num_cases": len(cases), "system": SYSTEM,
                                        "parameters": "one set: efficiency_for(h100-sxm), replica.py defaults"}}


def render(result: dict[str, Any]) -> str:
    lines = [f"{'case':72s} {'published':>12s} {'predicted':>12s} {'error':>8s}"]
    for c in result["cases"]:
        lines.append(f"{c['id']:72s} {c['published']:12.1f} {c['predicted']:12.1f} {c['error']:+8.1%}")
    s = result["summary"]
    lines.append(f"median |error| {s['median_abs_error']:.1%}, max {s['max_abs_error']:.1%}")
    return "\n".join(lines)


__all__ = ["best_tp", "case_spec", "predict_case", "render", "rules", "validate_published"]
