"""Closed-loop serving (`inference.concurrency`): parsing and its errors, Little's law, the single-request limits,
throughput against concurrency up to the KV capacity, warm-up exclusion, replicas, ITL, and the JSON and text."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emulator.cli.render import render_prediction
from emulator.engine.calibration import efficiency_for
from emulator.errors import EmulatorError
from emulator.hardware import load_system
from emulator.predict import predict_scenario
from emulator.scenario import Distribution, Scenario, ServingSpec, load_scenario, parse_inference
from emulator.serving import predict_serving
from emulator.serving.replica import KV_BLOCK_TOKENS, Replica, StepModel, build_replica
from emulator.serving.search import run_closed
from emulator.serving.simulator import Requests, repeated_percentiles, simulate_closed
from emulator.stats import Percentiles
from emulator.workloads.presets import preset

# dense: 20 ms of weight streaming, then ~40 us per token once compute bound (as in test_serving_simulator)
STEP = StepModel(grid=(1.0, 64.0, 1024.0, 8192.0), dense_s=(0.020, 0.021, 0.045, 0.33),
                 head_s=(1e-4, 1.2e-4, 4e-4, 2.5e-3), kv_s_per_token=2e-8, pair_s=3e-9, overhead_s=1e-3,
                 error_band=0.1)
SYSTEM = load_system("hgx-h100")


def _replica() -> Replica:
    """Llama 3.1 8B in bf16 on one H100 (its step model is cached after the first build)."""
    return build_replica(preset("llama3.1-8b"), SYSTEM.device, SYSTEM, efficiency_for(SYSTEM.device),  # type: ignore[arg-type]
                         precision="bf16", kv_precision="bf16")


def _spec(concurrency: int, inputs: Distribution | None = None, outputs: Distribution | None = None,
          **kw: object) -> ServingSpec:
    return ServingSpec(input_tokens=inputs or Distribution(mean=1024), output_tokens=outputs or Distribution(mean=256),
                       scenario="concurrency", concurrency=concurrency, **kw)  # type: ignore[arg-type]


def test_concurrency_implies_the_closed_loop_scenario() -> None:
    """`concurrency: N` alone sets scenario 'concurrency'; writing the scenario too is accepted; offline stays the
    default without it."""
    assert parse_inference({"input_tokens": 10, "concurrency": 8}, "s.yaml").scenario == "concurrency"
    spec = parse_inference({"input_tokens": 10, "concurrency": 8, "scenario": "concurrency", "engine": "vllm"},
                           "s.yaml")
    assert (spec.scenario, spec.concurrency, spec.engine) == ("concurrency", 8, "vllm")
    assert parse_inference({"input_tokens": 10}, "s.yaml").scenario == "offline"


@pytest.mark.parametrize(("data", "field"), [
    ({"concurrency": 0}, "inference.concurrency"),
    ({"concurrency": 2.5}, "inference.concurrency"),
    ({"concurrency": "64"}, "inference.concurrency"),
    ({"concurrency": 2**30}, "inference.concurrency"),
    ({"scenario": "concurrency"}, "inference.concurrency"),
    ({"concurrency": 8, "scenario": "server"}, "inference.scenario"),
    ({"concurrency": 8, "scenario": "offline"}, "inference.scenario"),
    ({"concurrency": 8, "arrival_rate_per_s": 5}, "inference.arrival_rate_per_s"),
    ({"concurrency": 8, "disaggregation": {"prefill_replicas": 1, "decode_replicas": 1}}, "inference.disaggregation"),
    ({"concurrency": 8, "num_requests": 23}, "inference.num_requests"),
    ({"concurrency": 8, "measured_requests": "warm"}, "inference.measured_requests"),
    ({"concurrency": 8, "measured_requests": "all", "num_requests": 7}, "inference.num_requests"),
    ({"measured_requests": "all"}, "inference.measured_requests"),
])
def test_bad_concurrency_names_file_field_and_fix(data: dict, field: str) -> None:
    """Each bad closed-loop setting is an EmulatorError naming the file, the field and a fix."""
    with pytest.raises(EmulatorError) as e:
        parse_inference({"input_tokens": 10, **data}, "s.yaml")
    assert e.value.file == "s.yaml" and e.value.field == field and "Fix:" in str(e.value)


def test_concurrency_with_a_trace_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A trace's arrival times and a closed loop exclude each other."""
    trace = tmp_path / "t.csv"
    trace.write_text("0.0,10,5\n")
    with pytest.raises(EmulatorError) as e:
        parse_inference({"trace": str(trace), "concurrency": 4}, str(tmp_path / "s.yaml"))
    assert e.value.field == "inference.trace" and "Fix:" in str(e.value)


