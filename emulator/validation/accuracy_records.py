"""The records of `stacks.accuracy` (stack_profiles/fits/validated.json) from what `validate --published` compares:
each stack's end-to-end errors per device family and metric.

Where a stack was fitted on a family (its fit record, stack_profiles/fits/<stack>-<family>.json: Megatron-Core,
TensorRT-LLM, vLLM and SGLang on Hopper; and an item fitted on a section of its own, `FITTED_ON`: vLLM's host time
per MoE layer on the 4-bit checkpoints' rows) the record holds the fit's leave-one-model-out errors; every other record
holds the errors of published measurements nothing was fitted on, as `validate --published` lists them
(`all_cases`; the MLPerf held-out section gives each of its cases' device). Kernel tables and our own kernel
timings are not end-to-end and are left out; our own H200 steps count (whole decode and prefill steps of the eager
program and of vLLM's compiled, graph-replayed one: no fit used them). Cases with a documented software regression
are kept (validate reports them apart too). `scripts/accuracy.py` writes the file; `validate --published` says
when the shipped one no longer matches what it predicts (`stale`).

Each record also splits its cases by the class of their model (`by_model_class`: dense or MoE, by the model preset
a case names: `model` in `validate --published --json`'s cases, joined by id for a fit record's cases that name
none); a case naming no model (the A100 papers, torchtitan, MLPerf, our own H200 steps) counts only in the whole.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from emulator.files import read_json, shipped
from emulator.hardware import load_device
from emulator.stacks import list_stacks
from emulator.stacks.accuracy import MODEL_CLASSES, records
from emulator.validation import sources as src
from emulator.validation.measured_stack import SOURCE as MEASURED_STACK_SOURCE
from emulator.validation.published_serving import HELDOUT_SOURCE as MLPERF_HELDOUT_SOURCE
from emulator.validation.published_torchtitan import SOURCE as TORCHTITAN_SOURCE

# Fit records: stack -> (the validate source its cases come from, the device family fitted on)
FITTED = {"megatron-core": (src.HOPPER_TRAINING_SOURCE, "hopper"), "trtllm": (src.AIC_HOPPER_SOURCE, "hopper"),
          "vllm": (src.AIC_HOPPER_SOURCE, "hopper"), "sglang": (src.AIC_HOPPER_SOURCE, "hopper")}
# Fit records of one item on another validate source: (stack, source) -> (the record's name, the family fitted on).
# That source's cases of that stack are in-sample for the item, so its record holds the fit's leave-one-model-out
# errors in place of validate's.
FITTED_ON = {("vllm", src.AIC_WEIGHT_ONLY_SOURCE): ("vllm-hopper-moe-host", "hopper")}
# Held-out validate sources and the device family of their cases (None: each case's own device)
HELD_OUT = {src.A100_SOURCE: "ampere", src.MLPERF_H100_SOURCE: "hopper", MLPERF_HELDOUT_SOURCE: None,
            src.BLACKWELL_TRAINING_SOURCE: "blackwell", TORCHTITAN_SOURCE: "hopper",
            src.AIC_BLACKWELL_SOURCE: "blackwell", MEASURED_STACK_SOURCE: "hopper", src.AIC_UNSEEN_SOURCE: "hopper",
            src.AIC_UNSEEN_BLACKWELL_SOURCE: "blackwell", src.AIC_WEIGHT_ONLY_SOURCE: "hopper"}
# validate's metric names -> stacks.accuracy.METRICS keys
METRIC = {"tokens_per_sec_per_gpu": "training_throughput", "model_tflops_per_gpu": "training_throughput",
          "achieved_tflops_per_gpu": "training_throughput", "mfu": "training_throughput",
          "iteration_time": "training_step_time", "layer_fwd_plus_bwd_time": "training_step_time",
          "ttft_ms": "ttft", "tpot_ms": "tpot", "throughput": "serving_throughput", "step seconds": "serving_step_time",
          "tokens/s (whole system, output tokens)": "serving_throughput",
          "samples/s (whole system)": "serving_throughput",
          "completed samples/s (whole system)": "serving_throughput"}
Key = tuple[str, str, str, str, str]  # (stack, device family, metric, method, source)


def _key(record: dict[str, Any]) -> Key:
    return record["stack"], record["device_family"], record["metric"], record["method"], record["source"]


def _errors(errors: list[float]) -> dict[str, Any]:
    """`sources.error_summary` of some errors, rounded as the file keeps them."""
    summary = src.error_summary([{"error": e} for e in errors])
    return {k: v if k == "num_cases" else round(v, 4) for k, v in summary.items()}


def _summary(key: Key, cases: list[tuple[float, str | None]]) -> dict[str, Any]:
    stack, family, metric, method, source = key
    classes: dict[str, list[float]] = defaultdict(list)
    for error, whose in cases:
        if whose is not None:
            classes[whose].append(error)
    return {"stack": stack, "device_family": family, "metric": metric, **_errors([e for e, _ in cases]),
            "method": method, "source": source,
            "by_model_class": {k: _errors(classes[k]) for k in MODEL_CLASSES if classes[k]}}


def fit_cases(stack: str, family: str = "hopper", name: str | None = None) -> dict[str, dict[str, Any]]:
    """The cases of a stack's fit record on a device family (stack_profiles/fits/<stack>-<family>.json, or
    <name>.json) by id: each with its `error_held_out` (the fit made without its model) and `error_in_sample`; none
    where nothing was fitted."""
    path = shipped("stack_profiles") / "fits" / f"{name or f'{stack}-{family}'}.json"
    return {c["id"]: c for c in read_json(path)["cases"]} if path.exists() else {}


def gather(validate: dict[str, Any]) -> list[dict[str, Any]]:
    """The records: the fitted stacks' leave-one-model-out errors and, from `validate` (what `validate --published
    --json` prints: `all_cases`, and `mlperf_heldout` for the devices of its cases), the held-out ones."""
    groups: dict[Key, list[tuple[float, str | None]]] = defaultdict(list)
    model_of = {c["id"]: c["model"] for c in validate["all_cases"] if c.get("model")}
    fitted = [(stack, source, family, fit_cases(stack, family)) for stack, (source, family) in FITTED.items()]
    fitted += [(stack, source, family, fit_cases(stack, family, name))
               for (stack, source), (name, family) in FITTED_ON.items()]
    for stack, source, family, cases in fitted:
        for case in cases.values():
            whose = src.model_class(case.get("model") or model_of.get(case["id"]))
            groups[(stack, family, METRIC[case["metric"]], "leave one model out", source)].append(
                (case["error_held_out"], whose))
    stacks = set(list_stacks("training")) | set(list_stacks("serving"))
    device_of = {c["id"]: c["device"] for c in validate.get("mlperf_heldout", {"cases": []})["cases"]}
    for case in validate["all_cases"]:
        source = case["source"].split(";")[0]
        # Left out: our kernel timings and eager graph replay (no stack of that name); metrics no record keeps
        if source not in HELD_OUT or case["stack"] not in stacks or case["metric"] not in METRIC \
                or (case["stack"], source) in FITTED_ON:
            continue
        family = HELD_OUT[source] or load_device(device_of[case["id"]]).family
        groups[(case["stack"], family, METRIC[case["metric"]], "held out", source)].append(
            (case["error"], src.model_class(case.get("model"))))
    return [_summary(key, cases) for key, cases in sorted(groups.items())]


def stale(fresh: list[dict[str, Any]]) -> list[str]:
    """The shipped records that differ from `fresh` (as `gather` made them from this run), or that either side lacks:
    one line each (empty: the shipped file is current)."""
    shipped_records = {_key(d): d for d in (r.as_dict() for r in records())}
    now = {_key(r): r for r in fresh}
    out = []
    for key in sorted(set(shipped_records) | set(now)):
        old, new = shipped_records.get(key), now.get(key)
        if old != new:
            was = f"median {old['median_abs_error']:.1%}" if old else "absent"
            got = f"median {new['median_abs_error']:.1%}" if new else "absent"
            classes = old is not None and new is not None and old.get("by_model_class") != new.get("by_model_class")
            out.append(f"{key[0]} on {key[1]}, {key[2]} ({key[4]}): shipped {was}, now {got}"
                       + (" (and the errors by model class differ)" if classes else ""))
    return out


__all__ = ["FITTED_ON", "fit_cases", "gather", "stale"]
