"""Cold calls: a CPU kernel call after traffic that evicted the caches costs more, measured and predicted."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import emulator.calibrate.fit as fit
import emulator.calibrate.points as calibration_points
from emulator.calibrate.points import CalPoint, collect
from emulator.calibrate.sweeps import BenchPoint, sweep
from emulator.engine.calibration import read_calibration
from emulator.engine.efficiency import SPEC_DEFAULTS, EfficiencyTable
from emulator.engine.roofline import predict_calls
from emulator.hardware import load_device
from emulator.measure.speed import at_speed
from kernels import Cost, KernelCall

MiB = 2**20
CURVE = ((4 * MiB, 4e-6), (16 * MiB, 30e-6), (64 * MiB, 60e-6))


def _table(curve: tuple[tuple[float, float], ...] = CURVE) -> EfficiencyTable:
    return dataclasses.replace(SPEC_DEFAULTS, provenance="calibrated", synchronous=True, cold_call_curve=curve)


def test_the_cost_follows_the_measured_curve() -> None:
    """Linear from no traffic to the first measured size, between sizes, and flat beyond the largest."""
    table = _table()
    assert table.cold_call_s(0) == 0.0
    assert table.cold_call_s(2 * MiB) == pytest.approx(2e-6)
    assert table.cold_call_s(10 * MiB) == pytest.approx(17e-6)
    assert table.cold_call_s(1e12) == pytest.approx(60e-6)
    assert SPEC_DEFAULTS.cold_call_s(1e12) == 0.0


def test_predicted_steps_pay_it_per_call_by_the_traffic_between_runs() -> None:
    """A step that runs an op 4 times moves a quarter of its bytes between runs; GEMMs keep their fitted time
    (their cold-operand points include the cost); a table without a curve adds nothing; speed scales it."""
    cpu_like = load_device("h100-sxm")
    step_bytes = 4 * 64 * MiB
    gemm = KernelCall("gemm", "aten.mm", ((16, 512), (512, 512)), "fp32", Cost(matrix_flops=1e6, bytes_read=step_bytes),
                      count=1)
    add = KernelCall("elementwise", "aten.add", ((16, 512),), "fp32", Cost(bytes_read=0.0, bytes_written=0.0), count=4)
    warm = predict_calls([gemm, add], cpu_like, _table(()))
    cold = predict_calls([gemm, add], cpu_like, _table())
    by_op = {k.op: k for k in cold.kernels}
    assert by_op["aten.mm"].time_s == pytest.approx({k.op: k for k in warm.kernels}["aten.mm"].time_s)
    extra = by_op["aten.add"].time_s - {k.op: k for k in warm.kernels}["aten.add"].time_s
    assert extra == pytest.approx(4 * 60e-6)  # 64 MiB between runs: the full cost
    fast_cold = predict_calls([gemm, add], cpu_like, at_speed(_table(), 2.0))
    fast_warm = predict_calls([gemm, add], cpu_like, at_speed(_table(()), 2.0))
    assert ({k.op: k for k in fast_cold.kernels}["aten.add"].time_s
            - {k.op: k for k in fast_warm.kernels}["aten.add"].time_s) == pytest.approx(4 * 30e-6)


def _evicted(name: str, evict: float, seconds: float) -> CalPoint:
    return CalPoint(family="elementwise", name=name, params={"rows": 64, "cols": 256, "evict": evict}, dtype="fp32",
                    matrix_flops=0.0, vector_flops=0.0, bytes_read=0.0, bytes_written=0.0, median_s=seconds,
                    p20_s=seconds, p80_s=seconds, num_reps=5, mean_s=seconds)


def test_the_curve_is_each_sizes_median_excess_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Excess over the warm prediction, per call the point makes, median over the ops at each stream size;
    a dip at a larger size is noise and keeps the running maximum; no excess anywhere gives no curve."""
    calls = {"mul": 1, "silu": 1, "rms_norm": 5}
    monkeypatch.setattr(fit, "predicted_point_times", lambda points, table, device: [1e-5] * len(points))
    monkeypatch.setattr(fit, "point_calls", lambda p: [KernelCall("elementwise", "aten.mul", (), "fp32", Cost(),
                                                                  count=calls[p.name])])
    cache = 32 * MiB
    points = [_evicted("mul", 0.125, 1e-5 + 2e-6), _evicted("silu", 0.125, 1e-5 + 4e-6),
              _evicted("rms_norm", 0.125, 1e-5 + 5 * 3e-6),
              _evicted("mul", 0.5, 1e-5 + 1e-6), _evicted("silu", 0.5, 1e-5 + 1e-6),
              _evicted("rms_norm", 0.5, 1e-5 + 1e-6),
              _evicted("mul", 2.0, 1e-5 + 50e-6), _evicted("silu", 2.0, 1e-5 + 70e-6),
              _evicted("rms_norm", 2.0, 1e-5 + 5 * 60e-6)]
    curve = fit.cold_call_curve(points, SPEC_DEFAULTS, load_device("h100-sxm"), cache)
    assert [b for b, _ in curve] == [4 * MiB, 16 * MiB, 64 * MiB]
    assert [s for _, s in curve] == pytest.approx([3e-6, 3e-6, 60e-6])
    assert fit.cold_call_curve([_evicted("mul", 2.0, 1e-6)], SPEC_DEFAULTS, load_device("h100-sxm"), cache) == []