def test_recommender_with_concurrency_is_an_error() -> None:
    """A DLRM scenario refuses a closed loop with a fix (its queries are served Offline or Server)."""
    sc = Scenario(path="s.yaml", model=preset("dlrm-small"), device=SYSTEM.device, system=None, num_devices=1)
    with pytest.raises(EmulatorError) as e:
        predict_serving(sc, _spec(4, Distribution(mean=1), Distribution(mean=1)))
    assert e.value.field == "inference.concurrency" and "Fix:" in str(e.value)


def test_one_client_gives_one_prefill_then_one_decode_step_per_token() -> None:
    """At concurrency 1 each request's TTFT is exactly one prefill iteration of its prompt and its TPOT the mean of
    its decode iterations, whose KV read grows by one token each."""
    isl, osl = 500, 40
    res = simulate_closed(STEP, 100_000, Requests(np.zeros(6), np.full(6, isl), np.full(6, osl)), concurrency=1,
                          max_batch=1, max_batch_tokens=4096)
    prefill = STEP.step_s(isl, isl * (isl + 1) / 2, 1, 0)
    decode = STEP.step_s(1, 0.0, 1, 0.0) + STEP.kv_s_per_token * (isl + (osl - 2) / 2)
    assert res.ttft_s == pytest.approx(np.full(6, prefill), rel=1e-9)
    assert res.tpot_s == pytest.approx(np.full(6, decode), rel=1e-9)
    assert np.array_equal(res.arrival_s[1:], res.finish_s[:-1])  # each request is sent as the previous one ends


def test_closed_loop_holds_concurrency_requests_in_flight() -> None:
    """Every request after the first wave is sent at a completion, and no more than `concurrency` are ever in
    flight (sends at a completion's moment count after it)."""
    c, n = 8, 60
    rng = np.random.default_rng(0)
    res = simulate_closed(STEP, 200_000, Requests(np.zeros(n), rng.integers(50, 900, n), rng.integers(2, 200, n)),
                          concurrency=c, max_batch=c, max_batch_tokens=4096)
    assert np.all(res.arrival_s[:c] == 0) and set(res.arrival_s[c:]) <= set(res.finish_s)
    times = np.concatenate([res.arrival_s, res.finish_s])
    step = np.concatenate([np.ones(n), -np.ones(n)])
    order = np.lexsort((step, times))  # at equal times the finish (-1) first
    assert np.cumsum(step[order]).max() == c


@pytest.mark.parametrize("concurrency", [1, 8, 64, 256])
def test_littles_law_throughput_is_concurrency_over_mean_latency(concurrency: int) -> None:
    """Requests/s (measured from the tokens produced) times the mean latency equals the concurrency within 5%, for
    variable prompt and output lengths."""
    spec = _spec(concurrency, Distribution(kind="normal", mean=1500, std=600, minimum=64, maximum=4096),
                 Distribution(kind="lognormal", mean=400, std=300, minimum=2, maximum=2000))
    run = run_closed(_replica(), spec, 1)
    assert run.throughput_samples_per_s * run.stats.latency_mean_s == pytest.approx(concurrency, rel=0.05)


def test_throughput_grows_with_concurrency_until_the_kv_cache_is_full() -> None:
    """Output tokens/s rise with every added client while all their contexts fit the KV cache; past it requests
    queue (TTFT grows) and throughput stays within 10% of its value at capacity."""
    fit = 16
    replica = dataclasses.replace(_replica(), kv_capacity_tokens=fit * (1024 + 256 + KV_BLOCK_TOKENS))
    runs = {c: run_closed(replica, _spec(c), 1) for c in (1, 2, 4, 8, 16, 32, 64)}
    below = [runs[c].throughput_tokens_per_s for c in (1, 2, 4, 8, 16)]
    assert all(a < b for a, b in zip(below, below[1:], strict=False))
    for c in (32, 64):
        assert runs[c].throughput_tokens_per_s == pytest.approx(runs[fit].throughput_tokens_per_s, rel=0.10)
        assert runs[c].stats.ttft_mean_s > 5 * runs[fit].stats.ttft_mean_s


