"""Replica model: step time from traced kernels, KV capacity from memory, and the end-to-end JSON fields."""

from __future__ import annotations

import pytest

from emulator.engine.calibration import efficiency_for
from emulator.errors import EmulatorError
from emulator.hardware import load_device, load_system
from emulator.scenario import Distribution, Scenario, ServingSpec, Slo
from emulator.serving import predict_serving
from emulator.serving.replica import build_replica, kv_bytes_per_token
from emulator.workloads.config import TransformerConfig
from emulator.workloads.presets import preset

SMALL = TransformerConfig(name="small", num_layers=4, hidden_size=1024, num_heads=8, num_kv_heads=4,
                          ffn_hidden_size=4096, vocab_size=32000, max_seq_len=4096)
H100 = load_device("h100-sxm")


def test_step_time_grows_with_tokens_and_context() -> None:
    """More tokens, more attention pairs and more KV tokens never make an iteration faster."""
    r = build_replica(SMALL, H100, None, efficiency_for(H100), precision="bf16", kv_precision="bf16")
    s = r.step
    assert s.step_s(64, 0, 64, 0) <= s.step_s(512, 0, 64, 0) <= s.step_s(4096, 0, 64, 0)
    assert s.step_s(64, 0, 64, 1e5) > s.step_s(64, 0, 64, 0) and s.kv_s_per_token > 0 and s.pair_s > 0


def test_kv_capacity_is_memory_left_after_weights() -> None:
    """KV tokens = free fraction x (memory - weights - workspace) / bytes per token, in whole blocks."""
    r = build_replica(SMALL, H100, None, efficiency_for(H100), precision="fp8", kv_precision="fp8")
    per_token = 4 * 2 * 4 * 128 * 1  # layers x (k, v) x kv heads x head_dim x 1 byte
    assert kv_bytes_per_token(SMALL, "fp8", 1, 1) == per_token
    expected = 0.9 * (H100.memory_bytes - r.weight_bytes - r.workspace_bytes) / per_token
    assert r.kv_capacity_tokens == pytest.approx(expected, rel=1e-3) and r.kv_capacity_tokens % 16 == 0


def test_weights_that_do_not_fit_are_a_clear_error() -> None:
    """Llama 2 70B in bf16 on one H100 leaves no KV room: the error says to raise tp."""
    with pytest.raises(EmulatorError, match="raise inference.parallel.tp"):
        build_replica(preset("llama2-70b"), H100, None, efficiency_for(H100), precision="bf16", kv_precision="bf16")


def test_predict_serving_reports_the_json_fields() -> None:
    """An 8-GPU Server prediction has every field of the interface, latencies as p50/p90/p99."""
    system = load_system("hgx-h100")
    sc = Scenario(path="s.yaml", model=SMALL, device=system.device, system=system, num_devices=8)
    spec = ServingSpec(precision="fp8", tp=2, input_tokens=Distribution(mean=256), output_tokens=Distribution(mean=32),
                       scenario="server", slo=Slo(ttft_p99_s=0.5, tpot_p99_s=0.05), num_requests=800)
    out = predict_serving(sc, spec).to_json()
    for key in ("throughput_tokens_per_s", "throughput_samples_per_s", "kv_cache_bytes", "max_batch", "power_w",
                "energy_per_token_j", "provenance", "error_band", "replicas", "replica", "notes"):
        assert key in out
    assert out["replicas"] == 4 and out["replica"]["tp"] == 2
    assert set(out["ttft_s"]) == {"p50", "p90", "p99"} and out["ttft_s"]["p99"] <= 0.5
    assert system.device.power.idle_w * 8 <= out["power_w"] <= system.device.power.tdp_w * 8


def _vllm_with(**values: object):  # type: ignore[no-untyped-def]
    """The vLLM stack profile with some items' values replaced."""
    import dataclasses

    from emulator.stacks import load_stack

    base = load_stack("vllm", "serving")
    items = dict(base.items)
    for key, value in values.items():
        items[key.replace("__", ".")] = dataclasses.replace(items[key.replace("__", ".")], value=value)
    return dataclasses.replace(base, items=items)