def test_the_cpu_sweep_measures_small_ops_after_streams_and_gpus_do_not() -> None:
    """The quick CPU sweep times mul, silu and rms_norm after streams of 1/8 to 2 caches; GPU sweeps never do."""
    evicted = [p for p in sweep("cpu", True) if "evict" in p.params]
    assert sorted({p.params["evict"] for p in evicted}) == [0.125, 0.25, 0.5, 2.0]
    assert {p.name for p in evicted} == {"mul", "silu", "rms_norm"}
    assert not [p for p in sweep("cuda", True) if "evict" in p.params]


def test_an_evicted_point_is_timed_after_its_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """An evicted point streams a weight of `evict` times the last-level cache through a matrix-vector product,
    untimed, after the warm-up and after each of its (at most 24) repetitions; its warm twin streams nothing.
    (That the stream makes the op slower is measured in benchmarks/test_cold_calls_speed.py.)"""
    cache = 2 * MiB  # a small stand-in for the last-level cache keeps the test fast
    monkeypatch.setattr(calibration_points, "last_level_cache_bytes", lambda device: cache)
    streamed: list[tuple[int, ...]] = []
    linear = torch.nn.functional.linear

    def spy(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        streamed.append((weight.numel() * weight.element_size(), x.shape[0]))
        return linear(x, weight, bias)

    monkeypatch.setattr(torch.nn.functional, "linear", spy)
    _, cold = collect("cpu", True, progress=False, passes=1, points=[
        BenchPoint("elementwise", "mul", {"rows": 64, "cols": 256}, "fp32"),
        BenchPoint("elementwise", "mul", {"rows": 64, "cols": 256, "evict": 0.5}, "fp32")])
    assert 5 <= cold.num_reps <= 24
    # Half the cache through one vector, n + 1 times, all of them for the evicted point.
    assert streamed == [(cache // 2, 1)] * (cold.num_reps + 1)


def test_a_malformed_curve_is_a_clear_error(tmp_path: Path) -> None:
    """A cold-call curve whose sizes do not rise is refused with an error naming the field."""
    shipped = next(p for p in (Path(__file__).parent.parent / "calibrations").glob("cuda-*.json")
                   if not p.name.endswith(".points.json"))
    data = json.loads(shipped.read_text())
    data["cold_call_curve"] = [[8, 1e-6], [4, 2e-6]]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(Exception, match="cold_call_curve"):
        read_calibration(bad)
