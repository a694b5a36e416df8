"""Request-level discrete-event simulation of continuous batching on replicas of one model.

Each replica runs iterations (Orca/vLLM-style continuous batching): every decoding sequence adds one token;
the rest of the token budget `max_batch_tokens` takes prefill chunks first-come first-served (chunked
prefill); a waiting request is admitted when fewer than `max_batch` sequences run and the KV cache has room
for its prompt (plus one block). When the next decode step would overflow the KV cache, the most recently
admitted decoding request is preempted (vLLM's recompute policy): its KV is freed and it re-queues at the
front with prompt + generated tokens to prefill again. A request's first token comes at the end of the
iteration that completes its prefill; TPOT = (end-to-end - TTFT) / (output tokens - 1) (MLPerf's definition).

Speed: iterations without prefill work change only by the growing KV read, so runs of them are advanced in closed
form up to the next completion, KV overflow or admissible arrival (sum of an arithmetic series). Iteration times are
looked up in the step model's table over whole token counts (`steptable`), equal to `StepModel.step_s` to the bit.
Token gaps (kept only when asked for: a closed loop reports ITL) are the engine's. A run with an `SloWatch` stops as
soon as enough measured requests have missed a bound that the p99 must miss it too.
Requests go to replicas round-robin (a load balancer's simplest deterministic policy). The engine's API server streams
each token to its client (`frontend.Frontend`): a request's first-token and finish times are when its client sees
them, and a closed loop's client sends again when it sees the finish.

An engine's prefix cache (a shared prefix, `Scheduling.cached_prefix_tokens`; a client's repeated prompts,
`PromptCache`): an admission prefills past the prompt tokens it takes from the cache (`own`, per request).

Closed loop (`simulate_closed`): `concurrency` clients each send a request and the next one the moment it finishes,
so request i >= concurrency is sent at the (i - concurrency + 1)-th completion, in the same iteration loop. Token
gaps (ITL): each iteration's duration counts once per decoding sequence in it (each gains one token), and a
preempted request's wait from its last token to the first token after its recompute counts once.

Engines that schedule ahead (`Scheduling.ahead`: TensorRT-LLM's and SGLang's overlap schedulers) decide iteration
i + 1's batch while the device runs i: a request reaching the scheduler during one joins the one after next (the
next at once while the engine is idle).

SGLang's `--max-prefill-tokens` (`Scheduling.max_prefill_tokens`): a prompt joins an iteration only if all of it that
is left fits what is left of the cap (less the decoding sequences when mixed); the iteration's first always joins.
Its `--scheduler-recv-interval` (`Scheduling.recv_interval`): while only decodes run, the scheduler takes new requests
every that many iterations; after an iteration with prompt tokens, or idle, at the next one.

Engines that do not mix (`Scheduling.mixed_batches` false, SGLang's default): while any admitted prompt has prefill
left, an iteration runs prefill chunks only (the whole token budget, no decode tokens, no KV read by decodes) and the
decoding sequences gain nothing; decoding resumes when no prefill is pending. The first decode iteration after such a
stretch runs alone (not folded into a closed-form run) and its tokens' gaps are counted from each sequence's own
previous token (`held`: the decoders' last token time, and each newly prefilled group's first-token time).
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from emulator.serving.frontend import Frontend
from emulator.serving.iterations import Iterations, Run, iterations_to_reach
from emulator.serving.prompt_cache import PromptCache
from emulator.serving.replica import KV_BLOCK_TOKENS, StepModel, check_capacity
from emulator.serving.runs import (
    ReplicaRun,
    Requests,
    SimResult,
    TokenGaps,
    expand_gaps,
    held_waits,
    make_requests,
    repeated_percentiles,
)
from emulator.serving.scheduling import DEFAULT_SCHEDULING, Scheduling
from emulator.serving.slowatch import MISS_MARGIN, MissCount, SloWatch, misses_to_fail
from emulator.serving.steptable import step_table


def simulate(step: StepModel, kv_capacity_tokens: int, requests: Requests, *, max_batch: int, max_batch_tokens: int,
             num_replicas: int = 1, num_beams: int = 1, path: str | None = None, prefilled: bool = False,
             scheduling: Scheduling = DEFAULT_SCHEDULING, gaps: bool = False, log: bool = True) -> SimResult:
    """Simulate all requests on `num_replicas` identical replicas (request i goes to replica i mod R).

    `prefilled`: requests arrive with their prompt already in the KV cache (a disaggregated decode pool) and
    their first token already produced elsewhere: admission allocates the cache, no prefill runs.
    `scheduling`: the engine's policy, each field as `Scheduling` states it: how much of each admitted request's
    output the KV cache keeps free (1: TensorRT-LLM's GUARANTEED_NO_EVICT; 0: vLLM admits on the prompt and preempts
    later), whether prefill chunks and decodes share an iteration, whether prompts split over iterations (else they
    run whole, in admission order, one first in its iteration even past the budget), TensorRT-LLM's batch waiting,
    SGLang's prompt cap and the overlap schedulers' look-ahead (see the module docstring).
    `gaps`: keep the token gaps (`SimResult.gaps`; None otherwise). `log`: keep every replica's iteration log
    (`SimResult.iterations`, the serving timeline; else empty logs; a disaggregated search's trials never read it).
    """
    check_capacity(requests, kv_capacity_tokens, num_beams, path)
    n = len(requests)
    first, finish = np.full(n, np.nan), np.full(n, np.nan)
    busy = 0.0
    steps = preempt = conc = 0
    end = 0.0
    parts, logs, cached = [], [], 0
    for k in range(num_replicas):
        idx = np.arange(k, n, num_replicas)
        if len(idx) == 0:
            continue
        mine = requests.share(k, num_replicas)
        run = run_replica(step, kv_capacity_tokens, mine.arrival_s, mine.input_tokens, mine.output_tokens, max_batch,
                          max_batch_tokens, num_beams, prefilled, scheduling=scheduling, gaps=gaps, log=log,
                          pool=mine.pool)
        first[idx], finish[idx] = run.first_s, run.finish_s
        cached += run.cached_tokens
        busy, steps, preempt, conc = busy + run.busy_s, steps + run.num_steps, preempt + run.num_preemptions, \
            max(conc, run.max_concurrency)
        end = max(end, float(run.finish_s.max()))
        parts.append(run.gaps)
        logs.append(run.iterations)
    return SimResult(requests.arrival_s, first, finish, requests.input_tokens, requests.output_tokens, busy, end,
                     num_replicas, steps, preempt, conc, TokenGaps.join(parts) if gaps else None, tuple(logs),
                     requests.prompt_share(cached))


def simulate_closed(step: StepModel, kv_capacity_tokens: int, requests: Requests, *, concurrency: int, max_batch: int,
                    max_batch_tokens: int, num_beams: int = 1, path: str | None = None,
                    scheduling: Scheduling = DEFAULT_SCHEDULING) -> SimResult:
    """One replica under a closed loop of `concurrency` clients (see the module docstring): the first
    `concurrency` requests are sent at t=0, each later one when a request finishes. `requests.arrival_s` is
    ignored; the result's `arrival_s` holds the send times."""
    check_capacity(requests, kv_capacity_tokens, num_beams, path)
    run = run_replica(step, kv_capacity_tokens, None, requests.input_tokens, requests.output_tokens, max_batch,
                      max_batch_tokens, num_beams, closed=min(concurrency, len(requests)), scheduling=scheduling,
                      gaps=True, pool=requests.pool)
    return SimResult(run.arrival_s, run.first_s, run.finish_s, requests.input_tokens, requests.output_tokens,
                     run.busy_s, float(run.finish_s.max()), 1, run.num_steps, run.num_preemptions,
                     run.max_concurrency, run.gaps, (run.iterations,),
                     requests.prompt_share(run.cached_tokens))


def run_replica(step: StepModel, cap: int, arr: np.ndarray | None, inp: np.ndarray, out: np.ndarray,
                max_batch: int, budget: int, beams: int, prefilled: bool = False, closed: int = 0,
                scheduling: Scheduling = DEFAULT_SCHEDULING, gaps: bool = False, watch: SloWatch | None = None,
                log: bool = True, pool: tuple[list[int], list[int], list[int]] | None = None) -> ReplicaRun:
    """`arr`: arrival times (open loop); None with `closed` clients: the closed loop. `scheduling`: see `simulate`;
    `future` counts the output tokens admitted requests have still to write (decoding moves them into `used`).
    A watched run returns as soon as it misses its SLO (`ReplicaRun.missed`). `log`: keep the iteration log (a search's
    trial runs need none). `pool`: the prompts of a client's pool (`Requests.pool`), cached as `PromptCache` says."""
    reserve, mixed, chunked = scheduling.reserve_output, scheduling.mixed_batches, scheduling.chunked_prefill
    wait_iters, wait_prompts = scheduling.batch_wait_iters, scheduling.batch_wait_prompts
    wait_tokens = scheduling.batch_wait_ratio * budget
    prompt_cap = scheduling.max_prefill_tokens or math.inf
    ingress = scheduling.ingress_s  # a request reaches the scheduler this long after it is sent
    front = Frontend(scheduling.frontend_token_s)  # the API server streaming the tokens to their clients
    # The next iteration's batch takes the requests that reached the scheduler by `fetch_t`: the end of this
    # iteration, or (`ahead`: scheduled while this one runs) its start.
    lookahead, fetch_t = scheduling.ahead, 0.0
    recv, since = scheduling.recv_interval, 0  # the scheduler takes requests after `recv` decode-only iterations
    waited = 0  # batch waiting: iterations the pending prompts have waited so far
    chunks: list[int] = []  # batch waiting: each prefill's chunk in the current iteration, in order
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
    pre, ready, own = scheduling.cached_prefix_tokens, False, [0] * n  # shared prefix: see the module docstring
    cache = PromptCache(*pool, KV_BLOCK_TOKENS, beams, cap) \
        if pool is not None and scheduling.prefix_caching and not prefilled else None
    runs: list[Run] = []  # the iteration log: every iteration, runs of decode-only ones together (`Iterations`)
    waits: list[tuple[float, float, int]] = []  # token gaps counted apart (`expand_gaps`): (end, gap, tokens)
    held: list[list[float]] = []  # not mixed: who waited through prefill-only iterations, (last token's time, how many)
    regrouped: list[int] = []  # and the runs whose token gaps these replace
    t = busy = 0.0
    g = used = dec_kv = 0
    future = 0  # output tokens (x beams) that admitted requests have still to generate
    ptr = done = num_steps = num_preempt = max_conc = 0
    kv_s, pair_s, kvd = step.kv_s_per_token, step.pair_s, step.kv_decode_s_per_token
    table = step_table(step, max(budget, max_batch * beams))
    size, base, head, host, decode = table.size, table.base_s, table.head_s, table.host_s, table.decode_s
    overlap, prompt_s, prompt_add = step.overlap_host, step.prompt_host_s, step.prompt_add_s
    w = MissCount(watch, lout)
    watched, ttft_s, tpot_s, latency_s = w.first, w.ttft_s, w.tpot_s, w.latency_s  # requests from `watched` on
    heappush, heappop, inf = heapq.heappush, heapq.heappop, math.inf
    wait, admit, decoded = waiting.append, prefill.append, lifo.append
    while done < n:
        if since >= recv or not (prefill or dec):  # it takes them (idle, or after prompts, at once)
            since = 0
            while arrival[ptr] + ingress <= fetch_t:
                wait((ptr, lin[ptr]))
                ptr += 1
        if not waiting and not prefill and not dec:
            t = fetch_t = max(arrival[ptr] + ingress, t)
            continue
        active = len(prefill) + len(dec)
        while waiting and active < max_batch:
            r, plen = waiting[0]
            cached, back = pre if ready else 0, 0
            if cache is not None:  # its prompt's entry, brought back from the evictable ones when none holds it
                hit, back = cache.lookup(r)
                cached, back = (hit, back) if hit > cached else (cached, 0)
            need = (plen - cached) * beams + block + back
            ahead = (lout[r] - gen[r]) * beams
            if used + need > cap or (reserve and used + need + reserve * (future + ahead) > cap):
                break
            waiting.popleft()
            admit([r, cached, plen])
            if cache is not None and cached > (pre if ready else 0):
                cache.hold(r, cached)
            own[r] = cached
            active += 1
            used += need
            future += ahead
        if cache is not None:
            cache.evict(used, cap)
        if active > max_conc:
            max_conc = active
        while dec and used + len(dec) * beams > cap:  # preempt the latest admitted decoding request
            r = lifo.pop()
            if r not in dec:
                continue
            g0, gen0, ctx0 = dec.pop(r)
            kv = (ctx0 + g - g0) * beams
            used -= kv - own[r] * beams + block
            used -= cache.release(r) if cache is not None else 0
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
        holding = False  # batch waiting: this iteration's prompts wait
        if prefill:
            left = budget - ntok if mixed else budget
            fresh = prompt_cap - ntok if mixed else prompt_cap  # what new prompts may still bring (SGLang's cap)
            if wait_iters:
                chunks.clear()
            for entry in prefill:
                if prefilled:  # the prompt's cache came over the fabric: nothing to compute
                    entry[1] = entry[2]
                    completing += 1
                    continue
                c = entry[2] - entry[1]
                if ptok and c > fresh:  # the prompt cap: all of its prompt that is left joins, or it waits
                    break
                if c > left:
                    if chunked:
                        if left <= 0:
                            break
                        c = left
                    elif ptok:  # whole prompts only: this one waits for the next iteration
                        break
                pairs += c * entry[1] + c * (c + 1) / 2
                ptok += c
                left -= c
                fresh -= c
                entry[1] += c
                if wait_iters:
                    chunks.append(c)
                if entry[1] == entry[2]:  # chunks fill the budget in order, so those that finish are a prefix
                    completing += 1
            if wait_iters and ptok:  # batch waiting: a short iteration's prompts wait while decodes run
                if ntok and waited < wait_iters and (ptok + ntok < wait_tokens or len(prefill) < wait_prompts):
                    for entry, c in zip(prefill, chunks, strict=False):  # chunks cover a prefix
                        entry[1] -= c
                    ptok, pairs, completing = 0, 0.0, 0
                    waited += 1
                    holding = True
                else:
                    waited = 0
        if ptok:  # mixed: the decoding sequences join the prefill; else a prefill-only iteration, and they wait
            joined, kv = (ndec, dec_kv) if mixed else (0, 0)
            tokens, rows = ptok + joined * beams, (completing + joined) * beams
            if tokens < size and rows < size:  # StepTable.step_s, its terms in the same order
                dev, h = base[tokens] + head[rows], host[rows]
                dt = ((dev if dev > h else h) if overlap else h + dev) + pair_s * pairs + kv_s * kv
                if pairs > 0:  # StepModel.prompted
                    dt = (prompt_s if dt < prompt_s else dt) + prompt_add
            else:
                dt = step.step_s(tokens, pairs, rows, kv)
            k, adv = 1, int(mixed)
            if keep:
                runs.append((t, 1, dt, 0.0, joined, ptok))
                if ndec and not mixed and not held:
                    held.append([t, ndec])
        elif not ntok:  # only transferred prompts joining: they decode from the next iteration
            dt, k, adv = 0.0, 0, 0
        else:  # decode only: advance k identical-shape iterations at once
            a = decode[ntok] if ntok < size else step.decode_s(ntok)
            k = fin_heap[0][0] - g
            room = (cap - used) // ntok
            if room < k:
                k = room
            if arrival[ptr] < inf and active < max_batch:
                gap_s = arrival[ptr] + ingress - t  # ahead: it joins the iteration after the one it arrives in
                until = 1 if gap_s <= 0 else iterations_to_reach(gap_s, a + kvd * dec_kv, kvd * ntok) + lookahead
                until += -(since + until) % recv  # and the scheduler takes it when it next takes requests
                if until < k:
                    k = until
            if holding:  # nothing changes the verdict before an arrival or completion: wait up to the timeout
                k = max(min(k, wait_iters - waited + 1), 1)
                waited += k - 1
            if k < 1 or held:  # after held iterations: one iteration alone, its token gaps counted apart
                k = 1
            adv = k
            dt = k * a + kvd * (k * dec_kv + ntok * k * (k - 1) / 2)
            if keep:
                if held:
                    regrouped.append(len(runs))
                    waits += held_waits(held, ndec, t + dt)
                    held.clear()
                runs.append((t, k, a + kvd * dec_kv, kvd * ntok, ndec, 0))
        # ahead: the last iteration of this run started when the next one was scheduled
        fetch_t = t + dt if not lookahead else t if k <= 1 else t + dt - a - kvd * (dec_kv + ntok * (k - 1))
        first_end = t + dt if k <= 1 else t + a + kvd * dec_kv  # the run's first iteration hands its tokens on
        seen = front.stream(first_end, t + dt, ntok * adv + completing * beams, ntok * min(adv, 1) + completing * beams)
        t += dt
        busy += dt
        num_steps += k
        since = recv if ptok else since + k
        g += adv
        grown = ntok * adv
        dec_kv += grown
        used += grown
        future -= grown
        if cache is not None and used + cache.free_tokens > cap:
            cache.evict(used, cap)
        while fin_heap and fin_heap[0][0] <= g:
            gf, r = heappop(fin_heap)
            if num_preempt:  # only a preempted request leaves stale entries
                state = dec.get(r)
                if state is None or state[0] + lout[r] - state[1] != gf:
                    continue
            g0, gen0, ctx0 = dec.pop(r)
            kv = (ctx0 + g - g0) * beams
            used -= kv - own[r] * beams + block
            used -= cache.release(r) if cache is not None else 0
            dec_kv -= kv
            finish[r] = seen
            done += 1
            if issued < n:  # closed loop: its client sends the next request
                arrival[issued] = seen
                issued += 1
            if r >= watched and (seen - arrival[r] > latency_s or lout[r] > 1 and (seen - first[r]) / (lout[r] - 1)
                                 > tpot_s) and w.finish_missed(seen - arrival[r], (seen - first[r]) /
                                                               max(lout[r] - 1, 1), lout[r]):
                return ReplicaRun.missed_at(max_conc)
        if not completing:
            continue
        if completing == len(prefill):
            finished = prefill[:]
            prefill.clear()
        else:
            finished = prefill[:completing]
            del prefill[:completing]
        for r, _, total in finished:
            if pre and not ready:  # the first prefilled prompt leaves the prefix's blocks in the cache
                ready, own[r] = True, pre
            if cache is not None:  # and its prompt's blocks, where the cache has no entry for it
                own[r] = cache.store(r, own[r])
            if not gen[r]:  # its first token (a preempted request had one before)
                first[r] = seen
                if r >= watched and seen - arrival[r] > ttft_s and w.missed(0):
                    return ReplicaRun.missed_at(max_conc)
            elif r in stalled:
                waits.append((t, t - stalled.pop(r), 1))
            gen[r] += 1
            future -= beams
            if gen[r] >= lout[r]:
                used -= (total - own[r]) * beams + block
                used -= cache.release(r) if cache is not None else 0
                finish[r] = seen
                done += 1
                if issued < n:
                    arrival[issued] = seen
                    issued += 1
                if r >= watched and (seen - arrival[r] > latency_s or lout[r] > 1 and (seen - first[r]) /
                                     (lout[r] - 1) > tpot_s) and w.finish_missed(seen - arrival[r], (seen - first[r]) /
                                                                                max(lout[r] - 1, 1), lout[r]):
                    return ReplicaRun.missed_at(max_conc)
                continue
            dec[r] = (g, gen[r], total)
            if held:  # its first token came during held iterations: its next gap runs from now
                if held[-1][0] == t:
                    held[-1][1] += 1
                else:
                    held.append([t, 1])
            dec_kv += total * beams
            heappush(fin_heap, (g + lout[r] - gen[r], r))
            decoded(r)
    iterations = Iterations.of(runs)
    kept_gaps = expand_gaps(iterations, waits, tuple(regrouped)) if gaps else TokenGaps(*(np.zeros(0),) * 3)
    return ReplicaRun(np.array(arrival[:n]), np.array(first), np.array(finish), busy, num_steps, num_preempt, max_conc,
                      kept_gaps, iterations, cached_tokens=cache.served if cache is not None else 0)


__all__ = ["MISS_MARGIN", "Requests", "SimResult", "SloWatch", "TokenGaps", "check_capacity", "make_requests",
           "misses_to_fail", "repeated_percentiles", "run_replica", "simulate", "simulate_closed"]
