"""Choosing among evaluated candidates: constraints, the Pareto front, the best plan per objective, and what binds
when nothing is feasible."""


from __future__ import annotations

from typing import Any

import numpy as np

from emulator.errors import EmulatorError
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
from emulator.units import GiB

DAY_S = 86400.0
OBJECTIVE_KEYS = {"cost": "cost_usd", "energy": "energy_mwh", "devices": "num_devices", "time": "time"}


def _time_key(goal: str) -> str:
    return "effective_time_to_train_s" if goal == "train" else "latency_p99_s"


def _plan_text(row: dict[str, Any]) -> str:
    return f"{row['device']} x {row['num_devices']} (" + ", ".join(f"{k} {v}" for k, v in row["plan"].items()) + ")"


def _constraint_flags(sz: Sizing, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per constraint, a mask of the rows that meet it (the device cap is applied while enumerating)."""
    c = sz.constraints
    flags: dict[str, np.ndarray] = {}
    if sz.train and sz.train.deadline_days is not None:
        flags["deadline_days"] = np.array([r["effective_time_to_train_s"] <= sz.train.deadline_days * DAY_S
                                           for r in rows], dtype=bool)
    if c.power_cap_mw is not None:
        flags["power_cap_mw"] = np.array([r["facility_mw"] <= c.power_cap_mw for r in rows], dtype=bool)
    if c.budget_usd is not None:
        flags["budget_usd"] = np.array([r["cost_usd"] <= c.budget_usd for r in rows], dtype=bool)
    return flags


_NEEDED = {"deadline_days": ("effective_time_to_train_s", DAY_S, "days"),
           "power_cap_mw": ("facility_mw", 1.0, "MW"), "budget_usd": ("cost_usd", 1.0, "USD")}


def _impossible(sz: Sizing, rows: list[dict[str, Any]], flags: dict[str, np.ndarray],
                rejected: dict[str, dict[str, Any]]) -> EmulatorError:
    """An error naming the constraint that binds and the value (or change) that would satisfy it."""
    if not rows:
        reasons = "; ".join(f"{k}: {v['count']} (e.g. {v['example']})" for k, v in sorted(rejected.items()))
        biggest = max((d.memory_bytes for d in (c.device for c in sz.candidates)), default=0.0)
        return EmulatorError(f"no plan survives pruning ({reasons}). Binding: device memory ({biggest / GiB:.0f} GiB "
                             "at most) and the device cap. Fix: raise constraints.max_devices (or train.max_devices), "
                             "add a device with more memory, or widen search (recompute: [full], more pp).",
                             file=sz.path, field="constraints.max_devices")
    lines = []
    for name in flags:
        others = np.ones(len(rows), dtype=bool)
        for other, m in flags.items():
            if other != name:
                others &= m
        key, scale, unit = _NEEDED[name]
        if not others.any():
            continue
        idx = min(np.flatnonzero(others), key=lambda i: (rows[i][key], rows[i]["cost_usd"]))
        need = rows[idx][key] / scale
        fix = f"set {'train.' if name == 'deadline_days' else 'constraints.'}{name} >= {_round_up(need)} {unit}"
        if name == "deadline_days" and sz.train:
            scale_n = rows[idx]["num_devices"] * need / sz.train.deadline_days
            fix += (f", or allow about {int(scale_n):,} devices (constraints.max_devices; linear-scaling estimate "
                    f"from {_plan_text(rows[idx])})")
        lines.append(f"{name} binds: the best plan meeting the other constraints, {_plan_text(rows[idx])}, needs "
                     f"{need:,.4g} {unit}. Fix: {fix}.")
    if not lines:
        lines.append("no single constraint binds alone; " + ", ".join(
            f"{n}: best {min(r[_NEEDED[n][0]] for r in rows) / _NEEDED[n][1]:,.4g} {_NEEDED[n][2]}" for n in flags)
            + ". Fix: relax several of them together.")
    return EmulatorError("no candidate meets every constraint. " + " ".join(lines), file=sz.path,
                         field=next((("train." if f == "deadline_days" else "constraints.") + f for f in flags),
                                    "constraints"))


def _round_up(x: float) -> str:
    digits = max(0, 2 - int(np.floor(np.log10(abs(x)))) if x > 0 else 0)
    step = 10.0 ** -digits
    return f"{np.ceil(x / step) * step:.{digits}f}"


def size(sz: Sizing, progress: Progress | None = None) -> SearchResult:
    """Search the sizing file's candidates; raise an `EmulatorError` naming the binding constraint when none fits."""
    rejected: dict[str, dict[str, Any]] = {}
    if sz.goal == "train":
        rows: list[dict[str, Any]] = []
        n_enum = 0
        memory_cache: dict[Any, float] = {}
        for cand in sz.candidates:
            n, plans = enumerate_plans(sz, cand, rejected, memory_cache)
            n_enum += n
            got = evaluate_training(sz, cand, plans, progress)
            finish_training(sz, cand, got)
            rows.extend(got)
    else:
        rows, rejected, n_enum = search_serving(sz, progress)
    n_eval = len(rows)
    flags = _constraint_flags(sz, rows)
    ok = np.ones(len(rows), dtype=bool)
    for name, mask in flags.items():
        for j in np.flatnonzero(ok & ~mask):
            _reject(rejected, name, f"{_plan_text(rows[int(j)])}")
        ok &= mask
    for i, r in enumerate(rows):
        r["meets"] = {name: bool(mask[i]) for name, mask in flags.items()}
    feasible = [int(i) for i in np.flatnonzero(ok)]
    if not feasible:
        raise _impossible(sz, rows, flags, rejected)
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
                        num_enumerated=n_enum, num_evaluated=n_eval)


def _order(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["device"], row["num_devices"], tuple(sorted((k, str(v)) for k, v in row["plan"].items())))


def _reject(rejected: dict[str, dict[str, Any]], reason: str, example: str) -> None:
    slot = rejected.setdefault(reason, {"count": 0, "example": example})
    slot["count"] += 1
