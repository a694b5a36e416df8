"""Gather each stack's end-to-end errors per device family and metric into stack_profiles/fits/validated.json, the
records predictions report as `validated` (emulator/stacks/accuracy.py).

    python scripts/accuracy.py                   # runs `emulator validate --published --json` (about a minute)
    python scripts/accuracy.py validate.json     # or reads a saved run of it

Where a stack was fitted on a family (stack_profiles/fits/<stack>-<family>.json: Megatron-Core, TensorRT-LLM, vLLM
and SGLang on Hopper), its record holds the fit's leave-one-model-out errors; every other record holds the errors
of published measurements nothing was fitted on, as `validate --published` lists them (`all_cases`, the MLPerf
held-out section for each case's device). Kernel tables and our own kernel timings are not end-to-end and are left
out; our own H200 steps count (whole decode and prefill steps of the eager program and of vLLM's compiled,
graph-replayed one: no fit used them). Cases with a documented software regression are kept (validate reports
them apart too).
Rerun after a refit or any change that moves a prediction.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from emulator.files import write_json_atomic
from emulator.hardware import load_device
from emulator.stacks import list_stacks
from emulator.stacks.accuracy import RECORDS
from emulator.validation.measured_stack import SOURCE as MEASURED_STACK_SOURCE
from emulator.validation.published_serving import HELDOUT_SOURCE as MLPERF_HELDOUT_SOURCE
from emulator.validation.published_torchtitan import SOURCE as TORCHTITAN_SOURCE
from emulator.validation.sources import (
    A100_SOURCE,
    AIC_BLACKWELL_SOURCE,
    AIC_HOPPER_SOURCE,
    BLACKWELL_TRAINING_SOURCE,
    HOPPER_TRAINING_SOURCE,
    MLPERF_H100_SOURCE,
)

ROOT = Path(__file__).resolve().parent.parent
FITS = ROOT / "stack_profiles" / "fits"
# Fit records: stack -> (the validate source its cases come from, the device family fitted on)
FITTED = {"megatron-core": (HOPPER_TRAINING_SOURCE, "hopper"), "trtllm": (AIC_HOPPER_SOURCE, "hopper"),
          "vllm": (AIC_HOPPER_SOURCE, "hopper"), "sglang": (AIC_HOPPER_SOURCE, "hopper")}
# Held-out validate sources and the device family of their cases (None: each case's own device)
HELD_OUT = {A100_SOURCE: "ampere", MLPERF_H100_SOURCE: "hopper", MLPERF_HELDOUT_SOURCE: None,
            BLACKWELL_TRAINING_SOURCE: "blackwell", TORCHTITAN_SOURCE: "hopper", AIC_BLACKWELL_SOURCE: "blackwell",
            MEASURED_STACK_SOURCE: "hopper"}
STACKS = set(list_stacks("training")) | set(list_stacks("serving"))
METRIC = {"tokens_per_sec_per_gpu": "training_throughput", "model_tflops_per_gpu": "training_throughput",
          "achieved_tflops_per_gpu": "training_throughput", "mfu": "training_throughput",
          "iteration_time": "training_step_time", "layer_fwd_plus_bwd_time": "training_step_time",
          "ttft_ms": "ttft", "tpot_ms": "tpot", "throughput": "serving_throughput", "step seconds": "serving_step_time",
          "tokens/s (whole system, output tokens)": "serving_throughput",
          "samples/s (whole system)": "serving_throughput",
          "completed samples/s (whole system)": "serving_throughput"}


def summary(key: tuple[str, str, str, str, str], errors: list[float]) -> dict[str, Any]:
    stack, family, metric, method, source = key
    return {"stack": stack, "device_family": family, "metric": metric, "num_cases": len(errors),
            "median_abs_error": round(statistics.median(abs(e) for e in errors), 4),
            "mean_error": round(statistics.fmean(errors), 4),
            "max_abs_error": round(max(abs(e) for e in errors), 4), "method": method, "source": source}


def gather(validate: dict[str, Any]) -> list[dict[str, Any]]:
    """The records: the fitted stacks' leave-one-model-out errors and, from `validate` (what `validate --published
    --json` prints: `all_cases`, and `mlperf_heldout` for the devices of its cases), the held-out ones."""
    groups: dict[tuple[str, str, str, str, str], list[float]] = defaultdict(list)
    for stack, (source, family) in FITTED.items():
        fit = json.loads((FITS / f"{stack}-{family}.json").read_text())
        for case in fit["cases"]:
            groups[(stack, family, METRIC[case["metric"]], "leave one model out", source)].append(
                case["error_held_out"])
    device_of = {c["id"]: c["device"] for c in validate.get("mlperf_heldout", {"cases": []})["cases"]}
    for case in validate["all_cases"]:
        source = case["source"].split(";")[0]
        if source not in HELD_OUT:
            continue
        if case["stack"] not in STACKS:  # our own kernel timings, and CUDA-graph replay of the eager program
            continue
        family = HELD_OUT[source] or load_device(device_of[case["id"]]).family
        groups[(case["stack"], family, METRIC[case["metric"]], "held out", source)].append(case["error"])
    return [summary(key, errors) for key, errors in sorted(groups.items())]


def main(argv: list[str]) -> int:
    if argv:
        validate = json.loads(Path(argv[0]).read_text())
    else:
        run = subprocess.run([sys.executable, "-m", "emulator", "validate", "--published", "--json"],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        validate = json.loads(run.stdout)
    records = gather(validate)
    about = ("each stack's end-to-end errors (predicted / measured - 1) per device family and metric, written by "
             "scripts/accuracy.py: leave one model out where the stack was fitted on the family (its fit record), "
             "held out elsewhere (emulator validate --published)")
    write_json_atomic({"about": about, "records": records}, RECORDS)
    for r in records:
        print(f"{r['stack']:14s} {r['device_family']:10s} {r['metric']:20s} n={r['num_cases']:4d} "
              f"median {r['median_abs_error']:6.1%} mean {r['mean_error']:+6.1%}  ({r['method']}; {r['source']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
