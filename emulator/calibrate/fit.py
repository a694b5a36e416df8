"""Fit per-family efficiencies from calibration points: (traced kernel calls, measured seconds) pairs.

Each point is re-traced on meta tensors into the same `KernelCall`s the predictor times, so the fitted model is
exactly `roofline.kernel_time`. For one family the free parameters are its `FamilyEfficiency` (math, vector
and memory efficiency, fixed overhead per call, cache speed-up, GEMM tile edge). They are chosen by a staged
grid search minimising the mean squared log error of whole points (a point may run kernels of several
families; the others are held fixed), in a few passes over the families. A fifth of each family's points
(every fifth, in a fixed order) is held out; the median |predicted/measured - 1| on them is the family's
`error`, which becomes the prediction's error band.

Devices without a profile (the local CPU) get their peaks measured: the best GEMM rate per dtype, the best
vector rate and the best large-copy bandwidth, and efficiencies relative to those.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emulator.calibrate.points import CalPoint, runner
from emulator.calibrate.sweeps import BenchPoint
from emulator.engine.efficiency import MATRIX_VECTOR, SPEC_DEFAULTS, EfficiencyTable, FamilyEfficiency
from emulator.engine.roofline import CallTerms, call_seconds, call_terms, efficiency_key
from emulator.engine.tracer import trace_callable
from emulator.hardware import DeviceProfile
from kernels import KernelCall
from kernels.references import torch_dtype

HOLD_OUT_EVERY = 5
TILES = (16, 32, 64, 128, 256)
# A CPU's BLAS has no smallest matrix-unit tile (a GPU's MMA pads a 1-row product to 16 rows): its matrix-vector and
# small-row kernels take any M, so its fit may also choose no tile quantisation at all (0).
HOST_TILES = (0, *TILES)
# Efficiencies are fractions of measured or datasheet peaks, so a fit never goes above 1: a family that wants more
# ran faster than the peak says (its data stayed in a cache the model counts as main memory, or the peak was
# measured low) and is reported at 1 with a note (`clamped`), never as a rate above the peak.
EFFICIENCY_CAP = 1.0
CAPPED = ("math", "memory", "vector")
MATH_GRID = np.geomspace(0.03, EFFICIENCY_CAP, 24)
MEMORY_GRID = np.geomspace(0.03, EFFICIENCY_CAP, 24)
OVERHEAD_GRID = np.concatenate([[0.0], np.geomspace(2e-7, 2e-4, 19)])
HALF_DIM_GRID = np.array([0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0])
SPEEDUP_GRID = np.array([1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])


def point_calls(p: CalPoint) -> list[KernelCall]:
    """The kernel calls one calibration point runs, traced on meta tensors of its shapes.

    A 'tf32' point holds fp32 tensors that the tensor cores multiply as tf32: its GEMMs are labelled tf32.
    """
    fn, make_inputs = runner(BenchPoint(p.family, p.name, dict(p.params), p.dtype))
    inputs = make_inputs(p.params, device="meta", dtype=torch_dtype(p.dtype))
    trace = trace_callable(fn, *inputs)
    calls = [c for c in trace.calls if c.family != "view"]
    if p.dtype == "tf32":
        calls = [dataclasses.replace(c, dtype="tf32") if c.family == "gemm" else c for c in calls]
    return calls


# Dtypes whose kernels take other paths through the matrix units than bf16 (block scaling, other tile
# shapes); fp16, tf32 and fp32 behave like bf16 relative to their own peaks and share its efficiency.
SPLIT_DTYPES = ("fp8", "int8", "fp4")
# On a CPU fp32 products run in the BLAS and bf16 ones in oneDNN's AVX-512 BF16 / AMX kernels: two libraries.
HOST_SPLIT_DTYPES = ("bf16", *SPLIT_DTYPES)


def split_keys(points: Sequence[CalPoint], dtypes: Sequence[str] = SPLIT_DTYPES,
               calls: Sequence[list[KernelCall]] | None = None) -> set[str]:
    """Efficiency keys fitted on their own, each with at least three points: a dtype of `dtypes` ("gemm.fp8") and,
    given the points' `calls`, matrix-vector products (`MATRIX_VECTOR`, "gemv.bf16")."""
    counts: dict[str, int] = {}
    for i, p in enumerate(points):
        base = p.family
        own = [c for c in calls[i] if c.family == p.family] if calls is not None else []
        if own and all(efficiency_key(c.family, c.op, c.shapes) == MATRIX_VECTOR for c in own):
            base = MATRIX_VECTOR
        key = f"{base}.{p.dtype}" if p.dtype in dtypes else base
        if key != p.family:
            counts[key] = counts.get(key, 0) + 1
    return {key for key, n in counts.items() if n >= 3}


