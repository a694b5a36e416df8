"""A shared prompt prefix (`inference.shared_prefix_tokens`) and the engine's prefix cache
(`defaults.prefix_caching`): the key's checks, the simulator's prefill and KV accounting, and what predictions say."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emulator.errors import EmulatorError
from emulator.hardware import load_device
from emulator.scenario import Scenario, parse_inference
from emulator.serving import predict_serving
from emulator.serving.replica import KV_BLOCK_TOKENS, Scheduling, StepModel
from emulator.serving.simulator import Requests, simulate, simulate_closed
from emulator.stacks import load_stack
from emulator.workloads.presets import preset

GRID = (1.0, 64.0, 1024.0, 8192.0)
STEP = StepModel(grid=GRID, dense_s=(0.020, 0.021, 0.045, 0.33), head_s=(1e-4, 1.2e-4, 4e-4, 2.5e-3),
                 kv_s_per_token=2e-8, pair_s=3e-9, overhead_s=1e-3, error_band=0.1)
CACHED = Scheduling(prefix_caching=True, cached_prefix_tokens=1024)


@pytest.mark.parametrize(("data", "why"), [
    ({"input_tokens": 1000, "shared_prefix_tokens": 1000}, "not fewer than input_tokens"),
    ({"input_tokens": {"distribution": "normal", "mean": 1000, "std": 100}, "shared_prefix_tokens": 500},
     "input_tokens' min, 1"),
    ({"input_tokens": 1000, "shared_prefix_tokens": -1}, ""),
    ({"input_tokens": 1000, "shared_prefix_tokens": "long"}, ""),
])
def test_a_prefix_as_long_as_a_prompt_is_an_error_naming_the_fix(data: dict, why: str) -> None:
    """The shared prefix must leave every prompt tokens of its own: an error names the file, the field and a fix."""
    with pytest.raises(EmulatorError) as e:
        parse_inference(data, "s.yaml")
    assert (e.value.file, e.value.field) == ("s.yaml", "inference.shared_prefix_tokens")
    assert why in e.value.message and "Fix" in e.value.message


def test_a_trace_bounds_the_prefix_by_its_shortest_prompt(tmp_path) -> None:  # type: ignore[no-untyped-def]
    trace = tmp_path / "t.csv"
    trace.write_text("0.0,900,10\n0.5,300,10\n", encoding="utf-8")
    assert parse_inference({"trace": str(trace), "shared_prefix_tokens": 299}, "s.yaml").shared_prefix_tokens == 299
    with pytest.raises(EmulatorError, match="the trace's shortest prompt, 300"):
        parse_inference({"trace": str(trace), "shared_prefix_tokens": 300}, "s.yaml")


def test_after_the_first_prompt_each_prefill_starts_past_the_cached_prefix() -> None:
    """Two lone requests of 1,500 tokens sharing 1,024: the first prefills all of them, the second only the 476
    past the cached blocks, attending over the 1,024 before them; without the cache both prefill everything."""
    reqs = Requests(np.array([0.0, 100.0]), np.array([1500, 1500]), np.array([4, 4]))
    cold = simulate(STEP, 100_000, reqs, max_batch=8, max_batch_tokens=4096)
    warm = simulate(STEP, 100_000, reqs, max_batch=8, max_batch_tokens=4096, scheduling=CACHED)
    full = STEP.step_s(1500, 1500 * 1501 / 2, 1, 0)
    rest = 1500 - 1024
    assert cold.ttft_s[1] == pytest.approx(full, rel=1e-9)
    assert warm.ttft_s[0] == pytest.approx(full, rel=1e-9)
    assert warm.ttft_s[1] == pytest.approx(STEP.step_s(rest, rest * 1024 + rest * (rest + 1) / 2, 1, 0), rel=1e-9)


def test_the_cache_holds_the_prefix_once_so_more_requests_fit() -> None:
    """Under admission that keeps every request's whole output free (TensorRT-LLM's), 26 requests of 1,200 + 300
    tokens fit a 40,000-token cache each with its own prefix, and all 47 with the 1,024-token prefix held once."""
    n = 48
    arrival = np.r_[0.0, np.full(n - 1, 1.0)]  # the first request caches the prefix before the others come
    reqs = Requests(arrival, np.full(n, 1200), np.r_[2, np.full(n - 1, 300)])
    guarded = Scheduling(reserve_output=1.0)
    cold = simulate(STEP, 40_000, reqs, max_batch=n, max_batch_tokens=8192, scheduling=guarded)
    warm = simulate(STEP, 40_000, reqs, max_batch=n, max_batch_tokens=8192,
                    scheduling=dataclasses.replace(CACHED, reserve_output=1.0))
    assert (cold.max_concurrency, warm.max_concurrency) == (26, n - 1)
    assert cold.num_preemptions == warm.num_preemptions == 0 and warm.makespan_s < cold.makespan_s


def test_a_closed_loop_with_the_prefix_cached_answers_sooner() -> None:
    reqs = Requests(np.zeros(96), np.full(96, 2000), np.full(96, 64))
    cold = simulate_closed(STEP, 400_000, reqs, concurrency=16, max_batch=16, max_batch_tokens=8192)
    warm = simulate_closed(STEP, 400_000, reqs, concurrency=16, max_batch=16, max_batch_tokens=8192,
                           scheduling=CACHED)
    later = slice(32, None)  # the first wave of 16 prompts computes the prefix before any is cached
    assert float(warm.ttft_s[later].mean()) < 0.6 * float(cold.ttft_s[later].mean())
    assert np.array_equal(warm.ttft_s[:4], cold.ttft_s[:4])
    assert float(warm.tpot_s.mean()) < float(cold.tpot_s.mean())


def _scenario(engine: str, prefix: int) -> tuple[Scenario, object]:
    data = {"engine": engine, "precision": "bf16", "input_tokens": 4000, "output_tokens": 100, "concurrency": 8}
    if prefix:
        data["shared_prefix_tokens"] = prefix
    spec = parse_inference(data, "s.yaml")
    return Scenario(path="s.yaml", model=preset("llama3-8b"), device=load_device("h100-sxm"), system=None,
                    num_devices=1), spec


def test_engines_with_a_prefix_cache_serve_a_shared_system_prompt_faster_and_say_so() -> None:
    """vLLM, SGLang and TensorRT-LLM cache prompt blocks by default; the eager program recomputes the prefix (the
    prediction says which); a prefix shorter than one KV block caches nothing."""
    for engine in ("vllm", "sglang", "trtllm"):
        assert load_stack(engine, "serving").get("defaults.prefix_caching") is True
        base = predict_serving(*_scenario(engine, 0)).closed_loop
        shared = predict_serving(*_scenario(engine, 3000))
        assert shared.closed_loop is not None and base is not None
        assert shared.closed_loop.ttft_mean_s < 0.6 * base.ttft_mean_s
        assert any(f"{3000 // KV_BLOCK_TOKENS * KV_BLOCK_TOKENS} of them taken from the engine's prefix cache" in n
                   for n in shared.notes)
    eager, eager_prefix = (predict_serving(*_scenario("eager", p)) for p in (0, 3000))
    assert eager_prefix.closed_loop.ttft_mean_s == eager.closed_loop.ttft_mean_s  # type: ignore[union-attr]
    assert any("recomputed for each request" in n for n in eager_prefix.notes)
    scenario, spec = _scenario("vllm", 3000)
    off = dataclasses.replace(spec, engine_settings=(("defaults.prefix_caching", False),))  # type: ignore[type-var]
    assert predict_serving(scenario, off).closed_loop.ttft_mean_s == pytest.approx(  # type: ignore[union-attr]
        predict_serving(*_scenario("vllm", 0)).closed_loop.ttft_mean_s)  # type: ignore[union-attr]
    tiny = predict_serving(*_scenario("vllm", KV_BLOCK_TOKENS - 1))
    assert any("shorter than one KV block" in n for n in tiny.notes)


def test_a_disaggregated_prefill_pool_caches_the_prefix() -> None:
    data = {"engine": "vllm", "precision": "bf16", "input_tokens": 4000, "output_tokens": 100, "batch_size": 16,
            "disaggregation": {"prefill_replicas": 1, "decode_replicas": 1}, "num_requests": 200}
    scenario = Scenario(path="s.yaml", model=preset("llama3-8b"), device=load_device("h100-sxm"), system=None,
                        num_devices=2)
    cold = predict_serving(scenario, parse_inference(data, "s.yaml"))
    warm = predict_serving(scenario, parse_inference({**data, "shared_prefix_tokens": 3000}, "s.yaml"))
    assert warm.ttft_s.p50 < cold.ttft_s.p50
    assert any("in the prefill pool" in n for n in warm.notes)


@pytest.mark.parametrize("key", ["shared_prefix_tokens", "prompt_pool"])
def test_recommenders_refuse_cached_prompts(key: str) -> None:
    """A shared prefix and a client's prompt pool (tests/test_serving_prompt_pool.py) are LLM prompts."""
    spec = parse_inference({"input_tokens": 10, "output_tokens": 1, "batch_size": 64, key: 4}, "s.yaml")
    scenario = Scenario(path="s.yaml", model=preset("dlrm-v2"), device=load_device("h100-sxm"), system=None,
                        num_devices=1)
    with pytest.raises(EmulatorError) as e:
        predict_serving(scenario, spec)
    assert e.value.field == f"inference.{key}" and "Fix" in e.value.message


def test_a_sizing_files_traffic_states_the_shared_prefix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from emulator.sizing import load_sizing

    text = ("goal: serve\nmodel: llama3-8b\nserve:\n  traffic: {arrival_rate_per_s: 20, input_tokens: 4000, "
            "output_tokens: 256, shared_prefix_tokens: PREFIX}\n  slo: {ttft_p99_s: 2.0, tpot_p99_s: 0.1}\n"
            "candidates: [{device: h100-sxm, system: hgx-h100}]\n")
    path = tmp_path / "size.yaml"
    path.write_text(text.replace("PREFIX", "3000"), encoding="utf-8")
    serve = load_sizing(path).serve
    assert serve is not None and serve.spec.shared_prefix_tokens == 3000
    path.write_text(text.replace("PREFIX", "4000"), encoding="utf-8")
    with pytest.raises(EmulatorError) as e:
        load_sizing(path)
    assert e.value.field == "serve.traffic.shared_prefix_tokens" and "Fix" in e.value.message

