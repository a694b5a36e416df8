"""Request-level discrete-event simulation of continuous batching on replicas of one model.

Each replica runs iterations (Orca/vLLM-style continuous batching): every decoding sequence adds one token;
the rest of the token budget `max_batch_tokens` takes prefill chunks first-come first-served (chunked
prefill); a waiting request is admitted when fewer than `max_batch` sequences run and the KV cache has room
for its prompt (plus one block). When the next decode step would overflow the KV cache, the most recently
admitted decoding request is preempted (vLLM's recompute policy): its KV is freed and it re-queues at the
front with prompt + generated tokens to prefill again. A request's first token comes at the end of the
iteration that completes its prefill; TPOT = (end-to-end - TTFT) / (output tokens - 1) (MLPerf's definition).

Speed: iterations without prefill work change only by the growing KV read, so runs of them are advanced in
closed form up to the next completion, KV overflow or admissible arrival (sum of an arithmetic series).
Requests go to replicas round-robin (a load balancer's simplest deterministic policy).

Closed loop (`simulate_closed`): `concurrency` clients each send a request and the next one the moment it finishes,
so request i >= concurrency is sent at the (i - concurrency + 1)-th completion. The same iteration loop runs it:
a request's send time is set when the completion that frees its client happens.
Token gaps (ITL): each iteration's duration counts once per decoding sequence in it (each gains one token), and a
preempted request's wait from its last token to the first token after its recompute counts once.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from emulator.errors import EmulatorError
from emulator.scenario import Distribution
from emulator.serving.iterations import Iterations, Run
from emulator.serving.replica import KV_BLOCK_TOKENS, StepModel
from emulator.stats import Percentiles


@dataclass(frozen=True, slots=True)
class Requests:
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)


def make_requests(inputs: Distribution, outputs: Distribution, n: int, rate_per_s: float | None,
                  seed: int) -> Requests:
    """n requests: Poisson arrivals at `rate_per_s` (all at t=0 when None, the Offline scenario)."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0, n)  # drawn first so the lengths do not depend on the rate
    lin, lout = inputs.sample(rng, n), outputs.sample(rng, n)
    arrival = np.zeros(n) if rate_per_s is None else np.cumsum(gaps) / rate_per_s
    return Requests(arrival, lin, lout)


def repeated_percentiles(values: np.ndarray, counts: np.ndarray) -> Percentiles:
    """`Percentiles.of(np.repeat(values, counts))` (numpy's linear interpolation) without building the repeated
    array: the token gaps of a run are one value per iteration, counted once per token it gave."""
    keep = counts > 0
    v, c = np.asarray(values, dtype=float)[keep], np.asarray(counts)[keep]
    if len(v) == 0:
        return Percentiles(0.0, 0.0, 0.0)
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(c[order])
    total = float(cum[-1])
    out = []
    for q in (50.0, 90.0, 99.0):
        pos = q / 100 * (total - 1)
        low = math.floor(pos)
        a, b = (float(v[np.searchsorted(cum, i, side="right")]) for i in (low, min(low + 1, total - 1)))
        out.append(a + (b - a) * (pos - low))
    return Percentiles(*out)


@dataclass(frozen=True, slots=True)
class TokenGaps:
    """Gaps between consecutive tokens of requests (ITL), one entry per iteration (or preemption wait) with the
    number of tokens that came after a gap of that length."""

    end_s: np.ndarray  # when the later token came
    gap_s: np.ndarray
    count: np.ndarray

    def within(self, start_s: float, end_s: float) -> TokenGaps:
        """The gaps whose later token came in (start_s, end_s]."""
        keep = (self.end_s > start_s) & (self.end_s <= end_s)
        return TokenGaps(self.end_s[keep], self.gap_s[keep], self.count[keep])

    @property
    def num_tokens(self) -> int:
        return int(self.count.sum())

    @property
    def mean_s(self) -> float:
        return float(np.dot(self.gap_s, self.count) / self.num_tokens) if self.num_tokens else 0.0

    def percentiles(self) -> Percentiles:
        return repeated_percentiles(self.gap_s, self.count)

    @staticmethod
    def join(parts: list[TokenGaps]) -> TokenGaps:
        return TokenGaps(*(np.concatenate([getattr(g, k) for g in parts]) for k in ("end_s", "gap_s", "count")))