def test_warm_up_wave_is_excluded() -> None:
    """The first wave, sent all at once, queues its prompts; the reported TTFT is the steady state's, below the
    first wave's mean."""
    replica, c = _replica(), 64
    run = run_closed(replica, _spec(c), 1)
    n = 4 * c
    first = simulate_closed(replica.step, replica.kv_capacity_tokens,
                            Requests(np.zeros(n), np.full(n, 1024), np.full(n, 256)), concurrency=c, max_batch=c,
                            max_batch_tokens=replica.max_batch_tokens)
    assert run.stats.ttft_mean_s < float(first.ttft_s[:c].mean())


def test_measuring_all_requests_counts_the_first_burst_and_the_whole_run() -> None:
    """`measured_requests: all` (benchmark_serving's report): every request is measured, so the first wave's queued
    prompts raise the mean TTFT above the steady state's, and the throughput is the run's tokens over its length."""
    replica, c = _replica(), 32
    spec = _spec(c, num_requests=4 * c, measured_requests="all")
    every, steady = run_closed(replica, spec, 1), run_closed(replica, _spec(c, num_requests=4 * c), 1)
    assert every.stats.num_measured_requests == 4 * c and steady.stats.num_measured_requests == 2 * c
    assert every.stats.ttft_mean_s > steady.stats.ttft_mean_s
    res = simulate_closed(replica.step, replica.kv_capacity_tokens,
                          Requests(np.zeros(4 * c), np.full(4 * c, 1024), np.full(4 * c, 256)), concurrency=c,
                          max_batch=c, max_batch_tokens=replica.max_batch_tokens, scheduling=replica.scheduling)
    assert every.throughput_tokens_per_s == pytest.approx(4 * c * 256 / res.makespan_s, rel=1e-9)
    assert every.stats.ttft_mean_s == pytest.approx(float(res.ttft_s.mean()), rel=1e-9)
    assert parse_inference({"input_tokens": 10, "concurrency": 8, "measured_requests": "all", "num_requests": 8},
                           "s.yaml").measured_requests == "all"


def test_clients_spread_over_replicas() -> None:
    """Four replicas with 4 x N clients serve four times the tokens of one replica with N, at the same latencies;
    an uneven split serves between the two neighbouring even ones."""
    replica = _replica()
    one, four = run_closed(replica, _spec(16), 1), run_closed(replica, _spec(64), 4)
    assert four.throughput_tokens_per_s == pytest.approx(4 * one.throughput_tokens_per_s, rel=1e-9)
    assert four.tpot_s == one.tpot_s and four.stats.tokens_per_s_per_device == pytest.approx(
        one.stats.tokens_per_s_per_device, rel=1e-9)
    uneven = run_closed(replica, _spec(66), 4)
    assert four.throughput_tokens_per_s < uneven.throughput_tokens_per_s < run_closed(
        replica, _spec(68), 4).throughput_tokens_per_s


def test_itl_over_all_tokens_matches_tpot_for_equal_lengths() -> None:
    """With one output length for all, the mean gap over all tokens equals the mean TPOT; tokens/s/user is
    1 / mean TPOT."""
    run = run_closed(_replica(), _spec(32), 1)
    assert run.stats.itl_mean_s == pytest.approx(run.stats.tpot_mean_s, rel=0.01)
    assert run.stats.tokens_per_s_per_user == pytest.approx(1 / run.stats.tpot_mean_s, rel=1e-12)


def test_repeated_percentiles_equal_percentiles_of_the_repeated_values() -> None:
    """Percentiles of values counted several times each equal numpy's on the expanded array."""
    rng = np.random.default_rng(1)
    values, counts = rng.random(50), rng.integers(0, 7, 50)
    got, want = repeated_percentiles(values, counts), Percentiles.of(np.repeat(values, counts))
    assert got == pytest.approx(want)  # type: ignore[comparison-overlap]
    assert repeated_percentiles(np.array([1.0]), np.array([0])) == Percentiles(0.0, 0.0, 0.0)


def test_same_spec_gives_identical_results() -> None:
    """The closed loop is deterministic for one seed."""
    spec = _spec(24, Distribution(kind="normal", mean=800, std=200, minimum=16, maximum=2000))
    a, b = run_closed(_replica(), spec, 1), run_closed(_replica(), spec, 1)
    assert a == b


