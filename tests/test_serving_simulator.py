"""Serving simulator: Little's law, TTFT at vanishing load, determinism, preemption and capacity errors."""

from __future__ import annotations

import numpy as np
import pytest

from emulator.errors import EmulatorError
from emulator.scenario import Distribution
from emulator.serving.replica import Scheduling, Speculation, StepModel
from emulator.serving.simulator import Requests, make_requests, simulate, simulate_closed
from emulator.stacks import load_stack

GRID = (1.0, 64.0, 1024.0, 8192.0)
# dense: 20 ms of weight streaming, then ~40 us per token once compute bound
STEP = StepModel(grid=GRID, dense_s=(0.020, 0.021, 0.045, 0.33), head_s=(1e-4, 1.2e-4, 4e-4, 2.5e-3),
                 kv_s_per_token=2e-8, pair_s=3e-9, overhead_s=1e-3, error_band=0.1)
INPUTS = Distribution(kind="normal", mean=300, std=100, minimum=10, maximum=900)
OUTPUTS = Distribution(kind="normal", mean=100, std=40, minimum=2, maximum=400)


def _run(rate: float | None, n: int = 2000, seed: int = 0, cap: int = 200_000, batch: int = 64):
    reqs = make_requests(INPUTS, OUTPUTS, n, rate, seed)
    return simulate(STEP, cap, reqs, max_batch=batch, max_batch_tokens=4096)


def test_littles_law_holds_within_two_percent() -> None:
    """Time-averaged requests in the system equal arrival rate times mean latency (L = lambda W)."""
    res = _run(rate=20.0, n=4000)
    events = np.concatenate([res.arrival_s, res.finish_s])
    steps = np.concatenate([np.ones(len(res.arrival_s)), -np.ones(len(res.finish_s))])
    order = np.argsort(events, kind="stable")
    times, counts = events[order], np.cumsum(steps[order])
    area = float(np.sum(counts[:-1] * np.diff(times)))
    horizon = times[-1] - times[0]
    in_system = area / horizon
    lam = len(res.arrival_s) / horizon
    assert in_system == pytest.approx(lam * float(res.latency_s.mean()), rel=0.02)


def test_ttft_at_vanishing_load_is_one_prefill() -> None:
    """A lone request's TTFT is exactly one prefill iteration of its prompt."""
    reqs = Requests(np.array([0.0, 1000.0]), np.array([500, 500]), np.array([10, 10]))
    res = simulate(STEP, 100_000, reqs, max_batch=8, max_batch_tokens=4096)
    prefill = STEP.step_s(500, 500 * 501 / 2, 1, 0)
    assert res.ttft_s[1] == pytest.approx(prefill, rel=1e-9)


def test_same_seed_gives_identical_results() -> None:
    """Two runs with one seed agree exactly; another seed differs."""
    a, b, c = _run(15.0, seed=3), _run(15.0, seed=3), _run(15.0, seed=4)
    assert np.array_equal(a.finish_s, b.finish_s) and np.array_equal(a.first_token_s, b.first_token_s)
    assert not np.array_equal(a.finish_s, c.finish_s)


def test_kv_cache_too_small_for_one_request_is_a_clear_error() -> None:
    """A request larger than the whole KV cache raises an EmulatorError naming the fix."""
    reqs = Requests(np.zeros(1), np.array([5000]), np.array([100]))
    with pytest.raises(EmulatorError, match="KV-cache tokens"):
        simulate(STEP, 4096, reqs, max_batch=8, max_batch_tokens=4096)


def test_small_kv_cache_preempts_and_still_finishes_every_request() -> None:
    """When decodes outgrow the cache, requests are preempted, recomputed and all complete in order of time."""
    res = _run(None, n=300, cap=8_000, batch=64)
    assert res.num_preemptions == 90  # seeded: the same requests preempt the same way every run
    assert np.all(np.isfinite(res.finish_s)) and np.all(res.finish_s >= res.first_token_s)
    assert np.all(res.first_token_s >= res.arrival_s)


