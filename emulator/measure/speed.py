"""A shared CPU's speed, read by a reference kernel timed next to every measurement.

Calibrated efficiencies are fractions of the device's peak rates (utilisation space), the way a transfer to a
sibling chip carries them to that chip's peaks. On a shared or virtual machine the peaks themselves move: a
co-tenant on the core's sibling hardware thread or the host's frequency limits change the same kernel's time by
10-20% from one two-second window to the next and by up to 1.6x in bursts (our 2-core CI-like VM; see the
issue notes). Calibration and validation are minutes apart, so without a reading of the speed a calibration made
in a fast minute predicts a validation made in a slow one 10-30% fast, and each calibration point carries its
own moment's speed into the fit.

So on a CPU a small fixed kernel, the *reference* (`REFERENCE_CALLS` fp32 GEMMs of `REFERENCE_DIM`^3, about
5 ms, with an L2-sized working set that leaves the caches of the measurement next to it mostly alone), is timed
between measurements: between every pass of every calibration point and between every step `validate` times.
Measured over 40 s next to llama and DLRM steps, a step's time and its neighbouring reference readings
correlate at 0.67-0.85, and dividing by them took the spread of 10-second means from 15% to 1-5%.

- Calibration records each point's reference seconds (`CalPoint.reference_s`) and the mean over the whole
  sweep (`speed_reference_s` in the fingerprint); the fit uses every point at that mean speed
  (`at_reference_speed`).
- Validation predicts each workload at the speed the reference read around its own steps (`at_speed`): only
  the peaks and per-call costs move, every fitted efficiency, tile and speed-up stays as it is, and the
  workloads themselves are never fitted.

One factor moves every rate: next to memory-bound kernels (a 100 MB add, SiLU, RMSNorm) the GEMM reference
tracked their time as well as it tracked GEMMs' (correlation 0.71-0.91).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from emulator.engine.efficiency import EfficiencyTable
from emulator.measure.timer import time_callable

REFERENCE_DIM = 384
REFERENCE_CALLS = 3


class Reference:
    """The reference kernel on one CPU, with every reading taken so far (seconds per `read`)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        gen = torch.Generator().manual_seed(0)
        self.device = torch.device(device)
        self._a = torch.randn(REFERENCE_DIM, REFERENCE_DIM, generator=gen).to(self.device)
        self._b = torch.randn(REFERENCE_DIM, REFERENCE_DIM, generator=gen).to(self.device)
        self.readings: list[float] = []
        torch.mm(self._a, self._b)  # first-call set-up outside every reading

    def read(self) -> float:
        """Time the reference once (the mean of its calls, the project's timing method) and keep the reading."""
        # One untimed call first brings the operands back into the caches, whatever ran before evicted them: a
        # reading after a model step would otherwise be slower than one after a small kernel for that alone.
        m = time_callable(lambda: torch.mm(self._a, self._b), device=self.device, warmup=1,
                          min_reps=REFERENCE_CALLS, max_reps=REFERENCE_CALLS, target_time_s=0.0)
        self.readings.append(m.mean_s)
        return m.mean_s


def probed_peaks(device: torch.device | str = "cpu") -> dict[str, float]:
    """Rough peak rates of an uncalibrated device, for estimates only (about 20 ms): the reference's GEMM rate
    (taken for every matrix dtype) and the bytes/s of a 64 MiB copy (read and write)."""
    dev = torch.device(device)
    matrix = 2 * REFERENCE_DIM**3 / Reference(dev).read()
    src = torch.rand(1 << 24, device=dev)
    dst = torch.empty_like(src)
    m = time_callable(lambda: dst.copy_(src), device=dev, warmup=1, min_reps=3, max_reps=3, target_time_s=0.0,
                      flush_l2=False)
    return {"matrix.fp32": matrix, "matrix.bf16": matrix, "matrix.fp16": matrix,
            "memory": 2 * src.numel() * src.element_size() / m.median_s}


def around(readings: Sequence[float]) -> list[float]:
    """The reference around each of n measurements from the n+1 readings taken before, between and after them:
    the mean of the reading before and the one after."""
    return [(a + b) / 2 for a, b in zip(readings, readings[1:], strict=False)]


def speed_vs(reference_s: float, readings_s: Sequence[float]) -> float:
    """The machine's speed during `readings_s` over its speed when the reference took `reference_s`
    (2.0: twice as fast), from the mean reading, which is what a mean of step times adds up with."""
    return reference_s / (sum(readings_s) / len(readings_s))


def at_speed(table: EfficiencyTable, speed: float | None) -> EfficiencyTable:
    """The table with its measured peaks multiplied by `speed` and its per-call and host costs divided by it."""
    if speed is None or speed == 1.0:
        return table
    peaks = {key: rate * speed for key, rate in table.peaks.items()}
    families = {fam: dataclasses.replace(e, overhead_s=e.overhead_s / speed) for fam, e in table.families.items()}
    return dataclasses.replace(table, peaks=peaks, families=families, host_overhead_s=table.host_overhead_s / speed,
                               program_overhead_s=table.program_overhead_s / speed,
                               cold_call_curve=tuple((b, t / speed) for b, t in table.cold_call_curve))


def at_reference_speed(time_s: float, reference_s: float | None, mean_reference_s: float | None) -> float:
    """A time measured while the reference read `reference_s`, as it would have been at `mean_reference_s`."""
    if not reference_s or not mean_reference_s:
        return time_s
    return time_s * mean_reference_s / reference_s
