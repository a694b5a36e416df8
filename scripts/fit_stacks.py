"""Fit a software stack's free parameters on the published measurements, with leave-one-model-out errors.

    python scripts/fit_stacks.py training            # megatron-core on H100: 40 NeMo / Megatron-Bridge runs
    python scripts/fit_stacks.py training --refine host.op_dispatch_s=0,2e-5 host.backward_dispatch_ratio=0.5,1
    python scripts/fit_stacks.py serving trtllm      # an engine on H100/H200: AIConfigurator's measured points
    python scripts/fit_stacks.py serving vllm --refine host.prompt_layer_s=0,1e-4   # one item, the rest held
    python scripts/fit_stacks.py kernels trtllm     # its weight-only GEMMs' items: AIConfigurator's MoE tables
    python scripts/fit_stacks.py l2 sglang          # Hopper's L2 bandwidth under the engine's grouped-GEMM tiles
    python scripts/fit_stacks.py moe-host vllm      # its host time per MoE layer of a prompt iteration
    python scripts/fit_stacks.py frontend sglang    # its API server's time per streamed token, the rest held

Method (the same for every stack): a grid over the stack's free items (those without a published figure), each
point predicting every case with the shipped code; the loss is the mean |log(predicted / published)| over the
cases. The fitted value is the grid point of least loss on all cases; for the serving engines, whose free items are
host and collective overheads, the smallest overhead among the points within `SERVING_TOLERANCE` of that least loss
(the sum of each item's value over its grid's largest: where the data cannot tell the points apart, no overhead it
does not ask for; without it, folds of a flat loss pick far corners of the grid). The held-out error of each case is
its error under the grid point fitted (so) without its model family (training) or its model (serving):
leave-one-model-out. The
record (data, grid, method, fitted values, held-out and in-sample errors per case and in summary) is written to
stack_profiles/fits/<stack>-hopper.json; the profile's items cite it. Nothing is tuned per case. A case whose
software had a documented regression (emulator/data/known_regressions.yaml: the case carries `known_regression`),
and a serving case of a campaign whose stated layouts cannot all have run (a row of it names a replica too small
for its model's weights: published_aic.layout_suspects, the case carries `layout_suspect`), is left out of every
loss, in-sample and held out, and still predicted and reported with the rest.
`kernels` fits an engine's kernel-level items on measured kernels instead of end-to-end runs: the weight-only
(w4a16) GEMM's vector operations widening each weight and its share of the 16-bit GEMM's math efficiency
(`WEIGHT_ONLY_GRID`) on the engine's measured weight-only MoE forwards (emulator/data/aic_moe_trtllm.csv,
published_moe), held out one chip at a time. `l2` fits the L2 bandwidth at which an engine's grouped expert
GEMMs reload their small tiles' operands (`moe.grouped_gemm_tile`; NVIDIA publishes no L2 bandwidth) on the
engine's measured MoE forwards (published_moe.TABLES), held out one expert shape at a time; the Hopper device
profiles' `memory.l2.bandwidth_bytes_per_s` cite the record. `moe-host` fits the host time an iteration carrying
prompt tokens adds per mixture-of-experts layer (`host.prompt_moe_layer_s`, `MOE_HOST_GRID`), the engine's other
items held, on its Hopper rows of 4-bit MoE checkpoints (published_aic's weight-only rows of MoE models, none in the
joint fit's loss), one model held out at a time; the section of the models no fit has seen stays held out.
`frontend` fits the API server's serial time per output token it streams (`host.frontend_token_s`, `FRONTEND_GRID`),
the engine's other items held, on the joint fit's rows, one model held out at a time; the joint fit is then rerun with
it held (one step of coordinate descent: the grids are too large to join).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

import emulator.stacks.load as stack_load
from emulator.files import shipped
from emulator.precision import WEIGHT_ONLY_BYTES

ROOT = Path(__file__).resolve().parent.parent
FITS = ROOT / "stack_profiles" / "fits"

TRAINING_GRID = {
    "efficiency.sustained_math": [{"hopper": v} for v in (0.6, 0.65, 0.7, 0.75, 0.8, 0.85)],
    "overlap.tp": [0.0, 0.25, 0.5, 0.75, 1.0],
    "overlap.cp": [0.5, 0.75, 1.0],
    "overlap.ep": [0.0, 0.25, 0.5, 0.75, 1.0],
}
SERVING_GRID = {
    "host.scheduler_overhead_s": [0.0, 0.5e-3, 1e-3, 2e-3],
    "host.per_token_s": [0.0, 10e-6, 20e-6, 40e-6, 60e-6, 80e-6],
    "comm.rank_skew_s": [0.0, 2.5e-6, 5e-6, 7.5e-6, 10e-6, 15e-6, 20e-6, 30e-6],
    # The time a request takes to reach the scheduler (host.request_s), fitted for every engine over what a benchmark
    # client and an API server add to TTFT (about 40 ms at 32 clients: vLLM's benchmark_serving.py alone, measured in
    # tenstorrent/tt-inference-server issue 259). First fitted for vLLM alone over 0-160 ms: 10 ms (TTFT median 33.7% ->
    # 18.6%, TPOT 17.2% -> 17.1%), where TensorRT-LLM chose 80 ms (TTFT 52% -> 61%) and SGLang 160 ms (TTFT 30% -> 25%,
    # but Llama 3.1 8B 106% -> 132%: no API server takes that long; it absorbed the DeepSeek-R1 1k-prompt rows'
    # unexplained constant). Once AIConfigurator's own TensorRT-LLM rows ran the token budget its generator gives a
    # worker, the bounded grid gives TensorRT-LLM 40 ms (TTFT 42.8% -> 23.7%, TPOT 10.1% -> 10.3%; with 80 ms in the
    # grid folds take 80 ms to absorb the DeepSeek-R1 rows' TTFT and held-out TTFT is 31.9%) and SGLang 40 ms (TTFT
    # 32.0% -> 23.7%, TPOT 22.9% -> 22.8%); vLLM keeps 10 ms. A 5 ms step in it changes only vLLM's pick (5 ms and 10 us
    # of spread: held-out Hopper errors the same within 0.1 point, its B200 rows' TTFT 35% -> 45%).
    "host.request_s": [0.0, 10e-3, 20e-3, 40e-3],
}
SERVING_TOLERANCE = 0.005  # relative loss within which serving grid points count as equally good
# Items only some engines' grids take. vLLM's host time per layer of an iteration with prompt tokens
# (host.prompt_layer_s): its V1 engine runs an iteration past its largest CUDA-graph capture size (512 tokens) outside
# the graphs. Jointly with SERVING_GRID it took 0.05 ms per layer (the loss least at 0.1 ms, within the tolerance at
# 0.05), the other items unchanged; 0.2 ms once the campaign whose layouts cannot have run left the loss (0.4 ms in
# the grid since). SGLang's likewise: it replays CUDA graphs of decode batches only and runs every prefill (extend)
# forward eagerly (--enable-piecewise-cuda-graph off by default), and a DeepSeek-V3 extend of one new token took
# 82.6 ms eager against 23.1 ms graphed (sgl-project/sglang pull 12160: about 1 ms of host time per layer).
WEIGHT_ONLY_GRID = {"recipe.weight_only_widen_ops": [0.0, 4.0, 8.0, 12.0, 16.0, 20.0, 24.0, 32.0],
                    "recipe.weight_only_math_share": [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}
# The L2 bandwidth (bytes/s) the grouped expert GEMMs' operand reloads stream at on Hopper (`fit_l2_reload`).
L2_GRID = {"memory.l2.bandwidth_bytes_per_s": [4e12, 4.5e12, 5e12, 5.5e12, 6e12, 6.5e12, 7e12, 8e12, 10e12]}
# Hopper's host time per MoE layer of an iteration carrying prompt tokens (`fit_moe_host`), seconds.
MOE_HOST_GRID = {"host.prompt_moe_layer_s": [{"hopper": v} for v in (0.0, 0.2e-3, 0.4e-3, 0.6e-3, 0.8e-3, 1.0e-3,
                                                                       1.2e-3)]}
# The API server's time per output token it streams (`fit_frontend`), seconds: 0 (never binds) to a 8,000 tokens/s
# ceiling, by 12.5 us steps past 25 us.
FRONTEND_GRID = {"host.frontend_token_s": [0.0, 25e-6, 37.5e-6, 50e-6, 62.5e-6, 75e-6, 87.5e-6, 100e-6, 112.5e-6,
                                           125e-6]}
ENGINE_GRID: dict[str, dict[str, list[Any]]] = {"vllm": {"host.prompt_layer_s": [0.0, 0.05e-3, 0.1e-3, 0.2e-3,
                                                                                  0.4e-3]},
                                                "sglang": {"host.prompt_layer_s": [0.0, 0.25e-3, 0.5e-3, 1e-3]}}


class Profiles:
    """A writable copy of the shipped stack profiles that the loader reads instead of the shipped ones."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="stack-fit-"))
        shutil.copytree(shipped("stack_profiles"), self.root / "stack_profiles")
        original = stack_load.shipped
        stack_load.shipped = lambda folder: (self.root / folder if folder == "stack_profiles"  # type: ignore[assignment]
                                             else original(folder))
        self.version = 0

    def set(self, kind: str, name: str, values: dict[str, Any]) -> None:
        src = self.root / "stack_profiles" / kind / f"{name}.yaml"
        data = yaml.safe_load(src.read_text())
        for key, value in values.items():
            data["items"][key] = {"value": value, "fit": "candidate of scripts/fit_stacks.py"}
        self.version += 1  # a new file name each time: the loader caches by path and modification time
        folder = self.root / f"v{self.version}" / "stack_profiles"
        shutil.copytree(self.root / "stack_profiles", folder, dirs_exist_ok=True)
        (folder / kind / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        stack_load.shipped = lambda f, folder=folder: folder if f == "stack_profiles" else shipped(f)  # type: ignore[assignment]


def _loss(errors: Sequence[float]) -> float:
    return statistics.fmean(abs(math.log1p(e)) for e in errors) if errors else math.inf


def _summary(errors: Sequence[float]) -> dict[str, float]:
    return {"num_cases": len(errors), "median_abs_error": statistics.median(abs(e) for e in errors),
            "max_abs_error": max(abs(e) for e in errors), "mean_error": statistics.fmean(errors)}


def in_loss(case: dict[str, Any]) -> bool:
    """Whether a case counts in a fit's loss: not one whose software had a documented regression
    (`known_regression`) nor one of a serving campaign whose stated layouts cannot all have run
    (`layout_suspect`, published_aic.layout_suspects). The others are predicted and reported all the same."""
    return "known_regression" not in case and "layout_suspect" not in case


def grid_fit(grid: dict[str, list[Any]], evaluate: Callable[[dict[str, Any]], list[dict[str, Any]]],
             group_of: str, tolerance: float = 0.0) -> dict[str, Any]:
    """Every grid point's case errors; the best point on all cases; leave-one-group-out held-out errors.
    `tolerance` > 0: among the points within that relative loss of the least, the one of least overhead (the sum
    of each item's value over the largest in its grid)."""
    keys = list(grid)
    points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]
    table: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for i, point in enumerate(points):
        t0 = time.perf_counter()
        table.append((point, evaluate(point)))
        print(f"  [{i + 1}/{len(points)}] {point}: loss {_loss([c['error'] for c in table[-1][1]]):.4f} "
              f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    ids = [c["id"] for c in table[0][1]]

    def overhead(point: dict[str, Any]) -> float:
        return sum(float(point[k]) / max(float(v) for v in grid[k]) for k in keys if max(grid[k]) > 0)

    def best(keep: Callable[[dict[str, Any]], bool]) -> int:
        losses = [_loss([c["error"] for c in table[j][1] if keep(c)]) for j in range(len(table))]
        least = min(losses)
        near = [j for j in range(len(table)) if losses[j] <= least * (1.0 + tolerance)]
        return min(near, key=lambda j: (overhead(table[j][0]), losses[j])) if tolerance > 0 else losses.index(least)

    fitted = best(in_loss)
    held: dict[str, dict[str, Any]] = {}
    for group in sorted({c[group_of] for c in table[0][1]}):
        j = best(lambda c, g=group: c[group_of] != g and in_loss(c))
        for c in table[j][1]:
            if c[group_of] == group:
                held[c["id"]] = {**c, "fitted_without_group": table[j][0]}
    in_sample = {c["id"]: c for c in table[fitted][1]}
    cases = [{"id": i, "metric": in_sample[i]["metric"], "published": in_sample[i]["published"],
              "predicted_in_sample": in_sample[i]["predicted"], "error_in_sample": in_sample[i]["error"],
              "predicted_held_out": held[i]["predicted"], "error_held_out": held[i]["error"],
              group_of: in_sample[i][group_of], "stack": in_sample[i]["stack"]} for i in ids]
    return {"fitted": table[fitted][0], "grid": grid, "loss": "mean |log(predicted / published)|",
            "selection": (f"least overhead within {tolerance:.1%} of the least loss" if tolerance > 0 else
                          "least loss"),
            "held_out": f"leave one {group_of} out", "cases": cases,
            "summary": {"in_sample": _summary([c["error_in_sample"] for c in cases]),
                        "held_out": _summary([c["error_held_out"] for c in cases])}}


def fit_training(grid: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """megatron-core's fit over `grid` (TRAINING_GRID unless given: a refinement's items, the others held at their
    profile's values, which the record lists under `held`)."""
    from emulator.stacks import load_stack  # noqa: PLC0415 - after the loader patch
    from emulator.validation.published_hopper import validate_published  # noqa: PLC0415 - after the loader patch

    profiles = Profiles()
    grid = grid or TRAINING_GRID
    held = {k: load_stack("megatron-core", "training").get(k) for k in TRAINING_GRID if k not in grid}

    def evaluate(point: dict[str, Any]) -> list[dict[str, Any]]:
        profiles.set("training", "megatron-core", point)
        return validate_published()["cases"]

    record = grid_fit(grid, evaluate, "family")
    from emulator.validation.published_hopper import known_regressions  # noqa: PLC0415 - after the loader patch

    out_of_loss = sorted(set(known_regressions()) & {c["id"] for c in record["cases"]})
    return {"stack": "megatron-core", "device_family": "hopper",
            "data": "emulator/data/published_training_hopper.yaml (40 NeMo / Megatron-Bridge runs on H100)",
            **({"held": held} if held else {}),
            "out_of_loss": {"ids": out_of_loss, "why": "a documented regression of the software that measured them "
                            "(emulator/data/known_regressions.yaml): predicted and reported, not fitted on"},
            **record}


def fit_serving(engine: str, grid: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """The engine's serving fit over `grid` (SERVING_GRID unless given: a refinement's one item, the others held at
    their profile's values, which the record lists under `held`)."""
    from emulator.stacks import load_stack  # noqa: PLC0415 - after the loader patch
    from emulator.validation import published_aic  # noqa: PLC0415 - after the loader patch

    profiles = Profiles()
    joint = {**SERVING_GRID, **ENGINE_GRID.get(engine, {})}
    grid = grid or joint
    held = {k: load_stack(engine, "serving").get(k) for k in joint if k not in grid}
    usable, _ = published_aic.partition()
    chosen = {r["id"] for r in published_aic.select(usable) if r["backend"] == engine}
    rows = {r["id"]: r for r in usable}
    keep = {f"{i}:{s}" for i in chosen for s, _ in published_aic.METRICS}

    def evaluate(point: dict[str, Any]) -> list[dict[str, Any]]:
        profiles.set("serving", engine, point)
        only = published_aic.validate_aic(only=lambda row: row["id"] in chosen)["cases"]
        return [c for c in only if c["id"] in keep]

    record = grid_fit(grid, evaluate, "model", SERVING_TOLERANCE)
    suspects = published_aic.layout_suspects()
    out_of_loss = sorted(i for i in chosen if published_aic.campaign(rows[i]) in suspects)
    return {"stack": engine, "device_family": "hopper",
            "data": f"emulator/data/aic_silicon_hopper.csv: the validate sample's {engine} rows "
                    f"({len(chosen)} rows, TPOT and TTFT)", **({"held": held} if held else {}),
            **({"out_of_loss": {"ids": out_of_loss, "why": sorted(set(suspects.values()))}} if out_of_loss else {}),
            **record}


def fit_weight_only(engine: str) -> dict[str, Any]:
    """The engine's weight-only GEMM items (`WEIGHT_ONLY_GRID`) on its measured weight-only MoE forwards, every
    chip's rows held out in turn."""
    from emulator.validation import published_moe  # noqa: PLC0415 - after the loader patch

    if engine != published_moe.ENGINE:
        raise SystemExit(f"no measured weight-only kernels of {engine}: only {published_moe.ENGINE}'s are shipped")
    profiles = Profiles()

    def weight_only(row: dict[str, Any]) -> bool:
        return published_moe.FORMATS[row["moe_dtype"]] in WEIGHT_ONLY_BYTES

    def evaluate(point: dict[str, Any]) -> list[dict[str, Any]]:
        profiles.set("serving", engine, point)
        return published_moe.validate_moe_tables(weight_only)["cases"]

    record = grid_fit(WEIGHT_ONLY_GRID, evaluate, "device")
    return {"stack": engine, "device_family": "hopper",
            "data": f"{published_moe.CSV.relative_to(ROOT)}: the w4a16_mxfp4 rows (TensorRT-LLM 1.2.0rc5 fused MoE "
                    "forwards of gpt-oss-120b's experts on H100 and H200, AIConfigurator's tables)", **record}


def fit_l2_reload(engine: str) -> dict[str, Any]:
    """The L2 bandwidth at which the engine's grouped expert GEMMs reload their tiles' operands
    (`moe.grouped_gemm_tile`; the device profiles' `memory.l2.bandwidth_bytes_per_s`, which NVIDIA does not publish)
    on the engine's measured MoE forwards, each expert shape (model) held out in turn."""
    from emulator.validation import kernel_tables, published_moe  # noqa: PLC0415 - after the loader patch

    if engine not in published_moe.TABLES:
        raise SystemExit(f"no measured MoE forwards of {engine}: only {', '.join(published_moe.TABLES)}'s are shipped")
    if not stack_load.load_stack(engine, "serving").get("moe.grouped_gemm_tile"):
        raise SystemExit(f"{engine}'s profile names no grouped-GEMM tiles (moe.grouped_gemm_tile): its kernels reload "
                         "nothing the L2 bandwidth would time")
    load_device = kernel_tables.load_device

    def evaluate(point: dict[str, Any]) -> list[dict[str, Any]]:
        rate = float(point["memory.l2.bandwidth_bytes_per_s"])

        def with_rate(name: str) -> Any:
            device = load_device(name)
            tiers = tuple(dataclasses.replace(t, bandwidth_bytes_per_s=rate) if t.kind == "cache" else t
                          for t in device.memory)
            return dataclasses.replace(device, memory=tiers)

        kernel_tables.load_device = with_rate  # type: ignore[assignment]
        try:
            return published_moe.validate_moe_tables(None, engine)["cases"]
        finally:
            kernel_tables.load_device = load_device  # type: ignore[assignment]

    record = grid_fit(L2_GRID, evaluate, "model")
    return {"stack": engine, "device_family": "hopper",
            "data": f"{published_moe.TABLES[engine][0].relative_to(ROOT)}: {published_moe.TABLES[engine][1]}, every "
                    "row, predicted with the engine's grouped-GEMM tiles (moe.grouped_gemm_tile)", **record}


def fit_moe_host(engine: str) -> dict[str, Any]:
    """The engine's host time per MoE layer of an iteration carrying prompt tokens (`host.prompt_moe_layer_s`), its
    other items held at the profile's values, on its Hopper rows of 4-bit MoE checkpoints (the validate sample of
    published_aic's weight-only rows), each model held out in turn."""
    from emulator.validation import published_aic  # noqa: PLC0415 - after the loader patch
    from emulator.workloads.presets import preset  # noqa: PLC0415 - after the loader patch

    def moe(row: dict[str, str]) -> bool:
        return getattr(preset(published_aic.MODELS[row["model_path"]]), "num_moe_layers", 0) > 0

    profiles = Profiles()
    usable, _ = published_aic.partition(weight_only_rows=True)
    chosen = {r["id"] for r in published_aic.select(usable, published_aic.WEIGHT_ONLY_SAMPLE_ROWS)
              if r["backend"] == engine and moe(r)}
    if not chosen:
        raise SystemExit(f"no Hopper rows of 4-bit MoE checkpoints served by {engine} to fit its MoE host time on")

    def evaluate(point: dict[str, Any]) -> list[dict[str, Any]]:
        profiles.set("serving", engine, point)
        return published_aic.validate_aic(published_aic.WEIGHT_ONLY_SAMPLE_ROWS, weight_only_rows=True,
                                          only=lambda row: row["id"] in chosen)["cases"]

    record = grid_fit(MOE_HOST_GRID, evaluate, "model")
    return {"stack": engine, "device_family": "hopper",
            "data": f"emulator/data/aic_silicon_hopper.csv: the validate sample's {engine} rows of 4-bit MoE "
                    f"checkpoints ({len(chosen)} rows, TPOT and TTFT; published_aic.partition weight_only_rows)",
            **record}


def fit_frontend(engine: str) -> dict[str, Any]:
    """The engine's API server's time per streamed output token (`host.frontend_token_s`), its other items held at
    the profile's values, on the joint fit's rows (`fit_serving`'s data and out-of-loss campaigns)."""
    record = fit_serving(engine, FRONTEND_GRID)
    return {**record, "data": record["data"] + "; the engine's other items held (`held`)"}


def main(argv: list[str]) -> int:
    if argv == ["training"]:
        record, name = fit_training(), "megatron-core-hopper"
    elif argv[:2] == ["training", "--refine"] and len(argv) > 2 and all("=" in a for a in argv[2:]):
        items = dict(a.split("=", 1) for a in argv[2:])
        # A refinement of items the joint grid does not take: its own record beside the joint fit's
        record = fit_training({k: [float(v) for v in values.split(",")] for k, values in items.items()})
        name = "megatron-core-hopper-" + "-".join(sorted({k.split(".")[0] for k in items}))
    elif len(argv) == 2 and argv[0] == "serving":
        record, name = fit_serving(argv[1]), f"{argv[1]}-hopper"
    elif len(argv) == 2 and argv[0] == "kernels":
        record, name = fit_weight_only(argv[1]), f"{argv[1]}-hopper-weight-only"
    elif len(argv) == 2 and argv[0] == "frontend":
        record, name = fit_frontend(argv[1]), f"{argv[1]}-hopper-frontend"
    elif len(argv) == 2 and argv[0] == "moe-host":
        record, name = fit_moe_host(argv[1]), f"{argv[1]}-hopper-moe-host"
    elif len(argv) == 2 and argv[0] == "l2":
        record, name = fit_l2_reload(argv[1]), f"{argv[1]}-hopper-l2"
    elif len(argv) == 4 and argv[0] == "serving" and argv[2] == "--refine" and "=" in argv[3]:
        item, values = argv[3].split("=", 1)
        record, name = fit_serving(argv[1], {item: [float(v) for v in values.split(",")]}), f"{argv[1]}-hopper"
    else:
        print(__doc__, file=sys.stderr)
        return 2
    FITS.mkdir(parents=True, exist_ok=True)
    (FITS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({"fitted": record["fitted"], "summary": record["summary"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
