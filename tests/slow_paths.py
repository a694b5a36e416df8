"""The slow paths the fast ones replace, kept as they were before them (issue 13), to show the fast ones equal.

- `simulate_slow`, `simulate_closed_slow`: the request simulation evaluating `StepModel.step_s` at every
  iteration, with heaps for preemption order and token gaps always kept.
- `serve_queries_slow`: the recommender batcher stepping query by query.
- `training_step_slow`: one plan's step in scalar arithmetic, each plan with its own rank program.
`assert_close` compares what the two give. Only tests import this module.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from emulator.cluster.network import Network
from emulator.cluster.schedule import bubble_s, exposed, pipeline_slots
from emulator.cluster.shard import RankProgram
from emulator.cluster.step import Overlap, StepBreakdown, comm_time, hide, optimizer_kernel, stage_times
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.roofline import combined_band, error_band
from emulator.hardware import DeviceProfile
from emulator.serving.frontend import Frontend
from emulator.serving.iterations import Iterations
from emulator.serving.replica import KV_BLOCK_TOKENS, StepModel
from emulator.serving.runs import ReplicaRun, Requests, SimResult, TokenGaps, expand_gaps
from emulator.serving.scheduling import DEFAULT_SCHEDULING, Scheduling


def assert_close(a: Any, b: Any, path: str = "") -> None:
    """Equal structures (a prediction's JSON), numbers within 1e-9 relative."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not (math.isnan(a) and math.isnan(b)):
        assert a == pytest.approx(b, rel=1e-9, abs=0.0), path
    else:
        assert a == b, path


def serve_queries_slow(arrival: np.ndarray, pairs: np.ndarray, step: Callable[[float], float],
                       cap: int) -> tuple[np.ndarray, float]:
    """Finish times of one device's queries under the greedy batcher, and its busy seconds."""
    finish = np.empty(len(arrival))
    t = busy = 0.0
    i, n = 0, len(arrival)
    arr, prs = arrival.tolist(), pairs.tolist()
    while i < n:
        t = max(t, arr[i])
        j, s = i, 0
        while j < n and arr[j] <= t and (s + prs[j] <= cap or j == i):
            s += prs[j]
            j += 1
        dt = step(s)
        t += dt
        busy += dt
        finish[i:j] = t
        i = j
    return finish, busy


def simulate_slow(step: StepModel, kv_capacity_tokens: int, requests: Requests, *, max_batch: int,
                  max_batch_tokens: int, num_replicas: int = 1, num_beams: int = 1, path: str | None = None,
                  prefilled: bool = False, scheduling: Scheduling = DEFAULT_SCHEDULING) -> SimResult:
    """Simulate all requests on `num_replicas` identical replicas (request i goes to replica i mod R).

    `prefilled`: requests arrive with their prompt already in the KV cache (a disaggregated decode pool) and
    their first token already produced elsewhere: admission allocates the cache, no prefill runs.
    `scheduling`: the engine's policy (see `simulator.simulate`).
    """
    n = len(requests)
    first, finish = np.full(n, np.nan), np.full(n, np.nan)
    busy = 0.0
    steps = preempt = conc = 0
    end = 0.0
    gaps = []
    for k in range(num_replicas):
        idx = np.arange(k, n, num_replicas)
        if len(idx) == 0:
            continue
        run = _replica(step, kv_capacity_tokens, requests.arrival_s[idx], requests.input_tokens[idx],
                       requests.output_tokens[idx], max_batch, max_batch_tokens, num_beams, prefilled,
                       scheduling=scheduling)
        first[idx], finish[idx] = run.first_s, run.finish_s
        busy, steps, preempt, conc = busy + run.busy_s, steps + run.num_steps, preempt + run.num_preemptions, \
            max(conc, run.max_concurrency)
        end = max(end, float(run.finish_s.max()))
        gaps.append(run.gaps)
    return SimResult(requests.arrival_s, first, finish, requests.input_tokens, requests.output_tokens, busy, end,
                     num_replicas, steps, preempt, conc, TokenGaps.join(gaps))


def simulate_closed_slow(step: StepModel, kv_capacity_tokens: int, requests: Requests, *, concurrency: int,
                         max_batch: int, max_batch_tokens: int, num_beams: int = 1, path: str | None = None,
                         scheduling: Scheduling = DEFAULT_SCHEDULING) -> SimResult:
    """One replica under a closed loop of `concurrency` clients (see the module docstring): the first
    `concurrency` requests are sent at t=0, each later one when a request finishes. `requests.arrival_s` is
    ignored; the result's `arrival_s` holds the send times."""
    run = _replica(step, kv_capacity_tokens, None, requests.input_tokens, requests.output_tokens, max_batch,
                   max_batch_tokens, num_beams, closed=min(concurrency, len(requests)), scheduling=scheduling)
    return SimResult(run.arrival_s, run.first_s, run.finish_s, requests.input_tokens, requests.output_tokens,
                     run.busy_s, float(run.finish_s.max()), 1, run.num_steps, run.num_preemptions,
                     run.max_concurrency, run.gaps)


def _replica(step: StepModel, cap: int, arr: np.ndarray | None, inp: np.ndarray, out: np.ndarray, max_batch: int,
             budget: int, beams: int, prefilled: bool = False, closed: int = 0,
             scheduling: Scheduling = DEFAULT_SCHEDULING) -> ReplicaRun:
    """`arr`: arrival times (open loop); None with `closed` clients: the closed loop. `scheduling`: see `simulate`;
    not mixed: prefill-only iterations first, decodes wait; every token's gap is then taken one sequence at a
    time from its own previous token (`last`), independently of the fast path's grouping.
    `future` counts the output tokens admitted requests have still to write (decoding moves them into `used`)."""
    reserve, mixed, chunked = scheduling.reserve_output, scheduling.mixed_batches, scheduling.chunked_prefill
    waited = 0  # batch waiting: iterations the pending prompts have waited so far
    decided = 0.0  # requests that reached the scheduler by then join the next iteration (its batch was decided then)
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
    runs: list[tuple[float, int, float, float, int]] = []  # token gaps: (start, iterations, first, increment, seqs)
    waits: list[tuple[float, float, int]] = []  # token gaps counted apart: (end, gap, tokens)
    last: dict[int, float] = {}  # not mixed: each decoding sequence's last token time
    t = busy = 0.0
    front = Frontend(scheduling.frontend_token_s)
    g = used = dec_kv = 0
    future = 0  # output tokens (x beams) that admitted requests have still to generate
    ptr = done = num_steps = num_preempt = max_conc = admitted = 0
    kvd = step.kv_decode_s_per_token  # decode-only iterations (per token gained, with speculation)
    since = 0  # decode-only iterations since the scheduler last took requests (`Scheduling.recv_interval`)
    while done < n:
        if since >= scheduling.recv_interval or not (prefill or dec):  # idle, or after prompts: at once
            since = 0
            while ptr < n and arrival[ptr] + scheduling.ingress_s <= decided:
                waiting.append((ptr, lin[ptr]))
                ptr += 1
        if not waiting and not prefill and not dec:  # idle: the scheduler takes the next request at once
            t = decided = max(arrival[ptr] + scheduling.ingress_s, t)
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
        left = budget - ntok if mixed else budget
        ptok, pairs, completing, chunks = 0, 0.0, [], []
        for entry in prefill:
            if prefilled:  # the prompt's cache came over the fabric: nothing to compute
                entry[1] = entry[2]
                completing.append(entry)
                continue
            c = entry[2] - entry[1]
            if chunked:
                if left <= 0:
                    break
                c = min(c, left)
            elif c > left and ptok:  # whole prompts only; the first of an iteration runs even past the budget
                break
            pairs += c * entry[1] + c * (c + 1) / 2
            ptok += c
            left -= c
            entry[1] += c
            chunks.append((entry, c))
            if entry[1] == entry[2]:
                completing.append(entry)
        holding = (ptok > 0 and ntok > 0 and waited < scheduling.batch_wait_iters
                   and ptok + ntok < scheduling.batch_wait_ratio * budget)
        if holding:  # batch waiting: the prompts wait one more iteration, the decodes run
            for entry, c in chunks:
                entry[1] -= c
            ptok, pairs, completing = 0, 0.0, []
            waited += 1
        elif ptok:
            waited = 0
        if ptok and not mixed:
            dt = step.step_s(ptok, pairs, len(completing) * beams, 0.0)
            k, adv = 1, 0
        elif ptok:
            dt = step.step_s(ptok + ntok, pairs, len(completing) * beams + ntok, dec_kv)
            k = adv = 1
            if dec:
                runs.append((t, 1, dt, 0.0, len(dec)))
        elif not ntok:  # only transferred prompts joining: they decode from the next iteration
            dt, k, adv = 0.0, 0, 0
        else:  # decode only: advance k identical-shape iterations at once
            a = step.decode_s(ntok)
            k = min(fin_heap[0][0] - g, (cap - used) // ntok)
            if ptr < n and arrival[ptr] < math.inf and len(prefill) + len(dec) < max_batch:
                gap = arrival[ptr] + scheduling.ingress_s - t
                # scheduled ahead, it joins the iteration after the one it arrives in; the scheduler takes it at
                # its next take
                until = _steps_until(gap, a, kvd * ntok, kvd * dec_kv) + int(scheduling.ahead and gap > 0)
                k = min(k, until + -(since + until) % scheduling.recv_interval)
            k = max(k, 1) if mixed and not holding else 1
            adv = k
            dt = k * a + kvd * (k * dec_kv + ntok * k * (k - 1) / 2)
            if mixed:
                runs.append((t, k, a + kvd * dec_kv, kvd * ntok, len(dec)))
            else:
                for r in dec:
                    waits.append((t + dt, t + dt - last[r], 1))
                    last[r] = t + dt
        # the API server's stream (its queue is tests/test_serving_frontend.py's to check): the run's first iteration
        # hands its tokens over when it ends, the final one its own at the run's end
        first_end = t + dt if k <= 1 else t + a + kvd * dec_kv
        seen = front.stream(first_end, t + dt, ntok * adv + len(completing) * beams,
                            (ntok if adv else 0) + len(completing) * beams)
        if not scheduling.ahead:
            decided = t + dt
        elif k <= 1:
            decided = t  # the next iteration was scheduled as this one started
        else:  # ... as the last of the k started
            decided = t + dt - (a + kvd * (dec_kv + ntok * (k - 1)))
        t += dt
        busy += dt
        num_steps += k
        since = scheduling.recv_interval if ptok else since + k
        g += adv
        dec_kv += ntok * adv
        used += ntok * adv
        future -= ntok * adv
        while fin_heap and fin_heap[0][0] <= g:
            gf, r = heapq.heappop(fin_heap)
            state = dec.get(r)
            if state is None or state[0] + lout[r] - state[1] != gf:
                continue  # a stale entry of a preempted request
            g0, gen0, ctx0 = dec.pop(r)
            kv = (ctx0 + g - g0) * beams
            used -= kv + block
            dec_kv -= kv
            finish[r] = seen
            done += 1
            if issued < n:  # closed loop: its client sends the next request
                arrival[issued] = seen
                issued += 1
        for entry in completing:
            prefill.remove(entry)
            r, _, total = entry
            if math.isnan(first[r]):
                first[r] = seen
            elif r in stalled:
                waits.append((t, t - stalled.pop(r), 1))
            gen[r] += 1
            future -= beams
            if gen[r] >= lout[r]:
                used -= total * beams + block
                finish[r] = seen
                done += 1
                if issued < n:
                    arrival[issued] = seen
                    issued += 1
                continue
            dec[r] = (g, gen[r], total)
            last[r] = t
            dec_kv += total * beams
            heapq.heappush(fin_heap, (g + lout[r] - gen[r], r))
            admitted += 1
            heapq.heappush(lifo, (-admitted, r))
    return ReplicaRun(np.array(arrival), np.array(first), np.array(finish), busy, num_steps, num_preempt, max_conc,
                      expand_gaps(Iterations.of([(*r, 0) for r in runs]), waits), Iterations.of([]))


def _steps_until(gap_s: float, a: float, slope: float, base: float) -> int:
    """Fewest iterations whose summed time k*(a + base) + slope*k(k-1)/2 reaches `gap_s`."""
    if gap_s <= 0:
        return 1
    b = a + base - slope / 2
    if slope <= 0:
        return max(1, math.ceil(gap_s / max(b, 1e-12)))
    k = (-b + math.sqrt(b * b + 2 * slope * gap_s)) / slope
    return max(1, math.ceil(k - 1e-9))




def training_step_slow(prog: RankProgram, net: Network | None, device: DeviceProfile, table: EfficiencyTable,
                       precision: str, *, overlap: Overlap) -> StepBreakdown:
    """The step time of a rank program on its network (see the module docstring for the schedule).

    `overlap`: what the software stack runs beside compute. Tensor- and expert-parallel collectives hide behind
    the micro-batch's compute, pipeline sends behind the schedule's, context-parallel KV exchange behind
    attention, the gradient reduction behind the last micro-batch's backward and the parameter all-gather
    behind the first one's forward.
    """
    plan = prog.plan
    st = stage_times(prog, device, table, precision)
    m = plan.num_microbatches
    full = plan.recompute == "full"
    layers_f = st.get("layers", "forward")
    layers_b = st.get("layers", "backward") + (layers_f if full else 0.0)
    first = st.get("embed", "forward") + st.get("embed", "backward")
    last = st.get("head", "forward") + st.get("head", "backward")
    ends = max(first, last) if plan.pp > 1 else first + last
    compute_mb = layers_f + layers_b + ends

    tp_total, ep_total = comm_time(prog, net, "tp"), comm_time(prog, net, "ep")
    tp_s, ep_s = hide(tp_total, overlap.tp, compute_mb), hide(ep_total, overlap.ep, compute_mb)
    cp_s = hide(comm_time(prog, net, "cp", "forward"), overlap.cp, st.attention.get("forward", 0.0) * plan.cp) + hide(
        comm_time(prog, net, "cp", "backward"), overlap.cp, st.attention.get("backward", 0.0) * plan.cp)
    fsdp_s = 0.0
    if plan.shard_stage >= 3:
        for group in ("dp", "edp"):
            fsdp_s += exposed(comm_time(prog, net, group, "forward"), layers_f)
            fsdp_s += exposed(comm_time(prog, net, group, "backward"), layers_b)
    microbatch_s = compute_mb + tp_s + ep_s + cp_s + fsdp_s
    bubble = bubble_s(plan.pp, plan.virtual_stages, microbatch_s)
    pp_total = comm_time(prog, net, "pp") * pipeline_slots(plan.pp, m) if plan.pp > 1 else 0.0
    pp_s = hide(pp_total, overlap.pp, m * microbatch_s)

    optimizer = optimizer_kernel(prog, device, table)
    optimizer_s = optimizer.time_s
    dp_s = dp_total = 0.0
    if plan.shard_stage < 3:
        for group in ("dp", "edp"):
            reduce = comm_time(prog, net, group, "optimizer", ("all_reduce", "reduce_scatter"))
            gather = comm_time(prog, net, group, "optimizer", ("all_gather",))
            dp_total += reduce + gather
            dp_s += hide(reduce, overlap.dp_grad_reduce, layers_b) + hide(gather, overlap.dp_param_gather, layers_f)
    step = m * microbatch_s + bubble + pp_s + dp_s + optimizer_s
    hidden = 0.0
    if net is not None:
        hidden = m * comm_time(prog, net, "cp") + (comm_time(prog, net, "dp") + comm_time(prog, net, "edp")) * (
            m if plan.shard_stage >= 3 else 1)
    return StepBreakdown(
        step_s=step, compute_s=m * compute_mb + optimizer_s,
        exposed_communication_s=m * (tp_s + ep_s + cp_s + fsdp_s) + pp_s + dp_s, bubble_s=bubble,
        optimizer_s=optimizer_s, tensor_parallel_s=m * tp_s, expert_parallel_s=m * ep_s,
        context_parallel_exposed_s=m * cp_s, fsdp_exposed_s=m * fsdp_s, pipeline_p2p_s=pp_s,
        data_parallel_exposed_s=dp_s, data_parallel_total_s=dp_total,
        communication_total_s=m * (tp_total + ep_total) + pp_total + hidden, recompute_s=m * layers_f if full else 0.0,
        microbatch_s=microbatch_s, layers_forward_s=layers_f, layers_backward_s=layers_b, embed_s=first,
        head_s=last, optimizer=optimizer, host_wait_s=m * st.host_wait_s,
        error_band=combined_band([(st.error_band, m * compute_mb), (error_band([optimizer], table), optimizer_s)],
                                 st.error_band))

