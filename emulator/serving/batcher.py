"""The greedy batcher of recommender serving: an idle device takes every waiting query, up to a cap of pairs.

Queries arrive in time order, so a batch starting at t takes the queries up to the last arrival <= t, cut where
their pairs would pass the cap (always at least one): two binary searches per batch, not a step per query. A run
keeps each batch's end and finish time, not one finish time per query (a DLRM device serves tens of millions of
queries in a run); `Batches.finish_s_per_query` expands them when a run's latencies are read.

With a latency bound to judge, the run counts the measured queries over it as it goes: it stops as soon as enough
of them miss that the p99 must miss (`simulator.misses_to_fail`), and it counts the queries near the bound, so
that a finished run's verdict is usually known without sorting its latencies (`Batches.meets`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from emulator.serving.simulator import MISS_MARGIN, misses_to_fail
from emulator.stats import Percentiles


@dataclass(frozen=True, slots=True)
class Batches:
    """One device's batches: where each ends (one past its last query), when it finishes, and the busy seconds.
    With a bound: how many measured queries are over it (with a margin) and near it."""

    ends: np.ndarray
    finish_s: np.ndarray
    busy_s: float
    over: int = 0
    near: int = 0

    def finish_s_per_query(self) -> np.ndarray:
        return np.repeat(self.finish_s, np.diff(self.ends, prepend=0))

    def latency_s(self, arrival_s: np.ndarray, first_measured: int) -> np.ndarray:
        """Finish minus arrival of the queries from `first_measured` on."""
        out = self.finish_s_per_query()
        np.subtract(out, arrival_s, out=out)
        return out[first_measured:]

    def meets(self, arrival_s: np.ndarray, first_measured: int, bound_s: float) -> bool:
        """Whether the p99 latency of the queries from `first_measured` on is within `bound_s`: from the counts
        where they settle it (every query at the p99's two sorted positions under the bound with a margin), else
        from the latencies themselves."""
        m = len(arrival_s) - first_measured
        if self.near <= m - (math.floor(0.99 * (m - 1)) + 1) - 2:
            return True
        return Percentiles.of(self.latency_s(arrival_s, first_measured)).p99 <= bound_s


def serve_queries(arrival_s: np.ndarray, pairs: np.ndarray | int, step_s: list[float], step: Callable[[int], float],
                  cap: int, bound_s: float | None = None, first_measured: int = 0) -> Batches | None:
    """Batches of one device's queries (arrival times in order; pairs per query, or one count for all) under the
    greedy batcher; `step_s[s]` the seconds of a batch of s pairs (`step(s)` past the table). With `bound_s`, None
    as soon as the p99 latency of the queries from `first_measured` on must miss it."""
    n = len(arrival_s)
    search = arrival_s.searchsorted
    cum = None if isinstance(pairs, int) else np.concatenate(([0], np.cumsum(pairs)))
    const = pairs if isinstance(pairs, int) else 0
    per_batch = cap // const if const else 0  # queries that fit the cap, pairs being constant
    over_limit = math.inf if bound_s is None else bound_s * (1 + MISS_MARGIN)
    near_limit = math.inf if bound_s is None else bound_s * (1 - MISS_MARGIN)
    fail = misses_to_fail(n - first_measured) if bound_s is not None else math.inf
    ends: list[int] = []
    finish: list[float] = []
    t = busy = 0.0
    i = over = near = 0
    size = len(step_s)
    while i < n:
        a = float(arrival_s[i])
        if a > t:
            t = a
        j = int(search(t, "right"))
        if cum is None:
            if j > i + per_batch:
                j = i + per_batch
            if j <= i:
                j = i + 1
            s = (j - i) * const
        else:
            j = min(j, int(cum.searchsorted(cum[i] + cap, "right")) - 1)
            if j <= i:
                j = i + 1
            s = int(cum[j] - cum[i])
        dt = step_s[s] if s < size else step(s)
        t += dt
        busy += dt
        ends.append(j)
        finish.append(t)
        q = i if i > first_measured else first_measured
        # Latency falls along a batch (later arrivals, one finish), so a batch's first measured query is its worst.
        if q < j and t - float(arrival_s[q]) > near_limit:
            latency = t - arrival_s[q:j]
            near += int(np.count_nonzero(latency > near_limit))
            over += int(np.count_nonzero(latency > over_limit))
            if over >= fail:
                return None
        i = j
    return Batches(np.array(ends), np.array(finish), busy, over, near)


__all__ = ["Batches", "serve_queries"]
