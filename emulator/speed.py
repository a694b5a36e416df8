"""A shared CPU's speed now against its speed at calibration, from a few calibration points timed again.

Calibrated efficiencies are fractions of the device's peak rates (utilisation space), the way a transfer to a
sibling chip carries them to that chip's peaks. On a shared or virtual machine the peaks themselves move: a
co-tenant on the core's sibling hardware thread or the host's frequency limits slowed the same 512^3 GEMM by up
to 1.8x for minutes at a time on our 2-core CI-like VM, so a calibration made in a fast minute predicted a
validation run in a slow one 20-30% fast, and the reverse. `validate` therefore times a few calibration points
again between its rounds (the largest GEMMs for the core, the largest streams for main memory) and predicts the
workloads from the calibrated efficiencies at the peaks measured then. Only the peaks move; every efficiency,
tile, overhead and speed-up stays as fitted, and the workloads themselves are never fitted.

The reference is those points' own calibrated seconds (the mean over the sweep's passes, the statistic every
point is fitted by), so it is the speed the rest of the sweep was measured at.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import torch

from emulator.calibrate import CPU_PASSES, QUICK_POINT_TIME_S, CalPoint, measure_point, read_points_json
from emulator.efficiency import EfficiencyTable
from emulator.sweeps import BenchPoint

PROBES_PER_PEAK = 3
PROBE_TIME_S = QUICK_POINT_TIME_S / CPU_PASSES  # a quick CPU calibration's time per point and pass


def speed_probes(table: EfficiencyTable) -> dict[str, list[CalPoint]]:
    """Calibration points to time again, per moving peak: the core ("matrix.fp32", which the vector rate and
    the per-op overheads follow) and main memory ("memory").

    The largest warm fp32 GEMMs, and the largest streams beyond twice the last-level cache: chosen by size (the
    points least affected by per-call overheads), never by measured rate, since the fastest point of a noisy
    sweep is fast partly by luck and would read every later measurement as a slowdown. Empty when the table has
    no measured peaks (a GPU's are its datasheet's) or its points file is missing.
    """
    if not table.peaks or not table.source.endswith(".json"):
        return {}
    path = table.source.removesuffix(".json") + ".points.json"
    if not os.path.exists(path):
        return {}
    fingerprint, points = read_points_json(path)
    cache = float(fingerprint.get("cache_bytes") or 0)
    gemms, streams = [], []
    for p in points:
        if p.matrix_flops is None or p.params.get("cold"):
            continue
        if p.family == "gemm" and p.name == "gemm" and p.dtype == "fp32":
            gemms.append((p.matrix_flops, p))
        elif p.family in ("copy", "elementwise"):
            moved = (p.bytes_read or 0.0) + (p.bytes_written or 0.0)  # traced when the point was measured
            if moved > 2 * cache:
                streams.append((moved, p))
    return {key: [p for _, p in sorted(found, key=lambda wp: -wp[0])[:PROBES_PER_PEAK]]
            for key, found in (("matrix.fp32", gemms), ("memory", streams)) if found}


def measure_speed(probes: Mapping[str, Sequence[CalPoint]], device: torch.device,
                  target_time_s: float = PROBE_TIME_S) -> dict[str, float]:
    """Speed now over speed at calibration, per peak (2.0: twice as fast as when calibrated): the probes'
    calibrated seconds over their seconds now, summed, each timed as one calibration pass times a point."""
    speed = {}
    for key, points in probes.items():
        then = now = 0.0
        for p in points:
            # Timed exactly as a calibration pass timed it (same warm-up rule, repetitions and statistic): a
            # probe measured any other way reads a difference of method as a change of speed.
            point = BenchPoint(p.family, p.name, dict(p.params), p.dtype)
            now += measure_point(point, device, target_time_s=target_time_s, trace=False).time_s
            then += p.time_s
        speed[key] = then / now
    return speed


def mean_speed(samples: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-peak mean of several speed readings."""
    keys = sorted({k for s in samples for k in s})
    return {k: sum(s[k] for s in samples if k in s) / sum(1 for s in samples if k in s) for k in keys}


def at_speed(table: EfficiencyTable, speed: Mapping[str, float]) -> EfficiencyTable:
    """The table with its measured peaks scaled by `speed`: main memory by "memory", everything else the core
    runs (every matrix dtype, the vector rate, host dispatch, per-call overheads) by "matrix.fp32"."""
    if not speed:
        return table
    core = speed.get("matrix.fp32", 1.0)
    peaks = {key: rate * (speed.get("memory", 1.0) if key == "memory" else core) for key, rate in table.peaks.items()}
    families = {fam: dataclasses.replace(e, overhead_s=e.overhead_s / core) for fam, e in table.families.items()}
    return dataclasses.replace(table, peaks=peaks, families=families, host_overhead_s=table.host_overhead_s / core,
                               program_overhead_s=table.program_overhead_s / core)