@dataclass(frozen=True, slots=True)
class SimResult:
    """Per-request times and run totals, all replicas together."""

    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    busy_s: float  # sum over replicas of time spent in iterations
    makespan_s: float
    num_replicas: int
    num_steps: int
    num_preemptions: int
    max_concurrency: int
    gaps: TokenGaps | None = None  # every replica's token gaps (None: a result assembled from other runs)
    iterations: tuple[Iterations, ...] = ()  # each simulated replica's iteration log (the serving timeline)

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.arrival_s

    @property
    def latency_s(self) -> np.ndarray:
        return self.finish_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        many = self.output_tokens > 1
        return (self.finish_s[many] - self.first_token_s[many]) / (self.output_tokens[many] - 1)

    @property
    def duration_s(self) -> float:
        return float(self.makespan_s - self.arrival_s.min())

    @property
    def throughput_tokens_per_s(self) -> float:
        return float(self.output_tokens.sum()) / self.duration_s

    @property
    def throughput_samples_per_s(self) -> float:
        return len(self.arrival_s) / self.duration_s

    @property
    def utilisation(self) -> float:
        """Busy fraction of the replicas over the run."""
        return self.busy_s / (self.duration_s * self.num_replicas)

    def steady(self, warmup_fraction: float) -> SimResult:
        """The requests after the first `warmup_fraction` of arrivals (queues start empty)."""
        order = np.argsort(self.arrival_s, kind="stable")
        keep = order[int(len(order) * warmup_fraction):]
        return SimResult(self.arrival_s[keep], self.first_token_s[keep], self.finish_s[keep], self.input_tokens[keep],
                         self.output_tokens[keep], self.busy_s, self.makespan_s, self.num_replicas, self.num_steps,
                         self.num_preemptions, self.max_concurrency, self.gaps, self.iterations)


def check_capacity(requests: Requests, kv_capacity_tokens: int, num_beams: int = 1, path: str | None = None) -> None:
    """A clear error when one request cannot fit the KV cache on its own."""
    need = int((requests.input_tokens + requests.output_tokens).max() + KV_BLOCK_TOKENS) * num_beams
    if need > kv_capacity_tokens:
        raise EmulatorError(
            f"one request needs {need} KV-cache tokens (input + output + one block"
            f"{f', x{num_beams} beams' if num_beams > 1 else ''}) but a replica holds only {kv_capacity_tokens}. "
            "Fix: raise inference.parallel.tp, use kv_precision: fp8, or shorten input_tokens/output_tokens.",
            file=path, field="inference.input_tokens")


def simulate(step: StepModel, kv_capacity_tokens: int, requests: Requests, *, max_batch: int, max_batch_tokens: int,
             num_replicas: int = 1, num_beams: int = 1, path: str | None = None, prefilled: bool = False,
             reserve: float = 0.0) -> SimResult:
    """Simulate all requests on `num_replicas` identical replicas (request i goes to replica i mod R).

    `prefilled`: requests arrive with their prompt already in the KV cache (a disaggregated decode pool) and
    their first token already produced elsewhere: admission allocates the cache, no prefill runs.
    `reserve`: the share of each admitted request's remaining output tokens the engine's admission keeps free in
    the KV cache (1: TensorRT-LLM's GUARANTEED_NO_EVICT; 0: vLLM admits on the prompt and preempts later).
    """
    check_capacity(requests, kv_capacity_tokens, num_beams, path)
    n = len(requests)
    first, finish = np.full(n, np.nan), np.full(n, np.nan)
    busy = 0.0
    steps = preempt = conc = 0
    end = 0.0
    gaps, logs = [], []
    for k in range(num_replicas):
        idx = np.arange(k, n, num_replicas)
        if len(idx) == 0:
            continue
        run = _replica(step, kv_capacity_tokens, requests.arrival_s[idx], requests.input_tokens[idx],
                       requests.output_tokens[idx], max_batch, max_batch_tokens, num_beams, prefilled,
                       reserve=reserve)
        first[idx], finish[idx] = run.first_s, run.finish_s
        busy, steps, preempt, conc = busy + run.busy_s, steps + run.num_steps, preempt + run.num_preemptions, \
            max(conc, run.max_concurrency)
        end = max(end, float(run.finish_s.max()))
        gaps.append(run.gaps)
        logs.append(run.iterations)
    return SimResult(requests.arrival_s, first, finish, requests.input_tokens, requests.output_tokens, busy, end,
                     num_replicas, steps, preempt, conc, TokenGaps.join(gaps), tuple(logs))