def test_offline_throughput_grows_with_batch() -> None:
    """More concurrent sequences give more output tokens per second on a memory-bound step."""
    assert _run(None, n=600, batch=64).throughput_tokens_per_s > _run(None, n=600, batch=8).throughput_tokens_per_s


def test_replicas_split_requests_round_robin() -> None:
    """Four replicas at four times the rate behave like one replica at the base rate (per-request shares)."""
    res = simulate(STEP, 200_000, make_requests(INPUTS, OUTPUTS, 800, 40.0, 1), max_batch=64, max_batch_tokens=4096,
                   num_replicas=4)
    assert res.num_replicas == 4 and np.all(np.isfinite(res.finish_s))


def test_reserving_outputs_never_preempts_and_makes_requests_wait() -> None:
    """An engine that keeps each admitted request's remaining output free (TensorRT-LLM's GUARANTEED_NO_EVICT)
    never preempts where an optimistic one (vLLM) does; the wait moves into TTFT, and every request finishes."""
    reqs = make_requests(INPUTS, OUTPUTS, 300, None, 0)
    optimistic = simulate(STEP, 8_000, reqs, max_batch=64, max_batch_tokens=4096)
    reserved = simulate(STEP, 8_000, reqs, max_batch=64, max_batch_tokens=4096, scheduling=Scheduling(1.0))
    assert optimistic.num_preemptions > 0 and reserved.num_preemptions == 0
    assert np.all(np.isfinite(reserved.finish_s))
    assert reserved.max_concurrency < optimistic.max_concurrency
    assert float(np.mean(reserved.ttft_s)) > float(np.mean(optimistic.ttft_s))
    half = simulate(STEP, 8_000, reqs, max_batch=64, max_batch_tokens=4096, scheduling=Scheduling(0.5))
    assert reserved.max_concurrency <= half.max_concurrency <= optimistic.max_concurrency


def test_unmixed_prefill_stalls_the_decoding_request_and_its_token_gap_spans_it() -> None:
    """Not mixed (SGLang's default): a prompt arriving while another request decodes runs alone in one iteration;
    the decoding request gains no token in it, so that token's gap is the prefill plus the next decode."""
    reqs = Requests(np.array([0.0, 0.05]), np.array([500, 2000]), np.array([40, 5]))
    common = {"max_batch": 8, "max_batch_tokens": 4096, "gaps": True}
    mixed = simulate(STEP, 100_000, reqs, **common)  # type: ignore[arg-type]
    alone = simulate(STEP, 100_000, reqs, **common, scheduling=Scheduling(mixed_batches=False))  # type: ignore[arg-type]
    prefill = STEP.step_s(2000, 2000 * 2001 / 2, 1, 0)
    assert alone.ttft_s[1] < mixed.ttft_s[1]  # no decode rides along with its prefill
    assert alone.finish_s[0] > mixed.finish_s[0]  # the decoding request waited through it
    assert alone.gaps is not None and mixed.gaps is not None
    assert alone.gaps.num_tokens == mixed.gaps.num_tokens  # every token after the first, counted once
    assert float(alone.gaps.gap_s.max()) > prefill  # one gap spans the prefill-only iteration
    assert float(mixed.gaps.gap_s.max()) < prefill + STEP.step_s(1, 0, 1, 600)


def test_unmixed_burst_prefills_every_prompt_before_any_second_token() -> None:
    """Prefill first: of a burst of prompts, every one gets its first token before any gets a second (each
    request's TTFT is below the earliest second token)."""
    reqs = Requests(np.zeros(6), np.full(6, 3000), np.full(6, 20))
    res = simulate(STEP, 100_000, reqs, max_batch=8, max_batch_tokens=4096, gaps=True,
                   scheduling=Scheduling(mixed_batches=False))
    assert res.gaps is not None
    assert float(res.first_token_s.max()) < float(res.gaps.end_s.min())


