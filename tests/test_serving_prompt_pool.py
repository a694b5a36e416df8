"""A client's prompt pool (`inference.prompt_pool`) and the engine's prefix cache serving the repeats
(`serving.prompt_cache`): the key's checks, the draws, the simulator's prefill and eviction, and what predictions
say."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emulator.errors import EmulatorError
from emulator.hardware import load_device
from emulator.scenario import Distribution, Scenario, parse_inference
from emulator.scenario.prompt_pool import PromptPool
from emulator.serving import predict_serving
from emulator.serving.replica import KV_BLOCK_TOKENS, Scheduling, StepModel
from emulator.serving.simulator import Requests, make_requests, simulate, simulate_closed
from emulator.workloads.presets import preset

GRID = (1.0, 64.0, 1024.0, 8192.0)
STEP = StepModel(grid=GRID, dense_s=(0.020, 0.021, 0.045, 0.33), head_s=(1e-4, 1.2e-4, 4e-4, 2.5e-3),
                 kv_s_per_token=2e-8, pair_s=3e-9, overhead_s=1e-3, error_band=0.1)
CACHING = Scheduling(prefix_caching=True)
ENTRY = (1000 - 1) // KV_BLOCK_TOKENS * KV_BLOCK_TOKENS  # what a 1,000-token prompt's cache entry holds


def test_the_key_takes_a_count_or_a_mapping() -> None:
    base = {"input_tokens": 1000, "output_tokens": 10, "concurrency": 4}
    assert parse_inference({**base, "prompt_pool": 100}, "s.yaml").prompt_pool == PromptPool(100)
    pool = parse_inference({**base, "prompt_pool": {"prompts": 8, "sampling": "random", "warmup_requests": 16}},
                           "s.yaml").prompt_pool
    assert pool == PromptPool(8, "random", 16) and pool.to_dict()["warmup_requests"] == 16
    assert parse_inference(base, "s.yaml").prompt_pool is None


@pytest.mark.parametrize(("extra", "field", "why"), [
    ({"prompt_pool": 0}, "inference.prompt_pool", ">= 1"),
    ({"prompt_pool": {"prompts": 10, "sampling": "roundrobin"}}, "inference.prompt_pool.sampling", "shuffle, random"),
    ({"prompt_pool": {"prompts": 10, "warm": 3}}, "inference.prompt_pool.warm", "warmup_requests"),
    ({"prompt_pool": {"sampling": "random"}}, "inference.prompt_pool.prompts", "missing"),
    ({"prompt_pool": 10, "trace": "t.csv"}, "inference.prompt_pool", "own prompts"),
    ({"prompt_pool": 10, "batch_size": 4, "disaggregation": {"prefill_replicas": 1, "decode_replicas": 1}},
     "inference.prompt_pool", "aggregated replicas only"),
])
def test_a_bad_pool_is_an_error_naming_the_field_and_the_fix(tmp_path, extra: dict,  # type: ignore[no-untyped-def]
                                                            field: str, why: str) -> None:
    data = {"input_tokens": 1000, "output_tokens": 10, **extra}
    if "trace" in data:
        trace = tmp_path / "t.csv"
        trace.write_text("0.0,900,10\n", encoding="utf-8")
        data["trace"] = str(trace)
        del data["input_tokens"]
    with pytest.raises(EmulatorError) as e:
        parse_inference(data, "s.yaml")
    assert (e.value.file, e.value.field) == ("s.yaml", field)
    assert why in e.value.message and "Fix" in e.value.message


def test_requests_take_their_prompts_from_the_pool_and_nothing_else_changes() -> None:
    """Each request's length is its pool prompt's; arrivals and output lengths are the draws without a pool."""
    inputs = Distribution(kind="uniform", mean=1000, minimum=100, maximum=4000)
    outputs = Distribution(kind="uniform", mean=100, minimum=10, maximum=500)
    plain = make_requests(inputs, outputs, 300, 5.0, 3)
    pooled = make_requests(inputs, outputs, 300, 5.0, 3, PromptPool(40, "shuffle", 25))
    assert np.array_equal(plain.arrival_s, pooled.arrival_s) and np.array_equal(plain.output_tokens,
                                                                                pooled.output_tokens)
    assert pooled.prompt_id is not None and pooled.pool_tokens is not None and pooled.warm_ids is not None
    assert np.array_equal(pooled.input_tokens, pooled.pool_tokens[pooled.prompt_id])
    order = np.concatenate([pooled.warm_ids, pooled.prompt_id])
    for k in range(0, 320, 40):  # shuffle: every prompt once per round
        assert sorted(order[k:k + 40].tolist()) == list(range(40))
    drawn = make_requests(inputs, outputs, 300, 5.0, 3, PromptPool(40, "random"))
    assert drawn.prompt_id is not None and drawn.prompt_id.min() >= 0 and drawn.prompt_id.max() < 40
    assert len(set(drawn.prompt_id[:40].tolist())) < 40  # with replacement: repeats within a round
    mine = pooled.share(1, 3)
    assert mine.prompt_id is not None and mine.warm_ids is not None
    assert np.array_equal(mine.prompt_id, pooled.prompt_id[1::3]) and np.array_equal(mine.warm_ids,
                                                                                    pooled.warm_ids[1::3])


def _one_prompt(n: int, warm: list[int]) -> Requests:
    return Requests(np.arange(n) * 10.0, np.full(n, 1000), np.full(n, 4), np.zeros(n, dtype=np.int64),
                    np.array([1000]), np.array(warm, dtype=np.int64))


def _prefill_tokens(result) -> int:  # type: ignore[no-untyped-def]
    return int(sum(log.prefill_tokens.dot(log.count) for log in result.iterations))


def test_a_repeated_prompt_is_prefilled_once_then_only_past_its_cached_blocks() -> None:
    """Ten lone requests with the same 1,000-token prompt: the first prefills it whole, each later one only the
    tokens past the entry's whole blocks (attending over them); the warm-up's prompt is cached from the start; an
    engine without a prefix cache prefills every one whole."""
    cold = simulate(STEP, 100_000, _one_prompt(10, []), max_batch=8, max_batch_tokens=4096, scheduling=CACHING)
    assert _prefill_tokens(cold) == 1000 + 9 * (1000 - ENTRY)
    assert cold.cached_prompt_share == pytest.approx(9 * ENTRY / 10_000)
    rest = 1000 - ENTRY
    assert cold.ttft_s[1] == pytest.approx(STEP.step_s(rest, rest * ENTRY + rest * (rest + 1) / 2, 1, 0), rel=1e-9)
    warm = simulate(STEP, 100_000, _one_prompt(10, [0]), max_batch=8, max_batch_tokens=4096, scheduling=CACHING)
    assert _prefill_tokens(warm) == 10 * (1000 - ENTRY)
    off = simulate(STEP, 100_000, _one_prompt(10, [0]), max_batch=8, max_batch_tokens=4096)
    plain = simulate(STEP, 100_000, dataclasses.replace(_one_prompt(10, []), prompt_id=None), max_batch=8,
                     max_batch_tokens=4096)
    assert _prefill_tokens(off) == 10_000 and off.cached_prompt_share == 0.0
    assert np.array_equal(off.first_token_s, plain.first_token_s) and np.array_equal(off.finish_s, plain.finish_s)


def test_an_entry_is_evicted_when_running_requests_need_its_room() -> None:
    """Two prompts taken in turn by one client: with room for both entries beside the running request every request
    after the first two hits; with less, the least recently released entry (the next prompt's) is evicted each time
    and every request prefills whole."""
    n = 20
    reqs = Requests(np.zeros(n), np.full(n, 1000), np.full(n, 4), np.arange(n) % 2, np.array([1000, 1000]),
                    np.zeros(0, dtype=np.int64))
    roomy = simulate_closed(STEP, 2200, reqs, concurrency=1, max_batch=1, max_batch_tokens=4096, scheduling=CACHING)
    tight = simulate_closed(STEP, 1900, reqs, concurrency=1, max_batch=1, max_batch_tokens=4096, scheduling=CACHING)
    assert _prefill_tokens(roomy) == 2 * 1000 + (n - 2) * (1000 - ENTRY)
    assert _prefill_tokens(tight) == n * 1000 and tight.cached_prompt_share == 0.0
    assert roomy.num_preemptions == tight.num_preemptions == 0


def test_concurrent_requests_share_one_entry_and_fit_where_their_own_copies_would_not() -> None:
    """32 requests of one cached 1,000-token prompt: each allocates its tail and output only, so under admission
    that keeps every request's output free (TensorRT-LLM's) all of them run at once in a cache where copies of
    the prompt would fit 20."""
    n = 33
    reqs = Requests(np.r_[0.0, np.full(n - 1, 1.0)], np.full(n, 1000), np.r_[2, np.full(n - 1, 200)],
                    np.zeros(n, dtype=np.int64), np.array([1000]), np.zeros(0, dtype=np.int64))
    guarded = dataclasses.replace(CACHING, reserve_output=1.0)
    shared = simulate(STEP, 25_000, reqs, max_batch=n, max_batch_tokens=8192, scheduling=guarded)
    copies = simulate(STEP, 25_000, dataclasses.replace(reqs, prompt_id=None), max_batch=n, max_batch_tokens=8192,
                      scheduling=guarded)
    assert copies.max_concurrency == 20 and shared.max_concurrency == n - 1
    assert shared.num_preemptions == 0 and shared.makespan_s < copies.makespan_s


def _closed(engine: str, pool: int | None, settings: tuple = ()) -> object:
    data = {"engine": engine, "precision": "bf16", "input_tokens": 4000, "output_tokens": 50, "concurrency": 16}
    if pool:
        data["prompt_pool"] = {"prompts": pool, "warmup_requests": 32}
    spec = dataclasses.replace(parse_inference(data, "s.yaml"), engine_settings=settings)
    scenario = Scenario(path="s.yaml", model=preset("llama3-8b"), device=load_device("h100-sxm"), system=None,
                        num_devices=1)
    return predict_serving(scenario, spec)


def test_a_small_pool_is_served_from_the_cache_and_the_prediction_says_how_much() -> None:
    base, pooled = _closed("vllm", None), _closed("vllm", 20)
    off = _closed("vllm", 20, (("defaults.prefix_caching", False),))
    assert pooled.closed_loop.ttft_mean_s < 0.5 * base.closed_loop.ttft_mean_s  # type: ignore[attr-defined]
    assert pooled.closed_loop.tpot_mean_s < base.closed_loop.tpot_mean_s  # type: ignore[attr-defined]
    note = next(n for n in pooled.notes if n.startswith("prompt pool"))  # type: ignore[attr-defined]
    assert "drawn from 20 distinct ones (shuffle, after 32 warm-up request(s))" in note
    share = pooled.cached_prompt_share  # type: ignore[attr-defined]
    assert f"served {share:.1%}" in note and pooled.to_json()["cached_prompt_share"] == share  # type: ignore[attr-defined]
    assert "cached_prompt_share" not in base.to_json()  # type: ignore[attr-defined]
    # every prompt seen in the warm-up: nearly all, at most each prompt's whole blocks
    assert 0.9 < share <= (4000 - 1) // KV_BLOCK_TOKENS * KV_BLOCK_TOKENS / 4000 + 5e-4
    assert off.closed_loop.ttft_mean_s == pytest.approx(base.closed_loop.ttft_mean_s)  # type: ignore[attr-defined]
    assert any("caches no prompt blocks" in n for n in off.notes)  # type: ignore[attr-defined]


def test_a_shared_prefix_and_a_pool_together_take_the_whole_entry() -> None:
    """Prompts that start with a 512-token system prompt and repeat: after the first, each prefills only past its
    prompt's entry, which holds the prefix too."""
    scheduling = Scheduling(prefix_caching=True, cached_prefix_tokens=512)
    run = simulate(STEP, 100_000, _one_prompt(6, []), max_batch=8, max_batch_tokens=4096, scheduling=scheduling)
    assert _prefill_tokens(run) == 1000 + 5 * (1000 - ENTRY)
    assert run.num_preemptions == 0
