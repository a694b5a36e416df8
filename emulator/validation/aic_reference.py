"""NVIDIA AIConfigurator's own error on the serving rows `validate --published` samples: the reference the serving
predictions are measured against (this project started at about twice its error).

`emulator/data/aic_reference_predictions.csv` holds AIConfigurator 0.12.0's TTFT and TPOT for every row the
AIConfigurator sections sample (`scripts/aic_reference.py`, its `cli_estimate` as its own accuracy tooling calls
it; a row it refuses keeps its reason). Per AIConfigurator source of this run (the Hopper sample the stacks were
fitted on, and the held-out Blackwell and unseen-model samples), engine and metric, over the rows both predicted:
the emulator's median |error| and signed mean beside AIConfigurator's, error = predicted / measured - 1 for both.
The emulator's Hopper errors are its fits' leave-one-model-out ones (`stack_profiles/fits/<engine>-hopper.json`,
as `validated.json` reports them), with this run's in-sample ones beside them; elsewhere this run's, held out.
AIConfigurator's numbers are its model at its default database, not measurements, and some of these rows are in
the sample its developers check it against (`silicon_sample.csv`): a reference, not a held-out predictor.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from emulator.files import shipped
from emulator.validation.accuracy_records import fit_cases
from emulator.validation.sources import (
    AIC_BLACKWELL_SOURCE,
    AIC_HOPPER_SOURCE,
    AIC_UNSEEN_BLACKWELL_SOURCE,
    AIC_UNSEEN_SOURCE,
    brief,
    error_summary,
)

CSV = shipped("data") / "aic_reference_predictions.csv"
SOURCES = (AIC_HOPPER_SOURCE, AIC_BLACKWELL_SOURCE, AIC_UNSEEN_SOURCE, AIC_UNSEEN_BLACKWELL_SOURCE)
COLUMNS = {"tpot_ms": "aic_tpot_ms", "ttft_ms": "aic_ttft_ms"}  # a case's metric -> AIConfigurator's column


@functools.lru_cache(maxsize=2)
def predictions(path: Path = CSV) -> Mapping[str, dict[str, str]]:
    """Row id -> AIConfigurator's prediction of it (`aic_ttft_ms`, `aic_tpot_ms`, empty when `status` says why)."""
    with open(path, encoding="utf-8", newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def held_out_errors(stacks: Iterable[str]) -> dict[str, float]:
    """Case id -> its leave-one-model-out error in the fit record of each `stack` fitted on Hopper."""
    return {i: c["error_held_out"] for stack in stacks for i, c in fit_cases(stack).items()}


def compare(records: list[dict[str, Any]], path: Path = CSV) -> dict[str, Any]:
    """Per source, engine and metric of `records` (validate's `all_cases`), the emulator's errors beside
    AIConfigurator's over the rows both predicted, and how many rows AIConfigurator refused."""
    aic = predictions(path)
    mine = [c for c in records if c["source"] in SOURCES and c["metric"] in COLUMNS]
    lomo = held_out_errors({c["stack"] for c in mine if c["source"] == AIC_HOPPER_SOURCE})
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for c in mine:
        groups.setdefault((c["source"], c["stack"], c["metric"]), []).append(c)
    out = []
    for (source, stack, metric), cases in sorted(groups.items(), key=lambda kv: (SOURCES.index(kv[0][0]), kv[0][1:])):
        both, refused = [], 0
        for c in cases:
            value = aic.get(c["id"].rsplit(":", 1)[0], {}).get(COLUMNS[metric], "")
            if not value:
                refused += 1
                continue
            held = lomo.get(c["id"], c["error"]) if source == AIC_HOPPER_SOURCE else c["error"]
            both.append({"emulator": held, "in_sample": c["error"], "aic": float(value) / c["published"] - 1})
        out.append({"source": source, "stack": stack, "metric": metric, "num_rows": len(cases), "aic_refused": refused,
                    "method": "leave one model out" if source == AIC_HOPPER_SOURCE else "held out",
                    "emulator": error_summary([{"error": b["emulator"]} for b in both]),
                    "emulator_in_sample": error_summary([{"error": b["in_sample"]} for b in both]),
                    "aiconfigurator": error_summary([{"error": b["aic"]} for b in both])})
    versions = sorted({r["aiconfigurator_version"] for r in aic.values()})
    return {"file": "emulator/data/aic_reference_predictions.csv", "aiconfigurator_versions": versions,
            "groups": out}


def render(result: dict[str, Any]) -> str:
    """The emulator's serving errors beside AIConfigurator's, per source, engine and metric."""
    versions = ", ".join(result["aiconfigurator_versions"])
    lines = [f"Reference: NVIDIA AIConfigurator {versions} on the same sampled rows ({result['file']}; the "
             "emulator's Hopper errors leave one model out)",
             f"{'source':52s} {'engine':7s} {'metric':8s} {'rows':>5s} {'emulator':>17s} {'AIConfigurator':>17s} "
             f"{'refused':>8s}"]
    for g in result["groups"]:
        lines.append(f"{g['source']:52s} {g['stack']:7s} {g['metric']:8s} {g['num_rows']:5d} "
                     f"{brief(g['emulator']):>17s} {brief(g['aiconfigurator']):>17s} {g['aic_refused']:8d}")
    lines.append("(median |error| (signed mean) over the rows both predicted; refused: rows AIConfigurator has no "
                 "data for)")
    return "\n".join(lines)


__all__ = ["CSV", "SOURCES", "compare", "held_out_errors", "predictions", "render"]
