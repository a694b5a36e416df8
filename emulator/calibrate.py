"""Calibration: time every sweep point on a real device, pair it with its traced Cost, fit, and write the file.

`collect` runs each `BenchPoint` of `emulator.sweeps.sweep` twice: for real on the device (timed with
`measure.time_callable`) and on meta tensors of identical shapes and dtypes through `emulator.trace`, so
each `CalPoint` holds (counts, measured seconds). `build_calibration` fits them (`emulator.fit`) into the
calibration file's content; `calibrate_device` is `emulator calibrate`: measure (or reload points), fit, write
atomically, record in the results store.

    emulator calibrate --device cuda --quick
    python -m emulator.calibrate --device cuda --quick --out calibration_raw.json   (raw points only)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from emulator.errors import EmulatorError
from emulator.measure import Measurement, device_fingerprint, last_level_cache_bytes, time_callable
from emulator.speed import Reference, at_reference_speed
from emulator.sweeps import BenchPoint, sweep

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
    # `mean_s * r / reference_s` is the point at the reference reading r (see `emulator.speed`).
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
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


# ------------------------------------------------------------------------------------------- running


def _to_meta(x: Any) -> Any:
    """Meta tensors of the same shape, dtype, strides and requires_grad; other values unchanged."""
    if isinstance(x, torch.Tensor):
        m = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
        return m.requires_grad_(x.requires_grad)
    if isinstance(x, (list, tuple)):
        return type(x)(_to_meta(v) for v in x)
    return x


def _runner(point: BenchPoint) -> tuple[Callable[..., Any], Callable[..., tuple]]:
    """The reference's fn (with the project's fused attention and tf32 mode bound in) and input maker."""
    from kernels import references

    ref = references.reference(point.name)
    fn = ref.fn
    if ref.takes_attention:
        from emulator.workloads.ops import attention

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
        from emulator.trace import trace_callable
    except ImportError:
        return None
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
    from kernels import references

    if point.dtype == "fp8" and not references.fp8_supported(device):
        return "fp8 needs CUDA compute capability 8.9+ and torch._scaled_mm"
    if point.dtype not in references.DTYPES:
        return f"torch {torch.__version__} has no {point.dtype}"
    return None


def _measure_point(
    point: BenchPoint, device: str | torch.device, *, target_time_s: float, trace: bool
) -> tuple[CalPoint, tuple[float, ...]]:
    """Time one sweep point on `device` and trace its cost: (the point, its timed samples)."""
    from kernels import references

    dev = torch.device(device)
    fn, make_inputs = _runner(point)
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
    up to a model step's (see `measure.Measurement.mean_s`). The speed reference (`emulator.speed`; `reference`,
    or a new one) is read before the first pass of the first point and after every pass of every point, and
    each point records the readings around its passes (`CalPoint.reference_s`).
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EmulatorError("--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu", field="device")
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
                except torch.cuda.OutOfMemoryError:
                    reason = "out of device memory"
                    torch.cuda.empty_cache()
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


# -------------------------------------------------------------------------------------------- output


def write_json_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write JSON through a temporary file in the same folder and `os.replace`: readers never see half a file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise EmulatorError(f"cannot read calibration points: {exc}", file=str(path)) from exc
    if data.get("schema_version") != POINTS_SCHEMA_VERSION:
        raise EmulatorError(
            f"schema_version {data.get('schema_version')!r} is not {POINTS_SCHEMA_VERSION}; re-run calibrate",
            file=str(path),
            field="schema_version",
        )
    return data["fingerprint"], [CalPoint.from_dict(p) for p in data["points"]]


# ------------------------------------------------------------------------------------------ fitting


def build_calibration(points: Sequence[CalPoint], fingerprint: dict[str, Any],
                      host: dict[str, float] | None = None) -> dict[str, Any]:
    """Fit measured points into a calibration file's content (see `emulator.calibration`)."""
    from emulator.calibration import SCHEMA_VERSION, local_profile, profile_for_fingerprint
    from emulator.fit import cold_call_curve, fit_points, measured_peaks, point_calls

    profile = profile_for_fingerprint(fingerprint)
    # A CPU sweep's points are fitted at one speed, the mean of the reference readings around them (see
    # `emulator.speed`), and so are the host costs measured before the sweep.
    readings = [p.reference_s for p in points if p.reference_s]
    reference_s = sum(readings) / len(readings) if readings else None
    points = [p.at_reference(reference_s) for p in points]
    evicted = [p for p in points if p.params.get("evict")]  # not kernels of a family: see `sweeps._vector`
    points = [p for p in points if not p.params.get("evict")]
    host = dict(host or {})
    if reference_s and host.get("reference_s"):
        host = {k: at_reference_speed(v, host["reference_s"], reference_s) for k, v in host.items()}
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fingerprint": fingerprint,
        "device": profile.name if profile else None,
        "cache_bytes": fingerprint.get("l2_cache_bytes") or fingerprint.get("cache_bytes"),
        "synchronous": fingerprint.get("kind") != "cuda",
        "host_overhead_s": host.get("op", 0.0),
        "program_overhead_s": host.get("program", 0.0),
        "num_points": len(points) + len(evicted),
        "families": {"default": {}},
    }
    if reference_s:
        data["speed_reference_s"] = reference_s
    if profile is None:
        data["peaks"] = measured_peaks(points, [point_calls(p) for p in points], data["cache_bytes"])
        profile = local_profile(data)
    # GPU timings flush the L2 before every repetition (`measure.time_callable`); CPU ones keep the cache warm
    # except for the points that cycle cold copies of their inputs.
    data["families"] = fit_points(points, profile, peaks=data.get("peaks"), flushed=fingerprint.get("kind") == "cuda")
    if evicted and data["cache_bytes"]:
        from emulator.calibration import table_from

        data["cold_call_curve"] = cold_call_curve(evicted, table_from(data, "(fit)"), profile,
                                                  float(data["cache_bytes"]))
    return data


