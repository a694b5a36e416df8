"""Statistics used everywhere results are summarised: percentiles (numpy's linear interpolation) and medians; the
expected maximum of independent normals (how late the slowest of n ranks comes)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]); an error for no values."""
    if len(values) == 0:
        raise ValueError("percentile of no values")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def median(values: Sequence[float] | np.ndarray) -> float:
    """The 50th percentile."""
    return percentile(values, 50)


@functools.lru_cache(maxsize=64)
def expected_max_normal(n: int) -> float:
    """E[max of n independent standard normals] (0 for one; 0.564 for two, 1.029 for four, 1.424 for eight): the
    integral of x n phi(x) Phi(x)^(n-1) over a fine grid."""
    if n <= 1:
        return 0.0
    x = np.linspace(-10.0, 10.0, 20001)
    phi = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2)) for v in x]))
    return float(np.sum(x * n * phi * cdf ** (n - 1)) * (x[1] - x[0]))


@dataclass(frozen=True, slots=True)
class Percentiles:
    """The p50, p90 and p99 of a distribution (latencies in seconds); zeros for no values."""

    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> Percentiles:
        if len(values) == 0:
            return cls(0.0, 0.0, 0.0)
        p50, p90, p99 = np.percentile(np.asarray(values, dtype=float), [50, 90, 99])
        return cls(float(p50), float(p90), float(p99))

    def as_dict(self) -> dict[str, float]:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}
