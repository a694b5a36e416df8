"""A shared CPU's speed: the reference kernel, how points and predictions follow its readings."""

from __future__ import annotations

import pytest
import torch

from emulator.calibrate.command import build_calibration
from emulator.calibrate.points import CalPoint, collect
from emulator.calibrate.sweeps import BenchPoint
from emulator.engine.efficiency import EfficiencyTable, FamilyEfficiency
from emulator.measure.speed import Reference, around, at_reference_speed, at_speed, speed_vs
from emulator.measure.timer import time_callable

FAMILY = FamilyEfficiency(math=0.8, memory=0.5, vector=0.5, overhead_s=2e-6, cache_speedup=3.0, tile=32,
                          half_dim=8.0, error=0.1)


def _table() -> EfficiencyTable:
    return EfficiencyTable(families={"gemm": FAMILY, "elementwise": FAMILY}, provenance="calibrated",
                           source="spec defaults", host_overhead_s=4e-6, program_overhead_s=9e-6, synchronous=True,
                           peaks={"matrix.fp32": 1e11, "matrix.bf16": 2e10, "vector.fp32": 1e10, "memory": 1e10},
                           reference_s=2e-3)


def _gemm_point(m: int, seconds: float, reference_s: float | None) -> CalPoint:
    return CalPoint(family="gemm", name="gemm", params={"m": m, "n": m, "k": m}, dtype="fp32",
                    matrix_flops=2.0 * m**3, vector_flops=0.0, bytes_read=8.0 * m * m, bytes_written=4.0 * m * m,
                    median_s=seconds, p20_s=seconds * 0.9, p80_s=seconds * 1.1, num_reps=5, mean_s=seconds,
                    reference_s=reference_s)


def test_at_speed_moves_every_rate_and_fixed_cost_but_no_efficiency() -> None:
    """Half speed: every measured rate halves and per-op costs double; fitted efficiencies stay as they are."""
    table = _table()
    slow = at_speed(table, 0.5)
    assert slow.peaks == {"matrix.fp32": 5e10, "matrix.bf16": 1e10, "vector.fp32": 5e9, "memory": 5e9}
    assert slow.host_overhead_s == pytest.approx(8e-6) and slow.program_overhead_s == pytest.approx(18e-6)
    assert slow.get("gemm").overhead_s == pytest.approx(4e-6)
    assert (slow.get("gemm").math, slow.get("gemm").memory, slow.get("gemm").cache_speedup) == (0.8, 0.5, 3.0)
    assert at_speed(table, None) is table and at_speed(table, 1.0) is table


def test_readings_around_each_measurement_and_the_speed_they_give() -> None:
    """n+1 readings (before, between, after) give one per measurement; a reference twice as slow as at
    calibration is half the speed."""
    assert around([1.0, 3.0, 5.0]) == [2.0, 4.0]
    assert speed_vs(2e-3, [4e-3, 4e-3]) == pytest.approx(0.5)
    assert at_reference_speed(1.0, 2e-3, 4e-3) == pytest.approx(2.0)  # measured fast: slower at the mean speed
    assert at_reference_speed(1.0, None, 4e-3) == 1.0


def test_the_reference_reads_positive_seconds_and_keeps_them() -> None:
    """Each reading is a positive number of seconds, kept in order."""
    ref = Reference("cpu")
    first, second = ref.read(), ref.read()
    assert first > 0 and second > 0 and ref.readings == [first, second]


def test_time_callable_reads_between_every_timed_call() -> None:
    """`between` runs once after the warm-up and once after each timed call: n calls, n+1 readings."""
    calls: list[int] = []
    m = time_callable(lambda: None, device="cpu", warmup=2, min_reps=4, max_reps=4, target_time_s=0.0,
                      between=lambda: calls.append(1))
    assert m.num_reps == 4 and len(calls) == 5


def test_collect_reads_the_reference_around_every_point() -> None:
    """Each CPU point records the reference around its passes; the reference is read once before the first
    pass and once after every pass of every point."""
    ref = Reference("cpu")
    points = [BenchPoint("gemm", "gemm", {"m": 32, "n": 32, "k": 32}, "fp32"),
              BenchPoint("copy", "copy", {"bytes": 65536}, "fp32")]
    got = collect("cpu", True, progress=False, points=points, passes=2, reference=ref)
    assert len(ref.readings) == 1 + 2 * len(points)
    lo, hi = min(ref.readings), max(ref.readings)
    # A weighted mean of the readings: within their range (up to rounding, should all readings be equal).
    assert all(p.reference_s is not None and lo * (1 - 1e-12) <= p.reference_s <= hi * (1 + 1e-12) for p in got)


def test_points_are_fitted_at_the_sweeps_mean_speed() -> None:
    """Two points of one GEMM rate, one measured while the machine ran at half speed (the reference took twice
    as long): at the mean reference reading both describe one rate, so the fit sees consistent points and
    the calibration records the reference it is valid at."""
    fast, slow = _gemm_point(256, 1e-3, 1e-3), _gemm_point(512, 16e-3, 2e-3)
    data = build_calibration([fast, slow], {"kind": "cpu", "key": "cpu-test-1t", "cache_bytes": 0},
                             {"op": 4e-6, "program": 8e-6, "reference_s": 1e-3})
    assert data["speed_reference_s"] == pytest.approx(1.5e-3)
    assert fast.at_reference(1.5e-3).mean_s == pytest.approx(1.5e-3)
    assert slow.at_reference(1.5e-3).mean_s == pytest.approx(12e-3)
    assert slow.at_reference(1.5e-3).p80_s == pytest.approx(12e-3 * 1.1)
    # Both points now run at 2 * 256^3 / 1.5e-3 FLOP/s, the peak measured from them.
    assert data["peaks"]["matrix.fp32"] == pytest.approx(2 * 256**3 / 1.5e-3)
    assert data["host_overhead_s"] == pytest.approx(6e-6) and data["program_overhead_s"] == pytest.approx(12e-6)
    # Points without readings (GPUs, older files) are fitted as measured.
    assert _gemm_point(64, 1e-4, None).at_reference(1.5e-3).mean_s == 1e-4
    assert "speed_reference_s" not in build_calibration([_gemm_point(256, 1e-3, None)],
                                                        {"kind": "cpu", "key": "cpu-test-1t", "cache_bytes": 0})


def test_validate_style_measurement_records_the_reference_per_step() -> None:
    """`validate.measure_workload` with a reference returns one reading per timed step."""
    from emulator.validation.validate import CPU_WORKLOADS, measure_workload

    tiny = next(w for w in CPU_WORKLOADS if w.phase == "decode")
    ref = Reference("cpu")
    m = measure_workload(tiny, torch.device("cpu"), target_time_s=0.0, reference=ref)
    assert len(m["reference_s"]) == len(m["samples_s"]) and all(r > 0 for r in m["reference_s"])