# A model small enough that its kernels take next to nothing: a step's wall time over its op count is the host's
# cost per op inside a real program (module calls, Python, autograd bookkeeping), beyond a bare op's dispatch.
_TINY_MODEL = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2,
               "num_key_value_heads": 1, "intermediate_size": 32, "vocab_size": 64, "max_position_embeddings": 64}


def program_overhead_s(device: torch.device) -> float:
    """Host seconds per dispatched op in eager model steps (train, prefill, decode of a tiny model)."""
    from emulator.trace import trace_workload
    from emulator.workloads.hf import from_hf_config
    from emulator.workloads.program import build_step

    model = from_hf_config(_TINY_MODEL, origin="calibration (host overhead)", name="tiny")
    per_op = []
    for phase, batch, seq, kv in (("train", 1, 8, 0), ("prefill", 1, 8, 0), ("decode", 1, 1, 8)):
        step = build_step(model, phase, batch_size=batch, seq_len=seq, kv_len=kv, dtype=torch.float32, device=device)  # type: ignore[arg-type]
        m = time_callable(step, device=device, warmup=3, min_reps=10, target_time_s=0.2, flush_l2=False)
        ops = sum(c.count for c in trace_workload(model, phase, batch, seq, kv, torch.float32).calls)
        per_op.append((m.mean_s if device.type == "cpu" else m.median_s) / ops)
    return sum(per_op) / len(per_op)


def _merge_previous(points: list[CalPoint], families: set[str], path: str) -> list[CalPoint]:
    """`--only` re-measures some families: keep this device's earlier points of all the others."""
    previous = path.removesuffix(".json") + ".points.json"
    if not os.path.exists(previous):
        return points
    _, old = read_points_json(previous)
    return [p for p in old if p.family not in families] + points


