"""The iteration log of one simulated replica: every continuous-batching iteration, when it ran and what it held.

The simulator advances runs of identical decode-only iterations in closed form, so the log keeps runs: run i is
`count[i]` iterations from `start_s[i]`, the j-th lasting `first_s[i] + increment_s[i] * j` (each decode-only
iteration reads one more token of KV cache per sequence), with `decode_seqs[i]` sequences decoding and
`prefill_tokens[i]` prompt tokens prefilled in each. Token gaps (ITL) and the serving timeline both read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# (start_s, iterations, first duration_s, increment_s per iteration, decoding sequences, prefill tokens)
Run = tuple[float, int, float, float, int, int]


@dataclass(frozen=True, slots=True)
class Iterations:
    """A replica's iterations as runs (see the module docstring)."""

    start_s: np.ndarray
    count: np.ndarray
    first_s: np.ndarray
    increment_s: np.ndarray
    decode_seqs: np.ndarray
    prefill_tokens: np.ndarray

    @classmethod
    def of(cls, runs: list[Run]) -> Iterations:
        if not runs:
            return cls(*(np.zeros(0, dtype=dtype) for dtype in (float, np.int64, float, float, np.int64, np.int64)))
        # One conversion of the whole list (4x faster than a zip into six arrays on a search's long logs): every
        # field is a Python float or an int far below 2**53, so the float64 table holds each exactly.
        table = np.array(runs, dtype=float)  # [runs, 6]
        start, count, first, inc, seqs, prefill = table.T
        return cls(start.copy(), count.astype(np.int64), first.copy(), inc.copy(), seqs.astype(np.int64),
                   prefill.astype(np.int64))

    @property
    def num_iterations(self) -> int:
        return int(self.count.sum())

    def expand(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One entry per iteration: (end_s, duration_s, decoding sequences, prefill tokens). Iteration j of a run
        ends at start + (j+1) first + increment j(j+1)/2 (the sum of the durations before it and its own)."""
        run = np.repeat(np.arange(len(self.count)), self.count)
        j = np.arange(self.num_iterations) - np.repeat(np.cumsum(self.count) - self.count, self.count)
        first, inc = self.first_s[run], self.increment_s[run]
        end = self.start_s[run] + (j + 1) * first + inc * j * (j + 1) / 2
        return end, first + inc * j, self.decode_seqs[run], self.prefill_tokens[run]


def iterations_to_reach(gap_s: float, first_s: float, increment_s: float) -> int:
    """Fewest iterations of a decode-only run, the j-th lasting `first_s + increment_s * j`, whose summed time
    k first_s + increment_s k (k - 1) / 2 reaches `gap_s` (> 0)."""
    b = first_s - increment_s / 2
    if increment_s <= 0:
        return math.ceil(gap_s / max(b, 1e-12))
    return math.ceil((-b + math.sqrt(b * b + 2 * increment_s * gap_s)) / increment_s - 1e-9)


__all__ = ["Iterations", "Run", "iterations_to_reach"]
