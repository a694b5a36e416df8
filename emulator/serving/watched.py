"""A serving run watched against its SLO: stopped as soon as enough measured requests have missed a bound that the
p99 must miss it too (`SloWatch`), as the SLO search needs only a failing run's verdict."""

from __future__ import annotations

from dataclasses import dataclass

import emulator.serving.simulator as simulator
from emulator.serving.replica import StepModel, check_capacity
from emulator.serving.runs import Requests, SimResult
from emulator.serving.scheduling import DEFAULT_SCHEDULING, Scheduling
from emulator.serving.slowatch import SloWatch


@dataclass(frozen=True, slots=True)
class Watched:
    """A watched run: its result, or None where it stopped on a missed SLO; and the most sequences it held (until
    it stopped). A run under a larger batch cap that never held `max_batch` sequences is, step for step, the run
    under that cap: its verdict serves both."""

    result: SimResult | None
    max_concurrency: int


def simulate_watched(step: StepModel, kv_capacity_tokens: int, requests: Requests, watch: SloWatch, *, max_batch: int,
                     max_batch_tokens: int, num_beams: int = 1, path: str | None = None,
                     scheduling: Scheduling = DEFAULT_SCHEDULING) -> Watched:
    """`simulate` on one replica, stopped as soon as the run's p99s cannot meet `watch.slo` (see SloWatch)."""
    check_capacity(requests, kv_capacity_tokens, num_beams, path)
    # through the module, so that a test can put the slow reference loop in its place
    run = simulator.run_replica(step, kv_capacity_tokens, requests.arrival_s, requests.input_tokens,
                                requests.output_tokens, max_batch, max_batch_tokens, num_beams, scheduling=scheduling,
                                watch=watch, log=False, pool=requests.pool)
    if run.missed:
        return Watched(None, run.max_concurrency)
    return Watched(SimResult(requests.arrival_s, run.first_s, run.finish_s, requests.input_tokens,
                             requests.output_tokens, run.busy_s, float(run.finish_s.max()), 1, run.num_steps,
                             run.num_preemptions, run.max_concurrency), run.max_concurrency)


__all__ = ["Watched", "simulate_watched"]
