"""Per-request records of a serving run (`serving/records.py`, `serving/iterations.py`): the iteration log accounts
for every busy second and every decoded token, the records are the requests behind the reported percentiles, and the
CSV export holds one row per request."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from emulator.predict import predict_scenario
from emulator.scenario import Distribution, load_scenario
from emulator.serving.iterations import Iterations
from emulator.serving.records import CSV_COLUMNS, RequestLog
from emulator.serving.replica import StepModel
from emulator.serving.simulator import make_requests, simulate, simulate_closed
from emulator.stats import Percentiles

STEP = StepModel(grid=(1.0, 64.0, 1024.0, 8192.0), dense_s=(0.020, 0.021, 0.045, 0.33),
                 head_s=(1e-4, 1.2e-4, 4e-4, 2.5e-3), kv_s_per_token=2e-8, pair_s=3e-9, overhead_s=1e-3,
                 error_band=0.1)
INPUTS = Distribution(kind="normal", mean=300, std=100, minimum=10, maximum=900)
OUTPUTS = Distribution(kind="normal", mean=100, std=40, minimum=2, maximum=400)
TINY = ("{model_type: llama, num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, "
        "intermediate_size: 128, vocab_size: 1000, max_position_embeddings: 2048}")


def test_iterations_expand_runs_into_back_to_back_iterations() -> None:
    """A run of k decode-only iterations expands into k iterations, each one increment longer than the last and
    starting where the previous one ended."""
    log = Iterations.of([(1.0, 1, 0.5, 0.0, 0, 64), (1.5, 3, 0.1, 0.01, 4, 0)])
    end, duration, seqs, prefill = log.expand()
    assert log.num_iterations == 4
    assert duration == pytest.approx([0.5, 0.1, 0.11, 0.12])
    assert end == pytest.approx([1.5, 1.6, 1.71, 1.83])
    assert list(seqs) == [0, 4, 4, 4] and list(prefill) == [64, 0, 0, 0]
    assert Iterations.of([]).num_iterations == 0


def test_iterations_hold_every_logged_value_exactly() -> None:
    """The log built from the simulator's tuples holds each value bit for bit, counts and sizes as integers."""
    rng = np.random.default_rng(0)
    runs = [(float(rng.uniform(0, 1e4)), int(rng.integers(1, 10**6)), float(rng.uniform(0, 1)),
             float(rng.uniform(0, 1e-6)), int(rng.integers(0, 10**5)), int(rng.integers(0, 2**40))) for _ in range(500)]
    log = Iterations.of(runs)
    columns = (log.start_s, log.count, log.first_s, log.increment_s, log.decode_seqs, log.prefill_tokens)
    for i, (column, dtype) in enumerate(zip(columns, (float, np.int64, float, float, np.int64, np.int64), strict=True)):
        assert column.dtype == dtype and column.flags.c_contiguous
        assert column.tolist() == [r[i] for r in runs]


@pytest.mark.parametrize("rate,cap", [(None, 200_000), (20.0, 200_000), (None, 6_000)],
                         ids=["offline", "server", "preempting"])
def test_the_iteration_log_accounts_for_busy_time_and_tokens(rate: float | None, cap: int) -> None:
    """Iteration durations sum to the replica's busy time, their count is the run's steps, they prefill every prompt
    and decode every output token after each request's first."""
    reqs = make_requests(INPUTS, OUTPUTS, 400, rate, seed=3)
    res = simulate(STEP, cap, reqs, max_batch=64, max_batch_tokens=4096)
    (log,) = res.iterations
    assert (res.num_preemptions > 0) == (cap < 10_000)
    end, duration, seqs, prefill = log.expand()
    assert duration.sum() == pytest.approx(res.busy_s, rel=1e-9)
    assert log.num_iterations == res.num_steps
    assert (np.diff(end) >= -1e-9).all() and (duration > 0).all()
    assert int(prefill.sum()) >= int(reqs.input_tokens.sum())
    # A recompute's prefill gives the preempted request its next token, so each preemption decodes one fewer.
    assert int(seqs.sum()) == int((reqs.output_tokens - 1).sum()) - res.num_preemptions


