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
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from emulator.errors import EmulatorError
from emulator.scenario import Distribution
from emulator.serving.replica import KV_BLOCK_TOKENS, StepModel


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
                         self.num_preemptions, self.max_concurrency)


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
             num_replicas: int = 1, num_beams: int = 1, path: str | None = None, prefilled: bool = False) -> SimResult:
    """Simulate all requests on `num_replicas` identical replicas (request i goes to replica i mod R).

    `prefilled`: requests arrive with their prompt already in the KV cache (a disaggregated decode pool) and
    their first token already produced elsewhere: admission allocates the cache, no prefill runs.
    """
    check_capacity(requests, kv_capacity_tokens, num_beams, path)
    n = len(requests)
    first, finish = np.full(n, np.nan), np.full(n, np.nan)
    busy = 0.0
    steps = preempt = conc = 0
    end = 0.0
    for k in range(num_replicas):
        idx = np.arange(k, n, num_replicas)
        if len(idx) == 0:
            continue
        f, e, b, s, p, c = _replica(step, kv_capacity_tokens, requests.arrival_s[idx], requests.input_tokens[idx],
                                    requests.output_tokens[idx], max_batch, max_batch_tokens, num_beams, prefilled)
        first[idx], finish[idx] = f, e
        busy, steps, preempt, conc = busy + b, steps + s, preempt + p, max(conc, c)
        end = max(end, float(e.max()))
    return SimResult(requests.arrival_s, first, finish, requests.input_tokens, requests.output_tokens, busy, end,
                     num_replicas, steps, preempt, conc)


def _replica(step: StepModel, cap: int, arr: np.ndarray, inp: np.ndarray, out: np.ndarray, max_batch: int,
             budget: int, beams: int, prefilled: bool = False) -> tuple[np.ndarray, np.ndarray, float, int, int, int]:
    n = len(arr)
    arrival, lin, lout = arr.tolist(), inp.tolist(), out.tolist()
    first, finish = [math.nan] * n, [math.nan] * n
    gen = [0] * n  # tokens generated so far
    block = KV_BLOCK_TOKENS * beams
    waiting: deque[tuple[int, int]] = deque()  # (request, tokens to prefill)
    prefill: list[list[int]] = []  # [request, done, total]
    dec: dict[int, tuple[int, int, int]] = {}  # request -> (g at start, generated at start, context at start)
    fin_heap: list[tuple[int, int]] = []  # (g at which it finishes, request)
    lifo: list[tuple[int, int]] = []  # (-admission number, request) for preemption
    t = busy = 0.0
    g = used = dec_kv = 0
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
            if used + need > cap:
                break
            waiting.popleft()
            prefill.append([r, 0, plen])
            used += need
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
            waiting.appendleft((r, lin[r] + gen[r]))
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
        elif not ntok:  # only transferred prompts joining: they decode from the next iteration
            dt, k = 0.0, 0
        else:  # decode only: advance k identical-shape iterations at once
            a = step.step_s(ntok, 0.0, ntok, 0.0)
            k = min(fin_heap[0][0] - g, (cap - used) // ntok)
            if ptr < n and len(prefill) + len(dec) < max_batch:
                k = min(k, _steps_until(arrival[ptr] - t, a, kv_s * ntok, kv_s * dec_kv))
            k = max(k, 1)
            dt = k * a + kv_s * (k * dec_kv + ntok * k * (k - 1) / 2)
        t += dt
        busy += dt
        num_steps += k
        g += k
        dec_kv += ntok * k
        used += ntok * k
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
        for entry in completing:
            prefill.remove(entry)
            r, _, total = entry
            if math.isnan(first[r]):
                first[r] = t
            gen[r] += 1
            if gen[r] >= lout[r]:
                used -= total * beams + block
                finish[r] = t
                done += 1
                continue
            dec[r] = (g, gen[r], total)
            dec_kv += total * beams
            heapq.heappush(fin_heap, (g + lout[r] - gen[r], r))
            admitted += 1
            heapq.heappush(lifo, (-admitted, r))
    return np.array(first), np.array(finish), busy, num_steps, num_preempt, max_conc


def _steps_until(gap_s: float, a: float, slope: float, base: float) -> int:
    """Fewest iterations whose summed time k*(a + base) + slope*k(k-1)/2 reaches `gap_s`."""
    if gap_s <= 0:
        return 1
    b = a + base - slope / 2
    if slope <= 0:
        return max(1, math.ceil(gap_s / max(b, 1e-12)))
    k = (-b + math.sqrt(b * b + 2 * slope * gap_s)) / slope
    return max(1, math.ceil(k - 1e-9))


__all__ = ["Requests", "SimResult", "check_capacity", "make_requests", "simulate"]