def fitted_key(call: KernelCall, keys: set[str] | Sequence[str]) -> str:
    """The key a call is fitted and predicted under, in `EfficiencyTable.get`'s order: a matrix-vector product's
    dtype entry, the GEMM's dtype entry, the matrix-vector entry, then the family."""
    base = efficiency_key(call.family, call.op, call.shapes)
    for key in (f"{base}.{call.dtype}", f"{call.family}.{call.dtype}", base):
        if key in keys:
            return key
    return call.family


@dataclass(frozen=True, slots=True)
class _Call:
    """One kernel signature of a point: the efficiency key it is fitted under and its roofline terms."""

    family: str  # the efficiency key: "gemm", or "gemm.fp8" / "gemv" where those are fitted on their own
    terms: CallTerms


def _terms(call: KernelCall, device: DeviceProfile, peaks: Mapping[str, float], keys: set[str],
           cold: bool = False) -> _Call:
    """`cold`: the point cycled through copies of its inputs (or flushed the cache), so its bytes came from
    main memory."""
    table = dataclasses.replace(SPEC_DEFAULTS, peaks=dict(peaks))
    return _Call(family=fitted_key(call, keys), terms=call_terms(call, device, table, cold=cold))


def _call_time(t: _Call, e: FamilyEfficiency) -> float:
    """Seconds of all calls of one signature: the predictor's `call_seconds`, summed as `kernel_time` does."""
    t_math, t_mem, t_over = call_seconds(t.terms, e)
    return (max(t_math, t_mem) + t_over) * t.terms.call.count


def _point_time(calls: list[_Call], effs: Mapping[str, FamilyEfficiency]) -> float:
    return sum(_call_time(t, effs.get(t.family) or effs.get(t.family.split(".")[0])
                          or SPEC_DEFAULTS.get(t.family.split(".")[0])) for t in calls)


def _loss(points: list[tuple[list[_Call], float]], effs: Mapping[str, FamilyEfficiency]) -> float:
    errs = [math.log(max(_point_time(calls, effs), 1e-12) / measured) ** 2 for calls, measured in points]
    return float(np.mean(errs)) if errs else 0.0


def _search(points: list[tuple[list[_Call], float]], effs: dict[str, FamilyEfficiency], family: str,
            grids: Mapping[str, Iterable[Any]]) -> None:
    """Exhaustive search of `grids` (parameter -> values) for one family, others held fixed."""
    best = (_loss(points, effs), effs[family])
    names = list(grids)
    for values in itertools.product(*(grids[n] for n in names)):
        changes: dict[str, Any] = {n: (int(v) if n == "tile" else float(v)) for n, v in zip(names, values, strict=True)}
        trial = dataclasses.replace(effs[family], **changes)
        effs[family] = trial
        loss = _loss(points, effs)
        if loss < best[0]:
            best = (loss, trial)
    effs[family] = best[1]


_REFINE_FACTORS = (0.7, 0.85, 0.93, 0.97, 0.99, 1.01, 1.03, 1.07, 1.15, 1.4)


def _refine(points: list[tuple[list[_Call], float]], effs: dict[str, FamilyEfficiency], family: str,
            names: Sequence[str], rounds: int = 12, cap: float = EFFICIENCY_CAP) -> None:
    """Coordinate descent with multiplicative steps below the grid's resolution; efficiencies stay <= `cap`."""
    best = _loss(points, effs)
    for _ in range(rounds):
        improved = False
        for name in names:
            current = getattr(effs[family], name)
            base = current if current > 0 else 1e-7
            for f in _REFINE_FACTORS:
                change: dict[str, Any] = {name: min(base * f, cap) if name in CAPPED else base * f}
                trial = dataclasses.replace(effs[family], **change)
                old, effs[family] = effs[family], trial
                loss = _loss(points, effs)
                if loss < best - 1e-12:
                    best, improved = loss, True
                else:
                    effs[family] = old
        if not improved:
            return