@pytest.mark.parametrize("prefilled", [False, True], ids=["prefill", "prefilled"])
def test_a_run_without_its_log_is_the_same_run(prefilled: bool) -> None:
    """`log=False` (a disaggregated search's pools) leaves every request's times and the run's totals as they are
    and keeps empty logs, one per replica."""
    reqs = make_requests(INPUTS, OUTPUTS, 300, 40.0, seed=4)
    kwargs = {"max_batch": 32, "max_batch_tokens": 4096, "num_replicas": 2, "prefilled": prefilled}
    logged = simulate(STEP, 8_000, reqs, **kwargs)  # type: ignore[arg-type]
    bare = simulate(STEP, 8_000, reqs, log=False, **kwargs)  # type: ignore[arg-type]
    assert logged.num_preemptions > 0 or prefilled
    for field in ("first_token_s", "finish_s"):
        assert np.array_equal(getattr(bare, field), getattr(logged, field))
    for field in ("busy_s", "makespan_s", "num_steps", "num_preemptions", "max_concurrency"):
        assert getattr(bare, field) == getattr(logged, field)
    assert [log.num_iterations for log in bare.iterations] == [0, 0]
    assert all(log.num_iterations for log in logged.iterations)


def test_a_closed_loop_logs_its_one_replica() -> None:
    """A closed loop's result carries its replica's iteration log."""
    reqs = make_requests(INPUTS, OUTPUTS, 90, None, seed=1)
    res = simulate_closed(STEP, 200_000, reqs, concurrency=30, max_batch=30, max_batch_tokens=4096)
    (log,) = res.iterations
    assert log.num_iterations == res.num_steps


def test_a_log_orders_requests_by_arrival_and_names_their_replicas() -> None:
    """Requests of `simulate` over R replicas keep their replica (i mod R) and come out in arrival order; each row
    has the CSV's columns, TTFT and latency from its times, and no TPOT for a one-token request."""
    outputs = Distribution(kind="uniform", mean=20, std=11, minimum=1, maximum=40)
    reqs = make_requests(INPUTS, outputs, 60, 30.0, seed=2)
    res = simulate(STEP, 200_000, reqs, max_batch=8, max_batch_tokens=4096, num_replicas=3)
    log = RequestLog.of(res, "three replicas")
    assert len(log) == 60 and len(log.iterations) == 3
    rows = log.rows()
    assert [r["arrival_s"] for r in rows] == sorted(r["arrival_s"] for r in rows)
    assert sorted(r["replica"] for r in rows) == sorted(i % 3 for i in range(60))
    for row in rows:
        assert tuple(row) == CSV_COLUMNS
        assert row["ttft_s"] == pytest.approx(row["first_token_s"] - row["arrival_s"])
        assert row["latency_s"] == pytest.approx(row["finish_s"] - row["arrival_s"])
        assert (row["tpot_s"] is None) == (row["output_tokens"] == 1)


@pytest.mark.parametrize("inference", [
    "{input_tokens: 128, output_tokens: 16, batch_size: 4, num_requests: 40}",
    "{input_tokens: 128, output_tokens: {distribution: uniform, mean: 16, std: 8, min: 2, max: 40}, concurrency: 6}",
])
def test_the_records_are_the_requests_behind_the_percentiles(tmp_path: Path, inference: str) -> None:
    """On one replica (Offline: all its requests; a closed loop: its measured waves) the logged requests give the
    reported TTFT and latency percentiles exactly, and the CSV holds one row per request."""
    path = tmp_path / "s.yaml"
    path.write_text(f"model: {TINY}\nhardware: {{device: h100-sxm}}\ninference: {inference}\n")
    serving = predict_scenario(load_scenario(path)).serving  # type: ignore[attr-defined]
    log = serving.log
    assert log is not None
    assert Percentiles.of(log.first_token_s - log.arrival_s) == serving.ttft_s
    assert Percentiles.of(log.finish_s - log.arrival_s) == serving.latency_s
    out = tmp_path / "requests.csv"
    log.write_csv(str(out))
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(log) and tuple(rows[0]) == CSV_COLUMNS
    assert float(rows[0]["ttft_s"]) == pytest.approx(log.rows()[0]["ttft_s"], rel=1e-8)
