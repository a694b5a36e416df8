"""How fast the cluster model is: a 405B plan on 16,384 GPUs from cold traces, and plans that reuse traces.

Bounds from the issues: one 405B plan on 16,384 GPUs traced and predicted in under 0.2 s from cold caches, the disk
cache of traces off (torch's one-time lazy imports are warmed up on a tiny model first: they are process start-up,
not planning); further plans of the same model reuse the traces and run at 100 plans/s or more, each predicted
alone (the sizing search's 10,000 plans/s is in test_interactive_speed.py). On a quiet 2-core AMD EPYC virtual
machine: about 0.1 s, and about 700 plans/s. The bounds are asserted with `EMULATOR_ACCURACY=1`, else 3x looser
(conftest).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from emulator.cluster import predict_training
from emulator.hardware import load_device, load_system
from emulator.scenario import Parallel, Scenario, Training
from emulator.workloads.presets import preset


def _scenario(num_devices: int, **parallel: Any) -> Scenario:
    return Scenario(path="<bench>", model=preset("llama3.1-405b"), device=load_device("h100-sxm"),
                    system=load_system("hgx-h100"), num_devices=num_devices,
                    training=Training(seq_len=8192, global_batch_size=2048, parallel=Parallel(**parallel),
                                      total_tokens=15.6e12))


def _warm_torch() -> None:
    tiny = preset("llama3-8b").scaled(num_layers=1, hidden_size=256, num_heads=4, num_kv_heads=2, head_dim=64,
                                      ffn_hidden_size=512, vocab_size=1024)
    predict_training(Scenario(path="<warm>", model=tiny, device=load_device("h100-sxm"),
                              system=load_system("hgx-h100"), num_devices=2,
                              training=Training(seq_len=128, global_batch_size=2, parallel=Parallel(dp=2))))


def test_405b_plan_on_16k_gpus_from_cold(benchmark, cold_caches, within,  # type: ignore[no-untyped-def]
                                         monkeypatch) -> None:
    """Trace and predict llama3.1-405b, tp 8, pp 16, dp 128 on 16,384 H100s in under 0.2 s, from cold caches."""
    monkeypatch.setenv("EMULATOR_CACHE", "off")  # every round traces
    _warm_torch()
    scenario = _scenario(16384, tp=8, pp=16, dp=128, zero=1, sequence_parallel=True)

    def run():  # type: ignore[no-untyped-def]
        return predict_training(scenario)

    out = benchmark.pedantic(run, setup=cold_caches, rounds=3, iterations=1)
    assert out.step_time_s > 0
    within("405B plan on 16,384 GPUs, cold (fastest of 3)", benchmark.stats.stats.min, 0.2)


def test_plans_per_second_with_reused_traces(benchmark, within) -> None:  # type: ignore[no-untyped-def]
    """Plans that differ in dp, ZeRO stage and recompute reuse the traces: at least 100 plans/s."""
    base = _scenario(16384, tp=8, pp=16, dp=128, sequence_parallel=True)
    predict_training(base)
    assert base.training is not None and base.training.parallel is not None
    plans = []
    for dp in (128, 64, 32, 16):
        for zero in (0, 1, 2, 3):
            for recompute in ("none", "selective", "full"):
                tr = dataclasses.replace(base.training, recompute=recompute, parallel=dataclasses.replace(
                    base.training.parallel, dp=dp, zero=zero))
                plans.append(dataclasses.replace(base, num_devices=8 * 16 * dp, training=tr))

    def run() -> None:
        for s in plans:
            predict_training(s)

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    seconds = benchmark.stats.stats.min
    within(f"{len(plans)} plans with reused traces, {len(plans) / seconds:.0f} plans/s (fastest of 3)", seconds,
           len(plans) / 100)
