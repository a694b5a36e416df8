"""Reference predictors the emulator has to beat on the published training runs.

An emulator is worth its error only next to what a planner would guess without it. The guess this project was
first measured against is a constant share of the chip's dense peak: a run's throughput as

    tokens/s/GPU = f x peak(precision) / model FLOPs per token,      model TFLOP/s/GPU = f x peak(precision) / 1e12

with peak the device's dense matrix peak in the run's precision (`DeviceProfile.mfu_peak`, the emulator's MFU
convention) and the model FLOPs per token as the published tables count them (`published_hopper.
model_flops_per_token`, causal halving by source). Two such predictors, scored exactly as the emulator's predictions:
- `constant 40% of peak`: f = 0.40, nothing fitted (the issue's reference guess);
- `constant MFU, fitted`: f fitted like the stack's own parameters, on the Hopper runs (the least mean |log(predicted
  / published)| over a grid of 0.5% steps, the runs of a documented software regression left out), each Hopper run
  predicted by the f fitted without its model family (leave one family out, `published_hopper.FAMILIES`), and the
  held-out Blackwell runs by the f fitted on every Hopper run: the one-parameter model the stack profile competes
  with on equal terms. The torchtitan team's H100 runs (held out too) take that share as well.
`validate --published` reports both beside the emulator's own errors on the same cases, held out as theirs are: on
Hopper the stack fit's leave-one-family-out errors (its fit record, stack_profiles/fits/megatron-core-hopper.json),
with this run's in-sample errors beside them; on Blackwell this run's (section `baselines`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from emulator.published import load_cases
from emulator.validation import published_torchtitan as titan
from emulator.validation.accuracy_records import fit_cases
from emulator.validation.published_hopper import (
    BLACKWELL,
    KIND,
    STACK,
    case_model,
    case_scenario,
    counts_causal,
    known_regressions,
    model_flops_per_token,
)
from emulator.validation.sources import brief, error_summary
from emulator.workloads.config import TransformerConfig

REFERENCE_MFU = 0.40
GRID = tuple(round(0.05 + 0.005 * i, 3) for i in range(131))  # 5% to 70% of peak
SOURCES = {KIND: "NeMo/Megatron-Bridge H100 tables", BLACKWELL: "Megatron-Bridge B200/GB200 (held out)",
           titan.KIND: titan.SOURCE}


def peak_per_token(case: dict[str, Any], kind: str = KIND) -> tuple[float, float]:
    """(the case's device peak in its precision, FLOP/s; its model FLOPs per trained token). torchtitan counts
    attention over the whole square (its get_num_flop_per_token: 12 x layers x heads x head dim x seq_len)."""
    if kind == titan.KIND:
        scenario = titan.case_scenario(case)
        model, causal = scenario.model, False
    else:
        scenario, (model, _), causal = case_scenario(case), case_model(case), counts_causal(case)
    assert scenario.training is not None and isinstance(model, TransformerConfig)
    flops = model_flops_per_token(model, scenario.training.seq_len, causal=causal)
    return scenario.device.mfu_peak(scenario.training.precision), flops


def full_share(case: dict[str, Any], kind: str = KIND) -> float:
    """The case's published metric at the whole of its device's peak: a constant share's guess is that share of it
    (built once per case; the grid and the folds only scale it)."""
    peak, per_token = peak_per_token(case, kind)
    return peak / 1e12 if case["metric"]["name"] == "model_tflops_per_gpu" else peak / per_token


def constant_mfu(case: dict[str, Any], mfu: float, kind: str = KIND) -> float:
    """The case's published metric under a constant share `mfu` of its device's peak."""
    return mfu * full_share(case, kind)


def _loss(errors: Sequence[float]) -> float:
    return statistics.fmean(abs(math.log1p(e)) for e in errors) if errors else math.inf


def fit_mfu(cases: Sequence[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> float:
    """The grid's share of peak of least mean |log error| over the `cases` (raw published cases) `keep` admits."""
    kept = [(full_share(c), float(c["value"])) for c in cases if keep(c)]
    return min(GRID, key=lambda f: _loss([f * whole / value - 1 for whole, value in kept]))


def _record(case: dict[str, Any], predicted: float, family: str) -> dict[str, Any]:
    return {"id": case["id"], "published": float(case["value"]), "predicted": predicted,
            "error": predicted / float(case["value"]) - 1, "family": family}


def baselines(emulated: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Both reference predictors on every case the emulator predicted (`emulated`: a validate result per kind of
    SOURCES, the H100 one required), with each source's emulator errors beside them."""
    regressions = known_regressions()
    raw = {kind: {c["id"]: c for c in load_cases(kind)} for kind in SOURCES}
    hopper_ids = [c["id"] for c in emulated[KIND]["cases"]]
    family = {c["id"]: c.get("family", kind) for kind in emulated for c in emulated[kind]["cases"]}
    hopper = [raw[KIND][i] for i in hopper_ids]
    fitted = fit_mfu(hopper, lambda c: c["id"] not in regressions)

    def without(held_out: str) -> Callable[[dict[str, Any]], bool]:
        return lambda c: family[c["id"]] != held_out and c["id"] not in regressions

    fold = {f: fit_mfu(hopper, without(f)) for f in sorted({family[i] for i in hopper_ids})}
    lomo = {i: c["error_held_out"] for i, c in fit_cases(STACK).items()}
    out = []
    for kind, source in ((k, v) for k, v in SOURCES.items() if k in emulated):
        ids = [c["id"] for c in emulated[kind]["cases"]]
        cases = [raw[kind][i] for i in ids]
        whole = [full_share(c, kind) for c in cases]
        reference = [_record(c, REFERENCE_MFU * w, family[c["id"]]) for c, w in zip(cases, whole, strict=True)]
        held = [_record(c, (fold[family[c["id"]]] if kind == KIND else fitted) * w, family[c["id"]])
                for c, w in zip(cases, whole, strict=True)]
        emulator = [{"error": lomo[i]} for i in ids if i in lomo] if kind == KIND else emulated[kind]["cases"]
        out.append({"source": source, "num_cases": len(ids),
                    "method": "leave one model family out" if kind == KIND else "held out (fitted on Hopper)",
                    "emulator": error_summary(emulator), "emulator_in_sample": error_summary(emulated[kind]["cases"]),
                    "constant_40_percent": error_summary(reference), "constant_fitted": error_summary(held),
                    "cases": [{"id": r["id"], "constant_40_percent": r["predicted"],
                               "constant_fitted": h["predicted"]} for r, h in zip(reference, held, strict=True)]})
    return {"reference_mfu": REFERENCE_MFU, "fitted_mfu": fitted, "fitted_mfu_by_held_out_family": fold,
            "sources": out}


def render(result: dict[str, Any]) -> str:
    """The emulator's errors beside the two constant-MFU guesses', per source."""
    lines = [f"Reference predictors (training): a constant {result['reference_mfu']:.0%} of peak, and a constant "
             f"share fitted on Hopper ({result['fitted_mfu']:.1%}; leave one family out on Hopper)",
             f"{'source':42s} {'cases':>5s}  {'emulator':>22s}  {'40% of peak':>22s}  {'fitted constant':>22s}"]
    for s in result["sources"]:
        lines.append(f"{s['source']:42s} {s['num_cases']:5d}  {brief(s['emulator']):>22s}  "
                     f"{brief(s['constant_40_percent']):>22s}  {brief(s['constant_fitted']):>22s}")
    lines.append("(median |error| (signed mean) of each predictor over the same cases; the emulator's Hopper errors "
                 "are its fit's leave-one-family-out ones, stack_profiles/fits/megatron-core-hopper.json)")
    return "\n".join(lines)


__all__ = ["GRID", "REFERENCE_MFU", "SOURCES", "baselines", "constant_mfu", "fit_mfu", "full_share", "peak_per_token",
           "render"]
