"""A shared CPU's speed against its calibration: which points are probed, how the table follows the speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from emulator.calibrate import CalPoint, write_points_json
from emulator.efficiency import EfficiencyTable, FamilyEfficiency
from emulator.speed import at_speed, mean_speed, measure_speed, speed_probes

FAMILY = FamilyEfficiency(math=0.8, memory=0.5, vector=0.5, overhead_s=2e-6, cache_speedup=3.0, tile=32,
                          half_dim=8.0, error=0.1)


def _table(source: str = "spec defaults") -> EfficiencyTable:
    return EfficiencyTable(families={"gemm": FAMILY, "elementwise": FAMILY}, provenance="calibrated", source=source,
                           host_overhead_s=4e-6, program_overhead_s=9e-6, synchronous=True,
                           peaks={"matrix.fp32": 1e11, "matrix.bf16": 2e10, "vector.fp32": 1e10, "memory": 1e10})


def _point(family: str, name: str, params: dict, time_s: float, cold: bool = False) -> CalPoint:
    """A measured point with the traced costs a calibration records (fp32: 4 bytes per element)."""
    if family == "gemm":
        m, n, k = params["m"], params["n"], params["k"]
        flops, read, written = 2.0 * m * n * k, 4.0 * (m * k + n * k), 4.0 * m * n
    elif family == "copy":
        flops, read, written = 0.0, float(params["bytes"]), float(params["bytes"])
    else:  # a binary elementwise op
        flops, read, written = 0.0, 8.0 * params["rows"] * params["cols"], 4.0 * params["rows"] * params["cols"]
    return CalPoint(family=family, name=name, params={**params, **({"cold": True} if cold else {})}, dtype="fp32",
                    matrix_flops=flops, vector_flops=0.0, bytes_read=read, bytes_written=written, median_s=time_s,
                    p20_s=time_s, p80_s=time_s, num_reps=5, mean_s=time_s)


def test_at_speed_moves_only_the_peaks_and_fixed_costs() -> None:
    """Half speed: every core rate halves and per-op costs double; memory follows its own probe; the fitted
    efficiencies stay as they are."""
    table = _table()
    slow = at_speed(table, {"matrix.fp32": 0.5, "memory": 0.8})
    assert slow.peaks["matrix.fp32"] == pytest.approx(5e10)
    assert slow.peaks["matrix.bf16"] == pytest.approx(1e10)
    assert slow.peaks["vector.fp32"] == pytest.approx(5e9)
    assert slow.peaks["memory"] == pytest.approx(8e9)
    assert slow.host_overhead_s == pytest.approx(8e-6) and slow.program_overhead_s == pytest.approx(18e-6)
    assert slow.get("gemm").overhead_s == pytest.approx(4e-6)
    assert (slow.get("gemm").math, slow.get("gemm").memory, slow.get("gemm").cache_speedup) == (0.8, 0.5, 3.0)
    assert at_speed(table, {}) is table


def test_mean_speed_averages_each_peak_over_the_readings_that_have_it() -> None:
    assert mean_speed([{"memory": 1.0, "matrix.fp32": 0.8}, {"memory": 0.5}]) == {"matrix.fp32": 0.8, "memory": 0.75}


def test_probes_are_the_largest_warm_points_not_the_fastest(tmp_path: Path) -> None:
    """GEMM probes are the largest fp32 products and stream probes the largest beyond twice the cache, chosen
    by size; cold variants and small, cache-resident points are never probes."""
    points = [
        _point("gemm", "gemm", {"m": 64, "n": 64, "k": 64}, 1e-6),  # the fastest rate, but small
        _point("gemm", "gemm", {"m": 256, "n": 256, "k": 256}, 1e-3),
        _point("gemm", "gemm", {"m": 512, "n": 512, "k": 512}, 8e-3),
        _point("gemm", "gemm", {"m": 384, "n": 384, "k": 384}, 4e-3),
        _point("gemm", "gemm", {"m": 1024, "n": 1024, "k": 1024}, 1.0, cold=True),
        _point("copy", "copy", {"bytes": 64 * 1024}, 1e-6),
        _point("copy", "copy", {"bytes": 16 * 2**20}, 3e-3),
        _point("elementwise", "add", {"rows": 1024, "cols": 4096}, 4e-3),
    ]
    source = tmp_path / "cpu-test-1t.json"
    source.write_text(json.dumps({}))
    write_points_json(points, {"key": "cpu-test-1t", "cache_bytes": 4 * 2**20}, tmp_path / "cpu-test-1t.points.json")
    probes = speed_probes(_table(str(source)))
    assert [p.params["m"] for p in probes["matrix.fp32"]] == [512, 384, 256]
    assert {p.name for p in probes["memory"]} == {"copy", "add"}
    assert speed_probes(_table(str(tmp_path / "missing.json"))) == {}
    assert speed_probes(_table()) == {}


def test_measure_speed_compares_the_calibrated_seconds_with_now() -> None:
    """A probe whose calibrated time was 1000x what it takes now reads as about 1000x faster."""
    fast = _point("gemm", "gemm", {"m": 32, "n": 32, "k": 32}, 1.0)
    speed = measure_speed({"matrix.fp32": [fast]}, torch.device("cpu"), target_time_s=0.01)
    assert speed["matrix.fp32"] > 100
