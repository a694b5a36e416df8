"""One answer per candidate (a device in its system), for the report.

A candidate with plans that meet every constraint answers with the best of them by the file's objective: its
device count, time (serving: rate and latency), MW at the meter, energy, upfront capex, cost, cost per million
tokens, provenance and error band, and how it compares with the recommended plan. A candidate whose evaluated
plans all miss a limit answers with its closest plan (`diagnose.closest`) and the limits it misses, by how much.
Every candidate counts its plans enumerated, evaluated and feasible, and its rejections by reason.
"""

from __future__ import annotations

from typing import Any

from emulator.sizing.constraints import BY_NAME, shown
from emulator.sizing.diagnose import by_how_much, closest, misses
from emulator.sizing.search import SearchResult
from emulator.sizing.spec import Sizing

Row = dict[str, Any]


def _compared(best: Row, rec: Row, objective: str, key: str) -> str:
    if best is rec:
        return f"recommended: the lowest {objective} of every candidate's best plan"
    change = best[key] / rec[key] - 1 if rec[key] else 0.0
    against = f"the recommended {rec['device']} x {rec['num_devices']:,}"
    if abs(change) < 5e-7:
        return f"ties {against} on {objective}; ranked after it on time, then cost"
    return f"{change:+.0%} {objective} against {against}"


def _pruned(reasons: dict[str, dict[str, Any]]) -> str:
    top = sorted(reasons.items(), key=lambda kv: -kv[1]["count"])
    return ("no plan survives pruning: " + "; ".join(f"{k} {v['count']:,} (e.g. {v['example']})" for k, v in top[:2])
            if top else "no plan was enumerated")


def answers(result: SearchResult, sz: Sizing, ranked: list[int], objective_key: str,
            rec: Row | None) -> list[dict[str, Any]]:
    """Per candidate, in the file's order: status, verdict, best (or closest) row, misses, plan counts and
    rejections by reason. `ranked` lists the feasible rows best first by the objective (`objective_key`); `rec` is
    the recommended row (None when no plan is feasible)."""
    rows = result.rows
    out = []
    for cand in sz.candidates:
        key = (cand.device.name, cand.system.name)
        reasons = result.rejected_by_candidate.get(key, {})
        mine = [r for r in rows if (r["device"], r["system"]) == key]
        good = [rows[i] for i in ranked if (rows[i]["device"], rows[i]["system"]) == key]
        pruned = sum(v["count"] for k, v in reasons.items() if k not in BY_NAME)
        entry: dict[str, Any] = {
            "device": key[0], "system": key[1], "misses": [],
            "plans": {"enumerated": pruned + len(mine), "evaluated": len(mine), "feasible": len(good)},
            "rejected": {k: v["count"] for k, v in sorted(reasons.items())},
        }
        if good and rec is not None:
            best = rec if any(r is rec for r in good) else good[0]
            entry |= {"status": "recommended" if best is rec else "feasible", "best": best,
                      "verdict": _compared(best, rec, sz.objective, objective_key)}
        elif mine:
            near = mine[closest(sz, mine) or 0]
            missed = misses(sz, near)
            gaps = "; ".join(f"{c.name}: {shown(v, c.unit)} against {shown(lim, c.unit)} ({by_how_much(v, lim)})"
                             for c, v, lim in missed)
            entry |= {"status": "misses constraints", "best": near,
                      "misses": [{"constraint": c.name, "field": c.field, "value": v, "limit": lim, "unit": c.unit}
                                 for c, v, lim in missed],
                      "verdict": f"no plan meets every constraint; the closest (shown) misses {gaps}"}
        else:
            entry |= {"status": "no plan", "best": None, "verdict": _pruned(reasons)}
        out.append(entry)
    return out


__all__ = ["answers"]
