"""How fast the emulator itself is: tracing and predicting the 70B and 405B training steps (pytest-benchmark).

The issue's bound (a 405B training step at seq 8192 traces in under 5 s on a 2-core CPU) is asserted here,
in the benchmark suite, not in the unit tests: with `EMULATOR_ACCURACY=1`, else 3x looser (conftest). A quiet
2-core AMD EPYC virtual machine traces either model in about 0.03 s.
"""

from __future__ import annotations

import pytest
import torch

from emulator.engine.efficiency import SPEC_DEFAULTS
from emulator.engine.predict import predict
from emulator.engine.tracer import trace_program
from emulator.hardware import load_device
from emulator.scenario import Scenario, Training
from emulator.workloads.presets import preset
from emulator.workloads.program import build_program


@pytest.mark.parametrize("name", ["llama3-70b", "llama3.1-405b"])
def test_trace_training_step(benchmark, within, name: str) -> None:  # type: ignore[no-untyped-def]
    """Trace one training step (seq 8192) from scratch, no cache."""
    model = preset(name)

    def run():  # type: ignore[no-untyped-def]
        return trace_program(build_program(model, "train", batch_size=1, seq_len=8192, dtype=torch.bfloat16))

    trace = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert not trace.unknown_ops
    within(f"trace {name} training step (fastest of 3)", benchmark.stats.stats.min, 5.0)


@pytest.mark.parametrize("name", ["llama3-70b", "llama3.1-405b"])
def test_predict_training_step(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    """Predict a training step on H100 (trace cached after the first round, as repeated predictions are)."""
    scenario = Scenario(path="<bench>", model=preset(name), device=load_device("h100-sxm"), system=None,
                        num_devices=1, training=Training(seq_len=8192, global_batch_size=1))
    out = benchmark(lambda: predict(scenario, SPEC_DEFAULTS))
    assert out.step_time_s > 0