def measured_peaks(points: Sequence[CalPoint], calls: Sequence[list[KernelCall]],
                   cache_bytes: float | None = None) -> dict[str, float]:
    """Best achieved rates: matrix FLOP/s per dtype, vector FLOP/s, and the bytes/s of streams larger than
    twice the last-level cache (main memory, not cache, bandwidth). The optimizer's in-place update counts among
    the streams: it writes back the lines it read, so no output buffer is fetched first, and it came within the
    DRAM's bandwidth where copies to fresh buffers stayed at half of it (an AdamW over 4M parameters reached
    1.5x a 64 MB copy's bytes/s on our 2-core AMD EPYC, and fitted a memory efficiency of 1.54 against it)."""
    peaks: dict[str, float] = {}
    for p, cs in zip(points, calls, strict=True):
        matrix = sum(c.total.matrix_flops for c in cs)
        if p.family == "gemm" and matrix:
            key = f"matrix.{p.dtype}"
            peaks[key] = max(peaks.get(key, 0.0), matrix / p.time_s)
        if p.family in ("elementwise", "copy", "optimizer"):
            moved = sum(c.total.bytes for c in cs)
            if not cache_bytes or moved > 2 * cache_bytes:
                peaks["memory"] = max(peaks.get("memory", 0.0), moved / p.time_s)
            if p.family == "optimizer":
                continue
            vector = sum(c.total.vector_flops for c in cs)
            if vector:
                peaks["vector.fp32"] = max(peaks.get("vector.fp32", 0.0), vector / p.time_s)
    return peaks


def fit_points(points: Sequence[CalPoint], device: DeviceProfile, *,
               peaks: Mapping[str, float] | None = None, passes: int = 2, flushed: bool = False,
               host: bool = False) -> dict[str, Any]:
    """Fit every family's efficiency; returns {family: params with held-out error and point counts}.

    `flushed`: every point was timed with the cache flushed before each repetition (GPUs), so all its bytes
    came from main memory and the points say nothing of a cache speed-up (it stays at 1). Otherwise only
    points marked `cold` are; the rest ran with their data left in the cache by the repetition before.
    `host`: the points ran on a CPU (`HOST_TILES`, `HOST_SPLIT_DTYPES`).
    """
    traced = [point_calls(p) for p in points]
    peaks = dict(peaks or {})
    # A CPU's matrix-vector products are fitted on their own (`MATRIX_VECTOR`); a GPU's sweep has few of them.
    keys = split_keys(points, HOST_SPLIT_DTYPES if host else SPLIT_DTYPES, traced if host else None)
    tiles = HOST_TILES if host else TILES
    terms = [[_terms(c, device, peaks, keys, flushed or bool(p.params.get("cold"))) for c in cs]
             for p, cs in zip(points, traced, strict=True)]
    by_family: dict[str, list[int]] = {}
    for i, (p, ts) in enumerate(zip(points, terms, strict=True)):
        own = [t.family for t in ts if t.terms.call.family == p.family]
        by_family.setdefault(own[0] if own else p.family, []).append(i)
    held = {i for idx in by_family.values() for j, i in enumerate(sorted(idx, key=lambda i: _order(points[i])))
            if j % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1}
    train = [(terms[i], points[i].time_s) for i in range(len(points)) if i not in held]
    families = sorted({t.family for ts in terms for t in ts})
    effs: dict[str, FamilyEfficiency] = {f: SPEC_DEFAULTS.get(f.split(".")[0]) for f in families}
    for _ in range(passes):
        for fam in families:
            mine = [(ts, m) for ts, m in train if any(t.family == fam for t in ts)]
            if not mine:
                continue
            has_matrix = any(t.terms.matrix_s for ts, _ in mine for t in ts if t.family == fam)
            _search(mine, effs, fam, {"memory": MEMORY_GRID, "overhead_s": OVERHEAD_GRID})
            # Jointly: a cold point's bytes and a warm one's differ only by the speed-up, so searched alone
            # either parameter sticks where the other started (a slow memory efficiency fits cold points only
            # with a speed-up that keeps warm ones compute-bound).
            _search(mine, effs, fam, {"memory": MEMORY_GRID, "cache_speedup": SPEEDUP_GRID})
            if has_matrix:
                _search(mine, effs, fam, {"math": MATH_GRID, "tile": tiles})
                _search(mine, effs, fam, {"math": MATH_GRID, "half_dim": HALF_DIM_GRID})
                _search(mine, effs, fam, {"math": MATH_GRID, "overhead_s": OVERHEAD_GRID})
            else:
                _search(mine, effs, fam, {"vector": MATH_GRID})
            _search(mine, effs, fam, {"memory": MEMORY_GRID, "overhead_s": OVERHEAD_GRID})
            _refine(mine, effs, fam, ("math", "memory", "overhead_s", "cache_speedup", "half_dim") if has_matrix
                    else ("vector", "memory", "overhead_s", "cache_speedup"))
    out: dict[str, Any] = {}
    for fam in families:
        mine_idx = by_family.get(fam, [])
        clamped = _clamped(train, effs, fam)
        errors = [abs(_point_time(terms[i], effs) / points[i].time_s - 1) for i in mine_idx if i in held]
        fitted = [abs(_point_time(terms[i], effs) / points[i].time_s - 1) for i in mine_idx if i not in held]
        e = effs[fam]
        out[fam] = {
            "math": e.math, "memory": e.memory, "vector": e.vector, "overhead_s": e.overhead_s,
            "cache_speedup": e.cache_speedup, "tile": e.tile, "half_dim": e.half_dim,
            # A family with no held-out points of its own takes the worst held-out error of the others.
            "error": float(np.median(errors)) if errors else None,
            "held_out_max_error": float(max(errors)) if errors else None,
            "fit_median_error": float(np.median(fitted)) if fitted else None,
            "num_points": len(mine_idx),
            "num_held_out": len(errors),
        }
        dims = [min(t.terms.gemm[1:]) for i in mine_idx for t in terms[i] if t.family == fam and t.terms.gemm]
        if dims:  # how narrow the products it has seen were (`engine.calibration` reads it)
            out[fam]["min_output_dim"] = min(dims)
        if clamped:
            out[fam]["clamped"] = clamped
    known = [v["error"] for v in out.values() if v["error"] is not None]
    fallback = max(known) if known else SPEC_DEFAULTS.get("default").error
    for v in out.values():
        if v["error"] is None:
            v["error"] = fallback
        v["error"] = max(v["error"], 0.02)  # timing noise floor: never claim better than 2%
    return out


