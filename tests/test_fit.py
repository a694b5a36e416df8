"""Specs for emulator.calibrate.fit: the fit evaluates candidate efficiencies through the predictor's own
kernel-time model, so what it fits is exactly what `roofline.kernel_time` predicts."""

from __future__ import annotations

import dataclasses

import pytest

from emulator.calibrate.fit import point_calls, predicted_point_times
from emulator.calibrate.points import CalPoint
from emulator.calibrate.sweeps import sweep
from emulator.engine.efficiency import SPEC_DEFAULTS, FamilyEfficiency
from emulator.engine.roofline import kernel_time
from emulator.hardware import load_device

# A table unlike the spec defaults in every parameter the fit searches, cache speed-up included.
TABLE = dataclasses.replace(SPEC_DEFAULTS, families={
    **SPEC_DEFAULTS.families,
    "gemm": FamilyEfficiency(math=0.61, memory=0.7, overhead_s=3e-6, cache_speedup=2.5, tile=64, half_dim=32.0),
    "elementwise": FamilyEfficiency(math=0.5, memory=0.55, vector=0.4, overhead_s=2e-6, cache_speedup=3.0, tile=0),
    "norm": FamilyEfficiency(math=0.5, memory=0.45, vector=0.3, overhead_s=4e-6, cache_speedup=1.5, tile=0),
})


def _points(family: str, count: int) -> list[CalPoint]:
    chosen = [p for p in sweep("cpu", quick=True) if p.family == family][:count]
    return [CalPoint(family=p.family, name=p.name, params=dict(p.params), dtype=p.dtype, matrix_flops=None,
                     vector_flops=None, bytes_read=None, bytes_written=None, median_s=1e-3, p20_s=1e-3,
                     p80_s=1e-3, num_reps=5) for p in chosen]


@pytest.mark.parametrize("family", ["gemm", "elementwise", "norm"])
def test_the_fit_times_a_point_as_the_predictor_does(family: str) -> None:
    """A point's fitted time is the sum of `kernel_time` over its traced calls, cache-resident outputs included
    (written at main memory's rate, as the predictor writes them)."""
    device = load_device("h100-sxm")
    points = _points(family, 4)
    fitted = predicted_point_times(points, TABLE, device)
    predicted = [sum(kernel_time(c, device, TABLE).time_s for c in point_calls(p)) for p in points]
    assert fitted == pytest.approx(predicted, rel=1e-12)


def test_flushed_points_stream_every_byte_from_main_memory() -> None:
    """Timed with the cache flushed (a GPU), a point's bytes all come from main memory: no cache speed-up."""
    device = load_device("h100-sxm")
    points = _points("elementwise", 3)
    flushed = predicted_point_times(points, TABLE, device, flushed=True)
    no_speedup = dataclasses.replace(TABLE, families={**TABLE.families, "elementwise": dataclasses.replace(
        TABLE.families["elementwise"], cache_speedup=1.0)})
    assert flushed == pytest.approx(predicted_point_times(points, no_speedup, device), rel=1e-12)