def test_unchunked_prompts_run_whole_and_wait_for_room() -> None:
    """Two 3,000-token prompts under a 4,096-token budget: chunked, the second starts in the first iteration and
    finishes in the second; whole prompts only, it waits for the second iteration entirely, and a prompt longer
    than the budget still runs, whole, alone."""
    reqs = Requests(np.zeros(2), np.full(2, 3000), np.full(2, 4))
    split = simulate(STEP, 100_000, reqs, max_batch=8, max_batch_tokens=4096)
    whole = simulate(STEP, 100_000, reqs, max_batch=8, max_batch_tokens=4096,
                     scheduling=Scheduling(chunked_prefill=False))
    one = STEP.step_s(3000, 3000 * 3001 / 2, 1, 0.0)
    assert whole.first_token_s[0] == pytest.approx(one, rel=1e-12)  # the first prompt alone
    assert split.first_token_s[0] > one  # shares its iteration with the second prompt's first chunk
    assert whole.first_token_s[1] > split.first_token_s[1]
    long = simulate(STEP, 100_000, Requests(np.zeros(1), np.full(1, 6000), np.full(1, 4)), max_batch=8,
                    max_batch_tokens=4096, scheduling=Scheduling(chunked_prefill=False))
    assert long.first_token_s[0] == pytest.approx(STEP.step_s(6000, 6000 * 6001 / 2, 1, 0.0), rel=1e-12)


def test_batch_waiting_holds_a_lone_prompt_for_its_iterations() -> None:
    """TensorRT-LLM's batch waiting: a prompt arriving while one sequence decodes waits `batch_wait_iters` decode
    iterations (each of one decode row) before it runs; a prompt that already fills the token ratio, or one
    with nothing decoding beside it, does not wait."""
    reqs = Requests(np.array([0.0, 0.05]), np.array([100, 200]), np.array([1000, 4]))
    common = {"max_batch": 8, "max_batch_tokens": 4096}
    plain = simulate(STEP, 100_000, reqs, **common)  # type: ignore[arg-type]
    held = simulate(STEP, 100_000, reqs, **common, scheduling=Scheduling(batch_wait_iters=5,  # type: ignore[arg-type]
                                                                            batch_wait_ratio=0.9))
    delay = float(held.first_token_s[1] - plain.first_token_s[1])
    one = STEP.step_s(1, 0.0, 1, 0.0)
    assert 5 * one <= delay <= 5 * STEP.step_s(1, 0.0, 1, 2000.0)
    assert held.first_token_s[0] == plain.first_token_s[0]  # alone at t = 0: nothing decodes beside it
    full = simulate(STEP, 100_000, reqs, **common, scheduling=Scheduling(batch_wait_iters=5,  # type: ignore[arg-type]
                                                                            batch_wait_ratio=0.01))
    assert np.array_equal(full.first_token_s, plain.first_token_s)


def test_ingress_adds_to_every_first_token_and_spaces_a_closed_loop() -> None:
    """`Scheduling.ingress_s`: a lone request's TTFT is one prefill plus the ingress; in a closed loop of one client
    each request is sent when the last finishes and reaches the engine the ingress later."""
    reqs = Requests(np.zeros(1), np.full(1, 500), np.full(1, 4))
    plain = simulate(STEP, 100_000, reqs, max_batch=8, max_batch_tokens=4096)
    late = simulate(STEP, 100_000, reqs, max_batch=8, max_batch_tokens=4096, scheduling=Scheduling(ingress_s=0.05))
    assert late.ttft_s[0] == pytest.approx(plain.ttft_s[0] + 0.05, rel=1e-12)
    assert late.finish_s[0] - late.first_token_s[0] == pytest.approx(plain.finish_s[0] - plain.first_token_s[0])
    three = Requests(np.zeros(3), np.full(3, 500), np.full(3, 4))
    loop = simulate_closed(STEP, 100_000, three, concurrency=1, max_batch=8, max_batch_tokens=4096,
                           scheduling=Scheduling(ingress_s=0.05))
    assert np.array_equal(loop.arrival_s[1:], loop.finish_s[:-1])
    assert np.allclose(loop.ttft_s, late.ttft_s[0], rtol=1e-12)


