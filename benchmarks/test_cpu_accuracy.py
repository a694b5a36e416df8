"""Accuracy on this CPU: `calibrate --quick`, then `validate` predicts whole workloads it never fitted (dense and
MoE transformers and the recommender; train, prefill and decode) within the issue's bounds.

Skipped unless `EMULATOR_ACCURACY=1` is set: a measured accuracy depends on the machine's CPU model and its
load, so it is a benchmark to run on a quiet machine, not a unit test. CI runs the same commands as a smoke
test (tests/test_calibrate_cli.py), which prints the figures without asserting these bounds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

# The issue's target on a CPU: median |error| <= 10% and max <= 25%.
# History: on the shared 2-core AMD EPYC virtual machine this was built on, six fresh calibrate-then-validate runs
# with the speed reference and the cold-call curve gave medians of 4.1-6.0% and maxima of 7.0-15.2% (before
# them, twelve runs met both bounds only six times; see `emulator.measure.speed` and `fit.cold_call_curve`).
# As a unit test these bounds then failed on a fresh clone on a loaded Intel Xeon (median 10.85%) and on a
# quiet one (llama decode +29.2%), so they moved here (issue 11); CI keeps a loose smoke guard.
CPU_MEDIAN_BOUND = 0.10
CPU_MAX_BOUND = 0.25


@pytest.mark.accuracy
@pytest.mark.slow
def test_cpu_calibrate_quick_then_validate_within_the_issues_bounds(cpu_validation: Any) -> None:
    """Median |error| at most 10% and max at most 25% over the CPU validation workloads."""
    summary = cpu_validation.result["summary"]
    assert cpu_validation.result["provenance"] == "calibrated"
    assert summary["median_abs_error"] <= CPU_MEDIAN_BOUND, cpu_validation.table
    assert summary["max_abs_error"] <= CPU_MAX_BOUND, cpu_validation.table


# Issue 14: `emulator run` of a serving case on this CPU, measured beside its prediction from the same calibration.
# The tiny example exercises a narrow model's fp32 decode at batch 1; the llama3-8b one (2 of its 32 layers, weights
# as large as the real ones) the bf16 matrix-vector products that stream a 7-8B model's weights. Before the CPU
# calibration fitted matrix-vector products on their own, that decode was predicted 6-15x slow (+426% end to end).
# History: on the shared 2-core AMD EPYC at load 5-8, three fresh calibrations gave the tiny example -17% and the
# llama3-8b scale model +19% (decode +15%, prefill +28%, over the bound) while `validate` read median 3-10%.
@pytest.mark.accuracy
@pytest.mark.slow
@pytest.mark.parametrize("args", [("examples/llama-tiny-cpu-serve.yaml",),
                                  ("examples/llama3-8b-cpu-serve.yaml", "--scale", "0.0625", "--yes")])
def test_cpu_serving_run_within_the_issues_bounds(cpu_validation: Any, emulator_cli: Any,
                                                  args: tuple[str, ...]) -> None:
    """`emulator run` predicts its own prefill and decode within the CPU maximum bound (25%)."""
    out = emulator_cli("run", *args, "--json", "--no-profile", "--no-record", "--quiet", timeout=900)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    phases = {name: p["predicted_s"] / p["measured_s"] - 1 for name, p in result["phases"].items()}
    print(f"\n{args[0]}: error {result['error']:+.1%}, phases {phases}")
    assert result["predicted"]["provenance"] == "calibrated"
    assert all(abs(e) <= CPU_MAX_BOUND for e in [result["error"], *phases.values()]), phases
