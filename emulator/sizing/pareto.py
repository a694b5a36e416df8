"""The Pareto set: candidates no other candidate beats on every axis (all axes minimised).

Vectorised: candidates sorted by the first axis (ties by the others); a candidate is dominated when an earlier
one is no worse on every axis and strictly better on one. O(n^2 / 2) comparisons in numpy blocks, which for the
few thousand feasible plans of a sizing run is milliseconds.
"""

from __future__ import annotations

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


__all__ = ["dominates", "pareto_mask"]
