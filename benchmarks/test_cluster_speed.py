"""How fast the cluster model is: a 405B plan on 16,384 GPUs from cold traces, and plans that reuse traces.

Bounds from the issue: one 405B plan on 16,384 GPUs traced and predicted in under 2 s (torch's one-time
lazy imports are warmed up on a tiny model first: they are process start-up, not planning); further plans of
the same model reuse the traces and run at 100 plans/s or more.
"""

from __future__ import annotations

import dataclasses
import time

from emulator.cluster import predict_training, shard, training
from emulator.engine.trace import trace_workload
from emulator.hardware import load_device, load_system
from emulator.scenario import Parallel, Scenario, Training
from emulator.workloads.presets import preset


def _scenario(num_devices: int, **parallel: object) -> Scenario:
    return Scenario(path="<bench>", model=preset("llama3.1-405b"), device=load_device("h100-sxm"),
                    system=load_system("hgx-h100"), num_devices=num_devices,
                    training=Training(seq_len=8192, global_batch_size=2048, parallel=Parallel(**parallel),
                                      total_tokens=15.6e12))


def _clear() -> None:
    trace_workload.cache_clear()
    shard._stage_trace.cache_clear()
    training._model_flops.cache_clear()
    training._TIMES.clear()


def _warm_torch() -> None:
    tiny = preset("llama3-8b").scaled(num_layers=1, hidden_size=256, num_heads=4, num_kv_heads=2, head_dim=64,
                                      ffn_hidden_size=512, vocab_size=1024)
    predict_training(Scenario(path="<warm>", model=tiny, device=load_device("h100-sxm"),
                              system=load_system("hgx-h100"), num_devices=2,
                              training=Training(seq_len=128, global_batch_size=2, parallel=Parallel(dp=2))))


def test_405b_plan_on_16k_gpus_from_cold(benchmark) -> None:  # type: ignore[no-untyped-def]
    """Trace and predict llama3.1-405b, tp 8, pp 16, dp 128 on 16,384 H100s in under 2 s."""
    _warm_torch()
    scenario = _scenario(16384, tp=8, pp=16, dp=128, zero=1, sequence_parallel=True)

    def run():  # type: ignore[no-untyped-def]
        return predict_training(scenario)

    out = benchmark.pedantic(run, setup=_clear, rounds=3, iterations=1)
    assert out.step_time_s > 0
    assert benchmark.stats.stats.max < 2.0


def test_plans_per_second_with_reused_traces(benchmark) -> None:  # type: ignore[no-untyped-def]
    """Plans that differ in dp, ZeRO stage and recompute reuse the traces: at least 100 plans/s."""
    base = _scenario(16384, tp=8, pp=16, dp=128, sequence_parallel=True)
    predict_training(base)
    plans = []
    for dp in (128, 64, 32, 16):
        for zero in (0, 1, 2, 3):
            for recompute in ("none", "selective", "full"):
                tr = dataclasses.replace(base.training, recompute=recompute, parallel=dataclasses.replace(
                    base.training.parallel, dp=dp, zero=zero))  # type: ignore[union-attr]
                plans.append(dataclasses.replace(base, num_devices=8 * 16 * dp, training=tr))

    def run() -> float:
        start = time.perf_counter()
        for s in plans:
            predict_training(s)
        return len(plans) / (time.perf_counter() - start)

    rate = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert rate >= 100, f"{rate:.0f} plans/s"
