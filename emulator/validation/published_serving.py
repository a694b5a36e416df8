"""MLPerf Inference v4.1 cases (published_inference.yaml) against the serving model, with one set of parameters.

Each case runs on its system's shipped profile (hgx-h100: 8 x H100 SXM) with the device's efficiency table
(`efficiency_for`: the H200 calibration transferred) and the workload of `mlperf_inference_rules.yaml`. The
replica's tensor parallelism is the submitter's kind of choice, made by the model: the tp in 1, 2, 4, 8 with
the highest predicted Offline throughput among those whose weights fit (the same tp serves Server).
Error = predicted / published - 1 on the published throughput metric (tokens/s for Llama 2 and Mixtral, samples/s
for GPT-J and DLRM-v2).

Held out (`validate_heldout`, published_inference_heldout.yaml): MLPerf results on chips and engines nothing was
fitted on (AMD's MI300X in v4.1 and MI325X in v5.0, both with vLLM on ROCm; NVIDIA's H200 in v4.1 with
TensorRT-LLM). Each runs as its submission's own code states: its device's shipped system (`default_system`), its
engine, weight and KV formats, tensor parallelism and replica count, and where the code sets them the batch limit
and KV memory fraction (`config`); the workload, its Server bounds and nothing else from
`mlperf_inference_rules.yaml`. The engine's profile is the one fitted on NVIDIA Hopper; the device's efficiencies are
the H200 calibration moved to the chip's published achievable rates (`engine.transfer`).

Operating points (`validate_operating_points`): a Server run's LoadGen summary gives, beside its throughput, the
rate it was scheduled at and its own TTFT and TPOT percentiles (`operating_point` of a Server case). Each run,
in-sample or held out, is predicted at that rate and its p50 and p99 compared: the open-loop latencies the
throughput search bounds, where the closed-loop AIConfigurator rows never go (hundreds of sequences per replica).
Nothing is fitted on them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from emulator.errors import EmulatorError
from emulator.files import read_yaml, shipped
from emulator.hardware import default_system, load_device, load_system
from emulator.published import load_cases, profile_name
from emulator.scenario import Scenario, ServingSpec, parse_inference
from emulator.serving import ServingResult, predict_serving, serving_replica
from emulator.serving.prediction import num_replicas
from emulator.serving.search import steady_step_s
from emulator.stacks import stack_for
from emulator.stats import median
from emulator.validation.sources import error_summary
from emulator.workloads.config import DLRMConfig
from emulator.workloads.presets import preset

RULES = shipped("data") / "mlperf_inference_rules.yaml"
SYSTEM = "hgx-h100"
TP_CHOICES = (1, 2, 4, 8)
HELDOUT = "inference_heldout"
HELDOUT_SOURCE = "MLPerf Inference other chips (held out)"
FORMATS = {"FP8": "fp8", "FP4": "fp4", "BF16": "bf16", "FP16": "fp16", "INT8": "int8"}  # published -> ours
OPERATING_SOURCE = "MLPerf Server latency at the submitted rate"
# (key of a case's operating_point without its _s, ServingResult field, percentile)
LATENCIES = (("ttft_p50", "ttft_s", "p50"), ("ttft_p99", "ttft_s", "p99"), ("tpot_p50", "tpot_s", "p50"),
             ("tpot_p99", "tpot_s", "p99"))


@functools.lru_cache(maxsize=1)
def rules() -> dict[str, Any]:
    return dict(read_yaml(RULES))


def workload_of(case_id: str) -> str:
    for token, name in rules()["case_workloads"].items():
        if f"-{token}-" in case_id:
            return str(name)
    raise EmulatorError(f"case '{case_id}' names no workload of {RULES.name}. Fix: add it to case_workloads.")


def case_spec(name: str, scenario: str, overrides: dict[str, Any] | None = None, where: str = str(RULES)
              ) -> ServingSpec:
    """The spec of workload `name` in `scenario`: its rules entry, with `overrides` (a case's own settings) over it.
    LoadGen's system under test hands queries to the engine in-process and takes token ids back: no API server
    streams them (`host.frontend_token_s` 0)."""
    entry = {k: v for k, v in rules()[name].items() if k not in ("model", "sources")}
    own = dict(overrides or {})
    own["engine_settings"] = {"host.frontend_token_s": 0.0, **own.get("engine_settings", {})}
    return parse_inference({**entry, "scenario": scenario, **own}, where)


def published_metric(case: dict[str, Any], pred: ServingResult) -> float:
    """The predicted figure a case publishes: tokens/s where its unit counts tokens, else samples/s."""
    return pred.throughput_tokens_per_s if "tokens" in case["metric"]["unit"] else pred.throughput_samples_per_s


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


def inference_case(case: dict[str, Any]) -> tuple[Scenario, ServingSpec]:
    """The scenario and spec of a case of published_inference.yaml (the 8 x H100 system, the model's best tp)."""
    name = workload_of(case["id"])
    scenario = _scenario(rules()[name]["model"])
    spec = case_spec(name, case["config"]["scenario"].lower())
    if not isinstance(scenario.model, DLRMConfig):
        spec = dataclasses.replace(spec, tp=best_tp(name))
    return scenario, spec


def predict_case(case: dict[str, Any]) -> tuple[float, ServingResult]:
    scenario, spec = inference_case(case)
    pred = predict_serving(scenario, spec)
    return published_metric(case, pred), pred


def heldout_case(case: dict[str, Any]) -> tuple[Scenario, ServingSpec]:
    """The scenario and spec of a held-out case: as its submission ran (see the module docstring)."""
    name, cfg, where = workload_of(case["id"]), case["config"], str(case["id"])
    device = load_device(profile_name(case["hardware"]["device"]) or case["hardware"]["device"])
    system = default_system(device)
    if system is None:
        raise EmulatorError(f"case '{where}': no shipped system of {device.name} devices. Fix: add one to "
                            "hw_profiles/systems.")
    tp, count = int(cfg["parallelism"]["tp"]), int(case["hardware"]["count"])
    if count != tp * int(cfg["parallelism"]["replicas"]):
        raise EmulatorError(f"case '{where}': {count} devices are not tp x replicas. Fix: its config.parallelism.")
    own: dict[str, Any] = {"engine": cfg["engine"], "precision": FORMATS[cfg["precision"]],
                           "kv_precision": FORMATS[cfg["kv_precision"]], "parallel": {"tp": tp}}
    if "max_batch" in cfg:  # the harness's batch limit, where its config states one
        own["batch_size"] = int(cfg["max_batch"])
    if "kv_memory_fraction" in cfg:
        own["engine_settings"] = {"defaults.kv_memory_fraction": float(cfg["kv_memory_fraction"])}
    spec = case_spec(name, cfg["scenario"].lower(), own, where)
    return Scenario(path=where, model=preset(rules()[name]["model"]), device=system.device, system=system,
                    num_devices=count), spec


def validate_heldout() -> dict[str, Any]:
    """Predicted vs published throughput of the held-out cases, summarised per device and engine."""
    cases = []
    for case in load_cases(HELDOUT):
        scenario, spec = heldout_case(case)
        pred = predict_serving(scenario, spec)
        predicted = published_metric(case, pred)
        cases.append({"id": case["id"], "metric": "throughput", "published": float(case["value"]),
                      "predicted": predicted, "error": predicted / float(case["value"]) - 1,
                      "unit": case["metric"]["unit"], "stack": spec.engine or "", "device": scenario.device.name,
                      "scenario": case["config"]["scenario"], "replica": pred.replica.as_dict()})
    return {"source": HELDOUT_SOURCE, "cases": cases,
            "summary": {"all": error_summary(cases), "by_device_engine": _groups(cases, "device", "stack")}}


def _groups(cases: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """`error_summary` of `cases` per value of `keys`, each beside its keys' values, in sorted order."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for c in cases:
        groups.setdefault(tuple(c[k] for k in keys), []).append(c)
    return [dict(zip(keys, values, strict=True)) | error_summary(g) for values, g in sorted(groups.items())]


def _render(title: str, result: dict[str, Any], groups: str, keys: tuple[str, ...], width: int, digits: int) -> str:
    """A section's cases (published, predicted, error) and its `groups` summaries, each named by its `keys`."""
    lines = [f"{title} (error = predicted / published - 1)",
             f"{'case':{width}s} {'published':>12s} {'predicted':>12s} {'error':>8s}"]
    lines += [f"{c['id']:{width}s} {c['published']:12.{digits}f} {c['predicted']:12.{digits}f} {c['error']:+8.1%}"
              for c in result["cases"]]
    for g in result["summary"][groups]:
        lines.append(f"{' '.join(str(g[k]) for k in keys)}: {g['num_cases']} cases, median |error| "
                     f"{g['median_abs_error']:.1%}, max {g['max_abs_error']:.1%}, mean {g['mean_error']:+.1%}")
    return "\n".join(lines)


def render_heldout(result: dict[str, Any]) -> str:
    return _render(f"{HELDOUT_SOURCE}: never fitted on", result, "by_device_engine", ("device", "stack"), 72, 1)


def validate_operating_points() -> dict[str, Any]:
    """Each Server run's own TTFT and TPOT (p50, p99) against the emulator's at the rate the run was scheduled at
    (its `operating_point`), summarised per engine and metric (see the module docstring)."""
    cases: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for kind in ("inference", HELDOUT):
        for case in load_cases(kind):
            point = case.get("operating_point")
            if not point:
                continue
            scenario, spec = heldout_case(case) if kind == HELDOUT else inference_case(case)
            rate = float(point["scheduled_samples_per_s"])
            pred = predict_serving(scenario, dataclasses.replace(spec, arrival_rate_per_s=rate))
            # The engine the prediction ran: the case's, else the vendor's default as predict_serving picks it
            where = {"stack": stack_for(spec.engine, "serving", scenario.device.vendor), "device": scenario.device.name}
            runs.append({"id": case["id"], **where, **implied_step(scenario, spec, point)})
            for key, field, q in LATENCIES:
                published, predicted = float(point[f"{key}_s"]), float(getattr(getattr(pred, field), q))
                cases.append({"id": f"{case['id']}:{key}", "metric": f"{key}_s", "published": published,
                              "predicted": predicted, "error": predicted / published - 1, **where,
                              "held_out": kind == HELDOUT, "rate_per_s": rate})
    return {"source": OPERATING_SOURCE, "cases": cases, "runs": runs,
            "summary": {"all": error_summary(cases), "by_stack_metric": _groups(cases, "stack", "metric")}}


def implied_step(scenario: Scenario, spec: ServingSpec, point: dict[str, Any]) -> dict[str, float]:
    """What a Server run's own figures say of one iteration near its capacity: by Little's law each replica holds
    (scheduled rate / replicas) x mean latency sequences; the emulator's steady step at that load
    (`search.steady_step_s`: those decodes and the prompt tokens their replacement brings) beside the run's TPOT p50,
    and the difference per sequence held."""
    replica = serving_replica(scenario, spec)
    replicas = num_replicas(scenario, replica.num_devices, spec.path or scenario.path)
    held = float(point["scheduled_samples_per_s"]) / replicas * float(point["mean_latency_s"])
    step = steady_step_s(replica, held, spec.input_tokens.expected, spec.output_tokens.expected, spec.num_beams)
    tpot = float(point["tpot_p50_s"])
    return {"sequences_per_replica": held, "emulator_step_s": step, "tpot_p50_s": tpot,
            "gap_per_sequence_s": (tpot - step) / held}


def render_operating_points(result: dict[str, Any]) -> str:
    lines = [_render(f"{OPERATING_SOURCE}: each Server run predicted at its scheduled rate, never fitted on", result,
                     "by_stack_metric", ("stack", "metric"), 80, 3),
             "Each run near its capacity (sequences per replica by Little's law; the emulator's step at that load):",
             f"{'run':72s} {'sequences':>9s} {'step ms':>8s} {'TPOT ms':>8s} {'gap/seq us':>10s}"]
    lines += [f"{r['id']:72s} {r['sequences_per_replica']:9.0f} {r['emulator_step_s'] * 1e3:8.1f} "
              f"{r['tpot_p50_s'] * 1e3:8.1f} {r['gap_per_sequence_s'] * 1e6:10.1f}" for r in result["runs"]]
    return "\n".join(lines)


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


__all__ = ["HELDOUT", "HELDOUT_SOURCE", "LATENCIES", "OPERATING_SOURCE", "best_tp", "case_spec", "heldout_case",
           "implied_step", "inference_case", "predict_case", "published_metric", "render", "render_heldout",
           "render_operating_points", "rules", "validate_heldout", "validate_operating_points", "validate_published"]