def _clamped(train: list[tuple[list[_Call], float]], effs: dict[str, FamilyEfficiency], fam: str
             ) -> dict[str, float]:
    """{efficiency: the value an unbounded fit gives} for each of the family's efficiencies held at the cap."""
    mine = [(ts, m) for ts, m in train if any(t.family == fam for t in ts)]
    out = {}
    for name in CAPPED:
        if getattr(effs[fam], name) < EFFICIENCY_CAP or not mine:
            continue
        free = dict(effs)
        _refine(mine, free, fam, (name,), cap=math.inf)
        if getattr(free[fam], name) > EFFICIENCY_CAP:
            out[name] = float(getattr(free[fam], name))
    return out


def cold_call_curve(points: Sequence[CalPoint], table: EfficiencyTable, device: DeviceProfile,
                    cache_bytes: float) -> list[list[float]]:
    """[[bytes, seconds], ...]: the extra time per kernel call after a stream of that many bytes evicted the
    caches, from small-op points timed right after a stream of `evict` x the cache: at each stream size the
    median over the points of their excess over the fitted (warm) prediction, per call they make. Rising with
    the stream (a smaller excess at a larger stream is noise: the running maximum is kept); empty when no
    size shows any excess."""
    hot = predicted_point_times(points, table, device)
    by_size: dict[float, list[float]] = {}
    for p, t in zip(points, hot, strict=True):
        calls = sum(c.count for c in point_calls(p))
        by_size.setdefault(float(p.params["evict"]) * cache_bytes, []).append((p.time_s - t) / max(calls, 1))
    curve, top = [], 0.0
    for size in sorted(by_size):
        top = max(top, float(np.median(by_size[size])))
        curve.append([size, top])
    return curve if top > 0 else []


def _order(p: CalPoint) -> tuple[Any, ...]:
    return (p.name, p.dtype, tuple(sorted((k, str(v)) for k, v in p.params.items())))


def predicted_point_times(points: Sequence[CalPoint], table: EfficiencyTable, device: DeviceProfile, *,
                          flushed: bool = False) -> list[float]:
    """What the fitted table predicts for each point (for reports and tests)."""
    effs = dict(table.families)
    keys = set(effs)
    return [_point_time([_terms(c, device, table.peaks, keys, flushed or bool(p.params.get("cold")))
                         for c in point_calls(p)], effs) for p in points]


__all__ = ["cold_call_curve", "fit_points", "measured_peaks", "point_calls", "predicted_point_times", "torch"]
