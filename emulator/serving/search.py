"""MLPerf-style scenarios on R identical replicas: Offline (maximum throughput) and Server (highest rate in SLO).

Replicas are identical and requests go to them round-robin, so replica 0's share (every R-th request) is
simulated and system throughput is R times its own: exact in distribution, and R times cheaper.
- Offline: all requests at t=0. Unless `batch_size` is given, the batch (max concurrent sequences) maximises a
  steady-state estimate of throughput, B / step(B), among batches whose full contexts fit the KV cache
  (larger batches only trade admissions for preemptions).
- Server: Poisson arrivals; the highest rate whose p99 TTFT, p99 TPOT (and p99 latency) meet the bounds, on a
  grid in log rate (`highest_rate`: down from capacity, then bisection) on common random numbers (the same seed at
  every rate), for the Offline batch and half of it (a smaller batch shortens TPOT). The first `WARMUP_FRACTION` of
  requests are not counted.
- Closed loop (`concurrency`): N clients spread over the replicas (client i on replica i mod R, so each replica
  holds N // R or N // R + 1; each distinct load is simulated once). A replica's run sends a warm-up wave (its
  clients' first requests, all at t=0: a burst no steady state has), then `CLOSED_MEASURED_WAVES` waves
  (at least `CLOSED_MIN_MEASURED` requests), then a drain wave. From the first send after the warm-up wave to the
  last send every client has a request in flight; throughput is the output tokens produced in whole waves of sends
  within that span over their length (counting completions instead would depend on where the window's ends fall in
  the bursts of equal-length requests), requests/s is that over the mean output length, and the latencies are
  those of the measured requests, pooled over the replicas' loads by how many replicas carry each.
  `measured_requests: all` measures every request instead (the first burst and the drain too) and the throughput
  over the whole run, as clients that report over all their requests do.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from emulator.scenario import ServingSpec, Slo
from emulator.serving.prediction import ClosedLoopStats, LatencyFloor
from emulator.serving.records import RequestLog
from emulator.serving.replica import Replica
from emulator.serving.simulator import (
    Requests,
    SimResult,
    SloWatch,
    TokenGaps,
    make_requests,
    repeated_percentiles,
    simulate,
    simulate_closed,
)
from emulator.serving.watched import Watched, simulate_watched
from emulator.stats import Percentiles

WARMUP_FRACTION = 0.25
OFFLINE_REQUESTS_PER_SLOT = 6  # requests per batch slot of one replica: tails are a small share of the run
SERVER_REQUESTS_PER_REPLICA = 600
SERVER_REQUESTS_PER_SLOT = 6  # a run spans several lifetimes of a full batch, so the queue reaches steady state
# A grid of 2**8 rates over [capacity / 64, capacity] in log rate: the rate found is within 64 ** (1 / 2**8) - 1 = 1.6%
# below the highest passing one, a tenth of a prediction's error band; each doubling of the grid halves that.
SEARCH_ITERATIONS = 8
CLOSED_MEASURED_WAVES = 2  # waves of a replica's clients' requests measured, between the warm-up and drain waves
CLOSED_MIN_MEASURED = 64  # measured requests per replica at least: a low concurrency's waves are a few requests
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    scenario: str
    result: SimResult  # replica 0's requests
    num_replicas: int
    max_batch: int
    rate_per_s: float | None  # Server: the rate found or given (whole system)
    meets_slo: bool

    @property
    def throughput_tokens_per_s(self) -> float:
        """Output tokens/s of all replicas (Server: the sustained rate times the mean output length)."""
        if self.rate_per_s is not None:
            return self.rate_per_s * float(self.result.output_tokens.mean())
        return self.result.throughput_tokens_per_s * self.num_replicas

    @property
    def throughput_samples_per_s(self) -> float:
        return self.rate_per_s if self.rate_per_s is not None else self.result.throughput_samples_per_s * \
            self.num_replicas


def latency_floor(replica: Replica, spec: ServingSpec) -> LatencyFloor:
    """The p99 latencies of one request at a time on one replica (a closed loop at concurrency 1): the floor under
    every load, so an SLO below it cannot be met on this layout whatever the rate or batch."""
    alone = dataclasses.replace(spec, scenario="concurrency", concurrency=1, num_requests=None, batch_size=None,
                                arrival_rate_per_s=None, trace=None, disaggregation=None)
    run = run_closed(replica, alone, 1)
    return LatencyFloor(ttft_s=run.ttft_s.p99, tpot_s=run.tpot_s.p99, latency_s=run.latency_s.p99)


def steady_step_s(replica: Replica, batch: float, mean_in: float, mean_out: float, beams: int) -> float:
    """Seconds of one iteration of a replica holding `batch` requests in steady state, each replaced by a new prompt
    when done: their decodes (at half their output on average) and the prompt tokens that replacement brings."""
    per_iter_prefill = batch * mean_in / max(mean_out, 1.0)
    ctx = mean_in + mean_out / 2
    return replica.step.step_s(batch * beams + per_iter_prefill, per_iter_prefill * mean_in / 2, batch * beams,
                               batch * beams * ctx)


def steady_throughput(replica: Replica, batch: int, mean_in: float, mean_out: float, beams: int) -> float:
    """Output tokens/s of one replica holding `batch` requests, each replaced by a new prompt when done."""
    return batch / steady_step_s(replica, batch, mean_in, mean_out, beams)


def choose_batch(replica: Replica, spec: ServingSpec) -> int:
    """`batch_size` when given; else the throughput-maximising batch whose full contexts fit the KV cache, within
    the engine's own cap on running sequences (`Replica.max_sequences`)."""
    if spec.batch_size:
        return spec.batch_size
    mean_in, mean_out = spec.input_tokens.expected, spec.output_tokens.expected
    fit = int(replica.kv_capacity_tokens // ((mean_in + mean_out) * spec.num_beams))
    fit = min(max(fit, 1), replica.max_sequences)
    candidates = sorted({2**i for i in range(int(math.log2(fit)) + 1)} | {fit})
    return max(candidates, key=lambda b: steady_throughput(replica, b, mean_in, mean_out, spec.num_beams))


def run_offline(replica: Replica, spec: ServingSpec, num_replicas: int) -> ScenarioResult:
    batch = choose_batch(replica, spec)
    n = spec.num_requests or num_replicas * max(OFFLINE_REQUESTS_PER_SLOT * batch, 200)
    reqs = make_requests(spec.input_tokens, spec.output_tokens, n, None, spec.seed, spec.prompt_pool)
    reqs = reqs.share(0, num_replicas)
    # A batch job hands its prompts to the engine in-process and reads whole outputs: no API server streams them.
    res = simulate(replica.step, replica.kv_capacity_tokens, reqs, max_batch=batch,
                   max_batch_tokens=replica.max_batch_tokens, num_beams=spec.num_beams, path=spec.path,
                   scheduling=dataclasses.replace(replica.scheduling, frontend_token_s=0.0))
    return ScenarioResult("offline", res, num_replicas, batch, None, True)


def meets(result: SimResult, slo: Slo) -> bool:
    """Whether the p99s of a run meet every bound the SLO sets."""
    return meets_percentiles(slo, Percentiles.of(result.ttft_s), Percentiles.of(result.tpot_s),
                             Percentiles.of(result.latency_s))


def meets_percentiles(slo: Slo, ttft: Percentiles, tpot: Percentiles, latency: Percentiles) -> bool:
    """Whether these p99s meet every bound the SLO sets."""
    checks = ((slo.ttft_p99_s, ttft), (slo.tpot_p99_s, tpot), (slo.latency_p99_s, latency))
    return all(bound is None or q.p99 <= bound for bound, q in checks)


def run_at_rate(replica: Replica, spec: ServingSpec, num_replicas: int, rate: float, batch: int,
                requests: Requests | None = None) -> SimResult:
    """Replica 0's share of a Poisson stream at `rate` (whole system), warm-up removed."""
    if requests is None:
        n = spec.num_requests or num_replicas * max(SERVER_REQUESTS_PER_REPLICA, SERVER_REQUESTS_PER_SLOT * batch)
        requests = make_requests(spec.input_tokens, spec.output_tokens, n, rate, spec.seed, spec.prompt_pool)
    res = simulate(replica.step, replica.kv_capacity_tokens, requests.share(0, num_replicas), max_batch=batch,
                   max_batch_tokens=replica.max_batch_tokens, num_beams=spec.num_beams, path=spec.path,
                   scheduling=replica.scheduling)
    return res.steady(WARMUP_FRACTION)


def watched_run(replica: Replica, spec: ServingSpec, num_replicas: int, batch: int, requests: Requests) -> Watched:
    """`run_at_rate`'s steady run when it meets the SLO (`Watched.result`, else None). The run stops as soon as
    enough measured requests miss a bound that its p99 must miss it (`simulator.SloWatch`): the verdict `meets`
    gives on the whole run."""
    share = requests.share(0, num_replicas)
    # SimResult.steady keeps the requests from int(n * WARMUP_FRACTION) on in arrival order: Poisson arrivals are
    # sorted, so the same indices.
    watch = SloWatch(spec.slo, int(len(share) * WARMUP_FRACTION))
    run = simulate_watched(replica.step, replica.kv_capacity_tokens, share, watch, max_batch=batch,
                           max_batch_tokens=replica.max_batch_tokens, num_beams=spec.num_beams, path=spec.path,
                           scheduling=replica.scheduling)
    if run.result is None:
        return run
    steady = run.result.steady(WARMUP_FRACTION)
    return Watched(steady if meets(steady, spec.slo) else None, run.max_concurrency)


def highest_rate(low: float, high: float, trial: Callable[[float], tuple[bool, T]],
                 iterations: int = SEARCH_ITERATIONS, beat: float | None = None) -> tuple[float, T] | None:
    """The highest rate of the grid low * (high / low) ** (k / 2**iterations), k = 1 .. 2**iterations - 1, whose
    trial passes, and that trial's result: what `iterations` bisections of [low, high] in log rate find (a rate
    passes the SLO when every lower rate does); None when even the lowest fails. The search gallops down from the
    top of the grid (k = 2**iterations - 1, then 2, 4, 8 ... steps lower) to the first pass, then bisects between
    it and the failing point above: a rate near capacity passes in one trial, and a failing trial is cheap (a
    watched run stops at its first sure miss), where plain bisection runs half its trials to the end. With `beat`,
    None as soon as the answer cannot exceed that rate (it lies below the lowest failing rate): the caller keeps a
    better one."""
    n = 2**iterations
    base, span = math.log(low), math.log(high) - math.log(low)

    def rate(k: int) -> float:
        return math.exp(base + span * k / n)

    # The lowest grid point worth a trial: 1, or the first above `beat` (an answer at or below it is not wanted).
    floor = 1 if beat is None else min(max(math.floor((math.log(beat) - base) / span * n) + 1, 1), n)
    hi, step, k = n, 1, n - 1  # hi: the lowest grid point known to fail (n: `high`, never tried)
    while True:
        if k < floor or (beat is not None and rate(hi) <= beat):
            return None
        ok, result = trial(rate(k))
        if ok:
            break
        if k == floor:
            return None
        hi, step = k, step * 2
        k = max(n - step, floor)
    lo, found = k, result
    while hi - lo > 1:
        if beat is not None and rate(hi) <= beat:
            return None
        mid = (lo + hi) // 2
        ok, result = trial(rate(mid))
        if ok:
            lo, found = mid, result
        else:
            hi = mid
    return rate(lo), found


def run_server(replica: Replica, spec: ServingSpec, num_replicas: int,
               offline: ScenarioResult | None = None) -> ScenarioResult:
    """A fixed rate (or trace) when given; else the highest rate meeting the SLO."""
    offline = offline or run_offline(replica, spec, num_replicas)
    if spec.arrival_rate_per_s is not None:
        res = run_at_rate(replica, spec, num_replicas, spec.arrival_rate_per_s, offline.max_batch)
        return ScenarioResult("server", res, num_replicas, offline.max_batch, spec.arrival_rate_per_s,
                              meets(res, spec.slo))
    base = spec.num_requests or num_replicas * max(SERVER_REQUESTS_PER_REPLICA,
                                                   SERVER_REQUESTS_PER_SLOT * offline.max_batch)
    unit = make_requests(spec.input_tokens, spec.output_tokens, base, 1.0, spec.seed, spec.prompt_pool)  # rescaled
    best: ScenarioResult | None = None
    runs: dict[float, Watched] = {}  # the larger batch's runs by rate
    for batch in sorted({offline.max_batch, max(offline.max_batch // 2, 1)}, reverse=True):
        # A queue is stable only below the service capacity (utilisation < 1): the Offline throughput bounds any
        # sustainable Server rate, however well a finite simulated run happens to meet the latency bounds.
        def trial(rate: float, batch: int = batch) -> tuple[bool, SimResult | None]:
            run = runs.get(rate)
            if run is None or run.max_concurrency >= batch:  # else the larger batch's run is this one
                run = watched_run(replica, spec, num_replicas, batch,
                                  dataclasses.replace(unit, arrival_s=unit.arrival_s / rate))
                runs.setdefault(rate, run)
            return run.result is not None, run.result

        found = highest_rate(offline.throughput_samples_per_s / 64, offline.throughput_samples_per_s, trial,
                             beat=best.rate_per_s if best is not None else None)
        if found and found[1] is not None and (best is None or found[0] > (best.rate_per_s or 0.0)):
            best = ScenarioResult("server", found[1], num_replicas, batch, found[0], True)
    if best is None:  # even a light load misses the bounds: report the lightest load tried
        rate = offline.throughput_samples_per_s / 64
        res = run_at_rate(replica, spec, num_replicas, rate, offline.max_batch)
        best = ScenarioResult("server", res, num_replicas, offline.max_batch, rate, False)
    return best


@dataclass(frozen=True, slots=True)
class ClosedLoopRun:
    """A closed loop over all replicas: steady-state latencies pooled over the replicas' loads, summed throughput."""

    ttft_s: Percentiles
    tpot_s: Percentiles
    latency_s: Percentiles
    stats: ClosedLoopStats
    throughput_tokens_per_s: float
    throughput_samples_per_s: float
    max_batch: int
    utilisation: float
    num_preemptions: int
    meets_slo: bool
    log: RequestLog = field(compare=False, repr=False)  # the first replica load's measured requests and iterations
    cached_prompt_share: float = 0.0  # of the prompt tokens, those the prefix cache served (a client's prompt pool)


@dataclass(frozen=True, slots=True)
class _Load:
    """One replica's closed loop with `clients` clients: its measured requests and steady rates."""

    measured: SimResult
    gaps: TokenGaps
    requests_per_s: float
    tokens_per_s: float


def closed_batch(replica: Replica, spec: ServingSpec, clients: int) -> int:
    """Sequences a replica under `clients` closed-loop clients runs at once: `batch_size` when given, else every
    client's request up to the engine's cap (`Replica.max_sequences`)."""
    return spec.batch_size or min(clients, replica.max_sequences)


def _closed_replica(replica: Replica, spec: ServingSpec, clients: int, n: int) -> _Load:
    pool, total = spec.prompt_pool, spec.concurrency or clients  # its clients sent their share of the warm-up
    warm = None if pool is None else round(pool.warmup_requests * clients / total)
    reqs = make_requests(spec.input_tokens, spec.output_tokens, n, None, spec.seed, pool, warm)
    res = simulate_closed(replica.step, replica.kv_capacity_tokens, reqs, concurrency=clients,
                          max_batch=closed_batch(replica, spec, clients),
                          max_batch_tokens=replica.max_batch_tokens,
                          num_beams=spec.num_beams, path=spec.path,
                          scheduling=replica.scheduling)
    # Every client has a request in flight from the first send after the warm-up wave to the last send; the window
    # spans whole waves of sends (a multiple of `clients`) so that it starts and ends at the same phase of the
    # bursts equal-length requests keep (prefill iterations then decode runs).
    if spec.measured_requests == "all":  # every request, from the first burst to the last completion
        start, end = 0.0, float(res.makespan_s)
        keep = np.arange(n)
    else:
        last = clients + (n - 1 - clients) // clients * clients
        start, end = float(res.arrival_s[clients]), float(res.arrival_s[last])
        keep = np.arange(clients, n - clients)  # sent after the warm-up wave, before the drain wave
    window = max(end - start, 1e-12)
    gaps = res.gaps.within(start, end) if res.gaps is not None else TokenGaps(*(np.zeros(0),) * 3)
    firsts = int(np.count_nonzero((res.first_token_s > start) & (res.first_token_s <= end)))
    tokens_per_s = (gaps.num_tokens + firsts) / window
    measured = SimResult(res.arrival_s[keep], res.first_token_s[keep], res.finish_s[keep], res.input_tokens[keep],
                         res.output_tokens[keep], res.busy_s, res.makespan_s, 1, res.num_steps, res.num_preemptions,
                         res.max_concurrency, iterations=res.iterations,
                         cached_prompt_share=res.cached_prompt_share)
    return _Load(measured, gaps, tokens_per_s / float(measured.output_tokens.mean()), tokens_per_s)


def run_closed(replica: Replica, spec: ServingSpec, num_replicas: int) -> ClosedLoopRun:
    """`spec.concurrency` clients in a closed loop over `num_replicas` replicas (see the module docstring)."""
    total = spec.concurrency or 1
    share, extra = divmod(total, num_replicas)
    loads: list[tuple[_Load, int]] = []  # (a replica's load, replicas carrying it)
    for clients, count in ((share + 1, extra), (share, num_replicas - extra)):
        if clients and count:
            n = (spec.num_requests * clients // total if spec.num_requests else
                 2 * clients + max(CLOSED_MEASURED_WAVES * clients, CLOSED_MIN_MEASURED))
            loads.append((_closed_replica(replica, spec, clients, n), count))

    unit = math.gcd(*(count for _, count in loads))  # one load alone: each request counts once

    def pooled(get: Callable[[SimResult], np.ndarray]) -> tuple[Percentiles, float]:
        values = np.concatenate([get(load.measured) for load, _ in loads])
        weights = np.concatenate([np.full(len(get(load.measured)), count // unit) for load, count in loads])
        mean = float(np.dot(values, weights) / weights.sum()) if len(values) else 0.0
        return repeated_percentiles(values, weights), mean

    (ttft, ttft_mean), (tpot, tpot_mean), (latency, latency_mean) = (
        pooled(lambda r: r.ttft_s), pooled(lambda r: r.tpot_s), pooled(lambda r: r.latency_s))
    gaps = TokenGaps.join([TokenGaps(load.gaps.end_s, load.gaps.gap_s, load.gaps.count * (count // unit))
                           for load, count in loads])
    tokens = sum(load.tokens_per_s * count for load, count in loads)
    stats = ClosedLoopStats(
        concurrency=total, ttft_mean_s=ttft_mean, tpot_mean_s=tpot_mean, itl_s=gaps.percentiles(),
        itl_mean_s=gaps.mean_s, latency_mean_s=latency_mean,
        tokens_per_s_per_device=tokens / (num_replicas * replica.num_devices),
        tokens_per_s_per_user=1.0 / tpot_mean if tpot_mean > 0 else 0.0,
        num_measured_requests=sum(len(load.measured.arrival_s) for load, _ in loads), measured=spec.measured_requests)
    return ClosedLoopRun(
        ttft_s=ttft, tpot_s=tpot, latency_s=latency, stats=stats, throughput_tokens_per_s=tokens,
        throughput_samples_per_s=sum(load.requests_per_s * count for load, count in loads),
        max_batch=closed_batch(replica, spec, share + (extra > 0)),
        utilisation=sum(min(load.measured.busy_s / load.measured.makespan_s, 1.0) * count
                        for load, count in loads) / num_replicas,
        num_preemptions=sum(load.measured.num_preemptions * count for load, count in loads),
        meets_slo=meets_percentiles(spec.slo, ttft, tpot, latency),
        log=RequestLog.of(loads[0][0].measured, f"concurrency, one replica's closed loop of {share + (extra > 0)} "
                          "client(s): its measured requests (warm-up and drain waves left out)"),
        cached_prompt_share=sum(load.measured.cached_prompt_share * count for load, count in loads) / num_replicas)


__all__ = ["ClosedLoopRun", "ScenarioResult", "choose_batch", "highest_rate", "latency_floor", "meets",
           "meets_percentiles",
           "run_at_rate", "run_closed", "run_offline", "run_server", "steady_step_s", "steady_throughput"]
