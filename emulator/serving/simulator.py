"""Request-level discrete-event simulation of continuous batching on replicas of one model.

Each replica runs iterations (Orca/vLLM-style continuous batching): every decoding sequence adds one token;
the rest of the token budget `max_batch_tokens` takes prefill chunks first-come first-served (chunked
prefill); a waiting request is admitted when fewer than `max_batch` sequences run and the KV cache has room
for its prompt (plus one block). When the next decode step would overflow the KV cache, the most recently
admitted decoding request is preempted (vLLM's recompute policy): its KV is freed and it re-queues at the
front with prompt + generated tokens to prefill again. A request's first token comes at the end of the
iteration that completes its prefill; TPOT = (end-to-end - TTFT) / (output tokens - 1) (MLPerf's definition).

Speed: iterations without prefill work change only by the growing KV read, so runs of them are advanced in
closed form up to the next completion, KV overflow or admissible arrival (sum of an arithmetic series). Iteration
times are looked up in the step model's table over whole token counts (`steptable`), equal to `StepModel.step_s`
to the bit. Token gaps are kept only when asked for (a closed loop reports ITL). A run with an `SloWatch` stops
as soon as enough measured requests have missed a bound that the p99 must miss it too: the SLO search needs only
a failing run's verdict.
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
from emulator.scenario import Slo
from emulator.serving.iterations import Iterations, Run
from emulator.serving.replica import KV_BLOCK_TOKENS, StepModel
from emulator.serving.runs import Requests, SimResult, TokenGaps, expand_gaps, make_requests, repeated_percentiles
from emulator.serving.steptable import step_table

# A value counts as a miss only this far past its bound, so that numpy's interpolated p99 (which may round an ulp
# below the value it starts from) is over the bound whenever the counted misses say it must be.
MISS_MARGIN = 1e-12


def check_capacity(requests: Requests, kv_capacity_tokens: int, num_beams: int = 1, path: str | None = None) -> None:
    """A clear error when one request cannot fit the KV cache on its own."""
    need = int((requests.input_tokens + requests.output_tokens).max() + KV_BLOCK_TOKENS) * num_beams
    if need > kv_capacity_tokens:
        raise EmulatorError(
            f"one request needs {need} KV-cache tokens (input + output + one block"
            f"{f', x{num_beams} beams' if num_beams > 1 else ''}) but a replica holds only {kv_capacity_tokens}. "
            "Fix: raise inference.parallel.tp, use kv_precision: fp8, or shorten input_tokens/output_tokens.",
            file=path, field="inference.input_tokens")


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


def simulate(step: StepModel, kv_capacity_tokens: int, requests: Requests, *, max_batch: int, max_batch_tokens: int,
             num_replicas: int = 1, num_beams: int = 1, path: str | None = None, prefilled: bool = False,
             reserve: float = 0.0, gaps: bool = False, log: bool = True) -> SimResult:
    """Simulate all requests on `num_replicas` identical replicas (request i goes to replica i mod R).

    `prefilled`: requests arrive with their prompt already in the KV cache (a disaggregated decode pool) and
    their first token already produced elsewhere: admission allocates the cache, no prefill runs.
    `reserve`: the share of each admitted request's remaining output tokens the engine's admission keeps free in
    the KV cache (1: TensorRT-LLM's GUARANTEED_NO_EVICT; 0: vLLM admits on the prompt and preempts later).
    `gaps`: keep the token gaps (`SimResult.gaps`; None otherwise). `log`: keep every replica's iteration log
    (`SimResult.iterations`, the serving timeline; else empty logs), which a caller that assembles its own result
    from runs (a disaggregated search's trials) never reads.
    """
    check_capacity(requests, kv_capacity_tokens, num_beams, path)
    n = len(requests)
    first, finish = np.full(n, np.nan), np.full(n, np.nan)
    busy = 0.0
    steps = preempt = conc = 0
    end = 0.0
    parts, logs = [], []
    for k in range(num_replicas):
        idx = np.arange(k, n, num_replicas)
        if len(idx) == 0:
            continue
        run = _replica(step, kv_capacity_tokens, requests.arrival_s[idx], requests.input_tokens[idx],
                       requests.output_tokens[idx], max_batch, max_batch_tokens, num_beams, prefilled,
                       reserve=reserve, gaps=gaps, log=log)
        first[idx], finish[idx] = run.first_s, run.finish_s
        busy, steps, preempt, conc = busy + run.busy_s, steps + run.num_steps, preempt + run.num_preemptions, \
            max(conc, run.max_concurrency)
        end = max(end, float(run.finish_s.max()))
        parts.append(run.gaps)
        logs.append(run.iterations)
    return SimResult(requests.arrival_s, first, finish, requests.input_tokens, requests.output_tokens, busy, end,
                     num_replicas, steps, preempt, conc, TokenGaps.join(parts) if gaps else None, tuple(logs))


@dataclass(frozen=True, slots=True)
class Watched:
    """A watched run: its result, or None where it stopped on a missed SLO; and the most sequences it held (until
    it stopped). A run under a larger batch cap that never held `max_batch` sequences is, step for step, the run
    under that cap: its verdict serves both."""

    result: SimResult | None
    max_concurrency: int


def simulate_watched(step: StepModel, kv_capacity_tokens: int, requests: Requests, watch: SloWatch, *, max_batch: int,
                     max_batch_tokens: int, num_beams: int = 1, path: str | None = None,
                     reserve: float = 0.0) -> Watched:
    """`simulate` on one replica, stopped as soon as the run's p99s cannot meet `watch.slo` (see SloWatch)."""
    check_capacity(requests, kv_capacity_tokens, num_beams, path)
    run = _replica(step, kv_capacity_tokens, requests.arrival_s, requests.input_tokens, requests.output_tokens,
                   max_batch, max_batch_tokens, num_beams, reserve=reserve, watch=watch, log=False)
    if run.missed:
        return Watched(None, run.max_concurrency)
    return Watched(SimResult(requests.arrival_s, run.first_s, run.finish_s, requests.input_tokens,
                             requests.output_tokens, run.busy_s, float(run.finish_s.max()), 1, run.num_steps,
                             run.num_preemptions, run.max_concurrency), run.max_concurrency)


def simulate_closed(step: StepModel, kv_capacity_tokens: int, requests: Requests, *, concurrency: int, max_batch: int,
                    max_batch_tokens: int, num_beams: int = 1, path: str | None = None,
                    reserve: float = 0.0) -> SimResult:
    """One replica under a closed loop of `concurrency` clients (see the module docstring): the first
    `concurrency` requests are sent at t=0, each later one when a request finishes. `requests.arrival_s` is
    ignored; the result's `arrival_s` holds the send times."""
    check_capacity(requests, kv_capacity_tokens, num_beams, path)
    run = _replica(step, kv_capacity_tokens, None, requests.input_tokens, requests.output_tokens, max_batch,
                   max_batch_tokens, num_beams, closed=min(concurrency, len(requests)), reserve=reserve, gaps=True)
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
    iterations: Iterations  # its iteration log (empty when not kept)
    missed: bool = False  # a watched run stopped: its SLO is missed (the arrays are empty)

    @staticmethod
    def missed_at(max_concurrency: int) -> _Run:
        empty = np.zeros(0)
        return _Run(empty, empty, empty, 0.0, 0, 0, max_concurrency, TokenGaps(empty, empty, empty),
                    Iterations.of([]), missed=True)


class _Watch:
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


def _replica(step: StepModel, cap: int, arr: np.ndarray | None, inp: np.ndarray, out: np.ndarray, max_batch: int,
             budget: int, beams: int, prefilled: bool = False, closed: int = 0, reserve: float = 0.0,
             gaps: bool = False, watch: SloWatch | None = None, log: bool = True) -> _Run:
    """`arr`: arrival times (open loop); None with `closed` clients: the closed loop. `reserve`: see `simulate`;
    `future` counts the output tokens admitted requests have still to write (decoding moves them into `used`).
    A watched run returns as soon as it misses its SLO (`_Run.missed`). `log`: keep the iteration log (a search's
    trial runs need none)."""
    n = len(inp)
    lin, lout = inp.tolist(), out.tolist()
    # Closed loop: a request not yet sent arrives at infinity until the completion that sends it.
    arrival = arr.tolist() if arr is not None else [0.0] * closed + [math.inf] * (n - closed)
    arrival.append(math.inf)  # past the last request: no arrival to wait for
    issued = closed
    first, finish = [math.nan] * n, [math.nan] * n
    gen = [0] * n  # tokens generated so far
    block = KV_BLOCK_TOKENS * beams
    waiting: deque[tuple[int, int]] = deque()  # (request, tokens to prefill)
    prefill: list[list[int]] = []  # [request, done, total], in admission order
    dec: dict[int, tuple[int, int, int]] = {}  # request -> (g at start, generated at start, context at start)
    fin_heap: list[tuple[int, int]] = []  # (g at which it finishes, request)
    lifo: list[int] = []  # requests in order of admission to decoding (stale entries skipped): preempted from the top
    stalled: dict[int, float] = {}  # preempted request -> time of its last token
    keep = log or gaps
    runs: list[Run] = []  # the iteration log: every iteration, runs of decode-only ones together (`Iterations`)
    waits: list[tuple[float, float]] = []  # token gaps across a preemption: (end, gap)
    t = busy = 0.0
    g = used = dec_kv = 0
    future = 0  # output tokens (x beams) that admitted requests have still to generate
    ptr = done = num_steps = num_preempt = max_conc = 0
    kv_s, pair_s = step.kv_s_per_token, step.pair_s
    table = step_table(step, max(budget, max_batch * beams))
    size, base, head, decode = table.size, table.base_s, table.head_s, table.decode_s
    w = _Watch(watch, lout)
    watched, ttft_s, tpot_s, latency_s = w.first, w.ttft_s, w.tpot_s, w.latency_s  # requests from `watched` on
    heappush, heappop, inf, sqrt, ceil = heapq.heappush, heapq.heappop, math.inf, math.sqrt, math.ceil
    wait, admit, decoded = waiting.append, prefill.append, lifo.append
    while done < n:
        while arrival[ptr] <= t:
            wait((ptr, lin[ptr]))
            ptr += 1
        if not waiting and not prefill and not dec:
            t = arrival[ptr]
            continue
        active = len(prefill) + len(dec)
        while waiting and active < max_batch:
            r, plen = waiting[0]
            need = plen * beams + block
            ahead = (lout[r] - gen[r]) * beams
            if used + need > cap or (reserve and used + need + reserve * (future + ahead) > cap):
                break
            waiting.popleft()
            admit([r, 0, plen])
            active += 1
            used += need
            future += ahead
        if active > max_conc:
            max_conc = active
        while dec and used + len(dec) * beams > cap:  # preempt the latest admitted decoding request
            r = lifo.pop()
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
            active -= 1
        ndec = len(dec)
        ntok = ndec * beams
        ptok, pairs, completing = 0, 0.0, 0  # `completing`: how many of the first prefills finish their prompt
        if prefill:
            left = budget - ntok
            for entry in prefill:
                if prefilled:  # the prompt's cache came over the fabric: nothing to compute
                    entry[1] = entry[2]
                    completing += 1
                    continue
                if left <= 0:
                    break
                c = entry[2] - entry[1]
                if c > left:
                    c = left
                pairs += c * entry[1] + c * (c + 1) / 2
                ptok += c
                left -= c
                entry[1] += c
                if entry[1] == entry[2]:  # chunks fill the budget in order, so those that finish are a prefix
                    completing += 1
        if ptok:
            tokens, rows = ptok + ntok, completing * beams + ntok
            if tokens < size and rows < size:  # StepModel.step_s, its terms in the same order
                dt = base[tokens] + head[rows] + pair_s * pairs + kv_s * dec_kv
            else:
                dt = step.step_s(tokens, pairs, rows, dec_kv)
            k = 1
            if keep:
                runs.append((t, 1, dt, 0.0, ndec, ptok))
        elif not ntok:  # only transferred prompts joining: they decode from the next iteration
            dt, k = 0.0, 0
        else:  # decode only: advance k identical-shape iterations at once
            a = decode[ntok] if ntok < size else step.step_s(ntok, 0.0, ntok, 0.0)
            k = fin_heap[0][0] - g
            room = (cap - used) // ntok
            if room < k:
                k = room
            if arrival[ptr] < inf and active < max_batch:
                # Fewest iterations whose summed time k (a + base) + slope k (k - 1) / 2 reaches the arrival.
                gap_s = arrival[ptr] - t
                if gap_s <= 0:
                    until = 1
                else:
                    slope = kv_s * ntok
                    b = a + kv_s * dec_kv - slope / 2
                    if slope <= 0:
                        until = ceil(gap_s / max(b, 1e-12))
                    else:
                        until = ceil((-b + sqrt(b * b + 2 * slope * gap_s)) / slope - 1e-9)
                if until < k:
                    k = until
            if k < 1:
                k = 1
            dt = k * a + kv_s * (k * dec_kv + ntok * k * (k - 1) / 2)
            if keep:
                runs.append((t, k, a + kv_s * dec_kv, kv_s * ntok, ndec, 0))
        t += dt
        busy += dt
        num_steps += k
        g += k
        grown = ntok * k
        dec_kv += grown
        used += grown
        future -= grown
        while fin_heap and fin_heap[0][0] <= g:
            gf, r = heappop(fin_heap)
            if num_preempt:  # only a preempted request leaves stale entries
                state = dec.get(r)
                if state is None or state[0] + lout[r] - state[1] != gf:
                    continue
            g0, gen0, ctx0 = dec.pop(r)
            kv = (ctx0 + g - g0) * beams
            used -= kv + block
            dec_kv -= kv
            finish[r] = t
            done += 1
            if issued < n:  # closed loop: its client sends the next request
                arrival[issued] = t
                issued += 1
            if r >= watched and (t - arrival[r] > latency_s or lout[r] > 1 and (t - first[r]) / (lout[r] - 1)
                                 > tpot_s) and w.finish_missed(t - arrival[r], (t - first[r]) / max(lout[r] - 1, 1),
                                                               lout[r]):
                return _Run.missed_at(max_conc)
        if not completing:
            continue
        if completing == len(prefill):
            finished = prefill[:]
            prefill.clear()
        else:
            finished = prefill[:completing]
            del prefill[:completing]
        for r, _, total in finished:
            if not gen[r]:  # its first token (a preempted request had one before)
                first[r] = t
                if r >= watched and t - arrival[r] > ttft_s and w.missed(0):
                    return _Run.missed_at(max_conc)
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
                if r >= watched and (t - arrival[r] > latency_s or lout[r] > 1 and (t - first[r]) / (lout[r] - 1)
                                     > tpot_s) and w.finish_missed(t - arrival[r], (t - first[r]) /
                                                                   max(lout[r] - 1, 1), lout[r]):
                    return _Run.missed_at(max_conc)
                continue
            dec[r] = (g, gen[r], total)
            dec_kv += total * beams
            heappush(fin_heap, (g + lout[r] - gen[r], r))
            decoded(r)
    iterations = Iterations.of(runs)
    return _Run(np.array(arrival[:n]), np.array(first), np.array(finish), busy, num_steps, num_preempt, max_conc,
                expand_gaps(iterations, waits) if gaps else TokenGaps(*(np.zeros(0),) * 3), iterations)


__all__ = ["Requests", "SimResult", "SloWatch", "TokenGaps", "Watched", "check_capacity", "make_requests",
           "misses_to_fail", "repeated_percentiles", "simulate", "simulate_closed", "simulate_watched"]
