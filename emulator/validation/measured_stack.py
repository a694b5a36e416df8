"""The stack mechanisms against our own H200 measurements (`emulator/data/h200_stack_measurements.json`).

The published runs test a stack model end to end; these test its parts on a real chip, each predicted from the
shipped H200 calibration exactly as a prediction would run it, never fitted to these numbers:

- `grouped`: an MoE projection over all experts in one grouped GEMM (`moe.grouped_gemm`, predicted as the
  `grouped_mm` call `engine.stack.group_experts` makes), measured with torch's grouped GEMM kernel in bf16 and
  its scaled (fp8, row-wise) variant;
- `fp8`: fp8 GEMMs at decode and prefill shapes (the `gemm.fp8` family now fitted on every bf16 shape class);
- `graph`: the eager program's decode step replayed from a CUDA graph (device time plus the stack's
  `host.graph_kernel_gap_s` per kernel, no host launches);
- `fused+graph`: the same step compiled by torch.compile (Inductor fuses what vLLM's compile passes fuse) and
  replayed from a CUDA graph, predicted with the vLLM profile's fusion and gap;
- `prefill` and `eager decode`: full llama3-8b prefills and eager decode steps with the calibrated host model.

Each case is `{id, metric, published (the measurement), predicted, error, stack, mechanism}`; the `stack` is the
stack profile the prediction used.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from emulator.engine.calibration import efficiency_for
from emulator.engine.calls import Trace
from emulator.engine.predict import time_trace
from emulator.engine.stack import engine_device, fuse
from emulator.engine.trace import trace_workload
from emulator.engine.tracer import trace_callable
from emulator.files import read_json, shipped
from emulator.hardware import DeviceProfile, load_device
from emulator.stacks import StackProfile, load_stack
from emulator.validation.sources import error_summary
from emulator.workloads.hf import from_hf_config

DATA = "h200_stack_measurements.json"
DEVICE = "h200-sxm"
SOURCE = "own H200 measurements (2026-12-04)"


@functools.lru_cache(maxsize=1)
def measurements() -> dict[str, Any]:
    return read_json(shipped("data") / DATA)


def _grouped_trace(g: int, m: int, n: int, k: int) -> Trace:
    import torch

    a = torch.empty(g, m, k, device="meta", dtype=torch.bfloat16)
    b = torch.empty(g, k, n, device="meta", dtype=torch.bfloat16)
    trace = trace_callable(torch.bmm, a, b)
    # As `group_experts` rewrites an expert loop: one grouped call over [experts, tokens, hidden].
    calls = tuple(dataclasses.replace(c, op="grouped_mm") for c in trace.calls)
    return dataclasses.replace(trace, calls=calls)


def _fp8_trace(m: int, n: int, k: int) -> Trace:
    import torch

    from kernels import references as R

    ins = R.scaled_mm_inputs({"m": m, "n": n, "k": k}, device="meta", dtype=torch.float8_e4m3fn)
    return trace_callable(R.scaled_mm, *ins)


def _step_trace(row: dict[str, Any]) -> Trace:
    import torch

    model = from_hf_config(row["config"], origin=f"{DATA} {row['name']}", name=row["name"])
    return trace_workload(model, row["phase"], row["batch_size"], row["seq_len"], row["kv_len"], torch.bfloat16)


def _case(case_id: str, metric: str, measured: float, predicted: float, stack: str, mechanism: str
          ) -> dict[str, Any]:
    return {"id": case_id, "metric": metric, "published": measured, "predicted": predicted,
            "error": predicted / measured - 1, "stack": stack, "mechanism": mechanism}


def _step_s(trace: Trace, device: DeviceProfile, engine: StackProfile, table: Any) -> float:
    """A step as the serving engine runs it (`serving.replica`): device time, plus a host launch per kernel
    without CUDA graphs."""
    device, launch_s = engine_device(device, engine)
    timing = time_trace(trace, device, table, None)
    return timing.device_s + launch_s * sum(k.count for k in timing.kernels)


def validate_measured_stack() -> dict[str, Any]:
    """Every measured case predicted; the `--json` section `h200_stack` of `validate --published`."""
    data = measurements()
    device = load_device(DEVICE)
    table = efficiency_for(device)
    eager, vllm = load_stack("eager", "serving"), load_stack("vllm", "serving")
    # The eager program replayed from a graph: vLLM's CUDA-graph settings without its fusion.
    graphed = dataclasses.replace(vllm, items={k: v for k, v in vllm.items.items() if k != "fusion.families"})
    cases = []
    for r in data["experts"]:
        shape = (r["experts"], r["tokens_per_expert"], r["n"], r["k"])
        measured = r.get("grouped_mm", r["bmm"])["median_s"]
        cases.append(_case(f"grouped:{'x'.join(map(str, shape))}:bf16", "kernel seconds", measured,
                           time_trace(_grouped_trace(*shape), device, table, None).total_s, "kernel",
                           "moe.grouped_gemm"))
    for r in data["fp8_experts"]:
        if "scaled_grouped_mm" not in r:
            continue
        shape = (r["experts"], r["tokens_per_expert"], r["n"], r["k"])
        cases.append(_case(f"grouped:{'x'.join(map(str, shape))}:fp8", "kernel seconds",
                           r["scaled_grouped_mm"]["median_s"],
                           time_trace(_grouped_trace(*shape), device, table, "fp8").total_s, "kernel",
                           "moe.grouped_gemm fp8 (torch's kernel)"))
    for r in data["fp8_scaling"]:
        cases.append(_case(f"fp8:{r['m']}x{r['n']}x{r['k']}", "kernel seconds", r["tensorwise"]["median_s"],
                           time_trace(_fp8_trace(r["m"], r["n"], r["k"]), device, table, None).total_s,
                           "kernel", "gemm.fp8 shape classes"))
    for r in data["decode"]:
        trace = _step_trace(r)
        cases.append(_case(f"{r['name']}:eager", "step seconds", r["eager"]["median_s"],
                           _step_s(trace, device, eager, table), "eager", "host.kernel_launch_s"))
        if "graph" in r:
            cases.append(_case(f"{r['name']}:graph", "step seconds", r["graph"]["median_s"],
                               _step_s(trace, device, graphed, table), "eager+graph", "host.graph_kernel_gap_s"))
    for r in data["compiled"]:
        if "compiled_graph" not in r:
            continue
        fused = fuse(_step_trace(r), vllm.fused_families)
        cases.append(_case(f"{r['name']}:compiled+graph", "step seconds", r["compiled_graph"]["median_s"],
                           _step_s(fused, device, vllm, table), "vllm",
                           "fusion.families + host.graph_kernel_gap_s"))
    for r in data["prefill"]:
        cases.append(_case(f"{r['name']}:eager", "step seconds", r["eager"]["median_s"],
                           _step_s(_step_trace(r), device, eager, table), "eager", "prefill kernels"))
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in cases:
        groups.setdefault(c["mechanism"], []).append(c)
    return {"device": device.name, "calibration": table.source, "provenance": table.provenance,
            "leases": data["leases"], "cases": cases, "summary": error_summary(cases),
            "by_mechanism": {name: error_summary(cs) for name, cs in groups.items()}}


def render(section: dict[str, Any]) -> str:
    lines = [f"Stack mechanisms on our own {section['device']} measurements ({section['provenance']} from "
             f"{section['calibration']}; error = predicted / measured - 1)",
             f"{'case':52s} {'stack':12s} {'measured':>10s} {'predicted':>10s} {'error':>8s}"]
    for c in section["cases"]:
        lines.append(f"{c['id'][:52]:52s} {c['stack']:12s} {c['published'] * 1e3:8.3f}ms {c['predicted'] * 1e3:8.3f}ms "
                     f"{c['error']:+8.1%}")
    for name, s in section["by_mechanism"].items():
        lines.append(f"  {name:44s} {s['num_cases']:3d} cases  median |e| {s['median_abs_error']:6.1%}  "
                     f"max |e| {s['max_abs_error']:6.1%}  mean e {s['mean_error']:+6.1%}")
    return "\n".join(lines)


__all__ = ["SOURCE", "measurements", "render", "validate_measured_stack"]