def simulate_closed(step: StepModel, kv_capacity_tokens: int, requests: Requests, *, concurrency: int, max_batch: int,
                    max_batch_tokens: int, num_beams: int = 1, path: str | None = None,
                    reserve: float = 0.0) -> SimResult:
    """One replica under a closed loop of `concurrency` clients (see the module docstring): the first
    `concurrency` requests are sent at t=0, each later one when a request finishes. `requests.arrival_s` is
    ignored; the result's `arrival_s` holds the send times."""
    check_capacity(requests, kv_capacity_tokens, num_beams, path)
    run = _replica(step, kv_capacity_tokens, None, requests.input_tokens, requests.output_tokens, max_batch,
                   max_batch_tokens, num_beams, closed=min(concurrency, len(requests)), reserve=reserve)
    return SimResult(run.arrival_s, run.first_s, run.finish_s, requests.input_tokens, requests.output_tokens,
                     run.busy_s, float(run.finish_s.max()), 1, run.num_steps, run.num_preemptions,
                     run.max_concurrency, run.gaps, (run.iterations,))


@dataclass(frozen=True, slots=True)
class _Run:
    """One replica's simulation."""

    arrival_s: np.ndarray
    first_s: np.ndarray
    finish_s: np.ndarray
    busy_s: float
    num_steps: int
    num_preemptions: int
    max_concurrency: int
    gaps: TokenGaps
    iterations: Iterations