def calibrate_device(device: str, *, quick: bool, out: str | None = None, points_file: str | None = None,
                     record: bool = True, progress: bool = True,
                     only: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
    """Measure (or reload) the sweep, fit it, write the calibration file and record the run. -> (path, data)."""
    from emulator.calibration import user_dir
    from emulator.measure import host_overhead_s

    if points_file:
        fingerprint, points = read_points_json(points_file)
        host = fingerprint.get("host_overhead")
    else:
        dev = torch.device(device)
        fingerprint = device_fingerprint(dev)
        fingerprint["cache_bytes"] = last_level_cache_bytes(dev)
        reference = Reference(dev) if dev.type == "cpu" else None
        before = reference.read() if reference else 0.0
        host = host_overhead_s(dev)
        host["program"] = program_overhead_s(dev)
        if reference:
            host["reference_s"] = (before + reference.read()) / 2
        fingerprint["host_overhead"] = host
        todo = sweep(dev.type, quick)
        if only:
            unknown = sorted(set(only) - {p.family for p in todo})
            if unknown:
                raise EmulatorError(f"unknown kernel families {unknown}; the sweep has "
                                    f"{sorted({p.family for p in todo})}.", field="--only")
            todo = [p for p in todo if p.family in only]
        points = collect(device, quick, progress=progress, points=todo, reference=reference)
        if only:
            points = _merge_previous(points, set(only), out or str(user_dir() / f"{fingerprint['key']}.json"))
    traced = [p for p in points if p.matrix_flops is not None]
    if len(traced) < len(points):
        print(f"warning: {len(points) - len(traced)} points could not be traced and are left out of the fit",
              file=sys.stderr)
    if not traced:
        raise EmulatorError("no calibration point could be traced; see the warnings above.", field="points")
    data = build_calibration(traced, fingerprint, host)
    path = out or str(user_dir() / f"{fingerprint['key']}.json")
    points_path = path.removesuffix(".json") + ".points.json"
    write_points_json(points, fingerprint, points_path)
    data["points_file"] = os.path.basename(points_path)
    write_json_atomic(data, path)
    if record:
        from emulator.results import ResultsStore

        summary = {fam: {k: v[k] for k in ("error", "num_points", "math", "memory", "overhead_s")}
                   for fam, v in data["families"].items()}
        ResultsStore().record_run("calibration", fingerprint, {"device": device, "quick": quick},
                                  {"path": path, "families": summary}, points=[p.as_dict() for p in points])
    return path, data


# ------------------------------------------------------------------------------------------------ cli


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m emulator.calibrate --device cuda --quick --out FILE`: measure and save raw points."""
    ap = argparse.ArgumentParser(prog="python -m emulator.calibrate", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--quick", action="store_true", help="the short sweep (~2 min CPU, ~4 min GPU)")
    ap.add_argument("--out", required=True, help="where to write the raw points (JSON)")
    ap.add_argument("--only", default=None, help="comma-separated families to run (default: all)")
    ap.add_argument("--record", action="store_true", help="also record the run in the results store")
    args = ap.parse_args(argv)
    try:
        dev = torch.device(args.device)
        pts = sweep(dev.type, args.quick)
        if args.only:
            wanted = set(args.only.split(","))
            pts = [p for p in pts if p.family in wanted]
        fingerprint = device_fingerprint(dev)
        start = time.perf_counter()

        def checkpoint(done: list[CalPoint]) -> None:
            if len(done) % 10 == 0:  # a killed sweep keeps what it measured
                write_points_json(done, fingerprint, args.out)

        points = collect(args.device, args.quick, points=pts, on_point=checkpoint)
        elapsed = time.perf_counter() - start
        write_points_json(points, fingerprint, args.out)
        if args.record:
            from emulator.results import ResultsStore

            ResultsStore().record_run(
                "calibration",
                fingerprint,
                {"device": args.device, "quick": args.quick, "only": args.only},
                {"num_points": len(points), "elapsed_s": elapsed},
                points=[p.as_dict() for p in points],
            )
    except EmulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(points)} points in {elapsed:.1f} s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
