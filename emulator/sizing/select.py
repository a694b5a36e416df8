"""Choosing among evaluated candidates: constraints, the Pareto front, the best plan per objective, and (when
nothing is feasible) an `Infeasible` error carrying the diagnosis and the evaluated plans, so a report can still
be written."""


from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from emulator.errors import EmulatorError
from emulator.sizing.constraints import flags as constraint_flags
from emulator.sizing.diagnose import Diagnosis, diagnose, plan_text
from emulator.sizing.pareto import pareto_mask
from emulator.sizing.search import (
    Progress,
    SearchResult,
    enumerate_plans,
    evaluate_training,
    finish_training,
    search_serving,
)
from emulator.sizing.spec import Sizing

OBJECTIVE_KEYS = {"cost": "cost_usd", "energy": "energy_mwh", "devices": "num_devices", "time": "time"}
Rejections = dict[str, dict[str, Any]]


class Infeasible(EmulatorError):
    """No candidate meets every constraint: the message says what binds and the fix; `result` holds every
    evaluated plan (none feasible) and `diagnosis` the shortfalls and the re-checked changes."""

    def __init__(self, diagnosis: Diagnosis, result: SearchResult, sz: Sizing) -> None:
        super().__init__(diagnosis.message, file=sz.path, field=diagnosis.field)
        self.diagnosis = diagnosis
        self.result = result


def _time_key(goal: str) -> str:
    return "effective_time_to_train_s" if goal == "train" else "latency_p99_s"


def _merge(into: Rejections, reasons: Rejections) -> None:
    for reason, slot in reasons.items():
        mine = into.setdefault(reason, {"count": 0, "example": slot["example"]})
        mine["count"] += slot["count"]


def _search(sz: Sizing, progress: Progress | None, memory_cache: dict[Any, float],
            by_candidate: dict[tuple[str, str], Rejections]) -> tuple[list[dict[str, Any]], int]:
    """Every candidate's evaluated rows and the plans enumerated; pruning reasons per candidate."""
    rows: list[dict[str, Any]] = []
    n_enum = 0
    for k, cand in enumerate(sz.candidates):
        mine: Rejections = by_candidate.setdefault((cand.device.name, cand.system.name), {})
        if sz.goal == "train":
            n, plans = enumerate_plans(sz, cand, mine, memory_cache)
            got = evaluate_training(sz, cand, plans, progress)
            finish_training(sz, cand, got)
        else:
            # one candidate at a time, so rejections stay per candidate; the device cap is checked on the rows
            # with the other limits (constraints.active), so a layout over it is still evaluated and diagnosable
            alone = dataclasses.replace(sz, candidates=(cand,), constraints=dataclasses.replace(
                sz.constraints, max_devices=None))
            step = None if progress is None else _counting(progress, k + 1, len(sz.candidates))
            got, reasons, n = search_serving(alone, step)
            _merge(mine, reasons)
        n_enum += n
        rows.extend(got)
    return rows, n_enum


def _counting(progress: Progress, done: int, total: int) -> Progress:
    return lambda device, _done, _total: progress(device, done, total)


def size(sz: Sizing, progress: Progress | None = None) -> SearchResult:
    """Search the sizing file's candidates; raise `Infeasible` naming the binding constraint when none fits."""
    by_candidate: dict[tuple[str, str], Rejections] = {}
    memory_cache: dict[Any, float] = {}
    rows, n_enum = _search(sz, progress, memory_cache, by_candidate)
    n_eval = len(rows)
    masks = constraint_flags(sz, rows)
    ok = np.ones(len(rows), dtype=bool)
    for name, mask in masks.items():
        for j in np.flatnonzero(ok & ~mask):
            row = rows[int(j)]
            _reject(by_candidate[(row["device"], row["system"])], name, plan_text(row))
        ok &= mask
    rejected: Rejections = {}
    for reasons in by_candidate.values():
        _merge(rejected, reasons)
    for i, r in enumerate(rows):
        r["meets"] = {name: bool(mask[i]) for name, mask in masks.items()}
    feasible = [int(i) for i in np.flatnonzero(ok)]
    if not feasible:
        result = SearchResult(goal=sz.goal, rows=rows, feasible=[], pareto=[], best={}, rejected=rejected,
                              num_enumerated=n_enum, num_evaluated=n_eval, rejected_by_candidate=by_candidate)
        raise Infeasible(diagnose(sz, rows, rejected, memory_cache), result, sz)
    tkey = _time_key(sz.goal)
    pts = np.array([[rows[i][tkey], rows[i]["cost_usd"], rows[i]["facility_mw"]] for i in feasible])
    front = (feasible[j] for j in np.flatnonzero(pareto_mask(pts)))
    pareto = sorted(front, key=lambda i: (rows[i][tkey], _order(rows[i])))

    def best_by(metric: str) -> int:
        key = tkey if metric == "time" else metric

        def rank(i: int) -> tuple[Any, ...]:
            return rows[i][key], rows[i][tkey], rows[i]["cost_usd"]
        # The plan's order breaks ties only: built for the tied rows, not for every row.
        top = min(rank(i) for i in feasible)
        return min((i for i in feasible if rank(i) == top), key=lambda i: _order(rows[i]))

    best = {obj: best_by(OBJECTIVE_KEYS[obj]) for obj in OBJECTIVE_KEYS}
    return SearchResult(goal=sz.goal, rows=rows, feasible=feasible, pareto=pareto, best=best, rejected=rejected,
                        num_enumerated=n_enum, num_evaluated=n_eval, rejected_by_candidate=by_candidate)


def _order(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["device"], row["num_devices"], tuple(sorted((k, str(v)) for k, v in row["plan"].items())))


def _reject(rejected: Rejections, reason: str, example: str) -> None:
    slot = rejected.setdefault(reason, {"count": 0, "example": example})
    slot["count"] += 1


__all__ = ["OBJECTIVE_KEYS", "Infeasible", "size"]