def test_prediction_json_and_text_carry_the_closed_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`emulator predict` of a concurrency scenario reports the closed loop's keys and the engine, and its table
    shows the per-device and per-user throughput and the ITL."""
    path = tmp_path / "s.yaml"
    path.write_text("model: llama3.1-8b\nhardware: {device: h100-sxm, system: hgx-h100, num_devices: 2}\n"
                    "inference: {engine: vllm, input_tokens: 1024, output_tokens: 128, concurrency: 16}\n")
    pred = predict_scenario(load_scenario(str(path)))
    out = pred.to_json()
    loop = out["closed_loop"]
    assert out["serving_scenario"] == "concurrency" and out["engine"] == "vllm" and loop["concurrency"] == 16
    assert set(loop) == {"concurrency", "ttft_mean_s", "tpot_mean_s", "itl_s", "itl_mean_s", "latency_mean_s",
                         "throughput_tokens_per_s_per_device", "throughput_tokens_per_s_per_user",
                         "num_measured_requests", "measured_requests"}
    assert loop["measured_requests"] == "steady"
    assert loop["throughput_tokens_per_s_per_device"] == pytest.approx(out["throughput_tokens_per_s"] / 2)
    text = render_prediction(pred)
    assert "closed loop" in text and "tokens/s per user" in text and "ITL" in text and "on vllm" in text


def test_the_engines_own_cap_on_running_sequences_bounds_the_closed_loop() -> None:
    """More clients than the engine runs at once (`Replica.max_sequences`, the engine's defaults.max_batch_size):
    the rest queue, so TTFT grows and the loop reports the cap as its batch."""
    replica = dataclasses.replace(_replica(), step=STEP)
    spec = _spec(48, Distribution(mean=128), Distribution(mean=32))
    free, capped = (run_closed(dataclasses.replace(replica, max_sequences=cap), spec, 1) for cap in (1024, 16))
    assert (free.max_batch, capped.max_batch) == (48, 16)
    assert capped.stats.ttft_mean_s > 2 * free.stats.ttft_mean_s


def test_a_fixed_length_closed_loop_says_its_ttft_is_the_figure_runs_spread_around() -> None:
    """Fixed lengths keep a closed loop's requests in one pattern; the prediction says what that means for TTFT, and a
    client with varied lengths gets no such note."""
    from emulator.hardware import load_device

    scenario = Scenario(path="s.yaml", model=preset("llama3-8b"), device=load_device("h100-sxm"), system=None,
                        num_devices=1)
    base = {"engine": "vllm", "precision": "bf16", "concurrency": 8, "output_tokens": 100}
    fixed = parse_inference(base | {"input_tokens": 4000}, "s.yaml")
    varied = parse_inference(base | {"input_tokens": {"distribution": "uniform", "min": 3200, "max": 4000}}, "s.yaml")
    assert any("fixed input and output lengths" in n for n in predict_serving(scenario, fixed).notes)
    assert not any("fixed input and output lengths" in n for n in predict_serving(scenario, varied).notes)


def test_a_request_path_keeps_a_closed_loops_waves_together() -> None:
    """Equal requests that finish within a few decode iterations of each other: with no request path the first
    one's replacement is prefilled while the others still decode, each prefill holds the next finisher back, and the
    loop settles into one prompt per iteration (TTFT about two iterations); with a request path longer than those
    few iterations (`host.request_s`, TensorRT-LLM's fitted 40 ms) they are all back before the first is prefilled,
    and the wave stays whole: TTFT grows by far more than the path itself, TPOT falls (their prefills no longer
    stall the others' decodes one by one)."""
    loops = []
    for ingress in (0.0, 0.04):
        spec = parse_inference({"engine": "trtllm", "precision": "bf16", "input_tokens": 4096, "output_tokens": 256,
                                "concurrency": 8, "num_requests": 160, "measured_requests": "all",
                                "max_batch_tokens": 5632, "engine_settings": {"host.request_s": ingress}}, "s.yaml")
        scenario = Scenario(path="s.yaml", model=preset("llama3.1-8b"), device=SYSTEM.device, system=SYSTEM,
                            num_devices=1)
        loop = predict_serving(scenario, spec).closed_loop
        assert loop is not None
        loops.append(loop)
    conveyor, waves = loops
    assert waves.ttft_mean_s > conveyor.ttft_mean_s + 3 * 0.04
    assert waves.tpot_mean_s < conveyor.tpot_mean_s