def test_host_time_per_token_rides_with_each_produced_token() -> None:
    """`host.per_token_s` adds that time per token an iteration produces (the output-head rows) and nothing to the
    device's work."""
    from emulator.serving.replica import step_model

    system = load_system("hgx-h100")
    args = (preset("llama3.1-8b"), system.device, system, efficiency_for(system.device), "bf16", "bf16", 1, 1, 1, 0.0)
    a = step_model(*args, engine=_vllm_with(host__per_token_s=0.0))
    b = step_model(*args, engine=_vllm_with(host__per_token_s=5e-5))
    assert b.step_s(64, 0.0, 64, 1e5) - a.step_s(64, 0.0, 64, 1e5) == pytest.approx(64 * 5e-5, rel=1e-9)
    assert b.step_s(512, 1e5, 0, 0.0) == a.step_s(512, 1e5, 0, 0.0)  # a prefill chunk that produces no token
    assert b.head(64) == a.head(64) and b.dense(64) == a.dense(64) and b.kv_s_per_token == a.kv_s_per_token


def test_an_overlapping_engine_takes_the_longer_of_host_and_device_time() -> None:
    """`host.overlap`: the iteration takes the longer of the host's time and the device's dense and head work, and
    the attention terms follow; without it, the sum."""
    from emulator.serving.replica import step_model
    from emulator.serving.steptable import step_table

    system = load_system("hgx-h100")
    args = (preset("llama3.1-8b"), system.device, system, efficiency_for(system.device), "bf16", "bf16", 1, 1, 1, 2e-3)
    serial = step_model(*args, engine=_vllm_with(host__per_token_s=1e-4))
    overlapped = step_model(*args, engine=_vllm_with(host__per_token_s=1e-4, host__overlap=True))
    for rows, kv in ((8, 0.0), (256, 3e5)):
        device = serial.dense(rows) + serial.head(rows)
        host = 2e-3 + 1e-4 * rows
        attention = serial.kv_s_per_token * kv
        assert serial.step_s(rows, 0.0, rows, kv) == pytest.approx(host + device + attention, rel=1e-12)
        assert overlapped.step_s(rows, 0.0, rows, kv) == pytest.approx(max(host, device) + attention, rel=1e-12)
        table = step_table(overlapped, 1024)
        assert table.step_s(rows, 0.0, rows, kv) == overlapped.step_s(rows, 0.0, rows, kv)
    assert host > device  # the last case is host bound: the device's time is hidden


def test_moe_kernel_scale_slows_only_the_grouped_expert_gemms() -> None:
    """`moe.grouped_gemm_time_scale` scales the grouped expert GEMMs' time: an MoE step grows, a dense one does
    not, and the KV and attention slopes stay."""
    import dataclasses

    from emulator.serving.replica import step_model
    from emulator.stacks import load_stack

    system = load_system("hgx-h100")
    base = load_stack("trtllm", "serving")
    items = dict(base.items)
    items["moe.grouped_gemm_time_scale"] = dataclasses.replace(items["moe.grouped_gemm"], value=1.5)
    slow = dataclasses.replace(base, items=items)
    table = efficiency_for(system.device)
    for name, grows in (("mixtral-8x7b", True), ("llama3.1-8b", False)):
        args = (preset(name), system.device, system, table, "bf16", "bf16", 2, 1, 1, 0.0)
        a, b = step_model(*args, engine=base), step_model(*args, engine=slow)
        assert (b.dense(256) > a.dense(256)) is grows and b.dense(256) >= a.dense(256)
        assert b.kv_s_per_token == a.kv_s_per_token and b.pair_s == a.pair_s


