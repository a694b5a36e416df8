"""The API server's token stream (`serving.frontend`): a serial path that caps what clients see, and only that."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emulator.serving.frontend import Frontend
from emulator.serving.replica import Scheduling, StepModel
from emulator.serving.simulator import Requests, simulate, simulate_closed
from emulator.stacks import load_stack

GRID = (1.0, 64.0, 1024.0, 8192.0)
STEP = StepModel(grid=GRID, dense_s=(0.010, 0.011, 0.03, 0.2), head_s=(1e-4, 1.2e-4, 4e-4, 2.5e-3),
                 kv_s_per_token=1e-8, pair_s=1e-9, overhead_s=5e-4, error_band=0.1)


def test_an_idle_stream_path_hands_tokens_over_as_they_are_made() -> None:
    """Below its rate the path adds its time for the final iteration's tokens only; 0 s per token adds nothing."""
    front = Frontend(1e-4)
    assert front.stream(0.0, 0.5, tokens=100, last=10) == pytest.approx(0.5 + 10 * 1e-4)
    assert Frontend(0.0).stream(0.0, 0.5, tokens=10**6, last=10**3) == 0.5


def test_a_saturated_stream_path_runs_behind_by_its_backlog() -> None:
    """Past its rate the tokens queue: each run ends when the work ahead of it and its own are done."""
    front = Frontend(1e-3)
    assert front.stream(0.0, 0.1, tokens=200, last=2) == pytest.approx(0.2)
    assert front.stream(0.1, 0.15, tokens=100, last=2) == pytest.approx(0.3)  # behind the first run's backlog
    assert front.stream(1.0, 1.01, tokens=2, last=2) == pytest.approx(1.012)  # idle again: its own tokens only


def _closed(token_s: float, clients: int = 64, n: int = 640):
    reqs = Requests(np.zeros(n), np.full(n, 200), np.full(n, 100))
    return simulate_closed(STEP, 10_000_000, reqs, concurrency=clients, max_batch=clients, max_batch_tokens=8192,
                           scheduling=Scheduling(frontend_token_s=token_s))


def test_a_closed_loop_streams_no_faster_than_the_api_server() -> None:
    """A closed loop whose engine outruns the stream path settles at the path's rate: its clients see 1 / token_s
    output tokens a second at most, with TTFT and TPOT longer than the engine's alone."""
    engine, capped = _closed(0.0), _closed(5e-4)
    span = lambda r: float(r.finish_s.max() - r.arrival_s.min())  # noqa: E731
    assert 100 * 640 / span(engine) > 1.5 / 5e-4  # the engine alone is well past the cap
    assert 100 * 640 / span(capped) <= 1 / 5e-4 * 1.001
    assert float(capped.tpot_s.mean()) > float(engine.tpot_s.mean())
    assert float(capped.ttft_s.mean()) > float(engine.ttft_s.mean())


def test_a_stream_path_that_keeps_up_adds_a_token_at_most() -> None:
    """One client far below the path's rate: each event comes one token's stream time after the engine makes it."""
    engine, fed = _closed(0.0, clients=1, n=4), _closed(1e-5, clients=1, n=4)
    assert np.allclose(fed.ttft_s, engine.ttft_s + 1e-5, rtol=0, atol=1e-9)
    assert np.allclose(fed.tpot_s, engine.tpot_s, rtol=1e-6)


def test_an_open_loop_keeps_its_send_times_and_sees_the_stream_late() -> None:
    """Poisson-style arrivals are the clients' own: only first-token and finish times move."""
    arrivals = np.linspace(0.0, 1.0, 200)
    reqs = Requests(arrivals, np.full(200, 200), np.full(200, 50))
    plain = simulate(STEP, 10_000_000, reqs, max_batch=256, max_batch_tokens=8192)
    capped = simulate(STEP, 10_000_000, reqs, max_batch=256, max_batch_tokens=8192,
                      scheduling=Scheduling(frontend_token_s=5e-4))
    assert np.array_equal(plain.arrival_s, capped.arrival_s)
    assert np.all(capped.finish_s >= plain.finish_s - 1e-12)
    assert float(capped.finish_s.max()) >= 200 * 50 * 5e-4


@pytest.mark.parametrize("engine", ["trtllm", "sglang", "vllm", "eager"])
def test_every_engine_states_its_stream_path(engine: str) -> None:
    """The item is on every serving stack, fitted or at 0, and reaches the scheduler's policy."""
    stack = load_stack(engine, "serving")
    value = float(stack.get("host.frontend_token_s"))
    assert value >= 0.0
    assert Scheduling.of(stack).frontend_token_s == value
    assert dataclasses.replace(Scheduling.of(stack), frontend_token_s=0.0).frontend_token_s == 0.0


def test_a_stream_interval_shares_each_events_time_among_its_tokens() -> None:
    """`defaults.stream_interval` (trtllm-serve's stream_interval, SGLang's --stream-interval): an event of k tokens
    costs the stream path what one token's did, so each token a k-th; 0 counts as 1."""
    stack = load_stack("trtllm", "serving")
    per_event = float(stack.get("host.frontend_token_s"))
    assert per_event > 0.0
    assert Scheduling.of(stack.with_settings((("defaults.stream_interval", 10),))).frontend_token_s == \
        pytest.approx(per_event / 10)
    assert Scheduling.of(stack.with_settings((("defaults.stream_interval", 0),))).frontend_token_s == per_event


@pytest.mark.parametrize("growth", [0.0, 2e-5])
@pytest.mark.parametrize("token_s", [1e-5, 1e-4, 1e-3])
def test_a_runs_closed_form_equals_its_iterations_streamed_one_by_one(growth: float, token_s: float) -> None:
    """A run of k decode iterations (each a little longer than the last as the KV cache grows) ends its stream
    where handing over each iteration's tokens in turn would, from an idle path and from a backlog."""
    for backlog in (0.0, 0.05):
        k, n, a, t0 = 40, 32, 0.004, 0.01
        ends = [t0 + j * a + growth * j * (j - 1) / 2 for j in range(1, k + 1)]
        one_by_one = Frontend(token_s)
        one_by_one.free = backlog
        for end in ends:
            seen = one_by_one.stream(end, end, n, n)
        run = Frontend(token_s)
        run.free = backlog
        assert run.stream(ends[0], ends[-1], k * n, n) == pytest.approx(seen, rel=1e-12)
