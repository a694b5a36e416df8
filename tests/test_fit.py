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


def _synthetic(points: list[CalPoint], table: object, device: object, *, cold: bool = False) -> list[CalPoint]:
    """The points with the times `table` predicts for them (a fit of them should give `table` back)."""
    times = predicted_point_times(points, table, device)  # type: ignore[arg-type]
    return [dataclasses.replace(p, median_s=t, p20_s=t, p80_s=t) for p, t in zip(points, times, strict=True)]


def test_efficiencies_never_pass_one_and_a_clamp_is_noted() -> None:
    """Points that ran twice as fast as main memory allows fit a memory efficiency of 1, with the unbounded
    value noted (`clamped`), and `calibrate` warns about it."""
    from emulator.calibrate.command import fit_warnings
    from emulator.calibrate.fit import fit_points

    device = load_device("h100-sxm")
    fast = dataclasses.replace(SPEC_DEFAULTS, families={
        **SPEC_DEFAULTS.families, "copy": FamilyEfficiency(math=0.5, memory=2.0, tile=0)})
    points = _synthetic(_points("copy", 6), fast, device)
    fitted = fit_points(points, device, passes=1)["copy"]
    assert fitted["memory"] == 1.0 and fitted["clamped"]["memory"] > 1.5
    assert any(w.startswith("copy: memory efficiency held at 1.0") for w in fit_warnings({"copy": fitted}))


def test_large_held_out_errors_are_warned_about() -> None:
    """A family whose held-out error passes 30% gets a warning naming it; a good one does not."""
    from emulator.calibrate.command import fit_warnings

    families = {"gemm": {"error": 0.05, "num_points": 30}, "embedding": {"error": 0.6, "num_points": 8}}
    (warning,) = fit_warnings(families)
    assert warning.startswith("embedding: held-out error 60% (over 30%)")


def test_matrix_vector_products_have_their_own_key_on_a_host() -> None:
    """On a CPU, one-row products (decode at batch 1) are fitted under `gemv` and predicted from it; a table
    without that key predicts them with the GEMM's efficiency."""
    from emulator.calibrate.fit import fit_points
    from emulator.engine.efficiency import MATRIX_VECTOR
    from emulator.engine.roofline import efficiency_key

    assert efficiency_key("gemm", "aten.mm", ((1, 4096), (4096, 4096))) == MATRIX_VECTOR
    assert efficiency_key("gemm", "aten.mm", ((16, 4096), (4096, 4096))) == "gemm"
    assert SPEC_DEFAULTS.get(MATRIX_VECTOR, "bf16") is SPEC_DEFAULTS.get("gemm", "bf16")
    device = load_device("h100-sxm")
    points = [p for p in _points("gemm", 40) if p.dtype == "fp32"]
    assert sum(p.params.get("m") == 1 for p in points) >= 3
    fitted = fit_points(_synthetic(points, TABLE, device), device, passes=1, host=True)
    assert {MATRIX_VECTOR, "gemm"} <= set(fitted) and fitted[MATRIX_VECTOR]["min_output_dim"] == 1
    assert fit_points(_synthetic(points, TABLE, device), device, passes=1).keys() == {"gemm"}


def test_the_memory_peak_counts_the_optimizers_in_place_stream() -> None:
    """A profile-less CPU's main-memory rate is the best of copies, elementwise streams and the optimizer's update
    (which writes back the lines it read, so nothing is fetched for its output)."""
    from emulator.calibrate.fit import measured_peaks

    big = [p for p in _points("optimizer", 4) if p.params["numel"] >= 4_000_000]
    calls = [point_calls(p) for p in big]
    seconds = 1e-3
    timed = [dataclasses.replace(p, median_s=seconds) for p in big]
    peaks = measured_peaks(timed, calls, cache_bytes=32 * 2**20)
    assert peaks["memory"] == pytest.approx(sum(c.total.bytes for c in calls[0]) / seconds)
