"""Statistics used everywhere results are summarised: percentiles (numpy's linear interpolation) and medians; the
expected maximum of independent normals (how late the slowest of n ranks comes) and how much more routed-expert
work the busiest of n expert-parallel ranks draws."""

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


def busiest_rank_factor(tokens: float, top_k: int, num_experts: int, ranks: int) -> float:
    """How much more routed-expert work the busiest of `ranks` expert-parallel ranks has than the mean rank, for
    `tokens` routed uniformly at random to `top_k` of `num_experts` experts each: the larger of its excess in experts
    touched (whose weights it reads: the bound of small decode batches) and in token assignments (its GEMMs' rows:
    the bound of large batches), each the mean plus the expected maximum of `ranks` normals times the standard
    deviation (a rank's E/ranks experts each touched with probability 1 - (1 - k/E)^T; its T*k/ranks assignments
    binomial). 1 for one rank. A collective after the experts makes every rank wait for the busiest one, so this
    scales the step's expert time. Real routers differ both ways, neither modelled: popular experts and DeepSeek's
    group-limited routing (a token's experts in at most 4 of 8 groups) make the busiest rank busier, while tokens
    that pick the same experts touch fewer of them than uniform routing does.
    4 tokens with top-8 of 256 experts on 8 ranks: 1.68 (a rank touches 3.8 experts on average, the busiest 6.4);
    64 tokens: 1.10; 1,024: 1.04."""
    if ranks <= 1 or tokens <= 0:
        return 1.0
    z = expected_max_normal(ranks)
    per_rank = num_experts / ranks
    p = 1.0 - (1.0 - top_k / num_experts) ** tokens
    touched = per_rank * p
    experts = min(touched + z * math.sqrt(per_rank * p * (1.0 - p)), per_rank) / touched
    assignments = tokens * top_k / ranks
    rows = 1.0 + z * math.sqrt(assignments * (1.0 - 1.0 / ranks)) / assignments
    return min(max(experts, rows), float(ranks))  # the busiest rank does at most all of the work


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
