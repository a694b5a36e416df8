"""Calibration points: each sweep point timed for real on the device and traced on meta tensors of identical
shapes and dtypes, so that a `CalPoint` holds (counts, measured seconds); saved and reloaded as JSON.

`collect` runs the sweep (`emulator.calibrate.sweeps`), timed with `measure.time_callable`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from emulator.calibrate.sweeps import BenchPoint, sweep
from emulator.engine.tracer import trace_callable
from emulator.errors import EmulatorError
from emulator.files import read_json, write_json_atomic
from emulator.measure.device import OutOfMemory, fp8_supported, parse_device, release_memory
from emulator.measure.machine import last_level_cache_bytes
from emulator.measure.speed import Reference, at_reference_speed
from emulator.measure.timer import Measurement, time_callable
from emulator.workloads.ops import attention
from kernels import references

POINTS_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class CalPoint:
    """One measured microbenchmark with its traced cost (cost fields are None where tracing was unavailable)."""

    family: str
    name: str
    params: dict[str, Any] = field(hash=False)
    dtype: str
    matrix_flops: float | None
    vector_flops: float | None
    bytes_read: float | None
    bytes_written: float | None
    median_s: float
    p20_s: float
    p80_s: float
    num_reps: int
    # CPUs: the mean of every repetition of every pass (see `measure.Measurement.mean_s`); None on GPUs, whose
    # timings have no co-tenants and are fitted by their median.
    mean_s: float | None = None
    # CPUs: the speed reference's seconds around this point's passes, weighted as `mean_s` pools them, so that
    # `mean_s * r / reference_s` is the point at the reference reading r (see `emulator.measure.speed`).
    reference_s: float | None = None

    @property
    def time_s(self) -> float:
        """The seconds the fit uses: the mean where recorded (CPUs), else the median."""
        return self.mean_s if self.mean_s is not None else self.median_s

    def at_reference(self, reference_s: float | None) -> CalPoint:
        """This point as measured at the speed where the reference takes `reference_s` (unchanged where either
        is unknown): its mean and its median, p20 and p80 scale alike."""
        if not reference_s or not self.reference_s:
            return self
        f = at_reference_speed(1.0, self.reference_s, reference_s)
        return dataclasses.replace(self, median_s=self.median_s * f, p20_s=self.p20_s * f, p80_s=self.p80_s * f,
                                   mean_s=self.mean_s * f if self.mean_s is not None else None,
                                   reference_s=reference_s)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalPoint:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]  # as write_points_json saved them


# ------------------------------------------------------------------------------------------- running


def _to_meta(x: Any) -> Any:
    """Meta tensors of the same shape, dtype, strides and requires_grad; other values unchanged."""
    if isinstance(x, torch.Tensor):
        m = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
        return m.requires_grad_(x.requires_grad)
    if isinstance(x, (list, tuple)):
        return type(x)(_to_meta(v) for v in x)
    return x


def runner(point: BenchPoint) -> tuple[Callable[..., Any], Callable[..., tuple]]:
    """The reference's fn (with the project's fused attention and tf32 mode bound in) and input maker."""
    ref = references.reference(point.name)
    fn = ref.fn
    if ref.takes_attention:
        fn = functools.partial(ref.fn, attention=attention)
    if point.family == "gemm" and point.dtype in ("fp32", "tf32"):
        inner = fn

        def fn(*args: Any, _inner: Callable[..., Any] = inner) -> Any:
            with references.matmul_precision(point.dtype):
                return _inner(*args)

    return fn, ref.make_inputs


_TRACE_ERRORS: set[str] = set()


def _trace_cost(fn: Callable[..., Any], inputs: tuple) -> dict[str, float] | None:
    """The summed Cost of `fn` on meta copies of `inputs`, or None where the tracer is not available."""
    try:
        trace = trace_callable(fn, *_to_meta(inputs))
        cost = trace.total_cost()
    except Exception as exc:  # noqa: BLE001 - a tracer bug must not lose the measurement; cost filled later
        message = f"{type(exc).__name__}: {exc}"
        if message not in _TRACE_ERRORS:
            _TRACE_ERRORS.add(message)
            print(f"warning: tracing failed, cost left empty: {message}", file=sys.stderr)
        return None
    return {k: float(getattr(cost, k)) for k in ("matrix_flops", "vector_flops", "bytes_read", "bytes_written")}


def skip_reason(point: BenchPoint, device: torch.device) -> str | None:
    """Why a point cannot run on this device (None when it can)."""
    if point.dtype == "fp8" and not fp8_supported(device):
        return "fp8 needs CUDA compute capability 8.9+ and torch._scaled_mm"
    if point.dtype not in references.DTYPES:
        return f"torch {torch.__version__} has no {point.dtype}"
    return None


def _measure_point(
    point: BenchPoint, device: str | torch.device, *, target_time_s: float, trace: bool
) -> tuple[CalPoint, tuple[float, ...]]:
    """Time one sweep point on `device` and trace its cost: (the point, its timed samples)."""
    dev = torch.device(device)
    fn, make_inputs = runner(point)
    dtype = references.torch_dtype(point.dtype)
    inputs = make_inputs(point.params, device=dev, dtype=dtype)
    cold = dev.type == "cpu" and bool(point.params.get("cold"))
    evict = dev.type == "cpu" and bool(point.params.get("evict"))
    cache_bytes = (last_level_cache_bytes(dev) or 2**25) if cold or evict else 0
    if cold:
        # Cold operands, as a layer's weights are in a model step: cycle through enough copies of the inputs
        # that each call reads data last touched over twice the last-level cache ago (reads only: no dirty
        # lines left to write back inside the timed call).
        size = sum(t.numel() * t.element_size() for t in inputs if isinstance(t, torch.Tensor)) or 1
        copies = [inputs] + [make_inputs(point.params, device=dev, dtype=dtype)
                             for _ in range(min(63, 2 * cache_bytes // size))]
        turn = iter(range(1 << 62))

        def call() -> Any:
            return fn(*copies[next(turn) % len(copies)])
    else:
        def call() -> Any:
            return fn(*inputs)

    between, max_reps = None, 200
    if evict:
        # Untimed before every repetition: a matrix-vector product with a weight of `evict` times the
        # last-level cache, the way a layer's weights stream through a model step (a bare fill or sum evicts
        # less: it runs little code and its streaming stores may bypass the cache).
        weight = torch.rand(int(point.params["evict"] * cache_bytes) // 2048, 512)
        vector = torch.rand(1, 512)

        def between() -> None:
            torch.nn.functional.linear(vector, weight)

        max_reps = 24  # each repetition costs a stream of up to twice the cache
    m: Measurement = time_callable(call, device=dev, target_time_s=target_time_s, between=between,
                                   max_reps=max_reps)
    cost = _trace_cost(fn, inputs) if trace else None
    c = cost or {}
    return CalPoint(
        family=point.family,
        name=point.name,
        params=dict(point.params),
        dtype=point.dtype,
        matrix_flops=c.get("matrix_flops"),
        vector_flops=c.get("vector_flops"),
        bytes_read=c.get("bytes_read"),
        bytes_written=c.get("bytes_written"),
        median_s=m.median_s,
        p20_s=m.p20_s,
        p80_s=m.p80_s,
        num_reps=m.num_reps,
        mean_s=m.mean_s if dev.type == "cpu" else None,
    ), m.samples_s


def _rates(p: CalPoint) -> str:
    if p.matrix_flops is None:
        return "cost n/a"
    flops = (p.matrix_flops or 0) + (p.vector_flops or 0)
    moved = (p.bytes_read or 0) + (p.bytes_written or 0)
    return f"{flops / p.median_s / 1e12:8.2f} TFLOP/s {moved / p.median_s / 1e9:8.1f} GB/s"


# Timed seconds per sweep point over all passes (quick and full sweeps), and the passes a CPU sweep makes.
QUICK_POINT_TIME_S, FULL_POINT_TIME_S = 0.1, 0.25
CPU_PASSES = 4


def collect(
    device: str,
    quick: bool,
    progress: bool = True,
    *,
    points: Sequence[BenchPoint] | None = None,
    on_point: Callable[[list[CalPoint]], None] | None = None,
    passes: int | None = None,
    reference: Reference | None = None,
) -> list[CalPoint]:
    """Measure every point of the device's sweep (or `points`) and return them with their traced costs.

    A point that cannot run here (fp8 on an older GPU) is skipped with a note; one that runs out of memory
    is skipped too, so a sweep sized for a larger card still completes. `on_point(points_so_far)` runs after
    each measured point (to checkpoint a long sweep).

    On a CPU the sweep runs `passes` times (default 4), seconds apart, and each point keeps the median, p20
    and p80 of its fastest pass and, for the fit, the mean of all its repetitions of all passes: shared and
    virtual machines slow repetitions down by up to 1.8x, in bursts, and the mean is the statistic that adds
    up to a model step's (see `measure.Measurement.mean_s`). The speed reference (`emulator.measure.speed`; `reference`,
    or a new one) is read before the first pass of the first point and after every pass of every point, and
    each point records the readings around its passes (`CalPoint.reference_s`).
    """
    dev = parse_device(device)
    todo = list(points) if points is not None else sweep(dev.type, quick)
    passes = passes if passes is not None else (1 if dev.type == "cuda" else CPU_PASSES)
    target = (QUICK_POINT_TIME_S if quick else FULL_POINT_TIME_S) / passes
    best: dict[int, CalPoint] = {}
    samples: dict[int, list[float]] = {}
    at_ref: dict[int, float] = {}  # per point: its seconds divided by the reference around them, summed
    if dev.type == "cpu" and reference is None:
        reference = Reference(dev)
    if reference is not None:
        reference.read()
    start = time.perf_counter()
    for round_ in range(passes):
        for i, point in enumerate(todo):
            reason = skip_reason(point, dev)
            if reason is None:
                try:
                    p, times = _measure_point(point, dev, target_time_s=target, trace=i not in best)
                except OutOfMemory:
                    reason = "out of device memory"
                    release_memory(dev)
            if progress:
                where = f"[{round_ + 1}/{passes} {i + 1:3d}/{len(todo)} {time.perf_counter() - start:6.1f}s]"
                detail = f"skipped: {reason}" if reason else f"{p.median_s * 1e6:10.1f} µs  {_rates(p)}"
                print(f"{where} {point.label:60s} {detail}", file=sys.stderr, flush=True)
            if reason is None:
                pooled = samples.setdefault(i, [])
                pooled.extend(times)
                if reference is not None:
                    before = reference.readings[-1]
                    at_ref[i] = at_ref.get(i, 0.0) + sum(times) / ((before + reference.read()) / 2)
                if i in best:
                    prev = best[i]
                    if p.median_s < prev.median_s:
                        best[i] = dataclasses.replace(p, matrix_flops=prev.matrix_flops, vector_flops=prev.vector_flops,
                                                      bytes_read=prev.bytes_read, bytes_written=prev.bytes_written)
                else:
                    best[i] = p
                if best[i].mean_s is not None:
                    best[i] = dataclasses.replace(best[i], mean_s=sum(pooled) / len(pooled))
                if i in at_ref:
                    best[i] = dataclasses.replace(best[i], reference_s=sum(pooled) / at_ref[i])
                if on_point is not None:
                    on_point([best[j] for j in sorted(best)])
    return [best[j] for j in sorted(best)]


def write_points_json(points: Iterable[CalPoint], fingerprint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Save raw calibration points with the device fingerprint (atomically)."""
    write_json_atomic(
        {
            "schema_version": POINTS_SCHEMA_VERSION,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "fingerprint": fingerprint,
            "points": [p.as_dict() for p in points],
        },
        path,
    )


def read_points_json(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[CalPoint]]:
    """Load what `write_points_json` wrote: (fingerprint, points)."""
    data = read_json(path, fix="re-run `emulator calibrate` to measure the points again")
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != POINTS_SCHEMA_VERSION:
        raise EmulatorError(
            f"schema_version {version!r} is not {POINTS_SCHEMA_VERSION}; re-run calibrate",
            file=str(path),
            field="schema_version",
        )
    return data["fingerprint"], [CalPoint.from_dict(p) for p in data["points"]]