def _replica(step: StepModel, cap: int, arr: np.ndarray | None, inp: np.ndarray, out: np.ndarray, max_batch: int,
             budget: int, beams: int, prefilled: bool = False, closed: int = 0, reserve: float = 0.0) -> _Run:
    """`arr`: arrival times (open loop); None with `closed` clients: the closed loop. `reserve`: see `simulate`;
    `future` counts the output tokens admitted requests have still to write (decoding moves them into `used`)."""
    n = len(inp)
    lin, lout = inp.tolist(), out.tolist()
    # Closed loop: a request not yet sent arrives at infinity until the completion that sends it.
    arrival = arr.tolist() if arr is not None else [0.0] * closed + [math.inf] * (n - closed)
    issued = closed
    first, finish = [math.nan] * n, [math.nan] * n
    gen = [0] * n  # tokens generated so far
    block = KV_BLOCK_TOKENS * beams
    waiting: deque[tuple[int, int]] = deque()  # (request, tokens to prefill)
    prefill: list[list[int]] = []  # [request, done, total]
    dec: dict[int, tuple[int, int, int]] = {}  # request -> (g at start, generated at start, context at start)
    fin_heap: list[tuple[int, int]] = []  # (g at which it finishes, request)
    lifo: list[tuple[int, int]] = []  # (-admission number, request) for preemption
    stalled: dict[int, float] = {}  # preempted request -> time of its last token
    log: list[Run] = []  # every iteration, runs of decode-only ones together (`Iterations`)
    waits: list[tuple[float, float]] = []  # token gaps across a preemption: (end, gap)
    t = busy = 0.0
    g = used = dec_kv = 0
    future = 0  # output tokens (x beams) that admitted requests have still to generate
    ptr = done = num_steps = num_preempt = max_conc = admitted = 0
    kv_s = step.kv_s_per_token
    while done < n:
        while ptr < n and arrival[ptr] <= t:
            waiting.append((ptr, lin[ptr]))
            ptr += 1
        if not waiting and not prefill and not dec:
            t = arrival[ptr]
            continue
        while waiting and len(prefill) + len(dec) < max_batch:
            r, plen = waiting[0]
            need = plen * beams + block
            ahead = (lout[r] - gen[r]) * beams
            if used + need > cap or (reserve and used + need + reserve * (future + ahead) > cap):
                break
            waiting.popleft()
            prefill.append([r, 0, plen])
            used += need
            future += ahead
        max_conc = max(max_conc, len(prefill) + len(dec))
        while dec and used + len(dec) * beams > cap:  # preempt the latest admitted decoding request
            _, r = heapq.heappop(lifo)
            if r not in dec:
                continue
            g0, gen0, ctx0 = dec.pop(r)
            kv = (ctx0 + g - g0) * beams
            used -= kv + block
            dec_kv -= kv
            gen[r] = gen0 + g - g0
            future -= (lout[r] - gen[r]) * beams
            waiting.appendleft((r, lin[r] + gen[r]))
            stalled[r] = t
            num_preempt += 1
        ntok = len(dec) * beams
        left = budget - ntok
        ptok, pairs, completing = 0, 0.0, []
        for entry in prefill:
            if prefilled:  # the prompt's cache came over the fabric: nothing to compute
                entry[1] = entry[2]
                completing.append(entry)
                continue
            if left <= 0:
                break
            c = min(entry[2] - entry[1], left)
            pairs += c * entry[1] + c * (c + 1) / 2
            ptok += c
            left -= c
            entry[1] += c
            if entry[1] == entry[2]:
                completing.append(entry)
        if ptok:
            dt = step.step_s(ptok + ntok, pairs, len(completing) * beams + ntok, dec_kv)
            k = 1
            log.append((t, 1, dt, 0.0, len(dec), ptok))
        elif not ntok:  # only transferred prompts joining: they decode from the next iteration
            dt, k = 0.0, 0
        else:  # decode only: advance k identical-shape iterations at once
            a = step.step_s(ntok, 0.0, ntok, 0.0)
            k = min(fin_heap[0][0] - g, (cap - used) // ntok)
            if ptr < n and arrival[ptr] < math.inf and len(prefill) + len(dec) < max_batch:
                k = min(k, _steps_until(arrival[ptr] - t, a, kv_s * ntok, kv_s * dec_kv))
            k = max(k, 1)
            dt = k * a + kv_s * (k * dec_kv + ntok * k * (k - 1) / 2)
            log.append((t, k, a + kv_s * dec_kv, kv_s * ntok, len(dec), 0))
        t += dt
        busy += dt
        num_steps += k
        g += k
        dec_kv += ntok * k
        used += ntok * k
        future -= ntok * k
        while fin_heap and fin_heap[0][0] <= g:
            gf, r = heapq.heappop(fin_heap)
            state = dec.get(r)
            if state is None or state[0] + lout[r] - state[1] != gf:
                continue  # a stale entry of a preempted request
            g0, gen0, ctx0 = dec.pop(r)
            kv = (ctx0 + g - g0) * beams
            used -= kv + block
            dec_kv -= kv
            finish[r] = t
            done += 1
            if issued < n:  # closed loop: its client sends the next request
                arrival[issued] = t
                issued += 1
        for entry in completing:
            prefill.remove(entry)
            r, _, total = entry
            if math.isnan(first[r]):
                first[r] = t
            elif r in stalled:
                waits.append((t, t - stalled.pop(r)))
            gen[r] += 1
            future -= beams
            if gen[r] >= lout[r]:
                used -= total * beams + block
                finish[r] = t
                done += 1
                if issued < n:
                    arrival[issued] = t
                    issued += 1
                continue
            dec[r] = (g, gen[r], total)
            dec_kv += total * beams
            heapq.heappush(fin_heap, (g + lout[r] - gen[r], r))
            admitted += 1
            heapq.heappush(lifo, (-admitted, r))
    iterations = Iterations.of(log)
    return _Run(np.array(arrival), np.array(first), np.array(finish), busy, num_steps, num_preempt, max_conc,
                _gaps(iterations, waits), iterations)


def _gaps(iterations: Iterations, waits: list[tuple[float, float]]) -> TokenGaps:
    """One gap per iteration that advanced decoding sequences (each gains a token), and one per preemption wait."""
    end, dur, seqs, _ = iterations.expand()
    keep = seqs > 0
    wait_end, wait_gap = (np.array(x, dtype=float) for x in zip(*waits, strict=True)) if waits else \
        (np.zeros(0), np.zeros(0))
    return TokenGaps(np.concatenate([end[keep], wait_end]), np.concatenate([dur[keep], wait_gap]),
                     np.concatenate([seqs[keep], np.ones(len(wait_gap), dtype=np.int64)]))


def _steps_until(gap_s: float, a: float, slope: float, base: float) -> int:
    """Fewest iterations whose summed time k*(a + base) + slope*k(k-1)/2 reaches `gap_s`."""
    if gap_s <= 0:
        return 1
    b = a + base - slope / 2
    if slope <= 0:
        return max(1, math.ceil(gap_s / max(b, 1e-12)))
    k = (-b + math.sqrt(b * b + 2 * slope * gap_s)) / slope
    return max(1, math.ceil(k - 1e-9))


__all__ = ["Requests", "SimResult", "TokenGaps", "check_capacity", "make_requests", "repeated_percentiles", "simulate",
           "simulate_closed"]
