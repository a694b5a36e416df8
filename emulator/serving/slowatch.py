"""When a watched serving run has missed its SLO: enough measured requests over a bound that their p99 must be
over it too (the SLO search needs only a failing run's verdict, so the simulator stops there)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from emulator.scenario import Slo

# A value counts as a miss only this far past its bound, so that numpy's interpolated p99 (which may round an ulp
# below the value it starts from) is over the bound whenever the counted misses say it must be.
MISS_MARGIN = 1e-12


@dataclass(frozen=True, slots=True)
class SloWatch:
    """The SLO a one-replica open-loop run is judged by over its requests from `first_measured` on (in arrival
    order: `SimResult.steady` keeps the same ones)."""

    slo: Slo
    first_measured: int


def misses_to_fail(num_values: int) -> float:
    """The fewest of `num_values` values over a bound that put their p99 (numpy's linear interpolation between
    sorted positions floor(0.99 (n - 1)) and the next) over it: from there the lower position holds a miss. One
    position lower is taken, so that the float rounding of that position never matters."""
    if num_values <= 0:
        return math.inf
    return num_values - max(math.floor(0.99 * (num_values - 1)) - 1, 0)


class MissCount:
    """Misses of measured requests against each bound, and how many make the p99 miss."""

    def __init__(self, watch: SloWatch | None, out: list[int]) -> None:
        self.first = watch.first_measured if watch is not None else len(out)  # None: no request is judged
        measured = out[self.first:]
        slo = watch.slo if watch is not None else Slo()
        limit = [math.inf if b is None else b * (1 + MISS_MARGIN)
                 for b in (slo.ttft_p99_s, slo.tpot_p99_s, slo.latency_p99_s)]
        self.ttft_s, self.tpot_s, self.latency_s = limit
        self.fail = [misses_to_fail(len(measured)), misses_to_fail(sum(1 for o in measured if o > 1)),
                     misses_to_fail(len(measured))]
        self.misses = [0, 0, 0]

    def missed(self, which: int) -> bool:
        """Count a miss of bound `which` (0 TTFT, 1 TPOT, 2 latency); whether the p99 now misses it."""
        self.misses[which] += 1
        return self.misses[which] >= self.fail[which]

    def finish_missed(self, latency_s: float, tpot_s: float, out: int) -> bool:
        """Count a finished request's latency and TPOT misses; whether a p99 now misses its bound."""
        if latency_s > self.latency_s and self.missed(2):
            return True
        return out > 1 and tpot_s > self.tpot_s and self.missed(1)


__all__ = ["MISS_MARGIN", "MissCount", "SloWatch", "misses_to_fail"]