def test_a_receive_interval_holds_arrivals_during_decodes_only() -> None:
    """`Scheduling.recv_interval` (SGLang's --scheduler-recv-interval): a request arriving while another decodes
    waits for the scheduler's next take, at most that many decode iterations later; one arriving at an idle engine
    starts at once, as without the interval."""
    reqs = Requests(np.array([0.0, 0.3, 100.0]), np.full(3, 100), np.array([200, 4, 4]))
    common = {"max_batch": 8, "max_batch_tokens": 4096}
    every = simulate(STEP, 100_000, reqs, **common)  # type: ignore[arg-type]
    tenth = simulate(STEP, 100_000, reqs, **common, scheduling=Scheduling(recv_interval=10))  # type: ignore[arg-type]
    decode = STEP.decode_s(1) + STEP.kv_s_per_token * 400  # a decode iteration of the long request, at most
    assert every.ttft_s[1] < tenth.ttft_s[1] <= every.ttft_s[1] + 10 * decode
    assert tenth.ttft_s[2] == pytest.approx(every.ttft_s[2], rel=1e-12) and tenth.ttft_s[0] == every.ttft_s[0]
    assert Scheduling.of(load_stack("sglang", "serving").with_settings(
        (("scheduler.recv_interval_iters", 30),))).recv_interval == 30


def test_a_prompt_cap_admits_whole_prompts_while_they_fit_and_the_first_always() -> None:
    """`Scheduling.max_prefill_tokens` (SGLang's --max-prefill-tokens): of a burst of three 1,000-token prompts
    under a cap of 2,000, two share the first iteration and the third waits for the next, though the token budget
    holds all three; a lone prompt longer than the cap still runs whole."""
    reqs = Requests(np.zeros(3), np.full(3, 1000), np.full(3, 4))
    common = {"max_batch": 8, "max_batch_tokens": 8192}
    free = simulate(STEP, 100_000, reqs, **common)  # type: ignore[arg-type]
    capped = simulate(STEP, 100_000, reqs, **common,  # type: ignore[arg-type]
                      scheduling=Scheduling(max_prefill_tokens=2000))
    assert len(set(free.first_token_s.tolist())) == 1
    two = STEP.step_s(2000, 2 * 1000 * 1001 / 2, 2, 0.0)
    assert capped.first_token_s[0] == capped.first_token_s[1] == pytest.approx(two, rel=1e-12)
    assert capped.first_token_s[2] > capped.first_token_s[1]
    long = Requests(np.zeros(1), np.full(1, 3000), np.full(1, 4))
    assert simulate(STEP, 100_000, long, **common, scheduling=Scheduling(max_prefill_tokens=1500)  # type: ignore[arg-type]
                    ).first_token_s[0] == pytest.approx(STEP.step_s(3000, 3000 * 3001 / 2, 1, 0.0), rel=1e-12)


def test_a_mixed_prompt_cap_leaves_room_for_the_decoding_sequences() -> None:
    """Mixed batches take the decoding sequences off the cap (SGLang's PrefillAdder with --enable-mixed-chunk): two
    1,000-token prompts arriving while one request decodes fit a cap of 2,000 only unmixed; mixed, the second waits
    an iteration."""
    reqs = Requests(np.array([0.0, 0.3, 0.3]), np.array([100, 1000, 1000]), np.array([400, 4, 4]))
    common = {"max_batch": 8, "max_batch_tokens": 8192}
    mixed = simulate(STEP, 100_000, reqs, **common, scheduling=Scheduling(max_prefill_tokens=2000))  # type: ignore[arg-type]
    alone = simulate(STEP, 100_000, reqs, **common,  # type: ignore[arg-type]
                     scheduling=Scheduling(max_prefill_tokens=2000, mixed_batches=False))
    assert mixed.first_token_s[2] > mixed.first_token_s[1]
    assert alone.first_token_s[2] == alone.first_token_s[1]
    assert Scheduling.of(load_stack("sglang", "serving")).max_prefill_tokens == 16384
    assert Scheduling.of(load_stack("sglang", "serving"), 8).max_prefill_tokens == 8 * 16384  # a cap per DP rank
    assert Scheduling.of(load_stack("vllm", "serving")).max_prefill_tokens == 0