def test_expert_parallel_decode_waits_for_the_busiest_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """ep > 1: a step's routed-expert time is the busiest expert-parallel rank's, so a small decode batch pays the
    routing imbalance (`stats.busiest_rank_factor`) and a prefill-sized one nearly none; tensor-parallel experts
    (ep 1) split every expert evenly and pay none."""
    import emulator.serving.replica as replica
    from emulator.stacks import load_stack

    system = load_system("hgx-h100")
    model, engine, table = preset("qwen3-235b-a22b"), load_stack("trtllm", "serving"), efficiency_for(system.device)

    def steps(ep: int, even: bool) -> list[float]:
        replica._CACHE.clear()
        if even:
            monkeypatch.setattr(replica, "busiest_rank_factor", lambda *a: 1.0)
        step = replica.step_model(model, system.device, system, table, "fp8", "fp8", 8, 1, ep, 0.0, engine)
        monkeypatch.undo()
        replica._CACHE.clear()
        return [step.dense(n) for n in (1, 8, 8192)]

    uneven, even = steps(8, False), steps(8, True)
    share = [u / e - 1 for u, e in zip(uneven, even, strict=True)]
    assert all(s > 0 for s in share) and share[0] > share[1] > 10 * share[2]
    assert steps(1, False) == steps(1, True)


def test_an_iteration_with_prompt_tokens_adds_the_engines_host_time_per_layer() -> None:
    """`host.prompt_layer_s`: an iteration carrying prompt tokens takes the host's time per layer on top of the
    device's, however long that is (the device waits for it); decode-only iterations are unchanged."""
    from emulator.serving.replica import step_model
    from emulator.serving.steptable import step_table

    system = load_system("hgx-h100")
    model = preset("llama3.1-8b")
    args = (model, system.device, system, efficiency_for(system.device), "bf16", "bf16", 8, 1, 1, 0.0)
    none = step_model(*args, engine=_vllm_with(host__prompt_layer_s=0.0, host__prompt_launch_s=0.0))
    added = step_model(*args, engine=_vllm_with(host__prompt_layer_s=1e-4, host__prompt_launch_s=0.0))
    assert none.prompt_add_s == 0.0 and added.prompt_add_s == pytest.approx(1e-4 * model.num_layers)
    for n in (64, 16384):  # launch-bound and device-bound prompts alike
        prompt = (n, n * (n + 1) / 2, 1, 0.0)
        assert added.step_s(*prompt) == pytest.approx(none.step_s(*prompt) + added.prompt_add_s)
        assert step_table(added, 1024).step_s(*prompt) == added.step_s(*prompt)
    assert added.step_s(64, 0.0, 64, 1e4) == none.step_s(64, 0.0, 64, 1e4)  # decode only


def test_a_prompt_iteration_adds_the_families_host_time_per_moe_layer() -> None:
    """`host.prompt_moe_layer_s`: per device family, an iteration carrying prompt tokens takes that host time per
    MoE layer on top of the per-layer one; a family without an entry takes the `"*"` one, else none, and a dense
    model none at all."""
    from emulator.serving.replica import step_model

    system = load_system("hgx-h100")
    moe, dense = preset("qwen3-30b-a3b"), preset("llama3.1-8b")

    def added(model, seconds) -> float:  # type: ignore[no-untyped-def]
        engine = _vllm_with(host__prompt_layer_s=1e-4, host__prompt_moe_layer_s=seconds)
        return step_model(model, system.device, system, efficiency_for(system.device), "bf16", "bf16", 1, 1, 1, 0.0,
                          engine=engine).prompt_add_s

    assert moe.num_moe_layers == moe.num_layers > 0 and dense.num_moe_layers == 0
    assert added(moe, {"hopper": 5e-4}) == pytest.approx((1e-4 + 5e-4) * moe.num_layers)
    assert added(moe, {"blackwell": 5e-4}) == pytest.approx(1e-4 * moe.num_layers)
    assert added(moe, {"blackwell": 5e-4, "*": 2e-4}) == pytest.approx(3e-4 * moe.num_layers)
    assert added(dense, {"hopper": 5e-4}) == pytest.approx(1e-4 * dense.num_layers)


