"""The Pareto set: candidates no other candidate beats on every axis (all axes minimised).

Vectorised: candidates sorted by the first axis (ties by the others); a candidate is dominated when an earlier
one is no worse on every axis and strictly better on one. O(n^2 / 2) comparisons in numpy blocks, which for the
few thousand feasible plans of a sizing run is milliseconds.

Plans that differ only where the model sees no difference (a ZeRO stage or a recompute mode that costs nothing at
that size) reach the same point; `distinct` folds them into one entry that lists what varies.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of an (n, k) array (minimise every column); ties all kept."""
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    order = np.lexsort(pts.T[::-1])
    ranked = pts[order]
    for i in range(n):
        if not keep[order[i]]:
            continue
        rest = ranked[i + 1:]
        dominated = np.all(ranked[i] <= rest, axis=1) & np.any(ranked[i] < rest, axis=1)
        keep[order[i + 1:][dominated]] = False
    return keep


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether point a is no worse than b on every axis and better on one."""
    return bool(np.all(a <= b) and np.any(a < b))


def distinct(rows: list[dict[str, Any]], axes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows folded by outcome (device, system, device count and every axis to 6 significant digits, as the report
    prints them), in first-seen order; each kept row gains `equivalent`: how many plans share its outcome and, per
    plan field, the values they take where those differ."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["device"], r["system"], r["num_devices"], *(float(f"{r[a]:.6g}") for a in axes))
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        vary = {k: sorted({m["plan"][k] for m in members}, key=str) for k in members[0]["plan"]}
        out.append(members[0] | {"equivalent": {"num_plans": len(members),
                                                "vary": {k: v for k, v in vary.items() if len(v) > 1}}})
    return out


__all__ = ["distinct", "dominates", "pareto_mask"]