def test_speculation_keeps_its_expected_run_of_tokens_per_verify_step() -> None:
    """tokens_per_step = 1 + a + ... + a^k (the accepted run and the verify step's own token), or with one rate
    per position 1 + a1 + a1 a2 + ..."""
    assert Speculation(3, 0.8).tokens_per_step == pytest.approx(1 + 0.8 + 0.64 + 0.512)
    assert Speculation(2, 1.0).tokens_per_step == 3.0 and Speculation(4, 0.0).tokens_per_step == 1.0
    # one rate per drafted position, each given the one before: 1 + a1 + a1 a2 + a1 a2 a3
    assert Speculation(3, (0.9, 0.5, 0.5)).tokens_per_step == pytest.approx(1 + 0.9 + 0.45 + 0.225)
    assert Speculation(3, (0.8, 0.8, 0.8)).tokens_per_step == Speculation(3, 0.8).tokens_per_step


def test_speculative_decode_step_is_a_verify_and_drafts_per_token_kept() -> None:
    """A lone request's TPOT under speculation is one verify step of (1 + k) rows plus k one-layer drafts, over the
    tokens a step keeps; its KV read is once per step. Without drafts the decode step is the plain one."""
    spec = Speculation(3, 0.8)
    step = spec.applied(STEP, draft_share=1 / 40)  # a one-layer drafter of a 40-layer model
    rows, k, n = 4, 3, 1
    device = STEP.dense(rows) + STEP.head(rows) + k * (STEP.dense(n) / 40 + STEP.head(n))
    host = STEP.overhead_s + STEP.host_per_row_s * n * spec.tokens_per_step
    assert step.decode_s(1) == pytest.approx((device + host) / spec.tokens_per_step, rel=1e-12)
    assert step.kv_decode_s_per_token == pytest.approx(STEP.kv_s_per_token / spec.tokens_per_step)
    assert STEP.decode_s(5) == STEP.step_s(5, 0.0, 5, 0.0)
    reqs = Requests(np.zeros(1), np.full(1, 100), np.full(1, 200))
    plain = simulate(STEP, 100_000, reqs, max_batch=8, max_batch_tokens=4096)
    fast = simulate(step, 100_000, reqs, max_batch=8, max_batch_tokens=4096)
    assert fast.ttft_s[0] == plain.ttft_s[0]
    assert fast.tpot_s[0] < plain.tpot_s[0] / 2
    assert fast.tpot_s[0] == pytest.approx(step.decode_s(1), rel=0.05)


def test_a_request_scheduled_ahead_joins_the_iteration_after_the_one_it_arrives_in() -> None:
    """One request decodes alone; a second arrives half way through its third decode iteration. Scheduled at each
    iteration's start it prefills in the fourth; scheduled ahead (`Scheduling.ahead`: the overlap schedulers
    decide iteration i + 1 while i runs) in the fifth, one decode iteration later. The first request, finding the
    engine idle, starts at once either way."""
    prefill = STEP.step_s(1000, 1000 * 1001 / 2, 1, 0.0)
    decode = STEP.step_s(1, 0.0, 1, 0.0)
    reqs = Requests(np.array([0.0, prefill + 2.5 * decode]), np.array([1000, 200]), np.array([400, 5]))
    first = {ahead: simulate(STEP, 100_000, reqs, max_batch=8, max_batch_tokens=4096,
                             scheduling=Scheduling(ahead=ahead)).first_token_s for ahead in (False, True)}
    assert first[False][0] == first[True][0] == pytest.approx(prefill, rel=1e-12)
    assert first[True][1] - first[False][1] == pytest.approx(decode, rel=0.05)