def test_an_iteration_with_prompt_tokens_takes_at_least_its_kernel_launches() -> None:
    """`host.prompt_launch_s`: an engine that replays graphs of decode-only batches launches a prompt's iteration
    kernel by kernel, so that iteration takes at least its kernels (and tp all-reduces) times the launch cost; a
    decode-only one is unchanged, and an engine without graphs (its launches already in every step) gets no floor."""
    from emulator.serving.replica import step_model
    from emulator.serving.steptable import step_table

    system = load_system("hgx-h100")
    model = preset("llama3.1-8b")
    args = (model, system.device, system, efficiency_for(system.device), "bf16", "bf16", 8, 1, 1, 0.0)
    graphed = step_model(*args, engine=_vllm_with(host__prompt_launch_s=0.0, host__prompt_layer_s=0.0))
    launched = step_model(*args, engine=_vllm_with(host__prompt_launch_s=2e-5, host__prompt_layer_s=0.0))
    assert graphed.prompt_host_s == 0.0
    kernels = launched.prompt_host_s / 2e-5 - 2 * model.num_layers  # the shard's kernels; all-reduces on top
    assert kernels == pytest.approx(round(kernels)) and 8 * model.num_layers < kernels < 20 * model.num_layers
    small = (64, 64 * 65 / 2, 1, 0.0)  # a 64-token prompt: launch bound at tp 8
    assert graphed.step_s(*small) < launched.prompt_host_s == launched.step_s(*small)
    large = (16384, 16384 * 16385 / 2, 1, 0.0)  # device bound: the floor does not bind
    assert launched.step_s(*large) == graphed.step_s(*large) > launched.prompt_host_s
    assert launched.step_s(64, 0.0, 64, 1e4) == graphed.step_s(64, 0.0, 64, 1e4)  # decode only
    assert step_table(launched, 1024).step_s(*small) == launched.step_s(*small)
    from emulator.stacks import load_stack

    eager = load_stack("eager", "serving").with_settings((("host.prompt_launch_s", 2e-5),))
    assert not eager.get("host.cuda_graphs") and step_model(*args, engine=eager).prompt_host_s == 0.0


def test_the_hosts_items_reuse_the_traced_device_side() -> None:
    """A fit's grid over the host's items (scheduler overhead, time per token, overlap, prompt launches and layers)
    reuses one traced device side: no new trace, and the same step model a fresh build gives."""
    from unittest import mock

    from emulator.serving import replica

    system = load_system("hgx-h100")
    args = (preset("llama3.1-8b"), system.device, system, efficiency_for(system.device), "bf16", "bf16", 2, 1, 1)
    host = {"host__per_token_s": 3e-5, "host__overlap": True, "host__prompt_launch_s": 2e-5,
            "host__prompt_layer_s": 1e-4}
    replica._CACHE.clear()
    replica.step_model(*args, 0.0, engine=_vllm_with())
    with mock.patch.object(replica, "time_trace", side_effect=AssertionError("traced again")):
        reused = replica.step_model(*args, 1e-3, engine=_vllm_with(**host))
    replica._CACHE.clear()
    assert reused == replica.step_model(*args, 1e-3, engine=_vllm_with(**host))
    assert reused.overhead_s == 1e-3 and reused.prompt_add_s == pytest.approx(1e-4 * 32) and reused.overlap_host


def test_the_json_states_the_engines_limits_as_resolved_for_the_device() -> None:
    """`max_batch_tokens_per_replica` and `max_sequences_per_replica`: the engine's per-device defaults resolved
    (vLLM: 8192 tokens and 1024 sequences on an H100, 2048 and 256 on an A100), or the scenario's own budget."""
    spec = ServingSpec(precision="bf16", input_tokens=Distribution(mean=256), output_tokens=Distribution(mean=32),
                       scenario="concurrency", concurrency=8, engine="vllm")
    for system_name, tokens, sequences in (("hgx-h100", 8192, 1024), ("hgx-a100", 2048, 256)):
        system = load_system(system_name)
        sc = Scenario(path="s.yaml", model=SMALL, device=system.device, system=system, num_devices=1)
        out = predict_serving(sc, spec).to_json()
        assert (out["max_batch_tokens_per_replica"], out["max_sequences_per_replica"]) == (tokens, sequences)
    import dataclasses

    own = predict_serving(sc, dataclasses.replace(spec, max_batch_tokens=4096)).to_json()
    assert own["max_batch_tokens_per_replica"] == 4096
